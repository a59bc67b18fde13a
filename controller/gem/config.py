"""The ``[gem]`` section of the line configuration: how the factory host reaches the line.

    [gem]
    port = 5000               # TCP port the equipment listens on (HSMS-SS passive)
    host = "0.0.0.0"          # interface to listen on (default all)
    device_id = 0             # HSMS session id, 0-32767
    model_name = "BUMPLINE-1" # MDLN in S1F2/S1F14 (at most 20 characters)
    t3 = 45.0                 # reply timeout, s
    t5 = 10.0                 # connect separation, s
    t6 = 5.0                  # control transaction timeout, s
    t7 = 10.0                 # not-selected timeout, s
    t8 = 5.0                  # inter-character timeout, s
    linktest = 30.0           # host silent this long: linktest.req, s (0: never)
    spool_limit = 10000       # messages kept while the host is away
    spool_overwrite = false   # when full: true drops the oldest, false keeps it

``drivers.line_config`` accepts the table and keeps it as it is; it is checked
here, with the same one-line errors (file, key, what was expected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.gem.hsms import Timers
from drivers.line_config import LineConfigError

MDLN_MAX = 20  # E5: MDLN is A[20]


@dataclass(frozen=True)
class GemConfig:
    port: int = 5000
    host: str = "0.0.0.0"
    device_id: int = 0
    model_name: str = "BUMPLINE"
    timers: Timers = Timers()
    spool_limit: int = 10_000
    spool_overwrite: bool = False


_TIMERS = {"t3": (1, 120), "t5": (1, 240), "t6": (1, 240), "t7": (1, 240), "t8": (1, 120)}
LINKTEST_MAX = 3600
_KEYS = {"port", "host", "device_id", "model_name", "spool_limit", "spool_overwrite",
         "linktest"} | set(_TIMERS)


def parse_gem_config(table: Any, *, source: str) -> GemConfig:
    """A checked ``GemConfig`` from the raw ``[gem]`` table; LineConfigError names the key."""
    if not isinstance(table, dict):
        raise LineConfigError(f"{source}: [gem]: expected a table")

    def fail(key: str, expected: str) -> LineConfigError:
        return LineConfigError(f"{source}: gem.{key}: expected {expected}, got {table[key]!r}")

    for key in table:
        if key not in _KEYS:
            raise LineConfigError(
                f"{source}: gem.{key}: unknown key (known: {', '.join(sorted(_KEYS))})"
            )

    def integer(key: str, low: int, high: int, default: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fail(key, f"a whole number {low}-{high}")
        return value

    timers = {}
    for key, (low, high) in _TIMERS.items():
        value = table.get(key, getattr(Timers(), key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            low <= value <= high
        ):
            raise fail(key, f"seconds {low}-{high}")
        timers[key] = float(value)
    linktest = table.get("linktest", Timers().linktest)
    if isinstance(linktest, bool) or not isinstance(linktest, int | float) or not (
        linktest == 0 or 1 <= linktest <= LINKTEST_MAX
    ):
        raise fail("linktest", f"seconds 1-{LINKTEST_MAX}, or 0 for never")
    timers["linktest"] = float(linktest)
    model = table.get("model_name", GemConfig.model_name)
    if not isinstance(model, str) or not 1 <= len(model) <= MDLN_MAX or not model.isascii():
        raise fail("model_name", f"1-{MDLN_MAX} ASCII characters")
    host = table.get("host", GemConfig.host)
    if not isinstance(host, str) or not host:
        raise fail("host", "an address to listen on")
    overwrite = table.get("spool_overwrite", False)
    if not isinstance(overwrite, bool):
        raise fail("spool_overwrite", "true or false")
    return GemConfig(
        port=integer("port", 0, 65535, GemConfig.port),
        host=host,
        device_id=integer("device_id", 0, 32767, GemConfig.device_id),
        model_name=model,
        timers=Timers(**timers),
        spool_limit=integer("spool_limit", 1, 1_000_000, GemConfig.spool_limit),
        spool_overwrite=overwrite,
    )

"""How the console prints a typed result: plain text for a person, JSON with ``--json``.

Raw register conventions never reach the engineer: no ``None`` (shown ``-``), no
Python lists of zone temperatures (a table), no saturated O2 word (``over range``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from drivers.types import O2_OVER_RANGE_PPM, OvenStatus

NONE_TEXT = "-"


def plain(value: Any) -> Any:
    """Typed results as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def show(value: Any) -> str:
    """A result as text: ``ok`` for a bare acknowledgement, ``key  value`` lines for a record."""
    if value is None:
        return "ok"
    fields = plain(value)
    if not isinstance(fields, dict):
        return str(fields)
    if isinstance(value, OvenStatus):
        fields["zone_pv_c"] = _zones_inline(value.zone_pv_c)
        fields["o2_ppm"] = o2_text(value.o2_ppm)
    width = max(len(k) for k in fields) if fields else 0
    lines = []
    for key, item in fields.items():
        if isinstance(item, list):
            shown = [NONE_TEXT if v is None else str(v) for v in item]
            item = (
                f"{len(item)} values: {', '.join(shown[:6])}, ..." if len(item) > 12
                else " ".join(shown)
            )
        elif item is None:
            item = NONE_TEXT
        lines.append(f"{key:<{width}}  {item}")
    return "\n".join(lines)


def o2_text(ppm: int) -> str:
    """O2_PPM saturates at one word: at the top it is air, not a number of ppm."""
    return f"over range (>= {O2_OVER_RANGE_PPM} ppm)" if ppm >= O2_OVER_RANGE_PPM else str(ppm)


def zone_table(zones: Any) -> str:
    """Zone temperatures, one row per zone; a failed thermocouple says so."""
    rows = ["zone  °C"]
    for number, value in enumerate(zones, start=1):
        rows.append(f"{number:>4}  {_zone(value)}")
    return "\n".join(rows)


def _zone(value: float | None) -> str:
    return "thermocouple failed" if value is None else f"{value:.1f}"


def _zones_inline(zones: tuple[float | None, ...]) -> str:
    return " ".join("TC-FAIL" if v is None else f"{v:.1f}" for v in zones)

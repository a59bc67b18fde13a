"""Fault plans for the independent tools: a cause that appears at a moment of the tool's
own life and goes away some tool seconds later.

A plan is ``WHAT@WHEN[+DELAY][/DURATION]``:

* ``WHAT`` names the cause (the oven: ``510`` a zone's heater running away, ``520`` a
  belt jam, ``540`` an air leak into the tunnel, ``550`` the nitrogen supply lost,
  ``560`` a thermocouple open, ``900`` the emergency stop pressed; the cleaner:
  ``door`` opened, ``di`` the rinse water's resistivity low, ``chem`` the chemistry
  exhausted). An oven zone cause may name its zone: ``510:z3`` (default zone 5).
* ``WHEN`` is ``t`` (tool time since power-up) or an event of the tool's own and its
  count: ``load2`` (the second LOAD), ``apply1``, ``start3`` (the cleaner's third START),
  ``exit1`` (the first wafer reaching the oven's exit).
* ``+DELAY`` tool seconds after it (default 0); ``/DURATION`` how long the cause lasts
  (default 60 tool seconds; ``/0`` for ever).

``510@load2+60/120``: 60 s after the second LOAD zone 5's heater runs away for 120 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLAN = re.compile(r"^(?P<what>[a-z0-9]+)(?::z(?P<zone>\d+))?@(?P<event>[a-z]+)(?P<n>\d*)"
                   r"(?:\+(?P<delay>[\d.]+))?(?:/(?P<duration>[\d.]+))?$")


@dataclass
class Fault:
    what: str
    event: str  # "t" or an event name the tool logs
    n: int  # which occurrence of the event (1-based)
    delay_s: float = 0.0
    duration_s: float = 60.0  # 0: for ever
    zone: int = 5  # 1-based, oven zone causes only
    begins: float | None = None  # tool time the cause appears (once its event happened)

    def active(self, now: float) -> bool:
        if self.begins is None or now < self.begins:
            return False
        return self.duration_s == 0 or now < self.begins + self.duration_s

    def seen(self, event: str, count: int, now: float) -> None:
        """The tool logged its ``count``-th ``event`` at tool time ``now``."""
        if self.begins is None and event == self.event and count == self.n:
            self.begins = now + self.delay_s


def parse(text: str, allowed: set[str]) -> Fault:
    m = _PLAN.match(text.strip().lower())
    if m is None:
        raise ValueError(f"fault {text!r}: expected WHAT@WHEN[+DELAY][/DURATION]")
    what = m["what"]
    if what not in allowed:
        raise ValueError(f"fault {text!r}: {what} is not one of {sorted(allowed)}")
    event = m["event"]
    n = int(m["n"] or 1)
    fault = Fault(what, event, n, float(m["delay"] or 0), float(m["duration"] or 60),
                  int(m["zone"] or 5))
    if event == "t":
        fault.begins = fault.delay_s + (float(m["n"]) if m["n"] else 0.0)
    if not 1 <= fault.zone <= 10:
        raise ValueError(f"fault {text!r}: zone {fault.zone} is not 1..10")
    return fault


class Events:
    """Counts the tool's events and tells the plans (each plan waits for one of them)."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = faults
        self.counts: dict[str, int] = {}

    def happened(self, event: str, now: float) -> None:
        count = self.counts[event] = self.counts.get(event, 0) + 1
        for fault in self.faults:
            fault.seen(event, count, now)

    def active(self, what: str, now: float) -> list[Fault]:
        return [f for f in self.faults if f.what == what and f.active(now)]

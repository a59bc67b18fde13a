"""Fault injection for the simulated tools.

A fault plan is per tool. It is written as a short text so the same thing can be
typed on the command line (``bumpline sim --faults``) or put in a line
configuration (``faults = "..."`` under a tool):

    printer-1:drop=0.2,corrupt=0.05;oven-1:alarm=550@1200;placer-1:alarm=240@wafer3

Keys (all optional):

``drop=P``         probability that a reply is not sent at all
``corrupt=P``      probability that one byte of a reply is damaged on the wire
``delay=P``        probability that a reply is held back ``delay_s`` wall seconds
``delay_s=S``      how long a delayed reply is held (default 1.0 s, past the 0.5 s host timeout)
``busy=P``         Modbus tools: probability a request gets exception 06 (busy)
``alarm=CODE@T``   raise alarm CODE at tool time T seconds
``alarm=CODE@waferN`` raise alarm CODE while the N-th wafer (1-based) is processed
``door=T``         open the door (alarm 400) at tool time T; ``door=T-U`` closes it at U
``di=T``           the cleaner's DI rinse water goes bad (resistivity low) at tool time T;
                   ``di=T-U`` restores it at U (630 only at a START meanwhile)
``disconnect=T``   text-line tools (the plater): drop the host connection at tool time T

Several ``alarm=`` keys may be given. Random faults draw from a generator seeded
by ``bumpline sim --seed`` so a faulty run repeats exactly.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field


class FaultSpecError(ValueError):
    """A fault specification that cannot be understood."""


@dataclass(frozen=True)
class ScheduledAlarm:
    code: int
    at_time: float | None = None  # tool seconds
    at_wafer: int | None = None  # 1-based count of wafers the tool has taken in


@dataclass
class FaultPlan:
    drop: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    delay_s: float = 1.0
    busy: float = 0.0
    alarms: list[ScheduledAlarm] = field(default_factory=list)
    door_open_at: float | None = None
    door_close_at: float | None = None
    di_low_at: float | None = None  # the cleaner's DI rinse water
    di_restored_at: float | None = None
    disconnects: list[float] = field(default_factory=list)  # tool times
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def seed(self, seed: int) -> None:
        self.rng.seed(seed)

    def roll(self, probability: float) -> bool:
        """One random draw: True with the given probability."""
        return probability > 0 and self.rng.random() < probability

    @property
    def is_empty(self) -> bool:
        return (
            not (self.drop or self.corrupt or self.delay or self.busy or self.alarms
                 or self.disconnects)
            and self.door_open_at is None and self.di_low_at is None
        )


# The tools whose spec has a door interlock (the RF-10N oven has none).
DOOR_ROLES = ("printer", "placer", "cleaner", "plater")
_PROBABILITY_KEYS = ("drop", "corrupt", "delay", "busy")
_ALARM = re.compile(r"^(\d{1,5})@(?:(wafer)(\d+)|(\d+(?:\.\d+)?))$")
_DOOR = re.compile(r"^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$")


def parse_tool_faults(text: str, *, tool: str = "") -> FaultPlan:
    """Parse ``key=value,key=value`` for one tool."""
    plan = FaultPlan()
    where = f" for {tool}" if tool else ""
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise FaultSpecError(f"fault '{item}'{where}: expected key=value")
        if key in _PROBABILITY_KEYS:
            p = _number(value, item, where)
            if not 0.0 <= p <= 1.0:
                raise FaultSpecError(f"fault '{item}'{where}: probability must be 0..1")
            setattr(plan, key, p)
        elif key == "delay_s":
            plan.delay_s = _number(value, item, where)
            if not 0 <= plan.delay_s < math.inf:
                raise FaultSpecError(f"fault '{item}'{where}: expected delay_s=SECONDS >= 0")
        elif key == "alarm":
            m = _ALARM.match(value)
            if not m:
                raise FaultSpecError(
                    f"fault '{item}'{where}: expected alarm=CODE@SECONDS or alarm=CODE@waferN"
                )
            code = int(m.group(1))
            if m.group(2):
                plan.alarms.append(ScheduledAlarm(code, at_wafer=int(m.group(3))))
            else:
                plan.alarms.append(ScheduledAlarm(code, at_time=float(m.group(4))))
        elif key in ("door", "di"):
            m = _DOOR.match(value)
            if not m:
                raise FaultSpecError(f"fault '{item}'{where}: expected {key}=SECONDS[-SECONDS]")
            begins, ends = float(m.group(1)), float(m.group(2)) if m.group(2) else None
            if ends is not None and ends < begins:
                raise FaultSpecError(f"fault '{item}'{where}: " + (
                    "the door closes before it opens" if key == "door" else
                    "the water is restored before it goes bad"))
            if key == "door":
                plan.door_open_at, plan.door_close_at = begins, ends
            else:
                plan.di_low_at, plan.di_restored_at = begins, ends
        elif key == "disconnect":
            at = _number(value, item, where)
            if at < 0:
                raise FaultSpecError(f"fault '{item}'{where}: expected disconnect=SECONDS >= 0")
            plan.disconnects.append(at)
            plan.disconnects.sort()
        else:
            raise FaultSpecError(
                f"fault '{item}'{where}: unknown key '{key}' "
                "(drop, corrupt, delay, delay_s, busy, alarm, door, di, disconnect)"
            )
    return plan


def parse_faults(spec: str) -> dict[str, FaultPlan]:
    """Parse ``tool:key=value,...;tool:...`` into a plan per tool name."""
    plans: dict[str, FaultPlan] = {}
    for chunk in filter(None, (c.strip() for c in spec.split(";"))):
        tool, sep, rest = chunk.partition(":")
        tool = tool.strip()
        if not sep or not tool:
            raise FaultSpecError(f"fault spec '{chunk}': expected TOOL:key=value,...")
        plans[tool] = parse_tool_faults(rest, tool=tool)
    return plans


def check_tools(plans: dict[str, FaultPlan], roles: dict[str, str]) -> None:
    """Refuse a plan for a tool the line does not have, or a fault its tool cannot have: a
    fault test must never pass by injecting nothing. ``roles``: tool name -> role."""
    unknown = sorted(set(plans) - set(roles))
    if unknown:
        raise FaultSpecError(
            f"faults name unknown tool(s): {', '.join(unknown)} (tools: {', '.join(roles)})"
        )
    for tool, plan in plans.items():
        if plan.door_open_at is not None and roles[tool] not in DOOR_ROLES:
            raise FaultSpecError(
                f"fault 'door'{' for ' + tool}: the {roles[tool]} has no door alarm in its spec "
                f"(door= applies to: {', '.join(DOOR_ROLES)})"
            )
        if plan.di_low_at is not None and roles[tool] != "cleaner":
            raise FaultSpecError(f"fault 'di' for {tool}: only the cleaner has DI rinse water")
        if plan.disconnects and roles[tool] != "plater":
            raise FaultSpecError(
                f"fault 'disconnect' for {tool}: only text-line tools (the plater) drop "
                "their host connection"
            )


def _number(value: str, item: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise FaultSpecError(f"fault '{item}'{where}: '{value}' is not a number") from None

"""The live view's line per tool: what it does, its own state, an alarm, and how long a
setup (an oven heating or cooling to a new profile) still takes.

Fed by the line event stream (docs/events.md): wafer moves say who is on a tool,
notes and alarms what it reports, and the TOOL_STATE events its E10 state, the
setup it changes to (``setup``: the step's targets and nominal changeover time)
and what it says of itself (``tool_state``; an oven's ``zones_c``). The setup's
remaining time is in tool time and says what it rests on (controller/line/heating.py):
``est.`` from the measured zones and the heating model, ``nominal`` from the
changeover's nominal time alone. A wider terminal spells the assumption out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from controller.line.heating import ReadyIn, nominal_ready_in, oven_ready_in
from sequences.kinds import ROLE_OF_KIND

SETUP = "scheduled down"  # the E10 state of a setup (controller/line/e10.py)
WIDE = 110  # from this width the ETA's assumption is spelled out


@dataclass
class ToolView:
    name: str
    role: str | None = None
    wafers: set[str] = field(default_factory=set)  # on it (an oven's belt, a batch)
    note: str = ""
    alarm: str = ""
    e10: str = ""
    tool_state: str = ""  # what the tool says of itself (READY, HEATING, ...)
    zones_c: list[float | None] | None = None  # an oven's zones, last read
    zones_at: float = 0.0  # tool time of that reading
    setup: dict[str, Any] | None = None  # the setup it changes to (StepKind.setup_facts)
    setup_since: float = 0.0
    setup_for: str = ""  # the wafer the setup is for
    setpoints_c: list[float] | None = None  # the profile it was last set up for

    def on_tool_state(self, tool_time: float, data: dict[str, Any], wafer: str = "") -> None:
        """A TOOL_STATE event's data (an E10 change has ``previous``; a refresh not)."""
        setup = data.get("setup")
        if "previous" in data:
            left_setup = self.e10 == SETUP and data.get("e10_state") != SETUP
            self.e10 = str(data.get("e10_state", ""))
            self.tool_state = ""  # what it said is from before; the refresh that follows says
            if self.e10 != SETUP:
                self.setup = None
            if left_setup and self.note.startswith("waiting"):
                self.note = ""  # what the setup waited for is over
        if setup:
            self.setup, self.setup_since, self.setup_for = dict(setup), tool_time, wafer
            self.role = ROLE_OF_KIND.get(str(setup.get("step_kind", "")), self.role)
            if setup.get("setpoints_c"):
                self.setpoints_c = list(setup["setpoints_c"])
        if "tool_state" in data:
            self.tool_state = str(data["tool_state"])
        if data.get("zones_c") is not None:
            self.zones_c, self.zones_at = list(data["zones_c"]), tool_time

    def ready_in(self, now: float) -> ReadyIn | None:
        """Tool seconds until the setup (or an oven's heating) is done; None: no basis."""
        in_setup = self.setup is not None and self.e10 == SETUP
        heating = self.tool_state == "HEATING"
        if not (in_setup or heating):
            return None
        # Zones read after the setup began (or an oven heating on its own) are the basis.
        fresh = self.zones_c is not None and (not in_setup or self.zones_at >= self.setup_since)
        if fresh and self.setpoints_c and self.zones_c is not None:
            estimate = oven_ready_in(self.zones_c, self.setpoints_c, now - self.zones_at)
            if estimate is not None:
                return estimate
        if in_setup and self.setup is not None and self.setup.get("changeover_s"):
            low, high = self.setup["changeover_s"]
            return nominal_ready_in((float(low), float(high)), now - self.setup_since)
        return None

    def line(self, now: float, width: int) -> Text:
        head = f"{self.name:<10} "
        if self.alarm:
            return Text(head + self.alarm, style="bold red")
        if self.setup is not None and self.e10 == SETUP:
            return Text(head + self._setup_text(now, width), style="magenta")
        if self.e10 == SETUP and not self.wafers:  # a batch tool's setup names no step
            return Text(head + "setup under way" + (f" · {self.note}" if self.note else ""),
                        style="magenta")
        if self.wafers:  # what the tool said of itself is from before they came
            wafers = ", ".join(sorted(self.wafers))
            what = (f"{len(self.wafers)} on the belt: {wafers}" if self.role == "oven"
                    else f"batch of {len(self.wafers)}: {wafers}" if self.role == "plater"
                    else f"busy: {wafers}")
            return Text(head + what, style="cyan")
        # "idle · IDLE" says nothing twice; READY, HEATING, STANDBY, OFF do say something
        state = f" · {self.tool_state}" if self.tool_state not in ("", "IDLE") else ""
        eta = self.ready_in(now)
        heating = f", {eta.text()} {_basis(eta, width)}" if eta is not None else ""
        return Text(head + "idle" + state + heating + (f" · {self.note}" if self.note else ""))

    def _setup_text(self, now: float, width: int) -> str:
        setup = self.setup or {}
        target = (f"to profile {setup['profile_id']}" if "profile_id" in setup
                  else f"setup for a {setup.get('step_kind', '')} step")
        fresh = self.zones_at >= self.setup_since
        # READY in a changeover is the old profile's (read before the APPLY) or its very
        # end: the ETA says which; HEATING, OFF, STANDBY say something.
        state = self.tool_state if fresh and self.tool_state != "READY" else ""
        measured = " ".join(part for part in (state, self._hottest()) if part)
        eta = self.ready_in(now)
        text = target + ":" + (f" {measured}," if measured else "")
        text += (f" {eta.text()} {_basis(eta, width)}" if eta is not None
                 else " under way" + (f" · {self.note}" if self.note else ""))
        if width >= WIDE and self.setup_for:
            text += f" (for {self.setup_for})"
        return text

    def _hottest(self) -> str:
        """The hottest heating zone now and the profile's (zones 9-10 cool)."""
        if self.zones_c is None or not self.setpoints_c or self.zones_at < self.setup_since:
            return ""
        now = [z for z in self.zones_c[:8] if z is not None]
        if not now:
            return ""
        return f"{max(now):.0f}→{max(self.setpoints_c[:8]):.0f} °C"


def _basis(eta: ReadyIn, width: int) -> str:
    if eta.basis == "zones":
        return "(estimate from the zones read; heating rate assumed)" if width >= WIDE \
            else "(est.)"
    return "(nominal changeover time)" if width >= WIDE else "(nominal)"

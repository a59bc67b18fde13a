"""What the Line page shows that the database does not keep: each tool's wafer and setup now.

``LineView`` listens to the line event stream (a quick synchronous listener):
a step start puts its wafer on its tool, its end takes it off; tool notes are
the setup changes and waits an operator reads; an oven's last reflow gives its
zone setpoints and belt speed, and the controller's status refreshes
(``tool_state`` events without ``previous``) give each tool's own state and an
oven's measured zone temperatures and belt. No tool is read for the screen:
reads on a working tool's link delay its steps. Without a controller (the
read-only screen) it stays empty and the Line page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.line.events import EventKind, LineEvent


@dataclass
class ToolNow:
    wafer: str | None = None
    step: str = ""  # e.g. "step 3 reflow"
    note: str = ""  # the latest tool note: setup changes, waits
    tool_state: str = ""  # the tool's own state name at its last status refresh
    alarm: str = ""


@dataclass
class OvenNow:
    zones_c: list[float] = field(default_factory=list)  # setpoints of the last reflow
    belt_mm_min: float | None = None
    profile: Any = None
    last_peak_c: float | None = None
    measured_c: list[float | None] = field(default_factory=list)  # None: a failed thermocouple
    measured_at: float | None = None  # tool seconds of the measured values
    belt_running: bool | None = None
    on_belt: int | None = None

    @property
    def zones(self) -> list[tuple[int, float | None, float | None]]:
        """(zone, setpoint, measured) from zone 1, as far as either is known."""
        count = max(len(self.zones_c), len(self.measured_c))
        return [(i + 1, self.zones_c[i] if i < len(self.zones_c) else None,
                 self.measured_c[i] if i < len(self.measured_c) else None)
                for i in range(count)]


class LineView:
    def __init__(self) -> None:
        self.tools: dict[str, ToolNow] = {}
        self.ovens: dict[str, OvenNow] = {}
        self.last_seq = 0

    def listen(self, event: LineEvent) -> None:
        self.last_seq = event.seq
        if event.tool is None:
            return
        tool = self.tools.setdefault(event.tool, ToolNow())
        data = event.data
        if event.kind is EventKind.STEP_STARTED:
            tool.wafer = event.wafer_id
            tool.step = f"step {data.get('step')} {data.get('step_kind')}"
            params = data.get("parameters") or {}
            if data.get("step_kind") == "reflow":
                oven = self.ovens.setdefault(event.tool, OvenNow())
                oven.zones_c = [float(z) for z in params.get("zones_c", ())]
                oven.belt_mm_min = params.get("conveyor_mm_min")
                oven.profile = params.get("profile_id")
        elif event.kind is EventKind.STEP_ENDED:
            if tool.wafer == event.wafer_id:
                tool.wafer, tool.step = None, ""
            peak = (data.get("measurements") or {}).get("peak_c")
            if data.get("step_kind") == "reflow" and isinstance(peak, int | float):
                self.ovens.setdefault(event.tool, OvenNow()).last_peak_c = float(peak)
        elif event.kind is EventKind.TOOL_STATE and "previous" not in data:
            tool.tool_state = str(data.get("tool_state", ""))
            if "zones_c" in data:  # an oven's refresh: what its thermocouples read
                oven = self.ovens.setdefault(event.tool, OvenNow())
                oven.measured_c = [None if z is None else float(z) for z in data["zones_c"]]
                oven.measured_at = event.tool_time
                oven.belt_running = data.get("conveyor_running")
                oven.on_belt = data.get("wafers_on_belt")
        elif event.kind is EventKind.TOOL_NOTE:
            tool.note = str(data.get("text", ""))
        elif event.kind is EventKind.ALARM_SET:
            tool.alarm = f"{data.get('code')} {data.get('text')}"
        elif event.kind is EventKind.ALARM_CLEARED:
            tool.alarm = ""

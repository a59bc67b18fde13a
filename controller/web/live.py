"""What the Line page shows that the database does not keep: each tool's wafer and setup now.

``LineView`` listens to the line event stream (a quick synchronous listener):
a step start puts its wafer on its tool, its end takes it off; tool notes are
the setup changes and waits an operator reads; the oven's last reflow gives its
zone setpoints and belt speed. Without a controller (the read-only screen) it
stays empty and the Line page says so.
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
    alarm: str = ""


@dataclass
class OvenNow:
    zones_c: list[float] = field(default_factory=list)
    belt_mm_min: float | None = None
    profile: Any = None
    last_peak_c: float | None = None


class LineView:
    def __init__(self) -> None:
        self.tools: dict[str, ToolNow] = {}
        self.oven = OvenNow()
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
                self.oven.zones_c = [float(z) for z in params.get("zones_c", ())]
                self.oven.belt_mm_min = params.get("conveyor_mm_min")
                self.oven.profile = params.get("profile_id")
        elif event.kind is EventKind.STEP_ENDED:
            if tool.wafer == event.wafer_id:
                tool.wafer, tool.step = None, ""
            peak = (data.get("measurements") or {}).get("peak_c")
            if data.get("step_kind") == "reflow" and isinstance(peak, int | float):
                self.oven.last_peak_c = float(peak)
        elif event.kind is EventKind.TOOL_NOTE:
            tool.note = str(data.get("text", ""))
        elif event.kind is EventKind.ALARM_SET:
            tool.alarm = f"{data.get('code')} {data.get('text')}"
        elif event.kind is EventKind.ALARM_CLEARED:
            tool.alarm = ""

"""``bumpline tools``: each tool's SEMI E10 state now, from what the controller recorded.

The controller records a tool's E10 state when it changes (a step starts, a
changeover, an alarm) but not when a step ends, so the latest record of an idle
tool still says *productive*. This command checks the tool's latest step: when
none runs, the tool is shown in *standby* since that step's end. A tool state
the controller did not record is shown as what the controller knows (``busy:
print LOT-07``, ``idle``). The controller records the tool's own state (``READY``,
``IDLE``) when it reads it, after an E10 change of a tool nobody works on.

Several lines may share one database and name their tools alike: a tool is a
line's tool, and its steps are those of the lots that line runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from controller.line.e10 import E10State
from controller.store import LotState, StepInfo, Store, ToolStateInfo


@dataclass(frozen=True)
class ToolNow:
    state: ToolStateInfo  # as shown (derived where the record is stale)
    derived: bool  # True when not the latest record as written


def latest_steps(
    store: Store, since: datetime | None, line_id: str | None = None
) -> dict[str, StepInfo]:
    """Each tool's latest step among lots that may have run since ``since`` (``line_id``:
    lots of that line only; None: every lot, for tool states recorded without a line)."""
    latest: dict[str, StepInfo] = {}
    for lot in store.list_lots(line_id=line_id):
        live = lot.state in (LotState.RUNNING.value, LotState.HELD.value)
        recent = lot.ended_at is not None and (since is None or lot.ended_at >= since)
        if lot.started_at is None or not (live or recent):
            continue
        for wafer in store.wafers(lot.id):
            for step in store.steps(wafer.id):
                seen = latest.get(step.tool)
                if seen is None or step.started_at > seen.started_at:
                    latest[step.tool] = step
    return latest


def tools_now(store: Store, line_id: str | None = None) -> list[ToolNow]:
    """Every tool's state now, by line and tool (``line_id``: that line's tools only)."""
    states = store.tool_states_latest(line_id)
    since = min((s.at for s in states), default=None)
    steps = {line: latest_steps(store, since, line) for line in {s.line_id for s in states}}
    shown = []
    for s in states:
        step = steps[s.line_id].get(s.tool)
        if s.e10_state == E10State.PRODUCTIVE.value and step is not None and step.ended_at:
            idle = replace(s, e10_state=E10State.STANDBY.value, tool_state="idle",
                           at=max(step.ended_at, s.at), tool_time=step.tool_time_end,
                           reason=f"{step.kind} {step.wafer_id} ended; no step since")
            shown.append(ToolNow(idle, True))
        elif not s.tool_state:
            busy = step is not None and step.ended_at is None
            what = f"busy: {step.kind} {step.wafer_id}" if busy and step else "—"
            if s.e10_state == E10State.UNSCHEDULED_DOWN.value:
                what = "alarm" if s.reason.startswith("alarm") else "down"
            shown.append(ToolNow(replace(s, tool_state=what), True))
        else:
            shown.append(ToolNow(s, False))
    return shown

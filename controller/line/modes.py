"""Tool modes on a running line: a tool people took out of production gets no new wafer.

An engineer puts a line's tool in engineering, maintenance or offline (the
screen or ``bumpline tools mode``); the store keeps it (``tool_modes``, by line
and tool: ``oven-1`` of another line is not this one's), so a controller that
restarts keeps it too. The modes read here are those of the store's line
(``Store(line_id=…)``, the line the controller drives). The controller looks at
the modes when it starts and with the people's requests (about once a second:
they come from other processes too) and applies a change here:

- the scheduler gives the tool no new wafer, batch or changeover
  (``ScheduledTool.out_of_production``); a wafer running on it, or riding the
  oven's belt, finishes first: stopping a step half way is an abort, and an
  abort is a person's explicit decision, not a side effect of a mode;
- its E10 state follows once it is idle: engineering, scheduled down
  (maintenance) or non-scheduled (offline) instead of standby; an alarm still
  shows as unscheduled down (controller/line/e10.py);
- a ``tool_mode`` event says so on the line event stream;
- back in production, what the controller remembers having sent the tool (the
  printer's and mounter's RCP, the cleaner's recipe registers) is forgotten and
  its setup read again: people may have changed them meanwhile.

Wafers whose next step only that tool can run wait for it, as for a tool being
called back: back in production, they go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from controller.line.e10 import E10State, ToolMode
from controller.line.events import EventKind, LineEventStream
from controller.line.scheduled import ScheduledTool
from controller.persistence.tool_modes import ToolModeInfo
from sequences.kinds import forget_tool

log = logging.getLogger("controller.line.modes")

MODE_E10 = {
    ToolMode.ENGINEERING: E10State.ENGINEERING,
    ToolMode.MAINTENANCE: E10State.SCHEDULED_DOWN,
    ToolMode.OFFLINE: E10State.NON_SCHEDULED,
}

RecordE10 = Callable[[str, E10State, str], None]


class ToolModes:
    """The modes of one controller's tools, as last read from the store."""

    def __init__(self, tools: dict[str, ScheduledTool], events: LineEventStream,
                 record_e10: RecordE10) -> None:
        self.tools = tools
        self.events = events
        self.record_e10 = record_e10
        self.modes: dict[str, ToolModeInfo] = {}

    def apply(self, modes: dict[str, ToolModeInfo], *, announce: bool = True) -> bool:
        """Take the store's modes; True when one of this line's tools changed mode.
        ``announce=False`` at a start: modes found then are not changes (no event)."""
        changed = False
        for name, tool in self.tools.items():
            info = modes.get(name)
            mode = info.mode if info is not None else ToolMode.PRODUCTION
            previous = ToolMode(tool.out_of_production or ToolMode.PRODUCTION)
            if mode is previous:
                continue
            changed = True
            tool.out_of_production = "" if mode is ToolMode.PRODUCTION else mode.value
            if info is not None:
                self.modes[name] = info
            else:
                self.modes.pop(name, None)
            working = tool.busy or bool(tool.riding)
            if mode is ToolMode.PRODUCTION:
                # People may have changed its recipe or setup while it was out (an
                # engineer's RCP with the same stencil shows in no status): what we sent
                # is sent again, its setup read again.
                forget_tool(tool.driver)
                if not working:
                    tool.setup = None
            if announce:
                self.events.publish(
                    EventKind.TOOL_MODE, tool=name, mode=mode.value, previous=previous.value,
                    by=info.set_by if info else "", reason=info.reason if info else "",
                    finishing=sorted(tool.riding | ({tool.holder} if tool.holder else set())))
            log.info("%s: mode %s (was %s)", name, mode.value, previous.value)
            if not (working or tool.alarm or tool.lost):
                # Idle now: its E10 state changes now; else when its wafer is out (standby).
                self.record_e10(name, E10State.STANDBY, "back in production")
        return changed

    def e10(self, tool: str, state: E10State, reason: str) -> tuple[E10State, str]:
        """What E10 state a tool the scheduler calls idle (standby) is in: its mode's."""
        slot = self.tools.get(tool)
        if state is not E10State.STANDBY or slot is None or not slot.out_of_production:
            return state, reason
        mode = ToolMode(slot.out_of_production)
        info = self.modes.get(tool)
        return MODE_E10[mode], f"mode {mode.value}" + (
            f" by {info.set_by}: {info.reason}" if info and info.reason else "")


class IdleModes:
    """Between lots no controller runs (``bumpline serve`` waiting for one), yet a tool
    people take out of production is in its mode's E10 state at once: the serve loop
    calls ``look`` about once a second. ``forget`` when a lot ran: the modes found
    then are not changes to announce again, only states to record (the store keeps
    one row per change)."""

    def __init__(self, store: Any, events: LineEventStream | None) -> None:
        self.store = store
        self.events = events
        self.seen: dict[str, ToolMode] | None = None

    def forget(self) -> None:
        self.seen = None

    def look(self) -> None:
        modes = self.store.tool_modes()
        first, self.seen = self.seen is None, dict(self.seen or {})
        for name, info in modes.items():
            previous = self.seen.get(name)
            if previous is info.mode:
                continue
            self.seen[name] = info.mode
            state = MODE_E10.get(info.mode, E10State.STANDBY)
            reason = (f"mode {info.mode.value} by {info.set_by}: {info.reason}"
                      if info.mode is not ToolMode.PRODUCTION else "back in production")
            if self.events is not None and not first:
                self.events.publish(EventKind.TOOL_MODE, tool=name, mode=info.mode.value,
                                    previous=(previous or ToolMode.PRODUCTION).value,
                                    by=info.set_by, reason=info.reason, finishing=[])
            if self.store.record_tool_state(name, state, reason=reason) and self.events:
                self.events.publish(EventKind.TOOL_STATE, tool=name, e10_state=state.value,
                                    previous=None, reason=reason)

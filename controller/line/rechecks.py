"""Wafers held at a tool's interlock for a condition with no alarm to clear, looked at again.

A step's interlock check holds its wafer on what the tool shows. An alarm is the tool
alarms' (``tool_alarms.py``: cleared, then the wafers it held go on). The rest are
conditions the tool loses by itself or by a person at it: the cleaner's DI rinse water
or chemistry low, a bath off its temperature, a tool still busy, a HostLink tool whose
door kept refusing the wafer's LOD with NAK 06 and latches nothing. Nobody looked at those
again: the wafer waited for a person after the water had recovered. Now, while wafers are
held at such an interlock, the tool is read once every RECHECK_S tool s (one status for
all of them, beside the scheduler's passes; none on the normal path, where no wafer is
held), and a wafer whose step the tool's interlocks refuse no more goes back to waiting.
Never a bypass: its step's own interlock check runs again before anything is sent, and a
refusal no status shows (NAK 06) is only asked again, the tool still refusing while it
lasts.

Not looked at again: a hold with a reason of the wafer's own (its history: an alloy, a
remelt; no look at the tool changes it), a batch's (its interlock weighs the whole batch,
the bath's life: a person replenishes), a person's hold, an internal error. A setup that
differs (a stencil changed at the console) comes back only if a person sets it back. A
setup the hold did not name (the line changed the tool over for another wafer since: a
printer held at low paste, changed over ahead for the other print) is no refusal: the
scheduler changes the setup for a waiting wafer as for any other (``refusing``).

When the run ends: it waits for the looks while one can still bring a wafer back, for up
to RECHECK_FOR_S tool s from the wafer's first hold at its step (a hold again after a look
resumed it counts from the first). Then the wafer is left held for a person, told once,
and the run ends if nothing else moves (exit 3): as it ends with wafers held for an alarm
only a person's remedy clears, and never hangs on a condition nobody removes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from controller.line.journal import INTERLOCK
from controller.line.scheduled import ScheduledTool, ScheduledWafer, ToolReport
from drivers.clock import Clock
from drivers.errors import ToolError
from sequences.kinds import kind_of
from sequences.recipes.history import history_interlocks
from sequences.wafer.machine import Phase

log = logging.getLogger("controller.line.scheduler")

# Tool seconds between two looks at a tool with wafers held at its interlock. What they
# wait for changes over minutes (DI water recovering, a person closing a door or
# replenishing), so a minute more is small beside it; one read a minute per such tool, as
# the oven's ALARM_LOOK_S and a setup's alarm looks (SETUP_ALARM_LOOK_S).
RECHECK_S = 60.0
# How long the run waits for the looks to bring a wafer back: as long as a step waits for
# a tool busy with other work (the runner's FREE_TIMEOUT_S). A DI dip or a door left open
# is minutes; past this a person is needed, and the run must not hang.
RECHECK_FOR_S = 1800.0


def refusing(kind: Any, step: Any, view: Any, wafer_id: str, why: str) -> list[str]:
    """Why the tool still refuses a wafer held for ``why``: its interlocks, less a setup
    mismatch the hold did not name (the line's own changeover since, which a changeover
    for this wafer undoes before its step: not a condition for a person)."""
    mismatches = kind.setup_mismatches(step, view)
    return [reason for reason in kind.interlocks(step, view, wafer_id)
            if reason not in mismatches or reason in why]


@dataclass
class _Held:
    step: int
    why: str  # its hold's reason: the wafer held with another since (a person) is not ours
    since: float  # tool time of its first hold at this step
    seen: list[str] = field(default_factory=list)  # what the last look found refusing it


class InterlockRechecks:
    """The wafers held at the interlocks of one scheduler's tools, and the looks at them."""

    def __init__(self, clock: Clock, tools: dict[str, ScheduledTool],
                 wafers: dict[str, ScheduledWafer], report: Callable[[ToolReport], None],
                 spawn: Callable[[Coroutine[Any, Any, object]], asyncio.Task[object]],
                 on_alarm: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self.clock = clock
        self.tools = tools
        self.wafers = wafers
        self._report = report
        self._spawn = spawn
        # A look found the tool in alarm: the alarm's way, all its wafers at once (one read).
        self._on_alarm = on_alarm
        self._held: dict[str, dict[str, _Held]] = {}  # tool -> wafer -> its hold
        self._first: dict[tuple[str, int], float] = {}  # (wafer, step) -> first hold
        self._due: dict[str, float] = {}  # tool -> tool time of its next look
        self._looks: dict[str, asyncio.Task[object]] = {}

    def held(self, tool: ScheduledTool, wafer_id: str) -> None:
        """The wafer's step was held at ``tool``'s interlock, the tool showing no alarm:
        looked at again if the hold is the tool's alone (see the module's docstring)."""
        wafer = self.wafers.get(wafer_id)
        if wafer is None:
            return
        run = wafer.run
        number = run.machine.step
        why = run.machine.hold_reason
        # The hold: this run's last move, or, with none yet, the stored one recovery found
        # at this tool (restored, and handed here by the tool's name it stored).
        last = run.events[-1] if run.events else None
        if (run.phase is not Phase.HELD or number is None or not why.startswith(INTERLOCK)
                or (last is not None and (last.trigger != "hold" or last.tool != tool.name
                                          or last.why != why))):
            return  # not the step's interlock: a person's hold, an internal error
        step = run.recipe.step(number)
        if kind_of(step).batch or history_interlocks(number, step, run.history, run.alloys,
                                                     run.options):
            return
        now = self.clock.now()
        since = self._first.setdefault((wafer_id, number), now)
        hold = _Held(number, why, since)
        if now - since >= RECHECK_FOR_S:  # held again after the last look's resume
            self._leave(tool.name, wafer_id, hold)
            return
        for elsewhere in self._held.values():  # held at another tool of the role before
            elsewhere.pop(wafer_id, None)
        self._held.setdefault(tool.name, {})[wafer_id] = hold
        self._due.setdefault(tool.name, now + RECHECK_S)

    @property
    def pending(self) -> bool:
        """Wafers held at an interlock that a look may still bring back: the run waits."""
        return bool(self._held) or bool(self._looks)

    def check(self) -> None:
        """From every scheduler pass: holds a person moved forgotten, those looked at long
        enough left for a person, and a look started at each tool due one (beside the pass,
        as a CLEAR is; not at a tool a step holds, in alarm or silent: its step, its alarm
        handling or its call-back comes first)."""
        if not self._held:
            return
        now = self.clock.now()
        for name, held in list(self._held.items()):
            for wafer_id, hold in list(held.items()):
                if not self._ours(wafer_id, hold):
                    del held[wafer_id]
                elif now - hold.since >= RECHECK_FOR_S:
                    del held[wafer_id]
                    self._leave(name, wafer_id, hold)
            if not held:
                del self._held[name]
                self._due.pop(name, None)
                continue
            tool = self.tools[name]
            if now >= self._due[name] and name not in self._looks and not (
                    tool.busy or tool.alarm or tool.lost):
                self._due[name] = now + RECHECK_S
                task = self._looks[name] = self._spawn(self._look(tool))
                task.add_done_callback(partial(self._look_ended, name))

    def _look_ended(self, name: str, _task: asyncio.Task[object]) -> None:
        self._looks.pop(name, None)

    def _ours(self, wafer_id: str, hold: _Held) -> bool:
        """Still held as we registered it (not resumed, continued or held by a person)."""
        wafer = self.wafers.get(wafer_id)
        return (wafer is not None and wafer.run.phase is Phase.HELD
                and wafer.run.machine.step == hold.step
                and wafer.run.machine.hold_reason == hold.why)

    def _leave(self, tool: str, wafer_id: str, hold: _Held) -> None:
        still = f": it shows {'; '.join(hold.seen)}" if hold.seen else ""
        self._report(ToolReport(tool, "note", f"{wafer_id}: still held at its interlock after "
                                f"{RECHECK_FOR_S:g} tool s of looks at {tool}{still}; left "
                                "held for a person: continued, it goes on", wafer_id=wafer_id))

    async def _look(self, tool: ScheduledTool) -> None:
        """One status read of the tool for every wafer held at its interlock: each whose step
        it refuses no more goes back to waiting. An alarm latched since is handed to the tool
        alarms (recorded, cleared, then the wafers go on: their interlocks checked again)."""
        held = self._held.get(tool.name, {})
        status: Any = None
        try:
            for wafer_id, hold in list(held.items()):
                if not self._ours(wafer_id, hold):
                    continue  # moved by a person meanwhile: the next pass forgets it
                run = self.wafers[wafer_id].run
                step = run.recipe.step(hold.step)
                kind = kind_of(step)
                if status is None:
                    status = await kind.check_status(tool.driver)
                    if getattr(status, "alarm_code", 0):
                        # Still ours (the run waits, no look while the tool is in alarm)
                        # until the CLEAR resumes them or the time is up.
                        await self._on_alarm(tool, *(alarmed for alarmed, its in held.items()
                                                     if self._ours(alarmed, its)))
                        return
                if kind.busy(status, wafer_id):
                    continue
                view = await kind.look(tool.driver, step, wafer_id, status)
                hold.seen = refusing(kind, step, view, wafer_id, hold.why)
                if not hold.seen and self._ours(wafer_id, hold):  # (not moved meanwhile)
                    held.pop(wafer_id, None)
                    run.resume(f"{tool.name} looked at again: its interlocks refuse the step "
                               "no more; they are checked again before the step")
        except ToolError as exc:  # its next look, or a step, finds out more
            log.warning("%s: looking again at the wafers held at its interlock: %s",
                        tool.name, exc)

"""Picking wafers up after the controller stopped (Ctrl-C, a crash, SIGKILL).

The store says what *may* have happened (every transition was committed before
the tool command after it); the tools say what *did*. A wafer continues only
where the answer is unambiguous, otherwise it waits for an engineer:

Stored state -> what the tool shows -> what happens:

* queued, waiting, held, awaiting disposition: the run is restored as it was. A wafer the
  line held at a step's interlock (its hold's reason "interlock: …", not a person's) is
  handed to the line's alarm handling as a watching controller's step would (``held_at``):
  a tool in alarm is cleared and the wafer goes on; a condition with no alarm is looked at
  again (controller/line/rechecks.py). Before, it stayed held for a person after a restart,
  the water recovered or the alarm cleared.
* awaiting disposition, its step failed, and its tool still holds it (stopped after the
  failure was stored, before the line's hand-out): handed out as after any failure (the
  line's ``after_failure``: an alarm still latched recorded and CLEARed first).
* running or judging a print or placement, and the tool holds the wafer: start it if
  it was only loaded, wait for its result, judge it, go on.
* running a print or placement, and the tool does not hold it: it was never loaded
  (the load follows the committed transition, and only a judged wafer is unloaded),
  so it waits for a tool again - unless its start (PRT, PLC) was journalled: then the
  tool forgot what it may have done (a restart, a power loss) and an engineer decides.
* running or judging a clean, and the cleaner's last result names this wafer with a
  newer cycle count than its earlier cleans: take that result, judge it, go on.
* running a clean that the cleaner neither holds nor reports: never loaded, waits again.
* running a reflow, and the wafer reaches (or sits at) the exit, or is the oven's last
  exit result: take that result; the reflow happened once.
* running a reflow, the belt is empty, the oven never showed it and no LOAD intent was
  recorded: never loaded, waits again (nothing was reflowed). With an open LOAD
  intent it may have ridden: an engineer decides.
* running a placement after its ``repair`` transition (committed before RPR), and the
  mounter holds the wafer: REPAIRING, or a result other than the one stored before the
  repair, says RPR arrived: judged as repaired (never a second RPR). The same result as
  before: RPR may or may not have arrived: an engineer decides.
* judging (its result taken and stored with ``step_done``) and its tool no longer holds
  it: only a judged wafer is unloaded, so the stop fell between the unload and the
  judgment's commit. It is judged again from what ``step_done`` stored; nothing is sent.
* running or judging, and the tool holds the wafer in ALARM (an alarm latched while no
  controller watched; for the plater, its carrier, the batch ended by it): the step
  failed, as with a controller watching: awaiting disposition, the alarm recorded naming
  it (a batch's riders: every one, once), and the wafer or carrier handed out once the
  alarm is cleared (the line's ``after_failure``), so it never blocks the wafers behind it.
* running or judging a batch that ended OK, its carrier kept in the plater by an alarm that
  latched before its UNLOAD: the riders are judged from the result (never plated again),
  and, as with a controller watching, the alarm is recorded naming them, one judged good
  is held at once, and they go on once the alarm is cleared and the carrier is out (the
  line's ``carrier_kept``).
* anything else: awaiting disposition, with what was found.

A reflow is never run again without an engineer's disposition. A start recovery sends
itself (a wafer loaded and never started) is journalled as an intent first, like the
step's own, so a second stop finds it.

Each kind's own rule (``StepKind.settle``) asks its tool; this module groups the
wafers found mid-step by tool (every wafer riding one oven is settled in one
pass), settles each exactly once, and carries out what the kind found.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from controller.line.journal import INTERLOCK, StoreJournal
from controller.line.scheduled import ToolReport
from controller.line.scheduler import ScheduledTool, ScheduledWafer
from controller.line.tool_alarms import for_a_person
from controller.store import Store
from drivers.clock import Clock
from drivers.errors import ToolError
from drivers.types import Alarm
from sequences.kinds import kind_of
from sequences.kinds.base import (
    KeptInside,
    NeverTaken,
    Recovering,
    Settled,
    StoppedByAlarm,
    TakeResult,
)
from sequences.kinds.batch import Batch
from sequences.recipes.history import HistoryEntry, WaferHistory
from sequences.recipes.recipe import Recipe, Step
from sequences.wafer.machine import AWAITING, HELD, Phase, state_of, waiting
from sequences.wafer.runner import WaferRun

log = logging.getLogger("controller.line.recovery")

Note = Callable[[str, str], None]  # (wafer, text)
# The line's handling of a batch's carrier an alarm keeps in its tool after the batch ended
# (``ToolAlarms.carrier_kept``): the tool, the carrier, its step and number, the riders, the
# alarm.
CarrierKept = Callable[[ScheduledTool, Batch, Step, int, list[ScheduledWafer], Alarm], None]
# The line's handling of wafers a step's interlock held at a tool (``ToolAlarms.tool_down``).
HeldAt = Callable[..., Awaitable[None]]


class FailedInside(Protocol):
    """The line's handling of wafers an alarm failed inside their tool (``also_hit``: the
    others it failed with the first, a batch's riders)."""

    def __call__(self, wafer: ScheduledWafer, step: Step, tool: ScheduledTool, *,
                 also_hit: tuple[str, ...] = ()) -> Awaitable[None]: ...


class Recovery:
    """Restores wafer runs from the store and settles those found mid-step."""

    def __init__(self, store: Store, journal: StoreJournal, clock: Clock, note: Note,
                 *, cause: str = "controller stopped",
                 report: Callable[[ToolReport], None] | None = None,
                 failed_inside: FailedInside | None = None,
                 carrier_kept: CarrierKept | None = None,
                 held_at: HeldAt | None = None) -> None:
        """``cause``: what interrupted the steps, as the notes and holds say it. ``report``:
        where an alarm a tool shows latched (raised while no controller watched) is recorded
        with the line's alarms, and its clearing (the scheduler's reports go there too).
        ``failed_inside``: the line's handling of wafers whose step an alarm failed with
        them inside (the alarm recorded naming them and cleared, the wafer or the batch's
        carrier handed out). ``carrier_kept``: its handling of a carrier an alarm keeps in
        after the batch ended OK (the riders held until it is cleared and the carrier out).
        ``held_at``: its handling of wafers a step's interlock held at a tool (the tool and
        the wafers: its alarm cleared, or the tool looked at again)."""
        self.cause = cause
        self.store = store
        self.journal = journal
        self.clock = clock
        self.note = note
        self.report = report
        self.failed_inside = failed_inside
        self.carrier_kept = carrier_kept
        self.held_at = held_at

    def history(self, recipe: Recipe, wafer_id: str) -> WaferHistory:
        """What the wafer has been through, from its finished steps."""
        history = WaferHistory()
        for step in self.store.steps(wafer_id):
            if step.status != "done" and not step.disposition:
                continue
            recipe_step = recipe.step(step.step_index)
            history.record(HistoryEntry(
                step.step_index, recipe_step.kind, getattr(recipe_step, "alloy", None),
                (step.results or {}).get("peak_c"), step.disposition or "",
                (step.results or {}).get("ni_um")))
        return history

    def restored_run(self, recipe: Recipe, wafer_id: str, state: str) -> WaferRun:
        """A run restored to the stored state; mid-step wafers are settled by ``settle``."""
        events = self.store.events(wafer_id)
        run = WaferRun(recipe, wafer_id, self.clock, journal=self.journal,
                       history=self.history(recipe, wafer_id))
        last = events[-1] if events else None
        if state == HELD:
            held_from = last.from_state if last is not None and last.to_state == HELD \
                else waiting(1)
            run.restore(HELD, held_from=held_from, hold_reason=last.why if last else "")
        elif state == AWAITING:
            failed = last.step_index if last is not None else None  # the step that failed
            run.restore(AWAITING, step=failed, failed_step=failed)
        else:
            run.restore(state)
            number = state_of(state).step
            if state_of(state).in_step and number is not None:
                self.journal.adopt(wafer_id, self._open_step(wafer_id, number))
        return run

    async def settle(self, wafers: Iterable[ScheduledWafer],
                     tools: Mapping[str, ScheduledTool]) -> None:
        """Ask the tools about every wafer that was mid-step, and settle each one once.

        The wafers are grouped by the tool that had them before anything is asked, so a
        wafer one settlement moves on is never taken for mid-step by another. Then the
        wafers found awaiting disposition are looked for in their tools (``_left_inside``)."""
        wafers = list(wafers)
        failed = [w for w in wafers if w.run.machine.where.phase is Phase.AWAITING]
        by_tool: dict[str, list[ScheduledWafer]] = {}
        for wafer in wafers:
            where = wafer.run.machine.where
            if not where.in_step or where.step is None:
                continue
            tool_name = self._last_tool(wafer.run.wafer_id, where.step)
            if tool_name is None or tool_name not in tools:
                self._to_disposition(wafer, f"{self.cause} during step {where.step} "
                                     f"({wafer.run.machine.step_kind}); tool "
                                     f"{tool_name or 'unknown'} is not on this line")
                continue
            by_tool.setdefault(tool_name, []).append(wafer)
        for tool_name, group in by_tool.items():
            await self._settle_tool(tools[tool_name], group)
        for wafer in failed:
            await self._left_inside(wafer, tools)
        self.journal.flush()  # what recovery decided is stored before the line goes on
        await self._take_up_holds(wafers, tools)

    async def _take_up_holds(self, wafers: Iterable[ScheduledWafer],
                             tools: Mapping[str, ScheduledTool]) -> None:
        """Wafers the line held at a step's interlock at a tool before the stop, handed to
        its alarm handling by tool (one alarm read for all of a tool's), as the step would
        have as it ended held; also the line's hold of waiting wafers for an alarm only a
        person's remedy clears (they go on once it is cleared, as with the line watching).
        Not a person's hold, nor one that names no tool, nor one the line left for a
        person (``for_a_person``: a tool out of service for the stopped run), nor one at a
        tool no longer on this line: those stay held, their reason saying why."""
        if self.held_at is None:
            return
        by_tool: dict[str, list[str]] = {}
        for wafer in wafers:
            run = wafer.run
            number = run.machine.step
            if (run.phase is not Phase.HELD or number is None
                    or run.machine.held_from != waiting(number)
                    or not run.machine.hold_reason.startswith(INTERLOCK)):
                continue
            events = self.store.events(run.wafer_id)
            hold = events[-1] if events else None
            if (hold is not None and hold.trigger == "hold" and hold.tool is not None
                    and hold.tool in tools and hold.why == run.machine.hold_reason
                    and not for_a_person(hold.why)):
                by_tool.setdefault(hold.tool, []).append(run.wafer_id)
        for tool, held in by_tool.items():
            await self.held_at(tools[tool], *held)

    async def _left_inside(self, wafer: ScheduledWafer, tools: Mapping[str, ScheduledTool]
                           ) -> None:
        """A wafer whose step failed is handed out by the line after the failure is stored
        (``after_failure``: an alarm recorded and CLEARed, then the tool's abort and
        unload). A stop in between left it in its tool, which then refused every wafer
        after it ("interlock: cleaner is DONE") with nobody to take it out (the independent
        soak's seed 7 plan 24: killed between the START and ABORT that bring an FC-1's
        wafer a CLEAR left LOADED to DONE and its UNLOAD). The tool is asked whether it
        still holds the wafer; if so, the line hands it out as after any failure."""
        run = wafer.run
        number = run.machine.failed_step
        if number is None or self.failed_inside is None:
            return
        tool_name = self._last_tool(run.wafer_id, number)
        tool = tools.get(tool_name or "")
        if tool is None or tool.lost:
            return
        step = run.recipe.step(number)
        record = next((s for s in reversed(self.store.steps(run.wafer_id))
                       if s.step_index == number), None)
        started = record is not None and any(
            i.outcome != "failed" for i in self.store.step_intents(record.id))
        try:
            inside = await kind_of(step).holds(tool.driver, run.wafer_id, started)
        except ToolError as exc:
            self.note(run.wafer_id, f"step {number} failed; {tool.name} could not be asked "
                      f"whether it still holds the wafer: {exc}")
            return
        if inside:
            self.note(run.wafer_id, f"step {number} failed and {tool.name} still holds it "
                      f"(the {self.cause} before it was handed out): handing it out")
            await self.failed_inside(wafer, step, tool)

    async def _settle_tool(self, tool: ScheduledTool, group: list[ScheduledWafer]) -> None:
        first = group[0]
        kind = kind_of(first.run.recipe.step(first.in_step))
        try:
            found = await kind.settle_all(tool.driver, [
                (w.run.recipe.step(w.in_step), self._recovering(w, tool.name, group))
                for w in group], self.clock)
        except ToolError as exc:
            for wafer in group:
                self._to_disposition(wafer, f"{self.cause} during step "
                                     f"{wafer.run.machine.where.step} ({kind.name}) and "
                                     f"{tool.name} could not be asked: {exc}")
            return
        stopped = [w for w in group if isinstance(found[w.run.wafer_id], StoppedByAlarm)]
        step = stopped[0].run.recipe.step(stopped[0].in_step) if stopped else None
        kept = [w for w in group if isinstance(found[w.run.wafer_id], KeptInside)]
        for wafer in group:
            settled, number = found[wafer.run.wafer_id], wafer.in_step
            await self._carry_out(wafer, tool, settled)
            if (isinstance(settled, KeptInside) and settled.carrier is not None
                    and settled.alarm is not None and self.carrier_kept is not None):
                # Right after its judgment, nothing run between: judged good, it is held, and
                # goes on once the alarm is cleared and its carrier out (the first call
                # records the alarm naming every rider).
                self.carrier_kept(tool, settled.carrier, wafer.run.recipe.step(number), number,
                                  kept, settled.alarm)
        if step is not None and self.failed_inside is not None:
            # Once for the tool: one alarm names every wafer it stopped (a batch's riders),
            # and what it keeps inside comes out once.
            await self.failed_inside(stopped[0], step, tool, also_hit=tuple(
                w.run.wafer_id for w in stopped[1:]))

    def _alarm_found(self, tool: str, group: list[ScheduledWafer], code: int, text: str,
                     cleared: bool) -> None:
        if self.report is None:
            return
        if cleared:
            self.report(ToolReport(tool, "alarm_cleared", code=code))
            return
        hit = tuple(w.run.wafer_id for w in group)
        self.report(ToolReport(tool, "alarm", f"{text} (found latched by recovery)"
                               .strip(), code, wafer_id=hit[0], wafers=hit))

    def _recovering(self, wafer: ScheduledWafer, tool: str, group: list[ScheduledWafer]
                    ) -> Recovering:
        run = wafer.run
        number = wafer.in_step
        kind = run.machine.step_kind
        # Transitions and answers riding on the next transaction: these reads need them.
        self.journal.flush()
        earlier = tuple(s.results or {} for s in self.store.steps(run.wafer_id)
                        if s.kind == kind and s.step_index != number)
        step_id = self.journal.step_record(run.wafer_id)
        intents = tuple(i.command for i in self.store.step_intents(step_id)
                        if i.outcome != "failed") if step_id is not None else ()
        judging = run.machine.where.phase.value == "judging"
        return Recovering(run.wafer_id, number, judging, earlier, intents,
                          lambda text: self.note(run.wafer_id, text),
                          self._measured(run.wafer_id, number) if judging else None,
                          None if judging else self._before_repair(run.wafer_id, number),
                          self.journal,
                          lambda code, text, cleared: self._alarm_found(tool, group, code,
                                                                        text, cleared))

    async def _carry_out(self, wafer: ScheduledWafer, tool: ScheduledTool, found: Settled) -> None:
        run = wafer.run
        number = run.machine.where.step
        if isinstance(found, TakeResult):
            self.note(run.wafer_id, found.how)
            try:
                await run.adopt_result(tool.driver, found.result, unloaded=found.unloaded,
                                       alarms=found.alarms, repaired=found.repaired)
            except ToolError as exc:
                self._to_disposition(wafer, f"{tool.name}: its result was taken, then: {exc}")
        elif isinstance(found, StoppedByAlarm):  # handed out by ``_settle_tool``
            self._to_disposition(wafer, f"{self.cause} during step {number} "
                                 f"({run.machine.step_kind}); {found.why}")
        elif isinstance(found, NeverTaken):
            self.note(run.wafer_id, f"step {number}: {found.why}; it waits for a tool again")
            run.back_to_waiting(f"recovery: {found.why}")
        else:
            self._to_disposition(wafer, f"{self.cause} during step {number} "
                                 f"({run.machine.step_kind}); {getattr(found, 'why', found)}")

    def _measured(self, wafer_id: str, number: int) -> dict[str, Any] | None:
        """What the step's last ``step_done`` stored: the judgment's measurements."""
        for event in reversed(self.store.events(wafer_id)):
            if event.step_index != number:
                continue
            if event.trigger == "step_done":
                return dict(event.measurements or {}) or None
            if event.trigger in ("tool_acquired", "repair"):
                return None  # the result after it was never stored
        return None

    def _before_repair(self, wafer_id: str, number: int) -> dict[str, Any] | None:
        """A step running after its ``repair`` transition (committed before the repair
        command, so the command may have reached the tool): what the ``step_done`` before
        it stored. None when the step's last transition is not a repair."""
        events = [e for e in self.store.events(wafer_id) if e.step_index == number]
        if not events or events[-1].trigger != "repair":
            return None
        for event in reversed(events):
            if event.trigger == "step_done":
                return dict(event.measurements or {})
        return None

    def _last_tool(self, wafer_id: str, number: int) -> str | None:
        for event in reversed(self.store.events(wafer_id)):
            if event.step_index == number and event.tool:
                return event.tool
        return None

    def _open_step(self, wafer_id: str, number: int) -> int | None:
        for step in reversed(self.store.steps(wafer_id)):
            if step.step_index == number and step.status == "running":
                return step.id
        return None

    def _to_disposition(self, wafer: ScheduledWafer, why: str) -> None:
        self.note(wafer.run.wafer_id, why)
        wafer.run.fail_recovered(why)



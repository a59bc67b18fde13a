"""Running one wafer through a recipe (or a range of its steps).

``WaferRun`` owns the wafer's state machine and the asyncio task of the step in
progress. The caller picks the tool for each step (``await run.run_step(driver)``)
and may hold, resume, abort or disposition the wafer from outside at any time.
Every move is a ``WaferEvent`` committed by the wafer journal before the next
tool command is sent; what each step does on its tool is its kind's
(``sequences.kinds``). ``run_wafer`` is the simple loop ``bumpline sequence run``
uses: prepare the tool, run the step, for each step in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Any, Literal, TypeAlias, TypeVar

from drivers.clock import Clock
from drivers.errors import LinkError, ToolAlarm, ToolError, ToolTimeout
from drivers.protocols import AnyTool
from drivers.tools import LineTools
from sequences.errors import InterlockError, SequenceError
from sequences.kinds import ROLE_OF_KIND, AnyKind, kind_of
from sequences.kinds.base import (
    BeforeEntry,
    StepContext,
    StepResult,
    ToolView,
    set_tool_note,
    wait_free,
)
from sequences.kinds.batch import Batch
from sequences.recipes.alloys import AlloyLibrary, default_alloys
from sequences.recipes.history import HistoryEntry, WaferHistory, history_interlocks
from sequences.recipes.recipe import Recipe, Step
from sequences.recipes.validate import DEFAULT_OPTIONS, ValidationOptions
from sequences.wafer.journal import MemoryJournal, StepClosed, StepOpened, WaferJournal
from sequences.wafer.judge import Judgment
from sequences.wafer.machine import (
    ABORTED,
    AWAITING,
    QUEUED,
    Phase,
    WaferEvent,
    WaferMachine,
    waiting,
)
from sequences.wafer.recovery import RecoveryMoves

log = logging.getLogger("sequences.wafer.runner")
TRACEBACK_KEPT = 4000  # characters of an internal error's traceback stored with its event



class _Stop(Enum):
    STOPPED = "stopped"


_STOPPED = _Stop.STOPPED  # tool work ended by abort, hold or a failure (the state says which)
Stopped: TypeAlias = Literal[_Stop.STOPPED]
T = TypeVar("T")
WAFER_ID = re.compile(r"^[\x20-\x7e]{1,16}$")
DISPOSITIONS = ("continue", "retry", "scrap")
FREE_TIMEOUT_S = 1800.0  # how long a step waits for a tool busy with other work


def parse_step_range(text: str | None, count: int) -> tuple[int, int]:
    """'2-4', '3' or None (all) -> (first, last), 1-based inclusive."""
    if text is None or text == "":
        return 1, count
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise SequenceError(f"steps '{text}': expected N or N-M (e.g. 2-4)")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    if not 1 <= first <= last <= count:
        raise SequenceError(f"steps '{text}': the recipe has steps 1-{count}")
    return first, last


class WaferRun(RecoveryMoves):
    """One wafer through steps first..last of a recipe; what recovery does with it is
    ``RecoveryMoves`` (sequences/wafer/recovery.py)."""

    def __init__(
        self,
        recipe: Recipe,
        wafer_id: str,
        clock: Clock,
        *,
        journal: WaferJournal | None = None,
        steps: tuple[int, int] | None = None,
        history: WaferHistory | None = None,
        alloys: AlloyLibrary | None = None,
        options: ValidationOptions = DEFAULT_OPTIONS,
    ) -> None:
        if not WAFER_ID.match(wafer_id) or set(wafer_id) & set("$*,"):
            raise SequenceError(
                f"wafer id {wafer_id!r}: expected 1-16 printable characters without $ * ,")
        self.recipe = recipe
        self.wafer_id = wafer_id
        self.clock = clock
        self.journal: WaferJournal = journal if journal is not None else MemoryJournal()
        self.first, self.last = steps or (1, len(recipe.steps))
        self.alloys = alloys or default_alloys()
        self.options = options
        self.history = history if history is not None else WaferHistory.assumed(recipe, self.first)
        self.events: list[WaferEvent] = []  # this run's own moves, in order
        self.machine = WaferMachine(
            wafer_id, [s.kind for s in recipe.steps], first=self.first, last=self.last,
            on_event=self._deliver, now=clock.now,
        )
        self.judgments: dict[int, Judgment] = {}  # last judgment per step
        self.results: dict[int, object] = {}  # last raw tool result per step (reflow curves)
        self.tool_notes: list[str] = []  # what abort left the tool doing
        self._task: asyncio.Task[object] | None = None
        self._driver: AnyTool | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._hold_after: str | None = None
        self._stop_requested = False
        self._step_open = False  # a step record is open (from tool_acquired to its end)
        # The tool stopped answering during the last step (None: it answered). The wafer is
        # left where it was - waiting, or in its step - for whoever owns the tool to settle
        # by asking the tool once it answers again; a silence is no verdict on the wafer.
        self.link_lost: LinkError | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self.machine.state

    @property
    def phase(self) -> Phase:
        return self.machine.where.phase

    @property
    def done(self) -> bool:
        return self.machine.done

    @property
    def next_step(self) -> int | None:
        """The step waiting for a tool, or None."""
        where = self.machine.where
        return where.step if where.phase is Phase.WAITING else None

    @property
    def next_role(self) -> str | None:
        """The role of the tool the waiting step needs, or None."""
        number = self.next_step
        return ROLE_OF_KIND[self.machine.kinds[number - 1]] if number else None

    def _deliver(self, event: WaferEvent) -> None:
        self.events.append(event)
        self.journal.record(event)

    def _fire(self, trigger: str, *, why: str = "", tool: str | None = None,
              measurements: dict[str, Any] | None = None, opens: StepOpened | None = None,
              closes: StepClosed | None = None, deferrable: bool = False) -> WaferEvent:
        if opens is not None:
            self._step_open = True
        elif self._step_open and trigger in ("judged_ok", "step_failed", "abort"):
            closes = closes or self._closing(trigger, why, measurements)
        if closes is not None:
            self._step_open = False
            deferrable = deferrable and closes.curve_c is None
        return self.machine.fire(trigger, why=why, tool=tool, measurements=measurements,
                                 opens=opens, closes=closes, deferrable=deferrable)

    def _closing(self, trigger: str, why: str, measurements: dict[str, Any] | None
                 ) -> StepClosed:
        status = {"judged_ok": "done", "step_failed": "failed", "abort": "aborted"}[trigger]
        results = dict(measurements or {})
        if trigger != "judged_ok" and why:
            results.setdefault("why", why)
        number = self.machine.step
        curve = None
        if number is not None and number in self.results:
            step = self.recipe.step(number)
            curve = kind_of(step).curve(step, self.results[number])
            if curve is not None and not curve[0]:
                curve = None  # judged again from stored measurements: no curve came with them
        return StepClosed(status, results, *(curve or (None, None)))

    # --- moves from outside --------------------------------------------------------------------

    def start(self, why: str = "", *, deferrable: bool = False) -> WaferEvent:
        """``deferrable``: the caller sends this wafer's tools nothing before its next
        transition (the scheduler queues it; ``run_step`` only reads the tool first)."""
        return self._fire("start", why=why or f"recipe {self.recipe.name} "
                          f"v{self.recipe.version} {self.recipe.hash[:12]}",
                          deferrable=deferrable)

    def hold(self, why: str, *, tool: str | None = None) -> WaferEvent | None:
        """Hold the wafer now; while a step runs, hold it as soon as the step ends.
        ``tool``: the tool whose interlock holds a waiting wafer (named by its event)."""
        if self.machine.where.in_step:
            self._hold_after = why or "hold requested"
            return None
        event = self._fire("hold", why=why, tool=tool)
        self._stop_work()  # stop waiting for the tool
        return event

    @property
    def hold_requested(self) -> bool:
        """A hold asked for while a step runs, waiting for the step's end."""
        return self._hold_after is not None

    def resume(self, why: str = "") -> WaferEvent:
        return self._fire("resume", why=why)

    async def abort(self, why: str) -> WaferEvent:
        """Abort at once: the event first, then the step's task is cancelled and the tool
        gets ABT and hands the wafer out. A wafer already on the oven belt cannot be
        stopped: it rides to the exit, where the running step takes it off."""
        before = self.machine.where
        number = self.machine.step
        event = self._fire("abort", why=why, tool=getattr(self._driver, "name", None))
        step = self.recipe.step(number) if number else None
        if before.phase is Phase.WAITING:
            await self._stop_task()
        elif before.in_step and step is not None and not kind_of(step).rides_out:
            await self._stop_task()
            self.tool_notes += await kind_of(step).abort(self._driver, step, self.wafer_id)
        return event

    def _stop_work(self) -> bool:
        """Cancel the tool work in progress (from another task); False if there is none."""
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return False
        if not self._stop_requested:  # one cancellation: a second would read as from outside
            self._stop_requested = True
            task.cancel()
        return True

    async def _stop_task(self) -> None:
        if self._stop_work():
            await self._idle.wait()  # the step has let go of the tool

    def disposition(self, decision: str, why: str) -> WaferEvent:
        """An engineer's decision for a wafer awaiting disposition (or scrap for a held one)."""
        if decision not in DISPOSITIONS:
            raise SequenceError(f"disposition '{decision}': expected {' | '.join(DISPOSITIONS)}")
        if not why.strip():
            raise SequenceError("a disposition needs a reason")
        failed = self.machine.failed_step
        if decision == "scrap":
            return self._fire("scrap", why=why)
        if decision == "retry":
            if self.state == AWAITING and not self.machine.may("retry"):
                kind = self.machine.step_kind
                raise SequenceError(
                    f"wafer {self.wafer_id}: step {failed} ({kind}) cannot be retried"
                    + (": a reflow is never repeated" if kind == "reflow" else
                       ": its retry would restart before this run's first step"))
            event = self._fire("retry", why=why)
            self.history.forget_from(self.machine.step or self.first)
            return event
        event = self._fire("continue_as_is", why=why)
        if failed is not None:
            self._record(failed, self.judgments.get(failed), accepted_as_is=why)
        return event

    # --- running a step --------------------------------------------------------------------------

    async def run_step(self, driver: AnyTool, *,
                       on_tool_free: Callable[[], None] | None = None,
                       batch: Batch | None = None,
                       note: Callable[[str], None] | None = None) -> str:
        """Run the waiting step on ``driver``; returns the wafer's state afterwards.

        Interlocks first (a refusal holds the wafer, nothing is sent to the tool);
        then the step in this task; then the judgment against the recipe's windows.
        ``on_tool_free``: a pipelined tool (the oven) may take the next wafer now.
        ``batch``: a batch tool's step rides with others (``sequences.kinds.batch``).
        ``note``: where the step tells an operator of the tool (a wait at its interlock).
        """
        if self.state == QUEUED:
            self.start(deferrable=True)  # the interlocks only read the tool before the next
        number = self.next_step
        if number is None:
            raise SequenceError(
                f"wafer {self.wafer_id} is {self.state}: no step is waiting for a tool")
        step = self.recipe.step(number)
        kind_of(step).check_driver(driver)
        if not self._idle.is_set():
            raise SequenceError(f"wafer {self.wafer_id}: a step is already running")
        self._idle.clear()
        self._driver = driver
        try:
            return await self._run_step(number, step, driver, on_tool_free, batch, note)
        except SequenceError:
            raise  # asked for a step the wafer cannot run: the caller's mistake
        except Exception as exc:
            # A fault of ours (a bug, not the tool's word): the wafer goes to an engineer
            # with the reason and the line goes on (left to the scheduler's task, the wafer
            # stayed running with no step to run it and the run never ended). One line on
            # the terminal; the traceback is stored with the wafer's event for the bug
            # report (and logged at -vv).
            log.error("%s: step %d on %s ended on an internal error: %s: %s", self.wafer_id,
                      number, driver.name, type(exc).__name__, exc)
            log.debug("the internal error's traceback", exc_info=exc)
            self._internal_error(exc, driver.name)  # a store that cannot record it: raised
            return self.state
        finally:
            self._task = None
            self._idle.set()

    def _internal_error(self, exc: Exception, tool: str) -> None:
        why = f"internal error: {type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))[-TRACEBACK_KEPT:]
        facts = {"error": type(exc).__name__, "traceback": trace}
        if self.machine.may("step_failed"):  # the tool may hold the wafer: its abort runs
            self._fire("step_failed", why=why, tool=tool, measurements=facts)
        elif self.machine.may("hold"):  # nothing was sent for it yet
            self._fire("hold", why=why, tool=tool, measurements=facts)

    async def _run_step(self, number: int, step: Step, driver: AnyTool,
                        on_tool_free: Callable[[], None] | None, batch: Batch | None = None,
                        note: Callable[[str], None] | None = None) -> str:
        here = waiting(number)
        tool = driver.name
        kind = kind_of(step)
        self.link_lost = None
        checked: tuple[list[str], ToolView[Any] | None] | Stopped
        try:
            checked = await self._tool_work(self._readiness(number, step, kind, driver, batch))
        except LinkError as exc:  # nothing was sent that changes the tool: it still waits
            self.link_lost = exc
            return self.state
        except ToolError as exc:
            checked = ([str(exc)], None)
        if checked is _STOPPED or self.state != here:  # held or aborted meanwhile
            return self.state
        reasons, seen = checked
        if reasons or seen is None:  # None: reading the tool failed, and says why
            self._fire("hold", why="interlock: " + "; ".join(reasons), tool=tool)
            return self.state
        self._fire("tool_acquired", why=f"{step.kind} on {tool}", tool=tool,
                   opens=StepOpened(step.kind, kind.parameters(step), kind.windows(step)))
        ctx = StepContext(self.wafer_id, self.clock, self.recipe.tool_recipe_name(number),
                          self.journal, on_tool_free or (lambda: None), batch,
                          note or (lambda _: None))
        if note is not None:
            set_tool_note(driver, note)  # the unload's and repair's waits are told too
        outcome = await self._step_work(kind.execute(driver, step, ctx, seen), tool)
        if outcome is _STOPPED:
            return self.state
        return await self._finish(number, step, driver, outcome)

    async def _finish(self, number: int, step: Step, driver: AnyTool,
                      outcome: StepResult, *, unloaded: bool = False) -> str:
        """Judge what the tool measured, repair where allowed, unload, and move on."""
        tool = driver.name
        kind = kind_of(step)
        judgment = self._judge(step, outcome, repaired=outcome.repaired)
        if not judgment.ok and not judgment.repair:
            checked = await self._step_work(self._confirmed(step, driver, outcome, judgment),
                                            tool)
            if checked is _STOPPED:
                return self.state
            outcome, judgment = checked
        self.results[number] = outcome.result
        # step_done is committed at once, even with nothing to unload: a crash after it finds
        # the wafer judging and judges it again from what it stored; before it, running, and
        # an oven wafer gone from the belt would need an engineer (decision 0017).
        if self.phase is Phase.RUNNING:
            self._fire("step_done", why=f"{step.kind} finished", tool=tool,
                       measurements=judgment.measurements)
        while judgment.repair:
            self._fire("repair", why=judgment.why, tool=tool)
            result = await self._step_work(kind.repair(driver, self.results[number]), tool)
            if result is _STOPPED:
                return self.state
            self.results[number] = result
            judgment = self._judge(step, StepResult(result), repaired=True)
            self._fire("step_done", why="repair finished", tool=tool,
                       measurements=judgment.measurements)
        self.judgments[number] = judgment
        if not unloaded and await self._step_work(kind.unload(driver, step),
                                                  tool) is _STOPPED:
            return self.state
        if judgment.ok:
            # Out of the tool: nothing is sent for this wafer before its next step's
            # tool_acquired, and a crash before it commits finds the wafer judging and judges
            # it again from its step_done (decision 0017). Not a batch's (its carrier may go
            # out after it), nor before a batch (its record, written apart, names the wafer),
            # nor one that stores a curve (recovery could not rebuild it).
            following = number + 1 if number < self.last else None
            self._fire("judged_ok", why=judgment.why, tool=tool,
                       measurements=judgment.measurements,
                       deferrable=not kind.batch and not (
                           following and kind_of(self.recipe.step(following)).batch))
            self._record(number, judgment)
            if self._hold_after is not None and self.phase is Phase.WAITING:
                why, self._hold_after = self._hold_after, None
                self._fire("hold", why=why)
        else:
            self._fire("step_failed", why=judgment.why, tool=tool,
                       measurements=judgment.measurements)
        return self.state

    async def _readiness(
        self, number: int, step: Step, kind: AnyKind, driver: AnyTool, batch: Batch | None
    ) -> tuple[list[str], ToolView[Any]]:
        reasons = history_interlocks(number, step, self.history, self.alloys, self.options)
        tool_reasons, seen = await self._tool_interlocks(step, kind, driver, batch)
        if tool_reasons:
            # Not on one read alone: a reply damaged where the wire has no checksum (Modbus
            # TCP: a wrong value, not an error) held a wafer for a person with nothing wrong
            # (the oven's active profile read as another: the random soak, seed 3 plan 7).
            # The tool is read once more, and what it says then is its word; a refusal
            # it repeats holds the wafer as before. Never bypassed: the step starts only
            # from a read that passes every interlock.
            tool_reasons, seen = await self._tool_interlocks(step, kind, driver, batch)
        return reasons + tool_reasons, seen

    async def _tool_interlocks(self, step: Step, kind: AnyKind, driver: AnyTool,
                               batch: Batch | None) -> tuple[list[str], ToolView[Any]]:
        """One read of the tool once it is free: what its interlocks refuse, and the view."""
        status = await wait_free(kind, driver, self.wafer_id, self.clock, FREE_TIMEOUT_S)
        seen = await kind.look(driver, step, self.wafer_id, status)
        if batch is not None:  # an interlock may weigh the whole cycle (the plater's bath life)
            seen = dataclasses.replace(seen, wafers=len(batch.members))
        tool_reasons = kind.interlocks(step, seen, self.wafer_id)
        if getattr(status, "alarm_code", 0):  # name the alarm, not just its number
            alarm = await driver.alarm()
            if alarm is not None:
                tool_reasons = [f"alarm {alarm.code} {alarm.text} active"
                                if r.startswith("alarm ") else r for r in tool_reasons]
        return tool_reasons, seen

    async def _tool_work(self, coro: Awaitable[T]) -> T | Stopped:
        """Run tool work in this task, marked so abort and hold can reach it at once (they
        cancel the task; the cancellation arrives inside the work); _STOPPED when they did.

        No task of its own: a task per piece of tool work cost two event-loop turns each,
        a sixth of the controller's CPU per wafer (docs/decisions/0009).
        """
        task = asyncio.current_task()
        self._stop_requested = False
        self._task = task
        try:
            result = await coro
        except asyncio.CancelledError:
            # Ours alone (hold/abort), not also a cancellation of the task from outside.
            if self._stop_requested and task is not None and task.cancelling() == 1:
                task.uncancel()
                return _STOPPED
            raise
        finally:
            self._task = None
        return _STOPPED if self.state == ABORTED else result

    async def _step_work(self, coro: Awaitable[T], tool: str) -> T | Stopped:
        """Tool work of a running step: a tool alarm, timeout or error fails the step
        (awaiting disposition, with the alarm's code and text); _STOPPED then too. A tool
        that stopped answering leaves the step open (``link_lost``): _STOPPED."""
        try:
            return await self._tool_work(coro)
        except LinkError as exc:
            self.link_lost = exc  # the step stays open: the tool's word settles it later
        except BeforeEntry as exc:
            # Nothing of this wafer reached the tool: no engineer's disposition for a wafer
            # that never went in; it waits again, held at the tool's interlock.
            self.back_to_waiting(f"{exc.detail} before the wafer went in")
            if self.machine.may("hold"):
                self._fire("hold", why=f"interlock: {exc.interlock}", tool=tool)
        except ToolAlarm as exc:
            self._fail(f"alarm {exc.code} {exc.text}".strip(), tool,
                       {"alarm_code": exc.code, "alarm_text": exc.text})
        except ToolTimeout as exc:
            self._fail(f"timeout: {exc.detail}", tool, {})
        except ToolError as exc:
            self._fail(f"tool error: {exc.detail}", tool, {"error": type(exc).__name__})
        return _STOPPED

    def _fail(self, why: str, tool: str, measurements: dict[str, Any]) -> None:
        if self.machine.may("step_failed"):
            self._fire("step_failed", why=why, tool=tool, measurements=measurements)

    async def _confirmed(self, step: Step, driver: AnyTool, outcome: StepResult,
                         judgment: Judgment) -> tuple[StepResult, Judgment]:
        """A failed judgment stands once the tool, asked again (``read_again``: a link with
        no checksum), says the same; a reading that differs is settled by a third (two
        alike decide). Three unlike, or none to be had: the first stands."""
        kind = kind_of(step)
        first = outcome.result
        second = await kind.read_again(driver, step, first, self.wafer_id)
        if second is None or second == first:
            return outcome, judgment
        third = await kind.read_again(driver, step, first, self.wafer_id)
        if third != second:
            log.warning("%s: %s's result read three times, %s", self.wafer_id, step.kind,
                        "the first and the third alike" if third == first else
                        "unlike each time: the first stands")
            return outcome, judgment
        log.warning("%s: %s's result read again twice, alike and not as first read (a "
                    "damaged reply): judged on them", self.wafer_id, step.kind)
        again = dataclasses.replace(outcome, result=second)
        return again, self._judge(step, again, repaired=outcome.repaired)

    def _judge(self, step: Step, outcome: StepResult, *, repaired: bool) -> Judgment:
        judgment = kind_of(step).judge(step, outcome.result, self.wafer_id, repaired=repaired)
        if outcome.alarms:
            texts = tuple(f"alarm {a.code} {a.text} during the pass" for a in outcome.alarms)
            judgment = Judgment(False, judgment.findings + texts,
                                {**judgment.measurements,
                                 "alarms": [f"{a.code} {a.text}" for a in outcome.alarms]})
        return judgment

    def _record(self, number: int, judgment: Judgment | None, accepted_as_is: str = "") -> None:
        step = self.recipe.step(number)
        measured = judgment.measurements if judgment else {}
        self.history.record(HistoryEntry(number, step.kind, getattr(step, "alloy", None),
                                         measured.get("peak_c"), accepted_as_is,
                                         measured.get("ni_um")))


async def check_interlocks(driver: AnyTool, step: Step, wafer_id: str) -> None:
    """Raise InterlockError naming every reason the tool must not take the step now."""
    kind = kind_of(step)
    kind.check_driver(driver)
    view = await kind.look(driver, step, wafer_id, await driver.status())
    reasons = kind.interlocks(step, view, wafer_id)
    if reasons:
        raise InterlockError(driver.name, reasons)


ToolPicker = Callable[[AnyKind], AnyTool]
Tools: TypeAlias = LineTools | Mapping[str, AnyTool]


def _picker(tools: Tools) -> ToolPicker:
    """Tools as a LineTools (by_role) or a role -> driver mapping."""
    if isinstance(tools, LineTools):
        def pick(kind: AnyKind) -> AnyTool:
            found = [d for d in tools.by_role(kind.role) if kind.can_run(d)]
            if not found:
                raise SequenceError(f"the line has no {kind.role} that can take a "
                                    f"{kind.name} step")
            return found[0]
        return pick
    if isinstance(tools, Mapping):
        def pick_mapped(kind: AnyKind) -> AnyTool:
            if kind.role not in tools:
                raise SequenceError(f"no {kind.role} given (have: {', '.join(tools)})")
            return tools[kind.role]
        return pick_mapped
    raise SequenceError("tools: expected the line's tools or a role -> driver mapping")


async def run_wafer(
    recipe: Recipe,
    wafer_id: str,
    tools: Tools,
    clock: Clock,
    *,
    steps: tuple[int, int] | None = None,
    journal: WaferJournal | None = None,
    on_prepare: Callable[[str], None] | None = None,
    history: WaferHistory | None = None,
) -> WaferRun:
    """Prepare the tool and run the step, for each step in order, until the wafer is
    complete, held, awaiting disposition or aborted. Returns the run (state, events)."""
    pick = _picker(tools)
    run = WaferRun(recipe, wafer_id, clock, steps=steps, journal=journal, history=history)
    run.start()
    while (number := run.next_step) is not None:
        step = recipe.step(number)
        kind = kind_of(step)
        driver = pick(kind)

        def note(text: str, tool: str = driver.name) -> None:
            if on_prepare is not None:
                on_prepare(f"{tool}: {text}")

        try:
            await kind.prepare(driver, step, clock=clock,
                               recipe_name=recipe.tool_recipe_name(number), note=note)
        except ToolError as exc:
            run.hold(f"preparing {driver.name} for step {number} ({step.kind}) failed: {exc}")
            break
        await run.run_step(driver)
        run.give_up_on_link()
    return run


"""The scheduler: runs the wafers of one or more lots across the line's tools.

Policy (docs/scheduling.md has the reasoning and the lower bound):

* A free tool takes the waiting wafer that needs its *current* setup, most urgent
  lot first, then the wafer that has waited longest.
* A tool changes setup (printer stencil and paste, mounter balls, oven profile,
  cleaner bath) only when no unfinished wafer still needs the current setup on
  it. For a rebump lot that is the whole first pass, one changeover, then the
  whole second pass.
* The oven carries several wafers: the next wafer is dispatched as soon as the
  previous one is on the belt and the entrance is clear; each wafer's own step
  takes it off at the exit at once, so the exit never blocks.
* A tool with a latched alarm is out of service: its wafer goes to disposition,
  the alarm is recorded, and the rest of the line keeps going. The controller
  sends CLR once the wafer is out; the tool accepts it only if the cause is gone
  (a door still open keeps it down), so no interlock is bypassed
  (controller/line/tool_alarms.py).
* A tool that stops answering is out of service until it answers again and
  the wafers it had are settled (controller/line/silent.py).
* An idle tool whose setup is not known is set up ahead of its wafers, for the
  first step on it the most urgent wafer will need (controller/line/ahead.py).
* Every wafer transition is committed before the tool command that follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from controller.line import ahead, batching, silent
from controller.line.scheduled import ScheduledTool, ScheduledWafer, ToolReport
from controller.line.tool_alarms import ToolAlarms, read_alarm
from drivers.clock import Clock
from drivers.errors import LinkError, ToolError
from drivers.protocols import AnyTool
from drivers.types import Alarm
from sequences.kinds import ROLE_OF_KIND, AnyKind, kind_of
from sequences.kinds.base import SetupKey
from sequences.kinds.batch import Batch
from sequences.kinds.oven_exit import off_alarm, on_alarm, watch_of
from sequences.recipes.recipe import Step
from sequences.wafer.machine import Phase
from sequences.wafer.runner import WaferRun

if TYPE_CHECKING:
    from controller.line.batch_records import BatchRecords

log = logging.getLogger("controller.line.scheduler")

IDLE_WAKE_S = 0.2  # wall seconds between looks at operator requests and tool alarms


class _StepFacts(NamedTuple):
    """What dispatching asks of a waiting step: its kind and the setup it needs (the same
    for every wafer of a recipe at that step, so looked up once, not on every pass)."""

    kind: AnyKind
    key: SetupKey


def _urgency(wafer: ScheduledWafer) -> tuple[int, float, int]:
    """Dispatch order: most urgent lot first, then the wafer that waited longest (then slot
    order: the key is unique, so any two passes order the same wafers alike)."""
    return wafer.priority, wafer.ready_since, wafer.order


# What settles the wafers a tool had when it went silent, once it answers again (the
# controller's recovery: each kind asks its tool).
class LineSide(Protocol):
    """The scheduler's one collaborator: the line that records what it reports, carries out
    people's requests, and settles the wafers a tool had when it stopped answering."""

    def report(self, report: ToolReport) -> None: ...
    def poll_requests(self) -> None: ...
    async def settle(self, tool: ScheduledTool, wafers: list[ScheduledWafer]) -> None: ...


class _Unattended:
    """No line behind the scheduler (tests of its policy): reports are logged."""

    def report(self, report: ToolReport) -> None:
        log.info("%s: %s %s", report.tool, report.what, report.text)

    def poll_requests(self) -> None:
        pass

    async def settle(self, tool: ScheduledTool, wafers: list[ScheduledWafer]) -> None:
        pass


class Scheduler:
    """Run wafers (``add_wafer``) on the line's tools until none can make progress."""

    def __init__(
        self,
        tools: dict[str, tuple[str, AnyTool]],  # name -> its role and driver
        clock: Clock,
        *,
        line: LineSide | None = None,
    ) -> None:
        self.clock = clock
        self.tools = {name: ScheduledTool(name, role, driver)
                      for name, (role, driver) in tools.items()}
        self.wafers: dict[str, ScheduledWafer] = {}
        self.line: LineSide = line or _Unattended()
        self._report = self.line.report
        self.alarms = ToolAlarms(clock, self.tools, self.wafers, self._report, self.wake,
                                 self._spawn)
        self.held_lots: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()
        # Of those, the setups (changeovers, setting up ahead): they hold no wafer, so a stop
        # does not wait for them; the tool goes on with it and the next run reads the tool.
        self._setups: set[asyncio.Task[object]] = set()
        self._timed_wake: asyncio.Task[None] | None = None  # dispatch again at a tool time
        self._timed_wake_at = 0.0
        self._stopping = False
        self._order = 0
        self.batch_log: BatchRecords | None = None  # where batches are recorded
        self._roles: frozenset[str] | None = None  # roles_in_play, until a wafer is added
        # The wafers not yet final, in the order added: a final wafer never moves again, so
        # a pass drops it rather than looking at it on every later pass.
        self._unfinished: dict[str, ScheduledWafer] = {}
        self._facts: dict[tuple[int, int | None], _StepFacts] = {}  # (id of recipe, step) -> facts
        self._passed = 0.0  # loop time the last pass ended (the idle heartbeat counts from it)
        self._beat: asyncio.TimerHandle | None = None

    # --- wafers ------------------------------------------------------------------------------

    def add_wafer(self, run: WaferRun, lot_id: str, priority: int) -> ScheduledWafer:
        self._order += 1
        slot = ScheduledWafer(run, lot_id, priority, self._order, ready_since=self.clock.now())
        self.wafers[run.wafer_id] = slot
        self._unfinished[run.wafer_id] = slot
        self._roles = None
        if run.phase is Phase.QUEUED:
            run.start(deferrable=True)  # it waits: its step's tool_acquired commits it
        self.wake()
        return slot

    def roles_in_play(self) -> frozenset[str]:
        """The roles some step of some wafer's recipe needs (a tool of another role has
        nothing to set up ahead for)."""
        if self._roles is None:
            self._roles = frozenset(ROLE_OF_KIND[kind] for w in self.wafers.values()
                                    for kind in w.run.machine.kinds)
        return self._roles

    def note(self, tool: ScheduledTool, text: str) -> None:
        self._report(ToolReport(tool.name, "note", text))

    def report(self, report: ToolReport) -> None:
        """Tell the line (a batch started or ended: controller/line/batching.py)."""
        self._report(report)

    def spawn(self, coro: Coroutine[Any, Any, object], *, setup: bool = False) -> None:
        """Run work the scheduler waits for before it stops (an abort's tool work); a
        ``setup`` (no wafer in it) is not waited for: a stop cancels it."""
        self._spawn(coro, setup=setup)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """No new steps start; running ones finish (Ctrl-C)."""
        self._stopping = True
        self.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running_steps(self) -> int:
        return sum(1 for w in self.wafers.values() if w.running)

    def _waiting(self) -> list[ScheduledWafer]:
        """The wafers waiting for a tool and free to take one, in the order added."""
        held = self.held_lots
        waiting = []
        final = None
        for w in self._unfinished.values():
            where = w.run.machine.where
            if where.phase is Phase.WAITING:
                if not w.running and w.lot_id not in held:
                    waiting.append(w)
            elif where.final:
                final = final or []
                final.append(w.run.wafer_id)
        for wafer_id in final or ():
            del self._unfinished[wafer_id]
        return waiting

    def _step_facts(self, wafer: ScheduledWafer) -> _StepFacts:
        """The kind and setup key of the step the wafer waits to run."""
        run = wafer.run
        number = run.machine.where.step
        key = (id(run.recipe), number)  # the wafers hold their recipes: the id stays theirs
        facts = self._facts.get(key)
        if facts is None:
            number = wafer.waiting  # (says so if it is not waiting)
            step = run.recipe.step(number)
            kind = kind_of(step)
            facts = self._facts[key] = _StepFacts(kind, kind.setup_key(step))
        return facts

    def _progressing(self) -> bool:
        """Anything that can still move without a person: a step running, a wafer waiting."""
        # Cheapest first: a running step has a task; only then look at every wafer. A tool
        # that went silent is being called back (a task): the lot waits for it. A wafer whose
        # every tool failed its setup with no alarm to clear (-1) waits for a person: the run
        # ends and says so, rather than waiting for ever.
        if len(self._tasks) > len(self._setups) or self.running_steps:  # setups: a subset
            return True  # (a setup alone is no progress: no wafer left may need it)
        # An oven's wafers whose steps gave up on them (a belt an alarm stopped) still ride:
        # the run waits while its exit watcher looks for them, or the first to come out
        # blocks the exit for the next (alarm 530) with nobody left to take it off.
        if any((watch := watch_of(t.driver)) is not None and watch.watching_late
               for t in self.tools.values()):
            return True
        # A batch's carrier an alarm keeps in the tool: its riders, held, go on once the alarm
        # is cleared (as a wafer waiting for a tool in alarm does) and the carrier is out.
        # Wafers held at an interlock with no alarm: the looks at the tool may bring them
        # back, for a while (controller/line/rechecks.py).
        if self.alarms.keeping or self.alarms.rechecks.pending:
            return True
        usable = {t.role for t in self.tools.values() if t.alarm != -1}
        return any(w.run.next_role in usable for w in self._waiting())

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch until every wafer is final, held or awaiting disposition (and nothing runs),
        or until ``stop()`` and the running steps have finished."""
        loop = asyncio.get_running_loop()
        listeners = {t.driver: partial(self.alarms.on_belt, t)
                     for t in self.tools.values() if t.role == "oven"}
        for driver, listener in listeners.items():
            on_alarm(driver, listener)
        # A pass at least every IDLE_WAKE_S: one timer that follows the passes, not a
        # timeout armed and cancelled around every wait (a pass per wafer transition).
        self._beat = loop.call_later(IDLE_WAKE_S, self._heartbeat)
        try:
            while True:
                self._wake.clear()  # a wake that comes while we dispatch is kept
                self.line.poll_requests()
                if self._stopping:
                    if len(self._tasks) == len(self._setups):
                        return
                else:
                    if any(tool.alarm > 0 for tool in self.tools.values()):
                        self.alarms.check()
                    self.alarms.rechecks.check()
                    await self._dispatch()
                    if not self._progressing():
                        await self.alarms.look_at_the_end()
                        if not self._stopping:  # a stop meanwhile: nothing more is decided
                            self.alarms.hold_for_tools_down()
                        return
                self._passed = loop.time()
                await self._wake.wait()
        finally:
            self._beat.cancel()
            await self._cancel_tasks()
            for driver, listener in listeners.items():
                off_alarm(driver, listener)

    def _heartbeat(self) -> None:
        """No pass for IDLE_WAKE_S: make one (operator requests, alarms to clear); else look
        again IDLE_WAKE_S after the last."""
        loop = asyncio.get_running_loop()
        due = self._passed + IDLE_WAKE_S
        if loop.time() >= due:
            self.wake()
            due = loop.time() + IDLE_WAKE_S
        self._beat = loop.call_at(due, self._heartbeat)

    def _wake_at(self, tool_time: float) -> None:
        """Dispatch again at this tool time (when the oven's entrance clears): the loop's
        heartbeat is in wall seconds, hundreds of tool seconds at simulator speed."""
        pending = self._timed_wake
        if pending is not None and not pending.done():
            if self._timed_wake_at <= tool_time:
                return
            pending.cancel()

        async def later() -> None:
            await self.clock.sleep(tool_time - self.clock.now())
            self.wake()

        self._timed_wake_at = tool_time
        self._timed_wake = asyncio.create_task(later())

    async def _cancel_tasks(self) -> None:
        if self._timed_wake is not None:
            self._timed_wake.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, object], *, setup: bool = False
               ) -> asyncio.Task[object]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        if setup:
            self._setups.add(task)

        def finished(t: asyncio.Task[object]) -> None:
            self._tasks.discard(t)
            self._setups.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                # One line for the operator; the traceback for a bug report at -vv.
                log.error("scheduler task %s failed: %s: %s", t.get_name(),
                          type(exc).__name__, exc)
                log.debug("the failed task's traceback", exc_info=exc)
            self.wake()

        task.add_done_callback(finished)
        return task

    async def _dispatch(self) -> None:
        if all(tool.busy or tool.alarm or tool.lost for tool in self.tools.values()):
            return  # nothing to give out (the usual case: a step just woke us for nothing)
        try:
            await self._give_out()
        finally:
            self._standby()

    def _standby(self) -> None:
        """A tool left without work after a dispatch is in standby (E10): said once, and
        not between a step's end and the next wafer's start."""
        for tool in self.tools.values():
            if tool.working and not (tool.busy or tool.riding or tool.alarm or tool.lost):
                tool.working = False
                self._report(ToolReport(tool.name, "standby", "no wafer to take"))

    def _mark(self, tool: ScheduledTool, report: ToolReport) -> None:
        tool.working = True
        self._report(report)

    async def _give_out(self) -> None:
        waiting = self._waiting()
        if not waiting:
            return
        by_role: dict[str, list[ScheduledWafer]] = {}
        for w in waiting:
            role = w.run.next_role
            assert role is not None  # a waiting wafer has a next step
            by_role.setdefault(role, []).append(w)
        for tool in self.tools.values():
            if tool.busy or tool.alarm or tool.lost or tool.out_of_production:
                continue
            wanted = by_role.get(tool.role)
            if not wanted:
                if tool.setup is None:
                    ahead.set_up_ahead(self, tool)  # its wafers find it ready
                continue
            runs: dict[AnyKind, bool] = {}  # can_run asked once per kind, not per wafer
            able = []
            for w in wanted:
                facts = self._step_facts(w)
                can = runs.get(facts.kind)
                if can is None:
                    can = runs[facts.kind] = facts.kind.can_run(tool.driver)
                if can:
                    able.append((w, facts))
            if not able:
                continue  # e.g. strips on a line's FC-1: they wait for the FC-2
            if tool.setup is None:
                await self._learn_setup(tool, [w for w, _ in able])
            setup = tool.setup
            matching = sorted(((w, facts) for w, facts in able if facts.key == setup),
                              key=lambda entry: _urgency(entry[0]))
            same = [w for w, _ in matching]
            if same and matching[0][1].kind.batch:
                for w in self._batch(tool, same):
                    wanted.remove(w)
            elif same:
                if self.clock.now() < tool.entrance_at:  # a pipelined tool's entrance
                    self._wake_at(tool.entrance_at)  # the wafer ahead clears it then
                    continue
                self._start_step(same[0], tool)
                wanted.remove(same[0])  # the next tool of this role takes another wafer
            elif not self._still_needed(tool):
                if tool.riding:
                    continue  # a new profile needs an empty belt; wait for the riders
                self._start_changeover(tool, min((w for w, _ in able), key=_urgency))

    def _batch(self, tool: ScheduledTool, same: list[ScheduledWafer]) -> list[ScheduledWafer]:
        """A batch tool: start a batch of waiting wafers now, or wait (line/batching.py)."""
        decision = batching.choose(self, tool, same)
        if not decision.start:
            if decision.look_again_at is not None:
                self._wake_at(decision.look_again_at)
            return []
        log.info("%s: batch of %d: %s", tool.name, len(decision.start), decision.why)
        batching.start(self, decision.start, tool)
        return decision.start

    def mark_setup(self, tool: ScheduledTool, text: str) -> None:
        self._mark(tool, ToolReport(tool.name, "setup", text))

    def mark_productive(self, tool: ScheduledTool, text: str, wafer_id: str | None) -> None:
        self._mark(tool, ToolReport(tool.name, "productive", text, wafer_id=wafer_id))

    async def after_failure(self, wafer: ScheduledWafer, step: Step, tool: ScheduledTool,
                            *, also_hit: tuple[str, ...] = ()) -> None:
        await self.alarms.after_failure(wafer, step, tool, also_hit=also_hit)

    def link_lost(self, tool: ScheduledTool, wafers: list[ScheduledWafer],
                  exc: LinkError) -> None:
        silent.link_lost(self, tool, wafers[0], exc, also=tuple(wafers[1:]))

    async def tool_down(self, tool: ScheduledTool, *wafer_ids: str) -> None:
        await self.alarms.tool_down(tool, *wafer_ids)

    def carrier_kept(self, tool: ScheduledTool, batch: Batch, step: Step, number: int,
                     wafers: list[ScheduledWafer], alarm: Alarm) -> None:
        self.alarms.carrier_kept(tool, batch, step, number, wafers, alarm)

    async def _learn_setup(self, tool: ScheduledTool, wanted: list[ScheduledWafer]) -> None:
        """What the tool is set up for, from the tool; not while it changes over (a
        changeover in progress still shows the old setup): the next look learns it."""
        try:
            status = await tool.driver.status()
            for wafer in wanted:
                step = wafer.run.recipe.step(wafer.waiting)
                kind = kind_of(step)
                if kind.busy(status, ""):
                    return
                view = await kind.look(tool.driver, step, "", status)
                if not kind.setup_mismatches(step, view):
                    tool.setup = kind.setup_key(step)
                    return
        except ToolError as exc:
            log.warning("%s: cannot read setup: %s", tool.name, exc)

    def _still_needed(self, tool: ScheduledTool) -> bool:
        """Does any unfinished wafer still need this tool's current setup next on its role?"""
        if tool.setup is None:
            return False
        for wafer in self.wafers.values():
            run = wafer.run
            if run.done or wafer.lot_id in self.held_lots or run.phase in (Phase.HELD,
                                                                            Phase.AWAITING):
                continue
            start = run.next_step or (run.machine.step or 1)
            if wafer.running and run.machine.step is not None:
                start = run.machine.step + 1
            for number in range(start, run.last + 1):
                step = run.recipe.step(number)
                kind = kind_of(step)
                if kind.role == tool.role:
                    if kind.setup_key(step) == tool.setup:
                        return True
                    break
        return False

    # --- steps -------------------------------------------------------------------------------

    def _start_step(self, wafer: ScheduledWafer, tool: ScheduledTool) -> None:
        wafer.running = True
        tool.take(self.clock.now(), wafer.run.wafer_id)
        step = wafer.run.recipe.step(wafer.waiting)
        if kind_of(step).pipelined:
            tool.riding.add(wafer.run.wafer_id)
            tool.spacing_s = kind_of(step).occupancy_s(step)
        self._spawn(self._run_step(wafer, tool))

    def _handed_on(self, tool: ScheduledTool) -> None:
        """A pipelined tool took the wafer (the oven: it is on the belt): the next may
        follow once it has cleared the entrance."""
        now = self.clock.now()
        tool.entrance_at = now + tool.spacing_s
        tool.release(now)
        if tool.entrance_at > now:
            # Nothing can go onto the belt before then: a pass now would only find the
            # entrance closed and set this same timed wake.
            self._wake_at(tool.entrance_at)
        else:
            self.wake()

    async def _run_step(self, wafer: ScheduledWafer, tool: ScheduledTool) -> None:
        run = wafer.run
        number = run.next_step
        if number is None:  # aborted or held between dispatch and this task's start
            wafer.running = False
            tool.riding.discard(run.wafer_id)
            tool.release_for(run.wafer_id, self.clock.now())
            return  # the task's end wakes the loop (_spawn)
        step = run.recipe.step(number)
        self._mark(tool, ToolReport(tool.name, "productive", f"{step.kind} {run.wafer_id}",
                                    wafer_id=run.wafer_id))
        on_tool_free = (lambda: self._handed_on(tool)) if kind_of(step).pipelined else None
        try:
            await run.run_step(tool.driver, on_tool_free=on_tool_free,
                               note=partial(self.note, tool))
        except ToolError as exc:  # the runner turns tool errors into events; belt and braces
            log.error("%s: step %s of %s: %s", tool.name, number, run.wafer_id, exc)
        finally:
            wafer.running = False
            wafer.ready_since = self.clock.now()
            tool.riding.discard(run.wafer_id)
            try:
                if run.link_lost is not None:
                    silent.link_lost(self, tool, wafer, run.link_lost)
                elif run.phase is Phase.AWAITING and run.machine.failed_step == number:
                    await self.alarms.after_failure(wafer, step, tool)
                elif run.phase is Phase.HELD and run.machine.held_from == f"step{number}_waiting":
                    await self.alarms.tool_down(tool, run.wafer_id)  # held at its interlock
            finally:
                # Only now may another wafer have the tool (the failed one is out). The oven
                # was handed on at the LOAD: it is still this wafer's only if the wafer
                # never got onto the belt. The task's end wakes the loop (_spawn): a wake
                # here too would make two passes of one step's end.
                tool.release_for(run.wafer_id, self.clock.now())

    # --- changeovers -------------------------------------------------------------------------

    def _start_changeover(self, tool: ScheduledTool, wafer: ScheduledWafer) -> None:
        tool.take(self.clock.now())
        self._spawn(self._changeover(tool, wafer), setup=True)

    async def _changeover(self, tool: ScheduledTool, wafer: ScheduledWafer) -> None:
        run = wafer.run
        number = wafer.waiting
        step = run.recipe.step(number)
        kind = kind_of(step)
        facts = {"step": number, "step_kind": step.kind, **kind.setup_facts(step)}
        self._mark(tool, ToolReport(tool.name, "setup", f"setup for a {step.kind} step",
                                    wafer_id=run.wafer_id, setup=facts))
        try:
            await kind.prepare(tool.driver, step, clock=self.clock,
                               recipe_name=run.recipe.tool_recipe_name(number),
                               note=lambda text: self.note(tool, text))
            tool.setup = kind.setup_key(step)
        except LinkError as exc:  # the tool went silent mid-changeover: set up again after
            tool.setup = None
            silent.link_lost(self, tool, None, exc)
        except ToolError as exc:
            self.note(tool, f"changeover failed: {exc.detail}")
            alarm = await read_alarm(tool)
            tool.alarm = alarm.code if alarm else -1
            if alarm:
                self._report(ToolReport(tool.name, "alarm", alarm.text, alarm.code))
            else:
                tool.down_why = f"changeover failed: {exc.detail}"
        except Exception as exc:  # noqa: BLE001 - a fault of ours, not the tool's
            ahead.internal_setup_error(self, tool, "changeover", exc)
        finally:
            tool.release(self.clock.now())  # the task's end wakes the loop (_spawn)

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
  (a door still open keeps it down), so no interlock is bypassed.
* Every wafer transition is committed before the tool command that follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from controller.bound import tool_occupancy
from drivers.clock import Clock
from drivers.errors import ToolError
from sequences import steps as tool_steps
from sequences.machine import WaferEvent
from sequences.recipe import CleanStep, PlaceStep, PrintStep, Recipe, ReflowStep, Step
from sequences.runner import WaferRun

log = logging.getLogger("controller.scheduler")

IDLE_WAKE_S = 0.2  # wall seconds between looks at operator requests and tool alarms


def setup_key(step: Step) -> tuple[Any, ...]:
    """What a tool must be set up with for this step (changeovers change it)."""
    if isinstance(step, PrintStep):
        return ("print", step.stencil_id, step.paste_alloy)
    if isinstance(step, PlaceStep):
        return ("place", step.ball_alloy, step.ball_diameter_um)
    if isinstance(step, ReflowStep):
        return ("reflow", step.profile_id)
    assert isinstance(step, CleanStep)
    return ("clean", step.wash_temp_c)


@dataclass
class ToolSlot:
    """One tool as the scheduler sees it."""

    name: str
    role: str
    driver: Any
    setup: tuple[Any, ...] | None = None  # None: not known yet
    busy: bool = False  # a step or a changeover owns the tool
    holder: str | None = None  # the wafer whose step owns it (None: a changeover)
    riding: set[str] = field(default_factory=set)  # oven: wafers on the belt
    entrance_at: float = 0.0  # oven: tool time the last wafer will have cleared the entrance
    spacing_s: float = 0.0  # oven: belt time the wafer being loaded needs at the entrance
    alarm: int = 0  # latched alarm code, 0 = in service
    busy_since: float | None = None
    busy_s: float = 0.0  # tool seconds spent on steps and changeovers

    def take(self, now: float, holder: str | None = None) -> None:
        self.busy = True
        self.busy_since = now
        self.holder = holder

    def release(self, now: float) -> None:
        if self.busy_since is not None:
            self.busy_s += now - self.busy_since
        self.busy = False
        self.busy_since = None
        self.holder = None

    def release_for(self, wafer_id: str, now: float) -> None:
        """Release the tool if this wafer's step still holds it (an oven is handed on at
        the LOAD, so a step ending later must not free it under the next wafer)."""
        if self.busy and self.holder == wafer_id:
            self.release(now)


@dataclass
class WaferSlot:
    run: WaferRun
    lot_id: str
    priority: int
    order: int  # slot order within the lot, for stable tie-breaking
    ready_since: float = 0.0
    running: bool = False
    step_id: int | None = None  # the store's record of the step in progress
    last_step_id: int | None = None  # the store's record of the step that ended last


class EntranceGuard:
    """Wraps the oven driver: every LOAD gets its intent record first, and the scheduler
    hears of each wafer that goes on the belt. Every other attribute is the driver's own.

    A LOAD the oven refuses (06: the entrance still blocked, not READY) left nothing on
    the belt; the step code (sequences.steps) waits and tries again, under its per-oven
    entrance lock, and the intent recorded for the first try stays the step's one intent.
    """

    def __init__(
        self,
        driver: Any,
        on_loaded: Callable[[str], None],
        before_load: Callable[[str], None],
    ) -> None:
        self._driver = driver
        self._on_loaded = on_loaded
        self._before_load = before_load

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    async def load(self, wafer_id: str) -> None:
        self._before_load(wafer_id)  # persist the intent: a LOAD is never repeated blindly
        await self._driver.load(wafer_id)
        self._on_loaded(wafer_id)


class Scheduler:
    """Run wafers (``add_wafer``) on the line's tools until none can make progress."""

    def __init__(
        self,
        tools: dict[str, tuple[str, Any]],
        clock: Clock,
        *,
        on_event: Callable[[WaferEvent, WaferSlot], None],
        on_step_start: Callable[[WaferSlot, Step, ToolSlot], None] | None = None,
        on_tool_note: Callable[[ToolSlot, str], None] | None = None,
        on_changeover: Callable[[ToolSlot, Step], None] | None = None,
        on_alarm: Callable[[ToolSlot, int, str, str | None], None] | None = None,
        before_load: Callable[[str], None] | None = None,
        poll_requests: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.tools: dict[str, ToolSlot] = {}
        for name, (role, driver) in tools.items():
            slot = ToolSlot(name, role, driver)
            if role == "oven":
                slot.driver = EntranceGuard(
                    driver,
                    lambda _w, oven=slot: self._loaded(oven),
                    before_load or (lambda _w: None),
                )
            self.tools[name] = slot
        self.wafers: dict[str, WaferSlot] = {}
        self._on_event = on_event
        self._on_step_start = on_step_start
        self._on_changeover = on_changeover
        self._on_tool_note = on_tool_note or (
            lambda tool, text: log.info("%s: %s", tool.name, text)
        )
        self._on_alarm = on_alarm
        self._poll_requests = poll_requests
        self.held_lots: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timed_wake: asyncio.Task[None] | None = None  # dispatch again at a tool time
        self._timed_wake_at = 0.0
        self._stopping = False
        self._order = 0
        self._held_by_alarm: dict[str, set[str]] = {}  # tool -> wafers its alarm held

    # --- wafers ------------------------------------------------------------------------------

    def add_wafer(
        self,
        recipe: Recipe,
        wafer_id: str,
        lot_id: str,
        priority: int,
        *,
        run: WaferRun | None = None,
    ) -> WaferSlot:
        run = run or WaferRun(recipe, wafer_id, self.clock)
        self._order += 1
        slot = WaferSlot(run, lot_id, priority, self._order, ready_since=self.clock.now())
        run._on_event = lambda event: self._on_event(event, slot)  # noqa: SLF001
        self.wafers[wafer_id] = slot
        if run.state == "queued":
            run.start()
        self.wake()
        return slot

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

    def _waiting(self) -> list[WaferSlot]:
        return [
            w
            for w in self.wafers.values()
            if not w.running and w.run.next_step is not None and w.lot_id not in self.held_lots
        ]

    def _progressing(self) -> bool:
        """Anything that can still move without a person: a step running, a wafer waiting."""
        # Cheapest first: a running step has a task; only then look at every wafer.
        return bool(self._tasks or self.running_steps or self._waiting())

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch until every wafer is final, held or awaiting disposition (and nothing runs),
        or until ``stop()`` and the running steps have finished."""
        try:
            while True:
                self._wake.clear()  # a wake that comes while we dispatch is kept
                if self._poll_requests is not None:
                    self._poll_requests()
                if self._stopping:
                    if not self._tasks:
                        return
                else:
                    await self._check_alarms()
                    await self._dispatch()
                    if not self._progressing():
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
        finally:
            await self._cancel_tasks()

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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("scheduler task failed", exc_info=t.exception())
            self.wake()

        task.add_done_callback(finished)

    async def _dispatch(self) -> None:
        if all(tool.busy or tool.alarm for tool in self.tools.values()):
            return  # nothing to give out (the usual case: a step just woke us for nothing)
        waiting = self._waiting()
        if not waiting:
            return
        by_role: dict[str | None, list[WaferSlot]] = {}
        for w in waiting:
            by_role.setdefault(w.run.next_role, []).append(w)
        for tool in self.tools.values():
            if tool.busy or tool.alarm:
                continue
            wanted = by_role.get(tool.role)
            if not wanted:
                continue
            if tool.setup is None:
                await self._learn_setup(tool, wanted)
            wanted.sort(key=lambda w: (w.priority, w.ready_since, w.order))
            same = [w for w in wanted if self._key(w) == tool.setup]
            if same:
                if tool.role == "oven" and self.clock.now() < tool.entrance_at:
                    self._wake_at(tool.entrance_at)  # the wafer ahead clears it then
                    continue
                self._start_step(same[0], tool)
                wanted.remove(same[0])  # the next tool of this role takes another wafer
            elif not self._still_needed(tool):
                if tool.role == "oven" and tool.riding:
                    continue  # a new profile needs an empty belt; wait for the riders
                self._start_changeover(tool, wanted[0])

    def _key(self, wafer: WaferSlot) -> tuple[Any, ...]:
        return setup_key(wafer.run.recipe.step(wafer.run.next_step))

    async def _learn_setup(self, tool: ToolSlot, wanted: list[WaferSlot]) -> None:
        for wafer in wanted:
            step = wafer.run.recipe.step(wafer.run.next_step)
            try:
                if not await tool_steps.setup_mismatches(tool.driver, step):
                    tool.setup = setup_key(step)
                    return
            except ToolError as exc:
                log.warning("%s: cannot read setup: %s", tool.name, exc)
                return

    def _still_needed(self, tool: ToolSlot) -> bool:
        """Does any unfinished wafer still need this tool's current setup next on its role?"""
        if tool.setup is None:
            return False
        for wafer in self.wafers.values():
            run = wafer.run
            if (
                run.done
                or wafer.lot_id in self.held_lots
                or run.state in ("held", "awaiting_disposition")
            ):
                continue
            start = run.next_step or (run.machine.step or 1)
            if wafer.running and run.machine.step is not None:
                start = run.machine.step + 1
            for number in range(start, run.last + 1):
                step = run.recipe.step(number)
                if tool_steps.ROLE_OF_KIND[step.kind] == tool.role:
                    if setup_key(step) == tool.setup:
                        return True
                    break
        return False

    # --- steps -------------------------------------------------------------------------------

    def _start_step(self, wafer: WaferSlot, tool: ToolSlot) -> None:
        wafer.running = True
        tool.take(self.clock.now(), wafer.run.wafer_id)
        if tool.role == "oven":
            tool.riding.add(wafer.run.wafer_id)
            tool.spacing_s = tool_occupancy(wafer.run.recipe.step(wafer.run.next_step))
        self._spawn(self._run_step(wafer, tool))

    def _loaded(self, oven: ToolSlot) -> None:
        """A wafer is on the belt: the next may follow once it has cleared the entrance."""
        oven.entrance_at = self.clock.now() + oven.spacing_s
        oven.release(self.clock.now())
        self.wake()

    async def _run_step(self, wafer: WaferSlot, tool: ToolSlot) -> None:
        run = wafer.run
        number = run.next_step
        if number is None:  # aborted or held between dispatch and this task's start
            wafer.running = False
            tool.riding.discard(run.wafer_id)
            tool.release_for(run.wafer_id, self.clock.now())
            self.wake()
            return
        step = run.recipe.step(number)
        if self._on_step_start:
            self._on_step_start(wafer, step, tool)
        try:
            await run.run_step(tool.driver)
        except ToolError as exc:  # the runner turns tool errors into events; belt and braces
            log.error("%s: step %s of %s: %s", tool.name, number, run.wafer_id, exc)
        finally:
            wafer.running = False
            wafer.ready_since = self.clock.now()
            if tool.role == "oven":
                tool.riding.discard(run.wafer_id)
            try:
                failed_here = (run.state == "awaiting_disposition"
                               and run.machine.failed_step == number)
                if failed_here:
                    await self._after_failure(wafer, step, tool)
                elif run.state == "held" and "alarm" in run.machine.hold_reason:
                    await self._tool_down(tool, run.wafer_id)
            finally:
                # Only now may another wafer have the tool (the failed one is out). The oven
                # was handed on at the LOAD: it is still this wafer's only if the wafer
                # never got onto the belt.
                tool.release_for(run.wafer_id, self.clock.now())
                self.wake()

    @staticmethod
    async def _read_alarm(tool: ToolSlot) -> Any:
        """The tool's latched alarm, or None (also when the tool cannot be asked)."""
        try:
            return await tool.driver.alarm()
        except ToolError:
            return None

    async def _after_failure(self, wafer: WaferSlot, step: Step, tool: ToolSlot) -> None:
        """A failed wafer leaves the tool (so the line goes on); an alarm is recorded."""
        alarm = await self._read_alarm(tool)
        if alarm is not None:
            tool.alarm = alarm.code
            if self._on_alarm:
                self._on_alarm(tool, alarm.code, alarm.text, wafer.run.wafer_id)
            await self._try_clear(tool)
        if tool.role != "oven":
            notes = await tool_steps.abort_tool(tool.driver, step, wafer.run.wafer_id)
            for note in notes:
                self._on_tool_note(tool, f"{wafer.run.wafer_id}: {note}")

    async def _tool_down(self, tool: ToolSlot, wafer_id: str) -> None:
        """The step's interlock found the tool in alarm: the wafer is held, the tool is out of
        service until its alarm is cleared; then the wafers it held go on (interlock re-checked)."""
        alarm = await self._read_alarm(tool)
        if alarm is None:
            return
        tool.alarm = alarm.code
        self._held_by_alarm.setdefault(tool.name, set()).add(wafer_id)
        if self._on_alarm:
            self._on_alarm(tool, alarm.code, alarm.text, None)

    async def _try_clear(self, tool: ToolSlot) -> None:
        try:
            await tool.driver.clear_alarm()
        except ToolError as exc:
            self._on_tool_note(tool, f"alarm {tool.alarm} not cleared: {exc.detail}")
            return
        self._on_tool_note(tool, f"alarm {tool.alarm} cleared (cause gone)")
        if self._on_alarm:
            self._on_alarm(tool, 0, "", None)
        cleared, tool.alarm = tool.alarm, 0
        for wafer_id in sorted(self._held_by_alarm.pop(tool.name, set())):
            wafer = self.wafers.get(wafer_id)
            if wafer is not None and wafer.run.state == "held":
                wafer.run.resume(
                    f"{tool.name} back in service (alarm {cleared} cleared); "
                    "interlocks are checked again before the step"
                )

    async def _check_alarms(self) -> None:
        """Tools out of service come back when their alarm's cause is gone. A tool whose
        setup failed without an alarm (-1) has nothing to clear: it waits for a person."""
        for tool in self.tools.values():
            if tool.alarm > 0 and not tool.busy:
                await self._try_clear(tool)

    # --- changeovers -------------------------------------------------------------------------

    def _start_changeover(self, tool: ToolSlot, wafer: WaferSlot) -> None:
        tool.take(self.clock.now())
        self._spawn(self._changeover(tool, wafer))

    async def _changeover(self, tool: ToolSlot, wafer: WaferSlot) -> None:
        run = wafer.run
        number = run.next_step
        step = run.recipe.step(number)
        if self._on_changeover:
            self._on_changeover(tool, step)
        try:
            await tool_steps.prepare_tool(
                tool.driver,
                step,
                clock=self.clock,
                recipe_name=run.recipe.tool_recipe_name(number),
                log=lambda text: self._on_tool_note(tool, text.split(": ", 1)[-1]),
            )
            tool.setup = setup_key(step)
        except ToolError as exc:
            self._on_tool_note(tool, f"changeover failed: {exc.detail}")
            alarm = await self._read_alarm(tool)
            tool.alarm = alarm.code if alarm else -1
            if alarm and self._on_alarm:
                self._on_alarm(tool, alarm.code, alarm.text, None)
        finally:
            tool.release(self.clock.now())
            self.wake()


@functools.cache  # recipe steps are frozen; every wafer of a lot sends the same ones
def step_parameters(step: Step) -> Mapping[str, Any]:
    """What is sent to the tool for a step, for the store (read-only)."""
    data = asdict(step)
    data.pop("note", None)
    return MappingProxyType(data)


def step_windows(step: Step) -> dict[str, Any]:
    """The recipe's acceptance windows for a step, as [low, high] (None = open)."""
    if isinstance(step, PrintStep):
        return {
            "vol_mean_pct": list(step.vol_mean_pct),
            "vol_min_pct": [step.vol_min_pct_min, None],
            "bridges": [None, step.max_bridges],
            "insufficient": [None, step.max_insufficient],
        }
    if isinstance(step, PlaceStep):
        return {"defects": [None, step.max_defects_after_repair]}
    if isinstance(step, ReflowStep):
        return {
            "peak_c": list(step.peak_c),
            "tal_s": list(step.tal_s),
            "ramp_max_c_s": [None, step.max_ramp_c_s],
            "cool_max_c_s": [None, step.max_cool_c_s],
            "o2_max_ppm": [None, step.o2_limit_ppm],
        }
    assert isinstance(step, CleanStep)
    return {"ionic_ug_cm2": [None, step.max_ionic_ug_cm2]}

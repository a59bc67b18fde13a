"""Picking wafers up after the controller stopped (Ctrl-C, a crash, SIGKILL).

The store says what *may* have happened (every transition was committed before
the tool command after it); the tools say what *did*. A wafer continues only
where the answer is unambiguous, otherwise it waits for an engineer:

Stored state -> what the tool shows -> what happens:

* queued, waiting, held, awaiting disposition: the run is restored as it was.
* running or judging a print or placement, and the tool holds the wafer: start it if
  it was only loaded, wait for its result, judge it, go on.
* running a print or placement, and the tool does not hold it: it was never loaded
  (the load follows the committed transition, and only a judged wafer is unloaded),
  so it waits for a tool again.
* running or judging a clean, and the cleaner's last result names this wafer with a
  newer cycle count than its earlier cleans: take that result, judge it, go on.
* running a clean that the cleaner neither holds nor reports: never loaded, waits again.
* running a reflow, and the wafer reaches (or sits at) the exit, or is the oven's last
  exit result: take that result; the reflow happened once.
* running a reflow, the belt is empty, the oven never showed it and no LOAD intent was
  recorded: never loaded, waits again (nothing was reflowed). With an open LOAD
  intent it may have ridden: an engineer decides.
* anything else: awaiting disposition, with what was found.

A reflow is never run again without an engineer's disposition.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controller.store import Store
from drivers.clock import Clock
from drivers.errors import ToolError
from drivers.types import CleanerState, PlacerState, PrinterState
from sequences.interlocks import HistoryEntry, WaferHistory
from sequences.machine import AWAITING, HELD, step_of, waiting
from sequences.recipe import CleanStep, PlaceStep, PrintStep, Recipe, ReflowStep
from sequences.runner import WaferRun

if TYPE_CHECKING:
    from controller.lots import LineController

log = logging.getLogger("controller.recovery")

RECOVERY_ACTOR = "recovery"


def _history(store: Store, recipe: Recipe, wafer_id: str) -> WaferHistory:
    """What the wafer has been through, from its finished steps."""
    history = WaferHistory()
    for step in store.steps(wafer_id):
        if step.status != "done" and not step.disposition:
            continue
        recipe_step = recipe.step(step.step_index)
        peak = (step.results or {}).get("peak_c")
        history.record(
            HistoryEntry(
                step.step_index,
                recipe_step.kind,
                getattr(recipe_step, "alloy", None),
                peak,
                step.disposition or "",
            )
        )
    return history


def recovered_run(
    store: Store, recipe: Recipe, wafer_id: str, state: str, clock: Clock
) -> WaferRun:
    """A run restored to the stored state; mid-step wafers are settled later by the tools."""
    events = store.events(wafer_id)
    history = _history(store, recipe, wafer_id)
    run = WaferRun(recipe, wafer_id, clock, history=history)
    last = events[-1] if events else None
    if state == HELD:
        held_from = last.from_state if last is not None and last.to_state == HELD else waiting(1)
        run.restore(HELD, held_from=held_from, hold_reason=last.why if last else "")
    elif state == AWAITING:
        failed = last.step_index if last is not None else None  # the step that failed
        run.restore(AWAITING, step=failed, failed_step=failed)
    else:
        run.restore(state)
    return run


async def settle_recovered(controller: LineController) -> None:
    """Ask the tools about every wafer that was mid-step, and settle each one."""
    mid_step = [
        w
        for w in controller.scheduler.wafers.values()
        if w.run.state.endswith(("_running", "_judging"))
    ]
    if not mid_step:
        return
    tools = controller.scheduler.tools
    for wafer in mid_step:
        run = wafer.run
        number = step_of(run.state)
        step = run.recipe.step(number)
        tool_name = _last_tool(controller.store, run.wafer_id, number)
        tool = tools.get(tool_name) if tool_name else None
        if tool is None:
            _to_disposition(
                controller,
                wafer,
                f"controller stopped during step {number} "
                f"({step.kind}); tool {tool_name or 'unknown'} is not on this line",
            )
            continue
        open_step = _open_step(controller.store, run.wafer_id, number)
        wafer.step_id = open_step
        try:
            await _settle(controller, wafer, step, number, tool)
        except ToolError as exc:
            _to_disposition(
                controller,
                wafer,
                f"controller stopped during step {number} "
                f"({step.kind}) and {tool.name} could not be asked: {exc}",
            )


async def _settle(
    controller: LineController, wafer: Any, step: Any, number: int, tool: Any
) -> None:
    run = wafer.run
    driver = tool.driver
    wafer_id = run.wafer_id
    if isinstance(step, PrintStep | PlaceStep):
        states = PrinterState if isinstance(step, PrintStep) else PlacerState
        status = await driver.status()
        if status.wafer_id == wafer_id:
            if status.state is states.LOADING:
                status = await driver.wait_for(states.READY, states.DONE, timeout_s=600.0)
            if status.state is states.READY:  # loaded, never started: start it (once)
                _note(controller, wafer, f"{tool.name} holds it loaded: starting it")
                await (
                    driver.start_print()
                    if isinstance(step, PrintStep)
                    else driver.start_placement()
                )
            if status.state is not states.DONE:
                status = await driver.wait_for(states.DONE, timeout_s=1800.0)
            _note(controller, wafer, f"{tool.name} still holds it: taking its result")
            await run.adopt_result(driver, await driver.result())
            return
        if run.state.endswith("_running"):
            _back_to_waiting(controller, wafer, number, f"{tool.name} never took it")
            return
    elif isinstance(step, CleanStep):
        status = await driver.status()
        result = await driver.result()
        # The cleaner keeps its last result: it is this step's only if it names the wafer
        # and its cycle is newer than every clean the wafer had before.
        earlier = [
            s.results.get("cycle_count", -1)
            for s in controller.store.steps(wafer_id)
            if s.kind == "clean" and s.results and s.step_index != number
        ]
        ours = result.wafer_id == wafer_id and result.cycle_count > max(earlier, default=-1)
        if ours and (status.state is CleanerState.DONE or not status.wafer_present):
            _note(controller, wafer, f"{tool.name} reports its clean result")
            await run.adopt_result(driver, result, unloaded=not status.wafer_present)
            return
        if status.wafer_present and status.state in (
            CleanerState.LOADED,
            CleanerState.WASHING,
            CleanerState.RINSING,
            CleanerState.DRYING,
        ):
            if status.state is CleanerState.LOADED:  # loaded, never started: start it (once)
                await driver.start()
            await driver.wait_for(CleanerState.DONE, timeout_s=3600.0)
            result = await driver.result()
            if result.wafer_id == wafer_id:
                _note(controller, wafer, f"{tool.name} finished its clean")
                await run.adopt_result(driver, result)
                return
        if run.state.endswith("_running") and not status.wafer_present and not ours:
            _back_to_waiting(controller, wafer, number, f"{tool.name} never took it")
            return
    elif isinstance(step, ReflowStep):
        await _settle_oven(controller, tool)
        return
    _to_disposition(
        controller,
        wafer,
        f"controller stopped during step {number} ({step.kind}); "
        f"{tool.name} no longer shows the wafer",
    )


async def _settle_oven(controller: LineController, tool: Any) -> None:
    """Let the belt empty; give each exiting wafer its own result. Done once per oven."""
    if getattr(tool, "_recovered", False):
        return
    tool._recovered = True  # noqa: SLF001
    riders = {
        w.run.wafer_id: w
        for w in controller.scheduler.wafers.values()
        if w.run.state.endswith(("_running", "_judging"))
        and isinstance(w.run.recipe.step(step_of(w.run.state)), ReflowStep)
    }
    driver = tool.driver
    clock = controller.clock
    deadline = clock.now() + 4000.0 / 200 * 60 * 2  # twice the slowest belt's transit
    while riders:
        status = await driver.status()
        if status.wafer_at_exit or (status.wafers_on_belt == 0):
            result = await driver.exit_result()
            wafer = riders.pop(result.wafer_id, None)
            if status.wafer_at_exit:
                await driver.unload()
            if wafer is not None:
                _note(controller, wafer, f"{tool.name} delivered it at the exit")
                await wafer.run.adopt_result(driver, result, unloaded=True)
                continue
            if status.wafers_on_belt == 0 and not status.wafer_at_exit:
                loaded = {
                    i.wafer_id for i in controller.store.open_intents() if i.command == "LOAD"
                }
                for wafer in riders.values():
                    if wafer.run.wafer_id in loaded:
                        # LOAD may have been sent and another wafer's result has since
                        # replaced this one's at the exit: only a person can tell.
                        _to_disposition(
                            controller,
                            wafer,
                            f"its LOAD may have reached "
                            f"{tool.name} but the oven no longer shows it",
                        )
                    else:
                        _back_to_waiting(
                            controller,
                            wafer,
                            step_of(wafer.run.state),
                            f"{tool.name} never took it (no LOAD was sent)",
                        )
                return
        if status.alarm_active:
            try:
                await driver.clear_alarm()
            except ToolError as exc:
                log.info("%s: alarm not cleared yet: %s", tool.name, exc)
        if clock.now() > deadline:
            for wafer in riders.values():
                _to_disposition(
                    controller,
                    wafer,
                    f"{tool.name} did not deliver it within twice the transit time",
                )
            return
        await clock.sleep(2.0)


def _last_tool(store: Store, wafer_id: str, number: int) -> str | None:
    for event in reversed(store.events(wafer_id)):
        if event.step_index == number and event.tool:
            return event.tool
    return None


def _open_step(store: Store, wafer_id: str, number: int) -> int | None:
    for step in reversed(store.steps(wafer_id)):
        if step.step_index == number and step.status == "running":
            return step.id
    return None


def _note(controller: LineController, wafer: Any, text: str) -> None:
    controller.store.audit(
        RECOVERY_ACTOR, "wafer.recovery", text, lot_id=wafer.lot_id, wafer_id=wafer.run.wafer_id
    )
    controller.progress.on_tool_note("recovery", f"{wafer.run.wafer_id}: {text}")


def _back_to_waiting(controller: LineController, wafer: Any, number: int, why: str) -> None:
    """The step provably did not start on the tool: run it again from waiting."""
    if wafer.step_id is not None:
        controller.store.end_step(
            wafer.step_id, status="aborted", results={"why": f"recovery: {why}"}
        )
        wafer.step_id = None
    _note(controller, wafer, f"step {number}: {why}; it waits for a tool again")
    wafer.run.restore(waiting(number), announce=f"recovery: {why}")


def _to_disposition(controller: LineController, wafer: Any, why: str) -> None:
    _note(controller, wafer, why)
    wafer.run.fail_recovered(why)

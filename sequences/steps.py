"""What each step kind sends to its tool: interlock readings, setup, the step, abort.

These are the only functions in sequences/ that talk to drivers. They never
decide what happens to the wafer (that is the runner and its state machine);
they run tool operations and return what the tool measured. All waits are in
tool seconds on the injected clock and always bounded.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.clock import Clock
from drivers.errors import (
    AlarmActive,
    DeviceBusy,
    ToolAlarm,
    ToolError,
    ToolTimeout,
    WrongState,
)
from drivers.types import (
    Alarm,
    CleanerState,
    OvenState,
    PlacementResult,
    PlacerState,
    PrinterState,
)
from sequences import interlocks
from sequences.errors import InterlockError, SequenceError
from sequences.recipe import CleanStep, PlaceStep, PrintStep, ReflowStep, Step

log = logging.getLogger("sequences.steps")

ROLE_OF_KIND = {"print": "printer", "place": "placer", "reflow": "oven", "clean": "cleaner"}
# How a driver shows its role (duck typing keeps sequences/ free of driver classes).
_ROLE_MARK = {"printer": "start_print", "placer": "start_placement", "oven": "stage_profile",
              "cleaner": "wait_bath_ready"}

# Nominal tool times from the specs, in tool seconds.
PRINTER_CHANGEOVER_S, PLACER_CHANGEOVER_S = 600.0, 900.0
LOAD_S, UNLOAD_S, WIPE_S = 20.0, 10.0, 15.0
PRINT_PASS_S, SPI_S = 30.0, 10.0
PLACE_S = 25.0 + 40.0 + 15.0
BATH_COOL_C_S = 0.01  # °C/s (flux-cleaner.md): how long a bath takes to come down
READY_POLL_S = 20.0  # a profile change takes 15-25 minutes: look at the oven every 20 s
BIG_COOLDOWN_C = 100.0  # hottest zone this much above the new profile's: high-lead to eutectic
BIG_COOLDOWN_MIN_S = 600.0  # such a change takes no less (the spec: typically 15-25 min)
POLL_S = 1.0  # how often the oven's exit and entrance are looked at while a wafer rides


async def expect(clock: Clock, nominal_s: float) -> None:
    """Wait the time the spec says an operation takes before polling for its end.

    Polling from the start would cost a round trip per poll interval for nothing;
    the tool cannot be faster than its nominal time, and a slower one is caught by
    the polls that follow.
    """
    await clock.sleep(nominal_s)


async def when_in(driver: Any, state: Any, timeout_s: float, command: Callable[[], Any]) -> Any:
    """Send a HostLink command that needs ``state``, once the spec's time for getting
    there has passed: usually the tool is there, and a status poll first would be a
    round trip for nothing. If it is not (NAK 04 WRONG STATE, or 05 ALARM ACTIVE:
    nothing was changed), wait for the state (an alarm raises ToolAlarm with its text)
    and send the command again.
    """
    try:
        return await command()
    except (WrongState, AlarmActive):
        pass
    await driver.wait_for(state, timeout_s=timeout_s)
    return await command()


def bound(nominal_s: float) -> float:
    """A generous timeout for an operation the spec says takes ``nominal_s``."""
    return nominal_s * 2.0 + 60.0


Log = Callable[[str], None]


def role_of(driver: Any) -> str:
    for role, method in _ROLE_MARK.items():
        if hasattr(driver, method):
            return role
    raise SequenceError(f"{getattr(driver, 'name', driver)!s}: not a printer, placer, oven or "
                        "cleaner driver")


def check_role(driver: Any, step: Step) -> None:
    role, needed = role_of(driver), ROLE_OF_KIND[step.kind]
    if role != needed:
        raise SequenceError(f"a {step.kind} step runs on {_a(needed)}; {driver.name} is "
                            f"{_a(role)}")


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


# --- readiness ---


def _busy(role: str, status: Any, wafer_id: str) -> bool:
    """The tool is working on another wafer or a setup change that will end by itself."""
    if role == "printer":
        return status.state in (PrinterState.CHANGEOVER, PrinterState.LOADING,
                                PrinterState.READY, PrinterState.PRINTING,
                                PrinterState.INSPECTING, PrinterState.UNLOADING,
                                PrinterState.WIPING, PrinterState.FILLING) or (
            status.state is PrinterState.DONE and status.wafer_id != wafer_id)
    if role == "placer":
        return status.state in (PlacerState.CHANGEOVER, PlacerState.LOADING, PlacerState.READY,
                                PlacerState.FLUXING, PlacerState.PLACING,
                                PlacerState.INSPECTING, PlacerState.REPAIRING,
                                PlacerState.UNLOADING) or (
            status.state is PlacerState.DONE and status.wafer_id != wafer_id)
    if role == "oven":
        return status.state is OvenState.HEATING
    return status.state in (CleanerState.LOADED, CleanerState.WASHING, CleanerState.RINSING,
                            CleanerState.DRYING)


async def wait_until_free(driver: Any, wafer_id: str, clock: Clock, timeout_s: float) -> Any:
    """The tool's status once it is not busy with something else (ToolTimeout if it stays busy)."""
    role = role_of(driver)
    deadline = clock.now() + timeout_s
    while True:
        status = await driver.status()
        if not _busy(role, status, wafer_id):
            return status
        if clock.now() >= deadline:
            raise ToolTimeout(driver.name, f"still busy ({_state_name(status)}) after "
                              f"{timeout_s:g} s")
        await clock.sleep(POLL_S)


@dataclass(frozen=True)
class ToolView:
    """What the interlock check read from the tool just before a step.

    The scheduler gives the tool to the step alone, so ``execute`` may start from it
    instead of asking the tool again.
    """

    status: Any
    clean_recipe: Any = None  # cleaner: its recipe registers
    own_wafer_done: bool = False  # this wafer is still in the tool, finished (an earlier stop)


async def interlock_check(
    driver: Any, step: Step, wafer_id: str, status: Any = None
) -> tuple[list[str], ToolView]:
    """Why the tool must not take this step now (empty: go), and what was read to know."""
    status = status if status is not None else await driver.status()
    recipe = None
    own = False
    if isinstance(step, PrintStep):
        reasons = interlocks.printer_interlocks(step, status, wafer_id)
        own = status.state is PrinterState.DONE and status.wafer_id == wafer_id
    elif isinstance(step, PlaceStep):
        reasons = interlocks.placer_interlocks(step, status, wafer_id)
        own = status.state is PlacerState.DONE and status.wafer_id == wafer_id
    elif isinstance(step, ReflowStep):
        reasons = interlocks.oven_interlocks(step, status)
    else:
        own = status.state is CleanerState.DONE and (await driver.result()).wafer_id == wafer_id
        recipe = await driver.recipe()
        reasons = interlocks.cleaner_interlocks(step, status, recipe, own_wafer_done=own)
    if status.alarm_code:
        alarm = await driver.alarm()
        if alarm is not None:
            reasons = [f"alarm {alarm.code} {alarm.text} active" if r.startswith("alarm ") else r
                       for r in reasons]
    return reasons, ToolView(status, recipe, own)


async def setup_mismatches(driver: Any, step: Step) -> list[str]:
    """What ``prepare_tool`` would change for this step (empty: the tool is set up)."""
    status = await driver.status()
    if isinstance(step, PrintStep):
        return interlocks.printer_setup(step, status)
    if isinstance(step, PlaceStep):
        return interlocks.placer_setup(step, status)
    if isinstance(step, ReflowStep):
        return interlocks.oven_setup(step, status)
    assert isinstance(step, CleanStep)
    return interlocks.cleaner_setup(step, status, await driver.recipe())


# --- setup ---


async def prepare_tool(
    driver: Any, step: Step, *, clock: Clock, recipe_name: str = "bumpline", log: Log | None = None
) -> list[str]:
    """Change the tool's setup to what the step needs; returns what was done (for the log).

    Printer: CHG when stencil or paste differ, then RCP. Placer: CHG when the balls
    differ, then RCP. Oven: stage + APPLY when the active profile differs, N2 on,
    wait READY and O2 under the limit. Cleaner: write the recipe when it differs,
    wait for the bath.
    """
    check_role(driver, step)
    done: list[str] = []

    def note(text: str) -> None:
        done.append(text)
        if log:
            log(f"{driver.name}: {text}")

    if isinstance(step, PrintStep):
        status = await wait_until_free(driver, "", clock, bound(PRINTER_CHANGEOVER_S))
        if interlocks.printer_setup(step, status):
            note(f"changeover to stencil {step.stencil_id} and {step.paste_alloy} paste (CHG)")
            await driver.changeover(step.stencil_id, step.paste_alloy)
            await expect(clock, PRINTER_CHANGEOVER_S)
            await driver.wait_for(PrinterState.IDLE, timeout_s=bound(PRINTER_CHANGEOVER_S))
        await driver.set_recipe(step.tool_recipe(recipe_name))
        note(f"print parameters {recipe_name} stored (RCP)")
    elif isinstance(step, PlaceStep):
        status = await wait_until_free(driver, "", clock, bound(PLACER_CHANGEOVER_S))
        if interlocks.placer_setup(step, status):
            note(f"changeover to {step.ball_diameter_um} µm {step.ball_alloy} balls (CHG)")
            await driver.changeover(step.ball_alloy, step.ball_diameter_um)
            await expect(clock, PLACER_CHANGEOVER_S)
            await driver.wait_for(PlacerState.IDLE, timeout_s=bound(PLACER_CHANGEOVER_S))
        await driver.set_recipe(step.tool_recipe(recipe_name))
        note(f"placement parameters {recipe_name} stored (RCP)")
    elif isinstance(step, ReflowStep):
        await _prepare_oven(driver, step, clock, note)
    else:
        assert isinstance(step, CleanStep)
        current = await driver.recipe()
        wanted = step.tool_recipe()
        if current != wanted:
            note(f"clean recipe: wash {step.wash_temp_c:g} °C {step.wash_time_s} s, rinse "
                 f"{step.rinse_time_s} s, dry {step.dry_time_s} s, "
                 f"{step.spray_pressure_bar:g} bar")
            await driver.set_recipe(wanted)
        status = await driver.status()
        gap = abs(status.wash_temp_c - step.wash_temp_c)
        if gap > interlocks.BATH_TOLERANCE_C:
            note(f"waiting for the bath: {status.wash_temp_c:g} -> {step.wash_temp_c:g} °C")
        await driver.wait_bath_ready(timeout_s=bound(gap / BATH_COOL_C_S))
    return done


async def _prepare_oven(driver: Any, step: ReflowStep, clock: Clock, note: Log) -> None:
    status = await driver.status()
    if status.active_profile_id != step.profile_id or status.state not in (
        OvenState.READY, OvenState.PROCESSING, OvenState.HEATING
    ):
        if status.wafers_on_belt:
            note(f"waiting for {status.wafers_on_belt} wafer(s) to leave the belt")
            deadline = clock.now() + bound(4000.0 / 200 * 60)
            while (await driver.status()).wafers_on_belt:
                if clock.now() >= deadline:
                    raise ToolTimeout(driver.name, "belt not empty: cannot apply a new profile")
                await clock.sleep(POLL_S)
        note(f"profile {step.profile_id}: zones {'/'.join(f'{z:g}' for z in step.zones_c)} °C, "
             f"{step.conveyor_mm_min} mm/min, O2 limit {step.o2_limit_ppm} ppm, "
             f"TAL above {step.tal_threshold_c:g} °C (stage + APPLY)")
        await driver.stage_profile(step.tool_profile())
        await driver.apply()
        hottest_now = max((pv for pv in status.zone_pv_c if pv is not None), default=0.0)
        cooling = hottest_now - step.hottest_zone_c
    else:
        cooling = 0.0
    if not status.nitrogen_on:
        note("nitrogen on")
        await driver.set_nitrogen(True)
    # Cooling from a high-lead profile takes 15-25 minutes (reflow-oven.md): no look at
    # the oven in the first 10 of them, then one every READY_POLL_S.
    if cooling >= BIG_COOLDOWN_C:
        await expect(clock, BIG_COOLDOWN_MIN_S)
    await driver.wait_ready(timeout_s=3600.0, poll_s=READY_POLL_S)
    deadline = clock.now() + bound(120.0)
    while True:
        status = await driver.status()
        if status.o2_ppm <= step.o2_limit_ppm:
            break
        if clock.now() >= deadline:
            raise ToolTimeout(driver.name, f"O2 {status.o2_ppm} ppm still above the step's "
                              f"limit {step.o2_limit_ppm} ppm")
        await clock.sleep(POLL_S)


# --- running a step ---


@dataclass
class StepResult:
    """What the tool measured, plus alarms it raised while the wafer rode through."""

    result: Any
    alarms: list[Alarm] = field(default_factory=list)


async def execute(
    driver: Any, step: Step, wafer_id: str, *, clock: Clock, recipe_name: str,
    seen: ToolView,
) -> StepResult:
    """Run the step on the tool up to its result. The wafer stays in a printer, mounter
    or cleaner (DONE) for the caller to judge (and repair) before ``unload``; the oven's
    wafer is unloaded at the exit at once, so it never blocks the wafers behind it.

    ``seen`` is what the interlock check (``interlock_check``) read just before."""
    if isinstance(step, PrintStep):
        await _release_own(driver, PrinterState, seen)
        await driver.set_recipe(step.tool_recipe(recipe_name))
        await driver.load(wafer_id)
        await expect(clock, LOAD_S)
        await when_in(driver, PrinterState.READY, bound(LOAD_S), driver.start_print)
        await expect(clock, PRINT_PASS_S * step.passes + SPI_S)
        return StepResult(await when_in(driver, PrinterState.DONE,
                                        bound(PRINT_PASS_S * step.passes + SPI_S),
                                        driver.result))
    if isinstance(step, PlaceStep):
        await _release_own(driver, PlacerState, seen)
        await driver.set_recipe(step.tool_recipe(recipe_name))
        await driver.load(wafer_id)
        await expect(clock, LOAD_S)
        await when_in(driver, PlacerState.READY, bound(LOAD_S), driver.start_placement)
        await expect(clock, PLACE_S)
        return StepResult(await when_in(driver, PlacerState.DONE, bound(PLACE_S),
                                        driver.result))
    if isinstance(step, ReflowStep):
        return await _reflow(driver, step, wafer_id, clock)
    assert isinstance(step, CleanStep)
    if seen.own_wafer_done:
        await driver.unload()
    # Same wash temperature (the interlock checked it); times and pressure are this wafer's.
    wanted = step.tool_recipe()
    if seen.clean_recipe != wanted:
        await driver.set_recipe(wanted)
    await driver.load(wafer_id)
    await driver.start()
    cycle = step.wash_time_s + step.rinse_time_s + step.dry_time_s
    await expect(clock, cycle)
    return StepResult(await driver.wait_result(timeout_s=bound(cycle)))


async def repair(driver: Any) -> PlacementResult:
    """The mounter's automatic repair (RPR) and its new result."""
    await driver.repair()
    await driver.wait_for(PlacerState.DONE, timeout_s=bound(5.0 + 0.5 * 1000))
    return await driver.result()


async def unload(driver: Any, step: Step) -> None:
    """Hand the wafer out after judging; the oven's wafer is already off the belt."""
    if isinstance(step, PrintStep):
        await driver.unload()
        await expect(driver.clock, UNLOAD_S)
        await driver.wait_for(PrinterState.IDLE, timeout_s=bound(UNLOAD_S + WIPE_S))
    elif isinstance(step, PlaceStep):
        await driver.unload()
        await expect(driver.clock, UNLOAD_S)
        await driver.wait_for(PlacerState.IDLE, timeout_s=bound(UNLOAD_S))
    elif isinstance(step, CleanStep):
        await driver.unload()


async def _reflow(driver: Any, step: ReflowStep, wafer_id: str, clock: Clock) -> StepResult:
    alarms: list[Alarm] = []

    async def note_alarm(status: Any) -> None:
        if status.alarm_active or getattr(status, "alarm_code", 0):
            alarm = await driver.alarm()
            if alarm is not None and alarm not in alarms:
                alarms.append(alarm)

    deadline = clock.now() + bound(step.transit_s)
    # Other wafers' steps share the oven: LOAD_WAFER_ID + LOAD must not interleave.
    async with _entrance_lock(driver):
        refused = ""
        while True:  # wait for the last loaded wafer to clear the entrance
            signals = await driver.signals()
            if signals.alarm_active:
                alarm = await driver.alarm()
                raise ToolAlarm(driver.name, alarm.code if alarm else 0,
                                alarm.text if alarm else "")
            if signals.entrance_clear:
                try:
                    await driver.load(wafer_id)
                    break
                except DeviceBusy as exc:  # refused (not READY just now): the wafer is not on
                    refused = f" ({exc})"
            if clock.now() >= deadline:
                raise ToolTimeout(driver.name, f"could not load the wafer: entrance not clear "
                                  f"or oven not ready{refused}")
            await clock.sleep(POLL_S)
    # The wafer is on the belt now: it comes out whatever happens. Nothing to see before
    # it can reach the exit; then watch the exit (alarms are recorded, not fatal) and take
    # it off as soon as it is there. The exit flags report anything that hit its pass.
    deadline = clock.now() + bound(step.transit_s)
    await expect(clock, step.transit_s)
    while True:
        signals = await driver.signals()  # one request per look, not a full status
        if signals.alarm_active:
            await note_alarm(signals)
        if signals.wafer_at_exit:
            result = await driver.exit_result()
            if result.wafer_id == wafer_id:
                await driver.unload(wafer_id)
                return StepResult(result, alarms)
        if clock.now() >= deadline:
            alarm_text = "; ".join(f"alarm {a.code} {a.text}" for a in alarms)
            raise ToolTimeout(driver.name, f"wafer {wafer_id} not at the exit after "
                              f"{bound(step.transit_s):g} s" + (f" ({alarm_text})"
                                                                  if alarms else ""))
        await clock.sleep(POLL_S)


_ENTRANCE_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def _entrance_lock(driver: Any) -> asyncio.Lock:
    lock = _ENTRANCE_LOCKS.get(driver)
    if lock is None:
        lock = _ENTRANCE_LOCKS[driver] = asyncio.Lock()
    return lock


async def _release_own(driver: Any, states: Any, seen: ToolView) -> None:
    """Our own wafer left in the tool by an earlier alarm or abort goes out first."""
    if seen.own_wafer_done:
        await driver.unload()
        await driver.wait_for(states.IDLE, timeout_s=bound(UNLOAD_S + WIPE_S))


# --- abort ---


async def abort_tool(driver: Any, step: Step, wafer_id: str) -> list[str]:
    """Stop the tool's work on the wafer (ABT where the tool has one) and hand it out.

    Best effort: each failure is reported back, none is raised, because the wafer is
    already aborted and the caller must learn what state the tool was left in.
    """
    notes: list[str] = []
    if isinstance(step, ReflowStep):
        return ["the oven has no abort: the wafer rides to the exit"]
    try:
        status = await driver.status()
        if isinstance(step, CleanStep):
            if status.state in (CleanerState.WASHING, CleanerState.RINSING, CleanerState.DRYING):
                await driver.abort()
                notes.append("ABORT sent")
                await driver.wait_for(CleanerState.DONE, timeout_s=bound(10.0))
            if (await driver.status()).state is CleanerState.DONE:
                await driver.unload()
                notes.append("wafer unloaded")
            return notes
        states = PrinterState if isinstance(step, PrintStep) else PlacerState
        if status.wafer_id == wafer_id and status.state not in (states.DONE, states.IDLE):
            await driver.abort()
            notes.append("ABT sent")
            status = await driver.wait_for(states.DONE, states.IDLE, timeout_s=bound(10.0))
        if status.state is states.DONE and status.wafer_id == wafer_id:
            await driver.unload()
            notes.append("wafer unloaded")
    except ToolError as exc:
        notes.append(f"could not finish the abort: {exc}")
        log.warning("%s: abort of wafer %s: %s", driver.name, wafer_id, exc)
    return notes


def _state_name(status: Any) -> str:
    state = status.state
    return getattr(state, "value", None) if isinstance(getattr(state, "value", None), str) \
        else state.name


async def check_interlocks(driver: Any, step: Step, wafer_id: str) -> None:
    """Raise InterlockError naming every reason the tool must not take the step now."""
    check_role(driver, step)
    reasons, _ = await interlock_check(driver, step, wafer_id)
    if reasons:
        raise InterlockError(driver.name, reasons)

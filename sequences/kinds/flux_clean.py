"""The clean step: the spray flux cleaner (flux-cleaner.md).

One wafer at a time: LOAD, START, wash / rinse / dry at the recipe's times, then
DONE with the measured ionic residue until UNLOAD. The wash bath's temperature
is the cleaner's setup; it heats and cools slowly (BATH_COOL_C_S).
"""

from __future__ import annotations

import weakref
from typing import Any

from drivers.clock import Clock
from drivers.errors import ToolError
from drivers.protocols import Cleaner
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanRecipe,
    CleanResult,
    CleanStatus,
)
from sequences.kinds.base import (
    NeverTaken,
    Note,
    Recovering,
    Settled,
    StepContext,
    StepKind,
    StepResult,
    TakeResult,
    ToolView,
    Unknown,
    alarm_reasons,
    expect,
    timeout_for,
)
from sequences.recipes.recipe import CleanStep
from sequences.wafer.journal import guarded
from sequences.wafer.judge import Judgment, at_most, same_wafer

BATH_COOL_C_S = 0.01  # °C/s: how long a bath takes to come down
ABORT_S = 10.0
SETTLE_WAIT_S = 3600.0
WORKING = (CleanerState.WASHING, CleanerState.STRIPPING, CleanerState.RINSING,
           CleanerState.DRYING)
BUSY = (CleanerState.LOADED, *WORKING)


class FluxClean(StepKind[Any]):
    name, role = "clean", "cleaner"
    driver_type = Cleaner
    repeatable = True
    guarded = ("START",)

    def setup_key(self, step: CleanStep) -> tuple[Any, ...]:
        return ("clean", step.wash_temp_c)

    def bound_setup(self, step: CleanStep) -> tuple[Any, ...] | None:
        return None  # a bath change is waited out, not a changeover the bound counts

    def setup_mismatches(self, step: CleanStep, view: ToolView) -> list[str]:
        st: CleanerStatus = view.status
        recipe: CleanRecipe = view.clean_recipe
        reasons = []
        if abs(recipe.wash_temp_c - step.wash_temp_c) > 0.05:
            reasons.append(f"cleaner set to wash at {recipe.wash_temp_c:g} °C, the step needs "
                           f"{step.wash_temp_c:g} °C")
        if abs(st.wash_temp_c - step.wash_temp_c) > BATH_TOLERANCE_C:
            reasons.append(f"bath at {st.wash_temp_c:g} °C, not within ±{BATH_TOLERANCE_C:g} "
                           f"°C of {step.wash_temp_c:g} °C")
        return reasons

    def busy(self, status: Any, wafer_id: str) -> bool:
        return status.state in BUSY

    def interlocks(self, step: CleanStep, view: ToolView, wafer_id: str) -> list[str]:
        st: CleanerStatus = view.status
        reasons = alarm_reasons(st.alarm_code, st.state is CleanerState.ALARM)
        if st.state not in (CleanerState.IDLE, CleanerState.READY) and not (
            st.state is CleanerState.DONE and view.own_wafer_done
        ):
            reasons.append(f"cleaner is {st.state.name}")
        reasons += self.setup_mismatches(step, view)
        reasons += [text for flag, text in self.inputs(st) if flag]
        return reasons

    def inputs(self, st: CleanerStatus) -> tuple[tuple[bool | None, str], ...]:
        """The cleaner's inputs that stop this kind of cycle, with what they mean."""
        return ((st.chemistry_low, "chemistry low"),
                (st.di_resistivity_low, "DI rinse resistivity low"),
                (st.door_open, "door open"))

    def nominal_s(self, step: CleanStep) -> float:
        return float(step.wash_time_s + step.rinse_time_s + step.dry_time_s)

    def judge(self, step: CleanStep, result: CleanResult, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        r = result
        measurements = {"status": r.status.name, "ionic_ug_cm2": r.ionic_ug_cm2,
                        "cycle_count": r.cycle_count}
        findings = same_wafer(wafer_id, r.wafer_id)
        if r.status is not CleanStatus.OK:
            findings.append(f"clean status {r.status.name}")
        findings += at_most("ionic residue", r.ionic_ug_cm2, step.max_ionic_ug_cm2, " µg/cm²")
        return Judgment(not findings, tuple(findings), measurements)

    def windows(self, step: CleanStep) -> dict[str, list[float | None]]:
        return {"ionic_ug_cm2": [None, step.max_ionic_ug_cm2]}

    async def look(self, driver: Any, step: CleanStep, wafer_id: str, status: Any) -> ToolView:
        own = status.state is CleanerState.DONE and (await driver.result()).wafer_id == wafer_id
        recipe = _RECIPES.get(driver)
        if recipe is None:  # not written by us yet: ask the tool once
            recipe = _RECIPES[driver] = await driver.recipe()
        return ToolView(status, recipe, own)

    async def prepare(self, driver: Any, step: CleanStep, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        wanted = step.tool_recipe()
        _RECIPES.pop(driver, None)  # a setup change reads what the tool holds
        if await driver.recipe() != wanted:
            note(f"clean recipe: wash {step.wash_temp_c:g} °C {step.wash_time_s} s, rinse "
                 f"{step.rinse_time_s} s, dry {step.dry_time_s} s, "
                 f"{step.spray_pressure_bar:g} bar")
            await _set_recipe(driver, wanted)
        else:
            _RECIPES[driver] = wanted
        status = await driver.status()
        gap = abs(status.wash_temp_c - step.wash_temp_c)
        if gap > BATH_TOLERANCE_C:
            note(f"waiting for the bath: {status.wash_temp_c:g} -> {step.wash_temp_c:g} °C")
        await driver.wait_bath_ready(timeout_s=timeout_for(gap / BATH_COOL_C_S))

    async def execute(self, driver: Any, step: CleanStep, ctx: StepContext, seen: ToolView
                      ) -> StepResult:
        if seen.own_wafer_done:
            await driver.unload()
        # Same wash temperature (the interlock checked it); times and pressure are this wafer's.
        wanted = step.tool_recipe()
        if seen.clean_recipe != wanted:
            await _set_recipe(driver, wanted)
        await driver.load(ctx.wafer_id)
        async with guarded(ctx.journal, ctx.wafer_id, "START", driver.name):
            await driver.start()
        cycle = self.nominal_s(step)
        await expect(ctx.clock, cycle)
        return StepResult(await driver.wait_result(timeout_s=timeout_for(cycle)))

    async def unload(self, driver: Any, step: CleanStep) -> None:
        await driver.unload()

    async def abort(self, driver: Any, step: CleanStep, wafer_id: str) -> list[str]:
        notes: list[str] = []
        try:
            if (await driver.status()).state in WORKING:
                await driver.abort()
                notes.append("ABORT sent")
                await driver.wait_for(CleanerState.DONE, timeout_s=timeout_for(ABORT_S))
            if (await driver.status()).state is CleanerState.DONE:
                await driver.unload()
                notes.append("wafer unloaded")
        except ToolError as exc:
            notes.append(f"could not finish the abort: {exc}")
        return notes

    async def settle(self, driver: Any, step: CleanStep, wafer: Recovering, clock: Clock
                     ) -> Settled:
        """The cleaner keeps its last result: it is this step's only if it names the wafer
        and its cycle is newer than every clean the wafer had before."""
        status = await driver.status()
        result = await driver.result()
        earlier = [r.get("cycle_count", -1) for r in wafer.earlier_results]
        ours = result.wafer_id == wafer.wafer_id and result.cycle_count > max(earlier,
                                                                               default=-1)
        if ours and (status.state is CleanerState.DONE or not status.wafer_present):
            return TakeResult(result, unloaded=not status.wafer_present,
                              how=f"{driver.name} reports its clean result")
        if status.wafer_present and status.state in BUSY:
            if status.state is CleanerState.LOADED:  # loaded, never started: start it (once)
                await driver.start()
            await driver.wait_for(CleanerState.DONE, timeout_s=SETTLE_WAIT_S)
            result = await driver.result()
            if result.wafer_id == wafer.wafer_id:
                return TakeResult(result, how=f"{driver.name} finished its clean")
        if not wafer.judging and not status.wafer_present and not ours:
            return NeverTaken(f"{driver.name} never took it")
        return Unknown(f"{driver.name} no longer shows the wafer")


# The recipe registers of each cleaner as we last wrote or read them: they change only
# when written, so a step need not read them again (the setup change reads them afresh).
_RECIPES: weakref.WeakKeyDictionary[Any, CleanRecipe] = weakref.WeakKeyDictionary()


async def _set_recipe(driver: Any, recipe: CleanRecipe) -> None:
    _RECIPES.pop(driver, None)  # a refused or lost write leaves the tool's unknown
    await driver.set_recipe(recipe)
    _RECIPES[driver] = recipe


FLUX_CLEAN = FluxClean()

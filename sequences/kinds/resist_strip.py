"""The strip step: the FC-2's resist strip, removing the mask a ball mount placed into
(../shared/specs/flux-cleaner-fc2.md).

The FC-2 is the FC-1 with a second chemistry: the wafer is loaded in
RESIST_STRIP mode, the strip tank replaces the wash bath, and the result adds
the area with mask left. The cycle, the states after it, the result and the
recovery rule are the clean's, so this kind is the clean kind with the strip's
tank, recipe and windows. Only a cleaner whose register map has the mode can
take it (a line with an FC-1 and an FC-2 sends strips to the FC-2 alone).
"""

from __future__ import annotations

from drivers.clock import Clock
from drivers.protocols import Cleaner
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanMode,
    CleanResult,
    CleanStatus,
    StripRecipe,
)
from sequences.kinds.base import (
    Note,
    SetupKey,
    StepContext,
    StepResult,
    ToolView,
    expect,
    timeout_for,
)
from sequences.kinds.flux_clean import BATH_COOL_C_S, CleanerKind
from sequences.recipes.recipe import StripStep
from sequences.wafer.journal import guarded
from sequences.wafer.judge import Judgment, at_most, same_wafer

MODE = CleanMode.RESIST_STRIP


class ResistStrip(CleanerKind[StripStep]):
    name = "strip"
    repeatable = False  # a second strip attacks the bumps' under-metal: an engineer decides

    def can_run(self, driver: Cleaner) -> bool:
        return bool(driver.supports(MODE))

    def setup_key(self, step: StripStep) -> SetupKey:
        return ("strip", step.strip_temp_c)

    def setup_mismatches(self, step: StripStep, view: ToolView[CleanerStatus]) -> list[str]:
        st = view.status
        recipe = view.clean_recipe
        assert isinstance(recipe, StripRecipe)  # what look() read
        reasons = []
        if abs(recipe.strip_temp_c - step.strip_temp_c) > 0.05:
            reasons.append(f"strip tank set to {recipe.strip_temp_c:g} °C, the "
                           f"step needs {step.strip_temp_c:g} °C")
        if st.strip_temp_c is None or abs(st.strip_temp_c - step.strip_temp_c) > \
                BATH_TOLERANCE_C:
            reasons.append(f"strip tank at {st.strip_temp_c} °C, not within "
                           f"±{BATH_TOLERANCE_C:g} °C of {step.strip_temp_c:g} °C")
        return reasons

    def inputs(self, st: CleanerStatus) -> tuple[tuple[bool | None, str], ...]:
        return ((st.stripper_low, "stripper low"), *super().inputs(st))

    def nominal_s(self, step: StripStep) -> float:
        return float(step.strip_time_s + step.rinse_time_s + step.dry_time_s)

    def judge(self, step: StripStep, result: CleanResult, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        r = result
        measurements = {"status": r.status.name, "ionic_ug_cm2": r.ionic_ug_cm2,
                        "mask_residue_pct": r.mask_residue_pct, "cycle_count": r.cycle_count}
        findings = same_wafer(wafer_id, r.wafer_id)
        if r.status is not CleanStatus.OK:
            findings.append(f"strip status {r.status.name}")
        if r.mask_residue_pct is None:
            findings.append("the cleaner measured no mask residue (not an FC-2?)")
        else:
            findings += at_most("mask residue", r.mask_residue_pct, step.max_mask_residue_pct,
                                " %")
        findings += at_most("ionic residue", r.ionic_ug_cm2, step.max_ionic_ug_cm2, " µg/cm²")
        return Judgment(not findings, tuple(findings), measurements)

    def windows(self, step: StripStep) -> dict[str, list[float | None]]:
        return {"mask_residue_pct": [None, step.max_mask_residue_pct],
                "ionic_ug_cm2": [None, step.max_ionic_ug_cm2]}

    async def look(self, driver: Cleaner, step: StripStep, wafer_id: str,
                   status: CleanerStatus) -> ToolView[CleanerStatus]:
        own = status.state is CleanerState.DONE and (await driver.result()).wafer_id == wafer_id
        return ToolView(status, await driver.strip_recipe(), own)

    async def prepare(self, driver: Cleaner, step: StripStep, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        wanted = step.tool_recipe()
        if await driver.strip_recipe() != wanted:
            note(f"strip recipe: {step.strip_temp_c:g} °C {step.strip_time_s} s, rinse "
                 f"{step.rinse_time_s} s, dry {step.dry_time_s} s, "
                 f"{step.spray_pressure_bar:g} bar")
            await driver.set_strip_recipe(wanted)
        status = await driver.status()
        gap = abs((status.strip_temp_c or 0.0) - step.strip_temp_c)
        if gap > BATH_TOLERANCE_C:
            note(f"waiting for the strip tank: {status.strip_temp_c} -> {step.strip_temp_c:g} "
                 "°C")
        await driver.wait_bath_ready(timeout_s=timeout_for(gap / BATH_COOL_C_S), mode=MODE)

    async def execute(self, driver: Cleaner, step: StripStep, ctx: StepContext,
                      seen: ToolView[CleanerStatus]) -> StepResult[CleanResult]:
        if seen.own_wafer_done:
            await driver.unload()
        wanted = step.tool_recipe()
        if seen.clean_recipe != wanted:
            await driver.set_strip_recipe(wanted)
        await driver.load(ctx.wafer_id, MODE)
        async with guarded(ctx.journal, ctx.wafer_id, "START", driver.name):
            await driver.start()
        cycle = self.nominal_s(step)
        await expect(ctx.clock, cycle)
        return StepResult(await driver.wait_result(timeout_s=timeout_for(cycle)))


RESIST_STRIP = ResistStrip()

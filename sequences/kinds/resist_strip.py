"""The strip step: the FC-2's resist strip, removing the mask a ball mount placed into
(../shared/specs/flux-cleaner-fc2.md).

The FC-2 is the FC-1 with a second chemistry: the wafer is loaded in
RESIST_STRIP mode, the strip tank replaces the wash bath, and the result adds
the area with mask left. The cycle, the states after it, the result and the
recovery rule are the clean's: both kinds are a ``CleanerKind`` (flux_clean.py),
this one with the strip's mode, tank, recipe and windows. Only a cleaner whose
register map has the mode can take it (a line with an FC-1 and an FC-2 sends
strips to the FC-2 alone).
"""

from __future__ import annotations

from drivers.protocols import Cleaner
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerStatus,
    CleanMode,
    CleanResult,
    CleanStatus,
    StripRecipe,
)
from sequences.kinds.base import SetupKey, ToolView
from sequences.kinds.flux_clean import CleanerKind
from sequences.recipes.recipe import StripStep
from sequences.wafer.judge import Judgment, at_most, same_wafer

MODE = CleanMode.RESIST_STRIP


class ResistStrip(CleanerKind[StripStep]):
    name = "strip"
    mode = MODE
    tank = "strip tank"
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

    async def read_recipe(self, driver: Cleaner) -> StripRecipe:
        return await driver.strip_recipe()

    async def store_recipe(self, driver: Cleaner, step: StripStep) -> None:
        await driver.set_strip_recipe(step.tool_recipe())

    def describe(self, step: StripStep) -> str:
        return (f"strip recipe: {step.strip_temp_c:g} °C {step.strip_time_s} s, rinse "
                f"{step.rinse_time_s} s, dry {step.dry_time_s} s, "
                f"{step.spray_pressure_bar:g} bar")

    def tank_c(self, status: CleanerStatus, step: StripStep) -> tuple[float | None, float]:
        return status.strip_temp_c, step.strip_temp_c


RESIST_STRIP = ResistStrip()

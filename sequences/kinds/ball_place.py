"""The place step: solder ball mounting with inspection and one repair (ball-placer.md).

Spec constants (../shared/specs/ball-placer.md): a ball change (CHG) takes
900 s; LOAD 20 s, flux 25 s, placement 40 s, inspection 15 s, UNLOAD 10 s; a
repair (RPR) takes 5 s plus 0.5 s per defect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.clock import Clock
from drivers.protocols import Placer
from drivers.types import PlacementResult, PlacerState, PlacerStatus, RunStatus
from sequences.kinds.base import (
    Recovering,
    Settled,
    SetupKey,
    TakeResult,
    ToolView,
    Unknown,
    alarm_reasons,
    expect,
    timeout_for,
)
from sequences.kinds.hostlink_step import HostLinkStepKind, past_interlock
from sequences.recipes.recipe import PlaceStep
from sequences.wafer.judge import Judgment, same_wafer

CHANGEOVER_S = 900.0
LOAD_S, UNLOAD_S = 20.0, 10.0
PLACE_S = 25.0 + 40.0 + 15.0  # flux, place, inspect
REPAIR_MIN_S = 5.0  # REPAIRING's least, with no defect to fix
REPAIR_PER_BALL_S = 0.5
REPAIR_MAX_S = REPAIR_MIN_S + REPAIR_PER_BALL_S * 1000  # when the defects are not known
FLUX_PER_WAFER_PCT = 0.5  # flux level a wafer needs at least
FULL_SUPPLY_BALLS = 5_000_000  # ball-placer.md: what ball_level_pct is a share of


def repair_timeout(before: PlacementResult | int | None) -> float:
    """How long RPR may take: ball-placer.md's 5 s + 0.5 s per missing or extra ball of the
    result before it (at least 1000 of them when that is not known), with the usual
    margin. A recipe may repair far more than 1000 defects (max_defects up to 3,000,000)."""
    if isinstance(before, PlacementResult):
        before = before.missing + before.extra
    return timeout_for(max(REPAIR_MAX_S, REPAIR_MIN_S + REPAIR_PER_BALL_S * (before or 0)))


class BallPlace(HostLinkStepKind[PlaceStep, Placer, PlacerStatus, PlacementResult]):
    name, role = "place", "placer"
    driver_type = Placer
    changeover_s = CHANGEOVER_S
    deposit = True
    repairable = True
    states = PlacerState
    what = "ball mounter"
    guarded = ("PLC",)
    load_s, unload_s, to_idle_s = LOAD_S, UNLOAD_S, UNLOAD_S
    handing_out = frozenset({PlacerState.UNLOADING})

    def setup_key(self, step: PlaceStep) -> SetupKey:
        return ("place", step.ball_alloy, step.ball_diameter_um)

    def setup_mismatches(self, step: PlaceStep, view: ToolView[PlacerStatus]) -> list[str]:
        st = view.status
        if st.ball_alloy != step.ball_alloy or st.ball_diameter_um != step.ball_diameter_um:
            return [f"{st.ball_diameter_um:g} µm {st.ball_alloy} balls loaded, the step needs "
                    f"{step.ball_diameter_um} µm {step.ball_alloy}"]
        return []

    def interlocks(self, step: PlaceStep, view: ToolView[PlacerStatus], wafer_id: str) -> list[str]:
        st = view.status
        reasons = alarm_reasons(st.alarm_code, st.state is PlacerState.ALARM)
        reasons += self.occupied(st, wafer_id)
        reasons += self.setup_mismatches(step, view)
        if st.flux_level_pct < FLUX_PER_WAFER_PCT:
            reasons.append(f"flux level {st.flux_level_pct:g} % is below one wafer "
                           f"({FLUX_PER_WAFER_PCT:g} %)")
        if st.ball_level_pct <= 0:
            reasons.append("ball supply empty")
        elif (st.ball_level_pct + 0.05) / 100 * FULL_SUPPLY_BALLS < step.sites:
            # STS gives one decimal (5,000 balls): only a supply short even at its rounding's
            # top is short. A wafer taken in without its balls meets 111 at PLC.
            reasons.append(f"ball supply {st.ball_level_pct:g} % (about "
                           f"{st.ball_level_pct / 100 * FULL_SUPPLY_BALLS:,.0f} balls) is "
                           f"short of the wafer's {step.sites:,} sites")
        return reasons

    def cycle_s(self, step: PlaceStep) -> float:
        return PLACE_S

    def nominal_s(self, step: PlaceStep) -> float:
        return LOAD_S + PLACE_S + UNLOAD_S

    def judge(self, step: PlaceStep, result: PlacementResult, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        """Defects up to max_defects get one automatic repair; after it (or when none was
        needed) at most max_defects_after_repair may remain. More than max_defects is not
        worth repairing (a mask or supply problem): the wafer waits for an engineer."""
        r = result
        measurements = {
            "status": r.status.value, "sites": r.sites, "placed": r.placed,
            "missing": r.missing, "extra": r.extra, "defects": r.defects,
            "offset_max_um": r.offset_max_um, "repaired": repaired,
        }
        findings = same_wafer(wafer_id, r.wafer_id)
        if r.status is not RunStatus.OK:
            findings.append(f"placement status {r.status.value}")
        if r.sites != step.sites:
            findings.append(f"the mounter inspected {r.sites} sites, the recipe has {step.sites}")
        if findings:
            return Judgment(False, tuple(findings), measurements)
        if r.defects <= step.max_defects_after_repair:
            return Judgment(True, (), measurements)
        counted = f"{r.defects} ball defects ({r.missing} missing, {r.extra} extra)"
        if repaired:
            return Judgment(False, (f"{counted} after repair, above the limit "
                                    f"{step.max_defects_after_repair}",), measurements)
        if r.defects > step.max_defects:
            return Judgment(False, (f"{counted}, above the {step.max_defects} worth "
                                    "repairing",), measurements)
        return Judgment(False, (f"{counted}: repairing",), measurements, repair=True)

    def result_from(self, step: PlaceStep, wafer_id: str, measured: Mapping[str, Any]
                    ) -> PlacementResult:
        m = measured
        return PlacementResult(wafer_id, RunStatus(m["status"]), m["sites"], m["placed"],
                               m["missing"], m["extra"], m["offset_max_um"])

    def windows(self, step: PlaceStep) -> dict[str, list[float | None]]:
        return {"defects": [None, step.max_defects_after_repair]}

    parameters_called = "placement parameters"

    async def change_setup(self, driver: Placer, step: PlaceStep) -> str:
        await driver.changeover(step.ball_alloy, step.ball_diameter_um)
        return f"changeover to {step.ball_diameter_um} µm {step.ball_alloy} balls (CHG)"

    async def store_recipe(self, driver: Placer, step: PlaceStep, recipe_name: str) -> None:
        await driver.set_recipe(step.tool_recipe(recipe_name))

    async def repair(self, driver: Placer, before: PlacementResult | None = None
                     ) -> PlacementResult:
        """The mounter's automatic repair (RPR) and its new result. ``before``, the result
        the repair is for, sizes the wait: 0.5 s per missing or extra ball."""
        await past_interlock(driver, driver.repair)
        # The ACK may come before the tool leaves DONE (HostLink says only that it answers
        # at once): an STS now could show DONE with the result before the repair.
        await expect(driver.clock, REPAIR_MIN_S)
        await driver.wait_for(PlacerState.DONE, timeout_s=repair_timeout(before))
        return await past_interlock(driver, driver.result)

    async def start(self, driver: Placer) -> None:
        await driver.start_placement()

    async def settle(self, driver: Placer, step: PlaceStep, wafer: Recovering, clock: Clock
                     ) -> Settled:
        """Stopped after the ``repair`` transition (committed before RPR): RPR may have
        reached the mounter. REPAIRING, or a result other than the one before the repair,
        says it did: that result is judged as repaired (never a second RPR: the recipe
        allows one). The same result as before says nothing (not sent, or a repair that
        changed nothing): an engineer decides. Anything else is the step's usual rule."""
        before = wafer.before_repair
        status = await driver.status()
        if (before is None or status.wafer_id != wafer.wafer_id
                or status.state in self.handing_out):  # judged after its repair, going out
            return await super().settle(driver, step, wafer, clock)
        if status.state is not PlacerState.DONE:  # REPAIRING: RPR arrived
            await driver.wait_for(PlacerState.DONE, timeout_s=repair_timeout(
                self._defects(before)))
            return TakeResult(await driver.result(), repaired=True, how=(
                f"{driver.name} was repairing it: taking the result after its repair"))
        result = await driver.result()
        if self._unchanged(step, result, before):
            return Unknown(f"{driver.name} shows the result from before its repair, and its "
                           "RPR may have reached it: repaired or not, an engineer decides")
        return TakeResult(result, repaired=True, how=(
            f"{driver.name} shows a new result since its repair (RPR): judged as repaired"))

    @staticmethod
    def _defects(before: Mapping[str, Any]) -> int | None:
        try:
            return int(before["missing"]) + int(before["extra"])
        except (KeyError, TypeError, ValueError):
            return None

    def _unchanged(self, step: PlaceStep, result: PlacementResult,
                   before: Mapping[str, Any]) -> bool:
        """The mounter's result is the one the step stored before its repair (rebuilt as
        recovery rebuilds a judged one; measurements it cannot rebuild from: changed)."""
        try:
            return result == self.result_from(step, result.wafer_id, before)
        except (KeyError, ValueError):
            return False


BALL_PLACE = BallPlace()

"""The clean step: the spray flux cleaner (flux-cleaner.md).

One wafer at a time: LOAD, START, wash / rinse / dry at the recipe's times, then
DONE with the measured ionic residue until UNLOAD. The wash bath's temperature
is the cleaner's setup; it heats and cools slowly (BATH_COOL_C_S).
"""

from __future__ import annotations

import weakref
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from drivers.clock import Clock
from drivers.errors import DeviceBusy, ToolError
from drivers.protocols import Cleaner
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanMode,
    CleanRecipe,
    CleanResult,
    CleanStatus,
    StripRecipe,
)
from sequences.kinds.base import (
    ABORT_UNFINISHED,
    AlarmBeforeEntry,
    NeverTaken,
    Note,
    Recovering,
    Settled,
    SetupKey,
    StepContext,
    StepKind,
    StepResult,
    StoppedByAlarm,
    TakeResult,
    ToolView,
    Unknown,
    alarm_reasons,
    timeout_for,
)
from sequences.recipes.recipe import CleanStep, StripStep
from sequences.wafer.journal import guarded
from sequences.wafer.judge import Judgment, at_most, same_wafer

BATH_COOL_C_S = 0.01  # °C/s: how long a bath takes to come down
# The farthest a tank is from a setpoint for real: setpoints 30-80 °C, a tank cold from
# 15 °C. A reading farther off (a failed sensor's -3276.8 °C) says nothing of the time:
# its wait would be ~7 days of polls.
BATH_GAP_MAX_C = 80.0 - 15.0
ABORT_S = 10.0
SETTLE_WAIT_S = 3600.0
WORKING = (CleanerState.WASHING, CleanerState.STRIPPING, CleanerState.RINSING,
           CleanerState.DRYING)
BUSY = (CleanerState.LOADED, *WORKING)

C = TypeVar("C", bound=CleanStep | StripStep)


class CleanerKind(StepKind[C, Cleaner, CleanerStatus, CleanResult]):
    """What every cycle of the cleaner shares, whichever its chemistry (the clean here, the
    FC-2's strip in resist_strip.py): the busy states, the interlocks, preparing the tank,
    LOAD and START, abort, unload and the recovery rule. A chemistry says which mode the
    wafer is loaded in, which recipe registers and tank are its own, and its windows."""

    role = "cleaner"
    driver_type = Cleaner
    guarded = ("START",)
    mode: ClassVar[CleanMode]
    tank: ClassVar[str]  # how an operator calls the kind's tank

    @abstractmethod
    async def read_recipe(self, driver: Cleaner) -> CleanRecipe | StripRecipe:
        """The kind's recipe registers as the cleaner holds them."""

    @abstractmethod
    async def store_recipe(self, driver: Cleaner, step: C) -> None:
        """Write the step's recipe into the kind's registers."""

    @abstractmethod
    def describe(self, step: C) -> str:
        """The step's recipe, for the log when it is written."""

    @abstractmethod
    def tank_c(self, status: CleanerStatus, step: C) -> tuple[float | None, float]:
        """The kind's tank temperature now (None: not measured) and the one the step needs."""

    def forget(self, driver: Cleaner) -> None:
        _RECIPES.pop(driver, None)  # written at the tool's panel or by an engineer: read again

    async def write_recipe(self, driver: Cleaner, step: C) -> None:
        """Write the step's recipe and remember it: the registers change only when written
        (a refused or lost write leaves them unknown: read again)."""
        _RECIPES.pop(driver, None)
        await self.store_recipe(driver, step)
        _RECIPES[driver] = (self.name, step.tool_recipe())

    async def look(self, driver: Cleaner, step: C, wafer_id: str,
                   status: CleanerStatus) -> ToolView[CleanerStatus]:
        own = status.state is CleanerState.DONE and (await driver.result()).wafer_id == wafer_id
        cached = _RECIPES.get(driver)
        if cached is None or cached[0] != self.name:  # not written by us yet: ask once
            cached = _RECIPES[driver] = (self.name, await self.read_recipe(driver))
        return ToolView(status, cached[1], own)

    async def prepare(self, driver: Cleaner, step: C, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        _RECIPES.pop(driver, None)  # a setup change reads what the tool holds
        held = await self.read_recipe(driver)
        if held != step.tool_recipe():
            note(self.describe(step))
            await self.write_recipe(driver, step)
        else:
            _RECIPES[driver] = (self.name, held)
        now_c, wanted_c = self.tank_c(await driver.status(), step)
        gap = abs((now_c or 0.0) - wanted_c)
        if gap > BATH_TOLERANCE_C:
            shown = "unknown" if now_c is None else f"{now_c:g}"
            note(f"waiting for the {self.tank}: {shown} -> {wanted_c:g} °C")
        await driver.wait_bath_ready(timeout_s=timeout_for(bath_wait_s(gap)), mode=self.mode)

    async def execute(self, driver: Cleaner, step: C, ctx: StepContext,
                      seen: ToolView[CleanerStatus]) -> StepResult[CleanResult]:
        if seen.own_wafer_done:
            await driver.unload()
        await self.enter(driver, step, ctx, seen)
        async with guarded(ctx.journal, ctx.wafer_id, "START", driver.name):
            await driver.start()
        # The spec's cycle time from START's reply: the driver reads the inputs in its last
        # moments (the next wafer's interlocks then ask nothing) and looks for DONE at its end.
        cycle = self.nominal_s(step)
        return StepResult(await driver.wait_result(timeout_s=timeout_for(cycle),
                                                   ends_at=ctx.clock.now() + cycle))

    async def enter(self, driver: Cleaner, step: C, ctx: StepContext,
                    seen: ToolView[CleanerStatus]) -> None:
        """The recipe registers, then [MODE,] WAFER_ID and LOAD: up to LOAD's taking nothing
        of the wafer is in the chamber. Refused in ALARM with the chamber empty (an alarm
        latched since the interlock check: a door) is no failed step for an engineer but
        ``AlarmBeforeEntry``: the wafer held at the cleaner's interlock, going on once the
        line's CLEAR is taken, as the oven's entrance and a HostLink LOD do. Before, the
        step failed with "tool error: COMMAND=LOAD (state ALARM, alarm 400 DOOR OPEN)" (the
        independent soak's seed 7 plan 23). A wafer in the chamber (a LOAD whose reply was
        lost, then an alarm) failed as before."""
        try:
            # Same tank temperature (the interlock checked it); times and pressure are this
            # wafer's.
            if seen.clean_recipe != step.tool_recipe():
                await self.write_recipe(driver, step)
            await driver.load(ctx.wafer_id, self.mode)
        except DeviceBusy as exc:
            status = await driver.status()
            alarm = (await driver.alarm() if status.state is CleanerState.ALARM
                     and not status.wafer_present else None)
            if alarm is None:
                raise
            raise AlarmBeforeEntry(driver.name, alarm.code, alarm.text) from exc

    def bound_setup(self, step: C) -> SetupKey | None:
        return None  # a bath change is waited out, not a changeover the bound counts

    def inputs(self, st: CleanerStatus) -> tuple[tuple[bool | None, str], ...]:
        """The cleaner's inputs that stop this kind of cycle, with what they mean."""
        return ((st.di_resistivity_low, "DI rinse resistivity low"),
                (st.door_open, "door open"))

    def busy(self, status: CleanerStatus, wafer_id: str) -> bool:
        return status.state in BUSY

    def interlocks(self, step: C, view: ToolView[CleanerStatus], wafer_id: str) -> list[str]:
        st = view.status
        reasons = alarm_reasons(st.alarm_code, st.state is CleanerState.ALARM)
        if st.state not in (CleanerState.IDLE, CleanerState.READY) and not (
            st.state is CleanerState.DONE and view.own_wafer_done
        ):
            reasons.append(f"cleaner is {st.state.name}")
        reasons += self.setup_mismatches(step, view)
        reasons += [text for flag, text in self.inputs(st) if flag]
        return reasons

    async def unload(self, driver: Cleaner, step: C) -> None:
        await driver.unload()

    async def abort(self, driver: Cleaner, step: C, wafer_id: str) -> list[str]:
        notes: list[str] = []
        try:
            if (await driver.status()).state in WORKING:
                wait_s = ABORT_S
                try:
                    await driver.abort()
                    notes.append("ABORT sent")
                except DeviceBusy:
                    # ABORT's row lists WASHING, RINSING, DRYING, and the FC-2's page adds
                    # nothing (docs/protocols.md): a strip may run out. The wafer is
                    # unloaded at its DONE, not left in the chamber to hold the next.
                    if (await driver.status()).state is not CleanerState.STRIPPING:
                        raise
                    notes.append("ABORT refused while STRIPPING: waiting for the cycle's end")
                    wait_s = self.nominal_s(step)
                await driver.wait_for(CleanerState.DONE, timeout_s=timeout_for(wait_s))
            status = await driver.status()
            if status.state is CleanerState.LOADED and status.wafer_present:
                notes += await self._out_of_loaded(driver, wafer_id)
                status = await driver.status()
            if status.state is CleanerState.DONE:
                # What the cleaner says of it goes with it, for the engineer who decides (a
                # cycle an alarm stopped only as it ended, 640, may have cleaned it).
                notes += await self._result_note(driver, wafer_id)
                await driver.unload()
                notes.append("wafer unloaded")
        except ToolError as exc:
            notes.append(f"{ABORT_UNFINISHED}: {exc}")
        return notes

    @staticmethod
    async def _result_note(driver: Cleaner, wafer_id: str) -> list[str]:
        """What the cleaner says of the wafer it holds in DONE (none if it cannot say: the
        wafer comes out all the same)."""
        try:
            result = await driver.result()
        except ToolError as exc:
            return [f"its result not read: {exc.detail}"]
        if result.wafer_id != wafer_id:
            return []
        mask = result.mask_residue_pct
        return [f"its result: {result.status.name}, ionic residue {result.ionic_ug_cm2:g} "
                "µg/cm²" + ("" if mask is None else f", mask residue {mask:g} %")]

    async def _out_of_loaded(self, driver: Cleaner, wafer_id: str) -> list[str]:
        """Our failed wafer LOADED in the chamber: the cycle an alarm ended, where CLEAR put
        it "back to LOADED / DONE / IDLE as fits the wafer" (flux-cleaner.md) and this
        cleaner took an unfinished wafer as LOADED (the other reading is DONE, status
        ALARM). UNLOAD is allowed in DONE only and ABORT while a cycle runs, so the one way
        out is START, then ABORT at once: DONE with status ABORTED, then UNLOAD. Only for a
        flux clean (a few seconds of wash more on a failed wafer) and only for the wafer
        our last LOAD put there; anything else stays for an engineer."""
        held = await driver.loaded_wafer_id()
        if held != wafer_id:
            return [f"the chamber holds {held or 'a wafer'} LOADED, not {wafer_id}: "
                    "left for an engineer"]
        if self.mode is not CleanMode.FLUX_CLEAN:
            return ["left LOADED in the chamber (after its alarm the cleaner kept it "
                    "LOADED; only a START takes it on to DONE): an engineer decides"]
        await driver.start()
        notes = ["still LOADED after the alarm: START sent to end its cycle"]
        try:
            await driver.abort()
            notes.append("ABORT sent")
        except DeviceBusy:  # the cycle ended first (a short recipe on a fast line)
            if (await driver.status()).state is not CleanerState.DONE:
                raise
        await driver.wait_for(CleanerState.DONE, timeout_s=timeout_for(ABORT_S))
        return notes

    async def settle(self, driver: Cleaner, step: C, wafer: Recovering, clock: Clock
                     ) -> Settled:
        """The cleaner keeps its last result, which may be an earlier clean's of the same
        wafer (a rebump's first pass). Only a judged wafer is unloaded, and a wafer moves on
        only once unloaded, so every earlier clean of it left the chamber: a wafer there is
        this step's, and a chamber without it holds nothing of this step unless its result
        was taken (judging: judged again from what ``step_done`` stored). The cycle counter
        is not needed to tell them apart (the spec does not say when it counts)."""
        status = await driver.status()
        if status.wafer_present and status.state in (CleanerState.DONE, *BUSY):
            result = await driver.result()
            if result.wafer_id == wafer.wafer_id and status.state is CleanerState.DONE:
                return TakeResult(result, how=f"{driver.name} reports its clean result")
            if status.state is CleanerState.LOADED:  # loaded, never started: start it (once)
                async with wafer.guarded("START", driver.name):
                    await driver.start()
            if status.state is not CleanerState.DONE:
                await driver.wait_for(CleanerState.DONE, timeout_s=SETTLE_WAIT_S)
                result = await driver.result()
                if result.wafer_id == wafer.wafer_id:
                    return TakeResult(result, how=f"{driver.name} finished its clean")
            return Unknown(f"{driver.name} holds wafer {result.wafer_id or '(none)'}, "
                           f"not {wafer.wafer_id}")
        if status.wafer_present and status.state is CleanerState.ALARM and (
                await driver.loaded_wafer_id() == wafer.wafer_id):
            return StoppedByAlarm(f"{driver.name} holds it, stopped by alarm "
                                  f"{status.alarm_code}")
        if status.wafer_present:
            return Unknown(f"{driver.name} holds a wafer in state {status.state.name}")
        if wafer.judging:
            return self.judged_before(step, wafer, driver.name)
        if "START" in wafer.intents:
            # Loaded (LOAD is answered before START's intent) and gone from the chamber, which
            # only we empty after a judgment: someone took it out. Cleaned or not: a person.
            return Unknown(f"{driver.name} no longer shows the wafer, and its START was sent")
        return NeverTaken(f"{driver.name} never took it")

    async def holds(self, driver: Cleaner, wafer_id: str, started: bool) -> bool:
        """WAFER_ID is the id the last LOAD took; with a wafer in the chamber it is that
        wafer's once it was started (a LOAD refused after WAFER_ID was written leaves the
        id of a wafer that never went in: only a started one counts)."""
        if not started:
            return False
        status = await driver.status()
        return status.wafer_present and await driver.loaded_wafer_id() == wafer_id

    def result_from(self, step: C, wafer_id: str, measured: Mapping[str, Any]
                    ) -> CleanResult:
        """(The strip's measurements add the mask residue.)"""
        m = measured
        return CleanResult(wafer_id, CleanStatus[m["status"]], m["ionic_ug_cm2"],
                           m["cycle_count"], m.get("mask_residue_pct"))


# The recipe registers of each cleaner as we last wrote or read them, with the kind whose
# registers they are (a strip writes some a clean shares): they change only when written,
# so a step need not read them again; a setup change reads them afresh.
_RECIPES: weakref.WeakKeyDictionary[Any, tuple[str, CleanRecipe | StripRecipe]] = (
    weakref.WeakKeyDictionary())


class FluxClean(CleanerKind[CleanStep]):
    name = "clean"
    repeatable = True
    mode = CleanMode.FLUX_CLEAN
    tank = "bath"

    def setup_key(self, step: CleanStep) -> SetupKey:
        return ("clean", step.wash_temp_c)

    def setup_mismatches(self, step: CleanStep, view: ToolView[CleanerStatus]) -> list[str]:
        st = view.status
        recipe = view.clean_recipe
        assert isinstance(recipe, CleanRecipe)  # what look() read
        reasons = []
        if abs(recipe.wash_temp_c - step.wash_temp_c) > 0.05:
            reasons.append(f"cleaner set to wash at {recipe.wash_temp_c:g} °C, the step needs "
                           f"{step.wash_temp_c:g} °C")
        if abs(st.wash_temp_c - step.wash_temp_c) > BATH_TOLERANCE_C:
            reasons.append(f"bath at {st.wash_temp_c:g} °C, not within ±{BATH_TOLERANCE_C:g} "
                           f"°C of {step.wash_temp_c:g} °C")
        return reasons

    def inputs(self, st: CleanerStatus) -> tuple[tuple[bool | None, str], ...]:
        return ((st.chemistry_low, "chemistry low"), *super().inputs(st))

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

    async def read_recipe(self, driver: Cleaner) -> CleanRecipe:
        return await driver.recipe()

    async def store_recipe(self, driver: Cleaner, step: CleanStep) -> None:
        await driver.set_recipe(step.tool_recipe())

    def describe(self, step: CleanStep) -> str:
        return (f"clean recipe: wash {step.wash_temp_c:g} °C {step.wash_time_s} s, rinse "
                f"{step.rinse_time_s} s, dry {step.dry_time_s} s, "
                f"{step.spray_pressure_bar:g} bar")

    def tank_c(self, status: CleanerStatus, step: CleanStep) -> tuple[float | None, float]:
        return status.wash_temp_c, step.wash_temp_c


def bath_wait_s(gap_c: float) -> float:
    """Tool seconds for a tank ``gap_c`` °C from its setpoint to reach it, at the spec's
    slower rate (cooling), the gap taken as BATH_GAP_MAX_C at most."""
    return min(gap_c, BATH_GAP_MAX_C) / BATH_COOL_C_S


FLUX_CLEAN = FluxClean()

"""The barrier step: the EP-25's batch electroless Ni / immersion Au barrier
(../shared/specs/barrier-plater.md).

A batch tool: up to 25 wafers in one carrier ride one cycle whose time does not
depend on how many there are. Every member's step meets at a ``Batch``
(``sequences.kinds.batch``); the batch's own task sends LOAD and START (each a
guarded intent per wafer) and waits for the pushed ``DONE`` of its batch id,
not for a poll (an alarm, a state change or a dropped link wakes it to look:
the spec does not promise that DONE after a power loss): its one cycle on the
plater, ``plate_batch`` (``sequences/kinds/barrier_cycle.py``); every wafer then asks
``RESULT? <wafer_id>`` and is judged on its own against the step's windows;
UNLOAD goes once, after all are judged. A step run without a batch (``bumpline
sequence run``) is a batch of one.

The nickel bath's life is weighed for the whole batch before LOAD: a batch that
would take the bath past 6.0 MTO is held at its interlock (``_bath_life``), since
the tool checks the life only before START and would plate the batch as its pH
leaves the range.

A batch an alarm ended (700/710 bath out of band, 900 emergency stop) fails
every member's step with that alarm: they go to disposition together. An alarm
that latches after the batch ended and before its UNLOAD (allowed in DONE only)
keeps the carrier in the tool: the riders, already judged, do not go on until the
line has cleared it and taken the carrier out (``_out_once_judged``). After a
controller stop, recovery asks the plater (``STATE?``, ``RESULT?``, the events
it missed) and never sends START for a batch the tool may already have run; a
carrier of ours that ``STATE?`` shows LOADED was never started, and is started; one
in ALARM, its batch ended by the alarm, fails its riders as if watched, and the line
takes it out once the alarm is cleared (``StoppedByAlarm``); one in ALARM after its batch
ended OK is the watched case above: the riders are judged, and held until it is out
(``KeptInside``).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace
from typing import Any

from drivers.clock import Clock
from drivers.errors import ToolAlarm, ToolError, ToolTimeout
from drivers.plater import recipe_matches
from drivers.protocols import Plater
from drivers.types import (
    PLATER_BATCH_MAX,
    PLATER_BATH_BAND_C,
    Alarm,
    BatchResult,
    PlaterBath,
    PlaterState,
    PlaterStatus,
    RunStatus,
    WaferBarrier,
)
from sequences.kinds.barrier_cycle import Cycle, _start_when_ready, _unload_if_done, plate_batch
from sequences.kinds.base import (
    KeptInside,
    NeverTaken,
    Note,
    Recovering,
    Settled,
    StepContext,
    StepKind,
    StepResult,
    StoppedByAlarm,
    TakeResult,
    ToolView,
    Unknown,
    timeout_for,
)
from sequences.kinds.batch import Batch
from sequences.recipes.recipe import BarrierStep
from sequences.wafer.judge import Judgment, same_wafer, window

# Spec figures (barrier-plater.md, "Steps of a batch" and "Behaviour").
FIXED_S = 120.0 + 90.0 + 60.0 + 60.0 + 300.0  # preclean, activate, two rinses, dry
NI_RATE_UM_H = 15.0  # at 85 °C, fresh bath
NI_RATE_PER_C = 1.08
NI_HEAT_C_S, NI_COOL_C_S = 0.03, 0.01
AU_HEAT_C_S, AU_COOL_C_S = 0.05, 0.02
# The longest a bath change takes by the spec: nickel from power-up (25 °C) to its highest
# setpoint (90 °C), ~36 min. A wait sized from a bath reading is never longer: a failed
# sensor printing 999.9 °C put the changeover's timeout ~50 hours away.
BATH_CHANGE_MAX_S = (90.0 - 25.0) / NI_HEAT_C_S
MTO_LIFE = 6.0  # "at 6.0 MTO it raises 740 before the next START"
MTO_PER_WAFER_UM = 0.004  # "each batch uses about 0.004 MTO per wafer per µm of nickel"
PH_LOW = 4.4  # "below 4.4 → 720": the pH reaches it as the bath's life ends
WARNING_ONLY = (741,)  # NI MTO HIGH does not block


def gold_s(au_um: float) -> float:
    return 600.0 if au_um <= 0.05 + 1e-9 else 900.0 if au_um <= 0.10 + 1e-9 else 1200.0


def nickel_s(ni_um: float, ni_temp_c: float) -> float:
    """Nickel time on a fresh bath (an aged one is slower: the gauge stops the step)."""
    return ni_um / (NI_RATE_UM_H * NI_RATE_PER_C ** (ni_temp_c - 85.0)) * 3600.0


def batch_id_for(wafer_ids: list[str] | tuple[str, ...], now: float) -> str:
    """A batch id the plater takes (<= 16 characters) that differs between batches."""
    digest = hashlib.sha1(f"{now:.3f}|{','.join(wafer_ids)}".encode()).hexdigest()
    return f"B{digest[:11].upper()}"


@dataclass(frozen=True)
class PlaterView(ToolView[PlaterStatus]):
    """STATE? plus what the interlocks need: the stored recipe, the baths, the alarm."""

    recipe: Any = None
    bath: PlaterBath | None = None
    alarm_code: int = 0
    alarm_text: str = ""
    ended_carrier: bool = False  # DONE with a carrier no batch of ours still holds


@dataclass(frozen=True)
class BarrierOutcome:
    """One wafer's barrier and the batch it rode in (the record keeps both)."""

    wafer: WaferBarrier
    batch: BatchResult
    bath: PlaterBath | None = None  # the baths as the batch started
    wafers: tuple[str, ...] = ()


class Barrier(StepKind[BarrierStep, Plater, PlaterStatus, BarrierOutcome]):
    name, role = "barrier", "plater"
    driver_type = Plater
    batch = True  # several wafers ride one cycle (the scheduler gathers them)
    rides_out = True  # one wafer's abort cannot stop its batch-mates' cycle
    guarded = ("LOAD", "START")

    def __init__(self) -> None:
        self._open: dict[str, Batch] = {}  # tool name -> the batch in it

    def batch_capacity(self, step: BarrierStep) -> int:
        return step.batch_size or PLATER_BATCH_MAX

    # --- setup and readiness -------------------------------------------------------------------

    def setup_key(self, step: BarrierStep) -> tuple[Any, ...]:
        return ("barrier", step.ni_um, step.au_um, step.ni_temp_c, step.au_temp_c)

    def setup_mismatches(self, step: BarrierStep, view: ToolView) -> list[str]:
        assert isinstance(view, PlaterView)
        reasons = []
        if view.recipe is not None and not recipe_matches(view.recipe, step.tool_recipe()):
            r = view.recipe
            reasons.append(f"plater recipe is {r.ni_um:g} µm Ni / {r.au_um:g} µm Au at "
                           f"{r.ni_temp_c:g}/{r.au_temp_c:g} °C, the step needs "
                           f"{step.ni_um:g} / {step.au_um:g} at {step.ni_temp_c:g}/"
                           f"{step.au_temp_c:g} °C")
        bath = view.bath
        if bath is not None:
            for name, at, wanted in (("nickel", bath.ni_temp_c, step.ni_temp_c),
                                     ("gold", bath.au_temp_c, step.au_temp_c)):
                if abs(at - wanted) > PLATER_BATH_BAND_C:
                    reasons.append(f"{name} bath at {at:g} °C, not within "
                                   f"±{PLATER_BATH_BAND_C:g} °C of {wanted:g} °C")
        return reasons

    def busy(self, status: PlaterStatus, wafer_id: str) -> bool:
        return status.state in (PlaterState.LOADED, PlaterState.RUNNING, PlaterState.MAINT)

    def interlocks(self, step: BarrierStep, view: ToolView, wafer_id: str) -> list[str]:
        assert isinstance(view, PlaterView)
        st: PlaterStatus = view.status
        reasons = []
        if view.alarm_code and view.alarm_code not in WARNING_ONLY:
            reasons.append(f"alarm {view.alarm_code} {view.alarm_text} active".replace("  ", " "))
        elif st.state is PlaterState.ALARM:
            reasons.append("alarm latched")
        if st.state not in (PlaterState.IDLE, PlaterState.ALARM) and not view.ended_carrier:
            reasons.append(f"plater is {st.state}")
        return (reasons + self.setup_mismatches(step, view)
                + _bath_life(view.bath, view.wafers, step.ni_um))

    # --- times ---------------------------------------------------------------------------------

    def nominal_s(self, step: BarrierStep) -> float:
        """One batch, whatever its size: the spec's step times on a fresh bath."""
        return FIXED_S + nickel_s(step.ni_um, step.ni_temp_c) + gold_s(step.au_um)

    # --- results -------------------------------------------------------------------------------

    def judge(self, step: BarrierStep, result: BarrierOutcome, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        w, b = result.wafer, result.batch
        measurements: dict[str, Any] = {
            "ni_um": w.ni_um, "au_um": w.au_um, "batch_id": b.batch_id,
            "batch_status": b.status.name, "batch_wafers": b.wafers,
            "ni_mean_um": b.ni_mean_um, "au_mean_um": b.au_mean_um}
        if result.bath is not None:
            measurements.update(ni_bath_c=result.bath.ni_temp_c, au_bath_c=result.bath.au_temp_c,
                                ni_mto=result.bath.ni_mto)
        findings = same_wafer(wafer_id, w.wafer_id)
        if b.status is not RunStatus.OK:
            findings.append(f"batch {b.batch_id} ended {b.status.name}")
        findings += window("nickel", w.ni_um, step.ni_measured_um, " µm")
        findings += window("gold", w.au_um, step.au_measured_um, " µm")
        return Judgment(not findings, tuple(findings), measurements)

    def windows(self, step: BarrierStep) -> dict[str, list[float | None]]:
        return {"ni_um": list(step.ni_measured_um), "au_um": list(step.au_measured_um)}

    # --- talking to the tool -------------------------------------------------------------------

    async def look(self, driver: Any, step: BarrierStep, wafer_id: str, status: Any
                   ) -> ToolView:
        alarm = await driver.alarm()
        # A batch an alarm ended leaves its carrier DONE once the alarm clears; its wafers
        # went to disposition, so the next batch takes it out before loading.
        ended = status.state is PlaterState.DONE and driver.name not in self._open
        return PlaterView(status, recipe=await driver.recipe(), bath=await driver.bath(),
                          alarm_code=alarm.code if alarm else 0,
                          alarm_text=alarm.text if alarm else "", ended_carrier=ended)

    async def prepare(self, driver: Any, step: BarrierStep, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        wanted = step.tool_recipe()
        if not recipe_matches(await driver.recipe(), wanted):
            note(f"barrier recipe: {step.ni_um:g} µm Ni at {step.ni_temp_c:g} °C, "
                 f"{step.au_um:g} µm Au at {step.au_temp_c:g} °C")
            await driver.set_recipe(wanted)
        bath = await driver.bath()
        ni_s = bath_change_s(bath.ni_temp_c, step.ni_temp_c, NI_HEAT_C_S, NI_COOL_C_S)
        au_s = bath_change_s(bath.au_temp_c, step.au_temp_c, AU_HEAT_C_S, AU_COOL_C_S)
        if max(ni_s, au_s) > 0:
            note(f"waiting for the baths: nickel {bath.ni_temp_c:g} -> {step.ni_temp_c:g} °C, "
                 f"gold {bath.au_temp_c:g} -> {step.au_temp_c:g} °C")
        await driver.wait_bath_ready(timeout_s=timeout_for(max(ni_s, au_s)))

    async def execute(self, driver: Any, step: BarrierStep, ctx: StepContext, seen: ToolView
                      ) -> StepResult:
        batch = ctx.batch
        if batch is None:  # a wafer run on its own: a batch of one
            batch = Batch(batch_id_for([ctx.wafer_id], ctx.clock.now()), [ctx.wafer_id],
                          driver.name)
        self._open[driver.name] = batch

        async def work(b: Batch) -> Cycle:
            return await plate_batch(driver, b, ctx, self.nominal_s(step))

        run: Cycle = await batch.run(ctx.wafer_id, work, ctx.journal)
        assert run.result is not None
        wafer = await driver.wafer_result(ctx.wafer_id)
        return StepResult(BarrierOutcome(wafer, run.result, run.bath, batch.riders))

    async def unload(self, driver: Any, step: BarrierStep) -> None:
        batch = self._open.get(driver.name)
        wafer_id = batch.wafer_of_current_task() if batch is not None else None
        if batch is None or wafer_id is None:
            await _unload_if_done(driver)
            return
        await batch.judged(wafer_id, lambda: self._out_once_judged(driver, batch))

    async def close_batch(self, driver: Any, batch: Any) -> bool:
        """The carrier out once the batch is over (DONE: UNLOAD); True once it is out (IDLE:
        nothing inside). Anything else (ALARM: UNLOAD is allowed in DONE only): False."""
        if self._open.get(driver.name) is batch:
            del self._open[driver.name]
        state = (await driver.status()).state
        if state is PlaterState.DONE:
            await driver.unload()
            return True
        return bool(state is PlaterState.IDLE)

    async def _out_once_judged(self, driver: Any, batch: Batch) -> None:
        """Every rider is judged: the carrier out. An alarm can latch after the batch's DONE
        and before its UNLOAD (the door, the tank level, an emergency stop; UNLOAD only in
        DONE): the carrier stays in, and no rider may go on as if it were out. The line is
        told (``batch.kept_inside``: the alarm recorded with the riders, the tool out of
        service, the riders held until it is cleared and the carrier out). A batch with no
        line behind it (a step run on its own) fails its riders with the alarm."""
        if await self.close_batch(driver, batch):
            return
        alarm = await driver.alarm()
        if alarm is None and await self.close_batch(driver, batch):
            return  # cleared meanwhile: out now
        if alarm is None:
            raise ToolError(driver.name, f"the carrier of batch {batch.batch_id} was not "
                            f"unloaded: the plater is {await driver.state()}")
        if batch.kept_inside is None:
            raise ToolAlarm(driver.name, alarm.code, f"{alarm.text} (latched after batch "
                            f"{batch.batch_id} ended: its carrier is still in the tool)")
        batch.kept_inside(alarm)

    async def abort(self, driver: Any, step: BarrierStep, wafer_id: str) -> list[str]:
        """A failed member leaves its batch; the last one out takes the carrier out."""
        batch = self._open.get(driver.name)
        if batch is not None and wafer_id in batch.members and len(batch.members) > 1:
            return []  # the batch's close (controller/line/batching.py) unloads it once
        if batch is not None:
            self._open.pop(driver.name, None)  # a batch of one: this wafer was all of it
        try:
            if await _unload_if_done(driver):
                return ["UNLOAD after the batch ended"]
        except ToolError as exc:
            return [f"UNLOAD refused: {exc.detail}"]
        return []

    # --- recovery ------------------------------------------------------------------------------

    async def _start_loaded(self, driver: Any, step: BarrierStep, status: PlaterStatus,
                            wafers: list[Recovering], clock: Clock) -> PlaterStatus:
        """A carrier LOADED and not started is started, when it is ours: the spec's STATE?
        LOADED means no START was executed (an executed START leaves the tool RUNNING, then
        DONE; nothing leads back to LOADED), so START cannot plate anything twice; and
        LOADED allows no UNLOAD or ABORT, so START is the one way out. Ours: the wafers'
        LOAD intents name its batch id. The interlocks apply as for any START (no blocking
        alarm, the step's recipe, the bath's life; the baths are waited for). Anything else
        (another carrier, an interlock) is left for an engineer; the state is returned."""
        riders = [w for w in wafers if status.batch_id in _loaded_by(w)]
        if not riders:
            for w in wafers:
                w.note(f"{driver.name}: batch {status.batch_id} loaded, not started, and no "
                       "LOAD of this wafer names it; an engineer decides")
            return status
        view = await self.look(driver, step, riders[0].wafer_id, status)
        assert isinstance(view, PlaterView)
        reasons = (_bath_life(view.bath, len(riders), step.ni_um)
                   + self.setup_mismatches(step, replace(view, bath=None)))
        if view.alarm_code and view.alarm_code not in WARNING_ONLY:
            reasons.insert(0, f"alarm {view.alarm_code} {view.alarm_text} active")
        why = "; ".join(reasons)

        async def start() -> None:  # each rider's intent first, as the step's own START
            async with contextlib.AsyncExitStack() as stack:
                for w in riders:
                    await stack.enter_async_context(w.guarded("START", driver.name))
                await driver.start()

        if not reasons:
            try:
                await _start_when_ready(driver, clock, start)
            except ToolError as exc:
                why = f"START refused: {exc.detail}"
            else:
                for w in riders:
                    w.note(f"{driver.name}: batch {status.batch_id} was loaded, not started "
                           "(STATE? LOADED): started now")
                return await driver.status()
        for w in riders:
            w.note(f"{driver.name}: batch {status.batch_id} loaded, not started; not started "
                   f"now ({why}): an engineer decides")
        return status

    async def settle(self, driver: Any, step: BarrierStep, wafer: Recovering, clock: Clock
                     ) -> Settled:
        return (await self.settle_all(driver, [(step, wafer)], clock))[wafer.wafer_id]

    async def settle_all(self, driver: Any, wafers: list[tuple[BarrierStep, Recovering]],
                         clock: Clock) -> dict[str, Settled]:
        """Ask the plater what became of the batch: never START again for a wafer whose
        START may have reached it. Our carrier still LOADED is started (no START reached
        it: ``_start_loaded``); a batch running is waited for (its DONE); our carrier in
        ALARM, its batch not ended OK, is ``StoppedByAlarm`` for every rider; ended OK (the
        alarm latched before its UNLOAD), ``KeptInside``: judged, held for the carrier."""
        settled: dict[str, Settled] = {}
        if not wafers:
            return settled
        # No batch task of ours runs on the tool now (the controller stopped, or the batch's
        # task ended when the tool fell silent): a batch still counted open would keep
        # ``abort`` from unloading its carrier and ``look`` from seeing it ended.
        self._open.pop(driver.name, None)
        step = wafers[0][0]
        status = await driver.status()
        if status.state is PlaterState.LOADED:
            status = await self._start_loaded(driver, step, status, [w for _, w in wafers],
                                              clock)
        if status.state is PlaterState.RUNNING:
            try:
                # IDLE: a power loss ended it ABORTED and its carrier was rinsed by hand
                await driver.wait_for(PlaterState.DONE, PlaterState.ALARM, PlaterState.IDLE,
                                      timeout_s=timeout_for(self.nominal_s(step)))
            except ToolTimeout:
                pass
            status = await driver.status()
        try:
            last = await driver.result()
        except ToolError:
            last = None
        # Its carrier still inside, in ALARM (UNLOAD is allowed in DONE only); the line
        # clears the alarm and takes the carrier out. A batch not ended OK (the alarm
        # stopped it while no controller watched) fails its riders as if watched; one that
        # ended OK before the alarm latched stands, but its riders wait for the carrier.
        stopped: StoppedByAlarm | None = None
        kept: Alarm | None = None
        if (status.state is PlaterState.ALARM and last is not None
                and status.batch_id == last.batch_id):
            alarm = await driver.alarm()
            said = f"alarm {alarm.code} {alarm.text}" if alarm else "an alarm"
            if last.status is not RunStatus.OK:
                stopped = StoppedByAlarm(f"{driver.name} holds its carrier in {said}: "
                                         f"batch {last.batch_id} ended {last.status.name}")
            elif alarm is not None:  # none now: cleared since; the step's unload takes it out
                kept = alarm
        mine: dict[str, WaferBarrier | None] = {}
        for _, w in wafers:
            mine[w.wafer_id] = None
            if last is not None:
                with contextlib.suppress(ToolError):
                    mine[w.wafer_id] = await driver.wafer_result(w.wafer_id)
        carrier = None
        if kept is not None and last is not None:
            carrier = Batch.found(last.batch_id, [w for w, r in mine.items() if r is not None],
                                  driver.name)
        for _, w in wafers:
            ours = mine[w.wafer_id]
            if ours is not None and stopped is not None:
                settled[w.wafer_id] = stopped
            elif ours is not None and last is not None and kept is not None:
                settled[w.wafer_id] = KeptInside(
                    BarrierOutcome(ours, last), alarm=kept, carrier=carrier,
                    how=f"{driver.name} reports batch {last.batch_id} OK, its carrier kept "
                        f"in by alarm {kept.code} {kept.text} latched after it")
            elif ours is not None and last is not None:  # it rode the last batch: once
                settled[w.wafer_id] = TakeResult(
                    BarrierOutcome(ours, last), unloaded=status.state is PlaterState.IDLE,
                    how=f"{driver.name} reports batch {last.batch_id} {last.status.name}")
            elif status.state in (PlaterState.LOADED, PlaterState.RUNNING):
                settled[w.wafer_id] = Unknown(f"{driver.name} is {status.state} with batch "
                                              f"{status.batch_id}")
            elif "START" in w.intents:
                settled[w.wafer_id] = Unknown(f"START may have reached {driver.name} but its "
                                              "last result does not name the wafer")
            else:
                settled[w.wafer_id] = NeverTaken(f"{driver.name} never started it (no START "
                                                 "was sent)")
        if status.state is PlaterState.DONE and any(
                isinstance(s, TakeResult) for s in settled.values()):
            await _unload_if_done(driver)
            settled = {k: (TakeResult(v.result, True, v.how) if isinstance(v, TakeResult)
                           else v) for k, v in settled.items()}
        return settled


def mto_after(mto: float, wafers: int, ni_um: float) -> float:
    """The nickel bath's age once a batch of ``wafers`` has plated ``ni_um`` of nickel."""
    return mto + MTO_PER_WAFER_UM * wafers * ni_um


def _bath_life(bath: PlaterBath | None, wafers: int, ni_um: float) -> list[str]:
    """What the nickel bath's age forbids: 740 at START, 720 below the pH floor, and a
    batch that would end past the bath's life. The tool checks its life only before
    START, so a batch started just short of it plates its wafers as the pH falls out
    of range (720 mid-batch): the host weighs the whole batch before START. Exactly
    the life is allowed (the spec's pH reaches 4.4 there, not below)."""
    if bath is None:
        return []
    reasons = []
    after = mto_after(bath.ni_mto, wafers, ni_um)
    if bath.ni_mto >= MTO_LIFE:
        reasons.append(f"nickel bath at {bath.ni_mto:g} MTO, its life ends at "
                       f"{MTO_LIFE:g}: replenish it")
    elif after > MTO_LIFE + 1e-9:  # 1e-9: sums of decimals landing exactly on the life
        batch = f"{wafers} wafer{'s' if wafers != 1 else ''} x {ni_um:g} µm Ni"
        reasons.append(f"nickel bath at {bath.ni_mto:g} MTO: this batch ({batch}) would end "
                       f"at {after:.2f} MTO, past its life of {MTO_LIFE:g} (pH below "
                       f"{PH_LOW:g} mid-batch): replenish it first (REPLENISH)")
    if bath.ni_ph < PH_LOW:
        reasons.append(f"nickel bath pH {bath.ni_ph:g} below {PH_LOW:g}: replenish it")
    return reasons


def _loaded_by(wafer: Recovering) -> set[str]:
    """The carriers (batch ids) this wafer's LOAD intents name."""
    return {i.split(" ", 1)[1] for i in wafer.intents if i.startswith("LOAD ")}


def bath_change_s(at: float, wanted: float, heat: float, cool: float) -> float:
    """Tool seconds for a bath at ``at`` °C to reach ``wanted`` at the spec's rates, at most
    BATH_CHANGE_MAX_S (a reading far outside what a bath can be says nothing of the time)."""
    gap = wanted - at
    if abs(gap) <= PLATER_BATH_BAND_C:
        return 0.0
    return min(gap / heat if gap > 0 else -gap / cool, BATH_CHANGE_MAX_S)


BARRIER = Barrier()

"""The reflow step: the 10-zone nitrogen reflow oven (reflow-oven.md).

The oven is a pipeline: a wafer loaded at the entrance rides the 4,000 mm heated
tunnel at the profile's belt speed; the next may follow once the wafer ahead has
cleared the entrance (450 mm of travel); at the exit the host reads its measured
profile and unloads it. The tool cannot stop a wafer on the belt: an abort lets
it ride out. A profile change takes 15-25 minutes (a high-lead to eutectic
cool-down the longest) and needs an empty belt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from drivers.clock import Clock
from drivers.errors import DeviceBusy, ToolAlarm, ToolError, ToolTimeout
from drivers.protocols import Oven
from drivers.types import ExitFlag, OvenReadiness, OvenState, ReflowResult
from sequences.kinds.base import (
    AlarmBeforeEntry,
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
    expect_watching,
    timeout_for,
)
from sequences.kinds.oven_exit import exit_watch, watch_of
from sequences.recipes.recipe import ReflowStep
from sequences.wafer.journal import guarded
from sequences.wafer.judge import Judgment, at_most, same_wafer, window

TUNNEL_MM = 4000.0  # heated tunnel, entrance to exit
ENTRANCE_SPACING_MM = 450.0  # belt travel before the entrance is clear for the next wafer
SLOWEST_BELT_MM_MIN = 200  # the recipe format's lowest conveyor speed
CHANGEOVER_MIN_S = 15 * 60.0  # a profile change takes 15-25 min
CHANGEOVER_MAX_S = 25 * 60.0
READY_POLL_S = 20.0  # during a cool-down, look at the oven this often
HEATED_POLL_S = 5.0  # after a heat-up's expected time, look this often
BIG_COOLDOWN_C = 100.0  # hottest zone this much above the new profile's: high-lead to eutectic
BIG_COOLDOWN_MIN_S = 600.0  # such a change takes no less
# A cool-down's rate is measured over this much cooling at least before it is trusted: over
# a second or two the change is the registers' 0.1 °C and the zones' noise, and a rate of
# 0.1 °C over a host's stall (at 2000x, 0.2 s is 400 tool s) put the next look days away.
COOL_FIRST_LOOK_S = 30.0
COOL_LOOK_MAX_S = 300.0  # and the zones are looked at this often at least: it is a guess
# A cold start to the first profile. The spec says zones "heat quickly" and READY needs
# every zone within 2 °C of its setpoint for 60 s; it gives no heating rate. We take the
# RF-10N's air as first-order with a 90 s time constant from 25 °C (docs/scheduling.md;
# the simulator's model of it; a real oven's figure belongs here once measured).
AMBIENT_C = 25.0
HEAT_TAU_S = 90.0
STABLE_BAND_C = 2.0
READY_HOLD_S = 60.0
ENTRANCE_YIELD_S = 25.0  # no entrance work this close to a wafer's arrival at the exit
POLL_S = 1.0  # how often the exit and entrance are looked at while a wafer rides
RECOVERY_POLL_S = 2.0


def transit_s(step: ReflowStep) -> float:
    """Tool seconds from LOAD to the exit."""
    return TUNNEL_MM / step.conveyor_mm_min * 60.0


def cold_start_s(step: ReflowStep) -> float:
    """Tool seconds from APPLY on a cold oven to READY: the slowest zone (the hottest
    setpoint) within the stable band, then the hold."""
    return heat_up_s(step.hottest_zone_c - AMBIENT_C)


def heat_up_s(rise_c: float) -> float:
    """Tool seconds for the hottest zone to rise ``rise_c`` into the stable band, then the
    hold before READY."""
    if rise_c <= STABLE_BAND_C:
        return READY_HOLD_S
    return HEAT_TAU_S * math.log(rise_c / STABLE_BAND_C) + READY_HOLD_S


SLOWEST_TRANSIT_S = TUNNEL_MM / SLOWEST_BELT_MM_MIN * 60.0


class Reflow(StepKind[ReflowStep, Oven, OvenReadiness, ReflowResult]):
    name, role = "reflow", "oven"
    driver_type = Oven
    changeover_s = CHANGEOVER_MIN_S
    rides_out = True
    pipelined = True
    guarded = ("LOAD",)

    def setup_key(self, step: ReflowStep) -> tuple[Any, ...]:
        return ("reflow", step.profile_id)

    def setup_mismatches(self, step: ReflowStep, view: ToolView) -> list[str]:
        st: OvenReadiness = view.status
        reasons = []
        if st.active_profile_id != step.profile_id:
            reasons.append(f"oven runs profile {st.active_profile_id}, the step needs profile "
                           f"{step.profile_id}")
        if st.state not in (OvenState.READY, OvenState.PROCESSING):
            reasons.append(f"oven is {st.state.name}, not READY or PROCESSING")
        if not st.nitrogen_on:
            reasons.append("nitrogen is off")
        return reasons

    def setup_facts(self, step: ReflowStep) -> dict[str, Any]:
        # the spec's 15-25 min is a cool-down's; controller/line/heating.py estimates from zones
        return {"changeover_s": [CHANGEOVER_MIN_S, CHANGEOVER_MAX_S],
                "profile_id": step.profile_id, "setpoints_c": list(step.zones_c)}

    def busy(self, status: Any, wafer_id: str) -> bool:
        return status.state is OvenState.HEATING

    def interlocks(self, step: ReflowStep, view: ToolView, wafer_id: str) -> list[str]:
        st: OvenReadiness = view.status
        reasons = alarm_reasons(st.alarm_code, st.state is OvenState.ALARM)
        reasons += self.setup_mismatches(step, view)
        if st.nitrogen_on and st.o2_ppm > step.o2_limit_ppm:
            reasons.append(f"O2 {st.o2_ppm} ppm above the step's limit {step.o2_limit_ppm} ppm")
        if not st.conveyor_running:
            reasons.append("conveyor stopped")
        return reasons

    def nominal_s(self, step: ReflowStep) -> float:
        return transit_s(step)

    def occupancy_s(self, step: ReflowStep) -> float:
        return ENTRANCE_SPACING_MM / step.conveyor_mm_min * 60.0

    def startup_s(self, step: ReflowStep) -> float:
        return cold_start_s(step)

    def judge(self, step: ReflowStep, result: ReflowResult, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        r = result
        measurements = {
            "peak_c": r.peak_c, "tal_s": r.tal_s, "tal_threshold_c": step.tal_threshold_c,
            "ramp_max_c_s": r.ramp_max_c_s, "cool_max_c_s": r.cool_max_c_s,
            "profile_id": r.profile_id, "o2_max_ppm": r.o2_max_ppm, "flags": r.flags,
        }
        findings = same_wafer(wafer_id, r.wafer_id)
        findings += window("peak", r.peak_c, step.peak_c, " °C")
        findings += window(f"time above {step.tal_threshold_c:g} °C", r.tal_s, step.tal_s, " s")
        findings += at_most("heating ramp", r.ramp_max_c_s, step.max_ramp_c_s, " °C/s")
        findings += at_most("cooling rate", r.cool_max_c_s, step.max_cool_c_s, " °C/s")
        findings += at_most("O2", r.o2_max_ppm, step.o2_limit_ppm, " ppm")
        if r.profile_id != step.profile_id:
            findings.append(f"reflowed with profile {r.profile_id}, the step's is "
                            f"{step.profile_id}")
        for flag, text in ((ExitFlag.BELT_STOPPED, "the belt stopped during its pass"),
                           (ExitFlag.O2_HIGH, "O2 went above the limit during its pass"),
                           (ExitFlag.ZONE_ALARM, "a zone alarm during its pass")):
            if r.has_flag(flag):
                findings.append(text)
        return Judgment(not findings, tuple(findings), measurements)

    def result_from(self, step: ReflowStep, wafer_id: str, measured: Mapping[str, Any]
                    ) -> ReflowResult:
        """(The curve is not among the measurements: the record keeps none then.)"""
        m = measured
        return ReflowResult(wafer_id, m["peak_c"], m["tal_s"], m["ramp_max_c_s"],
                            m["cool_max_c_s"], m["profile_id"], m["o2_max_ppm"], m["flags"])

    def windows(self, step: ReflowStep) -> dict[str, list[float | None]]:
        return {
            "peak_c": list(step.peak_c),
            "tal_s": list(step.tal_s),
            "ramp_max_c_s": [None, step.max_ramp_c_s],
            "cool_max_c_s": [None, step.max_cool_c_s],
            "o2_max_ppm": [None, step.o2_limit_ppm],
        }

    def curve(self, step: ReflowStep, result: Any) -> tuple[list[float], float] | None:
        return list(result.curve_c), step.tal_threshold_c

    async def check_status(self, driver: Oven) -> OvenReadiness:
        return await driver.readiness()

    async def prepare(self, driver: Any, step: ReflowStep, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        status = await driver.readiness()  # profile, belt, zones, nitrogen: no inputs needed
        if status.state is OvenState.ALARM:
            # Said now, not after waiting out a belt the alarm may have stopped (a jam: the
            # wafers on it do not leave, and "belt not empty" named the wrong cause).
            await _alarm_look(driver)
        looked = clock.now()
        cooling = 0.0
        if status.active_profile_id != step.profile_id or status.state not in (
            OvenState.READY, OvenState.PROCESSING, OvenState.HEATING
        ):
            # The count APPLY's own rule reads: on an oven that counts the tunnel only, a
            # wafer waiting at the exit does not hold APPLY up (docs/protocols.md).
            if status.wafers_on_belt:
                note(f"waiting for {status.wafers_on_belt} wafer(s) to leave the belt")
                deadline = clock.now() + timeout_for(SLOWEST_TRANSIT_S)
                while (await driver.process_values()).wafers_on_belt:  # one request a look
                    if clock.now() >= deadline:
                        raise ToolTimeout(driver.name,
                                          "belt not empty: cannot apply a new profile")
                    await clock.sleep(POLL_S)
            note(f"profile {step.profile_id}: zones {'/'.join(f'{z:g}' for z in step.zones_c)}"
                 f" °C, {step.conveyor_mm_min} mm/min, O2 limit {step.o2_limit_ppm} ppm, "
                 f"TAL above {step.tal_threshold_c:g} °C (stage + APPLY)")
            await driver.stage_profile(step.tool_profile())
            await driver.apply()
            hottest_now = max((pv for pv in status.zone_pv_c if pv is not None), default=0.0)
            cooling = hottest_now - step.hottest_zone_c
        if not status.nitrogen_on:
            note("nitrogen on")
            await driver.set_nitrogen(True)
        # Cooling from a high-lead profile takes 15-25 minutes: no look at the oven in
        # the first 10 of them, then a zone read whenever the cooling seen says the
        # zones can be in the band (_cooled). Heating has an expected time (cold_start_s's
        # model from the hottest zone now): no look before it. Then READY every
        # HEATED_POLL_S (READY_POLL_S if the zones did not cool as seen).
        # An alarm latched meanwhile (the e-stop, N2 flow) is looked for every
        # SETUP_ALARM_LOOK_S on the way (``_alarm_look``): found at the end of these waits
        # only, it was heard of up to 25 minutes late, or never when the run ended first
        # (its setup cancelled).
        poll = READY_POLL_S

        async def watching(seconds: float) -> None:
            await expect_watching(clock, seconds, lambda: _alarm_look(driver))

        if cooling > STABLE_BAND_C:
            if cooling >= BIG_COOLDOWN_C:
                await watching(BIG_COOLDOWN_MIN_S)
            if await _cooled(driver, step, clock, _zone_gap(status.zone_pv_c, step), looked,
                             wait=watching):
                poll = HEATED_POLL_S
        elif cooling < -STABLE_BAND_C:
            await watching(heat_up_s(-cooling))
            poll = HEATED_POLL_S
        await driver.wait_ready(timeout_s=3600.0, poll_s=poll)
        deadline = clock.now() + timeout_for(120.0)
        while True:
            # O2_PPM is a process value: one request, not the interlocks' three (the
            # wafer's own interlock check reads them all before its LOAD).
            o2_ppm = (await _no_alarm(driver, await driver.process_values())).o2_ppm
            if o2_ppm <= step.o2_limit_ppm:
                break
            if clock.now() >= deadline:
                raise ToolTimeout(driver.name, f"O2 {o2_ppm} ppm still above the "
                                  f"step's limit {step.o2_limit_ppm} ppm")
            await clock.sleep(POLL_S)

    async def execute(self, driver: Any, step: ReflowStep, ctx: StepContext, seen: ToolView
                      ) -> StepResult:
        """Load at the entrance (journalled); the oven's exit watcher takes the wafer off at
        the exit the moment it can be there (``oven_exit``), so it never blocks the wafers
        behind it."""
        clock, wafer_id = ctx.clock, ctx.wafer_id
        ride = transit_s(step)
        deadline = clock.now() + timeout_for(ride)
        watch = exit_watch(driver, clock)
        async with _entrance_lock(driver):  # other wafers' steps share the entrance
            refused = ""
            look = False  # the entrance's timing says clear: no look before the LOAD
            while True:  # wait for the last loaded wafer to clear the entrance
                await watch.stand_clear(ENTRANCE_YIELD_S)
                # The entrance clears once the last wafer loaded has travelled 450 mm,
                # counted from its LOAD's reply (the oven had taken it by then): no look
                # before then; and the exit needs its reaction time between two arrivals
                # (``next_load_at``).
                clears = watch.next_load_at(self.occupancy_s(step))
                if clock.now() < clears:
                    await clock.sleep(clears - clock.now())
                # Only our LOADs close the entrance, so its timing is ENTRANCE_CLEAR without
                # a read (the interlock check leaves the inputs out). A belt that stopped,
                # or a wafer loaded before a restart, makes the oven refuse the LOAD (06,
                # nothing moved): from then on the inputs are looked at first.
                clear = True
                # An alarm the exit watcher found latched: no LOAD sent into it (the oven
                # refuses it in ALARM); the inputs say whether it is still there.
                if look or watch.alarm_latched:
                    signals = await driver.signals()
                    if signals.alarm_active:
                        alarm = await driver.alarm()
                        if alarm is not None:  # before our LOAD: the wafer never went in
                            raise AlarmBeforeEntry(driver.name, alarm.code, alarm.text)
                        # The flag with no alarm code: a reply damaged where Modbus TCP has
                        # no checksum (or an alarm just cleared). Not the tool's word.
                        await clock.sleep(POLL_S)
                        continue
                    clear = signals.entrance_clear
                if clear:
                    # The id first, outside the intent: an oven gone silent since the
                    # look is found with no LOAD possibly sent.
                    await driver.name_load(wafer_id)
                    try:
                        async with guarded(ctx.journal, wafer_id, "LOAD", driver.name):
                            sent_at = clock.now()
                            await driver.load(wafer_id, named=True)
                            replied_at = clock.now()  # before the journal's commit
                        watch.entered(replied_at)
                        break
                    except DeviceBusy as exc:  # refused (not READY just now): not on the belt
                        refused = f" ({exc})"
                        look = True
                if clock.now() >= deadline:
                    raise ToolTimeout(driver.name, "could not load the wafer: entrance not "
                                      f"clear or oven not ready{refused}")
                await clock.sleep(POLL_S)
            # Registered before the entrance is free: the watcher knows the riders in load
            # order.
            arrived = watch.ride(wafer_id, ride, sent_at)
        ctx.tool_free()  # the next wafer may follow once this one clears the entrance
        # On the belt: it comes out whatever happens; alarms while it rides are recorded
        # with its result, not fatal.
        return await arrived

    async def read_again(self, driver: Any, step: ReflowStep, result: ReflowResult,
                         wafer_id: str) -> ReflowResult | None:
        """The EXIT_ registers keep the wafer's values until the next reaches the exit:
        read once more while they still name it (its curve, read apart, is kept)."""
        try:
            again = await driver.exit_values()
        except ToolError:
            return None
        if again.wafer_id != wafer_id:
            return None
        return dataclasses.replace(again, curve_c=result.curve_c)

    async def abort(self, driver: Any, step: ReflowStep, wafer_id: str) -> list[str]:
        """Nothing to send: a wafer on the belt rides to the exit, where the watcher takes
        it off. A wafer whose LOAD was refused, or that is off the exit already, was never
        or is no longer on the belt: nothing to say."""
        watch = watch_of(driver)
        if watch is not None and watch.on_belt(wafer_id):
            return ["the oven has no abort: the wafer rides to the exit"]
        return []

    async def settle(self, driver: Any, step: ReflowStep, wafer: Recovering, clock: Clock
                     ) -> Settled:
        return (await self.settle_all(driver, [(step, wafer)], clock))[wafer.wafer_id]

    async def settle_all(self, driver: Any, wafers: list[tuple[ReflowStep, Recovering]],
                         clock: Clock) -> dict[str, Settled]:
        """Let the belt empty, giving each exiting wafer its own result; every wafer that
        was riding is settled exactly once."""
        # A judging wafer was unloaded at the exit before its step_done: judged again from
        # what that stored; only the ones still running ride the belt.
        settled: dict[str, Settled] = {w.wafer_id: self.judged_before(step, w, driver.name)
                                       for step, w in wafers if w.judging}
        riders = {w.wafer_id: w for _, w in wafers if not w.judging}
        deadline = clock.now() + 2 * SLOWEST_TRANSIT_S
        told: set[int] = set()  # the alarms found latched and not cleared since: said once
        while riders:
            status = await driver.status()
            if status.alarm_active and status.alarm_code not in told:
                told.add(status.alarm_code)  # raised while no controller watched: say it first
                await _say_alarm(driver, status.alarm_code, riders.values())
            # The exit wafer is taken whenever WAFER_AT_EXIT says so, and the belt is empty
            # only at count 0 with the exit empty: the same whether the oven's count
            # includes a wafer waiting at the exit or not.
            if status.wafer_at_exit or status.wafers_on_belt == 0:
                result = await driver.exit_result()
                rider = riders.pop(result.wafer_id, None)
                if status.wafer_at_exit:
                    await driver.unload()
                if rider is not None:
                    settled[rider.wafer_id] = TakeResult(
                        result, unloaded=True, how=f"{driver.name} delivered it at the exit")
                    continue
                if status.wafers_on_belt == 0 and not status.wafer_at_exit:
                    for rider in riders.values():
                        if "LOAD" in rider.intents:
                            # LOAD may have been sent and another wafer's result has since
                            # replaced this one's at the exit: only a person can tell.
                            settled[rider.wafer_id] = Unknown(
                                f"its LOAD may have reached {driver.name} but the oven no "
                                "longer shows it")
                        else:
                            settled[rider.wafer_id] = NeverTaken(
                                f"{driver.name} never took it (no LOAD was sent)")
                    return settled
            if status.alarm_active:
                try:
                    await driver.clear_alarm()
                except ToolError:
                    pass  # the cause is still there; the belt goes on regardless
                else:
                    if status.alarm_code in told:
                        told.discard(status.alarm_code)  # raised again later: said again
                        _alarm_found(riders.values(), status.alarm_code, "", cleared=True)
            if clock.now() > deadline:
                on_belt = status.wafers_on_belt > 0 or status.wafer_at_exit
                for rider in riders.values():
                    settled[rider.wafer_id] = Unknown(
                        f"{driver.name} did not deliver it within twice the transit time"
                        + ("; it may still be on the belt: taken off at the exit when it "
                           "comes out" if on_belt else ""))
                if on_belt:  # an alarm stopped the belt, say, and its cause outlasted the wait
                    exit_watch(driver, clock).strays(riders, SLOWEST_TRANSIT_S)
                return settled
            await clock.sleep(RECOVERY_POLL_S)
        return settled


async def _say_alarm(driver: Any, code: int, riders: Iterable[Recovering]) -> None:
    """An alarm recovery finds latched (530: a wafer reached the exit behind one no
    controller took off) is cleared to let the belt empty: each riding wafer's recovery
    notes say which it was first, so it is in their history and the audit log."""
    try:
        alarm = await driver.alarm()
    except ToolError:
        alarm = None
    said = f"alarm {alarm.code} {alarm.text}" if alarm is not None else f"alarm {code}"
    riders = list(riders)
    for rider in riders:
        rider.note(f"{driver.name} showed {said}, raised while no controller watched it; "
                   "clearing it to let the belt empty")
    _alarm_found(riders, code, alarm.text if alarm is not None else "", cleared=False)


def _alarm_found(riders: Iterable[Recovering], code: int, text: str, *, cleared: bool) -> None:
    """Recorded once with the line's alarms (every rider's recovery reports to the same)."""
    first = next(iter(riders), None)
    if first is not None and first.alarm is not None:
        first.alarm(code, text, cleared)


async def _alarm_look(driver: Any) -> None:
    """One read of ALARM_CODE: ToolAlarm once an alarm is latched. A code is read again
    before it is believed (Modbus TCP has no checksum: a damaged reply is a wrong value,
    and a setup failed on one was a changeover lost for nothing). Not the inputs (DI 0-3):
    they feed the belt knowledge, and the wafers' steps read them when they must."""
    alarm = await driver.alarm()
    if alarm is not None and await driver.alarm() == alarm:
        raise ToolAlarm(driver.name, alarm.code, alarm.text)


async def _no_alarm(driver: Any, values: Any) -> Any:
    """The process values read; ToolAlarm if they show the oven in ALARM with a code (with
    no code: a damaged read, see ``_alarm_look``), its text read with the code again."""
    if values.state is OvenState.ALARM and values.alarm_code:
        alarm = await driver.alarm()
        if alarm is not None:
            raise ToolAlarm(driver.name, alarm.code, alarm.text)
    return values


def _zone_gap(zones: tuple[float | None, ...], step: ReflowStep) -> float:
    """°C of the zone farthest from its setpoint (failed thermocouples and zones off aside)."""
    return max((abs(pv - sp) for pv, sp in zip(zones, step.zones_c, strict=True)
                if pv is not None and sp > 0), default=0.0)


async def _cooled(driver: Any, step: ReflowStep, clock: Clock, gap_c: float, since: float,
                  *, wait: Callable[[float], Awaitable[None]] | None = None) -> bool:
    """Look at the zones when the cooling seen since ``since`` (``gap_c`` then) says they
    can be in the stable band, then wait the hold READY needs; True once they were
    (False: not cooling as seen, or not in the band by CHANGEOVER_MAX_S; the caller's
    READY polls decide). The spec gives no cooling rate ("cool slowly", 15-25 min
    high-lead to eutectic): the rate between two looks, extrapolated in a straight line
    (``next_cool_look``). One zone read a look, instead of a READY poll every READY_POLL_S.
    ``wait``: how it waits between looks (the setup's looks for an alarm on the way)."""
    sleep = wait or clock.sleep
    deadline = clock.now() + CHANGEOVER_MAX_S
    await sleep(since + COOL_FIRST_LOOK_S - clock.now())
    while True:
        gap = _zone_gap(await driver.zone_temperatures(), step)
        now = clock.now()
        if gap <= STABLE_BAND_C:
            await sleep(READY_HOLD_S)
            return True
        pause = next_cool_look(gap_c, since, gap, now, deadline)
        if pause is None:
            return False
        since, gap_c = now, gap
        await sleep(pause)


def next_cool_look(gap_then: float, then: float, gap: float, now: float, deadline: float
                   ) -> float | None:
    """Tool seconds from ``now`` to the next look at cooling zones, ``gap`` °C from their
    setpoints now and ``gap_then`` at ``then``: when the rate seen brings them into the
    stable band (a cooling curve flattens: early, not late), at least HEATED_POLL_S, at
    most COOL_LOOK_MAX_S and never past ``deadline``. None: not cooling, or the deadline
    has come."""
    rate = (gap_then - gap) / (now - then) if now > then else 0.0
    if rate <= 0.0 or now >= deadline:
        return None
    return min(max((gap - STABLE_BAND_C) / rate, HEATED_POLL_S), COOL_LOOK_MAX_S,
               deadline - now)


_ENTRANCE_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def _entrance_lock(driver: Any) -> asyncio.Lock:
    lock = _ENTRANCE_LOCKS.get(driver)
    if lock is None:
        lock = _ENTRANCE_LOCKS[driver] = asyncio.Lock()
    return lock


REFLOW = Reflow()

"""Each step kind on its own, in memory: setup, interlocks, judgment, windows, times,
and how recovery settles a wafer found mid-step, with scripted tools and a manual clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from drivers.clock import ManualClock
from drivers.types import (
    CleanerState,
    CleanerStatus,
    CleanResult,
    CleanStatus,
    ExitFlag,
    OvenState,
    OvenStatus,
    PlacementResult,
    PlacerState,
    PlacerStatus,
    PrinterState,
    PrinterStatus,
    PrintResult,
    ReflowResult,
    RunStatus,
)
from sequences.errors import SequenceError
from sequences.kinds import KINDS, ROLE_OF_KIND, kind_of
from sequences.kinds.base import (
    NeverTaken,
    Recovering,
    TakeResult,
    ToolView,
    Unknown,
    timeout_for,
)
from sequences.kinds.flux_clean import BATH_COOL_C_S, BATH_GAP_MAX_C, bath_wait_s
from sequences.kinds.reflow import (
    CHANGEOVER_MAX_S,
    COOL_LOOK_MAX_S,
    HEATED_POLL_S,
    READY_HOLD_S,
    STABLE_BAND_C,
    _cooled,
    next_cool_look,
)
from sequences.recipes.recipe import find_recipe
from sequences.wafer.machine import retry_targets

RECIPE = find_recipe("rebump-hipb-snpb")
PRINT, REFLOW, CLEAN = RECIPE.step(1), RECIPE.step(2), RECIPE.step(3)
PLACE = find_recipe("ballmount-sac305").step(1)

PRINTER_IDLE = PrinterStatus(PrinterState.IDLE, None, 0, 0, 80.0, PRINT.stencil_id,
                             PRINT.paste_alloy)
PLACER_IDLE = PlacerStatus(PlacerState.IDLE, None, 0, PLACE.ball_alloy, PLACE.ball_diameter_um,
                           50.0, 50.0)
OVEN_READY = OvenStatus(OvenState.READY, (150.0,) * 10, 0, 0, 20, REFLOW.profile_id,
                        nitrogen_on=True, conveyor_running=True, entrance_clear=True,
                        wafer_at_exit=False, zones_stable=True, alarm_active=False)
CLEANER_READY = CleanerStatus(CleanerState.READY, CLEAN.wash_temp_c, 18.0, 0, 0, False, False,
                              False, False)
CLEAN_RECIPE = CLEAN.tool_recipe()


def test_the_registry_knows_every_kind_and_its_role():
    assert ROLE_OF_KIND == {"print": "printer", "place": "placer", "reflow": "oven",
                            "clean": "cleaner", "strip": "cleaner", "barrier": "plater"}
    for name, kind in KINDS.items():
        assert kind_of(name) is kind and kind.name == name


def test_retry_targets_come_from_the_kinds():
    # A misprint before its reflow restarts at the deposit; a clean runs again; a reflow never.
    assert retry_targets(["print", "reflow", "clean", "print", "reflow", "clean"]) == {
        1: 1, 3: 3, 4: 4, 6: 6}
    assert retry_targets(["place", "print", "reflow"]) == {1: 1, 2: 1}


@pytest.mark.parametrize(("step", "status", "extra", "reasons"), [
    (PRINT, PRINTER_IDLE, {}, []),
    (PRINT, PRINTER_IDLE, {"stencil_id": "ST-300-080"},
     ["stencil ST-300-080 mounted, the step needs ST-300-100"]),
    (PRINT, PRINTER_IDLE, {"paste_level_pct": 0.2}, ["paste level 0.2 % is below one print"]),
    (PRINT, PRINTER_IDLE, {"state": PrinterState.ALARM, "alarm_code": 102},
     ["alarm 102 active", "printer is ALARM"]),
    (PRINT, PRINTER_IDLE, {"state": PrinterState.DONE, "wafer_id": "W-OTHER"},
     ["printer is DONE with wafer W-OTHER"]),
    (PRINT, PRINTER_IDLE, {"state": PrinterState.DONE, "wafer_id": "W-1"}, []),  # its own
    (PLACE, PLACER_IDLE, {}, []),
    (PLACE, PLACER_IDLE, {"ball_level_pct": 0.0}, ["ball supply empty"]),
    # 120,000 sites: 2.4 % of a full supply; 2.3 % is short even at its rounding's top
    (PLACE, PLACER_IDLE, {"ball_level_pct": 2.3},
     ["ball supply 2.3 % (about 115,000 balls) is short of the wafer's 120,000 sites"]),
    (PLACE, PLACER_IDLE, {"ball_level_pct": 2.4}, []),
    (PLACE, PLACER_IDLE, {"flux_level_pct": 0.1}, ["flux level 0.1 % is below one wafer"]),
    (PLACE, PLACER_IDLE, {"ball_diameter_um": 200}, ["200 µm SAC305 balls loaded"]),
    (REFLOW, OVEN_READY, {}, []),
    (REFLOW, OVEN_READY, {"o2_ppm": 500}, ["O2 500 ppm above the step's limit 100 ppm"]),
    (REFLOW, OVEN_READY, {"nitrogen_on": False}, ["nitrogen is off"]),
    (REFLOW, OVEN_READY, {"conveyor_running": False}, ["conveyor stopped"]),
    (REFLOW, OVEN_READY, {"active_profile_id": 7}, ["oven runs profile 7"]),
    (REFLOW, OVEN_READY, {"alarm_code": 540}, ["alarm 540 active"]),
    (REFLOW, OVEN_READY, {"state": OvenState.ALARM}, ["alarm latched", "oven is ALARM"]),
    (CLEAN, CLEANER_READY, {}, []),
    (CLEAN, CLEANER_READY, {"door_open": True}, ["door open"]),
    (CLEAN, CLEANER_READY, {"chemistry_low": True}, ["chemistry low"]),
    (CLEAN, CLEANER_READY, {"wash_temp_c": 50.0}, ["bath at 50 °C, not within ±2 °C of 60 °C"]),
    (CLEAN, CLEANER_READY, {"state": CleanerState.WASHING}, ["cleaner is WASHING"]),
])
def test_interlocks(step, status, extra, reasons):
    kind = kind_of(step)
    view = ToolView(dataclasses.replace(status, **extra), CLEAN_RECIPE)
    found = kind.interlocks(step, view, "W-1")
    assert len(found) == len(reasons), found
    for want, got in zip(reasons, found, strict=True):
        assert got.startswith(want), (got, want)


@pytest.mark.parametrize(("step", "status", "extra", "busy"), [
    (PRINT, PRINTER_IDLE, {}, False),
    (PRINT, PRINTER_IDLE, {"state": PrinterState.CHANGEOVER}, True),  # ends by itself
    (PRINT, PRINTER_IDLE, {"state": PrinterState.ALARM}, False),  # waits for a person
    (PRINT, PRINTER_IDLE, {"state": PrinterState.DONE, "wafer_id": "W-2"}, True),
    (PRINT, PRINTER_IDLE, {"state": PrinterState.DONE, "wafer_id": "W-1"}, False),
    (PLACE, PLACER_IDLE, {"state": PlacerState.REPAIRING}, True),
    (REFLOW, OVEN_READY, {"state": OvenState.HEATING}, True),
    (REFLOW, OVEN_READY, {"state": OvenState.PROCESSING}, False),  # a pipeline: takes more
    (CLEAN, CLEANER_READY, {"state": CleanerState.DRYING}, True),
    (CLEAN, CLEANER_READY, {"state": CleanerState.DONE}, False),
])
def test_busy(step, status, extra, busy):
    assert kind_of(step).busy(dataclasses.replace(status, **extra), "W-1") is busy


def test_setup_keys_and_the_bound_setups():
    assert kind_of(PRINT).setup_key(PRINT) == ("print", "ST-300-100", "Pb95Sn5")
    assert kind_of(PRINT).bound_setup(PRINT) == ("ST-300-100", "Pb95Sn5")
    assert kind_of(REFLOW).setup_key(REFLOW) == ("reflow", REFLOW.profile_id)
    assert kind_of(CLEAN).bound_setup(CLEAN) is None  # a bath is waited out, not changed over


def test_nominal_times_from_the_specs():
    assert kind_of(PRINT).nominal_s(PRINT) == pytest.approx(20 + 30 + 10 + 10 + 15 / 20)
    assert kind_of(PLACE).nominal_s(PLACE) == 20 + 80 + 10
    assert kind_of(REFLOW).nominal_s(REFLOW) == pytest.approx(4000 / 600 * 60)
    assert kind_of(REFLOW).occupancy_s(REFLOW) == pytest.approx(450 / 600 * 60)
    assert kind_of(CLEAN).nominal_s(CLEAN) == 240


def _print_result(**extra: Any) -> PrintResult:
    base = PrintResult("W-1", RunStatus.OK, 100.0, 80.0, 110.0, 0, 0)
    return dataclasses.replace(base, **extra)


@pytest.mark.parametrize(("result", "ok", "finding"), [
    (_print_result(), True, ""),
    (_print_result(vol_mean_pct=70.0), False, "SPI mean volume 70 % outside 85-115 %"),
    (_print_result(bridges=1), False, "bridges 1 above the limit 0"),
    (_print_result(wafer_id="W-9"), False, "the tool reported wafer 'W-9', expected 'W-1'"),
    (_print_result(status=RunStatus.ABORTED), False, "print status ABORTED"),
])
def test_print_judgment(result, ok, finding):
    judgment = kind_of(PRINT).judge(PRINT, result, "W-1")
    assert judgment.ok is ok
    assert (finding in judgment.why) if finding else judgment.why == "within every window"


@pytest.mark.parametrize(("defects", "repaired", "ok", "repair"), [
    (0, False, True, False),
    (PLACE.max_defects_after_repair, False, True, False),
    (PLACE.max_defects, False, False, True),  # worth one repair
    (PLACE.max_defects + 1, False, False, False),  # not worth it: an engineer decides
    (PLACE.max_defects, True, False, False),  # still too many after the repair
])
def test_place_judgment_and_its_one_repair(defects, repaired, ok, repair):
    result = PlacementResult("W-1", RunStatus.OK, PLACE.sites, PLACE.sites - defects, defects,
                             0, 5)
    judgment = kind_of(PLACE).judge(PLACE, result, "W-1", repaired=repaired)
    assert (judgment.ok, judgment.repair) == (ok, repair)


def test_reflow_judgment_names_every_window_it_missed():
    result = ReflowResult("W-1", 380.0, 20.0, 4.0, 1.0, REFLOW.profile_id, 50,
                          ExitFlag.BELT_STOPPED, (25.0, 380.0))
    judgment = kind_of(REFLOW).judge(REFLOW, result, "W-1")
    assert not judgment.ok
    assert "peak 380 °C outside 340-360 °C" in judgment.why
    assert "heating ramp 4 °C/s above the limit" in judgment.why
    assert "the belt stopped during its pass" in judgment.why
    assert kind_of(REFLOW).curve(REFLOW, result) == ([25.0, 380.0], REFLOW.tal_threshold_c)


def test_clean_judgment_and_windows():
    result = CleanResult("W-1", CleanStatus.OK, 2.0, 7)
    judgment = kind_of(CLEAN).judge(CLEAN, result, "W-1")
    assert not judgment.ok and "ionic residue 2 µg/cm² above the limit 1.56" in judgment.why
    assert kind_of(CLEAN).windows(CLEAN) == {"ionic_ug_cm2": [None, 1.56]}


# --- recovery: each kind's rule, against scripted tools ---------------------------------


class ScriptedPrinter:
    """A printer that answers from a script of statuses; records what it was sent."""

    name = "printer-1"

    def __init__(self, *statuses: PrinterStatus, result: PrintResult | None = None) -> None:
        self.statuses = list(statuses)
        self.sent: list[str] = []
        self._result = result or _print_result()

    async def status(self) -> PrinterStatus:
        return self.statuses[0] if len(self.statuses) == 1 else self.statuses.pop(0)

    async def wait_for(self, *states: Any, timeout_s: float) -> PrinterStatus:
        while (status := await self.status()).state not in states:
            pass
        return status

    async def start_print(self) -> None:
        self.sent.append("PRT")

    async def result(self) -> PrintResult:
        self.sent.append("RES")
        return self._result


def recovering(*, judging: bool = False, intents: tuple[str, ...] = (),
               earlier: tuple[dict[str, Any], ...] = ()) -> Recovering:
    return Recovering("W-1", 1, judging, earlier, intents, lambda text: None)


def printer(state: PrinterState, wafer: str | None) -> PrinterStatus:
    return dataclasses.replace(PRINTER_IDLE, state=state, wafer_id=wafer)


async def test_a_print_the_printer_holds_done_is_taken_as_it_is():
    tool = ScriptedPrinter(printer(PrinterState.DONE, "W-1"))
    found = await kind_of(PRINT).settle(tool, PRINT, recovering(), ManualClock())
    assert isinstance(found, TakeResult) and found.result.wafer_id == "W-1"
    assert tool.sent == ["RES"]  # nothing was printed again


async def test_a_print_loaded_but_never_started_is_started_once():
    tool = ScriptedPrinter(printer(PrinterState.READY, "W-1"), printer(PrinterState.PRINTING,
                                                                       "W-1"),
                           printer(PrinterState.DONE, "W-1"))
    found = await kind_of(PRINT).settle(tool, PRINT, recovering(), ManualClock())
    assert isinstance(found, TakeResult)
    assert tool.sent == ["PRT", "RES"]


async def test_a_print_sent_to_a_printer_that_forgot_it_is_not_run_again():
    """The PRT was journalled, the printer (restarted) shows no wafer: printed or not is
    unknown, so an engineer decides; the fault campaign found it printed twice."""
    tool = ScriptedPrinter(printer(PrinterState.IDLE, None))
    found = await kind_of(PRINT).settle(tool, PRINT, recovering(intents=("PRT",)),
                                        ManualClock())
    assert isinstance(found, Unknown) and "PRT was sent" in found.why and tool.sent == []


@pytest.mark.parametrize(("judging", "settled"), [(False, NeverTaken), (True, Unknown)])
async def test_a_print_the_printer_does_not_hold(judging, settled):
    tool = ScriptedPrinter(printer(PrinterState.IDLE, None))
    found = await kind_of(PRINT).settle(tool, PRINT, recovering(judging=judging), ManualClock())
    assert isinstance(found, settled) and tool.sent == []


class ScriptedCleaner:
    name = "cleaner-1"

    def __init__(self, status: CleanerStatus, result: CleanResult) -> None:
        self._status, self._result = status, result
        self.sent: list[str] = []

    async def status(self) -> CleanerStatus:
        return self._status

    async def result(self) -> CleanResult:
        return self._result

    async def start(self) -> None:
        self.sent.append("START")
        self._status = dataclasses.replace(self._status, state=CleanerState.DONE)
        self._result = dataclasses.replace(self._result, wafer_id="W-1")

    async def wait_for(self, *states: Any, timeout_s: float) -> CleanerStatus:
        assert self._status.state in states
        return self._status


MEASURED = {"status": "OK", "ionic_ug_cm2": 0.2, "cycle_count": None}


@pytest.mark.parametrize(("state", "present", "result_wafer", "judging", "intents", "want",
                          "sent"), [
    (CleanerState.DONE, True, "W-1", False, ("START",), TakeResult, []),  # finished, inside
    (CleanerState.DONE, True, "W-1", True, ("START",), TakeResult, []),  # judged, not unloaded
    (CleanerState.READY, False, "W-1", True, ("START",), TakeResult, []),  # judged, unloaded
    # The chamber is empty and the result names the wafer: an earlier clean's (a rebump's
    # first pass), or this one's taken out by someone else once START was sent.
    (CleanerState.READY, False, "W-1", False, (), NeverTaken, []),
    (CleanerState.READY, False, "W-1", False, ("START",), Unknown, []),
    (CleanerState.LOADED, True, "W-0", False, (), TakeResult, ["START"]),  # loaded, not started
    (CleanerState.DONE, True, "W-0", False, ("START",), Unknown, []),  # another wafer inside
    (CleanerState.READY, False, "W-0", False, (), NeverTaken, []),
])
async def test_clean_recovery(state, present, result_wafer, judging, intents, want, sent):
    tool = ScriptedCleaner(dataclasses.replace(CLEANER_READY, state=state, wafer_present=present),
                           CleanResult(result_wafer, CleanStatus.OK, 0.2, 5))
    wafer = dataclasses.replace(recovering(judging=judging, intents=intents,
                                           earlier=({"cycle_count": 6},)),
                                measured=MEASURED if judging else None)
    found = await kind_of(CLEAN).settle(tool, CLEAN, wafer, ManualClock())
    assert isinstance(found, want), found
    assert tool.sent == sent
    if isinstance(found, TakeResult):
        assert found.result.wafer_id == "W-1" and found.unloaded == (not present)


async def test_a_judging_clean_gone_from_the_chamber_without_its_record_needs_a_person():
    tool = ScriptedCleaner(CLEANER_READY, CleanResult("W-1", CleanStatus.OK, 0.2, 5))
    found = await kind_of(CLEAN).settle(tool, CLEAN, recovering(judging=True), ManualClock())
    assert isinstance(found, Unknown)


class ScriptedOven:
    """A belt that delivers its wafers at the exit in order."""

    name = "oven-1"

    def __init__(self, belt: list[str], last_exit: str = "W-OLD") -> None:
        self.belt = belt
        self.last_exit = last_exit
        self.at_exit = False
        self.unloaded: list[str] = []

    async def status(self) -> OvenStatus:
        if not self.at_exit and self.belt:
            self.last_exit = self.belt.pop(0)
            self.at_exit = True
        return dataclasses.replace(OVEN_READY, wafers_on_belt=len(self.belt) + self.at_exit,
                                   wafer_at_exit=self.at_exit)

    async def exit_result(self) -> ReflowResult:
        return ReflowResult(self.last_exit, 350.0, 60.0, 1.0, 2.0, REFLOW.profile_id, 20, 0)

    async def unload(self, wafer_id: str | None = None) -> None:
        self.unloaded.append(self.last_exit)
        self.at_exit = False


async def test_the_oven_settles_every_rider_once_and_a_lost_one_by_its_load_intent():
    oven = ScriptedOven(["W-1", "W-2"])
    riders = [(REFLOW, dataclasses.replace(recovering(), wafer_id=w, intents=i))
              for w, i in (("W-1", ("LOAD",)), ("W-2", ("LOAD",)), ("W-3", ("LOAD",)),
                           ("W-4", ()))]
    found = await kind_of(REFLOW).settle_all(oven, riders, ManualClock())
    assert set(found) == {"W-1", "W-2", "W-3", "W-4"}
    assert isinstance(found["W-1"], TakeResult) and found["W-1"].unloaded
    assert isinstance(found["W-2"], TakeResult)
    assert isinstance(found["W-3"], Unknown)  # its LOAD may have reached the oven
    assert isinstance(found["W-4"], NeverTaken)  # no LOAD was ever sent
    assert oven.unloaded == ["W-1", "W-2"]


def test_every_kind_refuses_a_driver_of_another_role():
    with pytest.raises(SequenceError, match="a reflow step runs on an oven"):
        kind_of(REFLOW).check_driver(ScriptedPrinter(PRINTER_IDLE))


def test_a_strip_is_stopped_by_the_stripper_not_the_flux_chemistry():
    strip = find_recipe("ballmount-mask-sac305").steps[-1]
    kind = kind_of(strip)
    fc2 = dataclasses.replace(CLEANER_READY, strip_temp_c=strip.strip_temp_c)
    view = ToolView(fc2, strip.tool_recipe())
    assert kind.interlocks(strip, view, "W-1") == []
    low = ToolView(dataclasses.replace(fc2, stripper_low=True, chemistry_low=True),
                   strip.tool_recipe())
    assert kind.interlocks(strip, low, "W-1") == ["stripper low"]


STRIP = find_recipe("ballmount-mask-sac305").steps[-1]


@pytest.mark.parametrize(("step", "result"), [
    (PRINT, _print_result()),
    (PRINT, _print_result(bridges=4, status=RunStatus.ALARM)),
    (PLACE, PlacementResult("W-1", RunStatus.OK, PLACE.sites, PLACE.sites - 3, 2, 1, 7)),
    (REFLOW, ReflowResult("W-1", 350.0, 60.0, 1.0, 2.0, REFLOW.profile_id, 20, 0)),
    (REFLOW, ReflowResult("W-1", 330.0, 60.0, 1.0, 2.0, REFLOW.profile_id, 20,
                          ExitFlag.BELT_STOPPED)),
    (CLEAN, CleanResult("W-1", CleanStatus.OK, 0.2, 8)),
    (CLEAN, CleanResult("W-1", CleanStatus.ALARM, 3.0, 9)),
    (STRIP, CleanResult("W-1", CleanStatus.OK, 0.2, 9, 0.5)),
])
def test_a_result_rebuilt_from_its_stored_measurements_is_judged_the_same(step, result):
    """Recovery judges a wafer stopped between its unload and its judgment's commit again
    from what ``step_done`` stored: the verdict and its reasons must not change."""
    kind = kind_of(step)
    first = kind.judge(step, result, "W-1")
    again = kind.judge(step, kind.result_from(step, "W-1", first.measurements), "W-1")
    assert (again.ok, again.findings, again.measurements) == (
        first.ok, first.findings, first.measurements)


async def test_a_judging_oven_wafer_is_judged_from_its_record_not_the_belt():
    """Unloaded at the exit before its judgment was committed: another wafer's result has
    since replaced it there; it is judged from what its step_done stored."""
    oven = ScriptedOven(["W-2"], last_exit="W-2")
    exit_result = ReflowResult("W-1", 350.0, 60.0, 1.0, 2.0, REFLOW.profile_id, 20, 0)
    measured = kind_of(REFLOW).judge(REFLOW, exit_result, "W-1").measurements
    riders = [(REFLOW, dataclasses.replace(recovering(judging=True), intents=("LOAD",),
                                           measured={**measured, "alarms": ["560 TC open"]})),
              (REFLOW, dataclasses.replace(recovering(), wafer_id="W-2", intents=("LOAD",)))]
    found = await kind_of(REFLOW).settle_all(oven, riders, ManualClock())
    assert isinstance(found["W-1"], TakeResult) and found["W-1"].unloaded
    assert found["W-1"].result.peak_c == 350.0
    assert [(a.code, a.text) for a in found["W-1"].alarms] == [(560, "TC open")]
    assert isinstance(found["W-2"], TakeResult) and oven.unloaded == ["W-2"]


# --- a cool-down between two profiles -----------------------------------------------------


def test_a_cool_down_is_looked_at_when_the_rate_seen_says_and_never_too_far_ahead():
    far = 1e9
    # 0.1 °C/s with 20 °C to go (22 from the setpoints, the band is 2): in 200 s
    assert next_cool_look(24.0, 0.0, 22.0, 20.0, far) == pytest.approx(200.0)
    # nearly there: not before HEATED_POLL_S
    assert next_cool_look(10.0, 0.0, STABLE_BAND_C + 0.01, 10.0, far) == HEATED_POLL_S
    # 0.1 °C in 400 s (the registers' resolution over a host's stall): not days away
    assert next_cool_look(70.0, 0.0, 69.9, 400.0, far) == COOL_LOOK_MAX_S
    # never past the deadline; at it, or with no cooling seen, the caller's polls decide
    assert next_cool_look(70.0, 0.0, 69.9, 400.0, 450.0) == pytest.approx(50.0)
    assert next_cool_look(70.0, 0.0, 69.9, 400.0, 400.0) is None
    assert next_cool_look(70.0, 0.0, 70.0, 400.0, far) is None
    assert next_cool_look(70.0, 0.0, 70.3, 400.0, far) is None


class _CoolingOven:
    """Zone reads of an oven cooling from one profile to another along a scripted curve."""

    def __init__(self, clock: ManualClock, gap_at: Any, setpoints: tuple[float, ...]) -> None:
        self.clock, self.gap_at, self.setpoints = clock, gap_at, setpoints
        self.reads: list[float] = []

    async def zone_temperatures(self) -> tuple[float, ...]:
        self.reads.append(self.clock.now())
        gap = round(self.gap_at(self.clock.now()), 1)  # the registers' 0.1 °C
        return tuple(sp + gap for sp in self.setpoints)


async def test_a_cool_down_that_barely_moves_at_first_is_still_looked_at():
    """At 2000x a host stalled for 0.2 s between the oven's status read and the first zone
    read is 400 tool s in which the zones had barely begun to cool (0.1 °C): the rate seen
    put the next look 190,000 s away, and the wafer waited (the suite's test hung). The
    looks stay at most COOL_LOOK_MAX_S apart and the zones are found in the band."""
    step = RECIPE.step(5)
    clock = ManualClock(1000.0)
    # 70 °C above the new profile until 1400 s, then cooling at 0.1 °C/s
    def gap_at(t: float) -> float:
        return 70.0 if t < 1400.0 else max(0.0, 69.9 - 0.1 * (t - 1400.0))

    oven = _CoolingOven(clock, gap_at, step.zones_c)
    looked = 1000.0
    clock.advance(400.0)  # the stall: 400 tool s before the first look
    assert await _cooled(oven, step, clock, 70.0, looked) is True
    gaps = [b - a for a, b in zip(oven.reads, oven.reads[1:], strict=False)]
    assert max(gaps) <= COOL_LOOK_MAX_S
    # in the band at 2080 s; found within one look of it, then READY's hold
    assert clock.now() - READY_HOLD_S <= 2080.0 + COOL_LOOK_MAX_S
    assert clock.now() - 1000.0 < CHANGEOVER_MAX_S + READY_HOLD_S


async def test_a_cool_down_that_stops_short_of_the_band_hands_over_to_the_ready_polls():
    """Zones that settle just outside the band (a zone that cannot get there): the looks
    go on, COOL_LOOK_MAX_S apart at most, until no cooling is seen (or CHANGEOVER_MAX_S),
    then READY's polls decide."""
    step = RECIPE.step(5)
    clock = ManualClock(0.0)
    oven = _CoolingOven(clock, lambda t: 2.5 + 60.0 * 0.99 ** t, step.zones_c)
    assert await _cooled(oven, step, clock, 62.5, 0.0) is False
    assert clock.now() <= CHANGEOVER_MAX_S + COOL_LOOK_MAX_S
    gaps = [b - a for a, b in zip(oven.reads, oven.reads[1:], strict=False)]
    assert max(gaps) <= COOL_LOOK_MAX_S


class _CleanerWithAReading:
    """A cleaner whose wash bath reads ``reading`` °C: what the setup's wait is sized from."""

    name = "cleaner-1"

    def __init__(self, reading: float) -> None:
        self.reading = reading
        self.timeouts: list[float] = []

    async def recipe(self) -> Any:
        return CLEAN_RECIPE

    async def status(self) -> CleanerStatus:
        return dataclasses.replace(CLEANER_READY, wash_temp_c=self.reading)

    async def wait_bath_ready(self, timeout_s: float, mode: Any) -> float:
        self.timeouts.append(timeout_s)
        return self.reading


@pytest.mark.parametrize(("reading", "wait_s"), [
    (CLEAN.wash_temp_c - 20.0, 20.0 / BATH_COOL_C_S),  # 20 °C to go: 2,000 s at 0.01 °C/s
    (15.0, (CLEAN.wash_temp_c - 15.0) / BATH_COOL_C_S),  # a cold tank
    # A failed sensor's -3276.8 °C (s16 x 0.1): ~334,000 s, the timeout ~7.7 days of polls.
    (-3276.8, BATH_GAP_MAX_C / BATH_COOL_C_S),
    (3276.7, BATH_GAP_MAX_C / BATH_COOL_C_S),
])
async def test_the_wait_for_a_cleaner_bath_is_never_longer_than_a_real_tank_needs(
        reading: float, wait_s: float) -> None:
    cleaner = _CleanerWithAReading(reading)
    await kind_of(CLEAN).prepare(cleaner, CLEAN, clock=ManualClock(), recipe_name="R",
                                 note=lambda text: None)
    assert cleaner.timeouts == [pytest.approx(timeout_for(wait_s))]
    assert bath_wait_s(abs(reading - CLEAN.wash_temp_c)) == pytest.approx(wait_s)

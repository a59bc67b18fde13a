"""The barrier kind's pure parts (interlocks, times, judgment), the batch meeting point,
the history's barrier relaxation and the makespan bound with a batch tool."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest

from controller.line import batching
from controller.line.bound import lower_bound
from controller.line.scheduler import Scheduler
from drivers.clock import ManualClock
from drivers.errors import ToolError
from drivers.types import (
    Alarm,
    BatchResult,
    PlaterBath,
    PlaterState,
    PlaterStatus,
    RunStatus,
    WaferBarrier,
)
from sequences.errors import SequenceError
from sequences.kinds import kind_of
from sequences.kinds.barrier import (
    BARRIER,
    BATH_CHANGE_MAX_S,
    NI_COOL_C_S,
    NI_HEAT_C_S,
    BarrierOutcome,
    PlaterView,
    mto_after,
)
from sequences.kinds.base import Recovering, Unknown, timeout_for
from sequences.kinds.batch import Batch
from sequences.recipes.alloys import default_alloys
from sequences.recipes.history import HistoryEntry, WaferHistory, history_interlocks
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import DEFAULT_OPTIONS
from sequences.wafer.machine import waiting
from sequences.wafer.runner import WaferRun

SNCU = find_recipe("rebump-sncu-niau-snpb")
HIPB_SNBI = find_recipe("rebump-hipb-niau-snbi")
STEP = SNCU.step(4)
IDLE = PlaterStatus(PlaterState.IDLE, None, None, 0.0)
HOT = PlaterBath(85.2, 79.6, 4.75, 0.4, 90.0)


def view(status: PlaterStatus = IDLE, bath: PlaterBath = HOT, alarm: Alarm | None = None,
         recipe: object = None) -> PlaterView:
    return PlaterView(status, recipe=recipe or STEP.tool_recipe(), bath=bath,
                      alarm_code=alarm.code if alarm else 0,
                      alarm_text=alarm.text if alarm else "")


@pytest.mark.parametrize(("v", "reasons"), [
    (view(), []),
    (view(alarm=Alarm(741, "NI MTO HIGH")), []),  # a warning, not a stop
    (view(PlaterStatus(PlaterState.ALARM, None, None, 0), alarm=Alarm(400, "DOOR OPEN")),
     ["alarm 400 DOOR OPEN active"]),
    (view(PlaterStatus(PlaterState.RUNNING, "B1", None, 600)), ["plater is RUNNING"]),
    (view(bath=PlaterBath(83.5, 80.0, 4.7, 1.0, 90.0)),
     ["nickel bath at 83.5 °C, not within ±1 °C of 85 °C"]),
    (view(bath=PlaterBath(85.0, 80.0, 4.41, 6.0, 90.0)),
     ["nickel bath at 6 MTO, its life ends at 6: replenish it"]),
    (view(bath=PlaterBath(85.0, 80.0, 4.3, 2.0, 90.0)),
     ["nickel bath pH 4.3 below 4.4: replenish it"]),
])
def test_interlocks(v: PlaterView, reasons: list[str]) -> None:
    assert BARRIER.interlocks(STEP, v, "W1") == reasons


PAST_LIFE = ("nickel bath at {mto:g} MTO: this batch ({n}) would end at {after} MTO, past its "
             "life of 6 (pH below 4.4 mid-batch): replenish it first (REPLENISH)")


@pytest.mark.parametrize(("mto", "wafers", "reasons"), [
    (5.88, 10, []),  # 5.88 + 0.004 x 10 x 3 µm = 6.00: the life exactly, the pH at 4.4
    (5.89, 10, [PAST_LIFE.format(mto=5.89, n="10 wafers x 3 µm Ni", after="6.01")]),
    (5.7, 25, []),  # + 0.3: 6.0000000000000005 in floats, the life exactly
    (5.71, 25, [PAST_LIFE.format(mto=5.71, n="25 wafers x 3 µm Ni", after="6.01")]),
    (5.98, 1, []),  # 5.992: a batch of one still fits
    (5.99, 1, [PAST_LIFE.format(mto=5.99, n="1 wafer x 3 µm Ni", after="6.00")]),  # 6.002
    (0.0, 25, []),  # a fresh bath takes a full carrier
    (6.0, 1, ["nickel bath at 6 MTO, its life ends at 6: replenish it"]),  # 740 at START
])
def test_a_batch_that_would_end_past_the_bath_life_is_not_started(
        mto: float, wafers: int, reasons: list[str]) -> None:
    """Predicted MTO after the batch = MTO now + 0.004 x wafers x µm of nickel; above 6.0
    the batch is held before LOAD (the spec's 740 comes only at the next START, and the
    pH would fall below 4.4 mid-batch: 720)."""
    aged = replace(view(bath=PlaterBath(85.0, 80.0, 4.45, mto, 90.0)), wafers=wafers)
    assert STEP.ni_um == 3.0
    assert BARRIER.interlocks(STEP, aged, "W1") == reasons
    assert mto_after(mto, wafers, STEP.ni_um) == pytest.approx(mto + 0.004 * wafers * 3.0)


def test_a_wrong_stored_recipe_is_a_setup_difference() -> None:
    other = find_recipe("rebump-hipb-niau-snbi").step(4).tool_recipe()
    if other == STEP.tool_recipe():
        other = type(other)(4.0, 0.05, 86.0, 80.0)
    (reason,) = BARRIER.setup_mismatches(STEP, view(recipe=other))
    assert reason.startswith("plater recipe is")


def test_the_batch_time_is_the_spec_cycle_whatever_the_count() -> None:
    # 120 + 90 + 3 µm at 15 µm/h (720 s) + 60 + 900 (0.08 µm Au) + 60 + 300
    assert BARRIER.nominal_s(STEP) == pytest.approx(2250.0)
    assert BARRIER.batch and BARRIER.batch_capacity(STEP) == (STEP.batch_size or 25)
    assert BARRIER.busy(PlaterStatus(PlaterState.LOADED, "B", None, 0), "W1")
    assert not BARRIER.busy(IDLE, "W1")


def _outcome(ni: float, au: float, status: RunStatus = RunStatus.OK) -> BarrierOutcome:
    return BarrierOutcome(WaferBarrier("W1", ni, au),
                          BatchResult("B7", status, 3.0, 2.9, 3.1, 0.08, 3), HOT)


def test_each_wafer_is_judged_on_its_own_thickness() -> None:
    ok = BARRIER.judge(STEP, _outcome(3.02, 0.081), "W1")
    assert ok.ok and ok.measurements["ni_bath_c"] == 85.2
    thin = BARRIER.judge(STEP, _outcome(2.5, 0.081), "W1")
    assert not thin.ok and thin.findings == ("nickel 2.5 µm outside 2.7-3.3 µm",)
    alarm = BARRIER.judge(STEP, _outcome(3.0, 0.08, RunStatus.ALARM), "W1")
    assert alarm.findings == ("batch B7 ended ALARM",)
    assert BARRIER.windows(STEP) == {"ni_um": list(STEP.ni_measured_um),
                                     "au_um": list(STEP.au_measured_um)}


async def test_the_batch_runs_its_work_once_after_everyone_arrived_or_left() -> None:
    batch = Batch("B1", ["W1", "W2", "W3"])
    runs: list[tuple[str, ...]] = []
    unloads: list[int] = []

    async def work(b: Batch) -> str:
        # Only once every member arrived or left: no interlock check sees a loaded carrier.
        assert set(b.arrived) | b.left == set(b.members)
        runs.append(b.riders)
        return "plated"

    async def unload() -> None:
        unloads.append(1)

    async def member(wafer: str) -> str:
        out = await batch.run(wafer, work)
        await batch.judged(wafer, unload)
        return out

    async def held(wafer: str) -> str:
        batch.leave(wafer)  # held at its interlock: it never arrives
        return "held"

    got = await asyncio.gather(member("W1"), member("W3"), held("W2"))
    assert got == ["plated", "plated", "held"]
    assert runs == [("W1", "W3")] and unloads == [1]
    with pytest.raises(SequenceError):
        Batch("B2", ["W1", "W1"])


def test_sn_bi_over_lead_is_allowed_across_an_intact_measured_barrier() -> None:
    recipe = HIPB_SNBI
    reflow = next(n for n, s in enumerate(recipe.steps, 1) if n > 4 and s.kind == "reflow")
    alloys = default_alloys()

    def reasons(ni_um: float | None) -> list[str]:
        history = WaferHistory.assumed(recipe, reflow)
        history.entries = [e if e.kind != "barrier" else HistoryEntry(e.step, e.kind,
                                                                       ni_um=ni_um)
                           for e in history.entries]
        return history_interlocks(reflow, recipe.step(reflow), history, alloys,
                                  DEFAULT_OPTIONS)

    assert not [r for r in reasons(3.0) if "lead-bearing" in r]
    assert [r for r in reasons(1.5) if "lead-bearing" in r]  # too thin: not a barrier


def test_the_bound_counts_whole_cycles_and_the_cut_at_the_batch() -> None:
    line = {"printer": 1, "oven": 1, "cleaner": 1, "plater": 1}
    mounted = {"printer": ("ST-300-100", "SnCu0.7")}
    cycle = kind_of(STEP).nominal_s(STEP)
    b25 = lower_bound(SNCU, 25, line, mounted)
    assert b25.per_role["plater"] < 2 * cycle + 3000  # one cycle of work, not 25
    cut = b25.per_role["plater batches at step 4"]
    before = lower_bound(SNCU.__class__(SNCU.name, SNCU.version, "", SNCU.steps[:3]), 25,
                         line, mounted).seconds
    assert cut >= before + cycle  # every wafer through the first pass, then a cycle
    b26 = lower_bound(SNCU, 26, line, mounted)
    assert b26.per_role["plater"] - b25.per_role["plater"] == pytest.approx(
        (math.ceil(26 / 25) - 1) * cycle, abs=1.0)


def _line_with(waiting_at: dict[int, int]):  # noqa: ANN202 - test helper
    """A scheduler (no tools are talked to) with wafers waiting at the given steps."""
    clock = ManualClock()
    sched = Scheduler({name: (name.split("-")[0], None) for name in
                       ("printer-1", "oven-1", "cleaner-1", "plater-1")}, clock)
    here = []
    for step, count in sorted(waiting_at.items(), reverse=True):
        for i in range(count):
            run = WaferRun(SNCU, f"S{step}-{i}", clock)
            run.restore(waiting(step))
            slot = sched.add_wafer(run, "L", 5)
            if step == 4:
                here.append(slot)
    return sched, clock, here


def test_the_batch_start_rule() -> None:
    # Nobody else is coming: start with what waits (the end of a lot never waits).
    sched, clock, here = _line_with({4: 3})
    decision = batching.choose(sched, sched.tools["plater-1"], here)
    assert len(decision.start) == 3 and "no other wafer" in decision.why
    # Two more are a clean away: riding together saves a cycle; wait, with a deadline.
    sched, clock, here = _line_with({4: 3, 3: 2})
    decision = batching.choose(sched, sched.tools["plater-1"], here)
    assert decision.start == [] and decision.look_again_at == pytest.approx(
        2 * BARRIER.nominal_s(STEP))
    clock.advance(2 * BARRIER.nominal_s(STEP))  # the maximum wait
    assert len(batching.choose(sched, sched.tools["plater-1"], here).start) == 3
    # The rest of the lot is a whole first pass away: a batch now is over before it.
    sched, clock, here = _line_with({4: 3, 1: 20})
    decision = batching.choose(sched, sched.tools["plater-1"], here)
    assert len(decision.start) == 3 and "ends before" in decision.why
    # Full: a carrier's worth starts at once.
    sched, clock, here = _line_with({4: 27, 1: 5})
    decision = batching.choose(sched, sched.tools["plater-1"], here)
    assert len(decision.start) == BARRIER.batch_capacity(STEP) and decision.why.startswith("full")


async def test_a_batch_whose_wafers_were_held_before_its_task_ran_frees_the_plater() -> None:
    # The batch's step is the one its wafers waited at when it was formed: a hold (an
    # operator's, between the dispatch and the batch task's first turn) took the step number
    # away from the first wafer, the task failed before its finally, and the plater stayed
    # busy and the wafers running for ever.
    sched, clock, here = _line_with({4: 2})
    plater = sched.tools["plater-1"]
    plater.driver = LoadedPlater("B0")
    plater.driver.state = IDLE
    batching.start(sched, here, plater)
    for wafer in here:
        wafer.run.hold("operator: hold")  # before the batch's task first runs
    await asyncio.wait_for(asyncio.gather(*sched._tasks), 5)
    assert not plater.busy and not any(w.running for w in here)
    assert [w.run.state for w in here] == ["held", "held"]


def test_an_ended_batchs_carrier_does_not_block_the_next_batch() -> None:
    done = PlaterStatus(PlaterState.DONE, "B6", None, 0)
    assert BARRIER.interlocks(STEP, view(done), "W1") == ["plater is DONE"]
    ended = PlaterView(done, recipe=STEP.tool_recipe(), bath=HOT, ended_carrier=True)
    assert BARRIER.interlocks(STEP, ended, "W1") == []


class LoadedPlater:
    """A plater holding a carrier LOADED, not started (what recovery finds)."""

    name = "plater-1"

    def __init__(self, batch_id: str, bath: PlaterBath = HOT) -> None:
        self.state = PlaterStatus(PlaterState.LOADED, batch_id, None, 0)
        self.bath_now = bath
        self.started = 0

    async def status(self) -> PlaterStatus:
        return self.state

    async def alarm(self) -> Alarm | None:
        return None

    async def recipe(self) -> object:
        return STEP.tool_recipe()

    async def bath(self) -> PlaterBath:
        return self.bath_now

    async def wait_bath_ready(self, timeout_s: float) -> PlaterBath:
        return self.bath_now

    async def start(self) -> None:
        self.started += 1

    async def result(self) -> BatchResult:
        raise ToolError(self.name, "ERR 02 UNKNOWN")


def recovering(wafer_id: str, *intents: str, notes: list[str]) -> Recovering:
    return Recovering(wafer_id, 4, False, (), intents, notes.append)


@pytest.mark.parametrize(("intents", "bath", "why"), [
    (("LOAD B6", "START"), HOT, "no LOAD of this wafer names it"),  # another carrier
    (("LOAD",), HOT, "no LOAD of this wafer names it"),  # a record without the batch id
    (("LOAD B7", "START"), PlaterBath(85.0, 80.0, 4.41, 6.0, 90.0),
     "nickel bath at 6 MTO, its life ends at 6: replenish it"),  # an interlock
    (("LOAD B7", "START"), PlaterBath(85.0, 80.0, 4.41, 5.99, 90.0),
     "this batch (2 wafers x 3 µm Ni) would end at 6.01 MTO"),  # its riders weighed
])
async def test_a_loaded_carrier_is_started_at_recovery_only_if_ours_and_allowed(
        intents: tuple[str, ...], bath: PlaterBath, why: str) -> None:
    plater = LoadedPlater("B7", bath)
    notes: list[str] = []
    found = await BARRIER.settle_all(plater, [
        (STEP, recovering(w, *intents, notes=notes)) for w in ("W1", "W2")], ManualClock())
    assert plater.started == 0  # never started: an engineer decides
    assert all(isinstance(s, Unknown) for s in found.values()), found
    assert len(notes) == 2 and all(why in n and "engineer" in n for n in notes), notes


class _PlaterWithBaths:
    """A plater whose baths read ``bath``: what the setup's wait is sized from."""

    name = "plater-1"

    def __init__(self, bath: PlaterBath) -> None:
        self._bath = bath
        self.timeouts: list[float] = []

    async def recipe(self) -> object:
        return STEP.tool_recipe()

    async def bath(self) -> PlaterBath:
        return self._bath

    async def wait_bath_ready(self, timeout_s: float) -> PlaterBath:
        self.timeouts.append(timeout_s)
        return self._bath


@pytest.mark.parametrize(("ni_c", "au_c", "wait_s"), [
    (25.0, 25.0, (STEP.ni_temp_c - 25.0) / NI_HEAT_C_S),  # power-up: nickel is the slower
    (STEP.ni_temp_c + 5.0, STEP.au_temp_c, 5.0 / NI_COOL_C_S),
    # A failed sensor printing 999.9 °C: ~91,000 s to cool, the timeout ~50 hours of polls.
    (999.9, STEP.au_temp_c, BATH_CHANGE_MAX_S),
    (STEP.ni_temp_c, -999.9, BATH_CHANGE_MAX_S),
])
async def test_the_wait_for_the_plater_baths_is_never_longer_than_the_spec_allows(
        ni_c: float, au_c: float, wait_s: float) -> None:
    plater = _PlaterWithBaths(PlaterBath(ni_c, au_c, 4.75, 0.4, 90.0))
    await BARRIER.prepare(plater, STEP, clock=ManualClock(), recipe_name="R",
                          note=lambda text: None)
    assert plater.timeouts == [pytest.approx(timeout_for(wait_s))]
    assert BATH_CHANGE_MAX_S == pytest.approx(65.0 / NI_HEAT_C_S)  # 25 -> 90 °C, ~36 min

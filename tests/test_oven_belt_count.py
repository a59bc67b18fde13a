"""A LOAD whose reply is lost, on ovens that count WAFERS_ON_BELT either way.

reflow-oven.md does not say whether the count includes a wafer waiting at the exit;
the simulated RF-10N does either (``OvenModel(belt_counts_exit=...)``). The driver runs
over a real Modbus TCP socket against it, on one manual clock shared with the
simulator: tool time moves only when the test or a wait moves it, so where the
entrance is when the probe reads it does not depend on how busy the machine is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modbus_fixtures import POLL_S, SimOven
from test_lot_run import rig, run_lots

from drivers.clock import ManualClock
from drivers.oven import ReflowOven
from drivers.oven_belt import BeltKnowledge, Guess, LoadUnknown, judge_load
from drivers.types import ReflowProfile
from sequences.kinds.base import Recovering, TakeResult
from sequences.kinds.reflow import REFLOW
from sequences.recipes.recipe import ReflowStep, find_recipe
from sim.faults import FaultPlan
from sim.oven import OvenModel

pytestmark = pytest.mark.faults

PROFILE = ReflowProfile(
    zone_setpoints_c=(150.0, 165.0, 175.0, 185.0, 200.0, 230.0, 245.0, 235.0, 120.0, 60.0),
    conveyor_mm_min=600, o2_limit_ppm=100, tal_threshold_c=183.0, profile_id=42)
TRANSIT_S = 400.0  # 4,000 mm at 600 mm/min
LOAD_COMMAND = "write_register 20 = 2 "
CARRIED_OUT = {True: "reply lost; the tool says it was carried out",
               False: "reply lost; the tool says it was not carried out"}
MODELS = pytest.mark.parametrize("counts_exit", [True, False], ids=["counts-exit", "tunnel-only"])


class LoseNextReply(FaultPlan):
    """The next request's reply is lost; with ``refuse`` the request is first refused (06,
    nothing done), so the request is as good as lost on the way there."""

    def __init__(self) -> None:
        super().__init__(drop=1e-12, busy=2e-12)  # nonzero (and apart): asked of each one
        self.drop_next = self.busy_next = False

    def arm(self, *, refuse: bool) -> None:
        self.drop_next, self.busy_next = True, refuse

    def roll(self, probability: float) -> bool:
        if probability == self.busy and self.busy_next:
            self.busy_next = False
            return True
        if probability == self.drop and self.drop_next:
            self.drop_next = False
            return True
        return super().roll(probability)


@contextlib.asynccontextmanager
async def oven_on(counts_exit: bool) -> AsyncIterator[tuple[ReflowOven, SimOven, LoseNextReply]]:
    plan = LoseNextReply()
    clock = ManualClock()
    sim = SimOven(clock, plan, OvenModel(seed=3, belt_counts_exit=counts_exit))  # type: ignore[arg-type]
    await sim.start()
    link = sim.link(retries=3, timeout_s=0.1)
    try:
        await link.open()
        oven = ReflowOven(link, clock, poll_s=POLL_S)
        await oven.stage_profile(PROFILE)
        await oven.apply()
        await oven.set_nitrogen(True)
        await oven.wait_ready(timeout_s=1800)
        yield oven, sim, plan
    finally:
        await link.close()
        await sim.stop()


def lose_load_reply(oven: ReflowOven, plan: LoseNextReply, *, refuse: bool = False,
                    late_s: float = 0.0) -> list[str]:
    """Lose the next LOAD's reply (``refuse``: it is refused first, so it did nothing); the
    probe reads ``late_s`` tool seconds after it. What the link said of it (its trace)."""
    said: list[str] = []
    clock = oven.clock

    def on_frame(direction: str, text: str) -> None:
        if direction == ">" and text.startswith(LOAD_COMMAND):
            said.append(text)
            plan.arm(refuse=refuse)
        elif said and direction == "<":
            said.append(text)
            if "asking the tool" in text:
                clock.advance(late_s)  # type: ignore[attr-defined]

    oven.link.trace = on_frame
    return said


def verdict(said: list[str]) -> str:
    """The link's word on the lost reply: the probe's answer."""
    (line,) = [t for t in said if t.startswith("reply lost")]
    return line


async def wafer_waiting_at_exit(oven: ReflowOven, wafer_id: str) -> None:
    await oven.load(wafer_id)
    assert (await oven.wait_exit(timeout_s=2 * TRANSIT_S)).wafer_id == wafer_id


def on_belt(sim: SimOven) -> list[str]:
    """The wafers in the tunnel, then the one waiting at the exit: what the oven holds."""
    now = sim.now()
    waiting = sim.model.exit_wafer(now)
    return [w for w, _ in sim.model.wafer_positions(now)] + ([waiting] if waiting else [])


# --- the guesses, without an oven -----------------------------------------------------------------


def test_a_count_read_while_a_wafer_may_wait_at_the_exit_is_not_carried_blindly() -> None:
    """WAFERS_ON_BELT = 2 with the exit unknown: 2 on the belt, or (tunnel-only, a wafer
    waiting) 3. After our UNLOAD, 1 or 2: a LOAD then asks before it is sent, where the
    old cached count would have judged a lost reply one off."""
    belt = BeltKnowledge()
    belt.counted(2, None, belt.stamp())
    assert belt.guesses == {Guess(True, 2, False), Guess(False, 2, False), Guess(False, 3, True)}
    belt.sending()
    belt.sent(-1, None)
    assert not belt.settled()
    belt.flags(False, True, belt.stamp())  # the exit empty now: nothing was there at UNLOAD
    assert not belt.settled() and belt.counts_exit is None
    belt.counted(1, False, belt.stamp())
    assert belt.settled() and {g.on_belt for g in belt.guesses or ()} == {1}


def test_a_wafer_at_the_exit_tells_the_model_or_leaves_both_answers_open() -> None:
    both = frozenset({Guess(True, 1, True), Guess(False, 1, True)})
    assert judge_load(both, 2, True) == {False: frozenset(), True: {Guess(True, 2, True)}}
    assert judge_load(both, 0, True) == {False: {Guess(False, 1, True)}, True: frozenset()}
    fits = judge_load(both, 1, True)  # counting and not loaded, or tunnel-only and loaded
    assert fits == {False: {Guess(True, 1, True)}, True: {Guess(False, 2, True)}}
    assert judge_load(both, 2, False) == {False: frozenset(), True: frozenset()}  # fits none


@MODELS
@pytest.mark.parametrize("refuse", [False, True], ids=["went-on", "did-not"])
async def test_no_wafer_at_the_exit_the_count_tells(counts_exit: bool, refuse: bool) -> None:
    async with oven_on(counts_exit) as (oven, sim, plan):
        said = lose_load_reply(oven, plan, refuse=refuse)
        await oven.load("W-01")
        # Went on: not sent again. Did not: sent again, once, and that one took it.
        assert verdict(said) == CARRIED_OUT[not refuse]
        assert on_belt(sim) == ["W-01"]


@MODELS
@pytest.mark.parametrize("refuse", [False, True], ids=["went-on", "did-not"])
async def test_a_wafer_at_the_exit_the_entrance_tells(counts_exit: bool, refuse: bool) -> None:
    """The model not known yet and a wafer waiting at the exit: the count fits both
    answers on one of the ovens; the entrance, read at once, tells."""
    async with oven_on(counts_exit) as (oven, sim, plan):
        await wafer_waiting_at_exit(oven, "W-01")
        assert oven.belt.counts_exit is None
        said = lose_load_reply(oven, plan, refuse=refuse)
        await oven.load("W-02")
        assert verdict(said) == CARRIED_OUT[not refuse]
        assert on_belt(sim) == ["W-02", "W-01"]


@MODELS
async def test_a_wafer_at_the_exit_and_nothing_tells_holds_the_wafer(counts_exit: bool
                                                                     ) -> None:
    """The probe comes 100 s late (the entrance clear again) on an oven whose model is not
    known: the tunnel-only oven's count fits both answers, so the LOAD is neither repeated
    nor called refused, and the wafer is settled by the oven's word (recovery's rule for
    a reflow step left open: it comes out at the exit). The counting oven's count alone
    tells."""
    async with oven_on(counts_exit) as (oven, sim, plan):
        await wafer_waiting_at_exit(oven, "W-01")
        said = lose_load_reply(oven, plan, late_s=100.0)
        if counts_exit:
            await oven.load("W-02")
            assert verdict(said) == CARRIED_OUT[True]
            assert oven.belt.counts_exit is True  # learned from it
        else:
            with pytest.raises(LoadUnknown, match="oven-1: COMMAND=LOAD of W-02: reply lost, "
                               "and the oven cannot tell whether it went on"):
                await oven.load("W-02")
            assert not [t for t in said if t.startswith("reply lost")]  # no answer, no resend
        assert on_belt(sim) == ["W-02", "W-01"]
        if not counts_exit:
            oven.link.trace = None
            step = find_recipe("ballmount-sac305").step(2)
            assert isinstance(step, ReflowStep)
            wafer = Recovering("W-02", 2, judging=False, earlier_results=(),
                               intents=("LOAD",), note=lambda *_: None)
            settled = await REFLOW.settle_all(oven, [(step, wafer)], oven.clock)
            taken = settled["W-02"]
            assert isinstance(taken, TakeResult) and taken.result.wafer_id == "W-02"
            assert on_belt(sim) == []


@MODELS
@pytest.mark.parametrize("refuse", [False, True], ids=["went-on", "did-not"])
async def test_once_learned_the_count_tells_with_a_wafer_at_the_exit(counts_exit: bool,
                                                                      refuse: bool) -> None:
    """The first UNLOAD teaches the driver how the oven counts; from then on a late probe
    with a wafer waiting at the exit decides from the count."""
    async with oven_on(counts_exit) as (oven, sim, plan):
        await wafer_waiting_at_exit(oven, "W-01")
        await oven.unload("W-01")
        assert oven.belt.counts_exit is counts_exit
        await wafer_waiting_at_exit(oven, "W-02")
        said = lose_load_reply(oven, plan, refuse=refuse, late_s=100.0)
        await oven.load("W-03")
        assert verdict(said) == CARRIED_OUT[not refuse]
        assert on_belt(sim) == ["W-03", "W-02"]
        await oven.unload("W-02")
        assert (await oven.wait_exit(timeout_s=2 * TRANSIT_S)).wafer_id == "W-03"


@MODELS
async def test_requests_of_a_wafer(counts_exit: bool) -> None:
    """What learning costs: the oven's first LOAD reads the inputs once (is the exit
    empty?), its first UNLOAD the count once; the next wafer costs what it always did."""
    async with oven_on(counts_exit) as (oven, _, _):
        sent: list[str] = []
        oven.link.trace = lambda d, text: sent.append(text) if d == ">" else None
        await oven.readiness()
        await oven.load("W-01")
        first_load = list(sent)
        assert [t.split(" (")[0].split(" unit")[0] for t in first_load][2:] == [
            "read_discrete 0..3", "write_registers 30..37 = [22317, 12337, 0, 0, 0, 0, 0, 0]",
            "write_register 20 = 2"]
        await oven.wait_exit(timeout_s=2 * TRANSIT_S)
        sent.clear()
        await oven.unload("W-01")
        assert len(sent) == 2  # WAFERS_ON_BELT, then COMMAND=UNLOAD
        assert oven.belt.counts_exit is counts_exit
        sent.clear()
        await oven.readiness()
        await oven.load("W-02")
        await oven.exit_values_of({"W-02"}, left="W-01")  # not there yet
        assert len(sent) == 5  # process values, coils, LOAD_WAFER_ID, LOAD, the exit


# --- a lot on an oven that counts the tunnel only -------------------------------------------------


@pytest.mark.parametrize("counts_exit", [False])
async def test_a_lot_on_an_oven_counting_the_tunnel_only_completes(counts_exit: bool,
                                                                  tmp_path: Path) -> None:
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", oven_counts_exit=counts_exit) as r:
        wafers = r.new_lot("TUNNEL1", 3)
        (outcome,) = await run_lots(r.controller(), ["TUNNEL1"])
        assert outcome.state == "complete"
        assert outcome.wafers == {w: "complete" for w in wafers}
        assert r.store.alarms() == []  # no 530 at the exit, nothing refused
        for wafer in wafers:
            loads = [i for i in r.store.wafer_history(wafer).intents if i.command == "LOAD"]
            assert [i.outcome for i in loads] == ["done", "done"]  # one per reflow
        assert r.model("oven-1").belt_counts_exit is counts_exit
        assert r.tools["oven-1"].belt.counts_exit is counts_exit  # learned at its first UNLOAD


async def test_recovery_says_which_alarm_it_found_latched_before_clearing_it() -> None:
    """A wafer reached the exit behind one no controller took off (alarm 530, raised while
    the controller was down): recovery cleared it to let the belt empty and said nothing,
    so the alarm was in no record."""
    async with oven_on(True) as (oven, sim, _):
        await wafer_waiting_at_exit(oven, "W-01")
        await oven.load("W-02")
        await oven.clock.sleep(TRANSIT_S + 60)  # W-02 reaches the exit: W-01 still there
        assert (await oven.status()).alarm_code == 530
        step = find_recipe("ballmount-sac305").step(2)
        assert isinstance(step, ReflowStep)
        notes: dict[str, list[str]] = {"W-01": [], "W-02": []}
        found: list[tuple[int, str, bool]] = []  # recorded with the line's alarms
        wafers = [(step, Recovering(w, 2, judging=False, earlier_results=(), intents=("LOAD",),
                                    note=notes[w].append,
                                    alarm=lambda *a: found.append(a))) for w in notes]
        settled = await REFLOW.settle_all(oven, wafers, oven.clock)
        assert all(isinstance(settled[w], TakeResult) for w in notes)
        said = ("oven-1 showed alarm 530 EXIT BLOCKED, raised while no controller watched it; "
                "clearing it to let the belt empty")
        assert notes == {"W-01": [said], "W-02": [said]}
        assert found == [(530, "EXIT BLOCKED", False), (530, "", True)]  # once, for the tool
        assert (await oven.status()).alarm_code == 0 and on_belt(sim) == []

"""A different EP-25 that still keeps the spec (../shared/specs/barrier-plater.md), played
line for line (tests/scripted_lines.py): it prints '-' and steps the table does not name,
rounds the recipe it echoes, refuses a catch-up, refuses START once with 05 NOT READY,
comes back IDLE after a power loss, or ends a batch by an alarm with no DONE. The driver
and the barrier step must neither break nor wait out a cycle on any of it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from drivers.clock import ManualClock
from drivers.errors import RefusedNotReady, ToolAlarm
from drivers.plater import BarrierPlater, recipe_matches
from drivers.types import Alarm, BarrierRecipe, PlaterState, PlaterStep, RunStatus
from sequences.kinds.barrier import BARRIER, PlaterView
from sequences.kinds.base import Recovering, StepContext, TakeResult
from sequences.kinds.batch import Batch
from sequences.recipes.recipe import find_recipe
from sequences.wafer.journal import DONE, REFUSED, MemoryJournal
from tests.scripted_lines import IDN, got, hang_up, scripted, sent

STEP = find_recipe("rebump-sncu-niau-snpb").step(4)  # 3 µm Ni / 0.08 µm Au at 85 / 80 °C
RECIPE = [sent("RECIPE?"), got("OK 3 0.08 85 80")]


def ready(state: str = "LOADED B1") -> list[tuple[str, str]]:
    """The bath wait on baths in band: the recipe, STATE? as it begins (``state``: not in
    ALARM), the baths."""
    return [*RECIPE, sent("STATE?"), got(f"OK {state} - -"),
            sent("BATH?"), got("OK 85.0 80.4 4.75 0.40 90.0")]


READY = ready()


class StoppedClock(ManualClock):
    """Tool time that never passes: a wait ends only when something wakes it."""

    async def sleep(self, tool_seconds: float) -> None:
        await asyncio.Event().wait()


# --- the driver ---------------------------------------------------------------------------------


async def test_state_with_a_dash_for_the_time_and_an_unlisted_step_is_read() -> None:
    script = [sent(IDN[0]), got(IDN[1]),
              sent("STATE?"), got("OK IDLE - - -"),
              sent("STATE?"), got("OK RUNNING B7 RINSE -"),  # an ABORT's rinse
              sent("STATE?"), got("OK DONE B7 - -")]
    async with scripted(script, clock=ManualClock()) as s:
        idle = await s.plater.status()
        done = await s.plater.wait_for(PlaterState.DONE, timeout_s=600)
        assert s.wire.used_up
    assert (idle.state, idle.step, idle.remaining_s) == (PlaterState.IDLE, None, None)
    assert (done.state, done.batch_id) == (PlaterState.DONE, "B7")


async def test_a_listed_step_is_still_typed() -> None:
    script = [sent(IDN[0]), got(IDN[1]), sent("STATE?"), got("OK RUNNING B7 NI_PLATE 700")]
    async with scripted(script) as s:
        status = await s.plater.status()
    assert status.step is PlaterStep.NI_PLATE and status.remaining_s == 700.0


async def test_a_recipe_echoed_rounded_is_the_recipe_that_was_sent() -> None:
    # RECIPE's reply is lost; RECIPE? shows it stored, at two decimals: not sent again
    script = [sent(IDN[0]), got(IDN[1]),
              sent("RECIPE 3 0.075 85 80"),
              sent("RECIPE?"), got("OK 3.00 0.08 85.0 80.0")]
    async with scripted(script) as s:
        await s.plater.set_recipe(BarrierRecipe(3.0, 0.075, 85.0, 80.0))
        assert s.wire.used_up


@pytest.mark.parametrize(("told", "same"), [
    (BarrierRecipe(3.0, 0.08, 85.0, 80.0), True),  # 0.075 at two decimals
    (BarrierRecipe(2.995, 0.075, 85.05, 79.95), True),
    (BarrierRecipe(3.01, 0.075, 85.0, 80.0), False),
    (BarrierRecipe(3.0, 0.085, 85.0, 80.0), False),
    (BarrierRecipe(3.0, 0.075, 85.1, 80.0), False),
])
def test_recipes_are_compared_within_the_printed_precision(told: BarrierRecipe,
                                                           same: bool) -> None:
    assert recipe_matches(told, BarrierRecipe(3.0, 0.075, 85.0, 80.0)) is same


@pytest.mark.parametrize(("live", "lost", "renumbered"), [
    (3, 0, 1),  # a replaced tool, its count below ours: ERR 03 RANGE
    (950, 49, 0),  # a tool that refuses the replay but counts on: a gap
])
async def test_a_refused_catch_up_goes_on_from_live_events(live: int, lost: int,
                                                           renumbered: int) -> None:
    script = [sent(IDN[0]), got(f"!{live} STATE IDLE"), got(IDN[1]),
              sent("EVENTS? 900"), got("ERR 03 RANGE"),
              sent("LOAD B1 W1"), got(f"!{live + 1} STATE LOADED"), got("OK")]
    async with scripted(script, last_seq=900) as s:
        assert s.link.is_open
        await s.plater.load("B1", ["W1"])
        assert s.wire.used_up
    assert [e.seq for e in s.events] == [live, live + 1]
    assert (s.plater.catch_ups_refused, s.plater.events_lost, s.plater.renumbered) == (
        1, lost, renumbered)
    assert s.plater.last_seq == live + 1


# --- the barrier step ---------------------------------------------------------------------------


def test_a_recipe_echoed_rounded_is_no_setup_difference() -> None:
    step = replace(STEP, au_um=0.075)
    rounded = PlaterView(None, recipe=BarrierRecipe(3.0, 0.08, 85.0, 80.0))  # type: ignore[arg-type]
    assert BARRIER.setup_mismatches(step, rounded) == []
    other = PlaterView(None, recipe=BarrierRecipe(3.0, 0.09, 85.0, 80.0))  # type: ignore[arg-type]
    assert BARRIER.setup_mismatches(step, other)


async def test_prepare_does_not_resend_a_recipe_echoed_rounded() -> None:
    step = replace(STEP, au_um=0.075)
    script = [sent(IDN[0]), got(IDN[1]),
              sent("RECIPE?"), got("OK 3.00 0.08 85.0 80.0"),  # no RECIPE after it
              sent("BATH?"), got("OK 85.0 80.0 4.75 0.40 90.0"),
              sent("RECIPE?"), got("OK 3.00 0.08 85.0 80.0"), sent("STATE?"), got("OK IDLE - - -"),
              sent("BATH?"), got("OK 85.0 80.0 4.75 0.40 90.0")]
    notes: list[str] = []
    async with scripted(script, clock=ManualClock()) as s:
        await BARRIER.prepare(s.plater, step, clock=ManualClock(), recipe_name="r",
                              note=notes.append)
        assert s.wire.used_up
    assert notes == []


async def _plate_one(script: list[tuple[str, str]]) -> tuple[object, MemoryJournal, bool]:
    """W1 alone in batch B1 through ``execute`` (the kind's clock never moves)."""
    journal = MemoryJournal()
    batch = Batch("B1", ["W1"], "plater-1")
    ctx = StepContext("W1", StoppedClock(), "r", journal, batch=batch)
    async with scripted(script, clock=ManualClock()) as s:
        try:
            outcome: object = await BARRIER.execute(s.plater, STEP, ctx, None)  # type: ignore[arg-type]
        except Exception as exc:  # the test looks at it
            outcome = exc
        used_up = s.wire.used_up
    return outcome, journal, used_up


START = [sent(IDN[0]), got(IDN[1]),
         sent("STATE?"), got("OK IDLE - - 0"),
         sent("LOAD B1 W1"), got("!5 STATE LOADED"), got("OK"), *READY]


async def test_start_refused_not_ready_waits_for_the_baths_and_starts_once_more() -> None:
    script = [*START,
              sent("START"), got("ERR 05 NOT READY"), got("!6 BATH 85.0 80.0"), *READY,
              sent("START"), got("OK"), got("!7 STATE RUNNING"), got("!8 DONE B1 OK"),
              got("!9 STATE DONE"),
              # the DONE alone ends the wait: no STATE? polls
              sent("RESULT?"), got("OK B1 OK 3.010 3.010 3.010 0.081 1"),
              sent("RESULT? W1"), got("OK W1 3.010 0.0810")]
    outcome, journal, used_up = await _plate_one(script)
    assert used_up and not isinstance(outcome, Exception), outcome
    assert outcome.result.batch.status is RunStatus.OK  # type: ignore[attr-defined]
    # a new intent for the second START, committed before it was sent, and closed done
    assert [i.command for i in journal.intents] == ["LOAD B1", "START", "START"]
    assert [i.outcome for i in journal.intents[1:]] == [REFUSED, DONE]  # ERR: nothing changed


async def test_start_refused_twice_fails_as_before() -> None:
    script = [*START,
              sent("START"), got("ERR 05 NOT READY"), got("!6 BATH 85.0 80.0"), *READY,
              sent("START"), got("ERR 05 NOT READY")]
    outcome, journal, used_up = await _plate_one(script)
    assert used_up and isinstance(outcome, RefusedNotReady)


async def test_a_tool_back_idle_after_a_power_loss_ends_the_batch_aborted_at_once() -> None:
    """The link drops mid-batch; the tool comes back IDLE (the carrier rinsed by hand) with
    no DONE: RESULT? names the batch ABORTED, which is what the wafers get, not a timeout
    after twice the cycle (the kind's clock never moves: only the drop can wake it)."""
    script = [*START,
              sent("START"), got("OK"), got("!6 STATE RUNNING"), hang_up(),
              sent(IDN[0]), got(IDN[1]),
              sent("EVENTS? 6"), got("!7 STATE IDLE"), got("OK 1"),  # the power-up event
              sent("STATE?"), got("OK IDLE - - -"),
              sent("STATE?"), got("OK IDLE - - -"),
              sent("RESULT?"), got("OK B1 ABORTED 0.412 0.412 0.412 0.000 1"),
              sent("RESULT? W1"), got("OK W1 0.412 0.0000")]
    outcome, _, used_up = await _plate_one(script)
    assert used_up and not isinstance(outcome, Exception), outcome
    judged = BARRIER.judge(STEP, outcome.result, "W1")  # type: ignore[attr-defined]
    assert not judged.ok and "batch B1 ended ABORTED" in judged.findings


async def test_an_alarm_with_no_done_fails_the_batch_with_its_code_at_once() -> None:
    """An emergency stop: ALARM and STATE ALARM, but this tool writes the batch's DONE
    only at CLEAR. The alarm wakes the wait; RESULT? has no batch of ours: the alarm's
    code fails it."""
    script = [*START,
              sent("START"), got("OK"), got("!6 STATE RUNNING"),
              got("!7 ALARM 900 EMERGENCY STOP"), got("!8 STATE ALARM"),
              sent("STATE?"), got("OK ALARM B1 - -"),
              sent("STATE?"), got("OK ALARM B1 - -"),
              sent("RESULT?"), got("ERR 02 UNKNOWN")]
    outcome, _, used_up = await _plate_one(script)
    assert used_up and isinstance(outcome, ToolAlarm) and outcome.code == 900, outcome


async def test_recovery_starts_a_loaded_carrier_once_more_after_not_ready() -> None:
    script = [sent(IDN[0]), got(IDN[1]),
              sent("STATE?"), got("OK LOADED B7 - -"),
              sent("ALARM?"), got("OK 0 NONE"), *RECIPE, sent("BATH?"),
              got("OK 85.0 80.4 4.75 0.40 90.0"),  # look
              *ready("LOADED B7"), sent("START"), got("ERR 05 NOT READY"),
              got("!6 BATH 85.0 80.0"), *ready("LOADED B7"), sent("START"), got("OK"),
              got("!7 STATE RUNNING"),
              sent("STATE?"), got("OK RUNNING B7 PRECLEAN 2200"),
              sent("STATE?"), got("!8 DONE B7 OK"), got("OK DONE B7 - -"),
              sent("STATE?"), got("OK DONE B7 - -"),
              sent("RESULT?"), got("OK B7 OK 3.010 3.010 3.010 0.081 1"),
              sent("RESULT? W1"), got("OK W1 3.010 0.0810"),
              sent("STATE?"), got("OK DONE B7 - -"),
              sent("UNLOAD"), got("OK")]
    notes: list[str] = []
    wafer = Recovering("W1", 4, False, (), ("LOAD B7", "START"), notes.append)
    async with scripted(script, clock=ManualClock()) as s:
        settled = await BARRIER.settle_all(s.plater, [(STEP, wafer)], StoppedClock())
        assert s.wire.used_up
    assert isinstance(settled["W1"], TakeResult) and settled["W1"].unloaded
    assert any("started now" in n for n in notes), notes


@pytest.mark.faults
async def test_a_link_dropped_mid_batch_wakes_the_wait_which_reopens_and_waits_on() -> None:
    """Against the simulated EP-25: the tool drops the host mid-batch. The wait wakes,
    STATE? reopens the link (catch-up) and shows it RUNNING, so it waits again for the
    DONE, which arrives on the new connection (the kind's clock never moves: no timeout
    or poll ends this wait)."""
    from tests.test_plater_driver import sim_plater

    async with sim_plater("disconnect=3000") as sim:  # heat-up ~2,000 s, then plating
        link = sim.link()
        plater = BarrierPlater(link, sim.clock, last_seq=0)
        journal = MemoryJournal()
        ctx = StepContext("W1", StoppedClock(), "r", journal,
                          batch=Batch("B1", ["W1"], "plater-1"))
        async with link:
            await BARRIER.prepare(plater, STEP, clock=sim.clock, recipe_name="r",
                                  note=lambda text: None)
            outcome = await BARRIER.execute(plater, STEP, ctx, None)  # type: ignore[arg-type]
    assert link.connections == 2 and sim.server.model._batches_started == 1
    assert outcome.result.batch.status is RunStatus.OK
    assert BARRIER.judge(STEP, outcome.result, "W1").ok


async def test_recovery_waiting_on_a_running_batch_takes_idle_as_its_end() -> None:
    """Recovery finds the batch RUNNING; the tool loses power and comes back IDLE with no
    DONE: the batch's ABORTED result is taken at once, not after twice the cycle."""
    script = [sent(IDN[0]), got(IDN[1]), sent("EVENTS? 6"), got("OK 0"),
              sent("STATE?"), got("OK RUNNING B7 NI_PLATE 1800"),
              sent("STATE?"), got("OK RUNNING B7 NI_PLATE 1790"), hang_up(),
              sent(IDN[0]), got(IDN[1]), sent("EVENTS? 6"), got("!7 STATE IDLE"), got("OK 1"),
              sent("STATE?"), got("OK IDLE - - -"),
              sent("STATE?"), got("OK IDLE - - -"),
              sent("RESULT?"), got("OK B7 ABORTED 1.100 1.100 1.100 0.000 1"),
              sent("RESULT? W1"), got("OK W1 1.100 0.0000")]
    wafer = Recovering("W1", 4, False, (), ("LOAD B7", "START"), lambda text: None)
    async with scripted(script, last_seq=6, clock=ManualClock()) as s:
        settled = await BARRIER.settle_all(s.plater, [(STEP, wafer)], StoppedClock())
        assert s.wire.used_up
    found = settled["W1"]
    assert isinstance(found, TakeResult) and found.unloaded  # IDLE: no carrier in the tool
    assert found.result.batch.status is RunStatus.ABORTED


# --- the carrier after every rider is judged ------------------------------------------------------

KEPT = [*START, sent("START"), got("OK"), got("!6 STATE RUNNING"), got("!7 DONE B1 OK"),
        got("!8 STATE DONE"),
        sent("RESULT?"), got("OK B1 OK 3.010 3.010 3.010 0.081 1"),
        sent("RESULT? W1"), got("OK W1 3.010 0.0810"),
        # the door opened after DONE (a tool may raise 400 in any state): UNLOAD would be 04
        sent("STATE?"), got("!9 ALARM 400 DOOR OPEN"), got("OK ALARM B1 - 0"),
        sent("ALARM?"), got("OK 400 DOOR OPEN"), sent("STATE?"), got("OK ALARM B1 - 0")]


async def _plate_and_unload(script: list[tuple[str, str]], batch: Batch) -> object:
    """W1 alone in ``batch``: ``execute``, then the kind's ``unload`` in the same task (as
    the runner does); the exception either raised, else None."""
    ctx = StepContext("W1", StoppedClock(), "r", MemoryJournal(), batch=batch)
    async with scripted(script, clock=ManualClock()) as s:
        try:
            await BARRIER.execute(s.plater, STEP, ctx, None)  # type: ignore[arg-type]
            await BARRIER.unload(s.plater, STEP)
            outcome: object = None
        except Exception as exc:  # the test looks at it
            outcome = exc
        assert s.wire.used_up
    return outcome


async def test_an_alarm_keeping_the_judged_carrier_in_is_told_to_the_line() -> None:
    """barrier-plater.md: UNLOAD only in DONE. An alarm latched between the batch's DONE and
    its UNLOAD: the carrier stays in. It was left there without a word and the riders went
    on; now the line is told (``Batch.kept_inside``, once) and nothing more is sent."""
    batch = Batch("B1", ["W1"], "plater-1")
    told: list[Alarm] = []
    batch.kept_inside = told.append
    assert await _plate_and_unload(KEPT, batch) is None
    assert told == [Alarm(400, "DOOR OPEN")]


async def test_an_alarm_keeping_the_carrier_in_with_no_line_fails_the_rider() -> None:
    """The same with no line behind the batch (``bumpline sequence run``): nobody will clear
    it, so the rider fails with the alarm, saying the carrier is still in the tool."""
    outcome = await _plate_and_unload(KEPT, Batch("B1", ["W1"], "plater-1"))
    assert isinstance(outcome, ToolAlarm) and outcome.code == 400, outcome
    assert "its carrier is still in the tool" in outcome.text, outcome.text

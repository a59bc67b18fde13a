"""The oven's exit watcher against the simulated RF-10N over Modbus TCP: every wafer is
taken off at the exit in load order, with its own values and curve, and the belt never
blocks (alarm 530) - also for a wafer whose step stopped waiting for it, and with an oven
answering busy (exception 06) at the exit; and the LOADs spaced by what the watcher needs
to take a wafer off."""

from __future__ import annotations

import asyncio
import logging

import pytest
from modbus_fixtures import sim_oven

from drivers.clock import ManualClock
from drivers.errors import LinkError, ToolError, ToolTimeout
from drivers.oven import ReflowOven
from drivers.turns import is_urgent
from drivers.types import Alarm, OvenSignals, ReflowResult
from sequences.kinds.base import timeout_for
from sequences.kinds.oven_exit import (
    REACTION_MAX_WALL_S,
    REACTION_SAFETY,
    REACTION_TAKES,
    REACTION_WALL_S,
    TRIPS_PER_TAKE,
    ExitWatch,
    exit_watch,
    off_alarm,
    on_alarm,
)
from sequences.kinds.reflow import ENTRANCE_SPACING_MM, REFLOW, transit_s
from sequences.recipes.recipe import find_recipe

EUTECTIC = find_recipe("rebump-hipb-snpb").step(5)  # 1,000 mm/min: 240 s in the tunnel
# Slower than the other simulator tests: two wafers reach the exit 27 tool seconds apart,
# and what is checked here is the order and the results, not how late a loaded machine
# may be (benchmarks/bench_lot.py measures that).
SCALE = 200.0


async def ready(oven: ReflowOven) -> None:
    await oven.stage_profile(EUTECTIC.tool_profile())
    await oven.apply()
    await oven.set_nitrogen(True)
    await oven.wait_ready(timeout_s=1800)


async def load_behind(oven: ReflowOven, watch: ExitWatch, wafer_id: str
                      ) -> asyncio.Future:
    """Load once the entrance is clear (the oven says so), then hand the wafer to the watch."""
    while not (await oven.signals()).entrance_clear:
        await oven.clock.sleep(ENTRANCE_SPACING_MM / EUTECTIC.conveyor_mm_min * 60 / 4)
    sent_at = oven.clock.now()
    await oven.load(wafer_id)
    watch.entered(oven.clock.now())  # as the reflow step tells it
    return watch.ride(wafer_id, transit_s(EUTECTIC), sent_at)


async def test_the_watch_takes_every_wafer_off_in_order_with_its_own_result() -> None:
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        ids = ["EXW-01", "EXW-02", "EXW-03"]
        arrivals = [await load_behind(oven, watch, w) for w in ids]
        assert await oven.exit_values_of(ids) is None  # nothing has reached the exit yet
        results = [await asyncio.wait_for(a, 30) for a in arrivals]

        assert [r.result.wafer_id for r in results] == ids
        samples = int(transit_s(EUTECTIC) // 5)
        for r in results:
            assert r.result.profile_id == EUTECTIC.profile_id
            assert r.result.peak_c > 200.0
            assert abs(len(r.result.curve_c) - samples) <= 1
            assert r.alarms == []
        status = await oven.status()
        assert status.alarm_code == 0 and status.wafers_on_belt == 0
        assert not status.wafer_at_exit
        assert watch.riding == []


async def test_an_oven_that_keeps_no_curve_after_unload_has_its_curves_read_before_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """reflow-oven.md keeps the exit's values until the next wafer arrives and does not
    say the curve outlives the UNLOAD. On an oven that drops it (EXIT_CURVE_LEN 0 after
    UNLOAD), every wafer's curve was lost without a word. The first empty curve after an
    UNLOAD is said, and the curves are read before the UNLOAD from then on."""
    async with sim_oven(scale=SCALE) as (oven, sim):
        sim.model.curve_kept_after_unload = False
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        ids = ["EXC-01", "EXC-02", "EXC-03"]
        arrivals = [await load_behind(oven, watch, w) for w in ids]
        with caplog.at_level(logging.WARNING, logger="sequences.kinds.oven_exit"):
            results = [await asyncio.wait_for(a, 30) for a in arrivals]
    samples = int(transit_s(EUTECTIC) // 5)
    assert [r.result.wafer_id for r in results] == ids
    assert results[0].result.curve_c == ()  # the one it was learnt from
    assert all(abs(len(r.result.curve_c) - samples) <= 1 for r in results[1:]), results
    assert [r.message for r in caplog.records if "no curve after" in r.message] == [
        "oven-1: no curve after EXC-01's UNLOAD (this oven keeps none): curves are read "
        "before the UNLOAD from now on"]


async def test_a_stopping_controller_leaves_the_belt_to_recovery() -> None:
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        first = await load_behind(oven, watch, "EXW-11")
        second = await load_behind(oven, watch, "EXW-12")
        first.cancel()  # the controller stops: its steps are cancelled
        assert watch.riding == ["EXW-11", "EXW-12"]
        third = await load_behind(oven, watch, "EXW-13")
        assert watch.riding == ["EXW-12", "EXW-13"]  # forgotten: recovery settles it
        second.cancel()
        third.cancel()
        await asyncio.sleep(0)  # one loop turn: futures run their done callbacks then
        assert watch.riding == []  # and the watcher has stopped
        status = await oven.status()
        assert status.wafers_on_belt == 3  # nothing taken off behind recovery's back


async def test_a_watcher_that_fails_by_itself_fails_its_riders_instead_of_leaving_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault of the watcher's own (not the oven's: a programming error) must not leave
    the riders' steps and the entrance waiting for a take no one will make: each step
    fails, naming it, and the wafer counts as still on the belt."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)

        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("a bug in the exit's read")

        oven.exit_values_of = broken  # type: ignore[method-assign]
        arrived = await load_behind(oven, watch, "EXW-41")
        with pytest.raises(ToolError, match="exit watcher stopped .*a bug in the exit"):
            await asyncio.wait_for(arrived, 30)
        assert watch.riding == [] and watch.on_belt("EXW-41")
        assert not await asyncio.wait_for(watch.stand_clear(1e9), 5)  # nothing to wait for
        assert "the exit watcher stopped" in caplog.text


async def test_a_wafer_passing_twice_is_not_taken_for_arrived_by_its_old_id() -> None:
    """A rebump's wafer rides twice; after its first pass the exit registers keep its id
    until another wafer arrives."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        first = await asyncio.wait_for(await load_behind(oven, watch, "EXW-21"), 30)
        assert first.result.wafer_id == "EXW-21"
        assert (await oven.exit_values_of({"EXW-21"}, left="EXW-21")) is None  # gone
        again = await asyncio.wait_for(await load_behind(oven, watch, "EXW-21"), 30)
        assert again.result.wafer_id == "EXW-21"
        status = await oven.status()
        # Taken off for real: the belt is empty, not still carrying the second pass.
        assert status.wafers_on_belt == 0 and status.alarm_code == 0


async def test_an_oven_answering_busy_at_the_exit_is_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exception 06 on the exit's reads and UNLOAD (no resends by the link): the watcher
    looks again instead of failing the wafer, and the belt never blocks."""
    caplog.set_level(logging.DEBUG, logger="sim.oven-1")
    async with sim_oven(scale=SCALE, retries=0) as (oven, sim):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        ids = ["EXW-31", "EXW-32", "EXW-33"]
        arrivals = [await load_behind(oven, watch, w) for w in ids]
        sim.faults.seed(12)
        sim.faults.busy = 0.4  # from now on: the exit's reads and UNLOADs
        results = [await asyncio.wait_for(a, 30) for a in arrivals]
        sim.faults.busy = 0.0

        assert [r.result.wafer_id for r in results] == ids
        assert all(r.result.profile_id == EUTECTIC.profile_id for r in results)
        assert any("fault: busy" in rec.getMessage() for rec in caplog.records)
        status = await oven.status()
        assert status.alarm_code == 0 and status.wafers_on_belt == 0
        assert not status.wafer_at_exit


async def test_an_oven_gone_silent_leaves_every_rider_to_the_scheduler() -> None:
    """No answer at all (the link's resends spent): every riding wafer's step gets the
    LinkError at once, so the scheduler can settle the whole belt when the oven is back,
    not one after the other as each comes due."""
    async with sim_oven(scale=SCALE, retries=0) as (oven, sim):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        arrivals = [await load_behind(oven, watch, w) for w in ("EXW-41", "EXW-42")]
        await sim.server.stop()
        with pytest.raises(LinkError):
            await asyncio.wait_for(arrivals[0], 30)
        # The second wafer is due 27 tool s later: it was told with the first.
        assert arrivals[1].done() and isinstance(arrivals[1].exception(), LinkError)
        assert watch.riding == []
        # Recovery takes off what comes out meanwhile, without the watcher: the last wafer
        # taken off is not known any more (a rebump's second pass must not be taken for
        # arrived by its first pass's id).
        assert watch._left is None


class FastClock(ManualClock):
    """Tool time that moves only when something sleeps, standing for a simulator run at
    1600x: what a wall-time figure is worth in tool seconds."""

    scale = 1600.0
    stall_s = 0.0  # the longest stall its sleeps met lately (wall s), as a test sets it

    def recent_stall_s(self) -> float:
        return self.stall_s


async def test_loads_are_spaced_by_what_the_exit_needs_to_take_a_wafer_off() -> None:
    """Two arrivals closer than the watcher's reaction block the exit (alarm 530): the
    next LOAD waits for the slower of the entrance and that reaction, which starts at a
    wall-time floor and then follows the slowest recent take."""
    clock = FastClock(start=1000.0)
    async with sim_oven(scale=SCALE) as (oven, _):
        watch = ExitWatch(oven, clock)
        occupancy = ENTRANCE_SPACING_MM / EUTECTIC.conveyor_mm_min * 60  # 27 s
        assert watch.next_load_at(occupancy) == float("-inf")  # nothing loaded yet
        watch.entered(1000.0)
        floor = REACTION_WALL_S * 1600.0  # 160 tool s: more than the entrance's 27
        assert watch.reaction_s() == floor
        assert watch.next_load_at(occupancy) == 1000.0 + floor

        # Takes that needed 20, then 95 tool s: twice the slowest spaces the next LOAD.
        watch._reactions.extend([20.0, 95.0])
        assert watch.reaction_s() == REACTION_SAFETY * 95.0
        assert watch.next_load_at(occupancy) == 1000.0 + REACTION_SAFETY * 95.0
        # A take after a stopped belt says nothing of the next: capped.
        watch._reactions.append(10_000.0)
        assert watch.reaction_s() == REACTION_MAX_WALL_S * 1600.0
        # Only the recent takes count.
        watch._reactions.extend([5.0] * REACTION_TAKES)
        assert watch.reaction_s() == floor
        # A LOAD whose reply took 30 tool s: the next take needs about three such trips.
        watch.entered(1030.0)
        watch.ride("EXW-61", transit_s(EUTECTIC), sent_at=1000.0).cancel()
        assert watch.reaction_s() == REACTION_SAFETY * TRIPS_PER_TAKE * 30.0
        assert watch.next_load_at(occupancy) == 1030.0 + REACTION_SAFETY * TRIPS_PER_TAKE * 30
        # A stall of 80 ms lately (the loop or the process held up: 128 tool s here), which
        # no take met: the next take may meet one like it.
        clock.stall_s = 0.08
        assert watch.reaction_s() == REACTION_SAFETY * 0.08 * 1600.0
        assert watch.next_load_at(occupancy) == 1030.0 + REACTION_SAFETY * 0.08 * 1600.0
        # At wall speed (a manual clock: no wall time passes) the entrance alone decides.
        still = ExitWatch(oven, ManualClock(1000.0))
        still.entered(1000.0)
        assert still.reaction_s() == 0.0
        assert still.next_load_at(occupancy) == 1000.0 + occupancy


async def test_each_take_is_remembered_as_the_exits_reaction() -> None:
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        results, reply_s = [], []
        for wafer_id in ("EXW-51", "EXW-52"):
            arrived = await load_behind(oven, watch, wafer_id)
            rider = watch._riders[-1]
            reply_s.append(rider.latest - rider.due)  # its LOAD's round trip
            results.append(await asyncio.wait_for(arrived, 30))
        assert [r.result.wafer_id for r in results] == ["EXW-51", "EXW-52"]
        assert all(s > 0.0 for s in reply_s)
        # Counted from the latest each can have arrived (its LOAD's reply), not its due
        # time (the LOAD's sending): a slow LOAD reply is not the exit's reaction.
        assert list(watch._reactions) == pytest.approx(
            [max(0.0, late - s) for late, s in zip(watch.latencies, reply_s, strict=True)])
        assert len(watch._trips) == 2  # each LOAD's round trip too
        needs = REACTION_SAFETY * max(*watch._reactions, *(TRIPS_PER_TAKE * t
                                                           for t in watch._trips),
                                      oven.clock.recent_stall_s() * SCALE)
        assert watch.reaction_s() == min(max(REACTION_WALL_S * SCALE, needs),
                                         REACTION_MAX_WALL_S * SCALE)


async def test_the_watchers_requests_go_first_on_the_link() -> None:
    """Everything the watcher asks of the oven (the exit read, UNLOAD, the curve) is
    urgent on the link (it goes before the requests waiting there); the same driver's
    requests from a wafer's step are not."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        sent: list[tuple[str, bool]] = []

        def trace(way: str, text: str) -> None:  # called in the asking task's context
            if way == ">":
                sent.append((text, is_urgent()))

        oven.link.trace = trace
        watch = ExitWatch(oven, oven.clock)
        result = await asyncio.wait_for(await load_behind(oven, watch, "EXW-71"), 30)
        assert result.result.wafer_id == "EXW-71"
        urgent_ones = {text.split("(")[-1].rstrip(")") for text, u in sent if u}
        ordinary = {text.split("(")[-1].rstrip(")") for text, u in sent if not u}
        assert {"EXIT_PEAK..EXIT_WAFER_ID", "COMMAND=UNLOAD", "EXIT_CURVE_LEN"} <= urgent_ones
        assert {"LOAD_WAFER_ID", "COMMAND=LOAD"} <= ordinary
        assert "COMMAND=UNLOAD" not in ordinary and "COMMAND=LOAD" not in urgent_ones
        assert not is_urgent()  # the test's own task was never marked


async def test_the_first_take_is_one_exit_read_then_the_unload() -> None:
    """While the first wafer rides, the watcher reads whose values the exit shows (not a
    rider's: the last wafer taken off); when that wafer arrives, one exit read names it
    and the UNLOAD follows, with no WAFER_AT_EXIT read or second look in between."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        sent: list[str] = []

        def trace(way: str, text: str) -> None:
            if way == ">" and is_urgent():  # the watcher's requests
                sent.append(text.split("(")[-1].rstrip(")"))

        oven.link.trace = trace
        watch = ExitWatch(oven, oven.clock)
        result = await asyncio.wait_for(await load_behind(oven, watch, "EXW-91"), 30)
        assert result.result.wafer_id == "EXW-91"
        unload = sent.index("COMMAND=UNLOAD")
        found = max(i for i, text in enumerate(sent[:unload])
                    if text == "EXIT_PEAK..EXIT_WAFER_ID")
        assert sent[0] == "EXIT_WAFER_ID"  # the seed, before the wafer was due
        # Between the read that found it and its UNLOAD, at most the belt count the driver
        # learns its model from once per oven (oven_belt.py): no exit flags, no re-read.
        assert set(sent[found + 1:unload]) <= {"WAFERS_ON_BELT"}, sent
        assert watch._left == "EXW-91"


class LateReplyOven:
    """An oven in memory whose first exit read is answered after the wafer's deadline (the
    host was held up meanwhile, as a busy machine holds up a simulator run): that read
    found the exit empty, and the wafer arrives during the hold-up. ``never``: wafers that
    never come out."""

    name = "oven-1"

    def __init__(self, clock: ManualClock, late_by: float, never: set[str]) -> None:
        self.clock, self.late_by, self.never = clock, late_by, never
        self.reads: list[float] = []  # tool time each exit read was sent
        self.unloaded: list[str] = []

    async def exit_values_of(self, wafer_ids: set[str], *, left: str | None = None
                             ) -> ReflowResult | None:
        self.reads.append(self.clock.now())
        if len(self.reads) == 1:
            self.clock.advance(self.late_by)  # the reply comes this much later
            return None
        there = [w for w in wafer_ids if w not in self.never and w not in self.unloaded]
        if not there:
            return None
        return ReflowResult(min(there), 235.0, 60.0, 1.5, -2.0, 1, 20, 0)

    async def unload(self, wafer_id: str | None = None) -> None:
        assert wafer_id is not None
        self.unloaded.append(wafer_id)

    async def exit_curve(self) -> tuple[float, ...]:
        return (25.0, 150.0, 235.0)

    async def exit_wafer_id(self) -> str:
        return self.unloaded[-1] if self.unloaded else ""

    async def signals(self) -> OvenSignals:
        return OvenSignals(entrance_clear=True, wafer_at_exit=False, zones_stable=True,
                           alarm_active=False)

    async def alarm(self) -> None:  # the watcher's look at the alarm while wafers ride
        return None


async def test_a_host_held_up_past_the_deadline_looks_again_before_giving_up() -> None:
    """A wafer is given up on only when the exit was read after its deadline: an empty
    read sent before it, answered after it, is followed by another look (which finds the
    wafer), not by a timeout. A wafer not there at a read sent after the deadline fails
    its step."""
    clock = ManualClock()
    transit = transit_s(EUTECTIC)
    deadline = timeout_for(transit)
    # The first read goes out at the wafer's due time; its answer, past the deadline.
    oven = LateReplyOven(clock, late_by=deadline, never=set())
    watch = ExitWatch(oven, clock)
    result = await asyncio.wait_for(watch.ride("EXW-81", transit, 0.0), 5)
    assert result.result.wafer_id == "EXW-81" and oven.unloaded == ["EXW-81"]
    assert oven.reads[0] < deadline <= oven.reads[1]  # looked again, after the deadline

    clock = ManualClock()
    oven = LateReplyOven(clock, late_by=0.0, never={"EXW-82"})
    watch = ExitWatch(oven, clock)
    with pytest.raises(ToolTimeout, match="EXW-82 not at the exit"):
        await asyncio.wait_for(watch.ride("EXW-82", transit, 0.0), 5)
    assert oven.reads[-1] >= deadline and oven.unloaded == []
    assert watch._task is not None  # it looks for the late wafer a while longer, then stops
    await asyncio.wait_for(watch._task, 5)
    assert watch.riding == [] and oven.unloaded == []


async def test_a_failed_reflow_is_said_to_ride_out_only_while_it_is_on_the_belt() -> None:
    """A wafer whose LOAD an alarm refused was told to the operator as "the oven has no
    abort: the wafer rides to the exit", and so was one already off the exit."""
    rides = ["the oven has no abort: the wafer rides to the exit"]
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = exit_watch(oven, oven.clock)  # the one the reflow step uses
        riding = await load_behind(oven, watch, "EXW-71")
        assert await REFLOW.abort(oven, EUTECTIC, "EXW-71") == rides
        assert await REFLOW.abort(oven, EUTECTIC, "EXW-72") == []  # never on the belt
        await asyncio.wait_for(riding, 30)
        assert await REFLOW.abort(oven, EUTECTIC, "EXW-71") == []  # off the exit


async def test_an_alarm_that_leaves_the_belt_running_is_told_while_the_wafer_rides() -> None:
    """550 N2 FLOW LOW latched just after a LOAD: the belt runs on, and UNLOAD is allowed in
    ALARM, so the exit's own reads never show it (it was heard of at the oven's next LOAD
    or APPLY, naming no wafer). The watcher reads the oven's alarm while the wafer rides
    and tells the oven's listener at once, naming the wafer, before it first looks at the
    exit; the wafer still comes out judged on its own values (no alarm carried in)."""
    async with sim_oven(scale=SCALE) as (oven, sim):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        told: list[tuple[Alarm, list[str], int]] = []

        def listener(alarm: Alarm, wafers: list[str]) -> None:
            told.append((alarm, wafers, watch.looks))

        on_alarm(oven, listener)
        try:
            arrived = await load_behind(oven, watch, "EXW-A1")
            sim.model.schedule_alarm(550, at_time=oven.clock.now() + 5.0)
            result = await asyncio.wait_for(arrived, 30)
        finally:
            off_alarm(oven, listener)
        assert told, "the alarm was not told"
        alarm, wafers, exit_looks = told[0]
        assert (alarm.code, alarm.text) == (550, "N2 FLOW LOW")
        assert wafers == ["EXW-A1"]
        assert exit_looks == 0  # found by the alarm look while it rode, not at the exit
        assert result.result.wafer_id == "EXW-A1" and result.alarms == []
        assert (await oven.alarm()) is not None  # nobody cleared it here (the scheduler does)


async def test_reads_already_made_stand_for_the_watchers_alarm_look() -> None:
    """A read that shows the oven's alarm (here the interlocks' IR 0-14, as a LOAD's check
    makes it) counts: while such reads come often enough, the watcher reads the alarm
    itself only once, as the belt empties."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        arrived = await load_behind(oven, watch, "EXW-A2")

        async def interlocks() -> None:
            while True:
                await oven.readiness()
                await oven.clock.sleep(20.0)

        reads = asyncio.ensure_future(interlocks())
        try:
            result = await asyncio.wait_for(arrived, 30)
        finally:
            reads.cancel()
            await asyncio.gather(reads, return_exceptions=True)
        assert result.result.wafer_id == "EXW-A2"
        assert watch.alarm_looks <= 1, watch.alarm_looks


async def test_a_wafer_its_step_gave_up_on_is_taken_off_before_the_next_reaches_it() -> None:
    """A wafer whose step gave up on it (a belt an alarm stopped longer than its deadline)
    still rides ahead of the wafers loaded after the alarm was cleared. The watcher looked
    for it only at the first new rider's arrival, so it waited at the exit until that one
    reached it: alarm 530, a good wafer flagged (the independent soak, seed 8 plan 5). It is
    looked for every ``LATE_LOOK_S`` while it rides ahead of a rider."""
    async with sim_oven(scale=SCALE) as (oven, _):
        await ready(oven)
        watch = ExitWatch(oven, oven.clock)
        # Its step waits as if the belt had been stopped before: it gives up at 180 tool s,
        # before the wafer reaches the exit at 240.
        sent_at = oven.clock.now()
        await oven.load("EXW-91")
        watch.entered(oven.clock.now())
        given_up = watch.ride("EXW-91", 60.0, sent_at)
        with pytest.raises(ToolTimeout, match="not at the exit"):
            await asyncio.wait_for(given_up, 30)
        assert watch.on_belt("EXW-91")
        behind = await load_behind(oven, watch, "EXW-92")  # due 240 tool s after its LOAD
        result = await asyncio.wait_for(behind, 30)
        assert result.result.wafer_id == "EXW-92"
        assert result.alarms == [] and result.result.flags == 0
        status = await oven.status()
        assert status.alarm_code == 0 and status.wafers_on_belt == 0
        assert not watch.on_belt("EXW-91")

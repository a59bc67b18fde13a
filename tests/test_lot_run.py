"""Lots on the simulated line: LineController + Scheduler + Store against real drivers.

Every test starts the simulator in-process (tool models behind their real
protocols, ptys and sockets), opens the drivers from the line configuration it
describes, and runs lots with ``LineController`` on a fresh SQLite file. What
is checked is what a fab would look at afterwards: the database, and the tools
themselves (no wafer left inside one).

Timing is driven by the wafers' own events (``Progress.on_event``) and by the
controller saying it waits for people, never by sleeps. The printer's random
alignment failures (alarm 210, rate 0.002) are drawn in the order wafers reach
the printer, and a hold or an abort lands at a wall-clock moment: the rig turns
them off, so every alarm in these tests is one a test asked for (fault plans),
and the full-lot test asserts that no other was raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.line.bound import lower_bound, tool_occupancy
from controller.line.controller import REQUEST_LOOK_S, LineController, LotOutcome, Progress
from controller.line.events import EventKind
from controller.line.scheduler import IDLE_WAKE_S
from controller.store import Store, slots_for_count
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import LineTools, open_line
from drivers.types import PrinterState
from sequences.kinds import kind_of
from sequences.recipes.recipe import ReflowStep
from sequences.recipes.validate import load_valid_recipe
from sequences.wafer.machine import WaferEvent
from sim.faults import FaultPlan, ScheduledAlarm
from sim.line import SimulatedLine

SPEED = 500.0  # tool seconds per wall second; the full-lot test checks the run is still right
# (at 2000x, and at 1000x beside another suite, a machine busy with two test workers and
# a browser held the controller up for more than a wafer's exit margin, a few tenths of
# a second, now and then)
SEED = 1
RECIPE = "rebump-hipb-snpb"
STEPS = 6
WAIT_S = 30.0  # wall-second bound on any wait for the controller (a hang fails, never a pass)
PRINT_TOOL_S = 20.0 + 30.0 + 10.0  # printer LOADING + PRINTING (1 pass) + INSPECTING
ABORT_WAIT_S = 15.0  # an aborted 3-wafer lot ends in about a second of wall time
E10_OF_A_RUN = {"productive", "standby", "scheduled down"}


@dataclass
class Watch:
    """The controller's progress callbacks, as things a test can wait for."""

    events: list[WaferEvent] = field(default_factory=list)
    blocked: asyncio.Queue[list[str]] = field(default_factory=asyncio.Queue)
    _waiters: list[tuple[Callable[[WaferEvent], bool], asyncio.Future[WaferEvent]]] = field(
        default_factory=list)

    def progress(self) -> Progress:
        return Progress(on_event=self._event,
                        on_waiting_for_people=lambda wafers: self.blocked.put_nowait(list(wafers)))

    def _event(self, event: WaferEvent) -> None:
        self.events.append(event)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(event):
                future.set_result(event)
                self._waiters.remove((predicate, future))

    def when(self, predicate: Callable[[WaferEvent], bool]) -> asyncio.Future[WaferEvent]:
        """A future for the first event from now on that matches."""
        future: asyncio.Future[WaferEvent] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return future

    async def waiting_for_people(self) -> list[str]:
        return await asyncio.wait_for(self.blocked.get(), WAIT_S)


@dataclass
class Rig:
    line: SimulatedLine
    tools: LineTools
    clock: ScaledClock
    store: Store

    def model(self, tool: str) -> Any:
        return self.line.models[tool]

    def new_lot(self, lot_id: str, wafers: int, *, priority: int = 5,
                recipe_name: str = RECIPE) -> list[str]:
        recipe = load_valid_recipe(recipe_name)
        self.store.create_lot(lot_id, recipe_name=recipe_name, recipe_version=recipe.version,
                              recipe_hash=recipe.hash, slots=slots_for_count(wafers),
                              priority=priority, user="test")
        return [w.id for w in self.store.wafers(lot_id)]

    def controller(self, watch: Watch | None = None, *, wait: bool = False) -> LineController:
        return LineController(self.store, self.tools, self.clock, recipes=load_valid_recipe,
                              progress=watch.progress() if watch else None,
                              wait_for_dispositions=wait)


@contextlib.asynccontextmanager
async def rig(db_url: str, *, faults: dict[str, FaultPlan] | None = None,
              speed: float = SPEED, timeouts: dict[str, float] | None = None,
              oven_counts_exit: bool = True, platers: int = 0) -> AsyncIterator[Rig]:
    """``timeouts``: reply timeouts (wall s) for some tools, instead of the line's default;
    ``oven_counts_exit``: how the simulated oven counts WAFERS_ON_BELT (sim/oven.py);
    ``platers``: barrier platers on the line (barrier recipes)."""
    clock = ScaledClock(speed)
    layout = {"printer": 1, "placer": 1, "oven": 1, "cleaner": 1, "plater": platers}
    async with SimulatedLine(clock=clock, seed=SEED, faults=faults or {}, layout=layout,
                             oven_counts_exit=oven_counts_exit) as line:
        text = line.config_text()
        for tool, timeout_s in (timeouts or {}).items():
            text = text.replace(f"[tools.{tool}]\n", f"[tools.{tool}]\ntimeout_s = {timeout_s}\n")
        config = parse_line_config(text, source="simulated line")
        line.models["printer-1"].align_fail_rate = 0.0  # see the module docstring
        async with open_line(config, clock) as tools:
            store = Store(db_url)  # SQLite, then PostgreSQL (tests/databases.py)
            try:
                yield Rig(line, tools, clock, store)
            finally:
                store.close()


async def run_lots(controller: LineController, lots: list[str]) -> list[LotOutcome]:
    return await asyncio.wait_for(controller.run(lots), WAIT_S)


async def finish(task: asyncio.Task[list[LotOutcome]]) -> list[LotOutcome]:
    return await asyncio.wait_for(task, WAIT_S)


def is_(wafer: str, trigger: str, step: int | None = None) -> Callable[[WaferEvent], bool]:
    return lambda e: e.wafer_id == wafer and e.trigger == trigger and (
        step is None or e.step == step)


async def assert_line_empty(r: Rig) -> None:
    """No wafer inside any tool: the models, and what the tools say over their protocols.

    A wafer the printer was told to hand out may still be on its way out (UNLOADING
    10 tool s, after a wipe 15 more): wait for that, and for nothing else (a wafer left
    in DONE or mid-print never reaches IDLE and the wait fails). The wait is bounded by
    the test's wall bound, not by tool seconds: at 2000x 60 tool s are 30 ms of a busy
    machine's time.
    """
    await r.tools["printer-1"].wait_for(PrinterState.IDLE, timeout_s=WAIT_S * r.clock.scale)
    now = r.clock.now()
    printer = r.model("printer-1")
    assert printer.wafer_id is None and printer.state_at(now) == "IDLE", printer.state_at(now)
    assert r.model("oven-1").wafer_positions(now) == []
    printer_status = await r.tools["printer-1"].status()
    assert not printer_status.wafer_id
    oven_status = await r.tools["oven-1"].status()
    assert oven_status.wafers_on_belt == 0 and not oven_status.wafer_at_exit
    cleaner_status = await r.tools["cleaner-1"].status()
    assert not cleaner_status.wafer_present, cleaner_status


def assert_event_chain(r: Rig, wafer: str, *, first: str = "queued") -> None:
    """The stored events follow each other: each starts where the last one ended."""
    events = r.store.events(wafer)
    assert events and events[0].from_state == first
    for before, after in zip(events, events[1:], strict=False):
        assert after.id > before.id
        assert after.from_state == before.to_state, (before, after)
        if before.tool_time is not None and after.tool_time is not None:
            assert after.tool_time >= before.tool_time
    assert r.store.get_wafer(wafer).state == events[-1].to_state


# --- a whole lot ------------------------------------------------------------------------------


async def test_a_full_lot_leaves_a_complete_record(db_url: str) -> None:
    async with rig(db_url) as r:
        wafers = r.new_lot("FULL1", 3)
        recipe = load_valid_recipe(RECIPE)
        start = r.clock.now()
        (outcome,) = await run_lots(r.controller(), ["FULL1"])
        makespan = r.clock.now() - start

        assert outcome.state == "complete"
        assert outcome.wafers == {w: "complete" for w in wafers}
        lot = r.store.get_lot("FULL1")
        assert lot.state == "complete" and lot.started_at and lot.ended_at
        # Correct at this speed: no alarm anywhere (no 530 at the oven exit, no 210 draws).
        assert r.store.alarms() == []
        # No schedule beats the lower bound; a clock or a model running wrong could.
        bound = lower_bound(recipe, 3, {"printer": 1, "oven": 1, "cleaner": 1},
                            mounted={"printer": ("ST-300-100", "Pb95Sn5")})
        assert makespan >= bound.seconds

        for wafer in wafers:
            info = r.store.get_wafer(wafer)
            assert (info.state, info.outcome) == ("complete", "good")
            steps = r.store.steps(wafer)
            assert [s.step_index for s in steps] == list(range(1, STEPS + 1))
            for s in steps:
                recipe_step = recipe.step(s.step_index)
                assert (s.status, s.kind, s.attempt) == ("done", recipe_step.kind, 1)
                assert s.tool.startswith({"print": "printer", "reflow": "oven",
                                          "clean": "cleaner"}[s.kind])
                assert s.parameters and s.windows and s.results
                assert s.tool_time_start is not None and s.tool_time_end is not None
                assert s.tool_time_end > s.tool_time_start
                sent = dict(kind_of(recipe_step).parameters(recipe_step))
                assert s.parameters == json.loads(json.dumps(sent))
                if isinstance(recipe_step, ReflowStep):
                    low, high = recipe_step.peak_c
                    assert low <= s.results["peak_c"] <= high
                    assert s.curve is not None and len(s.curve.samples_c) > 10
                    assert s.curve.liquidus_c == recipe_step.tal_threshold_c
                    assert max(s.curve.samples_c) == pytest.approx(s.results["peak_c"], abs=2.0)
                else:
                    assert s.curve is None
            # Steps follow each other on the tool clock.
            for before, after in zip(steps, steps[1:], strict=False):
                assert after.tool_time_start >= before.tool_time_end
            assert_event_chain(r, wafer)
            events = r.store.events(wafer)
            assert events[-1].to_state == "complete"
            acquired = [e.step_index for e in events if e.trigger == "tool_acquired"]
            assert acquired == list(range(1, STEPS + 1))
            history = r.store.wafer_history(wafer)
            loads = [i for i in history.intents if i.command == "LOAD"]
            assert sorted(i.step_index for i in loads) == [2, 5]  # one per reflow, never more
            assert all(i.outcome == "done" for i in loads)
        assert r.store.open_intents() == []
        # The oven takes the next wafer only once the one ahead has cleared its entrance.
        for index in (2, 5):
            starts = sorted(s.tool_time_start for w in wafers for s in r.store.steps(w)
                            if s.step_index == index)
            spacing = tool_occupancy(recipe.step(index))
            assert all(b - a >= spacing for a, b in zip(starts, starts[1:], strict=False))

        # E10: every tool of the line was seen, and productive at some point.
        history = r.store.tool_state_history()
        for tool in ("printer-1", "oven-1", "cleaner-1"):
            states = {h.e10_state for h in history if h.tool == tool}
            assert "productive" in states and states <= E10_OF_A_RUN, (tool, states)
        # Changeovers: the printer's stencil/paste once, the oven's profile between passes.
        assert r.model("printer-1").changeovers == 1
        assert r.model("printer-1").stencil_id == "ST-300-080"

        # Audit: the lot's life and one line per wafer transition (read from its event,
        # decision 0020), in time order.
        audit = r.store.audit_log(lot_id="FULL1")
        actions = [a.action for a in audit]
        assert actions[0] == "lot.start"
        assert "lot.running" in actions and actions[-1] == "lot.complete"
        transitions = sorted((a.wafer_id, a.id) for a in audit if a.action == "wafer.transition")
        assert transitions == sorted((w, e.id) for w in wafers for e in r.store.events(w))
        assert [a.at for a in audit] == sorted(a.at for a in audit)
        await assert_line_empty(r)


async def test_a_run_that_ended_is_freed_for_the_next(db_url: str) -> None:
    """`bumpline serve` runs lot after lot in one process, one controller each: what a run
    built (its controller, scheduler, wafer runs: cycles among them) is freed once it is
    dropped, not kept for the process's life by the collector freeze of its start."""
    async with rig(db_url) as r:
        r.new_lot("FREE1", 1)
        first = r.controller()
        (outcome,) = await run_lots(first, ["FREE1"])
        assert outcome.state == "complete"
        gone = [weakref.ref(first), weakref.ref(first.scheduler),
                *(weakref.ref(w.run) for w in first.scheduler.wafers.values())]
        del first
        r.new_lot("FREE2", 1)
        (outcome,) = await run_lots(r.controller(), ["FREE2"])  # its start freezes again
        assert outcome.state == "complete"
        gc.collect()
        assert [ref() for ref in gone] == [None] * len(gone)


async def test_each_run_on_a_shared_stream_is_heard_by_its_own_display_only(
        db_url: str) -> None:
    """`bumpline serve` hands every lot's controller one line event stream: a run's display
    hears that run, and stops hearing once it ended (a listener left behind made the N-th
    lot's every line print N times, and every event cost more as a serve went on)."""
    from controller.line.events import LineEventStream

    async with rig(db_url) as r:
        stream = LineEventStream("line", r.clock.now)
        heard: dict[str, list[str]] = {"first": [], "second": []}

        def controller(name: str) -> LineController:
            display = Progress(on_event=lambda e: heard[name].append(e.wafer_id))
            return LineController(r.store, r.tools, r.clock, recipes=load_valid_recipe,
                                  progress=display, events=stream)

        r.new_lot("ONE", 1)
        await run_lots(controller("first"), ["ONE"])
        r.new_lot("TWO", 1)
        await run_lots(controller("second"), ["TWO"])
        assert set(heard["first"]) == {"ONE-01"} and set(heard["second"]) == {"TWO-01"}
        assert stream.wants(EventKind.WAFER_TRANSITION) is False  # nobody listens now


async def test_a_hold_request_overtaken_by_a_resume_holds_nothing(db_url: str) -> None:
    """A hold asked while a controller ran the lot, the controller gone before it handled
    it, the lot then resumed from the CLI (carried out at once): the next run found the
    old hold pending and held the lot for good (its wafers "waiting for people")."""
    async with rig(db_url) as r:
        r.new_lot("STALE", 1)
        r.store.hold_lot("STALE", user="olga", reason="paste check")  # left pending
        r.store.resume_lot("STALE", user="ann")
        for request in r.store.pending_requests("STALE"):
            if request.action == "resume_lot":  # as the CLI answers what it carried out
                r.store.mark_request_handled(request.id, note="carried out directly")
        assert [q.action for q in r.store.pending_requests("STALE")] == ["hold_lot"]
        controller = r.controller()
        told = []  # the factory host would take one for LOTHELD of a running lot
        controller.events.listen(told.append, [EventKind.OPERATOR_REQUEST])
        (outcome,) = await run_lots(controller, ["STALE"])
        assert outcome.state == "complete", outcome
        assert told == []
        (hold,) = [q for q in r.store.requests(lot_id="STALE") if q.action == "hold_lot"]
        assert hold.handled_note == "not applied: the lot was resumed since"


async def test_a_hold_landing_as_the_lot_completes_stands_and_ends_the_run_cleanly(
        db_url: str) -> None:
    """An operator's hold written between the controller's look (every wafer finished) and
    its "complete": the lot row's lock orders them and the completion is refused. That
    refusal ended the whole run with an error; the hold stands."""
    async with rig(db_url) as r:
        r.new_lot("LAST", 1)
        real = r.store.set_lot_state

        def completing(lot_id: str, state: str, **kwargs: object) -> object:
            if str(state) == "complete":
                r.store.hold_lot(lot_id, user="olga", reason="just then")
            return real(lot_id, state, **kwargs)  # type: ignore[arg-type]

        r.store.set_lot_state = completing  # type: ignore[method-assign]
        (outcome,) = await run_lots(r.controller(), ["LAST"])
        assert outcome.state == "held" and outcome.wafers == {"LAST-01": "complete"}


async def test_the_more_urgent_lot_starts_first(db_url: str) -> None:
    async with rig(db_url) as r:
        normal = r.new_lot("NORMAL", 2, priority=5)
        hot = r.new_lot("HOT", 2, priority=1)  # queued after, but more urgent
        outcomes = await run_lots(r.controller(), ["NORMAL", "HOT"])

        assert {o.lot_id: o.state for o in outcomes} == {"NORMAL": "complete", "HOT": "complete"}
        for wafer in normal + hot:
            assert r.store.get_wafer(wafer).state == "complete"
            assert [s.status for s in r.store.steps(wafer)] == ["done"] * STEPS

        def first_print(wafer: str) -> float:
            (step,) = [s for s in r.store.steps(wafer) if s.step_index == 1]
            assert step.tool_time_start is not None
            return step.tool_time_start

        # The printer takes both hot wafers before either of the other lot's.
        assert max(first_print(w) for w in hot) < min(first_print(w) for w in normal)
        order = sorted(normal + hot, key=first_print)
        assert order == hot + normal
        await assert_line_empty(r)


# --- people: hold, resume, abort --------------------------------------------------------------


async def test_hold_and_resume_a_lot_while_it_runs(db_url: str) -> None:
    async with rig(db_url) as r:
        wafers = r.new_lot("HOLD1", 3)
        watch = Watch()
        first_printed = watch.when(is_(wafers[0], "judged_ok", step=1))
        task = asyncio.create_task(r.controller(watch, wait=True).run(["HOLD1"]))
        try:
            await asyncio.wait_for(first_printed, WAIT_S)
            r.store.hold_lot("HOLD1", user="operator", reason="check the paste")
            blocked = await watch.waiting_for_people()

            # Held: the steps in progress finished, nothing runs, the lot is far from done.
            assert r.store.get_lot("HOLD1").state == "held"
            (hold,) = r.store.requests(lot_id="HOLD1")
            assert hold.action == "hold_lot" and hold.handled_at is not None
            states = {w: r.store.get_wafer(w).state for w in wafers}
            assert sorted(blocked) == sorted(w for w, s in states.items() if s != "complete")
            assert len(blocked) >= 2, states
            assert not any(s.endswith(("_running", "_judging")) for s in states.values())
            assert all(s.status != "running" for w in wafers for s in r.store.steps(w))
            await assert_line_empty(r)
            # Only a step already dispatched when the hold was handled may start after it:
            # at most one per tool.
            late = [e for w in wafers for e in r.store.events(w)
                    if e.trigger == "tool_acquired" and e.at > hold.handled_at]
            assert len(late) <= len(list(r.tools)), late

            r.store.resume_lot("HOLD1", user="operator", reason="paste fine")
            (outcome,) = await finish(task)
        finally:
            task.cancel()
        assert outcome.state == "complete"
        assert set(outcome.wafers.values()) == {"complete"}
        assert r.store.pending_requests() == []
        for wafer in wafers:
            assert [s.status for s in r.store.steps(wafer)] == ["done"] * STEPS
            assert_event_chain(r, wafer)


async def test_hold_and_continue_one_wafer_while_the_lot_runs(db_url: str) -> None:
    async with rig(db_url) as r:
        wafers = r.new_lot("HOLD2", 3)
        held = wafers[1]
        watch = Watch()
        printing = watch.when(is_(held, "tool_acquired", step=1))
        task = asyncio.create_task(r.controller(watch, wait=True).run(["HOLD2"]))
        try:
            await asyncio.wait_for(printing, WAIT_S)
            r.store.hold_wafer(held, user="operator", reason="look at the print")
            blocked = await watch.waiting_for_people()

            # The held wafer finished the print it was in, then stopped; the others went on.
            assert blocked == [held]
            assert r.store.get_wafer(held).state == "held"
            hold_event = r.store.events(held)[-1]
            assert hold_event.trigger == "hold" and "look at the print" in hold_event.why
            assert hold_event.from_state.endswith("_waiting")
            assert r.store.steps(held)[0].status == "done"
            for wafer in (wafers[0], wafers[2]):
                assert r.store.get_wafer(wafer).state == "complete"
            await assert_line_empty(r)

            r.store.disposition_wafer(held, "continue", user="engineer", reason="print is fine")
            (outcome,) = await finish(task)
        finally:
            task.cancel()
        assert outcome.state == "complete"
        assert outcome.wafers == {w: "complete" for w in wafers}
        assert [s.status for s in r.store.steps(held)] == ["done"] * STEPS
        triggers = [e.trigger for e in r.store.events(held)]
        assert triggers.count("hold") == 1 and triggers.count("resume") == 1
        assert_event_chain(r, held)


async def abort_when(r: Rig, lot: str, wafers: int,
                     when: Callable[[list[str]], Callable[[WaferEvent], bool]]) -> LotOutcome:
    """Run a lot and abort it through the store at the first event matching ``when``."""
    ids = r.new_lot(lot, wafers)
    watch = Watch()
    moment = watch.when(when(ids))
    controller = r.controller(watch)
    task = asyncio.create_task(controller.run([lot]))
    try:
        await asyncio.wait_for(moment, WAIT_S)
        r.store.abort_lot(lot, user="operator", reason="wrong paste lot")
        (outcome,) = await asyncio.wait_for(task, ABORT_WAIT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return outcome


def assert_aborted_cleanly(r: Rig, outcome: LotOutcome) -> None:
    assert outcome.state == "aborted" and r.store.get_lot(outcome.lot_id).state == "aborted"
    assert set(outcome.wafers.values()) <= {"aborted", "complete"}
    assert "aborted" in outcome.wafers.values()
    for wafer, state in outcome.wafers.items():
        info = r.store.get_wafer(wafer)
        assert (info.state, info.outcome) == (state, "good" if state == "complete" else "aborted")
        # No step left open: each ended done, or aborted with its wafer.
        assert all(s.status in ("done", "aborted") for s in r.store.steps(wafer))
        assert_event_chain(r, wafer)
    assert r.store.open_intents() == []


@pytest.mark.timing
async def test_abort_a_lot_while_a_wafer_prints(db_url: str) -> None:
    # The controller looks at requests every REQUEST_LOOK_S and its loop wakes at least every
    # IDLE_WAKE_S (wall seconds). Slow the line down until the first print (load + print +
    # inspection: 60 tool s) lasts four times that, so the abort surely finds wafer 1 inside
    # the printer.
    speed = PRINT_TOOL_S / (4 * (REQUEST_LOOK_S + IDLE_WAKE_S))
    async with rig(db_url, speed=speed) as r:
        outcome = await abort_when(r, "ABORT1", 2,
                                   lambda ids: is_(ids[0], "tool_acquired", step=1))
        assert_aborted_cleanly(r, outcome)
        assert outcome.wafers == {"ABORT1-01": "aborted", "ABORT1-02": "aborted"}
        (printing,) = r.store.steps("ABORT1-01")
        assert printing.status == "aborted" and printing.step_index == 1
        assert r.store.steps("ABORT1-02") == []  # never started
        # The printer got ABT mid-print and handed the wafer out.
        await assert_line_empty(r)
        printer = r.model("printer-1")
        assert (printer.wafers_loaded, printer.wafers_unloaded) == (1, 1)


async def test_abort_a_lot_spread_over_the_line(db_url: str) -> None:
    # When wafer 3 has been reflowed the others are somewhere between the oven, the
    # cleaner and the second print: wherever each one is, it ends aborted or complete.
    async with rig(db_url) as r:
        outcome = await abort_when(r, "ABORT2", 3,
                                   lambda ids: is_(ids[2], "judged_ok", step=2))
        assert_aborted_cleanly(r, outcome)
        await assert_line_empty(r)
        printer = r.model("printer-1")
        assert printer.wafers_unloaded == printer.wafers_loaded


# --- alarms and interlocks --------------------------------------------------------------------


def squeegee_alarm_on_second_wafer() -> dict[str, FaultPlan]:
    # Alarm 300 fires halfway through PRINTING of the second wafer the printer loads.
    return {"printer-1": FaultPlan(alarms=[ScheduledAlarm(300, at_wafer=2)])}


def assert_only_second_wafer_hit(r: Rig, wafers: list[str]) -> None:
    hit = wafers[1]
    assert r.store.get_lot("ALARM1").state == "running"  # one wafer waits for an engineer
    states = {w: r.store.get_wafer(w).state for w in wafers}
    # Why another wafer ended where it did, for a failure on a loaded machine.
    why = {w: r.store.events(w)[-1].why for w in wafers if w != hit and states[w] != "complete"}
    assert states == {w: ("awaiting_disposition" if w == hit else "complete")
                      for w in wafers}, why
    failed = r.store.events(hit)[-1]
    assert (failed.trigger, failed.to_state, failed.step_index) == (
        "step_failed", "awaiting_disposition", 1)
    assert failed.measurements and failed.measurements.get("alarm_code") == 300
    assert "300" in failed.why
    (alarm,) = r.store.alarms(tool="printer-1")
    assert (alarm.code, alarm.wafer_id, alarm.lot_id) == (300, hit, "ALARM1")
    assert not alarm.active  # the cause was gone: the controller cleared it and went on
    (step,) = r.store.steps(hit)
    assert step.status == "failed" and step.results and step.results["alarm_code"] == 300
    assert r.model("printer-1").alarm == 0


@pytest.mark.faults
async def test_an_alarm_holds_one_wafer_and_retry_completes_it(db_url: str) -> None:
    async with rig(db_url, faults=squeegee_alarm_on_second_wafer()) as r:
        wafers = r.new_lot("ALARM1", 3)
        watch = Watch()
        task = asyncio.create_task(r.controller(watch, wait=True).run(["ALARM1"]))
        try:
            blocked = await watch.waiting_for_people()
            assert blocked == [wafers[1]]
            assert_only_second_wafer_hit(r, wafers)
            await assert_line_empty(r)  # the failed wafer was taken out of the printer

            r.store.disposition_wafer(wafers[1], "retry", user="engineer",
                                      reason="squeegee pressure restored")
            (outcome,) = await finish(task)
        finally:
            task.cancel()
        assert outcome.state == "complete"
        assert outcome.wafers == {w: "complete" for w in wafers}
        steps = r.store.steps(wafers[1])
        assert [(s.step_index, s.attempt, s.status) for s in steps] == [
            (1, 1, "failed"), (1, 2, "done"), (2, 1, "done"), (3, 1, "done"), (4, 1, "done"),
            (5, 1, "done"), (6, 1, "done")]
        assert_event_chain(r, wafers[1])


@pytest.mark.faults
async def test_a_request_for_a_lot_it_does_not_run_leaves_a_waiting_controller_idle(
        db_url: str) -> None:
    """A controller waiting for people looks for their requests once a second. A request
    for a lot it does not run (here a queued lot held; on a shared database another
    line's) is not one it can act on: it must not look again at once, forever. That spin
    never yielded, so the event loop - the operator screen, the GEM link, the flush
    timer - stood still until someone else handled the request."""
    async with rig(db_url, faults=squeegee_alarm_on_second_wafer()) as r:
        wafers = r.new_lot("WAIT1", 3)
        r.new_lot("LATER", 2)
        watch = Watch()
        controller = r.controller(watch, wait=True)
        task = asyncio.create_task(controller.run(["WAIT1"]))
        try:
            assert await watch.waiting_for_people() == [wafers[1]]
            r.store.hold_lot("LATER", user="operator", reason="not before the tooling check")
            ticks = 0  # turns of the event loop for other tasks

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            ticker = asyncio.create_task(tick())
            seen: list[int] = []  # ticks at each look
            enough = asyncio.Event()
            look = r.store.look

            def counted() -> Any:
                seen.append(ticks)
                if len(seen) == 4 or len(seen) > 20:  # 20: a spin, ended here; asserted below
                    enough.set()
                    controller.stop()
                return look()

            r.store.look = counted  # type: ignore[method-assign]
            await asyncio.wait_for(enough.wait(), WAIT_S)
            (outcome,) = await finish(task)
            ticker.cancel()
        finally:
            task.cancel()
        assert len(seen) < 20, f"{len(seen)} looks in a row"
        # Other tasks ran between every two of the waiting controller's looks (the stopping
        # run's last pass may look once more): it waited, it did not spin.
        assert all(b > a for a, b in zip(seen[:3], seen[1:4], strict=True)), seen
        assert outcome.wafers[wafers[1]] == "awaiting_disposition"
        (held,) = r.store.requests(lot_id="LATER")
        assert held.handled_at is None  # left to the controller that runs LATER


@pytest.mark.faults
async def test_an_alarm_then_retry_in_a_second_run(db_url: str) -> None:
    """The engineer's retry arrives after the controller ended; the next run picks it up."""
    async with rig(db_url, faults=squeegee_alarm_on_second_wafer()) as r:
        wafers = r.new_lot("ALARM1", 3)
        (outcome,) = await run_lots(r.controller(), ["ALARM1"])
        assert outcome.state == "running"
        assert_only_second_wafer_hit(r, wafers)

        r.store.disposition_wafer(wafers[1], "retry", user="engineer",
                                  reason="squeegee pressure restored")
        (outcome,) = await run_lots(r.controller(), ["ALARM1"])
        assert outcome.state == "complete"
        assert outcome.wafers == {w: "complete" for w in wafers}
        assert [s.status for s in r.store.steps(wafers[1])] == ["failed"] + ["done"] * STEPS
        assert r.store.pending_requests() == []
        await assert_line_empty(r)


@pytest.mark.faults
async def test_an_alarm_is_recorded_with_the_step_it_hit(db_url: str) -> None:
    async with rig(db_url, faults=squeegee_alarm_on_second_wafer()) as r:
        wafers = r.new_lot("ALARM1", 3)
        await run_lots(r.controller(), ["ALARM1"])
        (alarm,) = r.store.alarms(tool="printer-1")
        (step,) = r.store.steps(wafers[1])
        assert alarm.step_id == step.id  # docs/database.md: the alarm names the step it hit


@dataclass
class DoorOpenLot:
    wafer: str
    watch: Watch
    controller: LineController
    task: asyncio.Task[list[LotOutcome]]

    async def stop(self) -> list[LotOutcome]:
        """Ctrl-C: the controller stops waiting for people and returns."""
        self.controller.stop()
        return await finish(self.task)


async def door_open_lot(r: Rig, lot: str) -> DoorOpenLot:
    """A one-wafer lot started with the printer's door open: the wafer is held."""
    (wafer,) = r.new_lot(lot, 1)
    r.model("printer-1").open_door(r.clock.now())
    watch = Watch()
    controller = r.controller(watch, wait=True)
    task = asyncio.create_task(controller.run([lot]))
    try:
        assert await watch.waiting_for_people() == [wafer]
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    return DoorOpenLot(wafer, watch, controller, task)


async def test_an_open_door_keeps_the_wafer_out_with_the_reason(db_url: str) -> None:
    async with rig(db_url) as r:
        door = await door_open_lot(r, "DOOR1")
        wafer = door.wafer
        (outcome,) = await door.stop()
        assert outcome.wafers == {wafer: "held"}

        # Nothing reached the printer and no step was started.
        printer = r.model("printer-1")
        assert (printer.wafers_loaded, printer.prints_executed) == (0, 0)
        assert r.store.steps(wafer) == []
        info = r.store.get_wafer(wafer)
        assert info.state == "held" and info.outcome is None
        held = r.store.events(wafer)[-1]
        assert held.trigger == "hold"
        assert "interlock" in held.why and "DOOR OPEN" in held.why, held.why
        assert [e.trigger for e in door.watch.events] == ["start", "hold"]
        assert_event_chain(r, wafer)


async def test_an_open_door_shows_as_an_alarm_and_the_tool_down(db_url: str) -> None:
    """The refused step is visible where operators look: alarms and the printer's E10 state
    (docs/operators.md shows printer-1 'unscheduled down ... alarm 400 DOOR OPEN')."""
    async with rig(db_url) as r:
        door = await door_open_lot(r, "DOOR2")
        await door.stop()
        latest = {s.tool: s.e10_state for s in r.store.tool_states_latest()}
        assert latest.get("printer-1") == "unscheduled down", latest
        assert [a.code for a in r.store.alarms(tool="printer-1", active_only=True)] == [400]


async def test_an_open_door_closed_again_lets_the_wafer_run(db_url: str) -> None:
    """Once a person closes the door and continues the wafer, the controller clears the
    tool's alarm (CLR is accepted now that the cause is gone) and the wafer runs."""
    async with rig(db_url) as r:
        door = await door_open_lot(r, "DOOR3")
        wafer, watch, task = door.wafer, door.watch, door.task
        try:
            r.model("printer-1").close_door(r.clock.now())
            r.store.disposition_wafer(wafer, "continue", user="operator", reason="door closed")
            done = asyncio.ensure_future(finish(task))
            again = asyncio.ensure_future(watch.waiting_for_people())
            finished, _ = await asyncio.wait({done, again}, return_when=asyncio.FIRST_COMPLETED)
            if again in finished:
                why = r.store.events(wafer)[-1].why
                pytest.fail(f"wafer {wafer} held again after the door was closed: {why}")
            (outcome,) = done.result()
        finally:
            task.cancel()
            for f in (done, again):
                f.cancel()
            await asyncio.gather(task, done, again, return_exceptions=True)
        assert outcome.wafers == {wafer: "complete"}

"""The wafer journal on the store: committed before it is told, step records with their
transitions, intents answered, interlocks as a line alarm."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.line.events import EventKind, LineEventStream
from controller.line.journal import FLUSH_AFTER_S, StoreJournal, loop_timer
from controller.store import Store, StoreError
from drivers.errors import WrongState
from sequences.kinds import kind_of
from sequences.recipes.recipe import find_recipe
from sequences.wafer.journal import StepClosed, StepOpened, guarded
from sequences.wafer.machine import WaferMachine

RECIPE = find_recipe("rebump-hipb-snpb")


@pytest.fixture
def rig(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'line.db'}")
    store.create_lot("J1", recipe_name=RECIPE.name, recipe_version=RECIPE.version,
                     recipe_hash=RECIPE.hash, slots=[1, 2], user="t")
    stream = LineEventStream("line-1", lambda: 0.0)
    journal = StoreJournal(store, stream, lambda wafer: "J1")
    seen: list[tuple[str, int]] = []

    def committed_first(event) -> None:  # what the store holds when a listener hears it
        if event.kind is EventKind.WAFER_TRANSITION:
            seen.append((event.data["to_state"], len(store.events(event.wafer_id))))

    stream.listen(committed_first)
    yield store, stream, journal, seen
    store.close()


class ManualTimers:
    """The journal's flush timer, fired by the test (an event loop's ``call_later``)."""

    class Armed:
        def __init__(self, delay: float, callback) -> None:
            self.delay, self.callback, self.cancelled = delay, callback, False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self) -> None:
        self.armed: list[ManualTimers.Armed] = []

    def __call__(self, delay: float, callback) -> Armed:
        armed = self.Armed(delay, callback)
        self.armed.append(armed)
        return armed

    def live(self) -> list[Armed]:
        return [a for a in self.armed if not a.cancelled]

    def fire(self) -> None:
        (due,) = self.live()
        self.armed.remove(due)
        due.callback()


def machine(journal: StoreJournal, wafer: str = "J1-01") -> WaferMachine:
    return WaferMachine(wafer, [s.kind for s in RECIPE.steps], on_event=journal.record)


async def test_a_transition_is_committed_before_anyone_hears_of_it(rig) -> None:
    store, stream, journal, seen = rig
    m = machine(journal)
    m.fire("start")
    step = RECIPE.step(1)
    kind = kind_of(step)
    m.fire("tool_acquired", tool="printer-1",
           opens=StepOpened("print", kind.parameters(step), kind.windows(step)))
    assert seen == [("step1_waiting", 1), ("step1_running", 2)]
    (record,) = store.steps("J1-01")
    assert record.status == "running" and record.tool == "printer-1"


def test_a_step_start_moves_the_wafer_with_its_transitions_own_update(rig) -> None:
    """The transition that opens a step sets the wafer's location: its transaction updates
    the wafer's row once (each statement there costs the line's tool commands time)."""
    store, _, journal, _ = rig
    m = machine(journal)
    m.fire("start")
    raw = store._db._open_writer().connection.dbapi_connection  # the writer, as SQLite sees it
    sent: list[str] = []
    raw.set_trace_callback(sent.append)
    step = RECIPE.step(1)
    m.fire("tool_acquired", tool="printer-1",
           opens=StepOpened("print", kind_of(step).parameters(step), kind_of(step).windows(step)))
    raw.set_trace_callback(None)
    assert [s.split()[0] for s in sent if s.split()[0] in ("UPDATE", "INSERT")] == [
        "UPDATE", "INSERT", "INSERT"]  # the wafer; its event; its step record
    assert store.get_wafer("J1-01").location == "printer-1"
    (record,) = store.steps("J1-01")
    assert (record.tool, record.status) == ("printer-1", "running")


async def test_guarded_commands_leave_intents_open_only_when_nobody_knows(rig) -> None:
    store, _, journal, _ = rig
    m = machine(journal)
    m.fire("start")
    step = RECIPE.step(1)
    m.fire("tool_acquired", tool="printer-1",
           opens=StepOpened("print", kind_of(step).parameters(step), kind_of(step).windows(step)))
    async with guarded(journal, "J1-01", "PRT", "printer-1"):
        pass  # acknowledged
    with pytest.raises(WrongState):
        async with guarded(journal, "J1-01", "PRT", "printer-1"):
            raise WrongState("printer-1", "PRT", 4, "WRONG STATE")  # refused: nothing changed
    with pytest.raises(TimeoutError):
        async with guarded(journal, "J1-01", "PRT", "printer-1"):
            raise TimeoutError  # no reply: the tool may have it
    outcomes = [i.outcome for i in store.step_intents(journal.step_record("J1-01"))]
    assert outcomes == ["done", "failed", None]
    assert len(store.open_intents()) == 1
    m.fire("step_done")
    m.fire("judged_ok", why="within every window",
           closes=StepClosed("done", {"vol_mean_pct": 100.0}))
    assert store.open_intents() == []  # the step got its result: the command happened
    assert store.steps("J1-01")[0].status == "done"


async def test_an_interlock_is_a_line_alarm_until_no_wafer_waits_at_one(rig) -> None:
    _, stream, journal, _ = rig
    alarms = []
    stream.listen(lambda e: alarms.append((e.kind.value, e.data["code"], e.data.get("wafers")))
                  if e.kind in (EventKind.ALARM_SET, EventKind.ALARM_CLEARED) else None)
    one, two = machine(journal, "J1-01"), machine(journal, "J1-02")
    for m in (one, two):
        m.fire("start")
        m.fire("hold", why="interlock: door open", tool="printer-1")
    one.fire("resume")
    assert alarms == [("alarm_set", "interlock", ["J1-01"]),
                      ("alarm_set", "interlock", ["J1-01", "J1-02"])]
    two.fire("resume")
    assert alarms[-1] == ("alarm_cleared", "interlock", None)


async def test_a_deferrable_transition_rides_on_the_next_transaction_whoever_it_is(rig) -> None:
    """decision 0017: committed with the journal's next transaction (another wafer's here),
    heard only then, and in order."""
    store, _, journal, seen = rig
    first, second = machine(journal, "J1-01"), machine(journal, "J1-02")
    first.fire("start", deferrable=True)
    assert store.wafers("J1")[0].state == "queued" and seen == []  # nothing committed yet
    assert journal.pending == 1
    second.fire("start")  # a transaction of its own: the first wafer's start rides on it
    assert [w.state for w in store.wafers("J1")] == ["step1_waiting", "step1_waiting"]
    assert seen == [("step1_waiting", 1), ("step1_waiting", 1)] and journal.pending == 0


def test_a_deferred_transition_commits_within_the_bound_when_nothing_else_does(rig) -> None:
    """decision 0021: the first item queued arms a flush FLUSH_AFTER_S (wall) later; the
    store is never further behind than that, although no other transaction comes."""
    store, stream, _, seen = rig
    timers = ManualTimers()
    journal = StoreJournal(store, stream, lambda wafer: "J1", arm=timers)
    first, second = machine(journal, "J1-01"), machine(journal, "J1-02")
    first.fire("start", deferrable=True)
    second.fire("start", deferrable=True)  # one timer for everything queued
    assert [a.delay for a in timers.live()] == [FLUSH_AFTER_S]
    assert store.events("J1-01") == [] and seen == []
    timers.fire()
    assert [w.state for w in store.wafers("J1")] == ["step1_waiting", "step1_waiting"]
    assert [state for state, _ in seen] == ["step1_waiting", "step1_waiting"]
    assert journal.pending == 0 and timers.live() == []


def test_no_flush_is_left_armed_once_a_transaction_carried_what_was_queued(rig) -> None:
    """A step's own commit carries the deferred start: the timer is cancelled (no extra
    commit); what is queued after that commit arms a new one."""
    store, stream, _, _ = rig
    timers = ManualTimers()
    journal = StoreJournal(store, stream, lambda wafer: "J1", arm=timers)
    m = machine(journal)
    m.fire("start", deferrable=True)
    (armed,) = timers.live()
    step = RECIPE.step(1)
    m.fire("tool_acquired", tool="printer-1",
           opens=StepOpened("print", kind_of(step).parameters(step), kind_of(step).windows(step)))
    assert armed.cancelled and timers.live() == [] and journal.pending == 0
    assert [e.trigger for e in store.events("J1-01")] == ["start", "tool_acquired"]
    intent = journal.intend("J1-01", "PRT", "printer-1")
    journal.resolve(intent, "done")  # an answer rides on the next transaction too
    (again,) = timers.live()
    assert again is not armed
    timers.fire()
    assert [i.outcome for i in store.step_intents(journal.step_record("J1-01"))] == ["done"]


def test_without_an_event_loop_a_deferred_write_is_committed_at_once(rig) -> None:
    """Nothing could fire a flush timer outside a running loop (a call between runs):
    the controller's journal commits what it would have kept waiting, not lose it."""
    store, stream, _, seen = rig
    journal = StoreJournal(store, stream, lambda wafer: "J1", arm=loop_timer)
    machine(journal).fire("start", deferrable=True)
    assert journal.pending == 0 and store.wafers("J1")[0].state == "step1_waiting"
    assert seen == [("step1_waiting", 1)]


async def test_a_deferred_step_end_is_written_whole_on_flush(rig) -> None:
    store, _, journal, seen = rig
    m = machine(journal)
    m.fire("start", deferrable=True)
    step = RECIPE.step(1)
    m.fire("tool_acquired", tool="printer-1",
           opens=StepOpened("print", kind_of(step).parameters(step), kind_of(step).windows(step)))
    async with guarded(journal, "J1-01", "PRT", "printer-1"):
        pass
    m.fire("step_done", measurements={"vol_mean_pct": 100.0})
    m.fire("judged_ok", why="within every window", measurements={"vol_mean_pct": 100.0},
           closes=StepClosed("done", {"vol_mean_pct": 100.0}), deferrable=True)
    assert store.steps("J1-01")[0].status == "running"  # not yet: rides on the next one
    journal.flush()  # the controller's look for requests, or the run's end
    (record,) = store.steps("J1-01")
    assert record.status == "done" and record.results == {"vol_mean_pct": 100.0}
    assert store.open_intents() == [] and store.wafers("J1")[0].state == "step2_waiting"
    assert [e.trigger for e in store.events("J1-01")] == [
        "start", "tool_acquired", "step_done", "judged_ok"]
    assert [state for state, _ in seen][-1] == "step2_waiting"


async def test_a_deferred_transition_that_cannot_be_stored_is_refused_to_its_own_wafer(
        rig) -> None:
    """Checked when it is recorded: a NaN is this wafer's error, and never blocks the next
    transaction of another wafer."""
    store, _, journal, _ = rig
    first, second = machine(journal, "J1-01"), machine(journal, "J1-02")
    first.fire("start")
    with pytest.raises(StoreError, match="measurements cannot be stored"):
        first.fire("hold", why="x", measurements={"peak_c": float("nan")}, deferrable=True)
    assert journal.pending == 0
    second.fire("start")
    assert [w.state for w in store.wafers("J1")] == ["step1_waiting", "step1_waiting"]


async def test_a_later_write_commits_with_the_next_transaction_then_is_told(rig) -> None:
    store, stream, journal, _ = rig
    told: list[str] = []
    journal.later(lambda: store.record_tool_state("printer-1", "productive", tool_time=1.0),
                  lambda: told.append("e10"))
    assert store.tool_states_latest() == [] and told == []
    machine(journal).fire("start")
    assert [s.e10_state for s in store.tool_states_latest()] == ["productive"]
    assert told == ["e10"]


async def test_a_deferred_write_the_store_refuses_is_dropped_not_a_block_on_the_line(
        rig) -> None:
    store, _, journal, _ = rig
    told: list[str] = []

    def refused() -> None:
        store.end_step(10**6)  # no such step: the store refuses it

    journal.later(refused, lambda: told.append("never"))
    machine(journal).fire("start")  # the line's next transaction commits all the same
    assert store.wafers("J1")[0].state == "step1_waiting"
    assert told == [] and journal.pending == 0

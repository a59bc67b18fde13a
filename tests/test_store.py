"""The controller's store: round trips and rules, aggregate by aggregate.

Opening, reopening and reading while the controller writes: test_store_database.py."""

from __future__ import annotations

import functools
import inspect
from datetime import UTC, datetime, timedelta

import pytest
from test_domain import BAD_LOT_IDS

from controller.line.e10 import E10State
from controller.persistence import lots
from controller.store import (
    Disposition,
    LotState,
    Store,
    StoreError,
)
from sequences.wafer.machine import WaferMachine


class Ticker:
    """Wall time that moves one second per reading: every record gets its own instant."""

    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture
def store(db_url: str):
    """A store on SQLite, then on PostgreSQL (``db_url`` is parametrised)."""
    s = Store(db_url, now=Ticker())
    yield s
    s.close()


def make_lot(store: Store, lot_id: str = "LOT42", slots=(1, 2, 3), priority: int = 5):
    return store.create_lot(
        lot_id,
        recipe_name="rebump-hipb-snpb",
        recipe_version=3,
        recipe_hash="ab" * 32,
        slots=list(slots),
        priority=priority,
        user="ann",
    )


# --- the facade ---------------------------------------------------------------------------------


def test_a_pass_through_method_is_the_aggregates_function_on_the_stores_database(
    sqlite_url: str,
) -> None:
    with Store(sqlite_url) as one, Store(sqlite_url) as other:
        method = one.claim_lot
        assert method.__func__ is lots.claim_lot  # type: ignore[attr-defined]
        assert one.claim_lot is method  # bound once, then found on the store itself
        assert other.claim_lot is not method  # each store its own database
        assert inspect.signature(method) == inspect.signature(
            functools.partial(lots.claim_lot, None))
        assert Store.claim_lot.__doc__ == lots.claim_lot.__doc__
        assert Store.list_lots.__doc__ == "Lots, newest first (only ``line_id``'s when given)."
        make_lot(one)
        assert other.get_lot("LOT42").wafer_count == 3


# --- lots ---------------------------------------------------------------------------------------


def test_create_lot_makes_one_wafer_per_slot(store: Store) -> None:
    lot = make_lot(store, slots=[1, 5, 10])
    assert (lot.id, lot.state, lot.recipe_version, lot.wafer_count) == ("LOT42", "queued", "3", 3)
    assert lot.created_by == "ann" and lot.created_at.tzinfo is not None
    wafers = store.wafers("LOT42")
    assert [(w.id, w.slot, w.state, w.location, w.outcome) for w in wafers] == [
        ("LOT42-01", 1, "queued", "carrier", None),
        ("LOT42-05", 5, "queued", "carrier", None),
        ("LOT42-10", 10, "queued", "carrier", None),
    ]
    [entry] = store.audit_log(lot_id="LOT42")
    assert (entry.actor, entry.action) == ("ann", "lot.start")
    assert "slots 1,5,10" in entry.detail and "rebump-hipb-snpb v3" in entry.detail


def test_duplicate_lot_id_is_refused_and_changes_nothing(store: Store) -> None:
    make_lot(store)
    with pytest.raises(StoreError, match="lot LOT42 already exists"):
        make_lot(store, slots=[7])
    assert [w.slot for w in store.wafers("LOT42")] == [1, 2, 3]


@pytest.mark.parametrize(("lot_id", "message"), BAD_LOT_IDS)
def test_lot_ids_must_make_tool_safe_wafer_ids(store: Store, lot_id: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        make_lot(store, lot_id=lot_id)
    assert store.list_lots() == []


def test_priority_and_slot_checks_on_create(store: Store) -> None:
    with pytest.raises(StoreError, match="priority must be 1-9"):
        make_lot(store, priority=0)
    with pytest.raises(StoreError, match="slot 2 appears twice"):
        make_lot(store, slots=[2, 2])
    with pytest.raises(StoreError, match="at least one wafer"):
        make_lot(store, slots=[])


def test_next_queued_lot_is_most_urgent_then_oldest(store: Store) -> None:
    make_lot(store, "OLD", priority=5)
    make_lot(store, "HOT", priority=1)
    make_lot(store, "HOT2", priority=1)
    assert store.next_queued_lot().id == "HOT"
    store.set_lot_state("HOT", "running")
    assert store.next_queued_lot().id == "HOT2"
    store.hold_lot("HOT2", user="bob")
    assert store.next_queued_lot().id == "OLD"
    assert [lot.id for lot in store.list_lots(["queued"])] == ["OLD"]
    assert {lot.id for lot in store.list_lots()} == {"OLD", "HOT", "HOT2"}


def test_lot_life_cycle(store: Store) -> None:
    make_lot(store)
    running = store.set_lot_state("LOT42", LotState.RUNNING)
    assert running.started_at is not None and running.ended_at is None
    held = store.hold_lot("LOT42", user="bob", reason="paste check")
    assert held.state == "held"
    assert store.resume_lot("LOT42", user="bob").state == "running"  # back where it was held
    with pytest.raises(StoreError, match="not held: nothing to resume"):
        store.resume_lot("LOT42", user="bob")
    done = store.set_lot_state("LOT42", "complete")
    assert done.ended_at is not None and done.started_at == running.started_at
    with pytest.raises(StoreError, match="lot LOT42 is complete: it cannot become running"):
        store.set_lot_state("LOT42", "running")
    with pytest.raises(StoreError, match="unknown lot state 'paused'"):
        store.set_lot_state("LOT42", "paused")
    with pytest.raises(StoreError, match="no lot NOPE"):
        store.hold_lot("NOPE", user="bob")
    actions = [(a.actor, a.action) for a in store.audit_log(lot_id="LOT42")]
    assert actions == [
        ("ann", "lot.start"),
        ("controller", "lot.running"),
        ("bob", "lot.hold"),
        ("bob", "lot.resume"),
        ("controller", "lot.complete"),
    ]
    assert [r.action for r in store.pending_requests("LOT42")] == ["hold_lot", "resume_lot"]


def test_abort_ends_wafers_still_in_the_carrier_only(store: Store) -> None:
    make_lot(store)
    store.set_lot_state("LOT42", "running")
    store.record_transition("LOT42-01", "queued", "step1_waiting", "start")
    store.hold_wafer("LOT42-03", user="bob", reason="scratch seen")
    lot = store.abort_lot("LOT42", user="bob", reason="wrong stencil")
    assert lot.state == "aborted" and lot.ended_at is not None
    states = {w.id: (w.state, w.outcome) for w in store.wafers("LOT42")}
    assert states == {
        "LOT42-01": ("step1_waiting", None),  # in the line: the scheduler stops it safely
        "LOT42-02": ("aborted", "aborted"),
        "LOT42-03": ("aborted", "aborted"),
    }
    assert store.events("LOT42-02")[-1].why == "wrong stencil"
    pending = store.pending_requests("LOT42")
    assert [(r.action, r.wafer_id) for r in pending] == [("abort_lot", None)]


# --- wafer transitions --------------------------------------------------------------------------


def test_transition_round_trip(store: Store) -> None:
    make_lot(store)
    event_id = store.record_transition(
        "LOT42-02",
        "step3_running",
        "step3_judging",
        "step_done",
        "oven exit",
        step_index=3,
        step_kind="reflow",
        tool="oven-1",
        tool_time=812.5,
        measurements={"peak_c": 347.9, "tal_s": 61.0, "flags": 0},
        location="oven-1 exit",
    )
    [event] = store.events("LOT42-02")
    assert event.id == event_id
    assert (event.from_state, event.to_state, event.trigger, event.why) == (
        "step3_running",
        "step3_judging",
        "step_done",
        "oven exit",
    )
    assert (event.step_index, event.step_kind, event.tool, event.tool_time) == (
        3,
        "reflow",
        "oven-1",
        812.5,
    )
    assert event.measurements == {"peak_c": 347.9, "tal_s": 61.0, "flags": 0}
    wafer = store.get_wafer("LOT42-02")
    assert (wafer.state, wafer.location, wafer.outcome) == ("step3_judging", "oven-1 exit", None)
    assert store.audit_log(wafer_id="LOT42-02")[-1].detail == (
        "step3_running -> step3_judging (step_done): oven exit"
    )
    store.record_transition("LOT42-02", "step3_judging", "step4_waiting", "judged_ok")
    wafer = store.get_wafer("LOT42-02")
    assert (wafer.state, wafer.location) == ("step4_waiting", "oven-1 exit")  # kept


def test_transition_of_unknown_wafer_writes_nothing(store: Store) -> None:
    make_lot(store)
    before = len(store.audit_log())
    with pytest.raises(StoreError, match="no wafer LOT42-09"):
        store.record_transition("LOT42-09", "queued", "step1_waiting", "start")
    assert len(store.audit_log()) == before


def test_final_states_set_the_outcome(store: Store) -> None:
    make_lot(store)
    store.record_transition("LOT42-01", "step6_judging", "complete", "judged_ok")
    store.record_transition("LOT42-02", "awaiting_disposition", "scrapped", "scrap")
    store.record_transition("LOT42-03", "step1_waiting", "aborted", "abort")
    assert [w.outcome for w in store.wafers("LOT42")] == ["good", "scrapped", "aborted"]
    with pytest.raises(StoreError, match="unknown wafer outcome"):
        store.record_transition("LOT42-01", "a", "b", "c", outcome="fine")


def test_measurements_must_be_json(store: Store) -> None:
    make_lot(store)
    with pytest.raises(StoreError, match="measurements cannot be stored"):
        store.record_transition("LOT42-01", "a", "b", "c", measurements={"peak_c": float("nan")})
    assert store.events("LOT42-01") == []


def test_records_every_event_of_a_real_wafer_state_machine(store: Store) -> None:
    make_lot(store)
    machine = WaferMachine("LOT42-01", ["print", "reflow"], on_event=store.record_event)
    machine.fire("start")
    machine.fire("tool_acquired", tool="printer-1")
    machine.fire("step_done", measurements={"vol_mean_pct": 97.5})
    machine.fire("judged_ok")
    machine.fire("tool_acquired", tool="oven-1")
    machine.fire("step_done", measurements={"peak_c": 348.0})
    machine.fire("step_failed", why="peak above window")
    events = store.events("LOT42-01")
    assert [(e.from_state, e.to_state, e.trigger) for e in events] == [
        ("queued", "step1_waiting", "start"),
        ("step1_waiting", "step1_running", "tool_acquired"),
        ("step1_running", "step1_judging", "step_done"),
        ("step1_judging", "step2_waiting", "judged_ok"),
        ("step2_waiting", "step2_running", "tool_acquired"),
        ("step2_running", "step2_judging", "step_done"),
        ("step2_judging", "awaiting_disposition", "step_failed"),
    ]
    assert events[1].tool == "printer-1" and events[2].measurements == {"vol_mean_pct": 97.5}
    assert (events[6].step_index, events[6].step_kind, events[6].why) == (
        2,
        "reflow",
        "peak above window",
    )
    assert store.get_wafer("LOT42-01").state == "awaiting_disposition"
    # A reflow is never repeated: the store refuses the retry before the machine sees it.
    with pytest.raises(StoreError, match="a reflow is never repeated"):
        store.disposition_wafer("LOT42-01", "retry", user="eve", reason="try again")
    request = store.disposition_wafer("LOT42-01", Disposition.SCRAP, user="eve", reason="voids")
    assert (request.action, request.requested_by) == ("scrap", "eve")


# --- steps, curves and intents ------------------------------------------------------------------


def test_step_round_trip_with_reflow_curve(store: Store) -> None:
    make_lot(store)
    params = {"zones_c": [150.0] * 5 + [330.0, 360.0, 365.0, 0.0, 0.0], "conveyor_mm_min": 600}
    step_id = store.start_step(
        "LOT42-01",
        2,
        "reflow",
        "oven-1",
        params,
        windows={"peak_c": (340, 355), "tal_s": (45, 90), "ramp_max_c_s": (None, 3.0)},
        tool_time=100.0,
    )
    assert store.get_wafer("LOT42-01").location == "oven-1"
    running = store.get_step(step_id)
    assert (running.status, running.attempt, running.results, running.curve) == (
        "running",
        1,
        None,
        None,
    )
    curve = [25.0 + 2.5 * i for i in range(130)]
    done = store.end_step(
        step_id,
        results={"peak_c": 347.5, "tal_s": 62.0, "ramp_max_c_s": 2.1},
        disposition="pass",
        curve_c=curve,
        liquidus_c=312.0,
        tool_time=520.0,
    )
    assert done.status == "done" and done.disposition == "pass"
    assert done.parameters == params
    assert done.windows == {
        "peak_c": [340.0, 355.0],
        "tal_s": [45.0, 90.0],
        "ramp_max_c_s": [None, 3.0],
    }
    assert done.results == {"peak_c": 347.5, "tal_s": 62.0, "ramp_max_c_s": 2.1}
    assert done.curve.samples_c == tuple(curve)
    assert (done.curve.interval_s, done.curve.liquidus_c) == (5.0, 312.0)
    assert (done.tool_time_start, done.tool_time_end) == (100.0, 520.0)
    assert done.ended_at > done.started_at
    with pytest.raises(StoreError, match="already ended"):
        store.end_step(step_id)


def test_retried_step_gets_next_attempt(store: Store) -> None:
    make_lot(store)
    first = store.start_step("LOT42-01", 1, "print", "printer-1", {"passes": 1})
    store.end_step(first, status="failed", results={"bridges": 12})
    second = store.start_step("LOT42-01", 1, "print", "printer-1", {"passes": 1})
    assert [(s.id, s.attempt, s.status) for s in store.steps("LOT42-01")] == [
        (first, 1, "failed"),
        (second, 2, "running"),
    ]


def test_step_input_is_checked(store: Store) -> None:
    make_lot(store)
    with pytest.raises(StoreError, match="no wafer LOT42-07"):
        store.start_step("LOT42-07", 1, "print", "printer-1", {})
    with pytest.raises(StoreError, match="window for 'peak_c' has low 355.0 above high 340.0"):
        store.start_step("LOT42-01", 1, "reflow", "oven-1", {}, windows={"peak_c": (355, 340)})
    with pytest.raises(StoreError, match="window for 'tal_s' must be"):
        store.start_step("LOT42-01", 1, "reflow", "oven-1", {}, windows={"tal_s": 60})
    step_id = store.start_step("LOT42-01", 1, "reflow", "oven-1", {})
    with pytest.raises(StoreError, match="non-finite sample"):
        store.end_step(step_id, curve_c=[25.0, float("inf")])
    with pytest.raises(StoreError, match="step status 'ok'"):
        store.end_step(step_id, status="ok")
    with pytest.raises(StoreError, match="no step 999"):
        store.end_step(999)


def test_intent_tells_may_have_happened_from_did_not(store: Store, db_url: str) -> None:
    make_lot(store)
    step_id = store.start_step("LOT42-01", 2, "reflow", "oven-1", {})
    sent = store.record_intent(step_id, "LOAD")
    store.resolve_intent(sent, "done")
    crashed = store.record_intent(step_id, "UNLOAD")
    # A new process after a crash sees exactly the command that may have reached the oven.
    with Store(db_url) as after_crash:
        [open_intent] = after_crash.open_intents()
    assert (open_intent.id, open_intent.command, open_intent.tool) == (crashed, "UNLOAD", "oven-1")
    assert (open_intent.wafer_id, open_intent.step_index) == ("LOT42-01", 2)
    store.resolve_intent(crashed, "not_sent")
    assert store.open_intents() == []
    with pytest.raises(StoreError, match="no open intent"):
        store.resolve_intent(crashed, "done")
    with pytest.raises(StoreError, match="intent outcome 'maybe'"):
        store.resolve_intent(sent, "maybe")
    outcomes = [(i.command, i.outcome) for i in store.wafer_history("LOT42-01").intents]
    assert outcomes == [("LOAD", "done"), ("UNLOAD", "not_sent")]


# --- holds and dispositions ---------------------------------------------------------------------


def test_wafer_hold_is_a_request_for_the_scheduler(store: Store) -> None:
    make_lot(store)
    with pytest.raises(StoreError, match="needs a reason"):
        store.hold_wafer("LOT42-01", user="bob", reason=" ")
    request = store.hold_wafer("LOT42-01", user="bob", reason="edge chip")
    assert store.get_wafer("LOT42-01").state == "queued"  # the machine moves it, not the store
    with pytest.raises(StoreError, match="already has a pending hold_wafer request"):
        store.hold_wafer("LOT42-01", user="carol", reason="again")
    assert [r.id for r in store.pending_requests()] == [request.id]
    store.mark_request_handled(request.id, "held at step1_waiting")
    assert store.pending_requests() == []
    [handled] = store.requests(wafer_id="LOT42-01")
    assert handled.handled_note == "held at step1_waiting" and handled.handled_at is not None
    with pytest.raises(StoreError, match="no pending request"):
        store.mark_request_handled(request.id)


def test_dispositions_follow_the_wafer_state(store: Store) -> None:
    make_lot(store)
    with pytest.raises(StoreError, match="is queued: only a held wafer"):
        store.disposition_wafer("LOT42-01", "continue", user="eve", reason="ok")
    store.record_transition("LOT42-01", "queued", "held", "hold")
    with pytest.raises(StoreError, match="it can take continue or scrap, not retry"):
        store.disposition_wafer("LOT42-01", "retry", user="eve", reason="x")
    with pytest.raises(StoreError, match="needs a reason"):
        store.disposition_wafer("LOT42-01", "continue", user="eve", reason="")
    with pytest.raises(StoreError, match="unknown disposition 'keep'"):
        store.disposition_wafer("LOT42-01", "keep", user="eve", reason="x")
    store.record_transition(
        "LOT42-02",
        "step1_judging",
        "awaiting_disposition",
        "step_failed",
        step_index=1,
        step_kind="print",
    )
    retry = store.disposition_wafer("LOT42-02", "retry", user="eve", reason="bridges")
    with pytest.raises(StoreError, match="pending retry request"):
        store.disposition_wafer("LOT42-02", "scrap", user="eve", reason="changed my mind")
    assert retry.reason == "bridges"
    store.record_transition("LOT42-03", "step1_waiting", "aborted", "abort")
    with pytest.raises(StoreError, match="is finished \\(aborted\\)"):
        store.hold_wafer("LOT42-03", user="bob", reason="x")
    assert [a.action for a in store.audit_log(wafer_id="LOT42-02")][-1] == "wafer.retry"


# --- alarms, tool states, audit -----------------------------------------------------------------


def test_alarm_life_cycle_with_wafer_context(store: Store) -> None:
    make_lot(store)
    alarm_id = store.alarm_set("oven-1", 540, "O2 HIGH", wafer_id="LOT42-02", tool_time=77.0)
    assert store.alarm_set("oven-1", 540, "O2 HIGH") == alarm_id  # still the same alarm
    other = store.alarm_set("printer-1", 400, "DOOR OPEN")
    [active] = store.alarms(active_only=True, lot_id="LOT42")
    assert (active.id, active.wafer_id, active.lot_id, active.tool_time) == (
        alarm_id,
        "LOT42-02",
        "LOT42",
        77.0,
    )
    assert store.alarm_cleared("oven-1") == [alarm_id]
    assert [a.id for a in store.alarms(active_only=True)] == [other]
    acked = store.acknowledge_alarm(alarm_id, user="bob")
    assert acked.acknowledged_by == "bob" and not acked.active
    with pytest.raises(StoreError, match="already acknowledged by bob"):
        store.acknowledge_alarm(alarm_id, user="carol")
    with pytest.raises(StoreError, match="no alarm 99"):
        store.acknowledge_alarm(99, user="bob")
    assert store.alarm_set("oven-1", 540, "O2 HIGH") != alarm_id  # a new occurrence
    assert [a.id for a in store.alarms()] == sorted([a.id for a in store.alarms()], reverse=True)
    assert [a.action for a in store.audit_log(wafer_id="LOT42-02")] == [
        "alarm.set",
        "alarm.clear",
        "alarm.ack",
    ]


def test_tool_states_are_recorded_on_change(store: Store) -> None:
    assert store.record_tool_state("oven-1", E10State.SCHEDULED_DOWN, tool_state="HEATING")
    assert not store.record_tool_state("oven-1", "scheduled down", tool_state="HEATING")
    assert store.record_tool_state("oven-1", "PRODUCTIVE", tool_state="PROCESSING")
    assert store.record_tool_state(
        "printer-1", "unscheduled-down", tool_state="ALARM", reason="alarm 400 DOOR OPEN"
    )
    latest = {s.tool: (s.e10_state, s.tool_state) for s in store.tool_states_latest()}
    assert latest == {
        "oven-1": ("productive", "PROCESSING"),
        "printer-1": ("unscheduled down", "ALARM"),
    }
    assert [s.tool_state for s in store.tool_state_history("oven-1")] == ["HEATING", "PROCESSING"]
    with pytest.raises(StoreError, match="oven-1: unknown E10 state 'busy'"):
        store.record_tool_state("oven-1", "busy")


def test_operator_actions_are_audited(store: Store) -> None:
    make_lot(store)
    store.audit("eve", "recipe.approve", "rebump-hipb-snpb v3", lot_id="LOT42")
    entry = store.audit_log(lot_id="LOT42", limit=1)[0]
    assert (entry.actor, entry.action, entry.detail) == (
        "eve",
        "recipe.approve",
        "rebump-hipb-snpb v3",
    )

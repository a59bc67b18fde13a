"""The audit log as read: the actions stored in ``audit_log`` and a line per wafer transition
read from ``wafer_events`` (docs/decisions/0020-audit-log-reads-wafer-events.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select
from test_store import Ticker

from controller.models import AuditEntry
from controller.store import Store


@pytest.fixture
def store(db_url: str):
    s = Store(db_url, now=Ticker())
    s.create_lot("A1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1, 2],
                 user="ann")
    s.create_lot("B1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1],
                 user="ann")
    yield s
    s.close()


def _stored_lines(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(AuditEntry.__table__)).scalar_one()


def test_a_transition_is_a_controller_line_in_time_order_with_peoples_actions(
    store: Store,
) -> None:
    stored = _stored_lines(store)
    store.record_transition("A1-01", "queued", "step1_waiting", "start")
    store.audit("bob", "note", "paste lot 7 opened", lot_id="A1", wafer_id="A1-01")
    event = store.record_transition("A1-01", "step1_waiting", "step1_running", "tool_acquired",
                                    why="printer-1", tool="printer-1")
    store.record_transition("B1-01", "queued", "step1_waiting", "start")
    assert _stored_lines(store) == stored + 1  # only bob's note is written to audit_log

    lines = [(a.actor, a.action, a.lot_id, a.wafer_id, a.detail)
             for a in store.audit_log(lot_id="A1")]
    assert lines[0][:3] == ("ann", "lot.start", "A1")
    assert lines[1:] == [
        ("controller", "wafer.transition", "A1", "A1-01", "queued -> step1_waiting (start)"),
        ("bob", "note", "A1", "A1-01", "paste lot 7 opened"),
        ("controller", "wafer.transition", "A1", "A1-01",
         "step1_waiting -> step1_running (tool_acquired): printer-1"),
    ]
    last = store.audit_log(wafer_id="A1-01")[-1]
    assert last.id == event and last.at == store.events("A1-01")[-1].at
    everything = store.audit_log()
    assert [a.at for a in everything] == sorted(a.at for a in everything)
    assert [a.wafer_id for a in everything if a.action == "wafer.transition"] == [
        "A1-01", "A1-01", "B1-01"]


def test_the_newest_lines_are_the_newest_of_both_kinds(store: Store) -> None:
    store.record_transition("A1-01", "queued", "step1_waiting", "start")
    store.audit("bob", "note", "one")
    store.record_transition("A1-02", "queued", "step1_waiting", "start")
    store.audit("bob", "note", "two")
    store.record_transition("A1-01", "step1_waiting", "step1_running", "tool_acquired")
    newest = store.audit_log(limit=3)
    assert [a.detail for a in newest] == [
        "queued -> step1_waiting (start)",  # A1-02's
        "two",
        "step1_waiting -> step1_running (tool_acquired)",
    ]
    assert newest[0].wafer_id == "A1-02"
    assert store.audit_log(wafer_id="A1-02", limit=5)[-1].action == "wafer.transition"


def test_a_transition_line_written_before_0020_is_not_shown_twice(store: Store) -> None:
    """Databases from before decision 0020 keep their transitions' stored lines; the log
    reads each transition once, from its event."""
    store.record_transition("A1-01", "queued", "step1_waiting", "start")
    (event,) = store.events("A1-01")
    with store.engine.begin() as conn:
        conn.execute(insert(AuditEntry.__table__).values(
            at=event.at, actor="controller", action="wafer.transition", lot_id="A1",
            wafer_id="A1-01", detail="queued -> step1_waiting (start)"))
    assert [(a.action, a.detail) for a in store.audit_log(wafer_id="A1-01")] == [
        ("wafer.transition", "queued -> step1_waiting (start)")]


def test_each_line_names_the_line_that_acted(db_url: str) -> None:
    """Lines share a database: a person's action on a line's screen, a host's command on its
    GEM link, a controller's alarm are each recorded with that line; a transition's line is
    its lot's; a store of no line (a shell command) records none."""
    with Store(db_url, now=Ticker(), line_id="bay-B") as bay_b, Store(db_url) as shell:
        bay_b.create_lot("B7", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1],
                         user="ann", line_id="bay-B")
        bay_b.record_transition("B7-01", "queued", "step1_waiting", "start")
        bay_b.alarm_set("oven-1", 530, "EXIT BLOCKED", wafer_id="B7-01")
        shell.audit("bob", "note", "from a shell", lot_id="B7")
        lines = {(a.action, a.line_id) for a in shell.audit_log(lot_id=None)}
    assert {("lot.start", "bay-B"), ("wafer.transition", "bay-B"), ("alarm.set", "bay-B"),
            ("note", None)} <= lines

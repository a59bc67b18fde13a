"""The scheduler's hot writes: one path, the same rows on SQLite and PostgreSQL.

``HotStatement`` runs a Core statement on the DBAPI cursor (compiled once per
back end); it must store exactly what ``conn.execute(statement)`` stores, and a
wafer's whole record must read back the same from either back end.
``Store.atomic`` groups writes into one transaction on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from controller.models import WaferEvent, WaferStep
from controller.persistence import wafers as hot_wafers
from controller.store import Store, StoreError, jsonable

WHEN = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)


def _scenario(store: Store) -> None:
    """A wafer's life in small: transitions, a failed and a retried step, an intent, a curve."""
    store.create_lot(
        "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1, 2], user="op"
    )
    store.record_transition(
        "L1-01", "queued", "step1_waiting", "start", "go",
        measurements={"peak_c": 348.8, "flags": 0},
    )
    store.record_transition("L1-02", "queued", "held", "hold", "", location="carrier")
    first = store.start_step(
        "L1-01", 1, "print", "printer-1", {"passes": 1},
        windows={"bridges": [None, 0]}, tool_time=12.5,
    )
    store.end_step(first, status="failed", results={"bridges": 1})
    again = store.start_step("L1-01", 1, "print", "printer-1", {"passes": 1}, tool_time=99.0)
    intent = store.record_intent(again, "LOAD")
    store.resolve_intent(intent, "done")
    store.end_step(
        again, results={"peak_c": 348.8}, curve_c=[25.0, 150.0, 348.8, 90.0], liquidus_c=312.0,
        tool_time=140.0, fetch=False,
    )
    store.record_transition("L1-01", "step1_running", "complete", "judged_ok")
    # Tool states (hot too): a row per change only, tool_time and the tool's own words kept.
    assert store.record_tool_state("oven-1", "productive", reason="LOAD", tool_time=140.0)
    assert not store.record_tool_state("oven-1", "productive", reason="again")
    assert store.record_tool_state("oven-1", "standby", tool_state="IDLE")
    assert store.record_tool_state("printer-1", "standby")


def _record(url: str) -> dict[str, Any]:
    with Store(url, now=lambda: WHEN) as store:
        _scenario(store)
        return {
            "history": [jsonable(store.wafer_history(w)) for w in ("L1-01", "L1-02")],
            "audit": [jsonable(a) for a in store.audit_log()],
            "lot": jsonable(store.get_lot("L1")),
            "tool_states": [jsonable(t) for t in store.tool_state_history()],
        }


def test_sqlite_and_postgresql_store_the_same_record(sqlite_url: str, pg_url: str) -> None:
    on_sqlite, on_postgres = _record(sqlite_url), _record(pg_url)
    assert on_sqlite == on_postgres
    steps = on_sqlite["history"][0]["steps"]
    assert [(s["attempt"], s["status"]) for s in steps] == [(1, "failed"), (2, "done")]
    assert steps[1]["curve"]["samples_c"] == [25.0, 150.0, 348.8, 90.0]
    assert on_sqlite["history"][0]["wafer"]["outcome"] == "good"
    assert on_sqlite["history"][0]["events"][0]["at"] == "2026-11-25T18:00:00.123456+00:00"
    assert [(t["tool"], t["e10_state"], t["tool_state"], t["tool_time"])
            for t in on_sqlite["tool_states"]] == [
        ("oven-1", "productive", "", 140.0), ("oven-1", "standby", "IDLE", None),
        ("printer-1", "standby", "", None)]


def test_a_hot_statement_stores_what_core_stores(db_url: str) -> None:
    """The same values through HotStatement.run and through conn.execute: equal rows."""
    values = {
        "wafer": "L1-01", "at": WHEN, "step_index": 2, "step_kind": "reflow",
        "from_state": "a", "to_state": "b", "trigger": "t", "why": "w", "tool": "oven-1",
        "tool_time": 1.5, "measurements": {"peak_c": 348.8, "curve": [1.0, 2.5]},
    }
    with Store(db_url) as store:
        store.create_lot(
            "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1], user="op"
        )
        with store.engine.begin() as conn:
            (hot_id,), _ = hot_wafers._ADD_EVENT.run(conn, values)
            core_id = conn.execute(hot_wafers._ADD_EVENT.statement, values).scalar_one()
            rows = conn.execute(
                select(WaferEvent.__table__).where(WaferEvent.id.in_([hot_id, core_id]))
                .order_by(WaferEvent.id)
            ).all()
        hot, core = (dict(r._mapping) for r in rows)
        assert hot.pop("id") != core.pop("id")
        assert hot == core
        assert hot["at"] == WHEN and hot["measurements"] == values["measurements"]


def test_unknown_wafer_is_refused_on_the_hot_path(db_url: str) -> None:
    with Store(db_url) as store, Store(db_url) as other:
        _lot(store)
        before = _counts(other)
        with pytest.raises(StoreError, match="no wafer NOPE-01"):
            store.record_transition("NOPE-01", "queued", "step1_waiting", "start")
        with pytest.raises(StoreError, match="no wafer NOPE-01"):
            store.start_step("NOPE-01", 1, "print", "printer-1", {})
        assert _counts(other) == before  # no event, no audit line for a wafer not there
        # The refusals rolled back what their transactions prepared (PostgreSQL): the same
        # statements work next, prepared again.
        store.start_step("L1-01", 1, "print", "printer-1", {})
        store.record_transition("L1-01", "queued", "step1_waiting", "start")
        assert _counts(other) == (before[0] + 1, before[1] + 1, before[2] + 1)


def _lot(store: Store) -> None:
    store.create_lot(
        "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1], user="op"
    )


def _counts(other: Store) -> tuple[int, ...]:
    """Events, steps and audit lines another connection (another store) sees now."""
    with other.engine.connect() as conn:
        rows = tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (WaferEvent.__table__, WaferStep.__table__)
        )
    return (*rows, len(other.audit_log()))


def test_atomic_writes_commit_together(db_url: str) -> None:
    with Store(db_url) as store, Store(db_url) as other:
        _lot(store)
        before = _counts(other)
        with store.atomic():
            store.record_transition("L1-01", "step1_waiting", "step1_running", "tool_acquired")
            store.start_step("L1-01", 1, "print", "printer-1", {"passes": 1})
            assert _counts(other) == before  # nothing visible to others until the end
        assert _counts(other) == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_only_hot_writes_go_inside_atomic(db_url: str) -> None:
    with Store(db_url) as store:
        _lot(store)
        with pytest.raises(RuntimeError, match="only the scheduler's hot writes"), store.atomic():
            store.record_transition("L1-01", "queued", "step1_waiting", "start")
            store.alarm_set("printer-1", 210, "ALIGNMENT FAILED")
        assert store.get_wafer("L1-01").state == "queued"  # and the block rolled back
        assert store.alarms() == []


def test_atomic_failure_keeps_none_of_the_writes(db_url: str) -> None:
    with Store(db_url) as store, Store(db_url) as other:
        _lot(store)
        before = _counts(other)
        with pytest.raises(StoreError, match="no wafer NOPE-01"), store.atomic():
            store.record_transition("L1-01", "step1_waiting", "step1_running", "tool_acquired")
            store.start_step("NOPE-01", 1, "print", "printer-1", {})
        assert _counts(other) == before
        assert store.wafers("L1")[0].state == "queued"  # the transition rolled back too
        store.record_transition("L1-01", "queued", "step1_waiting", "start")  # usable again
        assert _counts(other)[0] == before[0] + 1


# --- PostgreSQL: a hot transaction in as few round trips as its results allow -----------------


@contextmanager
def _wire(store: Store, path: Path) -> Iterator[list[str]]:
    """The messages the store's writer connection sends meanwhile, as libpq traces them."""
    import psycopg  # the PostgreSQL tests' driver (pg_url is skipped without it)

    raw = store._db._writer_conn().connection.dbapi_connection  # noqa: SLF001 - the wire
    sent: list[str] = []
    with path.open("w") as trace:
        raw.pgconn.trace(trace.fileno())
        raw.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield sent
        finally:
            raw.pgconn.untrace()
    sent += [line.split("\t")[2] for line in path.read_text().splitlines()
             if line.startswith("F\t")]


def test_a_transition_is_one_round_trip_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """BEGIN, the wafer's UPDATE, its event and COMMIT go as one query (its audit line is
    read from the event)."""
    with Store(pg_url) as store:
        _lot(store)
        store.record_transition("L1-01", "queued", "step1_waiting", "start")  # prepares
        with _wire(store, tmp_path / "trace") as sent:
            event = store.record_transition("L1-01", "step1_waiting", "step1_running", "go",
                                            measurements={"x": 1.5})
        assert sent == ["Query"]
        (last,) = [e for e in store.events("L1-01") if e.id == event]
        assert (last.to_state, last.measurements) == ("step1_running", {"x": 1.5})
        assert store.audit_log(wafer_id="L1-01")[-1].lot_id == "L1"


def test_a_failed_batch_leaves_nothing_and_the_next_one_works(pg_url: str) -> None:
    """A statement the server refuses (a tool name over its column's 64 characters) in a
    query that also prepared it: the whole transaction is rolled back, its PREPAREs
    with it, and the same statements work next (prepared again, never twice)."""
    import psycopg  # the PostgreSQL tests' driver (pg_url is skipped without it)

    with Store(pg_url) as store, Store(pg_url) as other:
        _lot(store)
        with pytest.raises(psycopg.errors.StringDataRightTruncation), store.atomic():
            store.record_transition("L1-01", "queued", "step1_waiting", "start")
            store.record_tool_state("x" * 65, "standby")
        assert store.get_wafer("L1-01").state == "queued"
        assert other.tool_state_history() == [] and _counts(other)[0] == 0
        assert store.record_tool_state("oven-1", "standby")
        store.record_transition("L1-01", "queued", "step1_waiting", "start")
        assert [t.tool for t in other.tool_state_history()] == ["oven-1"]
        assert other.get_wafer("L1-01").state == "step1_waiting"


def test_the_hot_statements_outlive_the_writers_rollbacks(pg_url: str) -> None:
    """psycopg prepares a statement of its own once it has run it five times (the
    store's other writes, e.g. audit lines, commit on the writer connection), and
    answers any later ROLLBACK with DEALLOCATE ALL, which would take the hot
    statements' with it. The store's engines turn psycopg's preparing off."""
    with Store(pg_url) as store:
        _lot(store)
        store.record_transition("L1-01", "queued", "step1_waiting", "start")
        for n in range(8):
            store.audit("op", "note", f"note {n}")  # a plain write on the writer
        assert store.tool_modes() == {}  # a read on the writer, ended by a ROLLBACK
        with pytest.raises(StoreError, match="no wafer NOPE-01"):
            store.start_step("NOPE-01", 1, "print", "printer-1", {})  # a hot ROLLBACK
        store.record_transition("L1-01", "step1_waiting", "step1_running", "go")
        assert store.get_wafer("L1-01").state == "step1_running"

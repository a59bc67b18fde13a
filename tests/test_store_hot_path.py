"""The SQLite hot path writes exactly the rows the SQLAlchemy Core path writes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from controller.store import Store

WHEN = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)


def _write(path: Path, *, hot: bool) -> dict[str, list[tuple]]:
    with Store(f"sqlite:///{path}", now=lambda: WHEN) as store:
        assert (store._hot is not None) is True  # SQLite gets the hot path by default
        if not hot:
            store._hot = None
        store.create_lot(
            "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1, 2], user="op"
        )
        store.record_transition(
            "L1-01",
            "queued",
            "step1_waiting",
            "start",
            "go",
            measurements={"peak_c": 348.8, "flags": 0},
        )
        store.record_transition(
            "L1-02", "queued", "held", "hold", "", location="carrier", outcome=None
        )
        first = store.start_step(
            "L1-01",
            1,
            "print",
            "printer-1",
            {"passes": 1},
            windows={"bridges": [None, 0]},
            tool_time=12.5,
        )
        store.end_step(first, status="failed", results={"bridges": 1})
        again = store.start_step("L1-01", 1, "print", "printer-1", {"passes": 1}, tool_time=99.0)
        intent = store.record_intent(again, "LOAD")
        store.resolve_intent(intent, "done")
        store.end_step(
            again,
            results={"peak_c": 348.8},
            curve_c=[25.0, 150.0, 348.8, 90.0],
            liquidus_c=312.0,
            tool_time=140.0,
            fetch=False,
        )
    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in (
                "wafers",
                "wafer_events",
                "wafer_steps",
                "audit_log",
                "step_intents",
                "step_curves",
            )
        }
    finally:
        db.close()


def test_hot_path_rows_equal_core_rows(tmp_path: Path) -> None:
    hot = _write(tmp_path / "hot.db", hot=True)
    core = _write(tmp_path / "core.db", hot=False)
    assert hot == core
    assert len(hot["step_intents"]) == 1 and len(hot["step_curves"]) == 1
    assert [row[3] for row in hot["wafer_steps"]] == [1, 2]  # attempts count up
    assert hot["wafer_events"][0][2] == "2026-11-25 18:00:00.123456"  # stored as Core does


def test_unknown_wafer_is_refused_on_the_hot_path(tmp_path: Path) -> None:
    import pytest

    from controller.store import StoreError

    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        with pytest.raises(StoreError, match="no wafer NOPE-01"):
            store.record_transition("NOPE-01", "queued", "step1_waiting", "start")
        with pytest.raises(StoreError, match="no wafer NOPE-01"):
            store.start_step("NOPE-01", 1, "print", "printer-1", {})


def _lot(store: Store) -> None:
    store.create_lot(
        "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1], user="op"
    )


def _counts(path: Path) -> tuple[int, int, int]:
    """Events, steps and audit lines another connection sees now."""
    db = sqlite3.connect(path)
    try:
        return tuple(  # type: ignore[return-value]
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("wafer_events", "wafer_steps", "audit_log")
        )
    finally:
        db.close()


def test_atomic_writes_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Store(f"sqlite:///{path}") as store:
        _lot(store)
        before = _counts(path)
        with store.atomic():
            store.record_transition("L1-01", "step1_waiting", "step1_running", "tool_acquired")
            store.start_step("L1-01", 1, "print", "printer-1", {"passes": 1})
            assert _counts(path) == before  # nothing visible until the block ends
        events, steps, audit = _counts(path)
        assert (events, steps, audit) == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_atomic_failure_keeps_none_of_the_writes(tmp_path: Path) -> None:
    import pytest

    from controller.store import StoreError

    path = tmp_path / "a.db"
    with Store(f"sqlite:///{path}") as store:
        _lot(store)
        before = _counts(path)
        with pytest.raises(StoreError, match="no wafer NOPE-01"), store.atomic():
            store.record_transition("L1-01", "step1_waiting", "step1_running", "tool_acquired")
            store.start_step("NOPE-01", 1, "print", "printer-1", {})
        assert _counts(path) == before
        assert store.wafers("L1")[0].state == "queued"  # the transition rolled back too
        store.record_transition("L1-01", "queued", "step1_waiting", "start")  # usable again
        assert _counts(path)[0] == before[0] + 1

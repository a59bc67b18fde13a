"""The scheduler's hot writes: refused for unknown wafers, grouped by ``Store.atomic``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from controller.store import Store


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

"""The store's database: what survives reopening, SQLite's WAL, readers beside the
controller's writes, and databases that cannot be opened (one clear error each)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from test_store import Ticker, make_lot

from controller.store import Store, StoreError, jsonable


@pytest.fixture
def sqlite_store(sqlite_url: str):
    s = Store(sqlite_url, now=Ticker())
    yield s
    s.close()


# --- persistence and concurrency ----------------------------------------------------------------


def test_everything_survives_reopening(db_url: str) -> None:
    with Store(db_url) as first:
        make_lot(first)
        first.record_transition("LOT42-01", "queued", "step1_waiting", "start")
        step = first.start_step("LOT42-01", 1, "print", "printer-1", {"passes": 2})
        first.end_step(step, results={"vol_mean_pct": 99.1})
        first.alarm_set("printer-1", 102, "PASTE EMPTY", wafer_id="LOT42-01")
        first.record_tool_state("printer-1", "unscheduled down", tool_state="ALARM")
        first.hold_wafer("LOT42-02", user="bob", reason="check")
        written = jsonable(first.wafer_history("LOT42-01")), jsonable(first.get_lot("LOT42"))
    with Store(db_url, create=False) as second:
        assert (
            jsonable(second.wafer_history("LOT42-01")),
            jsonable(second.get_lot("LOT42")),
        ) == written
        assert [s.tool for s in second.tool_states_latest()] == ["printer-1"]
        assert [r.wafer_id for r in second.pending_requests()] == ["LOT42-02"]
    json.dumps(written)  # the CLI's --json output is plain JSON


def test_sqlite_runs_in_wal_mode_with_normal_sync(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_reader_keeps_its_snapshot_while_the_controller_commits(
    sqlite_store: Store, tmp_path: Path
) -> None:
    store = sqlite_store
    make_lot(store)
    reader = sqlite3.connect(tmp_path / "line.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        before = reader.execute("SELECT count(*) FROM wafer_events").fetchone()[0]
        # With a reader mid-transaction, a rollback-journal database could not commit;
        # in WAL the writer goes ahead and the reader keeps a consistent snapshot.
        store.record_transition("LOT42-01", "queued", "step1_waiting", "start")
        assert reader.execute("SELECT count(*) FROM wafer_events").fetchone()[0] == before
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM wafer_events").fetchone()[0] == before + 1
    finally:
        reader.close()


def test_concurrent_reader_sees_only_committed_transitions(db_url: str) -> None:
    transitions = 150
    failures: list[BaseException] = []
    with Store(db_url) as writer_store:
        make_lot(writer_store)

        def write() -> None:
            try:
                for i in range(transitions):
                    writer_store.record_transition("LOT42-01", f"s{i}", f"s{i + 1}", "step")
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        with Store(db_url, create=False) as reader_store:
            writer = threading.Thread(target=write, name="store-writer")
            writer.start()
            seen = []
            try:
                while writer.is_alive():
                    history = reader_store.wafer_history("LOT42-01")
                    seen.append(len(history.events))
                    # The wafer row and its event are committed together, and a history is
                    # one snapshot: the two always agree.
                    if history.events:
                        assert history.wafer.state == history.events[-1].to_state
            finally:
                writer.join(timeout=30)
            assert not failures, failures
            assert seen == sorted(seen)
            assert len(reader_store.events("LOT42-01")) == transitions
            assert reader_store.get_wafer("LOT42-01").state == f"s{transitions}"


def test_in_memory_database_works(tmp_path: Path) -> None:
    with Store("sqlite://") as store:
        make_lot(store)
        assert store.get_lot("LOT42").wafer_count == 3


# --- databases that cannot be opened ------------------------------------------------------------


def test_unopenable_databases_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"directory .*missing does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(
        StoreError, match="cannot open database .*garbage.db: file is not a database"
    ):
        Store(f"sqlite:///{garbage}")
    with pytest.raises(StoreError, match="no database at .*absent.db"):
        Store(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(StoreError, match="is not a SQLAlchemy URL"):
        Store("not a url")
    with pytest.raises(StoreError, match="cannot open database"):
        Store("nosuchdialect://host/db")


def test_database_from_a_newer_bumpline_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    Store(url).close()
    conn = sqlite3.connect(tmp_path / "newer.db")
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(StoreError, match="cannot open database .*newer.db: .*9999"):
        Store(url)

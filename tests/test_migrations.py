"""Alembic owns the schema: head builds it from empty, and the models never drift from it.
A new database is built from the models at once and stamped; what it gets is what the
revisions build, table by table.

On SQLite and on PostgreSQL (``db_url``): the same revisions, both ways.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, DateTime, column, insert, inspect, select, table

from controller.db import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    alembic_config,
    make_engine,
    migrate_with_alembic,
    upgrade_to_head,
)
from controller.line.e10 import ToolMode
from controller.models import Base
from controller.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(engine) -> str | None:  # noqa: ANN001
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_from_empty_creates_every_table(engine) -> None:  # noqa: ANN001
    assert inspect(engine).get_table_names() == []
    upgrade_to_head(engine)
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert _current(engine) == _head()


def test_models_match_the_migrations(engine) -> None:  # noqa: ANN001
    migrate_with_alembic(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    # And what `alembic check` says, through our in-code configuration.
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.check(config)


def _schema(engine) -> dict[str, dict[str, object]]:  # noqa: ANN001
    """Every table as the database describes it: columns (by name: a column a revision
    added comes last there, and nothing reads columns by position), keys, indexes and
    constraints, with their names."""
    look = inspect(engine)
    schema: dict[str, dict[str, object]] = {}
    for name in look.get_table_names():
        schema[name] = {
            "columns": {c["name"]: (repr(c["type"]), c["nullable"], c.get("default"),
                                    c.get("autoincrement"))
                        for c in look.get_columns(name)},
            "primary key": look.get_pk_constraint(name),
            "foreign keys": sorted(repr(sorted(fk.items())) for fk in look.get_foreign_keys(name)),
            "indexes": sorted(repr(sorted(i.items())) for i in look.get_indexes(name)),
            "unique": sorted(repr(sorted(u.items())) for u in look.get_unique_constraints(name)),
            "checks": sorted(repr(sorted(c.items())) for c in look.get_check_constraints(name)),
        }
    return schema


@pytest.fixture
def second_db_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Another new database beside ``db_url``, on the same back end."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    with request.getfixturevalue("pg_cluster").database() as url:
        yield url


def test_a_new_database_gets_what_the_revisions_build(db_url: str, second_db_url: str
                                                       ) -> None:
    """Built from the models and stamped, or migrated through every revision: the same
    tables, columns, types, defaults, keys, indexes and constraints, by name."""
    built, migrated = make_engine(db_url), make_engine(second_db_url)
    try:
        upgrade_to_head(built)
        migrate_with_alembic(migrated)
        assert _current(built) == _current(migrated) == _head()
        ours, theirs = _schema(built), _schema(migrated)
        assert sorted(ours) == sorted(theirs)
        for table_name in ours:
            assert ours[table_name] == theirs[table_name], table_name
    finally:
        built.dispose()
        migrated.dispose()


def _open_together(url: str) -> list[BaseException]:
    """Two openers of ``url`` at the same moment (each its own engine): what they raised."""
    start = threading.Barrier(2)
    failed: list[BaseException] = []

    def open_it() -> None:
        engine = make_engine(url)
        try:
            start.wait()
            upgrade_to_head(engine)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failed.append(exc)
        finally:
            engine.dispose()

    openers = [threading.Thread(target=open_it) for _ in range(2)]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    return failed


def test_two_processes_opening_one_new_database_at_once(db_url: str) -> None:
    """Two controllers started together on a new database: one builds it, the other
    finds it built (SQLite's write lock, PostgreSQL's advisory lock); neither fails."""
    assert _open_together(db_url) == []
    engine = make_engine(db_url)
    try:
        assert _current(engine) == _head()
        assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {
            "alembic_version"}
    finally:
        engine.dispose()


def test_two_openers_of_a_new_sqlite_file_never_see_it_locked(tmp_path: Path) -> None:
    """Switching a new file to WAL: the loser was told "database is locked" at once, the
    busy timeout notwithstanding (7 rounds in 40 failed). 20 rounds, each a new file."""
    for n in range(20):
        assert _open_together(f"sqlite:///{tmp_path / f'new{n}.db'}") == [], n


def test_one_linear_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].down_revision is None
    assert revisions[-1].revision == "0001"
    assert [r.revision for r in reversed(revisions)][:14] == [
        "0001", "0002_gem", "0003_controller_locks", "0004_batches", "0005_users",
        "0006_lot_line", "0007_lock_pid_started", "0008_alarm_state_line",
        "0009_tool_modes", "0010_tool_modes_line", "0011_step_indexes",
        "0012_web_ended_sessions", "0013_tool_event_seqs_line", "0014_gem_and_audit_line"]


def _downgrade(engine, target: str) -> None:  # noqa: ANN001
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, target)


def test_downgrade_to_empty_and_back(engine) -> None:  # noqa: ANN001
    upgrade_to_head(engine)
    _downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade_to_head(engine)
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {
        "alembic_version"
    }
    assert _current(engine) == _head()


def test_each_revision_steps_down_and_up_keeping_the_data(db_url: str) -> None:
    """One revision down and back up on a database with a lot in it: the lot survives."""
    with Store(db_url) as store:
        store.create_lot(
            "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1, 2], user="ann"
        )
        store.acquire_line_lock("line-a")
        engine = store.engine
        _downgrade(engine, "0001")
        assert "controller_locks" not in inspect(engine).get_table_names()
        assert _current(engine) == "0001"
        upgrade_to_head(engine)
        assert _current(engine) == _head()
        assert store.get_lot("L1").wafer_count == 2
        assert store.line_lock_holder("line-a") is None  # the downgrade dropped the locks
        store.acquire_line_lock("line-a")  # and the table works again


def test_tool_modes_become_each_lines_and_back(db_url: str) -> None:
    """0010 keys tool modes by line and tool: a mode set before for a tool name goes to
    every line that recorded that tool (as before, every such line applied it), a tool
    no line recorded keeps line "" ; the downgrade keeps one row per tool, the newest."""
    early, late = (datetime(2026, 12, 1, h, 0, tzinfo=UTC) for h in (8, 9))
    with Store(db_url, line_id="bay-A") as a, Store(db_url, line_id="bay-B") as b:
        a.record_tool_state("oven-1", "standby")
        b.record_tool_state("oven-1", "standby")
        b.record_tool_state("printer-1", "standby")
        engine = a.engine
        _downgrade(engine, "0009_tool_modes")
        modes = table("tool_modes", column("tool"), column("mode"), column("reason"),
                      column("set_by"), column("set_at", DateTime(timezone=True)))
        with engine.begin() as conn:
            conn.execute(insert(modes), [
                {"tool": "oven-1", "mode": "maintenance", "reason": "belt", "set_by": "erik",
                 "set_at": early},
                {"tool": "plater-9", "mode": "offline", "reason": "gone", "set_by": "erik",
                 "set_at": late}])
        upgrade_to_head(engine)
        for store in (a, b):
            assert {t: m.mode.value for t, m in store.tool_modes().items()} == {
                "oven-1": "maintenance"}
        assert [(m.line_id, m.tool) for m in a.every_tool_mode()] == [
            (None, "plater-9"), ("bay-A", "oven-1"), ("bay-B", "oven-1")]
        a.set_tool_mode("oven-1", "production", user="erik")  # bay-A's only, and newest
        assert b.tool_modes()["oven-1"].mode is ToolMode.MAINTENANCE
        _downgrade(engine, "0009_tool_modes")
        with engine.connect() as conn:
            rows = sorted((r.tool, r.mode) for r in conn.execute(select(modes)))
        assert rows == [("oven-1", "production"), ("plater-9", "offline")]
        upgrade_to_head(engine)
        assert a.tool_modes()["oven-1"].mode is ToolMode.PRODUCTION
        assert b.tool_modes()["oven-1"].mode is ToolMode.PRODUCTION  # the one row, fanned


def test_each_lines_plater_keeps_its_own_last_event_number_and_back(db_url: str) -> None:
    """0013 keys the last pushed-event number by line and tool: bay-A's plater-1 at 500 no
    longer hands bay-B's (at 40) a number its plater never reached (events 41-500 would
    never be asked for again). A row from before goes to the line that last recorded the
    tool (most likely its saver); the downgrade keeps the highest number per tool."""
    from controller.line.batch_records import BatchRecords

    with Store(db_url, line_id="bay-A") as a, Store(db_url, line_id="bay-B") as b:
        a.record_tool_state("plater-1", "standby")
        b.record_tool_state("plater-1", "standby")
        engine = a.engine
        _downgrade(engine, "0012_web_ended_sessions")
        seqs = table("tool_event_seqs", column("tool"), column("seq"),
                     column("updated_at", DateTime(timezone=True)))
        with engine.begin() as conn:
            conn.execute(insert(seqs), [{"tool": "plater-1", "seq": 40,
                                         "updated_at": datetime(2026, 12, 3, tzinfo=UTC)}])
        upgrade_to_head(engine)
        records_a, records_b = BatchRecords(a), BatchRecords(b)
        assert records_b.seqs() == {"plater-1": 40}  # bay-B recorded the plater last
        assert records_a.seqs() == {}  # bay-A starts over: its plater replays what it kept
        records_a.save_seq("plater-1", 500)
        assert records_b.seqs() == {"plater-1": 40}  # bay-B's plater is its own
        assert records_a.seqs() == {"plater-1": 500}
        _downgrade(engine, "0012_web_ended_sessions")
        with engine.connect() as conn:
            assert [(r.tool, r.seq) for r in conn.execute(select(seqs))] == [("plater-1", 500)]
        upgrade_to_head(engine)


def test_gem_settings_go_to_every_line_and_the_spool_to_the_only_one_and_back(
        db_url: str) -> None:
    """0014 keys GEM settings and the spool by line: a setting from before was every line's
    (they shared it), so each line that recorded anything gets a copy (and a store of no
    line keeps it); a spooled message goes to the one line the database knew. The audit
    log gains the acting line. The downgrade keeps the newest setting per key."""
    from controller.gem.spool import GemDatabase

    with Store(db_url, line_id="bay-A") as a, Store(db_url, line_id="bay-B") as b:
        a.record_tool_state("oven-1", "standby")
        engine = a.engine
        _downgrade(engine, "0013_tool_event_seqs_line")
        settings = table("gem_settings", column("key"), column("value", JSON()),
                         column("updated_at", DateTime(timezone=True)))
        spool = table("gem_spool", column("stream"), column("function"), column("body"),
                      column("what"), column("spooled_at", DateTime(timezone=True)))
        at = datetime(2026, 12, 3, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(settings), [{"key": "control", "value": {"v": {"state": 5}},
                                             "updated_at": at}])
            conn.execute(insert(spool), [{"stream": 6, "function": 11, "body": b"\x01",
                                          "what": "CEID 1", "spooled_at": at}])
        upgrade_to_head(engine)
        gem_a, gem_b = GemDatabase(engine, line_id="bay-A"), GemDatabase(engine, line_id="bay-B")
        assert gem_a.load("control") == {"state": 5}  # bay-A's copy
        assert GemDatabase(engine).load("control") == {"state": 5}  # no line's
        assert gem_b.load("control") is None  # bay-B had recorded nothing then
        assert [s.what for s in gem_a.spooled()] == ["CEID 1"]  # the one known line's
        gem_b.save("control", {"state": 1})  # bay-B's own, and the newest
        b.audit("ann", "test.action")
        assert [e.line_id for e in b.audit_log() if e.action == "test.action"] == ["bay-B"]
        _downgrade(engine, "0013_tool_event_seqs_line")
        with engine.connect() as conn:
            assert [(r.key, r.value) for r in conn.execute(select(settings))] == [
                ("control", {"v": {"state": 1}})]
            assert [r.what for r in conn.execute(select(spool))] == ["CEID 1"]
        upgrade_to_head(engine)


def test_head_revision_is_alembics_head() -> None:
    assert HEAD_REVISION == _head(), (
        f"controller/db.py HEAD_REVISION is {HEAD_REVISION!r}, the newest migration {_head()!r}")


def test_only_a_database_to_migrate_imports_alembic(tmp_path: Path) -> None:
    """A new database and one at the newest revision open without Alembic (and Mako,
    Pygments); one stamped with an older revision is migrated by it. Each open in a
    fresh interpreter, as each `bumpline` command is."""
    url = f"sqlite:///{tmp_path / 'line.db'}"
    opened = ("import sys; from controller.store import Store; Store(sys.argv[1]).close(); "
              "print(sorted(m for m in ('alembic', 'mako', 'pygments') if m in sys.modules))")

    def imported() -> str:
        return subprocess.run([sys.executable, "-c", opened, url], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert imported() == "[]"  # new: built from the models and stamped
    assert imported() == "[]"  # at head
    engine = make_engine(url)
    try:
        _downgrade(engine, "0011_step_indexes")
        assert "'alembic'" in imported()  # an older revision: migrated
        assert _current(engine) == _head()
        assert imported() == "[]"
    finally:
        engine.dispose()


def test_opening_a_store_twice_is_harmless(db_url: str) -> None:
    url = db_url
    with Store(url) as first:
        first.create_lot(
            "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1], user="ann"
        )
    with Store(url) as second:
        assert second.get_lot("L1").wafer_count == 1
        assert _current(second.engine) == _head()


def test_migrations_ship_with_the_package() -> None:
    """Every migration file is covered by the package-data patterns in pyproject.toml."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["controller"]
    files = [
        p.relative_to(ROOT / "controller").as_posix()
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "migrations/env.py" in files and "migrations/versions/0001_initial_schema.py" in files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name

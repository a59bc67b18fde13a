"""Engine and schema setup for the controller's database.

One engine per process. SQLite (the default, a file next to the operator) runs
in WAL mode with ``synchronous=NORMAL``: a commit is an append to the log
without an fsync, so recording a wafer transition costs well under a
millisecond, and operators' query commands read while the controller writes.
PostgreSQL (``postgresql+psycopg://…``, the ``bumpline[postgres]`` extra) is
the other supported back end, for a fab server shared by several lines.

The schema is owned by Alembic: opening a database runs ``upgrade head``, unless it is
stamped with HEAD_REVISION already (then Alembic is not even imported). A new, empty
database is built from the models in one step and stamped with HEAD_REVISION (Alembic's
cookbook recipe "building an up to date database from scratch"), again without
Alembic: tests/test_migrations.py holds the two schemas equal, table by table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from controller.models import Base

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DB_URL = "sqlite:///bumpline.db"
DB_ENV = "BUMPLINE_DB"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/test_migrations.py holds it to Alembic's head). A
# database stamped with it opens without importing Alembic, which brings Mako and Pygments
# along: a quarter of every `bumpline` command's start (0.4 s of 1.6) and a few MB.
HEAD_REVISION = "0014_gem_and_audit_line"

# Marks a pooled connection whose next BEGIN takes the write lock (see begin_as_writer).
BEGIN_OPTION = "bumpline_sqlite_begin"
SQLITE_BUSY_TIMEOUT_MS = 5000


class EncodedJSON:
    """JSON text already checked and encoded (``persistence.base.finite_json``): a JSON
    column stores it as it is instead of encoding the value a second time. Not a ``str``:
    an engine without ``json_serializer`` fails loudly on it rather than storing a string."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def json_serializer(value: Any) -> str:
    """Every engine's JSON encoder: ``json.dumps``, except for text encoded already."""
    if type(value) is EncodedJSON:
        return value.text
    return json.dumps(value)


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used."""


def resolve_db_url(url: str | None) -> str:
    """The URL to use: the given one, else ``$BUMPLINE_DB``, else ./bumpline.db."""
    return url or os.environ.get(DB_ENV) or DEFAULT_DB_URL


def parse_db_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(
            f"database URL {url!r} is not a SQLAlchemy URL (expected e.g. sqlite:///bumpline.db)"
        ) from exc


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other back ends and in-memory SQLite."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """The process's engine for ``url`` (SQLite gets WAL, NORMAL sync, FKs, a busy timeout)."""
    parsed = parse_db_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        # psycopg prepares a statement it has run five times, and at any ROLLBACK clears
        # them with DEALLOCATE ALL: that would take the store's own prepared hot
        # statements with them (persistence/pg_batch.py, decision 0019). Off: those are
        # the ones that count.
        return create_engine(parsed, echo=echo, pool_pre_ping=True,
                             json_serializer=json_serializer,
                             connect_args={"prepare_threshold": None})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, echo=echo, pool_pre_ping=True,
                             json_serializer=json_serializer)
    in_memory = sqlite_file(parsed) is None
    kwargs: dict = {}
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(parsed, echo=echo, json_serializer=json_serializer, **kwargs)
    _configure_sqlite(engine, wal=not in_memory)
    return engine


def _to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``. On a new file two connections switching it at once: the
    loser is told "database is locked" at once, the busy timeout notwithstanding (it does
    not cover the journal-mode change; 7 times in 40 seen with two openers): tried again
    within the busy timeout, as a lock would be waited for."""
    import sqlite3
    import time

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)  # the other opener holds the file for a few milliseconds


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types
        # Let the BEGIN below drive transactions, not pysqlite's guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout first: switching a new file to WAL needs its lock, and a
            # second process opening it at the same moment must wait, not fail.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                _to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    # BEGIN in the dialect, not in a "begin" connection event: any connection event
    # makes SQLAlchemy dispatch events around every statement, which doubled the CPU
    # of a wafer transition (docs/decisions/0011-write-path.md). pysqlite's own
    # do_begin does nothing; ours begins DEFERRED, or IMMEDIATE when marked a writer.
    def _do_begin(connection) -> None:  # noqa: ANN001 - the pool's proxied DBAPI connection
        mode = connection.info.pop(BEGIN_OPTION, "DEFERRED")
        connection.driver_connection.execute(f"BEGIN {mode}")

    # mypy takes the dialect's method for a slot of the class (self included): this instance's
    # BEGIN is meant to be replaced.
    engine.dialect.do_begin = _do_begin  # type: ignore[method-assign, assignment]


def begin_as_writer(connection: Connection) -> None:
    """Mark ``connection``'s next BEGIN on SQLite as IMMEDIATE (takes the write lock up front).

    Two writers then queue on the lock instead of failing with "database is locked"
    when one upgrades a read to a write. Other back ends need nothing.
    """
    if connection.dialect.name == "sqlite":
        connection.connection.info[BEGIN_OPTION] = "IMMEDIATE"


def writer(engine: Engine) -> Engine:
    """The engine, for code that writes through ORM sessions (GEM's settings and spool):
    every transaction it begins takes the write lock up front (``begin_as_writer``).

    A listener on a copy of the engine, not on the engine: events on the store's own
    engine would slow every statement of the hot path."""
    option_engine = engine.execution_options()
    event.listen(option_engine, "begin", begin_as_writer)
    return option_engine


class MigrationError(Exception):
    """Alembic refused the upgrade (e.g. a database stamped by a newer bumpline)."""


def alembic_config() -> Config:
    """Alembic configuration built in code (no alembic.ini to install or find)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def stamped(engine: Engine) -> list[str]:
    """The revisions the database is stamped with ([] for a new one)."""
    with engine.connect() as connection:
        try:
            return list(connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars())
        except SQLAlchemyError:  # no such table: nothing was ever migrated
            return []


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision (creates every table on a new database).
    Raises MigrationError when Alembic refuses."""
    if stamped(engine) == [HEAD_REVISION]:
        return  # the usual case: nothing to do, and no Alembic to import for it
    with engine.connect() as connection:
        # Two processes opening one new database at once (two controllers started
        # together) queue: on SQLite for the write lock (a read upgraded to a write would
        # fail one of them with "database is locked"), on PostgreSQL for an advisory lock
        # (both would create the same tables). The second then finds the first's work:
        # on PostgreSQL only in READ COMMITTED (a server defaulting to REPEATABLE READ
        # would keep the snapshot taken before the lock was granted).
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection = connection.execution_options(isolation_level="READ COMMITTED")
        begin_as_writer(connection)
        with connection.begin():
            if postgres:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            tables = set(inspect(connection).get_table_names())
            if not tables - {VERSION_TABLE.name}:
                _create_at_head(connection)  # new: no history to replay
            elif _revisions(connection, tables) != [HEAD_REVISION]:
                _migrate(connection)


def migrate_with_alembic(engine: Engine) -> None:
    """``upgrade head`` through every revision, even from empty (the tests compare what
    that builds with what a new database gets)."""
    with engine.connect() as connection:
        begin_as_writer(connection)
        with connection.begin():
            _migrate(connection)


# Any fixed number: the key of the PostgreSQL advisory lock schema changes queue on.
SCHEMA_LOCK = 0x62756D70  # "bump"
# Alembic's own version table, as its ``stamp`` creates it.
VERSION_TABLE = Table("alembic_version", MetaData(),
                      Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def _revisions(connection: Connection, tables: set[str]) -> list[str]:
    if VERSION_TABLE.name not in tables:
        return []
    return list(connection.execute(select(VERSION_TABLE.c.version_num)).scalars())


def _create_at_head(connection: Connection) -> None:
    Base.metadata.create_all(connection)
    VERSION_TABLE.create(connection, checkfirst=True)
    connection.execute(VERSION_TABLE.delete())
    connection.execute(VERSION_TABLE.insert().values(version_num=HEAD_REVISION))


def _migrate(connection: Connection) -> None:
    from alembic import command  # only when there is something to migrate (see HEAD_REVISION)
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise MigrationError(str(exc)) from exc

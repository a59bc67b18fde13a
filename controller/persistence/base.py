"""One way to read and one way to write, for SQLite and PostgreSQL alike.

Every aggregate module (lots, wafers, requests, alarms, tool states, audit,
locks) works on a ``Database``: ``write()`` yields a SQLAlchemy Core connection
inside one short transaction (SQLite: ``BEGIN IMMEDIATE``, see
``controller.db``), ``hot_write()`` the same for the scheduler's hot
statements, ``read()`` a connection for reads. Core statements, not ORM
units of work: the same statements run on both back ends, and the per-wafer
CPU stays low (``docs/decisions/0011-write-path.md``).

``atomic()`` lets the scheduler group its hot writes (a transition and the step
record it opens) into one transaction: all commit, or none.

On PostgreSQL a hot transaction goes to the server in as few round trips as its
statements' results allow (``PgBatch``, ``docs/decisions/0019-one-round-trip.md``):
the same statements, sent together with BEGIN and COMMIT.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from controller import db
from controller.domain import RuleError
from controller.persistence.pg_batch import BATCH, Later, PgBatch, Prepared
from controller.persistence.records import jsonable


class StoreError(RuleError):
    """A store request that cannot be honoured; the message is for the user as it is."""


@contextmanager
def rules() -> Iterator[None]:
    """A refusal by the line's rules (``controller.domain``), raised as a ``StoreError``."""
    try:
        yield
    except StoreError:
        raise
    except RuleError as exc:
        raise StoreError(str(exc)) from None


def utc_now() -> datetime:
    return datetime.now(UTC)


def reason(exc: BaseException) -> str:
    """The driver's own words for a database failure, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).split("\n")[0]


_FLAT = frozenset({str, int, float, bool, type(None)})  # values JSON takes as they are
_ENCODE = json.JSONEncoder(allow_nan=False).encode  # json.dumps(..., allow_nan=False)


def finite_json(value: Any, what: str) -> db.EncodedJSON:
    """A parameters/results mapping checked and encoded once (NaN/inf have no JSON form):
    the JSON column stores the text as it is (``db.json_serializer``). Already encoded
    (the journal checks what it commits later): as it is."""
    if type(value) is db.EncodedJSON:
        return value
    try:
        if type(value) is dict and all(type(k) is str and type(v) in _FLAT
                                       for k, v in value.items()):
            return db.EncodedJSON(_ENCODE(value))  # most measurements: as they are
        return db.EncodedJSON(_ENCODE(jsonable(value)))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} cannot be stored: {exc}") from None


HOT_CURSOR = "bumpline_hot_cursor"  # Connection.info: the DBAPI cursor hot statements share


class HotStatement:
    """A Core statement the scheduler runs tens of times per wafer: compiled once per back end.

    ``run`` executes it on the DBAPI cursor of a connection inside an open
    transaction, with the very bind processors SQLAlchemy would apply (UTC times,
    JSON): the same SQL and the same stored values as ``conn.execute(statement)``,
    without SQLAlchemy's per-execute bookkeeping, which was most of a transition's
    CPU (``docs/decisions/0011-write-path.md``). ``keys`` names the columns an
    INSERT sets.
    """

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = (
            weakref.WeakKeyDictionary()
        )
        # The last dialect's form, checked by identity: a process has one engine, so this
        # skips the WeakKeyDictionary's lookup on nearly every run.
        self._last: tuple[Dialect | None, _Compiled | None] = (None, None)

    def _compiled_for(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        last_dialect, compiled = self._last
        if last_dialect is dialect and compiled is not None:
            return compiled
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _Compiled(self, dialect)
        self._last = (dialect, compiled)
        return compiled

    def run(self, conn: Connection, values: Mapping[str, Any]) -> tuple[Any, int]:
        """(first row or None, rows affected)."""
        compiled = self._compiled_for(conn)
        info = conn.info
        batch = info.get(BATCH)
        if batch is not None:  # PostgreSQL, inside a hot transaction
            result = batch.add(compiled.prepared(), compiled.params(values))
            return result.row, result.rowcount
        cursor = _cursor(conn, info)
        cursor.execute(compiled.sql, compiled.params(values))
        if cursor.description is None:
            return None, cursor.rowcount
        # Every row read, so the statement is done: SQLite holds no snapshot for a
        # statement left part-read on a cursor that stays open.
        rows = cursor.fetchall()
        return (rows[0] if rows else None), cursor.rowcount

    def later(self, conn: Connection, values: Mapping[str, Any]) -> Later:
        """``run``, its result read when asked for (``Later.row``, ``Later.rowcount``): on
        PostgreSQL the statement waits to go with the next one whose result is needed, or
        with the COMMIT. Elsewhere it runs now."""
        batch = conn.info.get(BATCH)
        if batch is not None:
            compiled = self._compiled_for(conn)
            return batch.add(compiled.prepared(), compiled.params(values), wait=False)
        return Later.done(*self.run(conn, values))

    def send(self, conn: Connection, values: Mapping[str, Any]) -> None:
        """``run`` for a statement whose result nobody reads (an audit line, a curve)."""
        self.later(conn, values)

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[Any]:
        """Every row of a read, as the DBAPI returns it (no result processing)."""
        compiled = self._compiled_for(conn)
        batch = conn.info.get(BATCH)
        if batch is not None:
            return batch.add(compiled.prepared(), compiled.params(values), every_row=True).rows
        cursor = _cursor(conn, conn.info)
        cursor.execute(compiled.sql, compiled.params(values))
        return list(cursor.fetchall())


def _cursor(conn: Connection, info: dict[Any, Any]) -> Any:
    """The connection's DBAPI cursor for hot statements, made once (a cursor per statement
    was a tenth of a statement's CPU); each statement's rows are all read before the
    next. Kept in ``Connection.info``, which lives and is cleared with the DBAPI
    connection."""
    cursor = info.get(HOT_CURSOR)
    if cursor is None:
        cursor = info[HOT_CURSOR] = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    return cursor


class _Compiled:
    def __init__(self, hot: HotStatement, dialect: Dialect) -> None:
        compiled = hot.statement.compile(dialect=dialect, column_keys=hot.keys)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        # Positional back ends (SQLite): each parameter's name and processor, in order.
        self.order: list[tuple[str, Callable[[Any], Any] | None]] | None = None
        if compiled.positional:
            self.order = [(n, self.processors.get(n)) for n in compiled.positiontup]

        self._prepared: Prepared | None = None

    def prepared(self) -> Prepared:
        """Its server-side form for a ``PgBatch`` (PostgreSQL)."""
        if self._prepared is None:
            self._prepared = Prepared(self.sql)
        return self._prepared

    def params(self, values: Mapping[str, Any]) -> Any:
        if self.order is not None:
            return [values[n] if p is None else p(values[n]) for n, p in self.order]
        processors = self.processors
        return {n: processors[n](v) if n in processors else v for n, v in values.items()}


class Database:
    """The engine, the clock and the transactions every aggregate module shares.

    Writes go through one connection the store keeps open (a pool checkout per
    transition was a third of the CPU of a write), one thread at a time; reads
    take pooled connections, so a reader never waits for a writer.
    """

    def __init__(self, engine: Engine, now: Callable[[], datetime],
                 line_id: str | None = None) -> None:
        self.engine = engine
        self.now = now
        self.line_id = line_id  # the line whose controller or screen acts (the audit log's)
        self.dialect = engine.dialect.name
        # In-memory SQLite is one connection shared by every checkout: a transaction
        # held open across calls (atomic) would be every reader's transaction too.
        self._shared = self.dialect == "sqlite" and db.sqlite_file(engine.url) is None
        self._writer: Connection | None = None
        # PostgreSQL through psycopg 3: hot transactions batched (pg_batch.py); psycopg
        # drops its own auto-prepared statements on this engine (controller/db.py).
        self._batched = self.dialect == "postgresql" and engine.dialect.driver == "psycopg"
        self._lock = threading.RLock()
        self._local = threading.local()

    @property
    def _snapshot(self) -> Connection | None:
        """This thread's open read snapshot, if any."""
        return getattr(self._local, "snapshot", None)

    @property
    def _grouped(self) -> Connection | None:
        """This thread's open ``atomic()`` block (hot writes join its transaction)."""
        return getattr(self._local, "grouped", None)

    def _open_writer(self) -> Connection:
        if self._writer is not None and self._writer.invalidated:
            self._writer.close()  # its DBAPI connection died (a server restart): a new one
        if self._writer is None or self._writer.closed:
            self._writer = self.engine.connect()
        return self._writer

    def _writer_conn(self) -> Connection:
        writer = self._open_writer()
        db.begin_as_writer(writer)  # for the BEGIN that follows
        return writer

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One committed transaction for any Core statements."""
        if self._grouped is not None:
            raise RuntimeError(
                "only the scheduler's hot writes (transitions, steps, intents) may run "
                "inside Store.atomic()"
            )
        with self._lock:
            conn = self._writer_conn()
            with conn.begin():
                yield conn

    @contextmanager
    def _raw_transaction(self, conn: Connection) -> Iterator[None]:
        # BEGIN and COMMIT straight on the DBAPI connection: SQLAlchemy's transaction
        # bookkeeping was a fifth of a transition's CPU.
        raw = conn.connection.dbapi_connection
        if self._batched:
            with self._pg_batch(conn, raw):
                yield
            return
        if self.dialect == "sqlite":
            raw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        try:
            yield
        except BaseException:
            try:
                raw.rollback()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - the connection itself is gone: a new one next
                conn.invalidate()
            raise
        raw.commit()  # type: ignore[union-attr]

    @contextmanager
    def _pg_batch(self, conn: Connection, raw: Any) -> Iterator[None]:
        """A hot transaction as a ``PgBatch``: psycopg in autocommit meanwhile, so that
        it sends no BEGIN of its own (the batch sends it with the first statements)."""
        batch = PgBatch(raw, self.engine.dialect.loaded_dbapi.ClientCursor, conn.info)
        raw.autocommit = True
        conn.info[BATCH] = batch
        try:
            try:
                yield
            finally:
                del conn.info[BATCH]
            batch.flush(commit=True)
        except BaseException:
            try:
                batch.rollback()
            except Exception:  # noqa: BLE001 - the connection itself is gone: a new one next
                conn.invalidate()
            raise
        finally:
            if not conn.invalidated:
                try:
                    raw.autocommit = False
                except Exception:  # noqa: BLE001 - lost meanwhile (a server restart)
                    conn.invalidate()

    @contextmanager
    def hot_write(self) -> Iterator[Connection]:
        """``write()`` for a transaction of ``HotStatement``s only (the scheduler's hot path).

        Only ``HotStatement.run`` may use the connection inside (a ``conn.execute``
        would begin a second transaction); inside ``atomic()`` it joins the open one.
        """
        grouped = self._grouped
        if grouped is not None:
            yield grouped
            return
        with self._lock:
            conn = self._writer_conn()
            with self._raw_transaction(conn):
                yield conn

    def peek(self, hot: HotStatement, values: Mapping[str, Any]) -> Any:
        """The first row of a ``HotStatement`` read, on the writer's connection and outside
        any transaction of ours (SQLite reads in autocommit; elsewhere the read's implicit
        transaction ends at once). For the controller's once-a-second "any request?": a
        pooled read through SQLAlchemy cost ten times more CPU
        (``docs/decisions/0011-write-path.md``). Inside ``atomic()`` it reads in that
        transaction."""
        rows = self.peek_all(hot, values)
        return rows[0] if rows else None

    def peek_all(self, hot: HotStatement, values: Mapping[str, Any]) -> list[Any]:
        """``peek``, every row (raw DBAPI values: for "has anything changed?")."""
        grouped = self._grouped
        if grouped is not None:
            return hot.rows(grouped, values)
        with self._lock:
            writer = self._open_writer()
            try:
                rows = hot.rows(writer, values)
                if self.dialect != "sqlite":
                    writer.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
            except Exception:
                raw = writer.connection.dbapi_connection
                if getattr(raw, "closed", False):
                    writer.invalidate()  # lost (a server restart): the next look reconnects
                elif self.dialect != "sqlite":
                    # A statement that failed (cancelled, say) leaves PostgreSQL's implicit
                    # transaction aborted: every later hot write on this connection would
                    # fail with it. Ended here, as the look's own rollback would have.
                    try:
                        raw.rollback()  # type: ignore[union-attr]
                    except Exception:  # noqa: BLE001 - gone after all: a new one next
                        writer.invalidate()
                raise
            return rows

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """The hot writes inside share one transaction: all commit, or none.

        Reads inside do not see them until the block ends (they use other
        connections); other writes are refused inside. On in-memory SQLite each
        write commits on its own.
        """
        if self._grouped is not None or self._shared:
            yield
            return
        with self._lock:
            conn = self._writer_conn()
            with self._raw_transaction(conn):
                self._local.grouped = conn
                try:
                    yield
                finally:
                    self._local.grouped = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads: the open snapshot's, else a pooled one."""
        snapshot = self._snapshot
        if snapshot is not None:
            yield snapshot
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the database (one read transaction)."""
        if self._snapshot is not None:
            yield
            return
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                self._local.snapshot = conn
                try:
                    yield
                finally:
                    self._local.snapshot = None

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()

"""PostgreSQL: a hot transaction in as few round trips as its statements' results allow.

psycopg sends BEGIN, each statement and COMMIT as round trips of their own: four
for a wafer transition (wafer UPDATE, event INSERT), each about a
tenth of a millisecond on localhost and more on a plant network, where SQLite
commits in-process. ``PgBatch`` queues the statements of one hot transaction
and sends them together, BEGIN first, as one simple query: when a result is
needed (``HotStatement.run``, a ``Later`` read), else with the COMMIT
(docs/decisions/0019-one-round-trip.md).

* The statements are the very ones SQLAlchemy compiled (decision 0011): each is
  prepared once per connection on the server (``PREPARE``, sent in the same
  query the first time) and run as ``EXECUTE name(values)``, the values rendered
  as literals by psycopg's own client-side binding (``ClientCursor.mogrify``).
  Prepared, because parsing and planning each statement again cost more than
  the round trips saved (psycopg prepares a statement it has run five times).
* The server runs them in the same order inside one transaction; an error
  anywhere stops the rest (COMMIT included) and the transaction is rolled back.
* Only the store's hot writes go this way; every other write is SQLAlchemy's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

BATCH = "bumpline_pg_batch"  # Connection.info: the connection's open PgBatch
# Connection.info (it lives as long as the DBAPI connection, a session of the server, and
# is cleared when the pool closes or invalidates it): the names prepared there, and its
# client-side renderer (a psycopg ClientCursor's mogrify). Not a WeakKeyDictionary keyed
# by the connection: the renderer's cursor holds the connection, so no entry would die.
PREPARED = "bumpline_pg_prepared"
RENDER = "bumpline_pg_render"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_NAMES = itertools.count(1)


class Later:
    """A hot statement's result, on PostgreSQL read from the server when first asked for."""

    __slots__ = ("_batch", "_row", "_rowcount", "_rows")

    def __init__(self, batch: PgBatch | None) -> None:
        self._batch = batch
        self._row: Any = None
        self._rowcount = -1
        self._rows: list[Any] = []

    @classmethod
    def done(cls, row: Any, rowcount: int, rows: list[Any] | None = None) -> Later:
        later = cls(None)
        later._row, later._rowcount, later._rows = row, rowcount, rows or []
        return later

    def _wait(self) -> None:
        if self._batch is not None:
            self._batch.flush()
            if self._batch is not None:  # still: its transaction ended before it was sent
                raise RuntimeError("the statement's transaction was rolled back before it ran")

    @property
    def row(self) -> Any:
        """The first row, or None."""
        self._wait()
        return self._row

    @property
    def rowcount(self) -> int:
        self._wait()
        return self._rowcount

    @property
    def rows(self) -> list[Any]:
        self._wait()
        return self._rows


class Prepared:
    """A compiled statement's server-side form: its name, its PREPARE, its values' order."""

    def __init__(self, sql: str) -> None:
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # %% is a literal %
                return "%"
            if name not in order:
                order.append(name)
            return f"${order.index(name) + 1}"

        body = _PLACEHOLDER.sub(number, sql)
        self.name = f"bumpline_{next(_NAMES)}"
        self.prepare = f"PREPARE {self.name} AS {body}"
        self.order = order
        self.values = ", ".join(["%s"] * len(order))  # for mogrify


class PgBatch:
    """One hot transaction's statements, sent together (see the module's docstring)."""

    def __init__(self, raw: Any, client_cursor: Callable[[Any], Any],
                 kept: dict[str, Any]) -> None:
        """``kept``: the connection's ``Connection.info``."""
        self.raw = raw
        render = kept.get(RENDER)
        if render is None:
            render = kept[RENDER] = client_cursor(raw).mogrify
        self.render: Callable[[str, Any], str] = render
        self.prepared: set[str] = kept.setdefault(PREPARED, set())  # a new connection: none
        self.queue: list[str] = ["BEGIN"]
        self.waiting: list[tuple[Later | None, bool]] = [(None, False)]
        self.preparing: list[str] = []  # names whose PREPARE is in the queue
        self.prepared_here: list[str] = []  # names this transaction prepared (a rollback
        # undoes a PREPARE made inside the transaction)
        self.began = False  # BEGIN has gone to the server

    def add(self, form: Prepared, params: Mapping[str, Any], *, wait: bool = True,
            every_row: bool = False) -> Later:
        """Queue ``form`` with ``params`` (bind-processed values by name); ``wait``: send
        the queue now (the caller reads the result at once)."""
        if form.name not in self.prepared and form.name not in self.preparing:
            self.queue.append(form.prepare)
            self.waiting.append((None, False))
            self.preparing.append(form.name)
        if form.order:
            values = self.render(form.values, [params[n] for n in form.order])
            self.queue.append(f"EXECUTE {form.name}({values})")
        else:
            self.queue.append(f"EXECUTE {form.name}")
        later = Later(self)
        self.waiting.append((later, every_row))
        if wait:
            self.flush()
        return later

    def flush(self, *, commit: bool = False) -> None:
        """Send what is queued (``commit``: and COMMIT); read every result in order."""
        if commit:
            if not self.began and len(self.queue) == 1:
                return  # nothing was written: nothing to send
            self.queue.append("COMMIT")
            self.waiting.append((None, False))
        if not self.queue:
            return
        query, waiting = "; ".join(self.queue), self.waiting
        self.queue, self.waiting = [], []
        cursor = self.raw.cursor()
        try:
            self.began = True
            cursor.execute(query)  # no parameters: the simple query protocol, one round trip
            self.prepared.update(self.preparing)
            self.prepared_here += self.preparing
            self.preparing = []
            for n, (later, every_row) in enumerate(waiting):
                if n:
                    cursor.nextset()
                if later is None:
                    continue
                if cursor.description is not None:
                    if every_row:
                        later._rows = cursor.fetchall()
                    else:
                        later._row = cursor.fetchone()
                later._rowcount = cursor.rowcount
                later._batch = None
        finally:
            cursor.close()

    def rollback(self) -> None:
        """End the transaction: nothing of it stays, its PREPAREs included (those in a
        query that failed part way may or may not have run: the session says)."""
        self.queue, self.waiting = [], []
        if not self.began:
            return
        self.raw.execute("ROLLBACK")
        if self.preparing or self.prepared_here:
            self.prepared.difference_update(self.prepared_here)
            held = self.raw.execute(
                "SELECT name FROM pg_prepared_statements WHERE name LIKE 'bumpline\\_%'")
            self.prepared.update(name for (name,) in held)
            self.preparing, self.prepared_here = [], []

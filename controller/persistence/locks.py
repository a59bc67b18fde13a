"""Controller locks: one controller per line, and one per lot, on any back end.

Two controllers on the same line would fight over its tools; two on the same lot
would run its wafers twice. A lock is a row in ``controller_locks`` (one per
resource, ``line:<id>`` or ``lot:<id>``) holding a lease: the holder renews it
(a heartbeat) and releases it when it stops. Nobody has to remove a lock by
hand after a crash: a lease past its expiry is stale, and so is one held on
this host by a process that no longer exists (a SIGKILLed controller is taken
over at once, without waiting for the lease to run out).

The lease is judged by the store's clock (UTC wall time): controllers on
different hosts sharing one PostgreSQL need their clocks in step (NTP), far
within the lease. Acquiring runs in a write transaction: SQLite's ``BEGIN
IMMEDIATE`` and PostgreSQL's ``SELECT … FOR UPDATE`` (plus the primary key for
two first inserts) make it one winner.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from controller.models import ControllerLock
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, StoreError

_LOCKS = ControllerLock.__table__

DEFAULT_LEASE_S = 30.0  # a killed holder on another host blocks the line at most this long


@dataclass(frozen=True)
class LockInfo:
    """A lock as held: what, by whom (host, pid, token), since when, until when."""

    resource: str
    token: str
    host: str
    pid: int
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    pid_started: int | None = None  # the holder process's start (process_start)

    @property
    def what(self) -> str:
        """``line printer-bay-2`` / ``lot C1``, for messages."""
        kind, _, name = self.resource.partition(":")
        return f"{kind} {name}"

    def describe(self) -> str:
        who = f" ({self.holder})" if self.holder else ""
        return (
            f"host {self.host}, pid {self.pid}{who}, since "
            f"{self.acquired_at.isoformat(timespec='seconds')}, lease until "
            f"{self.expires_at.isoformat(timespec='seconds')}"
        )


class LockHeldError(StoreError):
    """The resource is held by a live controller; ``holder`` says who."""

    def __init__(self, holder: LockInfo) -> None:
        super().__init__(
            f"{holder.what} is already run by another controller: {holder.describe()}"
        )
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who takes a lock: a process of a host, and a few words for people ("bumpline run by
    ann"). Left out, the host and pid are this process's; ``pid_started`` (the holder
    process's start, see ``process_start``) is read from the system for a process of this
    host. Tests name other hosts and processes."""

    text: str = ""
    host: str | None = None
    pid: int | None = None
    pid_started: int | None = None

    def process(self) -> tuple[str, int, int | None]:
        """(host, pid, pid_started) with what was left out filled in."""
        here = socket.gethostname()
        host = self.host or here
        pid = os.getpid() if self.pid is None else self.pid
        started = self.pid_started
        if started is None and host == here:
            started = process_start(pid)
        return host, pid, started


THIS_PROCESS = Holder()


def line_resource(line_id: str) -> str:
    return f"line:{line_id}"


def lot_resource(lot_id: str) -> str:
    return f"lot:{lot_id}"


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists on this host (not: we may not signal it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: it exists
        return False
    return False


def process_start(pid: int) -> int | None:
    """When process ``pid`` of this host started (Linux: clock ticks after boot, field 22 of
    /proc/<pid>/stat), or None where that cannot be read (no /proc, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()  # the name in (…) may hold spaces
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def holder_gone(lock: LockInfo) -> str | None:
    """Why the process that took ``lock`` on this host no longer runs, or None if it may."""
    if process_gone(lock.pid):
        return "its process is gone"
    if lock.pid_started is not None:
        started = process_start(lock.pid)
        if started is not None and started != lock.pid_started:
            return f"its process is gone (pid {lock.pid} now belongs to another process)"
    return None


def _info(row: object) -> LockInfo:
    return LockInfo(**{name: getattr(row, name) for name in LockInfo.__dataclass_fields__})


def _stale(lock: LockInfo, now: datetime, host: str) -> bool:
    return lock.expires_at <= now or (lock.host == host and holder_gone(lock) is not None)


def acquire(
    database: Database, resource: str, holder: Holder = THIS_PROCESS, *,
    lease_s: float = DEFAULT_LEASE_S,
) -> LockInfo:
    """Take ``resource`` for ``holder``, or raise ``LockHeldError`` naming the one holding it.

    A stale lock (lease expired, or its process gone from this host) is taken over;
    the audit log says whose it was.
    """
    if not lease_s > 0:
        raise StoreError(f"a lock lease must be > 0 s, got {lease_s!r}")
    host, pid, pid_started = holder.process()
    now = database.now()
    mine = {
        "resource": resource,
        "token": uuid.uuid4().hex,
        "host": host,
        "pid": pid,
        "pid_started": pid_started,
        "holder": holder.text[:200],
        "acquired_at": now,
        "renewed_at": now,
        "expires_at": now + timedelta(seconds=lease_s),
    }
    try:
        with database.write() as conn:
            current = _current(conn, resource, for_update=True)
            if current is None:
                conn.execute(insert(_LOCKS), mine)
            elif _stale(current, now, host):
                conn.execute(update(_LOCKS).where(_LOCKS.c.resource == resource).values(mine))
                _audit_takeover(conn, now, current, host, pid, database.line_id)
            else:
                raise LockHeldError(current)
    except IntegrityError:  # another controller inserted it first
        with database.read() as conn:
            current = _current(conn, resource)
        if current is None:  # and released it already: say so rather than guess
            raise StoreError(f"{resource}: lock contended, try again") from None
        raise LockHeldError(current) from None
    return LockInfo(**mine)  # type: ignore[arg-type]


def _current(conn: Connection, resource: str, *, for_update: bool = False) -> LockInfo | None:
    query = select(_LOCKS).where(_LOCKS.c.resource == resource)
    if for_update:
        query = query.with_for_update()  # PostgreSQL row lock; SQLite holds the write lock
    row = conn.execute(query).first()
    return None if row is None else _info(row)


def _audit_takeover(
    conn: Connection, now: datetime, old: LockInfo, host: str, pid: int, line_id: str | None
) -> None:
    why = ("its lease had expired" if old.expires_at <= now
           else holder_gone(old) or "its process is gone")
    add_audit(
        conn,
        now,
        "controller",
        "lock.takeover",
        f"{old.what} taken over by host {host} pid {pid} from {old.describe()}: {why}",
        lot_id=old.resource.partition(":")[2] if old.resource.startswith("lot:") else None,
        line_id=line_id,
    )


def renew(database: Database, lock: LockInfo, *, lease_s: float = DEFAULT_LEASE_S) -> LockInfo:
    """Extend the lease (the heartbeat); a lock taken over meanwhile is an error."""
    now = database.now()
    expires = now + timedelta(seconds=lease_s)
    with database.write() as conn:
        done = conn.execute(
            update(_LOCKS)
            .where(_LOCKS.c.resource == lock.resource, _LOCKS.c.token == lock.token)
            .values(renewed_at=now, expires_at=expires)
        ).rowcount
        if not done:
            current = _current(conn, lock.resource)
    if not done:
        by = f": now held by {current.describe()}" if current is not None else ""
        raise StoreError(f"this controller lost its lock on {lock.what}{by}")
    return LockInfo(**{**lock.__dict__, "renewed_at": now, "expires_at": expires})


def release(database: Database, lock: LockInfo) -> bool:
    """Give the lock up; False when it was no longer ours (taken over as stale)."""
    with database.write() as conn:
        return bool(
            conn.execute(
                delete(_LOCKS).where(
                    _LOCKS.c.resource == lock.resource, _LOCKS.c.token == lock.token
                )
            ).rowcount
        )


def holder(database: Database, resource: str, *, live_only: bool = False) -> LockInfo | None:
    """Who holds ``resource`` now (stale or not), or None; ``live_only``: None for a stale
    lease too (expired, or its process gone from this host), which nobody runs."""
    with database.read() as conn:
        current = _current(conn, resource)
    if current is not None and live_only and _stale(current, database.now(),
                                                    socket.gethostname()):
        return None
    return current

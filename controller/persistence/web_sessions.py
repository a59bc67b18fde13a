"""Operator-screen sessions ended by logging out (migration 0012_web_ended_sessions).

A session of the screen lives only in its signed cookie (controller/web/auth.py):
nothing on the server says it exists, so a copy of the cookie taken before a logout
is refused only by remembering that the session ended. Remembered here, in the
database, every process that checks a session sees it: another screen sharing the
signing key (``bumpline web`` beside ``bumpline serve --web``, or a second line's
controller) and the same screen after a restart with that key.

One row per ended session, keyed by the SHA-256 of its id (the session's CSRF token,
random at each login): the table holds nothing a cookie could be made or used with.
A row is kept until the cookie has expired by itself (``expires_at``: the logout plus
the cookie's lifetime, later than the login plus it). Rows past it are pruned at each
logout, in the logout's own transaction, so the table holds at most the logouts of one
cookie lifetime. The times are the store's clock, the cookie's age the screen host's:
hosts sharing a database need their clocks in step (NTP), as the controller leases do.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, exists, select
from sqlalchemy.exc import IntegrityError

from controller.models import WebEndedSession
from controller.persistence.audit import add_audit
from controller.persistence.base import Database

_ENDED = WebEndedSession.__table__
LOGOUT = "web.logout"  # the audit action of a logout, committed with its row


def session_hash(session_id: str) -> str:
    """The key a session's id is kept under (hex SHA-256)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def end_web_session(database: Database, session_id: str, *, user: str,
                    max_age_s: float) -> None:
    """Record that ``user`` ended the session ``session_id`` (logged out), with its audit
    line, and prune the rows whose cookies have expired since. ``max_age_s``: how long a
    cookie lives from its login; the row is kept that long from now."""
    now = database.now()
    key = session_hash(session_id)
    try:
        with database.write() as conn:
            _prune(conn, now)
            if conn.execute(select(exists().where(_ENDED.c.session_hash == key))).scalar():
                return  # ended already: a second logout with a copy of the cookie
            conn.execute(_ENDED.insert().values(
                session_hash=key, user_name=user, ended_at=now,
                expires_at=now + timedelta(seconds=max_age_s)))
            add_audit(conn, now, user, LOGOUT, line_id=database.line_id)
    except IntegrityError:
        # PostgreSQL: another process logged the same cookie out at the same moment (SQLite
        # writers take turns). The session is ended, and that logout is audited.
        if not web_session_ended(database, session_id):
            raise


def web_session_ended(database: Database, session_id: str) -> bool:
    """Whether the session ``session_id`` was ended by a logout (and its cookie may still
    be alive)."""
    with database.read() as conn:
        return bool(conn.execute(
            select(exists().where(_ENDED.c.session_hash == session_hash(session_id)))).scalar())


def prune_web_sessions(database: Database) -> int:
    """Forget the ended sessions whose cookies have expired by now; how many."""
    with database.write() as conn:
        return _prune(conn, database.now())


def _prune(conn: Connection, now: datetime) -> int:
    return conn.execute(delete(_ENDED).where(_ENDED.c.expires_at < now)).rowcount

"""The operator screen's sessions ended by logging out, as the store keeps them
(controller/persistence/web_sessions.py), on SQLite and PostgreSQL: shared by every
store on the database, holding no session id, pruned once the cookie has expired."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from controller.models import WebEndedSession
from controller.persistence.web_sessions import session_hash
from controller.store import Store

MAX_AGE_S = 12 * 3600
START = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
WAIT_TRIES = 3000  # 10 ms looks at the server: a hang guard of 30 s, not a timing


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at


def _rows(store: Store) -> list[tuple[str, datetime]]:
    table = WebEndedSession.__table__
    with store.engine.connect() as conn:
        return sorted((r.user_name, r.expires_at) for r in conn.execute(select(table)))


def test_an_ended_session_is_seen_by_every_store_on_the_database(db_url: str) -> None:
    with Store(db_url) as one, Store(db_url) as other:
        assert not other.web_session_ended("session-a")
        one.end_web_session("session-a", user="olga", max_age_s=MAX_AGE_S)
        one.end_web_session("session-a", user="olga", max_age_s=MAX_AGE_S)  # a copy's logout
        assert other.web_session_ended("session-a")
        assert not other.web_session_ended("session-b")
        assert [(e.actor, e.action) for e in other.audit_log()] == [("olga", "web.logout")]
        table = WebEndedSession.__table__
        with other.engine.connect() as conn:
            [row] = conn.execute(select(table)).all()
        assert "session-a" not in repr(tuple(row))  # only its hash: no id to reuse


def test_pruning_removes_only_sessions_whose_cookies_have_expired(db_url: str) -> None:
    clock = Clock()
    with Store(db_url, now=clock) as store:
        store.end_web_session("early", user="olga", max_age_s=MAX_AGE_S)
        clock.at = START + timedelta(hours=6)
        store.end_web_session("later", user="erik", max_age_s=MAX_AGE_S)
        clock.at = START + timedelta(seconds=MAX_AGE_S)  # "early"'s cookie may still be taken
        assert store.prune_web_sessions() == 0
        assert store.web_session_ended("early")
        clock.at += timedelta(microseconds=1)
        assert store.prune_web_sessions() == 1
        assert not store.web_session_ended("early")
        assert store.web_session_ended("later")
        assert _rows(store) == [("erik", START + timedelta(hours=18))]
        # A logout prunes too, in its own transaction.
        clock.at = START + timedelta(hours=18, seconds=1)
        store.end_web_session("last", user="ada", max_age_s=MAX_AGE_S)
        assert _rows(store) == [("ada", clock.at + timedelta(seconds=MAX_AGE_S))]
        assert not store.web_session_ended("later")
        assert store.web_session_ended("last")


def test_a_cookie_logged_out_by_two_processes_at_once_is_ended_once(pg_url: str) -> None:
    """PostgreSQL (SQLite's writers take turns): another process commits the same session's
    end while this one's INSERT waits on it. This logout then finds the session ended, and
    says nothing (no error page for the second of two logouts)."""
    with Store(pg_url) as store:
        table = WebEndedSession.__table__
        with store.engine.connect() as other, store.engine.connect() as watch:
            pending = other.begin()
            other.execute(table.insert().values(
                session_hash=session_hash("twice"), user_name="olga", ended_at=START,
                expires_at=START + timedelta(seconds=MAX_AGE_S)))
            failed: list[BaseException] = []

            def log_out() -> None:
                try:
                    store.end_web_session("twice", user="olga", max_age_s=MAX_AGE_S)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failed.append(exc)

            thread = threading.Thread(target=log_out)
            thread.start()
            waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND datname = current_database()")
            for _ in range(WAIT_TRIES):  # until its INSERT waits on the other's row
                if watch.execute(waiting).scalar():
                    break
                watch.rollback()
                time.sleep(0.01)
            else:
                raise AssertionError("the logout never waited on the other transaction")
            pending.commit()
            thread.join(timeout=30)
        assert not thread.is_alive() and failed == []
        assert store.web_session_ended("twice")
        assert [e.action for e in store.audit_log()] == []  # the other process audits its own

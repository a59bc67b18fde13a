"""GEM persistence: settings that must survive a restart, and the E30 spool.

Both live in the controller's database (tables ``gem_settings`` and
``gem_spool``, migration ``0002_gem``), written through the same engine as the
store, so a spooled event survives a controller restart exactly like a wafer
record does. Both are a line's (0014): where lines share a database, each line's
equipment has its own host link, control state, reports and spool.

Spooling: while the host cannot be reached, spoolable messages (those the
host named in S2F43; S5F1 and S6F11 until it does) are appended here instead of
being lost. The E30 spool state (SPOOL ACTIVE from the first message spooled
until the spool is emptied) is kept here too, with the times SPOOLSTARTTIME and
SPOOLFULLTIME report; spool_capability.py decides when it changes. A message
leaves the spool only after the host acknowledged it: nothing lost, nothing
twice. ``MAXSPOOLSIZE`` bounds the spool; when full, ``OVERWRITESPOOL`` decides
between dropping the oldest and refusing the newest (both counted in
``SPOOLCOUNTTOTAL`` and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select
from sqlalchemy.orm import Session

from controller.db import writer
from controller.models import GemSetting, GemSpooled

log = logging.getLogger("controller.gem.spool")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Spooled:
    id: int
    stream: int
    function: int
    body: bytes
    what: str


_EMPTIED = {"total": 0, "full": False, "lost": 0, "active": False}  # SPOOL INACTIVE


def gem_lines(engine: Engine) -> list[str]:
    """The lines with GEM settings or spooled messages in the database, in order."""
    with Session(engine) as session:
        return sorted(set(session.scalars(select(GemSetting.line_id).distinct()))
                      | set(session.scalars(select(GemSpooled.line_id).distinct())))


class GemDatabase:
    """One line's settings and spool on the controller's engine (``Store.engine``);
    ``line_id`` "" for a store that names no line."""

    def __init__(self, engine: Engine, *, line_id: str = "",
                 now: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._now = now
        self.line_id = line_id
        self._mine = GemSpooled.line_id == line_id

    def read_session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def write_session(self) -> Session:
        return Session(self._writer, expire_on_commit=False)

    def now(self) -> datetime:
        return self._now()

    # -- settings (JSON values under a key)

    def load(self, key: str, default: Any = None) -> Any:
        with Session(self._engine) as session:
            row = session.get(GemSetting, (self.line_id, key))
            return default if row is None else row.value["v"]

    def save(self, key: str, value: Any) -> None:
        with Session(self._writer) as session, session.begin():
            self._put(session, key, value)

    def _put(self, session: Session, key: str, value: Any) -> None:
        row = session.get(GemSetting, (self.line_id, key))
        if row is None:
            session.add(GemSetting(line_id=self.line_id, key=key, value={"v": value},
                                   updated_at=self._now()))
        else:
            row.value = {"v": value}
            row.updated_at = self._now()

    def take(self, key: str) -> Any:
        """Read and remove a value in one transaction (a request handled once)."""
        with Session(self._writer) as session, session.begin():
            row = session.get(GemSetting, (self.line_id, key))
            if row is None:
                return None
            session.delete(row)
            return row.value["v"]

    # -- the spool

    def spool(
        self, stream: int, function: int, body: bytes, what: str, *, limit: int, overwrite: bool
    ) -> bool:
        """Append a message; False when the spool is full and keeps its oldest (lost, logged)."""
        with Session(self._writer) as session, session.begin():
            count = self._count(session)
            state = self._spool_state(session)
            state["total"] += 1
            stored = True
            if count >= limit:
                if not state["full"]:  # SPOOL NOT FULL -> SPOOL FULL (E30): SPOOLFULLTIME
                    state["filled_at"] = self._now().isoformat()
                state["full"] = True
                if overwrite:
                    oldest = session.scalars(
                        select(GemSpooled.id).where(self._mine).order_by(GemSpooled.id)
                        .limit(count - limit + 1)
                    ).all()
                    session.execute(delete(GemSpooled).where(GemSpooled.id.in_(oldest)))
                    log.warning("spool full (%d): dropped the oldest %d message(s) for %s",
                                limit, len(oldest), what)
                else:
                    stored = False
                    state["lost"] += 1
                    log.warning("spool full (%d): %s not spooled (OVERWRITESPOOL false)",
                                limit, what)
            if stored:
                state["active"] = True  # a message in the spool: SPOOL ACTIVE
                session.add(GemSpooled(line_id=self.line_id, stream=stream, function=function,
                                       body=body, what=what, spooled_at=self._now()))
            self._save_spool_state(session, state)
        return stored

    def spooled(self, limit: int | None = None) -> list[Spooled]:
        """The oldest spooled messages first (all, or at most ``limit``)."""
        with Session(self._engine) as session:
            query = select(GemSpooled).where(self._mine).order_by(GemSpooled.id)
            if limit:
                query = query.limit(limit)
            return [Spooled(r.id, r.stream, r.function, r.body, r.what)
                    for r in session.scalars(query)]

    def delivered(self, spooled_id: int) -> bool:
        """The host acknowledged it: it leaves the spool. True when that emptied the spool
        (its counts reset and it is SPOOL INACTIVE again)."""
        with Session(self._writer) as session, session.begin():
            session.execute(delete(GemSpooled).where(GemSpooled.id == spooled_id, self._mine))
            if self._count(session):
                return False
            self._save_spool_state(session, self._spool_state(session) | _EMPTIED)
            return True

    def purge(self) -> int:
        with Session(self._writer) as session, session.begin():
            # A DELETE's result is a CursorResult (Session.execute is typed for any statement).
            result = cast(CursorResult[Any], session.execute(delete(GemSpooled).where(self._mine)))
            count = result.rowcount
            self._save_spool_state(session, self._spool_state(session) | _EMPTIED)
        log.info("spool purged by the host: %d message(s) discarded", count)
        return count

    def activate_spool(self) -> None:
        """SPOOL INACTIVE -> SPOOL ACTIVE (E30): counts from zero, SPOOLSTARTTIME now."""
        with Session(self._writer) as session, session.begin():
            state = self._spool_state(session) | _EMPTIED
            self._save_spool_state(session, state | {"active": True,
                                                     "started_at": self._now().isoformat()})

    def deactivate_spool(self) -> None:
        """SPOOL ACTIVE -> SPOOL INACTIVE with nothing spooled (an empty spool asked for)."""
        with Session(self._writer) as session, session.begin():
            self._save_spool_state(session, self._spool_state(session) | _EMPTIED)

    def spool_count(self) -> int:
        with Session(self._engine) as session:
            return self._count(session)

    def _count(self, session: Session) -> int:
        return session.scalar(select(func.count(GemSpooled.id)).where(self._mine)) or 0

    def spool_state(self) -> dict[str, Any]:
        """{"total": spooled since last emptied, "full": bool, "lost": refused when full,
        "active": SPOOL ACTIVE, "started_at"/"filled_at": ISO time of the last activation /
        of last becoming full, or None}."""
        with Session(self._engine) as session:
            return self._spool_state(session)

    def _spool_state(self, session: Session) -> dict[str, Any]:
        row = session.get(GemSetting, (self.line_id, "spool"))
        base = {"total": 0, "full": False, "lost": 0, "started_at": None, "filled_at": None}
        state = base | (dict(row.value["v"]) if row is not None else {})
        if "active" not in state:  # a spool kept by a version without the state model
            state["active"] = bool(self._count(session))
        return state

    def _save_spool_state(self, session: Session, state: dict[str, Any]) -> None:
        self._put(session, "spool", state)

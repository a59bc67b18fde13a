"""The audit aggregate: who did what, when — one row per action, never changed.

Every other aggregate adds its audit line through ``add_audit`` inside its own
transaction, so an action and its audit line commit together.

A wafer's transitions are not written here a second time: the controller makes
them, and each is already a ``wafer_events`` row with its time and wafer. The
audit log as read (``audit_log``) is the union of the two: the people's and
programs' actions stored here, and one ``wafer.transition`` line per wafer event,
its actor ``controller`` (docs/decisions/0020-audit-log-reads-wafer-events.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, insert, select

from controller.models import AuditEntry, Lot, Wafer, WaferEvent
from controller.persistence.base import Database, HotStatement
from controller.persistence.records import AuditInfo

_AUDIT = AuditEntry.__table__
_EVENTS = WaferEvent.__table__
_WAFERS = Wafer.__table__
_LOTS = Lot.__table__
_COLUMNS = ("at", "actor", "action", "lot_id", "wafer_id", "detail", "line_id")
_ADD = HotStatement(insert(_AUDIT), _COLUMNS)
_ADD_RETURNING_ID = insert(_AUDIT).returning(_AUDIT.c.id)

TRANSITION = "wafer.transition"  # the action of a wafer event's line in the audit log
TRANSITION_ACTOR = "controller"  # every wafer transition is the controller's


def add_audit(
    conn: Connection,
    at: datetime,
    actor: str,
    action: str,
    detail: str = "",
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
    line_id: str | None,
) -> None:
    """``line_id``: the acting store's line (``Database.line_id``; None: a store that
    names none, as a shell command's)."""
    _ADD.send(
        conn,
        {
            "at": at,
            "actor": actor,
            "action": action,
            "lot_id": lot_id,
            "wafer_id": wafer_id,
            "detail": detail,
            "line_id": line_id,
        },
    )


def audit(
    database: Database,
    actor: str,
    action: str,
    detail: str = "",
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
) -> int:
    with database.write() as conn:
        return conn.execute(
            _ADD_RETURNING_ID,
            {
                "at": database.now(),
                "actor": actor,
                "action": action,
                "lot_id": lot_id,
                "wafer_id": wafer_id,
                "detail": detail,
                "line_id": database.line_id,
            },
        ).scalar_one()


def audit_log(
    database: Database,
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
    limit: int | None = None,
) -> list[AuditInfo]:
    """Audit entries, oldest first (the newest ``limit`` of them when given): the actions
    stored here and a line per wafer transition, in time order (at one instant, the
    stored actions first). A transition's ``id`` is its wafer event's."""
    with database.read() as conn:
        actions = conn.execute(_newest(_actions(lot_id, wafer_id), limit)).all()
        moves = conn.execute(_newest(_transitions(lot_id, wafer_id), limit)).all()
    lines = [_line(a) for a in actions] + [_transition_line(m) for m in moves]
    lines.sort(key=lambda line: line[0])
    if limit is not None:
        lines = lines[max(len(lines) - limit, 0):]
    return [info for _, info in lines]


def _newest(query: Select[Any], limit: int | None) -> Select[Any]:
    return query if limit is None else query.limit(limit)


def _actions(lot_id: str | None, wafer_id: str | None) -> Select[Any]:
    # Transitions' lines written here before decision 0020 are read from wafer_events.
    query = (select(_AUDIT).where(_AUDIT.c.action != TRANSITION)
             .order_by(_AUDIT.c.at.desc(), _AUDIT.c.id.desc()))
    if lot_id is not None:
        query = query.where(_AUDIT.c.lot_id == lot_id)
    if wafer_id is not None:
        query = query.where(_AUDIT.c.wafer_id == wafer_id)
    return query


def _transitions(lot_id: str | None, wafer_id: str | None) -> Select[Any]:
    query = (
        select(_EVENTS.c.id, _EVENTS.c.at, _WAFERS.c.lot_id, _EVENTS.c.wafer_id,
               _EVENTS.c.from_state, _EVENTS.c.to_state, _EVENTS.c.trigger, _EVENTS.c.why,
               _LOTS.c.line_id)
        .join(_WAFERS, _WAFERS.c.id == _EVENTS.c.wafer_id)
        .join(_LOTS, _LOTS.c.id == _WAFERS.c.lot_id)
        .order_by(_EVENTS.c.at.desc(), _EVENTS.c.id.desc())
    )
    if lot_id is not None:
        query = query.where(_WAFERS.c.lot_id == lot_id)
    if wafer_id is not None:
        query = query.where(_EVENTS.c.wafer_id == wafer_id)
    return query


def transition_detail(from_state: str, to_state: str, trigger: str, why: str | None) -> str:
    """A transition's line in the audit log, as it was written there before decision 0020."""
    return f"{from_state} -> {to_state} ({trigger})" + (f": {why}" if why else "")


def _line(a: Any) -> tuple[tuple[datetime, int, int], AuditInfo]:
    return (a.at, 0, a.id), AuditInfo(a.id, a.at, a.actor, a.action, a.lot_id, a.wafer_id,
                                      a.detail, a.line_id)


def _transition_line(e: Any) -> tuple[tuple[datetime, int, int], AuditInfo]:
    detail = transition_detail(e.from_state, e.to_state, e.trigger, e.why)
    return (e.at, 1, e.id), AuditInfo(e.id, e.at, TRANSITION_ACTOR, TRANSITION, e.lot_id,
                                      e.wafer_id, detail, e.line_id)

"""The audit aggregate: who did what, when — one row per action, never changed.

Every other aggregate adds its audit line through ``add_audit`` inside its own
transaction, so an action and its audit line commit together.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select

from controller.models import AuditEntry, Wafer
from controller.persistence.base import Database, HotStatement
from controller.persistence.records import AuditInfo, audit_info

_AUDIT = AuditEntry.__table__
_WAFERS = Wafer.__table__
_COLUMNS = ("at", "actor", "action", "lot_id", "wafer_id", "detail")
_ADD = HotStatement(insert(_AUDIT), _COLUMNS)
_ADD_RETURNING_ID = insert(_AUDIT).returning(_AUDIT.c.id)
# A wafer's line (every transition writes one): its lot read from the wafer's row by the
# statement itself, and nothing written for a wafer that does not exist, so the statement
# needs no result of the transaction's earlier ones (docs/decisions/0019-one-round-trip.md).
_ADD_FOR_WAFER = HotStatement(
    insert(_AUDIT).from_select(
        list(_COLUMNS),
        select(
            bindparam("at", type_=_AUDIT.c.at.type),
            bindparam("actor", type_=_AUDIT.c.actor.type),
            bindparam("action", type_=_AUDIT.c.action.type),
            _WAFERS.c.lot_id,
            _WAFERS.c.id,
            bindparam("detail", type_=_AUDIT.c.detail.type),
        ).where(_WAFERS.c.id == bindparam("wafer")),
    )
)


def add_audit(
    conn: Connection,
    at: datetime,
    actor: str,
    action: str,
    detail: str = "",
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
) -> None:
    _ADD.send(
        conn,
        {
            "at": at,
            "actor": actor,
            "action": action,
            "lot_id": lot_id,
            "wafer_id": wafer_id,
            "detail": detail,
        },
    )


def add_wafer_audit(
    conn: Connection, at: datetime, actor: str, action: str, detail: str, *, wafer_id: str
) -> None:
    """``add_audit`` for a wafer, its lot found by the statement (none: no line written)."""
    _ADD_FOR_WAFER.send(
        conn,
        {"at": at, "actor": actor, "action": action, "wafer": wafer_id, "detail": detail},
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
            },
        ).scalar_one()


def audit_log(
    database: Database,
    *,
    lot_id: str | None = None,
    wafer_id: str | None = None,
    limit: int | None = None,
) -> list[AuditInfo]:
    """Audit entries, oldest first (the newest ``limit`` of them when given)."""
    query = select(_AUDIT).order_by(_AUDIT.c.id.desc())
    if lot_id is not None:
        query = query.where(_AUDIT.c.lot_id == lot_id)
    if wafer_id is not None:
        query = query.where(_AUDIT.c.wafer_id == wafer_id)
    if limit is not None:
        query = query.limit(limit)
    with database.read() as conn:
        rows = conn.execute(query).all()
    return [audit_info(a) for a in reversed(rows)]  # type: ignore[arg-type]

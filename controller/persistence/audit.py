"""The audit aggregate: who did what, when — one row per action, never changed.

Every other aggregate adds its audit line through ``add_audit`` inside its own
transaction, so an action and its audit line commit together.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from controller.models import AuditEntry
from controller.persistence.base import Database, HotStatement
from controller.persistence.records import AuditInfo, audit_info

_AUDIT = AuditEntry.__table__
_COLUMNS = ("at", "actor", "action", "lot_id", "wafer_id", "detail")
_ADD = HotStatement(insert(_AUDIT), _COLUMNS)  # every transition writes one
_ADD_RETURNING_ID = insert(_AUDIT).returning(_AUDIT.c.id)


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
    _ADD.run(
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

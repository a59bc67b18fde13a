"""The operator-request aggregate: holds and dispositions people ask the scheduler for.

A request is never a state change: the scheduler reads ``pending_requests``,
fires the wafer machine's trigger (recording the transition) and marks the
request handled. The store refuses at once what the machine would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, exists, insert, select, update

from controller.domain import Disposition, check_disposition, check_reason, disposition
from controller.models import OperatorRequest, Wafer, WaferEvent
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, HotStatement, StoreError, rules
from controller.persistence.records import RequestInfo, request_info
from sequences.wafer.machine import AWAITING

_REQUESTS = OperatorRequest.__table__
_WAFERS = Wafer.__table__
_EVENTS = WaferEvent.__table__
_ANY_PENDING = HotStatement(select(exists().where(_REQUESTS.c.handled_at.is_(None))))


def hold_wafer(database: Database, wafer_id: str, *, user: str, reason: str) -> RequestInfo:
    if not reason.strip():
        raise StoreError(f"holding {wafer_id} needs a reason")
    return _wafer_request(database, wafer_id, "hold_wafer", user=user, reason=reason)


def disposition_wafer(
    database: Database, wafer_id: str, decision: str | Disposition, *, user: str, reason: str
) -> RequestInfo:
    with rules():
        decided = disposition(decision)
    if not reason.strip():
        raise StoreError(f"a disposition of {wafer_id} needs a reason")
    return _wafer_request(
        database,
        wafer_id,
        decided.value,
        user=user,
        reason=reason,
        decision=decided,
        same_kind=[d.value for d in Disposition],
    )


def _failed_step_kind(conn: Connection, wafer_id: str) -> str | None:
    """The kind of step that last sent the wafer to awaiting disposition."""
    return conn.execute(
        select(_EVENTS.c.step_kind)
        .where(_EVENTS.c.wafer_id == wafer_id, _EVENTS.c.to_state == AWAITING)
        .order_by(_EVENTS.c.id.desc())
        .limit(1)
    ).scalar()


def _wafer_request(
    database: Database,
    wafer_id: str,
    action: str,
    *,
    user: str,
    reason: str,
    decision: Disposition | None = None,
    same_kind: Sequence[str] = (),
) -> RequestInfo:
    with rules():
        check_reason(reason)
    now = database.now()
    with database.write() as conn:
        wafer = conn.execute(
            select(_WAFERS.c.lot_id, _WAFERS.c.state, _WAFERS.c.outcome).where(
                _WAFERS.c.id == wafer_id
            )
        ).first()
        if wafer is None:
            raise StoreError(f"no wafer {wafer_id}")
        if wafer.outcome is not None:
            raise StoreError(
                f"wafer {wafer_id} is finished ({wafer.outcome}): nothing to "
                f"{action.replace('_wafer', '').replace('_', ' ')}"
            )
        if decision is not None:
            with rules():
                failed_kind = _failed_step_kind(conn, wafer_id)
                check_disposition(wafer_id, wafer.state, decision, failed_kind)
        pending = conn.execute(
            select(_REQUESTS.c.id, _REQUESTS.c.action, _REQUESTS.c.requested_by).where(
                _REQUESTS.c.wafer_id == wafer_id,
                _REQUESTS.c.action.in_([action, *same_kind]),
                _REQUESTS.c.handled_at.is_(None),
            )
        ).first()
        if pending is not None:
            raise StoreError(
                f"wafer {wafer_id} already has a pending {pending.action} request "
                f"(#{pending.id} by {pending.requested_by})"
            )
        request_id = conn.execute(
            insert(_REQUESTS).returning(_REQUESTS.c.id),
            {
                "lot_id": wafer.lot_id,
                "wafer_id": wafer_id,
                "action": action,
                "reason": reason,
                "requested_by": user,
                "requested_at": now,
                "handled_at": None,
                "handled_note": None,
            },
        ).scalar_one()
        add_audit(
            conn, now, user, f"wafer.{action}", reason, lot_id=wafer.lot_id, wafer_id=wafer_id,
            line_id=database.line_id,
        )
        row = conn.execute(select(_REQUESTS).where(_REQUESTS.c.id == request_id)).one()
    return request_info(row)


def any_pending(database: Database) -> bool:
    """Is any request unhandled? (The controller asks once a second; almost always not.)"""
    row = database.peek(_ANY_PENDING, {})
    return bool(row and row[0])


def requests(database: Database, *where: ColumnElement[bool]) -> list[RequestInfo]:
    with database.read() as conn:
        rows = conn.execute(select(_REQUESTS).where(*where).order_by(_REQUESTS.c.id)).all()
    return [request_info(r) for r in rows]


def pending_requests(database: Database, lot_id: str | None = None) -> list[RequestInfo]:
    """Requests the scheduler has not handled yet, oldest first."""
    if not any_pending(database):
        return []
    where: list[ColumnElement[bool]] = [_REQUESTS.c.handled_at.is_(None)]
    if lot_id is not None:
        where.append(_REQUESTS.c.lot_id == lot_id)
    return requests(database, *where)


def lot_or_wafer_requests(
    database: Database, *, lot_id: str | None = None, wafer_id: str | None = None
) -> list[RequestInfo]:
    where = []
    if lot_id is not None:
        where.append(_REQUESTS.c.lot_id == lot_id)
    if wafer_id is not None:
        where.append(_REQUESTS.c.wafer_id == wafer_id)
    return requests(database, *where)


def mark_request_handled(
    database: Database, request_id: int, note: str = "", *, actor: str = "controller"
) -> None:
    now = database.now()
    with database.write() as conn:
        request = conn.execute(
            select(_REQUESTS.c.action, _REQUESTS.c.lot_id, _REQUESTS.c.wafer_id).where(
                _REQUESTS.c.id == request_id, _REQUESTS.c.handled_at.is_(None)
            )
        ).first()
        if request is None:
            raise StoreError(f"no pending request {request_id}")
        conn.execute(
            update(_REQUESTS)
            .where(_REQUESTS.c.id == request_id)
            .values(handled_at=now, handled_note=note)
        )
        add_audit(
            conn,
            now,
            actor,
            f"request.{request.action}.handled",
            note,
            lot_id=request.lot_id,
            wafer_id=request.wafer_id, line_id=database.line_id
        )

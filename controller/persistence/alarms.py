"""The alarm aggregate: one row per occurrence of (line, tool, code), from set to clear.

Polling sees an active alarm many times; setting it again returns the same id.
Several lines may share one database and name their tools alike, so an alarm
names its line and is set and cleared within it.
The wafer and lot an alarm hit are plain columns: a tool may name a wafer this
database never saw.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, insert, select, update

from controller.models import Alarm, Wafer
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, StoreError
from controller.persistence.records import AlarmInfo, alarm_info

_ALARMS = Alarm.__table__
_WAFERS = Wafer.__table__


def alarm_set(
    database: Database,
    tool: str,
    code: int,
    text: str,
    *,
    wafer_id: str | None = None,
    step_id: int | None = None,
    tool_time: float | None = None,
    line_id: str | None = None,
) -> int:
    now = database.now()
    with database.write() as conn:
        active = conn.execute(
            select(_ALARMS.c.id).where(
                _ALARMS.c.tool == tool, _ALARMS.c.code == code, _ALARMS.c.cleared_at.is_(None),
                _same_line(line_id),
            )
        ).scalar()
        if active is not None:
            return active
        lot_id = None
        if wafer_id is not None:
            lot_id = conn.execute(
                select(_WAFERS.c.lot_id).where(_WAFERS.c.id == wafer_id)
            ).scalar()
        alarm_id = conn.execute(
            insert(_ALARMS).returning(_ALARMS.c.id),
            {
                "tool": tool,
                "code": code,
                "text": text,
                "wafer_id": wafer_id,
                "lot_id": lot_id,
                "step_id": step_id,
                "set_at": now,
                "tool_time": tool_time,
                "cleared_at": None,
                "acknowledged_at": None,
                "acknowledged_by": None,
                "line_id": line_id,
            },
        ).scalar_one()
        add_audit(
            conn, now, tool, "alarm.set", f"{tool} alarm {code} {text}",
            lot_id=lot_id, wafer_id=wafer_id, line_id=database.line_id
        )
    return alarm_id


def _same_line(line_id: str | None) -> ColumnElement[bool]:
    """The alarms of ``line_id``'s tools (None: of tools recorded without a line)."""
    return _ALARMS.c.line_id.is_not_distinct_from(line_id)


def alarm_cleared(
    database: Database, tool: str, code: int | None = None, *, line_id: str | None = None
) -> list[int]:
    now = database.now()
    query = select(_ALARMS).where(
        _ALARMS.c.tool == tool, _ALARMS.c.cleared_at.is_(None), _same_line(line_id)
    )
    if code is not None:
        query = query.where(_ALARMS.c.code == code)
    with database.write() as conn:
        alarms = conn.execute(query.order_by(_ALARMS.c.id)).all()
        if alarms:
            conn.execute(
                update(_ALARMS)
                .where(_ALARMS.c.id.in_([a.id for a in alarms]))
                .values(cleared_at=now)
            )
        for alarm in alarms:
            add_audit(
                conn, now, tool, "alarm.clear", f"{tool} alarm {alarm.code} {alarm.text}",
                lot_id=alarm.lot_id, wafer_id=alarm.wafer_id, line_id=database.line_id
            )
    return [a.id for a in alarms]


def acknowledge_alarm(database: Database, alarm_id: int, *, user: str) -> AlarmInfo:
    now = database.now()
    with database.write() as conn:
        alarm = conn.execute(select(_ALARMS).where(_ALARMS.c.id == alarm_id)).first()
        if alarm is None:
            raise StoreError(f"no alarm {alarm_id}")
        if alarm.acknowledged_at is not None:
            raise StoreError(
                f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by}"
            )
        conn.execute(
            update(_ALARMS)
            .where(_ALARMS.c.id == alarm_id)
            .values(acknowledged_at=now, acknowledged_by=user)
        )
        add_audit(
            conn, now, user, "alarm.ack", f"{alarm.tool} alarm {alarm.code} {alarm.text}",
            lot_id=alarm.lot_id, wafer_id=alarm.wafer_id, line_id=database.line_id
        )
        row = conn.execute(select(_ALARMS).where(_ALARMS.c.id == alarm_id)).one()
    return alarm_info(row)


def alarms(
    database: Database,
    *,
    active_only: bool = False,
    lot_id: str | None = None,
    wafer_id: str | None = None,
    tool: str | None = None,
    line_id: str | None = None,
) -> list[AlarmInfo]:
    """Alarms, newest first; ``line_id``: only that line's."""
    query = select(_ALARMS).order_by(_ALARMS.c.id.desc())
    if active_only:
        query = query.where(_ALARMS.c.cleared_at.is_(None))
    if lot_id is not None:
        query = query.where(_ALARMS.c.lot_id == lot_id)
    if wafer_id is not None:
        query = query.where(_ALARMS.c.wafer_id == wafer_id)
    if tool is not None:
        query = query.where(_ALARMS.c.tool == tool)
    if line_id is not None:
        query = query.where(_ALARMS.c.line_id == line_id)
    with database.read() as conn:
        rows = conn.execute(query).all()
    return [alarm_info(a) for a in rows]

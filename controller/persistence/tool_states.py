"""The tool-state aggregate: a tool's SEMI E10 state, a row per change (not per poll)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, bindparam, func, insert, select

from controller.line.e10 import E10State
from controller.models import ToolState
from controller.persistence.base import Database, HotStatement, StoreError
from controller.persistence.records import ToolStateInfo, tool_state_info

_STATES = ToolState.__table__
# A change per step start and end on a busy line (two or three a wafer): hot statements,
# like the wafer journal's (docs/decisions/0011-write-path.md).
_LATEST = HotStatement(
    select(_STATES.c.e10_state, _STATES.c.tool_state).where(
        _STATES.c.id == select(func.max(_STATES.c.id)).where(
            _STATES.c.tool == bindparam("tool"),
            _STATES.c.line_id.is_not_distinct_from(bindparam("line_id", type_=String)),
        ).scalar_subquery()
    )
)
_ADD = HotStatement(insert(_STATES), ["tool", "e10_state", "tool_state", "reason", "at",
                                      "tool_time", "line_id"])


def record_tool_state(
    database: Database,
    tool: str,
    e10_state: E10State | str,
    *,
    tool_state: str = "",
    reason: str = "",
    tool_time: float | None = None,
    line_id: str | None = None,
) -> bool:
    """Record a tool's E10 state if it changed; True when a row was written."""
    try:
        state = e10_state if isinstance(e10_state, E10State) else E10State.parse(e10_state)
    except ValueError as exc:
        raise StoreError(f"{tool}: {exc}") from None
    now = database.now()
    with database.hot_write() as conn:
        latest, _ = _LATEST.run(conn, {"tool": tool, "line_id": line_id})
        if latest is not None and tuple(latest) == (state.value, tool_state):
            return False
        _ADD.send(  # no result read: rides with the COMMIT on PostgreSQL
            conn,
            {
                "tool": tool,
                "e10_state": state.value,
                "tool_state": tool_state,
                "reason": reason,
                "at": now,
                "tool_time": tool_time,
                "line_id": line_id,
            },
        )
    return True


def tool_states_latest(database: Database, line_id: str | None = None) -> list[ToolStateInfo]:
    """The newest E10 state of every tool seen, by line and tool name (a tool name may
    repeat on every line); ``line_id``: that line's tools only."""
    newest = select(_STATES.c.line_id, _STATES.c.tool, func.max(_STATES.c.id).label("id"))
    if line_id is not None:
        newest = newest.where(_STATES.c.line_id == line_id)
    newest_ids = newest.group_by(_STATES.c.line_id, _STATES.c.tool).subquery()
    with database.read() as conn:
        rows = conn.execute(
            select(_STATES).join(newest_ids, newest_ids.c.id == _STATES.c.id)
            .order_by(_STATES.c.line_id, _STATES.c.tool)
        ).all()
    return [tool_state_info(r) for r in rows]


def tool_state_history(
    database: Database,
    tool: str | None = None,
    *,
    until: datetime | None = None,
    line_id: str | None = None,
) -> list[ToolStateInfo]:
    """E10 state changes, oldest first; ``line_id``: that line's and those that name no
    line (recorded before lines were named), not another line's tool of the same name."""
    query = select(_STATES).order_by(_STATES.c.id)
    if tool is not None:
        query = query.where(_STATES.c.tool == tool)
    if line_id is not None:
        query = query.where((_STATES.c.line_id == line_id) | _STATES.c.line_id.is_(None))
    if until is not None:
        query = query.where(_STATES.c.at <= until)
    with database.read() as conn:
        rows = conn.execute(query).all()
    return [tool_state_info(r) for r in rows]

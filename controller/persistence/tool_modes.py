"""The tool-mode aggregate: which tools people took out of production, and back.

A mode is the line plan's, not the tool's (controller/line/e10.py ``ToolMode``):
an engineer puts a tool in engineering, maintenance or offline, and the
scheduler gives it no new wafer until it is back in production. One row per
tool holds the latest mode, so a controller that restarts keeps it; the audit
log keeps every change with who made it and why, in the same transaction.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from controller.line.e10 import ToolMode
from controller.models import ToolModeRow
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, HotStatement, StoreError

_MODES = ToolModeRow.__table__
_ALL_MODES = HotStatement(select(_MODES).order_by(_MODES.c.tool))
# Per database: the raw rows last read and the modes they gave.
_LAST: weakref.WeakKeyDictionary[Database, tuple[tuple[Any, ...], dict[str, ToolModeInfo]]] = (
    weakref.WeakKeyDictionary())
MAX_TOOL_NAME = 64


@dataclass(frozen=True)
class ToolModeInfo:
    tool: str
    mode: ToolMode
    reason: str
    set_by: str
    set_at: datetime


def parse_mode(text: str) -> ToolMode:
    try:
        return ToolMode(text.strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in ToolMode)
        raise StoreError(f"unknown tool mode '{text}' (expected one of: {names})") from None


def set_tool_mode(database: Database, tool: str, mode: ToolMode | str, *, user: str,
                  reason: str = "") -> tuple[ToolMode, ToolMode]:
    """Put ``tool`` in ``mode``; (previous mode, new mode). Out of production needs a reason."""
    mode = mode if isinstance(mode, ToolMode) else parse_mode(mode)
    tool = tool.strip()
    if not tool or len(tool) > MAX_TOOL_NAME:
        raise StoreError(f"a tool name of 1 to {MAX_TOOL_NAME} characters (got '{tool}')")
    if mode is not ToolMode.PRODUCTION and not reason.strip():
        raise StoreError(f"say why {tool} goes out of production (a reason)")
    now = database.now()
    with database.write() as conn:
        row = conn.execute(select(_MODES.c.mode).where(_MODES.c.tool == tool)).first()
        previous = ToolMode(row.mode) if row is not None else ToolMode.PRODUCTION
        values = {"mode": mode.value, "reason": reason.strip(), "set_by": user, "set_at": now}
        if row is None:
            conn.execute(_MODES.insert().values(tool=tool, **values))
        else:
            conn.execute(_MODES.update().where(_MODES.c.tool == tool).values(**values))
        add_audit(conn, now, user, "tool.mode", f"{tool}: {previous.value} -> {mode.value}"
                  + (f": {reason.strip()}" if reason.strip() else ""))
    return previous, mode


def tool_modes(database: Database) -> dict[str, ToolModeInfo]:
    """Every tool's mode as set by people; a tool not listed is in production.

    The controller asks once a wall second and the answer almost never changes: the
    table's raw rows are read with a hot statement (a pooled Core read cost about ten
    times more CPU) and compared with the last answer's; only a change is read again."""
    raw = tuple(tuple(r) for r in database.peek_all(_ALL_MODES, {}))
    known = _LAST.get(database)
    if known is not None and known[0] == raw:
        return dict(known[1])
    with database.read() as conn:
        rows = conn.execute(select(_MODES).order_by(_MODES.c.tool)).all()
    modes = {r.tool: ToolModeInfo(r.tool, ToolMode(r.mode), r.reason, r.set_by, r.set_at)
             for r in rows}
    _LAST[database] = (raw, modes)
    return dict(modes)

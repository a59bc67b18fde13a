"""The tool-mode aggregate: which tools people took out of production, and back.

A mode is the line plan's, not the tool's (controller/line/e10.py ``ToolMode``):
an engineer puts a tool in engineering, maintenance or offline, and the
scheduler gives it no new wafer until it is back in production. One row per
line and tool holds the latest mode (a tool name repeats on every line: taking
one line's ``oven-1`` down leaves the others'), so a controller that restarts
keeps it; the audit log keeps every change with who made it and why, in the
same transaction. A line id of None is the line "" (rows from before modes were
per line, migration 0010).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from controller.line.e10 import ToolMode
from controller.models import ToolModeRow
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, HotStatement, StoreError

_MODES = ToolModeRow.__table__
_LINE_MODES = HotStatement(
    select(_MODES).where(_MODES.c.line_id == bindparam("line_id")).order_by(_MODES.c.tool))
# Per database and line: the raw rows last read and the modes they gave.
_LAST: weakref.WeakKeyDictionary[
    Database, dict[str, tuple[tuple[Any, ...], dict[str, ToolModeInfo]]]
] = weakref.WeakKeyDictionary()
MAX_TOOL_NAME = 64


@dataclass(frozen=True)
class ToolModeInfo:
    line_id: str | None  # None: set before modes were kept per line, for no known line
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


def line_key(line_id: str | None) -> str:
    """The ``line_id`` column's value for a line ("": rows from before lines, 0010)."""
    return line_id or ""


def _info(row: Any) -> ToolModeInfo:
    return ToolModeInfo(row.line_id or None, row.tool, ToolMode(row.mode), row.reason,
                        row.set_by, row.set_at)


def set_tool_mode(database: Database, tool: str, mode: ToolMode | str, *, user: str,
                  reason: str = "", line_id: str | None = None) -> tuple[ToolMode, ToolMode]:
    """Put ``line_id``'s ``tool`` in ``mode``; (previous mode, new mode). Out of production
    needs a reason."""
    mode = mode if isinstance(mode, ToolMode) else parse_mode(mode)
    tool = tool.strip()
    if not tool or len(tool) > MAX_TOOL_NAME:
        raise StoreError(f"a tool name of 1 to {MAX_TOOL_NAME} characters (got '{tool}')")
    if mode is not ToolMode.PRODUCTION and not reason.strip():
        raise StoreError(f"say why {tool} goes out of production (a reason)")
    line = line_key(line_id)
    now = database.now()
    with database.write() as conn:
        mine = (_MODES.c.line_id == line) & (_MODES.c.tool == tool)
        row = conn.execute(select(_MODES.c.mode).where(mine)).first()
        previous = ToolMode(row.mode) if row is not None else ToolMode.PRODUCTION
        values = {"mode": mode.value, "reason": reason.strip(), "set_by": user, "set_at": now}
        if row is None:
            conn.execute(_MODES.insert().values(line_id=line, tool=tool, **values))
        else:
            conn.execute(_MODES.update().where(mine).values(**values))
        on = f" on line {line}" if line else ""
        add_audit(conn, now, user, "tool.mode", f"{tool}{on}: {previous.value} -> {mode.value}"
                  + (f": {reason.strip()}" if reason.strip() else ""), line_id=database.line_id)
    return previous, mode


def tool_modes(database: Database, line_id: str | None = None) -> dict[str, ToolModeInfo]:
    """The modes people set for ``line_id``'s tools, by tool; a tool not listed is in
    production.

    The controller asks once a wall second and the answer almost never changes: the
    table's raw rows are read with a hot statement (a pooled Core read cost about ten
    times more CPU) and compared with the last answer's; only a change is read again."""
    line = line_key(line_id)
    return modes_of(database, line, database.peek_all(_LINE_MODES, {"line_id": line}))


def modes_of(database: Database, line: str,
             rows: Sequence[Sequence[Any]]) -> dict[str, ToolModeInfo]:
    """The modes the raw rows of ``line``'s modes (every column, by tool) say: the last
    answer when they did not change, else read again."""
    raw = tuple(tuple(r) for r in rows)
    last = _LAST.setdefault(database, {})
    known = last.get(line)
    if known is not None and known[0] == raw:
        return dict(known[1])
    with database.read() as conn:
        rows = conn.execute(
            select(_MODES).where(_MODES.c.line_id == line).order_by(_MODES.c.tool)).all()
    modes = {r.tool: _info(r) for r in rows}
    last[line] = (raw, modes)
    return dict(modes)


def every_tool_mode(database: Database) -> list[ToolModeInfo]:
    """Every mode people set, of every line, by line and tool."""
    with database.read() as conn:
        rows = conn.execute(select(_MODES).order_by(_MODES.c.line_id, _MODES.c.tool)).all()
    return [_info(r) for r in rows]

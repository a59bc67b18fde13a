"""The controller's once-a-second look at what people asked for, in one read.

A running controller looks each wall second at its line's tool modes and at the
operator requests waiting (``LineController.poll_requests``); the answer almost never
changes. Two reads were two statements on the writer's connection per look; one
statement answers both: the mode rows (compared with the last answer, read again only
on a change) and, last, one row if any request waits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, cast, exists, literal_column, null, select, union_all

from controller.models import OperatorRequest, ToolModeRow
from controller.persistence.base import Database, HotStatement
from controller.persistence.tool_modes import ToolModeInfo, line_key, modes_of

_MODES = ToolModeRow.__table__
_REQUESTS = OperatorRequest.__table__
_LOOK = HotStatement(
    union_all(
        select(literal_column("0").label("waiting"), *_MODES.c)
        .where(_MODES.c.line_id == bindparam("line_id")),
        select(literal_column("1"), *[cast(null(), c.type) for c in _MODES.c])
        .where(exists().where(_REQUESTS.c.handled_at.is_(None))),
    ).order_by("waiting", "tool")
)


def look(database: Database, line_id: str | None) -> tuple[dict[str, ToolModeInfo], bool]:
    """(``line_id``'s tool modes as ``tool_modes`` gives them, whether any request waits)."""
    line = line_key(line_id)
    rows: list[Any] = database.peek_all(_LOOK, {"line_id": line})
    waiting = bool(rows) and rows[-1][0] == 1
    if waiting:
        rows.pop()
    return modes_of(database, line, [r[1:] for r in rows]), waiting

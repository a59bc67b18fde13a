"""Tool modes are kept per line and tool: a tool name repeats on every line.

Before, one row per tool name: an engineer taking ``oven-1`` of one line into
maintenance took every line's ``oven-1`` out of production. The key is now
(line, tool). A row from before meant "this tool name, on whatever line runs
it", so it becomes one row for each line that has recorded a state for that
tool (``tool_states.line_id``, 0008); a tool no line recorded keeps its row
under the line "" (shown as no line, applied by none). The downgrade keeps one
row per tool, the most recently set.

The table is tiny (a row per tool people took out of production), so it is
rebuilt rather than altered: a primary key changes in place on neither back end
without a table copy on SQLite.

Revision ID: 0010_tool_modes_line
Revises: 0009_tool_modes
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_tool_modes_line"
down_revision: str | None = "0009_tool_modes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def _columns() -> list[sa.Column]:
    return [
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", UTC_TIME, nullable=False),
    ]


def _rows() -> list[dict]:
    # Typed, so SQLite's stored times read back as datetimes to write again.
    old = sa.table("tool_modes", *[sa.column(c.name, c.type) for c in _columns()])
    return [dict(r._mapping) for r in op.get_bind().execute(sa.select(old))]


def upgrade() -> None:
    rows = _rows()
    states = sa.table("tool_states", sa.column("tool"), sa.column("line_id"))
    seen = op.get_bind().execute(
        sa.select(states.c.tool, states.c.line_id).where(states.c.line_id.is_not(None))
        .distinct()).all()
    op.drop_table("tool_modes")
    table = op.create_table(
        "tool_modes",
        sa.Column("line_id", sa.String(200), nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("line_id", "tool", name=op.f("pk_tool_modes")),
    )
    moved = []
    for row in rows:
        lines = sorted({line for tool, line in seen if tool == row["tool"]}) or [""]
        moved += [{**row, "line_id": line} for line in lines]
    if moved:
        op.bulk_insert(table, moved)


def downgrade() -> None:
    newest: dict[str, dict] = {}
    for row in sorted(_rows(), key=lambda r: r["set_at"]):
        newest[row["tool"]] = row
    op.drop_table("tool_modes")
    table = op.create_table(
        "tool_modes", *_columns(), sa.PrimaryKeyConstraint("tool", name=op.f("pk_tool_modes"))
    )
    if newest:
        op.bulk_insert(table, list(newest.values()))

"""The last pushed-event number of a tool is kept per line and tool.

A tool name repeats on every line (``plater-1`` on each), and the row was keyed by the
name alone: a line that saved 500 handed its number to the next line's controller at its
start, whose plater had only sent 40, so events 41 to 500 of that plater were never asked
for again (a DONE or an ALARM lost). The key is now (line, tool). A row from before goes
to the line that last recorded a state for that tool (``tool_states.line_id``, 0008): it
was that line's save, most likely; the other lines start over. A tool no line recorded
keeps its row under the line "". The downgrade keeps the highest number per tool.

Revision ID: 0013_tool_event_seqs_line
Revises: 0012_web_ended_sessions
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_tool_event_seqs_line"
down_revision: str | None = "0012_web_ended_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def _columns() -> list[sa.Column]:
    return [
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
    ]


def _rows() -> list[dict]:
    # Typed, so SQLite's stored times read back as datetimes to write again.
    old = sa.table("tool_event_seqs", *[sa.column(c.name, c.type) for c in _columns()])
    return [dict(r._mapping) for r in op.get_bind().execute(sa.select(old))]


def upgrade() -> None:
    rows = _rows()
    states = sa.table("tool_states", sa.column("id"), sa.column("tool"), sa.column("line_id"))
    # The row was written by whichever line saved last: the line that last recorded a
    # state for the tool. The others start over (the tool replays what it kept: a batch
    # already settled is not taken twice), rather than skip events they never had.
    latest = {}
    for tool, line in op.get_bind().execute(
            sa.select(states.c.tool, states.c.line_id).where(states.c.line_id.is_not(None))
            .order_by(states.c.id)):
        latest[tool] = line
    op.drop_table("tool_event_seqs")
    table = op.create_table(
        "tool_event_seqs",
        sa.Column("line_id", sa.String(200), nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("line_id", "tool", name=op.f("pk_tool_event_seqs")),
    )
    moved = [{**row, "line_id": latest.get(row["tool"], "")} for row in rows]
    if moved:
        op.bulk_insert(table, moved)


def downgrade() -> None:
    highest: dict[str, dict] = {}
    for row in sorted(_rows(), key=lambda r: r["seq"]):
        highest[row["tool"]] = row
    op.drop_table("tool_event_seqs")
    table = op.create_table(
        "tool_event_seqs", *_columns(),
        sa.PrimaryKeyConstraint("tool", name=op.f("pk_tool_event_seqs")),
    )
    if highest:
        op.bulk_insert(table, list(highest.values()))

"""Alarms and tool states name the line whose tool they are about.

Several lines share one database and their tools may have the same names
(``printer-1`` on every line): without the line, one line's alarm cleared
another's and ``bumpline tools`` merged tools of different lines.

Revision ID: 0008_alarm_state_line
Revises: 0007_lock_pid_started
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_alarm_state_line"
down_revision: str | None = "0007_lock_pid_started"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("alarms", "tool_states")


def upgrade() -> None:
    # Nullable: rows from before name no line (as do controllers without one). Plain
    # ALTERs, as in 0006: SQLite adds and drops a plain column in place.
    for table in TABLES:
        op.add_column(table, sa.Column("line_id", sa.String(200), nullable=True))
        op.create_index(op.f(f"ix_{table}_line_id"), table, ["line_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(op.f(f"ix_{table}_line_id"), table_name=table)
        op.drop_column(table, "line_id")

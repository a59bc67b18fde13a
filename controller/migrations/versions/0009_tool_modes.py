"""Tool modes: a tool engineers took out of production, kept across controller restarts.

Revision ID: 0009_tool_modes
Revises: 0008_alarm_state_line
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_tool_modes"
down_revision: str | None = "0008_alarm_state_line"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tool_modes",
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("tool", name=op.f("pk_tool_modes")),
    )


def downgrade() -> None:
    op.drop_table("tool_modes")

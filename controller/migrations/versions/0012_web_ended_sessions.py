"""Operator-screen sessions ended by logging out, shared by every process on the database.

A session lives only in its signed cookie. Logging out used to put its id on a list in
the memory of the process that served the logout, so another screen sharing the signing
key (``bumpline web`` beside ``bumpline serve --web``), or the same one restarted with
that key, still took a copy of the cookie. One row per ended session, until its cookie
has expired by itself (controller/persistence/web_sessions.py, docs/security.md).

Revision ID: 0012_web_ended_sessions
Revises: 0011_step_indexes
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_web_ended_sessions"
down_revision: str | None = "0011_step_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_ended_sessions",
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_web_ended_sessions")),
    )


def downgrade() -> None:
    op.drop_table("web_ended_sessions")

"""Controller locks: one controller per line and per lot (a lease with a heartbeat).

Revision ID: 0002_controller_locks
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_controller_locks"
down_revision: str | None = "0002_gem"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "controller_locks",
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", UTC_TIME, nullable=False),
        sa.Column("renewed_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("resource", name=op.f("pk_controller_locks")),
    )


def downgrade() -> None:
    op.drop_table("controller_locks")

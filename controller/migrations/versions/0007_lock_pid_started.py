"""A lease names its holder process by pid and start time, so a reused pid is told apart.

Revision ID: 0007_lock_pid_started
Revises: 0006_lot_line
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lock_pid_started"
down_revision: str | None = "0006_lot_line"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: leases taken before it (or where the start time cannot be read) are
    # judged by the pid alone, as before.
    op.add_column("controller_locks", sa.Column("pid_started", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("controller_locks", "pid_started")

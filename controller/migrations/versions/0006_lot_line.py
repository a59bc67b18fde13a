"""Lots name their line: queued for one line (or any, NULL), then the line that runs them.

Revision ID: 0006_lot_line
Revises: 0005_users
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_lot_line"
down_revision: str | None = "0005_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTERs, no batch copy: SQLite adds and drops a plain column in place, and a
    # copied ``lots`` table would trip the wafers' foreign key.
    op.add_column("lots", sa.Column("line_id", sa.String(200), nullable=True))
    op.create_index(op.f("ix_lots_line_id"), "lots", ["line_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_lots_line_id"), table_name="lots")
    op.drop_column("lots", "line_id")

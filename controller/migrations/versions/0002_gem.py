"""The factory host interface: GEM settings, the spool, downloaded process programs.

Revision ID: 0002_gem
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_gem"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gem_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_gem_settings")),
    )
    op.create_table(
        "gem_spool",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.Integer(), nullable=False),
        sa.Column("function", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("what", sa.String(64), nullable=False),
        sa.Column("spooled_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gem_spool")),
    )
    op.create_table(
        "gem_process_programs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ppid", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("stored_at", UTC_TIME, nullable=False),
        sa.Column("stored_by", sa.String(64), nullable=False),
        sa.Column("deleted_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gem_process_programs")),
        sa.UniqueConstraint(
            "ppid", "version", name=op.f("uq_gem_process_programs_ppid_version")
        ),
    )
    op.create_index(op.f("ix_gem_process_programs_ppid"), "gem_process_programs", ["ppid"])


def downgrade() -> None:
    for table in ("gem_process_programs", "gem_spool", "gem_settings"):
        op.drop_table(table)  # drops the table's indexes with it

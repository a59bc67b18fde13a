"""Batch tools: a batch and its wafers, and each tool's last pushed-event number.

Revision ID: 0004_batches
Revises: 0003_controller_locks
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_batches"
down_revision: str | None = "0003_controller_locks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("step_kind", sa.String(32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("tool_time_start", sa.Float(), nullable=True),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("tool_time_end", sa.Float(), nullable=True),
        sa.Column("ni_bath_c", sa.Float(), nullable=True),
        sa.Column("au_bath_c", sa.Float(), nullable=True),
        sa.Column("alarm_code", sa.Integer(), nullable=True),
        sa.Column("alarm_text", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_tool"), "batches", ["tool"])
    op.create_table(
        "batch_wafers",
        sa.Column("batch_id", sa.String(16), nullable=False),
        sa.Column("wafer_id", sa.String(32), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"],
                                name=op.f("fk_batch_wafers_batch_id_batches")),
        sa.ForeignKeyConstraint(["wafer_id"], ["wafers.id"],
                                name=op.f("fk_batch_wafers_wafer_id_wafers")),
        sa.PrimaryKeyConstraint("batch_id", "wafer_id", name=op.f("pk_batch_wafers")),
    )
    op.create_index(op.f("ix_batch_wafers_wafer_id"), "batch_wafers", ["wafer_id"])
    op.create_table(
        "tool_event_seqs",
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("tool", name=op.f("pk_tool_event_seqs")),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_batch_wafers_wafer_id"), table_name="batch_wafers")
    op.drop_table("batch_wafers")
    op.drop_index(op.f("ix_batches_tool"), table_name="batches")
    op.drop_table("batches")
    op.drop_table("tool_event_seqs")

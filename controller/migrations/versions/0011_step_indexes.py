"""Two indexes of ``wafer_steps`` that no query uses are dropped.

Every step a wafer starts writes its row into each index of ``wafer_steps``, in
the transaction the tool command waits for (decision 0004). ``ix_wafer_steps_tool``
served no query (the report groups steps by tool in Python), and
``ix_wafer_steps_wafer_id`` repeats the first column of the unique
(wafer_id, step_index, attempt) index, which serves every read by wafer and the
next attempt's count. The downgrade makes them again.

Revision ID: 0011_step_indexes
Revises: 0010_tool_modes_line
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_step_indexes"
down_revision: str | None = "0010_tool_modes_line"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_wafer_steps_tool"), table_name="wafer_steps")
    op.drop_index(op.f("ix_wafer_steps_wafer_id"), table_name="wafer_steps")


def downgrade() -> None:
    op.create_index(op.f("ix_wafer_steps_wafer_id"), "wafer_steps", ["wafer_id"])
    op.create_index(op.f("ix_wafer_steps_tool"), "wafer_steps", ["tool"])

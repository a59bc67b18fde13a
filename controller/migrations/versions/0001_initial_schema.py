"""Initial schema: lots, wafers, steps, curves, intents, events, alarms, tool states,
operator requests, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("recipe_name", sa.String(64), nullable=False),
        sa.Column("recipe_version", sa.String(32), nullable=False),
        sa.Column("recipe_hash", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_before_hold", sa.String(16), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=True),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
    )
    op.create_index(op.f("ix_lots_state"), "lots", ["state"])

    op.create_table(
        "wafers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name=op.f("fk_wafers_lot_id_lots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wafers")),
        sa.UniqueConstraint("lot_id", "slot", name=op.f("uq_wafers_lot_id_slot")),
    )
    op.create_index(op.f("ix_wafers_lot_id"), "wafers", ["lot_id"])

    op.create_table(
        "wafer_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wafer_id", sa.String(32), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=True),
        sa.Column("step_kind", sa.String(32), nullable=True),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("tool", sa.String(64), nullable=True),
        sa.Column("tool_time", sa.Float(), nullable=True),
        sa.Column("measurements", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["wafer_id"], ["wafers.id"], name=op.f("fk_wafer_events_wafer_id_wafers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wafer_events")),
    )
    op.create_index(op.f("ix_wafer_events_wafer_id"), "wafer_events", ["wafer_id"])

    op.create_table(
        "wafer_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wafer_id", sa.String(32), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("tool_time_start", sa.Float(), nullable=True),
        sa.Column("tool_time_end", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["wafer_id"], ["wafers.id"], name=op.f("fk_wafer_steps_wafer_id_wafers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wafer_steps")),
        sa.UniqueConstraint(
            "wafer_id",
            "step_index",
            "attempt",
            name=op.f("uq_wafer_steps_wafer_id_step_index_attempt"),
        ),
    )
    op.create_index(op.f("ix_wafer_steps_tool"), "wafer_steps", ["tool"])
    op.create_index(op.f("ix_wafer_steps_wafer_id"), "wafer_steps", ["wafer_id"])

    op.create_table(
        "step_curves",
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("liquidus_c", sa.Float(), nullable=True),
        sa.Column("samples_c", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["wafer_steps.id"], name=op.f("fk_step_curves_step_id_wafer_steps")
        ),
        sa.PrimaryKeyConstraint("step_id", name=op.f("pk_step_curves")),
    )

    op.create_table(
        "step_intents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("written_at", UTC_TIME, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("resolved_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["wafer_steps.id"], name=op.f("fk_step_intents_step_id_wafer_steps")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_intents")),
    )
    op.create_index(op.f("ix_step_intents_step_id"), "step_intents", ["step_id"])

    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("wafer_id", sa.String(32), nullable=True),
        sa.Column("lot_id", sa.String(32), nullable=True),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("set_at", UTC_TIME, nullable=False),
        sa.Column("tool_time", sa.Float(), nullable=True),
        sa.Column("cleared_at", UTC_TIME, nullable=True),
        sa.Column("acknowledged_at", UTC_TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    op.create_index("ix_alarms_active", "alarms", ["tool", "cleared_at"])
    op.create_index(op.f("ix_alarms_lot_id"), "alarms", ["lot_id"])
    op.create_index(op.f("ix_alarms_wafer_id"), "alarms", ["wafer_id"])

    op.create_table(
        "tool_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("e10_state", sa.String(24), nullable=False),
        sa.Column("tool_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("tool_time", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_states")),
    )
    op.create_index("ix_tool_states_tool_at", "tool_states", ["tool", "at"])

    op.create_table(
        "operator_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("wafer_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", UTC_TIME, nullable=False),
        sa.Column("handled_at", UTC_TIME, nullable=True),
        sa.Column("handled_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["lots.id"], name=op.f("fk_operator_requests_lot_id_lots")
        ),
        sa.ForeignKeyConstraint(
            ["wafer_id"], ["wafers.id"], name=op.f("fk_operator_requests_wafer_id_wafers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_requests")),
    )
    op.create_index(op.f("ix_operator_requests_lot_id"), "operator_requests", ["lot_id"])
    op.create_index(op.f("ix_operator_requests_wafer_id"), "operator_requests", ["wafer_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=True),
        sa.Column("wafer_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_lot_id"), "audit_log", ["lot_id"])
    op.create_index(op.f("ix_audit_log_wafer_id"), "audit_log", ["wafer_id"])


def downgrade() -> None:
    for table in (
        "audit_log",
        "operator_requests",
        "tool_states",
        "alarms",
        "step_intents",
        "step_curves",
        "wafer_steps",
        "wafer_events",
        "wafers",
        "lots",
    ):
        op.drop_table(table)  # drops the table's indexes with it

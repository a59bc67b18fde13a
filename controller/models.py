"""The controller's tables, as SQLAlchemy 2 typed ORM classes.

Every change to these classes needs an Alembic revision in
``controller/migrations/versions`` (``tests/test_migrations.py`` fails on
drift). Times are UTC wall-clock times; ``tool_time`` columns hold the
controller clock's tool seconds where the event came from a tool.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so later migrations (batch mode on SQLite) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every back end (SQLite keeps no zone: store UTC, read UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC, pass an aware time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Every model here is mapped to a Table (SQLAlchemy types __table__ as any FromClause):
    # Core insert/update/delete take it as it is.
    __table__: ClassVar[Table]
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(none_as_null=True)}


class Lot(Base):
    __tablename__ = "lots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipe_name: Mapped[str] = mapped_column(String(64))
    recipe_version: Mapped[str] = mapped_column(String(32))
    recipe_hash: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_before_hold: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # The line the lot is queued for (None: any line with the tools its recipe needs),
    # then the line that claimed it: only that line's controller runs it from then on.
    line_id: Mapped[str | None] = mapped_column(String(200), index=True)

    wafers: Mapped[list[Wafer]] = relationship(back_populates="lot", order_by="Wafer.slot")


class Wafer(Base):
    __tablename__ = "wafers"
    __table_args__ = (UniqueConstraint("lot_id", "slot"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime]

    lot: Mapped[Lot] = relationship(back_populates="wafers")


class WaferEvent(Base):
    """One transition of a wafer's state machine, committed before the command that follows."""

    __tablename__ = "wafer_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wafer_id: Mapped[str] = mapped_column(ForeignKey("wafers.id"), index=True)
    at: Mapped[datetime]
    step_index: Mapped[int | None] = mapped_column(Integer)
    step_kind: Mapped[str | None] = mapped_column(String(32))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text, default="")
    tool: Mapped[str | None] = mapped_column(String(64))
    tool_time: Mapped[float | None] = mapped_column(Float)
    measurements: Mapped[dict[str, Any] | None]


class WaferStep(Base):
    """One attempt at one recipe step of one wafer on one tool."""

    __tablename__ = "wafer_steps"
    __table_args__ = (UniqueConstraint("wafer_id", "step_index", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No index of its own: the unique index above serves reads by wafer (migration 0011).
    wafer_id: Mapped[str] = mapped_column(ForeignKey("wafers.id"))
    step_index: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    disposition: Mapped[str | None] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]]
    windows: Mapped[dict[str, Any]]
    results: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    tool_time_start: Mapped[float | None] = mapped_column(Float)
    tool_time_end: Mapped[float | None] = mapped_column(Float)


class StepCurve(Base):
    """A wafer's measured temperature curve from a reflow step."""

    __tablename__ = "step_curves"

    step_id: Mapped[int] = mapped_column(ForeignKey("wafer_steps.id"), primary_key=True)
    interval_s: Mapped[float] = mapped_column(Float)
    liquidus_c: Mapped[float | None] = mapped_column(Float)
    samples_c: Mapped[list[float]] = mapped_column(JSON(none_as_null=True))


class StepIntent(Base):
    """Written before a command that must not be repeated; open = it may have happened."""

    __tablename__ = "step_intents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("wafer_steps.id"), index=True)
    tool: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(32))
    written_at: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None]


class Batch(Base):
    """One cycle of a batch tool (the plater) and how it ended; its wafers in BatchWafer."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the tool's batch id
    tool: Mapped[str] = mapped_column(String(64), index=True)
    step_kind: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))  # started | done | failed
    status: Mapped[str | None] = mapped_column(String(16))  # the tool's: OK, ABORTED, ALARM
    started_at: Mapped[datetime]
    tool_time_start: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[datetime | None]
    tool_time_end: Mapped[float | None] = mapped_column(Float)
    ni_bath_c: Mapped[float | None] = mapped_column(Float)  # the baths as the batch started
    au_bath_c: Mapped[float | None] = mapped_column(Float)
    alarm_code: Mapped[int | None] = mapped_column(Integer)
    alarm_text: Mapped[str | None] = mapped_column(String(200))


class BatchWafer(Base):
    __tablename__ = "batch_wafers"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    wafer_id: Mapped[str] = mapped_column(ForeignKey("wafers.id"), primary_key=True, index=True)
    slot: Mapped[int] = mapped_column(Integer)  # order in the carrier's LOAD line


class ToolEventSeq(Base):
    """The last pushed-event number a tool delivered (handed back to its driver at start),
    per line and tool: a tool name repeats on every line; ``line_id`` "" is a row saved by
    a store that names no line (and one from before 0013 no line had recorded)."""

    __tablename__ = "tool_event_seqs"

    line_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tool: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class Alarm(Base):
    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_active", "tool", "cleared_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tool: Mapped[str] = mapped_column(String(64))
    code: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(200))
    # Plain columns, not foreign keys: a tool may name a wafer this database never saw.
    wafer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    lot_id: Mapped[str | None] = mapped_column(String(32), index=True)
    step_id: Mapped[int | None] = mapped_column(Integer)
    set_at: Mapped[datetime]
    tool_time: Mapped[float | None] = mapped_column(Float)
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    # The line whose tool raised it (several lines share one database, and their tool
    # names may repeat); None: recorded by a controller that named no line.
    line_id: Mapped[str | None] = mapped_column(String(200), index=True)


class ToolState(Base):
    """A change of a tool's SEMI E10 state (a row per change, not per poll)."""

    __tablename__ = "tool_states"
    __table_args__ = (Index("ix_tool_states_tool_at", "tool", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tool: Mapped[str] = mapped_column(String(64))
    e10_state: Mapped[str] = mapped_column(String(24))
    tool_state: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    tool_time: Mapped[float | None] = mapped_column(Float)
    line_id: Mapped[str | None] = mapped_column(String(200), index=True)  # as Alarm.line_id


class ToolModeRow(Base):
    """The mode people put a tool in (production, engineering, maintenance, offline): one row
    per line and tool, the latest; the audit log keeps who changed it and why. A tool name
    repeats on every line; ``line_id`` "" is a row set before modes were kept per line for
    a tool no line had recorded (migration 0010)."""

    __tablename__ = "tool_modes"

    line_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tool: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime]


class OperatorRequest(Base):
    """An operator's or engineer's request the scheduler has to act on."""

    __tablename__ = "operator_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"), index=True)
    wafer_id: Mapped[str | None] = mapped_column(ForeignKey("wafers.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]
    handled_note: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Who did what, when: every transition and every operator or engineer action."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    lot_id: Mapped[str | None] = mapped_column(String(32), index=True)
    wafer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    line_id: Mapped[str | None] = mapped_column(String(200))  # the acting store's line (0014)


# --- the factory host interface (controller/gem, docs/gem.md) ----------------------------------


class GemSetting(Base):
    """A persisted GEM setting: control state, reports, links, enables, constants (JSON),
    per line (each line's equipment has its own host link); ``line_id`` "" is a store's
    that names no line."""

    __tablename__ = "gem_settings"

    line_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class GemSpooled(Base):
    """A message kept while the host link was down (E30 spooling), sent oldest first."""

    __tablename__ = "gem_spool"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The line whose host link it waits for ("" a store's that names no line); added by
    # 0014 to a table with rows, hence the server default.
    line_id: Mapped[str] = mapped_column(String(200), index=True, server_default="")
    stream: Mapped[int] = mapped_column(Integer)
    function: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the SECS-II item as on the wire
    what: Mapped[str] = mapped_column(String(64), default="")  # e.g. "CEID 21" for logs
    spooled_at: Mapped[datetime]


class GemProcessProgram(Base):
    """A process program (recipe text) the host downloaded; versions are kept, never replaced."""

    __tablename__ = "gem_process_programs"
    __table_args__ = (UniqueConstraint("ppid", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ppid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    body_hash: Mapped[str] = mapped_column(String(64))
    stored_at: Mapped[datetime]
    stored_by: Mapped[str] = mapped_column(String(64))
    deleted_at: Mapped[datetime | None]


class ControllerLock(Base):
    """A lease: one controller per line and per lot (``controller.persistence.locks``).

    The holder renews ``expires_at`` while it runs; a lease past it, or one held on
    this host by a process that is gone, is stale and taken over.
    """

    __tablename__ = "controller_locks"

    # "line:<line id>" or "lot:<lot id>"
    resource: Mapped[str] = mapped_column(String(512), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # The holder process's start (Linux: clock ticks after boot, /proc/<pid>/stat): a pid
    # the system gave to another process since is not the holder. NULL: unknown.
    pid_started: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


# --- the operator screen (controller/web, docs/security.md) --------------------------------------


class WebUser(Base):
    """A person who logs in to the operator screen; never deleted, only disabled (audit names)."""

    __tablename__ = "web_users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # operator, engineer, admin
    password_hash: Mapped[str] = mapped_column(String(256))  # scrypt$n$r$p$salt$hash
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    changed_at: Mapped[datetime]


class WebEndedSession(Base):
    """An operator-screen session ended by logging out (``controller.persistence.web_sessions``).

    The session lives only in its signed cookie, so every screen on the database refuses
    a copy of it by finding it here. Kept until its cookie has expired by itself.
    """

    __tablename__ = "web_ended_sessions"

    # SHA-256 (hex) of the session's id, its CSRF token: nothing here makes a cookie usable
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))  # whose session it was
    ended_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # the cookie has expired by then: the row may be pruned

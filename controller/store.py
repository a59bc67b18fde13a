"""The controller's record of lots, wafers, steps, alarms, tool states and actions.

``Store`` is the one API the rest of the controller uses to read and write the
database. Every write is one short committed transaction, so what the
database says is what happened (or, for an open intent, what may have
happened):

- **persist before acting**: the scheduler records a wafer's transition
  (``record_transition``) and, before a command that cannot be repeated (oven
  LOAD), an intent (``record_intent``), and only then talks to the tool;
- reads return plain frozen dataclasses, never live ORM objects.

Writers take SQLite's write lock at BEGIN (see ``controller.db``), so the
controller and an operator's ``bumpline lot hold`` never deadlock; readers in
other processes read the last committed state while the controller writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from alembic.util import CommandError
from sqlalchemy import JSON, Engine, String, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from controller import db
from controller.line.e10 import E10State
from controller.models import (
    Alarm,
    AuditEntry,
    Lot,
    OperatorRequest,
    StepCurve,
    StepIntent,
    ToolState,
    UtcDateTime,
    Wafer,
    WaferEvent,
    WaferStep,
)
from sequences.wafer.machine import ABORTED, AWAITING, COMPLETE, HELD, QUEUED, SCRAPPED
from sequences.wafer.machine import WaferEvent as WaferMachineEvent


class StoreError(Exception):
    """A store request that cannot be honoured; the message is for the user as it is."""


# --- vocabulary ---------------------------------------------------------------------------------


class LotState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"
    COMPLETE = "complete"
    ABORTED = "aborted"


LOT_TRANSITIONS: dict[LotState, set[LotState]] = {
    LotState.QUEUED: {LotState.RUNNING, LotState.HELD, LotState.ABORTED},
    LotState.RUNNING: {LotState.HELD, LotState.COMPLETE, LotState.ABORTED},
    LotState.HELD: {LotState.QUEUED, LotState.RUNNING, LotState.ABORTED},  # resume, or abort
    LotState.COMPLETE: set(),
    LotState.ABORTED: set(),
}

# A wafer's state is its state machine's (sequences.wafer.machine): the store writes only the
# first one and the outcome its final states imply (yield counts "good").
WAFER_START_STATE = QUEUED
WAFER_START_LOCATION = "carrier"
OUTCOME_OF_STATE = {COMPLETE: "good", SCRAPPED: "scrapped", ABORTED: "aborted"}
OUTCOMES = ("good", "scrapped", "aborted")


class Disposition(StrEnum):
    """An engineer's decision for a held wafer."""

    CONTINUE = "continue"
    RETRY = "retry"
    SCRAP = "scrap"


# Which decisions a wafer can take in which state (as the wafer state machine allows;
# "continue" on an operator-held wafer means resume).
DISPOSITIONS_IN_STATE = {
    AWAITING: (Disposition.CONTINUE, Disposition.RETRY, Disposition.SCRAP),
    HELD: (Disposition.CONTINUE, Disposition.SCRAP),
}
NEVER_REPEATED_STEPS = ("reflow",)  # a second reflow would remelt the bumps


REQUEST_ACTIONS = ("hold_lot", "resume_lot", "abort_lot", "hold_wafer") + tuple(
    d.value for d in Disposition
)

STEP_STATUSES = ("running", "done", "failed", "aborted")
INTENT_OUTCOMES = ("done", "not_sent", "failed")

MAX_WAFERS = 25  # slots in a 300 mm FOUP
LOT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Tools take wafer ids of at most 16 characters; "<LOT>-NN" must fit.
MAX_LOT_ID_LEN = 13
PRIORITY_RANGE = (1, 9)  # 1 = most urgent (hot lot)
DEFAULT_PRIORITY = 5


# --- what reads return --------------------------------------------------------------------------


@dataclass(frozen=True)
class LotInfo:
    id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    priority: int
    state: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    wafer_count: int


@dataclass(frozen=True)
class WaferInfo:
    id: str
    lot_id: str
    slot: int
    state: str
    location: str
    outcome: str | None
    updated_at: datetime


@dataclass(frozen=True)
class EventInfo:
    id: int
    wafer_id: str
    at: datetime
    step_index: int | None
    step_kind: str | None
    from_state: str
    to_state: str
    trigger: str
    why: str
    tool: str | None
    tool_time: float | None
    measurements: dict[str, Any] | None


@dataclass(frozen=True)
class CurveInfo:
    interval_s: float
    liquidus_c: float | None
    samples_c: tuple[float, ...]


@dataclass(frozen=True)
class StepInfo:
    id: int
    wafer_id: str
    step_index: int
    attempt: int
    kind: str
    tool: str
    status: str
    disposition: str | None
    parameters: dict[str, Any]
    windows: dict[str, Any]
    results: dict[str, Any] | None
    started_at: datetime
    ended_at: datetime | None
    tool_time_start: float | None
    tool_time_end: float | None
    curve: CurveInfo | None


@dataclass(frozen=True)
class IntentInfo:
    id: int
    step_id: int
    wafer_id: str
    step_index: int
    tool: str
    command: str
    written_at: datetime
    outcome: str | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class AlarmInfo:
    id: int
    tool: str
    code: int
    text: str
    wafer_id: str | None
    lot_id: str | None
    step_id: int | None
    set_at: datetime
    tool_time: float | None
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    @property
    def active(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True)
class ToolStateInfo:
    tool: str
    e10_state: str
    tool_state: str
    reason: str
    at: datetime
    tool_time: float | None


@dataclass(frozen=True)
class RequestInfo:
    id: int
    lot_id: str
    wafer_id: str | None
    action: str
    reason: str
    requested_by: str
    requested_at: datetime
    handled_at: datetime | None
    handled_note: str | None


@dataclass(frozen=True)
class AuditInfo:
    id: int
    at: datetime
    actor: str
    action: str
    lot_id: str | None
    wafer_id: str | None
    detail: str


@dataclass(frozen=True)
class WaferHistory:
    wafer: WaferInfo
    events: tuple[EventInfo, ...]
    steps: tuple[StepInfo, ...]
    intents: tuple[IntentInfo, ...]
    alarms: tuple[AlarmInfo, ...]
    requests: tuple[RequestInfo, ...]


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A store result (dataclasses, datetimes, tuples) as plain JSON data."""
    if type(value) in _PLAIN:  # most values of a result (a reflow curve is 80 floats)
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# --- lot specification (pure) -------------------------------------------------------------------


def wafer_id(lot_id: str, slot: int) -> str:
    return f"{lot_id}-{slot:02d}"


def check_lot_id(lot_id: str) -> str:
    lot_id = lot_id.strip()
    if not LOT_ID_PATTERN.match(lot_id):
        raise StoreError(
            f"bad lot id {lot_id!r}: use letters, digits, '.', '-' or '_', starting with a "
            "letter or digit"
        )
    if len(lot_id) > MAX_LOT_ID_LEN:
        raise StoreError(
            f"lot id {lot_id!r} is {len(lot_id)} characters: at most {MAX_LOT_ID_LEN}, so wafer "
            f"ids like {lot_id}-01 fit the tools' 16-character wafer id"
        )
    return lot_id


def slots_for_count(count: int) -> list[int]:
    """Slots 1..count of a full-from-the-bottom carrier."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WAFERS:
        raise StoreError(f"wafer count must be 1-{MAX_WAFERS} (one carrier), got {count!r}")
    return list(range(1, count + 1))


def parse_slots(text: str) -> list[int]:
    """Slots from a list like ``1-5,8,10`` (sorted; every slot once, 1-25)."""
    spec = text.strip()
    if not spec:
        raise StoreError("empty slot list (expected e.g. 1-5,8,10)")
    slots: list[int] = []
    for part in spec.split(","):
        item = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if not match:
            raise StoreError(
                f"bad slot list {spec!r}: {item!r} is not a slot or a range "
                "(expected e.g. 1-5,8,10)"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first:
            raise StoreError(f"bad slot list {spec!r}: range {item!r} runs backwards")
        for slot in range(first, last + 1):
            if not 1 <= slot <= MAX_WAFERS:
                raise StoreError(f"bad slot list {spec!r}: slot {slot} is outside 1-{MAX_WAFERS}")
            if slot in slots:
                raise StoreError(f"bad slot list {spec!r}: slot {slot} appears twice")
            slots.append(slot)
    return sorted(slots)


def _check_slots(slots: Sequence[int]) -> list[int]:
    if not slots:
        raise StoreError("a lot needs at least one wafer")
    if len(slots) > MAX_WAFERS:
        raise StoreError(f"a lot holds at most {MAX_WAFERS} wafers, got {len(slots)}")
    seen: set[int] = set()
    for slot in slots:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= MAX_WAFERS:
            raise StoreError(f"slot {slot!r} is outside 1-{MAX_WAFERS}")
        if slot in seen:
            raise StoreError(f"slot {slot} appears twice")
        seen.add(slot)
    return sorted(slots)


def _finite_json_text(value: Any, what: str) -> str:
    """A parameters/results mapping as JSON text (NaN/inf have no JSON form).

    The same text SQLAlchemy's JSON type writes for the decoded value (``json.dumps``),
    so the SQLite hot path stores it as is instead of encoding twice.
    """
    try:
        return json.dumps(jsonable(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} cannot be stored: {exc}") from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the store ----------------------------------------------------------------------------------


class Store:
    """Open with ``Store(url)`` (runs migrations to head); ``close()`` when done.

    ``create=False`` refuses to make a new SQLite file (query commands use it so a
    mistyped ``--db`` is an error, not a fresh empty database). ``now`` returns the
    current UTC time; tests inject their own.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        create: bool = True,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.url = db.resolve_db_url(url)
        self._now = now
        try:
            parsed = db.parse_db_url(self.url)
        except db.DatabaseUrlError as exc:
            raise StoreError(str(exc)) from None
        path = db.sqlite_file(parsed)
        if path is not None:
            if not create and not path.exists():
                raise StoreError(f"no database at {path} (check --db or ${db.DB_ENV})")
            if not path.parent.is_dir():
                raise StoreError(
                    f"cannot open database {path}: directory {path.parent} does not exist"
                )
        where = str(path) if path is not None else parsed.render_as_string(hide_password=True)
        try:
            self._engine: Engine = db.make_engine(self.url)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open database {where}: {_reason(exc)}") from None
        self._writer = db.writer(self._engine)
        self._hot: _SqliteHotPath | None = None
        try:
            db.upgrade_to_head(self._engine)
            # A second connection on the same file for the hot path; an in-memory database
            # would be a different database on another connection, so it has none.
            if path is not None:
                self._hot = _SqliteHotPath(self._engine, path)
        except (SQLAlchemyError, ImportError, CommandError, sqlite3.Error) as exc:
            # CommandError: e.g. the database was stamped by a newer bumpline.
            self._engine.dispose()
            raise StoreError(f"cannot open database {where}: {_reason(exc)}") from None
        self._closed = False
        self._local = threading.local()

    # -- lifecycle

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._hot is not None:
                self._hot.close()
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """The scheduler's writes inside commit together, or not at all.

        On the SQLite hot path this is one transaction for, say, a transition and the
        step record it opens: one commit instead of several. Only the hot-path writes
        (record_transition/record_event, start_step, end_step, record_intent,
        resolve_intent) may be called inside; any other write would wait for this
        transaction's lock. Elsewhere each write still commits on its own.
        """
        if self._hot is None:
            yield
            return
        with self._hot.transaction():
            yield

    def _read(self) -> AbstractContextManager[Session]:
        """A read session: the snapshot's while one is open (see ``_snapshot``), else a new one."""
        shared = getattr(self._local, "snapshot", None)
        if shared is not None:
            return nullcontext(shared)
        return Session(self._engine, expire_on_commit=False)

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the database (one read transaction)."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            self._local.snapshot = session
            try:
                yield
            finally:
                self._local.snapshot = None

    def _write(self) -> Session:
        return Session(self._writer, expire_on_commit=False)

    # -- lots

    def create_lot(
        self,
        lot_id: str,
        *,
        recipe_name: str,
        recipe_version: str | int,
        recipe_hash: str,
        slots: Sequence[int],
        priority: int = DEFAULT_PRIORITY,
        user: str,
    ) -> LotInfo:
        """Queue a new lot: its wafers ``<LOT>-<slot:02d>`` wait in the carrier."""
        lot_id = check_lot_id(lot_id)
        slots = _check_slots(slots)
        low, high = PRIORITY_RANGE
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not low <= priority <= high
        ):
            raise StoreError(
                f"priority must be {low}-{high} ({low} = most urgent), got {priority!r}"
            )
        if not recipe_name:
            raise StoreError("a lot needs a recipe name")
        now = self._now()
        with self._write() as session, session.begin():
            if session.get(Lot, lot_id) is not None:
                raise StoreError(f"lot {lot_id} already exists (lot ids are never reused)")
            session.add(
                Lot(
                    id=lot_id,
                    recipe_name=recipe_name,
                    recipe_version=str(recipe_version),
                    recipe_hash=recipe_hash,
                    priority=priority,
                    state=LotState.QUEUED.value,
                    created_by=user,
                    created_at=now,
                )
            )
            session.flush()
            session.add_all(
                Wafer(
                    id=wafer_id(lot_id, slot),
                    lot_id=lot_id,
                    slot=slot,
                    state=WAFER_START_STATE,
                    location=WAFER_START_LOCATION,
                    updated_at=now,
                )
                for slot in slots
            )
            session.add(
                _audit(
                    now,
                    user,
                    "lot.start",
                    lot_id,
                    None,
                    f"recipe {recipe_name} v{recipe_version} ({recipe_hash[:12]}), "
                    f"slots {slot_text(slots)}, priority {priority}",
                )
            )
            try:
                session.flush()
            except IntegrityError:  # another process created it between our check and insert
                raise StoreError(
                    f"lot {lot_id} already exists (lot ids are never reused)"
                ) from None
        return self.get_lot(lot_id)

    def get_lot(self, lot_id: str) -> LotInfo:
        with self._read() as session:
            lot = session.get(Lot, lot_id)
            if lot is None:
                raise StoreError(f"no lot {lot_id}")
            return _lot_info(lot, len(lot.wafers))

    def list_lots(self, states: Iterable[str | LotState] | None = None) -> list[LotInfo]:
        """Lots, newest first."""
        with self._read() as session:
            query = select(Lot).order_by(Lot.created_at.desc(), Lot.id)
            if states is not None:
                query = query.where(Lot.state.in_([LotState(s).value for s in states]))
            lots = session.scalars(query).all()
            counts = {
                lot_id: n
                for lot_id, n in session.execute(
                    select(Wafer.lot_id, func.count(Wafer.id)).group_by(Wafer.lot_id)
                )
            }
            return [_lot_info(lot, counts.get(lot.id, 0)) for lot in lots]

    def next_queued_lot(self) -> LotInfo | None:
        """The queued lot to start next: most urgent priority, then oldest."""
        with self._read() as session:
            lot = session.scalars(
                select(Lot)
                .where(Lot.state == LotState.QUEUED.value)
                .order_by(Lot.priority, Lot.created_at, Lot.id)
                .limit(1)
            ).first()
            return None if lot is None else _lot_info(lot, len(lot.wafers))

    def set_lot_state(
        self, lot_id: str, state: str | LotState, *, user: str = "controller", reason: str = ""
    ) -> LotInfo:
        """Move a lot along queued → running → complete/aborted (the scheduler's calls)."""
        target = _lot_state(state)
        self._change_lot(lot_id, target, user=user, reason=reason, action=f"lot.{target.value}")
        return self.get_lot(lot_id)

    def hold_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """Operator hold: no new wafer of the lot starts until it is resumed."""
        self._change_lot(
            lot_id, LotState.HELD, user=user, reason=reason, action="lot.hold", request="hold_lot"
        )
        return self.get_lot(lot_id)

    def resume_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """Back to the state the lot was held in (queued or running)."""
        self._change_lot(
            lot_id, None, user=user, reason=reason, action="lot.resume", request="resume_lot"
        )
        return self.get_lot(lot_id)

    def abort_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """No more wafers start; wafers still in the carrier are aborted at once.

        Wafers already in a tool are the scheduler's to bring to a safe stop (it sees
        the pending ``abort_lot`` request).
        """
        self._change_lot(
            lot_id,
            LotState.ABORTED,
            user=user,
            reason=reason,
            action="lot.abort",
            request="abort_lot",
        )
        return self.get_lot(lot_id)

    def _change_lot(
        self,
        lot_id: str,
        target: LotState | None,
        *,
        user: str,
        reason: str,
        action: str,
        request: str | None = None,
    ) -> None:
        now = self._now()
        with self._write() as session, session.begin():
            lot = session.get(Lot, lot_id)
            if lot is None:
                raise StoreError(f"no lot {lot_id}")
            current = LotState(lot.state)
            if target is None:  # resume
                if current is not LotState.HELD:
                    raise StoreError(
                        f"lot {lot_id} is {current.value}, not held: nothing to resume"
                    )
                target = LotState(lot.state_before_hold or LotState.QUEUED.value)
            if target not in LOT_TRANSITIONS[current]:
                raise StoreError(
                    f"lot {lot_id} is {current.value}: it cannot become {target.value}"
                )
            if target is LotState.HELD:
                lot.state_before_hold = current.value
            elif current is LotState.HELD:
                lot.state_before_hold = None
            lot.state = target.value
            if target is LotState.RUNNING and lot.started_at is None:
                lot.started_at = now
            if target in (LotState.COMPLETE, LotState.ABORTED):
                lot.ended_at = now
            if target is LotState.ABORTED:
                for wafer in lot.wafers:
                    if wafer.state == WAFER_START_STATE:  # never started: it simply stays home
                        wafer.state = ABORTED
                        wafer.outcome = OUTCOME_OF_STATE[ABORTED]
                        wafer.updated_at = now
                        session.add(
                            WaferEvent(
                                wafer_id=wafer.id,
                                at=now,
                                from_state=WAFER_START_STATE,
                                to_state=ABORTED,
                                trigger="abort",
                                why=reason or "lot aborted",
                            )
                        )
                        # Its holds and dispositions have nothing left to act on.
                        for pending in session.scalars(
                            select(OperatorRequest).where(
                                OperatorRequest.wafer_id == wafer.id,
                                OperatorRequest.handled_at.is_(None),
                            )
                        ):
                            pending.handled_at = now
                            pending.handled_note = "wafer aborted with its lot before it started"
            detail = f"{current.value} -> {target.value}" + (f": {reason}" if reason else "")
            session.add(_audit(now, user, action, lot_id, None, detail))
            if request is not None:
                session.add(
                    OperatorRequest(
                        lot_id=lot_id,
                        action=request,
                        reason=reason,
                        requested_by=user,
                        requested_at=now,
                    )
                )

    # -- wafers

    def get_wafer(self, wafer_id: str) -> WaferInfo:
        with self._read() as session:
            wafer = session.get(Wafer, wafer_id)
            if wafer is None:
                raise StoreError(f"no wafer {wafer_id}")
            return _wafer_info(wafer)

    def wafers(self, lot_id: str) -> list[WaferInfo]:
        with self._read() as session:
            if session.get(Lot, lot_id) is None:
                raise StoreError(f"no lot {lot_id}")
            rows = session.scalars(
                select(Wafer).where(Wafer.lot_id == lot_id).order_by(Wafer.slot)
            ).all()
            return [_wafer_info(w) for w in rows]

    def record_transition(
        self,
        wafer_id: str,
        from_state: str,
        to_state: str,
        trigger: str,
        why: str = "",
        *,
        step_index: int | None = None,
        step_kind: str | None = None,
        tool: str | None = None,
        tool_time: float | None = None,
        measurements: Mapping[str, Any] | None = None,
        location: str | None = None,
        outcome: str | None = None,
        actor: str = "controller",
    ) -> int:
        """Commit one wafer transition (event row, wafer state, audit line); returns its id.

        Call it before the tool command the transition leads to. ``outcome`` (good,
        scrapped, aborted) defaults from ``OUTCOME_OF_STATE`` for a final state.
        """
        if outcome is None:
            outcome = OUTCOME_OF_STATE.get(to_state)
        elif outcome not in OUTCOMES:
            raise StoreError(f"unknown wafer outcome {outcome!r} (expected {', '.join(OUTCOMES)})")
        text = (_finite_json_text(measurements, "measurements")
                if measurements is not None else None)
        now = self._now()
        detail = f"{from_state} -> {to_state} ({trigger})" + (f": {why}" if why else "")
        if self._hot is not None:
            hot = self._hot
            at = hot.when(now)
            with hot.transaction() as cur:
                row = cur.execute(
                    hot.move_wafer, (to_state, at, location, outcome, wafer_id)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no wafer {wafer_id}")
                event = {
                    "wafer_id": wafer_id,
                    "at": at,
                    "step_index": step_index,
                    "step_kind": step_kind,
                    "from_state": from_state,
                    "to_state": to_state,
                    "trigger": trigger,
                    "why": why,
                    "tool": tool,
                    "tool_time": tool_time,
                    "measurements": text,
                }
                event_id = cur.execute(
                    hot.add_event, [event[c] for c in hot.event_cols]
                ).fetchone()[0]
                audit = {
                    "at": at,
                    "actor": actor,
                    "action": "wafer.transition",
                    "lot_id": row[0],
                    "wafer_id": wafer_id,
                    "detail": detail,
                }
                cur.execute(hot.add_audit, [audit[c] for c in hot.audit_cols])
            return event_id
        # Prebuilt Core statements, not ORM units of work: this is the hot path (~30 per wafer).
        with self._writer.begin() as conn:
            lot_id = conn.execute(
                _MOVE_WAFER,
                {
                    "wafer": wafer_id,
                    "state": to_state,
                    "updated_at": now,
                    "new_location": location,
                    "new_outcome": outcome,
                },
            ).scalar()
            if lot_id is None:
                raise StoreError(f"no wafer {wafer_id}")
            event_id = conn.execute(
                _ADD_EVENT,
                {
                    "wafer_id": wafer_id,
                    "at": now,
                    "step_index": step_index,
                    "step_kind": step_kind,
                    "from_state": from_state,
                    "to_state": to_state,
                    "trigger": trigger,
                    "why": why,
                    "tool": tool,
                    "tool_time": tool_time,
                    "measurements": json.loads(text) if text is not None else None,
                },
            ).scalar_one()
            conn.execute(
                _ADD_AUDIT,
                {
                    "at": now,
                    "actor": actor,
                    "action": "wafer.transition",
                    "lot_id": lot_id,
                    "wafer_id": wafer_id,
                    "detail": detail,
                },
            )
        return event_id

    def record_event(self, event: WaferMachineEvent) -> int:
        """Record a transition of ``sequences.wafer.machine.WaferMachine`` (its ``on_event``
        hook)."""
        return self.record_transition(
            event.wafer_id,
            event.from_state,
            event.to_state,
            event.trigger,
            event.why,
            step_index=event.step,
            step_kind=event.step_kind,
            tool=event.tool,
            tool_time=event.tool_time,
            measurements=event.measurements,
        )

    def events(self, wafer_id: str) -> list[EventInfo]:
        with self._read() as session:
            rows = session.scalars(
                select(WaferEvent).where(WaferEvent.wafer_id == wafer_id).order_by(WaferEvent.id)
            ).all()
            return [_event_info(e) for e in rows]

    # -- steps, curves, intents

    def start_step(
        self,
        wafer_id: str,
        step_index: int,
        kind: str,
        tool: str,
        parameters: Mapping[str, Any],
        *,
        windows: Mapping[str, Any] | None = None,
        tool_time: float | None = None,
    ) -> int:
        """Record that a step starts on ``tool`` with the parameters sent; returns the step id.

        ``windows`` maps a result name to its accepted ``[low, high]`` (None = open
        end), as the recipe gives them; a retried step gets the next attempt number.
        """
        params = _finite_json_text(parameters, "step parameters")
        wins = _check_windows(windows or {})
        now = self._now()
        if self._hot is not None:
            hot = self._hot
            at = hot.when(now)
            with hot.transaction() as cur:
                if not cur.execute(hot.locate, (tool, at, wafer_id)).rowcount:
                    raise StoreError(f"no wafer {wafer_id}")
                last = cur.execute(hot.last_attempt, (wafer_id, step_index)).fetchone()[0]
                step = {
                    "wafer_id": wafer_id,
                    "step_index": step_index,
                    "attempt": (last or 0) + 1,
                    "kind": kind,
                    "tool": tool,
                    "status": "running",
                    "disposition": None,
                    "parameters": params,
                    "windows": hot.json(wins),
                    "results": None,
                    "started_at": at,
                    "ended_at": None,
                    "tool_time_start": tool_time,
                    "tool_time_end": None,
                }
                step_id = cur.execute(hot.add_step, [step[c] for c in hot.step_cols]).fetchone()[0]
            return step_id
        # Core statements, not ORM units of work: this is on the scheduler's hot path.
        with self._writer.begin() as conn:
            moved = conn.execute(
                update(Wafer).where(Wafer.id == wafer_id).values(location=tool, updated_at=now)
            ).rowcount
            if not moved:
                raise StoreError(f"no wafer {wafer_id}")
            last = conn.execute(
                select(func.max(WaferStep.attempt)).where(
                    WaferStep.wafer_id == wafer_id, WaferStep.step_index == step_index
                )
            ).scalar()
            return conn.execute(
                insert(WaferStep).returning(WaferStep.id),
                {
                    "wafer_id": wafer_id,
                    "step_index": step_index,
                    "attempt": (last or 0) + 1,
                    "kind": kind,
                    "tool": tool,
                    "status": "running",
                    "parameters": json.loads(params),
                    "windows": wins,
                    "started_at": now,
                    "tool_time_start": tool_time,
                },
            ).scalar_one()

    def end_step(
        self,
        step_id: int,
        *,
        status: str = "done",
        results: Mapping[str, Any] | None = None,
        disposition: str | None = None,
        curve_c: Sequence[float] | None = None,
        curve_interval_s: float = 5.0,
        liquidus_c: float | None = None,
        tool_time: float | None = None,
        fetch: bool = True,
    ) -> StepInfo | None:
        """Record a step's end: the results measured and, for a reflow, the wafer's curve.

        Returns the step as stored, unless ``fetch`` is false (the scheduler's hot path).
        """
        if status not in STEP_STATUSES[1:]:
            raise StoreError(
                f"step status {status!r}: expected one of {', '.join(STEP_STATUSES[1:])}"
            )
        text = _finite_json_text(results, "step results") if results is not None else None
        samples: list[float] | None = None
        if curve_c is not None:
            samples = [float(v) for v in curve_c]
            if not all(math.isfinite(v) for v in samples):
                raise StoreError(f"step {step_id}: temperature curve has a non-finite sample")
            if not curve_interval_s > 0:
                raise StoreError(f"step {step_id}: curve interval must be > 0 s")
        now = self._now()
        if self._hot is not None:
            hot = self._hot
            with hot.transaction() as cur:
                current = cur.execute(hot.step_state, (step_id,)).fetchone()
                if current is None:
                    raise StoreError(f"no step {step_id}")
                if current[0] != "running":
                    raise StoreError(f"step {step_id} of {current[1]} already ended ({current[0]})")
                cur.execute(
                    hot.end_step,
                    (status, text, disposition, hot.when(now), tool_time, step_id),
                )
                if samples is not None:
                    cur.execute(
                        hot.add_curve,
                        (step_id, float(curve_interval_s), liquidus_c, hot.json(samples)),
                    )
            return self.get_step(step_id) if fetch else None
        with self._writer.begin() as conn:
            current = conn.execute(
                select(WaferStep.status, WaferStep.wafer_id).where(WaferStep.id == step_id)
            ).first()
            if current is None:
                raise StoreError(f"no step {step_id}")
            if current.status != "running":
                raise StoreError(
                    f"step {step_id} of {current.wafer_id} already ended ({current.status})"
                )
            conn.execute(
                update(WaferStep)
                .where(WaferStep.id == step_id)
                .values(
                    status=status,
                    results=json.loads(text) if text is not None else None,
                    disposition=disposition,
                    ended_at=now,
                    tool_time_end=tool_time,
                )
            )
            if samples is not None:
                conn.execute(
                    insert(StepCurve),
                    {
                        "step_id": step_id,
                        "interval_s": float(curve_interval_s),
                        "liquidus_c": liquidus_c,
                        "samples_c": samples,
                    },
                )
        return self.get_step(step_id) if fetch else None

    def get_step(self, step_id: int) -> StepInfo:
        with self._read() as session:
            step = session.get(WaferStep, step_id)
            if step is None:
                raise StoreError(f"no step {step_id}")
            return _step_info(step, session.get(StepCurve, step_id))

    def steps(self, wafer_id: str) -> list[StepInfo]:
        with self._read() as session:
            rows = session.scalars(
                select(WaferStep)
                .where(WaferStep.wafer_id == wafer_id)
                .order_by(WaferStep.step_index, WaferStep.attempt)
            ).all()
            curves = {
                c.step_id: c
                for c in session.scalars(
                    select(StepCurve).where(StepCurve.step_id.in_([s.id for s in rows]))
                )
            }
            return [_step_info(s, curves.get(s.id)) for s in rows]

    def record_intent(self, step_id: int, command: str, *, tool: str | None = None) -> int:
        """Commit "about to send ``command``" before a command that must not be repeated."""
        now = self._now()
        if self._hot is not None:
            hot = self._hot
            with hot.transaction() as cur:
                step = cur.execute(hot.step_state, (step_id,)).fetchone()
                if step is None:
                    raise StoreError(f"no step {step_id}")
                row = cur.execute(
                    hot.add_intent, (step_id, tool or step[2], command, hot.when(now))
                ).fetchone()
            return row[0]
        with self._write() as session, session.begin():
            step = session.get(WaferStep, step_id)
            if step is None:
                raise StoreError(f"no step {step_id}")
            intent = StepIntent(
                step_id=step_id, tool=tool or step.tool, command=command, written_at=now
            )
            session.add(intent)
            session.flush()
            return intent.id

    def resolve_intent(self, intent_id: int, outcome: str = "done") -> None:
        """Close an intent: acknowledged (done), provably not sent (not_sent), refused (failed)."""
        if outcome not in INTENT_OUTCOMES:
            raise StoreError(f"intent outcome {outcome!r}: expected {', '.join(INTENT_OUTCOMES)}")
        now = self._now()
        if self._hot is not None:
            with self._hot.transaction() as cur:
                done = cur.execute(
                    self._hot.resolve_intent, (outcome, self._hot.when(now), intent_id)
                ).rowcount
            if not done:
                raise StoreError(f"no open intent {intent_id}")
            return
        with self._writer.begin() as conn:
            done = conn.execute(
                update(StepIntent)
                .where(StepIntent.id == intent_id, StepIntent.resolved_at.is_(None))
                .values(outcome=outcome, resolved_at=now)
            ).rowcount
        if not done:
            raise StoreError(f"no open intent {intent_id}")

    def open_intents(self) -> list[IntentInfo]:
        """Commands that may or may not have reached their tool (for recovery after a crash)."""
        return self._intents(StepIntent.resolved_at.is_(None))

    def step_intents(self, step_id: int) -> list[IntentInfo]:
        """Every intent recorded for one step record, open or resolved, in order."""
        return self._intents(StepIntent.step_id == step_id)

    def _intents(self, *where: Any) -> list[IntentInfo]:
        with self._read() as session:
            rows = session.execute(
                select(StepIntent, WaferStep.wafer_id, WaferStep.step_index)
                .join(WaferStep, WaferStep.id == StepIntent.step_id)
                .where(*where)
                .order_by(StepIntent.id)
            ).all()
            return [_intent_info(i, w, s) for i, w, s in rows]

    # -- operator and engineer requests

    def hold_wafer(self, wafer_id: str, *, user: str, reason: str) -> RequestInfo:
        """Ask the scheduler to hold a wafer at its next safe point."""
        if not reason.strip():
            raise StoreError(f"holding {wafer_id} needs a reason")
        return self._wafer_request(wafer_id, "hold_wafer", user=user, reason=reason)

    def disposition_wafer(
        self, wafer_id: str, decision: str | Disposition, *, user: str, reason: str
    ) -> RequestInfo:
        """An engineer's continue/retry/scrap for a held wafer; the scheduler carries it out."""
        try:
            decision = Disposition(decision)
        except ValueError:
            raise StoreError(
                f"unknown disposition {decision!r} (expected continue, retry or scrap)"
            ) from None
        if not reason.strip():
            raise StoreError(f"a disposition of {wafer_id} needs a reason")

        def check(session: Session, wafer: Wafer) -> None:
            allowed = DISPOSITIONS_IN_STATE.get(wafer.state)
            if allowed is None:
                raise StoreError(
                    f"wafer {wafer_id} is {wafer.state}: only a held wafer or one awaiting "
                    "disposition takes a disposition"
                )
            if decision not in allowed:
                names = " or ".join(d.value for d in allowed)
                raise StoreError(
                    f"wafer {wafer_id} is {wafer.state}: it can take {names}, not {decision.value}"
                )
            if decision is Disposition.RETRY:
                failed_kind = session.scalar(
                    select(WaferEvent.step_kind)
                    .where(WaferEvent.wafer_id == wafer_id, WaferEvent.to_state == AWAITING)
                    .order_by(WaferEvent.id.desc())
                    .limit(1)
                )
                if failed_kind in NEVER_REPEATED_STEPS:
                    raise StoreError(
                        f"wafer {wafer_id} failed a {failed_kind} step: a {failed_kind} is never "
                        "repeated (continue or scrap)"
                    )

        return self._wafer_request(
            wafer_id,
            decision.value,
            user=user,
            reason=reason,
            check=check,
            same_kind=[d.value for d in Disposition],
        )

    def _wafer_request(
        self,
        wafer_id: str,
        action: str,
        *,
        user: str,
        reason: str,
        check: Callable[[Session, Wafer], None] | None = None,
        same_kind: Sequence[str] = (),
    ) -> RequestInfo:
        now = self._now()
        with self._write() as session, session.begin():
            wafer = session.get(Wafer, wafer_id)
            if wafer is None:
                raise StoreError(f"no wafer {wafer_id}")
            if wafer.outcome is not None:
                raise StoreError(
                    f"wafer {wafer_id} is finished ({wafer.outcome}): nothing to {action}"
                )
            if check is not None:
                check(session, wafer)
            pending = session.scalar(
                select(OperatorRequest).where(
                    OperatorRequest.wafer_id == wafer_id,
                    OperatorRequest.action.in_([action, *same_kind]),
                    OperatorRequest.handled_at.is_(None),
                )
            )
            if pending is not None:
                raise StoreError(
                    f"wafer {wafer_id} already has a pending {pending.action} request "
                    f"(#{pending.id} by {pending.requested_by})"
                )
            request = OperatorRequest(
                lot_id=wafer.lot_id,
                wafer_id=wafer_id,
                action=action,
                reason=reason,
                requested_by=user,
                requested_at=now,
            )
            session.add(request)
            session.add(_audit(now, user, f"wafer.{action}", wafer.lot_id, wafer_id, reason))
            session.flush()
            return _request_info(request)

    def pending_requests(self, lot_id: str | None = None) -> list[RequestInfo]:
        """Requests the scheduler has not handled yet, oldest first."""
        if self._hot is not None and not self._hot.any_pending():
            return []  # the controller asks once a second; almost always there are none
        where = [OperatorRequest.handled_at.is_(None)]
        if lot_id is not None:
            where.append(OperatorRequest.lot_id == lot_id)
        return self._requests(*where)

    def requests(
        self, *, lot_id: str | None = None, wafer_id: str | None = None
    ) -> list[RequestInfo]:
        where = []
        if lot_id is not None:
            where.append(OperatorRequest.lot_id == lot_id)
        if wafer_id is not None:
            where.append(OperatorRequest.wafer_id == wafer_id)
        return self._requests(*where)

    def _requests(self, *where: Any) -> list[RequestInfo]:
        with self._read() as session:
            rows = session.scalars(
                select(OperatorRequest).where(*where).order_by(OperatorRequest.id)
            ).all()
            return [_request_info(r) for r in rows]

    def mark_request_handled(
        self, request_id: int, note: str = "", *, actor: str = "controller"
    ) -> None:
        now = self._now()
        with self._write() as session, session.begin():
            request = session.get(OperatorRequest, request_id)
            if request is None or request.handled_at is not None:
                raise StoreError(f"no pending request {request_id}")
            request.handled_at = now
            request.handled_note = note
            session.add(
                _audit(
                    now,
                    actor,
                    f"request.{request.action}.handled",
                    request.lot_id,
                    request.wafer_id,
                    note,
                )
            )

    # -- alarms

    def alarm_set(
        self,
        tool: str,
        code: int,
        text: str,
        *,
        wafer_id: str | None = None,
        step_id: int | None = None,
        tool_time: float | None = None,
    ) -> int:
        """Record a tool alarm (with the wafer it hit); an alarm already active keeps its id."""
        now = self._now()
        with self._write() as session, session.begin():
            active = session.scalar(
                select(Alarm).where(
                    Alarm.tool == tool, Alarm.code == code, Alarm.cleared_at.is_(None)
                )
            )
            if active is not None:
                return active.id
            lot_id = None
            if wafer_id is not None:
                lot_id = session.scalar(select(Wafer.lot_id).where(Wafer.id == wafer_id))
            alarm = Alarm(
                tool=tool,
                code=code,
                text=text,
                wafer_id=wafer_id,
                lot_id=lot_id,
                step_id=step_id,
                set_at=now,
                tool_time=tool_time,
            )
            session.add(alarm)
            session.add(
                _audit(now, tool, "alarm.set", lot_id, wafer_id, f"{tool} alarm {code} {text}")
            )
            session.flush()
            return alarm.id

    def alarm_cleared(self, tool: str, code: int | None = None) -> list[int]:
        """Mark a tool's active alarm (``code``) or all its active alarms cleared."""
        now = self._now()
        with self._write() as session, session.begin():
            query = select(Alarm).where(Alarm.tool == tool, Alarm.cleared_at.is_(None))
            if code is not None:
                query = query.where(Alarm.code == code)
            alarms = session.scalars(query).all()
            for alarm in alarms:
                alarm.cleared_at = now
                session.add(
                    _audit(
                        now,
                        tool,
                        "alarm.clear",
                        alarm.lot_id,
                        alarm.wafer_id,
                        f"{tool} alarm {alarm.code} {alarm.text}",
                    )
                )
            return [a.id for a in alarms]

    def acknowledge_alarm(self, alarm_id: int, *, user: str) -> AlarmInfo:
        now = self._now()
        with self._write() as session, session.begin():
            alarm = session.get(Alarm, alarm_id)
            if alarm is None:
                raise StoreError(f"no alarm {alarm_id}")
            if alarm.acknowledged_at is not None:
                raise StoreError(
                    f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by}"
                )
            alarm.acknowledged_at = now
            alarm.acknowledged_by = user
            session.add(
                _audit(
                    now,
                    user,
                    "alarm.ack",
                    alarm.lot_id,
                    alarm.wafer_id,
                    f"{alarm.tool} alarm {alarm.code} {alarm.text}",
                )
            )
            session.flush()
            return _alarm_info(alarm)

    def alarms(
        self,
        *,
        active_only: bool = False,
        lot_id: str | None = None,
        wafer_id: str | None = None,
        tool: str | None = None,
    ) -> list[AlarmInfo]:
        """Alarms, newest first."""
        where = []
        if active_only:
            where.append(Alarm.cleared_at.is_(None))
        if lot_id is not None:
            where.append(Alarm.lot_id == lot_id)
        if wafer_id is not None:
            where.append(Alarm.wafer_id == wafer_id)
        if tool is not None:
            where.append(Alarm.tool == tool)
        with self._read() as session:
            rows = session.scalars(select(Alarm).where(*where).order_by(Alarm.id.desc())).all()
            return [_alarm_info(a) for a in rows]

    # -- tool E10 states

    def record_tool_state(
        self,
        tool: str,
        e10_state: E10State | str,
        *,
        tool_state: str = "",
        reason: str = "",
        tool_time: float | None = None,
    ) -> bool:
        """Record a tool's E10 state if it changed; True when a row was written."""
        try:
            state = e10_state if isinstance(e10_state, E10State) else E10State.parse(e10_state)
        except ValueError as exc:
            raise StoreError(f"{tool}: {exc}") from None
        now = self._now()
        with self._writer.begin() as conn:
            latest = conn.execute(
                select(ToolState.e10_state, ToolState.tool_state)
                .where(ToolState.tool == tool)
                .order_by(ToolState.id.desc())
                .limit(1)
            ).first()
            if latest is not None and tuple(latest) == (state.value, tool_state):
                return False
            conn.execute(
                insert(ToolState),
                {
                    "tool": tool,
                    "e10_state": state.value,
                    "tool_state": tool_state,
                    "reason": reason,
                    "at": now,
                    "tool_time": tool_time,
                },
            )
        return True

    def tool_states_latest(self) -> list[ToolStateInfo]:
        """The newest E10 state of every tool seen, by tool name."""
        with self._read() as session:
            newest = (
                select(ToolState.tool, func.max(ToolState.id).label("id"))
                .group_by(ToolState.tool)
                .subquery()
            )
            rows = session.scalars(
                select(ToolState).join(newest, newest.c.id == ToolState.id).order_by(ToolState.tool)
            ).all()
            return [_tool_state_info(r) for r in rows]

    def tool_state_history(
        self, tool: str | None = None, *, until: datetime | None = None
    ) -> list[ToolStateInfo]:
        """E10 state changes, oldest first."""
        where = []
        if tool is not None:
            where.append(ToolState.tool == tool)
        if until is not None:
            where.append(ToolState.at <= until)
        with self._read() as session:
            rows = session.scalars(select(ToolState).where(*where).order_by(ToolState.id)).all()
            return [_tool_state_info(r) for r in rows]

    # -- audit

    def audit(
        self,
        actor: str,
        action: str,
        detail: str = "",
        *,
        lot_id: str | None = None,
        wafer_id: str | None = None,
    ) -> int:
        """Record an operator or engineer action the store has no other call for."""
        now = self._now()
        with self._writer.begin() as conn:
            return conn.execute(
                insert(AuditEntry).returning(AuditEntry.id),
                {
                    "at": now,
                    "actor": actor,
                    "action": action,
                    "lot_id": lot_id,
                    "wafer_id": wafer_id,
                    "detail": detail,
                },
            ).scalar_one()

    def audit_log(
        self,
        *,
        lot_id: str | None = None,
        wafer_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditInfo]:
        """Audit entries, oldest first (the newest ``limit`` of them when given)."""
        where = []
        if lot_id is not None:
            where.append(AuditEntry.lot_id == lot_id)
        if wafer_id is not None:
            where.append(AuditEntry.wafer_id == wafer_id)
        with self._read() as session:
            query = select(AuditEntry).where(*where).order_by(AuditEntry.id.desc())
            if limit is not None:
                query = query.limit(limit)
            rows = session.scalars(query).all()
            return [_audit_info(a) for a in reversed(rows)]

    # -- whole histories

    def wafer_history(self, wafer_id: str) -> WaferHistory:
        """Everything about one wafer, read as one consistent snapshot."""
        with self._snapshot():
            return WaferHistory(
                wafer=self.get_wafer(wafer_id),
                events=tuple(self.events(wafer_id)),
                steps=tuple(self.steps(wafer_id)),
                intents=tuple(self._intents(WaferStep.wafer_id == wafer_id)),
                alarms=tuple(self.alarms(wafer_id=wafer_id)),
                requests=tuple(self.requests(wafer_id=wafer_id)),
            )


# --- the SQLite hot path -------------------------------------------------------------------------


class _SqliteHotPath:
    """The scheduler's per-transition writes on a plain sqlite3 connection (SQLite files only).

    Same rows as the Core path (values converted by the bind processors SQLAlchemy
    itself uses for SQLite), each call one ``BEGIN IMMEDIATE`` … ``COMMIT``: it skips
    SQLAlchemy's per-statement and per-transaction work, which was most of the
    controller's CPU per wafer. Other back ends, and every other call, use SQLAlchemy.
    """

    def __init__(self, engine: Engine, path: Path) -> None:
        dialect = engine.dialect
        # dialect_impl: the processors of SQLite's own DATETIME and JSON, exactly as the
        # Core path stores them (text without a zone; JSON text or NULL).
        when = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        as_json = JSON(none_as_null=True).dialect_impl(dialect).bind_processor(dialect)
        if when is None or as_json is None:
            raise RuntimeError("SQLite's DATETIME and JSON types lost their bind processors")
        self.when, self.json = when, as_json
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={db.SQLITE_BUSY_TIMEOUT_MS}",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self._lock = threading.RLock()
        self._open: sqlite3.Cursor | None = None  # the transaction in progress
        event_cols = [c.name for c in WaferEvent.__table__.c if c.name != "id"]
        audit_cols = [c.name for c in AuditEntry.__table__.c if c.name != "id"]
        step_cols = [c.name for c in WaferStep.__table__.c if c.name != "id"]
        self.event_cols, self.audit_cols, self.step_cols = event_cols, audit_cols, step_cols
        self.move_wafer = (
            "UPDATE wafers SET state = ?, updated_at = ?, location = coalesce(?, location), "
            "outcome = coalesce(?, outcome) WHERE id = ? RETURNING lot_id"
        )
        self.add_event = _insert_sql("wafer_events", event_cols) + " RETURNING id"
        self.add_audit = _insert_sql("audit_log", audit_cols)
        self.locate = "UPDATE wafers SET location = ?, updated_at = ? WHERE id = ?"
        self.last_attempt = (
            "SELECT max(attempt) FROM wafer_steps WHERE wafer_id = ? AND step_index = ?"
        )
        self.add_step = _insert_sql("wafer_steps", step_cols) + " RETURNING id"
        self.step_state = "SELECT status, wafer_id, tool FROM wafer_steps WHERE id = ?"
        self.resolve_intent = (
            "UPDATE step_intents SET outcome = ?, resolved_at = ? "
            "WHERE id = ? AND resolved_at IS NULL"
        )
        self.end_step = (
            "UPDATE wafer_steps SET status = ?, results = ?, disposition = ?, ended_at = ?, "
            "tool_time_end = ? WHERE id = ?"
        )
        self.add_curve = _insert_sql(
            "step_curves", ["step_id", "interval_s", "liquidus_c", "samples_c"]
        )
        self.pending = "SELECT 1 FROM operator_requests WHERE handled_at IS NULL LIMIT 1"
        self.add_intent = (
            _insert_sql("step_intents", ["step_id", "tool", "command", "written_at"])
            + " RETURNING id"
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One BEGIN IMMEDIATE … COMMIT; nested calls join the open one (``Store.atomic``)."""
        with self._lock:
            if self._open is not None:
                yield self._open
                return
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            self._open = cur
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                self._open = None
                cur.close()

    def any_pending(self) -> bool:
        """Is any operator request unhandled? (A plain read on the hot connection.)"""
        with self._lock:
            return self.db.execute(self.pending).fetchone() is not None

    def close(self) -> None:
        self.db.close()


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"


# --- hot-path statements, built once ----------------------------------------------------------

_MOVE_WAFER = (
    update(Wafer)
    .where(Wafer.id == bindparam("wafer"))
    .values(
        state=bindparam("state"),
        updated_at=bindparam("updated_at", type_=Wafer.__table__.c.updated_at.type),
        location=func.coalesce(bindparam("new_location", type_=String), Wafer.location),
        outcome=func.coalesce(bindparam("new_outcome", type_=String), Wafer.outcome),
    )
    .returning(Wafer.lot_id)
)
_ADD_EVENT = insert(WaferEvent).returning(WaferEvent.id)
_ADD_AUDIT = insert(AuditEntry)


# --- helpers ------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """The driver's own words for a database failure, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).split("\n")[0]


def _lot_state(state: str | LotState) -> LotState:
    try:
        return LotState(state)
    except ValueError:
        names = ", ".join(s.value for s in LotState)
        raise StoreError(f"unknown lot state {state!r} (expected one of: {names})") from None


def _check_windows(windows: Mapping[str, Any]) -> dict[str, list[float | None]]:
    checked: dict[str, list[float | None]] = {}
    for name, window in windows.items():
        try:
            low, high = window
            bounds = [None if v is None else float(v) for v in (low, high)]
        except (TypeError, ValueError):
            raise StoreError(
                f"window for {name!r} must be [low, high] (None for an open end), got {window!r}"
            ) from None
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            raise StoreError(f"window for {name!r} has low {bounds[0]} above high {bounds[1]}")
        checked[str(name)] = bounds
    return checked


def slot_text(slots: Sequence[int]) -> str:
    """Slots as compact ranges: [1,2,3,5] -> "1-3,5"."""
    parts: list[str] = []
    start = prev = slots[0]
    for slot in [*slots[1:], None]:
        if slot is not None and slot == prev + 1:
            prev = slot
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if slot is not None:
            start = prev = slot
    return ",".join(parts)


def _audit(
    at: datetime, actor: str, action: str, lot_id: str | None, wafer_id: str | None, detail: str
) -> AuditEntry:
    return AuditEntry(
        at=at, actor=actor, action=action, lot_id=lot_id, wafer_id=wafer_id, detail=detail
    )


def _copy(info: type[_Info], row: Any, **extra: Any) -> _Info:
    """An Info record from an ORM row: every field of the same name, plus ``extra``."""
    names = _INFO_FIELDS.get(info)
    if names is None:
        names = _INFO_FIELDS[info] = tuple(f.name for f in dataclasses.fields(info))
    return info(**{n: extra[n] if n in extra else getattr(row, n) for n in names})


_Info = TypeVar("_Info")
_INFO_FIELDS: dict[type, tuple[str, ...]] = {}


def _lot_info(lot: Lot, wafer_count: int) -> LotInfo:
    return _copy(LotInfo, lot, wafer_count=wafer_count)


def _wafer_info(w: Wafer) -> WaferInfo:
    return _copy(WaferInfo, w)


def _event_info(e: WaferEvent) -> EventInfo:
    return _copy(EventInfo, e)


def _step_info(s: WaferStep, curve: StepCurve | None) -> StepInfo:
    shown = None
    if curve is not None:
        shown = CurveInfo(curve.interval_s, curve.liquidus_c, tuple(curve.samples_c))
    return _copy(StepInfo, s, curve=shown)


def _intent_info(i: StepIntent, wafer_id: str, step_index: int) -> IntentInfo:
    return _copy(IntentInfo, i, wafer_id=wafer_id, step_index=step_index)


def _alarm_info(a: Alarm) -> AlarmInfo:
    return _copy(AlarmInfo, a)


def _tool_state_info(t: ToolState) -> ToolStateInfo:
    return _copy(ToolStateInfo, t)


def _request_info(r: OperatorRequest) -> RequestInfo:
    return _copy(RequestInfo, r)


def _audit_info(a: AuditEntry) -> AuditInfo:
    return _copy(AuditInfo, a)

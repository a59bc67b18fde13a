"""The controller's record of lots, wafers, steps, alarms, tool states and actions.

``Store`` is the one API the rest of the controller uses to read and write the
database: a thin facade over one module per aggregate in
``controller.persistence`` (lots; wafers with their steps and intents;
operator requests; alarms; tool states; audit; controller locks; the operator
screen's ended sessions). A method that only passes its arguments on is the
aggregate's function itself, bound to the store's database
(``controller.persistence.facade.bound``); the ones written out add something
(this store's line, a rule, a read back). The rules it
enforces live in ``controller.domain``. Every write is one short committed
transaction, so what the database says is what happened (or, for an open
intent, what may have happened):

- **persist before acting**: the scheduler records a wafer's transition
  (``record_transition``) and, before a command that cannot be repeated (oven
  LOAD), an intent (``record_intent``), and only then talks to the tool;
- reads return plain frozen dataclasses, never live ORM objects.

Writers take SQLite's write lock at BEGIN (see ``controller.db``), so the
controller and an operator's ``bumpline lot hold`` never deadlock; readers in
other processes read the last committed state while the controller writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from controller import db
from controller.domain import (
    DEFAULT_PRIORITY,
    DISPOSITIONS_IN_STATE,
    LOT_TRANSITIONS,
    MAX_LOT_ID_LEN,
    MAX_WAFERS,
    OUTCOME_OF_STATE,
    OUTCOMES,
    PRIORITY_RANGE,
    REQUEST_ACTIONS,
    WAFER_START_STATE,
    Disposition,
    LotState,
    RuleError,
    check_lot_id,
    lot_state,
    slot_text,
    slots_for_count,
    wafer_id,
)
from controller.line.e10 import E10State, ToolMode
from controller.persistence import alarms as _alarms
from controller.persistence import audit as _audit
from controller.persistence import locks as _locks
from controller.persistence import look as _look
from controller.persistence import lots as _lots
from controller.persistence import requests as _requests
from controller.persistence import tool_modes as _tool_modes
from controller.persistence import tool_states as _tool_states
from controller.persistence import wafers as _wafers
from controller.persistence import web_sessions as _web_sessions
from controller.persistence.base import Database, StoreError, finite_json, reason, rules, utc_now
from controller.persistence.facade import bound
from controller.persistence.locks import (
    DEFAULT_LEASE_S,
    THIS_PROCESS,
    Holder,
    LockHeldError,
    LockInfo,
    line_resource,
    lot_resource,
)
from controller.persistence.records import (
    AlarmInfo,
    AuditInfo,
    CurveInfo,
    EventInfo,
    IntentInfo,
    LotInfo,
    RequestInfo,
    StepInfo,
    ToolStateInfo,
    WaferHistory,
    WaferInfo,
    jsonable,
)
from controller.persistence.tool_modes import ToolModeInfo
from sequences.wafer.machine import WaferEvent as WaferMachineEvent

__all__ = [
    "DEFAULT_LEASE_S",
    "DEFAULT_PRIORITY",
    "DISPOSITIONS_IN_STATE",
    "LOT_TRANSITIONS",
    "MAX_LOT_ID_LEN",
    "MAX_WAFERS",
    "OUTCOMES",
    "OUTCOME_OF_STATE",
    "PRIORITY_RANGE",
    "REQUEST_ACTIONS",
    "AlarmInfo",
    "AuditInfo",
    "CurveInfo",
    "Disposition",
    "EventInfo",
    "Holder",
    "IntentInfo",
    "LockHeldError",
    "LockInfo",
    "LotInfo",
    "LotState",
    "RequestInfo",
    "RuleError",
    "StepInfo",
    "Store",
    "StoreError",
    "ToolModeInfo",
    "ToolStateInfo",
    "WaferHistory",
    "WaferInfo",
    "check_lot_id",
    "jsonable",
    "line_resource",
    "lot_resource",
    "slot_text",
    "slots_for_count",
    "wafer_id",
]


class Store:
    """Open with ``Store(url)`` (runs migrations to head); ``close()`` when done.

    ``create=False`` refuses to make a new SQLite file (query commands use it so a
    mistyped ``--db`` is an error, not a fresh empty database). ``now`` returns the
    current UTC time; tests inject their own. ``line_id``: the line this store's
    controller drives; the alarms and tool states it records name it (several lines
    share one database, and their tools' names may repeat).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        create: bool = True,
        now: Callable[[], datetime] = utc_now,
        line_id: str | None = None,
    ) -> None:
        self.url = db.resolve_db_url(url)
        self.line_id = _lots.check_line_id(line_id)
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
            engine = db.make_engine(self.url)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open database {where}: {reason(exc)}") from None
        try:
            db.upgrade_to_head(engine)
        except (SQLAlchemyError, ImportError, db.MigrationError) as exc:
            # MigrationError: e.g. the database was stamped by a newer bumpline.
            engine.dispose()
            raise StoreError(f"cannot open database {where}: {reason(exc)}") from None
        self._db = Database(engine, now, self.line_id)
        self._closed = False

    # -- lifecycle

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def atomic(self) -> AbstractContextManager[None]:
        """The scheduler's writes inside commit together, or not at all.

        One transaction for, say, a transition and the step record it opens: one
        commit instead of several, on every back end. Only the hot-path writes
        (record_transition/record_event, start_step, end_step, record_intent,
        resolve_intent) may be called inside; reads inside see the state before it.
        (The database's own block, not one wrapped in another: one per transaction.)
        """
        return self._db.atomic()

    # -- lots

    create_lot = bound(_lots.create_lot, """Queue a new lot (for ``line_id``, or any line): its
        wafers ``<LOT>-<slot:02d>`` wait in the carrier.""")
    get_lot = bound(_lots.get_lot)
    list_lots = bound(_lots.list_lots, "Lots, newest first (only ``line_id``'s when given).")
    claim_lot = bound(_lots.claim_lot)
    take_lot_for_line = bound(_lots.take_lot_for_line)
    next_queued_lot = bound(
        _lots.next_queued_lot, "The queued lot to start next: most urgent priority, then oldest."
    )

    def set_lot_state(
        self, lot_id: str, state: str | LotState, *, user: str = "controller", reason: str = ""
    ) -> LotInfo:
        """Move a lot along queued → running → complete/aborted (the scheduler's calls)."""
        with rules():
            target = lot_state(state)
        _lots.change_lot(
            self._db, lot_id, target, user=user, reason=reason, action=f"lot.{target.value}"
        )
        return self.get_lot(lot_id)

    def hold_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """Operator hold: no new wafer of the lot starts until it is resumed."""
        _lots.change_lot(
            self._db, lot_id, LotState.HELD, user=user, reason=reason, action="lot.hold",
            request="hold_lot",
        )
        return self.get_lot(lot_id)

    def resume_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """Back to the state the lot was held in (queued or running)."""
        _lots.change_lot(
            self._db, lot_id, None, user=user, reason=reason, action="lot.resume",
            request="resume_lot",
        )
        return self.get_lot(lot_id)

    def abort_lot(self, lot_id: str, *, user: str, reason: str = "") -> LotInfo:
        """No more wafers start; wafers still in the carrier are aborted at once.

        Wafers already in a tool are the scheduler's to bring to a safe stop (it sees
        the pending ``abort_lot`` request).
        """
        _lots.change_lot(
            self._db, lot_id, LotState.ABORTED, user=user, reason=reason, action="lot.abort",
            request="abort_lot",
        )
        return self.get_lot(lot_id)

    # -- wafers

    get_wafer = bound(_wafers.get_wafer)

    def wafers(self, lot_id: str) -> list[WaferInfo]:
        with self._db.snapshot():
            _lots.get_lot(self._db, lot_id)  # "no lot X" rather than an empty list
            return _wafers.lot_wafers(self._db, lot_id)

    record_transition = bound(_wafers.record_transition, """Commit one wafer transition (event
        row and wafer state; the audit log shows it from the event row); returns its id.

        Call it before the tool command the transition leads to. ``outcome`` (good,
        scrapped, aborted) defaults from ``OUTCOME_OF_STATE`` for a final state.""")

    def checked_json(self, value: Mapping[str, Any], what: str) -> db.EncodedJSON:
        """Checked and encoded now for a later write (the journal's deferred transitions):
        a value that cannot be stored is refused here, to its own wafer (``StoreError``)."""
        return finite_json(value, what)

    def record_event(self, event: WaferMachineEvent, *, location: str | None = None) -> int:
        """Record a transition of ``sequences.wafer.machine.WaferMachine`` (its ``on_event``
        hook); ``location``: where the wafer is now, if it moved (a step's tool)."""
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
            location=location,
        )

    events = bound(_wafers.events)

    # -- steps, curves, intents

    start_step = bound(_wafers.start_step, """Record that a step starts on ``tool`` with the
        parameters sent; returns the step id.

        ``windows`` maps a result name to its accepted ``[low, high]`` (None = open
        end), as the recipe gives them; a retried step gets the next attempt number.""")

    def end_step(
        self,
        step_id: int,
        *,
        status: str = "done",
        results: Mapping[str, Any] | db.EncodedJSON | None = None,
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
        _wafers.end_step(
            self._db, step_id, status=status, results=results, disposition=disposition,
            curve_c=curve_c, curve_interval_s=curve_interval_s, liquidus_c=liquidus_c,
            tool_time=tool_time,
        )
        return self.get_step(step_id) if fetch else None

    get_step = bound(_wafers.get_step)
    steps = bound(_wafers.steps)
    record_intent = bound(_wafers.record_intent, """Commit "about to send ``command``" before a
        command that must not be repeated.""")
    resolve_intent = bound(_wafers.resolve_intent, """Close an intent: acknowledged (done),
        provably not sent (not_sent), refused (failed).""")
    open_intents = bound(_wafers.open_intents, """Commands that may or may not have reached
        their tool (for recovery after a crash).""")
    step_intents = bound(_wafers.step_intents, """Every intent recorded for one step record,
        open or resolved, in order.""")

    # -- operator and engineer requests

    hold_wafer = bound(
        _requests.hold_wafer, "Ask the scheduler to hold a wafer at its next safe point."
    )
    disposition_wafer = bound(_requests.disposition_wafer, """An engineer's continue/retry/scrap
        for a held wafer; the scheduler carries it out.""")
    pending_requests = bound(_requests.pending_requests)
    requests = bound(_requests.lot_or_wafer_requests)
    mark_request_handled = bound(_requests.mark_request_handled)

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
        return _alarms.alarm_set(
            self._db, tool, code, text, wafer_id=wafer_id, step_id=step_id, tool_time=tool_time,
            line_id=self.line_id,
        )

    def alarm_cleared(self, tool: str, code: int | None = None) -> list[int]:
        """Mark a tool's (of this store's line) active alarm ``code``, or all, cleared."""
        return _alarms.alarm_cleared(self._db, tool, code, line_id=self.line_id)

    acknowledge_alarm = bound(_alarms.acknowledge_alarm)
    alarms = bound(_alarms.alarms)

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
        return _tool_states.record_tool_state(
            self._db, tool, e10_state, tool_state=tool_state, reason=reason, tool_time=tool_time,
            line_id=self.line_id,
        )

    tool_states_latest = bound(_tool_states.tool_states_latest)
    tool_state_history = bound(_tool_states.tool_state_history)

    # -- tool modes (people take a tool out of production and back)

    def set_tool_mode(self, tool: str, mode: ToolMode | str, *, user: str,
                      reason: str = "") -> tuple[ToolMode, ToolMode]:
        """Put this store's line's tool in a mode, audited; (previous, new). Its line's
        controller applies it."""
        return _tool_modes.set_tool_mode(self._db, tool, mode, user=user, reason=reason,
                                         line_id=self.line_id)

    def tool_modes(self) -> dict[str, ToolModeInfo]:
        """This store's line's tools people set a mode for (not listed: in production)."""
        return _tool_modes.tool_modes(self._db, self.line_id)

    def look(self) -> tuple[dict[str, ToolModeInfo], bool]:
        """The controller's look, one read: (``tool_modes()``, whether any request waits)."""
        return _look.look(self._db, self.line_id)

    def every_tool_mode(self) -> list[ToolModeInfo]:
        """Every line's tool modes, by line and tool."""
        return _tool_modes.every_tool_mode(self._db)

    # -- audit

    audit = bound(_audit.audit, """Record an operator or engineer action the store has no other
        call for.""")
    audit_log = bound(_audit.audit_log)

    # -- one controller per line and per lot

    def acquire_line_lock(
        self, line_id: str, *, holder: Holder = THIS_PROCESS, lease_s: float = DEFAULT_LEASE_S
    ) -> LockInfo:
        """Take the line for ``holder``, or raise ``LockHeldError`` naming the one holding it."""
        return _locks.acquire(self._db, line_resource(line_id), holder, lease_s=lease_s)

    def acquire_lot_lock(
        self, lot_id: str, *, holder: Holder = THIS_PROCESS, lease_s: float = DEFAULT_LEASE_S
    ) -> LockInfo:
        """Take a lot for ``holder``, or raise ``LockHeldError`` naming the one holding it."""
        return _locks.acquire(self._db, lot_resource(lot_id), holder, lease_s=lease_s)

    renew_lock = bound(_locks.renew, """The heartbeat: extend the lease; ``StoreError`` if the
        lock was taken over.""")
    release_lock = bound(_locks.release)

    def line_lock_holder(self, line_id: str, *, live_only: bool = False) -> LockInfo | None:
        """Who holds the line's lease; ``live_only``: None for a stale one (nobody runs it)."""
        return _locks.holder(self._db, line_resource(line_id), live_only=live_only)

    def lot_lock_holder(self, lot_id: str, *, live_only: bool = False) -> LockInfo | None:
        """Who holds the lot's lease; ``live_only``: None for a stale one (nobody runs it)."""
        return _locks.holder(self._db, lot_resource(lot_id), live_only=live_only)

    def act_on_lot(self, lot_id: str, action: str, *, user: str,
                   reason: str = "") -> tuple[LotInfo, LockInfo | None]:
        """A person's hold, resume or abort, from any process (the CLI, the screen, the
        factory host): (the lot now, the controller it was queued for, or None).

        With a live controller holding the lot's lease, the change is made and its request
        left for that controller (it alone knows which wafers are in a tool). With none, it
        is carried out here where that is safe and its request answered: an abort of a lot
        with wafers out of the carrier is refused, nothing changed (only a controller can
        bring them to a safe stop; "aborted" with wafers neither finished nor aborted would
        leave them in the tools for good)."""
        change = {"hold": self.hold_lot, "resume": self.resume_lot,
                  "abort": self.abort_lot}.get(action)
        if change is None:
            raise StoreError(f"no lot action {action!r} (hold, resume or abort)")
        self.get_lot(lot_id)  # "no lot X" first
        holder = self.lot_lock_holder(lot_id, live_only=True)  # its lease, not what it said
        if holder is None and action == "abort":
            started = [w for w in self.wafers(lot_id)
                       if w.outcome is None and w.state != WAFER_START_STATE]
            if started:
                shown = ", ".join(f"{w.id} ({w.state} at {w.location})" for w in started[:3])
                more = f" and {len(started) - 3} more" if len(started) > 3 else ""
                raise StoreError(
                    f"lot {lot_id}: {len(started)} wafer(s) in process ({shown}{more}) and "
                    f"no controller runs the lot; nothing changed: resume it (bumpline run "
                    f"--resume {lot_id}) and abort it there, so the tools bring the wafers "
                    "to a safe stop")
        lot = change(lot_id, user=user, reason=reason)
        if holder is None:
            # A controller may have taken the lot between the look and the change: then its
            # request is that controller's to carry out (a hold it skips if the store says
            # otherwise by then), not answered here as if nobody ran the lot.
            holder = self.lot_lock_holder(lot_id, live_only=True)
        if holder is None:
            request = f"{action}_lot"
            for pending in self.pending_requests(lot_id):
                if pending.action == request and pending.wafer_id is None:
                    try:
                        self.mark_request_handled(
                            pending.id, note="carried out directly: no controller runs "
                            "the lot", actor=user)
                    except StoreError:  # answered meanwhile by a controller that took it
                        pass
        return lot, holder

    # -- the operator screen's sessions ended by logging out (controller/web/auth.py)

    end_web_session = bound(_web_sessions.end_web_session)
    web_session_ended = bound(_web_sessions.web_session_ended)
    prune_web_sessions = bound(_web_sessions.prune_web_sessions)

    # -- whole histories

    def wafer_history(self, wafer_id: str) -> WaferHistory:
        """Everything about one wafer, read as one consistent snapshot."""
        with self._db.snapshot():
            return WaferHistory(
                wafer=self.get_wafer(wafer_id),
                events=tuple(self.events(wafer_id)),
                steps=tuple(self.steps(wafer_id)),
                intents=tuple(_wafers.wafer_intents(self._db, wafer_id)),
                alarms=tuple(self.alarms(wafer_id=wafer_id)),
                requests=tuple(self.requests(wafer_id=wafer_id)),
            )

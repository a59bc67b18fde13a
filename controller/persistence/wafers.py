"""The wafer aggregate: a wafer's state, its transitions, its steps and their intents.

This is the scheduler's hot path (about 30 transitions and a few steps per
wafer, each committed before the tool command that follows it): prebuilt Core
statements, each call one short transaction on the store's writer connection.
A transition is its event row and the wafer's new state; the audit log reads its
line from the event (docs/decisions/0020-audit-log-reads-wafer-events.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)

from controller.db import EncodedJSON
from controller.domain import check_intent_outcome, check_step_status, check_windows, wafer_outcome
from controller.models import StepCurve, StepIntent, Wafer, WaferEvent, WaferStep
from controller.persistence.base import Database, HotStatement, StoreError, finite_json, rules
from controller.persistence.records import (
    EventInfo,
    IntentInfo,
    StepInfo,
    WaferInfo,
    event_info,
    intent_info,
    step_info,
    wafer_info,
)

_WAFERS = Wafer.__table__
_EVENTS = WaferEvent.__table__
_STEPS = WaferStep.__table__
_CURVES = StepCurve.__table__
_INTENTS = StepIntent.__table__

# --- statements built once (the hot path) --------------------------------------------------------

_EVENT_COLUMNS = [c.name for c in _EVENTS.c if c.name != "id"]
_STEP_COLUMNS = [c.name for c in _STEPS.c if c.name != "id"]

_MOVE_WAFER = HotStatement(
    update(_WAFERS)
    .where(_WAFERS.c.id == bindparam("wafer"))
    .values(
        state=bindparam("state"),
        updated_at=bindparam("updated_at", type_=_WAFERS.c.updated_at.type),
        location=func.coalesce(bindparam("new_location", type_=String), _WAFERS.c.location),
        outcome=func.coalesce(bindparam("new_outcome", type_=String), _WAFERS.c.outcome),
    )
    .returning(_WAFERS.c.lot_id)
)
# Written for the wafer only if it exists (wafer_id read from its row): a transition's
# statements need no result of each other's, so PostgreSQL gets them in one round trip
# (docs/decisions/0019-one-round-trip.md).
_ADD_EVENT = HotStatement(
    insert(_EVENTS).from_select(
        _EVENT_COLUMNS,
        select(*[
            _WAFERS.c.id if name == "wafer_id"
            else bindparam(name, type_=_EVENTS.c[name].type)
            for name in _EVENT_COLUMNS
        ]).where(_WAFERS.c.id == bindparam("wafer")),
    ).returning(_EVENTS.c.id)
)
_LOCATE = HotStatement(
    update(_WAFERS)
    .where(_WAFERS.c.id == bindparam("wafer"))
    .values(location=bindparam("tool"), updated_at=bindparam("at", type_=_WAFERS.c.updated_at.type))
)
_NEXT_ATTEMPT = func.coalesce(func.max(_STEPS.c.attempt), literal_column("0")) + literal_column("1")
# A step's record with its attempt number counted by the statement, written only if the
# wafer exists (no row returned: no wafer): one statement, no read before it.
_ADD_STEP = HotStatement(
    insert(_STEPS).from_select(
        _STEP_COLUMNS,
        select(*[
            _WAFERS.c.id if name == "wafer_id"
            else _NEXT_ATTEMPT if name == "attempt"
            else bindparam(name, type_=_STEPS.c[name].type)
            for name in _STEP_COLUMNS
        ])
        .select_from(_WAFERS.outerjoin(_STEPS, and_(
            _STEPS.c.wafer_id == _WAFERS.c.id,
            _STEPS.c.step_index == bindparam("step_index"))))
        .where(_WAFERS.c.id == bindparam("wafer"))
        .group_by(_WAFERS.c.id),
    ).returning(_STEPS.c.id)
)
_STEP_STATE = HotStatement(
    select(_STEPS.c.status, _STEPS.c.wafer_id, _STEPS.c.tool).where(
        _STEPS.c.id == bindparam("step")
    )
)
# Only a running step ends (none changed: the caller reads why, off the hot path).
_END_STEP = HotStatement(
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("step"), _STEPS.c.status == literal_column("'running'"))
    .values(
        status=bindparam("status"),
        results=bindparam("results", type_=_STEPS.c.results.type),
        disposition=bindparam("disposition"),
        ended_at=bindparam("at", type_=_STEPS.c.ended_at.type),
        tool_time_end=bindparam("tool_time"),
    )
)
_ADD_CURVE = HotStatement(
    insert(_CURVES), ["step_id", "interval_s", "liquidus_c", "samples_c"]
)
# Written only for a step that exists (no row returned: no step), its tool the step's
# unless named.
_ADD_INTENT = HotStatement(
    insert(_INTENTS).from_select(
        ["step_id", "tool", "command", "written_at"],
        select(
            _STEPS.c.id,
            func.coalesce(bindparam("tool", type_=String), _STEPS.c.tool),
            bindparam("command", type_=_INTENTS.c.command.type),
            bindparam("written_at", type_=_INTENTS.c.written_at.type),
        ).where(_STEPS.c.id == bindparam("step")),
    ).returning(_INTENTS.c.id)
)
_RESOLVE_INTENT = HotStatement(
    update(_INTENTS)
    .where(_INTENTS.c.id == bindparam("intent"), _INTENTS.c.resolved_at.is_(None))
    .values(
        outcome=bindparam("outcome"),
        resolved_at=bindparam("at", type_=_INTENTS.c.resolved_at.type),
    )
)


# --- wafers and their transitions --------------------------------------------------------------


def get_wafer(database: Database, wafer_id: str) -> WaferInfo:
    with database.read() as conn:
        row = conn.execute(select(_WAFERS).where(_WAFERS.c.id == wafer_id)).first()
    if row is None:
        raise StoreError(f"no wafer {wafer_id}")
    return wafer_info(row)


def lot_wafers(database: Database, lot_id: str) -> list[WaferInfo]:
    with database.read() as conn:
        rows = conn.execute(
            select(_WAFERS).where(_WAFERS.c.lot_id == lot_id).order_by(_WAFERS.c.slot)
        ).all()
    return [wafer_info(w) for w in rows]


def record_transition(
    database: Database,
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
    measurements: Mapping[str, Any] | EncodedJSON | None = None,
    location: str | None = None,
    outcome: str | None = None,
) -> int:
    with rules():
        outcome = wafer_outcome(to_state, outcome)
    data = finite_json(measurements, "measurements") if measurements is not None else None
    now = database.now()
    with database.hot_write() as conn:  # on PostgreSQL one round trip (none waits)
        moved = _MOVE_WAFER.later(
            conn,
            {
                "wafer": wafer_id,
                "state": to_state,
                "updated_at": now,
                "new_location": location,
                "new_outcome": outcome,
            },
        )
        added = _ADD_EVENT.later(
            conn,
            {
                "wafer": wafer_id,
                "at": now,
                "step_index": step_index,
                "step_kind": step_kind,
                "from_state": from_state,
                "to_state": to_state,
                "trigger": trigger,
                "why": why,
                "tool": tool,
                "tool_time": tool_time,
                "measurements": data,
            },
        )
    if moved.row is None:  # no such wafer: nothing was written (each statement checks)
        raise StoreError(f"no wafer {wafer_id}")
    return added.row[0]


def events(database: Database, wafer_id: str) -> list[EventInfo]:
    with database.read() as conn:
        rows = conn.execute(
            select(_EVENTS).where(_EVENTS.c.wafer_id == wafer_id).order_by(_EVENTS.c.id)
        ).all()
    return [event_info(e) for e in rows]


# --- steps and curves ----------------------------------------------------------------------------


def start_step(
    database: Database,
    wafer_id: str,
    step_index: int,
    kind: str,
    tool: str,
    parameters: Mapping[str, Any],
    *,
    windows: Mapping[str, Any] | None = None,
    tool_time: float | None = None,
    located: bool = False,
) -> int:
    """``located``: the transition that opens the step, in the same transaction, already
    set the wafer's location to ``tool`` (``record_transition(location=tool)``): one
    UPDATE of the wafer's row per step start, not two."""
    params = finite_json(parameters, "step parameters")
    with rules():
        wins = check_windows(windows or {})
    now = database.now()
    with database.hot_write() as conn:
        # The location first (on PostgreSQL it goes with the INSERT, one round trip): the
        # INSERT writes nothing for a wafer not there, and the transaction is rolled back.
        if not located:
            _LOCATE.send(conn, {"wafer": wafer_id, "tool": tool, "at": now})
        added, _ = _ADD_STEP.run(
            conn,
            {
                "wafer": wafer_id,
                "step_index": step_index,
                "kind": kind,
                "tool": tool,
                "status": "running",
                "disposition": None,
                "parameters": params,
                "windows": wins,
                "results": None,
                "started_at": now,
                "ended_at": None,
                "tool_time_start": tool_time,
                "tool_time_end": None,
            },
        )
        if added is None:
            raise StoreError(f"no wafer {wafer_id}")
        return added[0]


def end_step(
    database: Database,
    step_id: int,
    *,
    status: str = "done",
    results: Mapping[str, Any] | EncodedJSON | None = None,
    disposition: str | None = None,
    curve_c: Sequence[float] | None = None,
    curve_interval_s: float = 5.0,
    liquidus_c: float | None = None,
    tool_time: float | None = None,
) -> None:
    with rules():
        check_step_status(status)
    data = finite_json(results, "step results") if results is not None else None
    samples: list[float] | None = None
    if curve_c is not None:
        samples = [float(v) for v in curve_c]
        if not all(math.isfinite(v) for v in samples):
            raise StoreError(f"step {step_id}: temperature curve has a non-finite sample")
        if not curve_interval_s > 0:
            raise StoreError(f"step {step_id}: curve interval must be > 0 s")
    now = database.now()
    with database.hot_write() as conn:
        ended = _END_STEP.run(
            conn,
            {
                "step": step_id,
                "status": status,
                "results": data,
                "disposition": disposition,
                "at": now,
                "tool_time": tool_time,
            },
        )[1]
        if not ended:
            current, _ = _STEP_STATE.run(conn, {"step": step_id})
            if current is None:
                raise StoreError(f"no step {step_id}")
            raise StoreError(f"step {step_id} of {current[1]} already ended ({current[0]})")
        if samples is not None:
            _ADD_CURVE.send(
                conn,
                {
                    "step_id": step_id,
                    "interval_s": float(curve_interval_s),
                    "liquidus_c": liquidus_c,
                    "samples_c": samples,
                },
            )


def get_step(database: Database, step_id: int) -> StepInfo:
    with database.read() as conn:
        step = conn.execute(select(_STEPS).where(_STEPS.c.id == step_id)).first()
        if step is None:
            raise StoreError(f"no step {step_id}")
        curve = conn.execute(select(_CURVES).where(_CURVES.c.step_id == step_id)).first()
    return step_info(step, curve)


def steps(database: Database, wafer_id: str) -> list[StepInfo]:
    with database.read() as conn:
        rows = conn.execute(
            select(_STEPS)
            .where(_STEPS.c.wafer_id == wafer_id)
            .order_by(_STEPS.c.step_index, _STEPS.c.attempt)
        ).all()
        curves = {
            c.step_id: c
            for c in conn.execute(
                select(_CURVES).where(_CURVES.c.step_id.in_([s.id for s in rows]))
            )
        }
    return [step_info(s, curves.get(s.id)) for s in rows]


# --- intents -------------------------------------------------------------------------------------


def record_intent(
    database: Database, step_id: int, command: str, *, tool: str | None = None
) -> int:
    now = database.now()
    with database.hot_write() as conn:
        added, _ = _ADD_INTENT.run(
            conn, {"step": step_id, "tool": tool, "command": command, "written_at": now}
        )
    if added is None:
        raise StoreError(f"no step {step_id}")
    return added[0]


def resolve_intent(database: Database, intent_id: int, outcome: str = "done") -> None:
    with rules():
        check_intent_outcome(outcome)
    now = database.now()
    with database.hot_write() as conn:
        done = _RESOLVE_INTENT.run(conn, {"intent": intent_id, "outcome": outcome, "at": now})[1]
    if not done:
        raise StoreError(f"no open intent {intent_id}")


def intents(database: Database, *where: ColumnElement[bool]) -> list[IntentInfo]:
    with database.read() as conn:
        rows = conn.execute(
            select(_INTENTS, _STEPS.c.wafer_id, _STEPS.c.step_index)
            .join(_STEPS, _STEPS.c.id == _INTENTS.c.step_id)
            .where(*where)
            .order_by(_INTENTS.c.id)
        ).all()
    return [intent_info(i, i.wafer_id, i.step_index) for i in rows]


def open_intents(database: Database) -> list[IntentInfo]:
    return intents(database, _INTENTS.c.resolved_at.is_(None))


def step_intents(database: Database, step_id: int) -> list[IntentInfo]:
    return intents(database, _INTENTS.c.step_id == step_id)


def wafer_intents(database: Database, wafer_id: str) -> list[IntentInfo]:
    return intents(database, _STEPS.c.wafer_id == wafer_id)

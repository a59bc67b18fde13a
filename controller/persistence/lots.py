"""The lot aggregate: a lot, its wafers' first rows, and its state changes.

A lot's state changes (start, hold, resume, abort, complete) and the wafers an
abort ends in the carrier commit together with their audit line and, for a
person's hold/resume/abort, the request the scheduler acts on.

Several lines may share one database: a lot is queued for a line or for any line
(``line_id`` NULL), and a controller *claims* a queued lot for its line with one
conditional write (``claim_lot``): exactly one controller wins each lot, and from
then on the lot belongs to that line, so a half-done lot is only ever resumed by
its own line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from controller.domain import (
    DEFAULT_PRIORITY,
    FINAL_LOT_STATES,
    OUTCOME_OF_STATE,
    WAFER_START_LOCATION,
    WAFER_START_STATE,
    LotState,
    check_lot_id,
    check_priority,
    check_reason,
    check_slots,
    lot_state,
    next_lot_state,
    slot_text,
    wafer_id,
)
from controller.models import Lot, OperatorRequest, Wafer, WaferEvent
from controller.persistence.audit import add_audit
from controller.persistence.base import Database, StoreError, rules
from controller.persistence.records import LotInfo, lot_info
from sequences.wafer.machine import ABORTED

_LOTS = Lot.__table__
_WAFERS = Wafer.__table__


def create_lot(
    database: Database,
    lot_id: str,
    *,
    recipe_name: str,
    recipe_version: str | int,
    recipe_hash: str,
    slots: Sequence[int],
    priority: int = DEFAULT_PRIORITY,
    user: str,
    line_id: str | None = None,
) -> LotInfo:
    with rules():
        lot_id = check_lot_id(lot_id)
        slots = check_slots(slots)
        check_priority(priority)
    if not recipe_name:
        raise StoreError("a lot needs a recipe name")
    line_id = check_line_id(line_id)
    now = database.now()
    exists = StoreError(f"lot {lot_id} already exists (lot ids are never reused)")
    try:
        with database.write() as conn:
            if conn.execute(select(_LOTS.c.id).where(_LOTS.c.id == lot_id)).first():
                raise exists
            conn.execute(
                insert(_LOTS),
                {
                    "id": lot_id,
                    "recipe_name": recipe_name,
                    "recipe_version": str(recipe_version),
                    "recipe_hash": recipe_hash,
                    "priority": priority,
                    "state": LotState.QUEUED.value,
                    "state_before_hold": None,
                    "created_by": user,
                    "created_at": now,
                    "started_at": None,
                    "ended_at": None,
                    "line_id": line_id,
                },
            )
            conn.execute(
                insert(_WAFERS),
                [
                    {
                        "id": wafer_id(lot_id, slot),
                        "lot_id": lot_id,
                        "slot": slot,
                        "state": WAFER_START_STATE,
                        "location": WAFER_START_LOCATION,
                        "outcome": None,
                        "updated_at": now,
                    }
                    for slot in slots
                ],
            )
            add_audit(
                conn,
                now,
                user,
                "lot.start",
                f"recipe {recipe_name} v{recipe_version} ({recipe_hash[:12]}), "
                f"slots {slot_text(slots)}, priority {priority}, "
                + (f"line {line_id}" if line_id else "any line"),
                lot_id=lot_id, line_id=database.line_id
            )
    except IntegrityError:  # another process created it between our check and insert
        raise exists from None
    return get_lot(database, lot_id)


def _info(conn: Connection, row: Row[Any]) -> LotInfo:
    count = conn.execute(
        select(func.count()).select_from(_WAFERS).where(_WAFERS.c.lot_id == row.id)
    ).scalar_one()
    return lot_info(row, count)


def get_lot(database: Database, lot_id: str) -> LotInfo:
    with database.read() as conn:
        row = conn.execute(select(_LOTS).where(_LOTS.c.id == lot_id)).first()
        if row is None:
            raise StoreError(f"no lot {lot_id}")
        return _info(conn, row)


def check_line_id(line_id: str | None) -> str | None:
    """A line id as stored: None (any line) or 1-200 printable characters."""
    if line_id is None:
        return None
    if not line_id or len(line_id) > 200 or not line_id.isprintable():
        raise StoreError(f"a line id is 1-200 printable characters, got {line_id!r}")
    return line_id


def list_lots(
    database: Database,
    states: Iterable[str | LotState] | None = None,
    line_id: str | None = None,
) -> list[LotInfo]:
    query = select(_LOTS).order_by(_LOTS.c.created_at.desc(), _LOTS.c.id)
    if line_id is not None:
        query = query.where(_LOTS.c.line_id == line_id)
    if states is not None:
        with rules():
            wanted = [lot_state(s).value for s in states]
        query = query.where(_LOTS.c.state.in_(wanted))
    with database.read() as conn:
        lots = conn.execute(query).all()
        counts: dict[str, int] = dict(
            conn.execute(
                select(_WAFERS.c.lot_id, func.count()).group_by(_WAFERS.c.lot_id)
            ).all()
        )
    return [lot_info(lot, counts.get(lot.id, 0)) for lot in lots]


def next_queued_lot(database: Database) -> LotInfo | None:
    with database.read() as conn:
        row = conn.execute(
            select(_LOTS)
            .where(_LOTS.c.state == LotState.QUEUED.value)
            .order_by(_LOTS.c.priority, _LOTS.c.created_at, _LOTS.c.id)
            .limit(1)
        ).first()
        return None if row is None else _info(conn, row)


def claim_lot(
    database: Database,
    line_id: str,
    can_run: Callable[[LotInfo], bool],
    *,
    user: str = "controller",
) -> LotInfo | None:
    """Claim for ``line_id`` the most urgent queued lot meant for it or for any line
    that ``can_run`` accepts; None when there is none.

    The queue is read without locks and ``can_run`` (which may load recipes) is asked
    outside any transaction. Each accepted candidate is then tried in its own short
    write: its row alone is locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a row
    another controller is claiming is passed over, not waited for; SQLite holds the
    write lock) and claimed with a conditional ``UPDATE ... WHERE state = queued AND
    (line_id IS NULL OR line_id = mine)``, so exactly one controller wins a lot.
    Locking every candidate at once, as this did before, made a second controller
    see an empty queue while the first was claiming (``serve --once`` then stopped
    with lots left), and on SQLite held every other writer off while recipes loaded.
    """
    line_id = check_line_id(line_id) or ""
    mine = (_LOTS.c.line_id.is_(None)) | (_LOTS.c.line_id == line_id)
    queued = _LOTS.c.state == LotState.QUEUED.value
    with database.read() as conn:
        rows = conn.execute(
            select(_LOTS)
            .where(queued, mine)
            .order_by(_LOTS.c.priority, _LOTS.c.created_at, _LOTS.c.id)
        ).all()
        counts: dict[str, int] = dict(
            conn.execute(
                select(_WAFERS.c.lot_id, func.count())
                .where(_WAFERS.c.lot_id.in_([row.id for row in rows]))
                .group_by(_WAFERS.c.lot_id)
            ).all()
        ) if rows else {}
    for row in rows:
        if not can_run(lot_info(row, counts.get(row.id, 0))):
            continue
        this = _LOTS.c.id == row.id
        with database.write() as conn:
            if conn.execute(
                select(_LOTS.c.id).where(this, queued, mine).with_for_update(skip_locked=True)
            ).first() is None:
                continue  # claimed, started or being claimed by another controller
            won = conn.execute(
                update(_LOTS).where(this, queued, mine).values(line_id=line_id)
            ).rowcount
            if won != 1:  # cannot happen under the lock; never report a claim not won
                raise StoreError(f"lot {row.id}: claim for line {line_id} changed {won} rows")
            if row.line_id is None:
                add_audit(conn, database.now(), user, "lot.claim",
                          f"claimed by line {line_id}", lot_id=row.id, line_id=database.line_id)
            return _info(conn, conn.execute(select(_LOTS).where(this)).one())
    return None


def take_lot_for_line(database: Database, lot_id: str, line_id: str) -> LotInfo:
    """Bind a lot to the line about to run it (``bumpline run``); a lot that belongs to
    another line is refused: its half-done wafers are that line's to finish."""
    line_id = check_line_id(line_id) or ""
    with database.write() as conn:
        row = conn.execute(select(_LOTS).where(_LOTS.c.id == lot_id).with_for_update()).first()
        if row is None:
            raise StoreError(f"no lot {lot_id}")
        if row.line_id not in (None, line_id):
            raise StoreError(
                f"lot {lot_id} belongs to line {row.line_id}, not {line_id}: run it there"
            )
        if row.line_id is None:
            conn.execute(update(_LOTS).where(_LOTS.c.id == lot_id).values(line_id=line_id))
            row = conn.execute(select(_LOTS).where(_LOTS.c.id == lot_id)).one()
        return _info(conn, row)


def change_lot(
    database: Database,
    lot_id: str,
    target: LotState | None,
    *,
    user: str,
    reason: str,
    action: str,
    request: str | None = None,
) -> None:
    """Move a lot to ``target`` (None: resume to the state it was held in)."""
    with rules():
        check_reason(reason)
    now = database.now()
    with database.write() as conn:
        # Locked as read: two changes at once on PostgreSQL (READ COMMITTED) would both
        # check the state they read and the later write would undo the earlier's, e.g.
        # "aborted" over "complete". SQLite's writer lock (BEGIN IMMEDIATE) orders them.
        lot = conn.execute(
            select(_LOTS.c.state, _LOTS.c.state_before_hold, _LOTS.c.started_at).where(
                _LOTS.c.id == lot_id
            ).with_for_update()
        ).first()
        if lot is None:
            raise StoreError(f"no lot {lot_id}")
        current = LotState(lot.state)
        with rules():
            target = next_lot_state(lot_id, current, target, lot.state_before_hold)
        values: dict[str, object] = {"state": target.value}
        if target is LotState.HELD:
            values["state_before_hold"] = current.value
        elif current is LotState.HELD:
            values["state_before_hold"] = None
        if target is LotState.RUNNING and lot.started_at is None:
            values["started_at"] = now
        if target in FINAL_LOT_STATES:
            values["ended_at"] = now
        conn.execute(update(_LOTS).where(_LOTS.c.id == lot_id).values(**values))
        if target is LotState.ABORTED:
            _abort_wafers_at_home(conn, lot_id, now, reason)
        detail = f"{current.value} -> {target.value}" + (f": {reason}" if reason else "")
        add_audit(conn, now, user, action, detail, lot_id=lot_id, line_id=database.line_id)
        if request is not None:
            conn.execute(
                insert(OperatorRequest.__table__),
                {
                    "lot_id": lot_id,
                    "wafer_id": None,
                    "action": request,
                    "reason": reason,
                    "requested_by": user,
                    "requested_at": now,
                    "handled_at": None,
                    "handled_note": None,
                },
            )


def _abort_wafers_at_home(conn: Connection, lot_id: str, now: object, reason: str) -> None:
    """Wafers that never left the carrier end with the lot; their requests are closed."""
    home = conn.execute(
        select(_WAFERS.c.id)
        .where(_WAFERS.c.lot_id == lot_id, _WAFERS.c.state == WAFER_START_STATE)
        .order_by(_WAFERS.c.slot)
    ).scalars().all()
    if not home:
        return
    conn.execute(
        update(_WAFERS)
        .where(_WAFERS.c.id.in_(home))
        .values(state=ABORTED, outcome=OUTCOME_OF_STATE[ABORTED], updated_at=now)
    )
    conn.execute(
        insert(WaferEvent.__table__),
        [
            {
                "wafer_id": wafer,
                "at": now,
                "step_index": None,
                "step_kind": None,
                "from_state": WAFER_START_STATE,
                "to_state": ABORTED,
                "trigger": "abort",
                "why": reason or "lot aborted",
                "tool": None,
                "tool_time": None,
                "measurements": None,
            }
            for wafer in home
        ],
    )
    requests = OperatorRequest.__table__
    conn.execute(
        update(requests)
        .where(requests.c.wafer_id.in_(home), requests.c.handled_at.is_(None))
        .values(handled_at=now, handled_note="wafer aborted with its lot before it started")
    )

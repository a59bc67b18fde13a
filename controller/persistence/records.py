"""What the store's reads return: frozen dataclasses, never live ORM objects.

Callers (the scheduler, the report, the command line) hold these across
transactions and threads; ``jsonable`` turns any of them into plain JSON data
for ``--json`` output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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
    line_id: str | None = None  # queued for / claimed by this line; None: any line


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
    line_id: str | None = None  # the line whose tool raised it; None: not named

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
    line_id: str | None = None  # the line the tool belongs to; None: not named


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
    line_id: str | None = None  # the acting line's; a transition's, its lot's line


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



# --- from rows (Core rows, or anything with the same attribute names) ----------------------


def copy_row(info: type[_Info], row: Any, **extra: Any) -> _Info:
    """An Info record from an ORM row: every field of the same name, plus ``extra``."""
    names = _INFO_FIELDS.get(info)
    if names is None:
        names = _INFO_FIELDS[info] = tuple(f.name for f in dataclasses.fields(info))
    return info(**{n: extra[n] if n in extra else getattr(row, n) for n in names})


_Info = TypeVar("_Info", bound="DataclassInstance")  # the Info records are dataclasses
_INFO_FIELDS: dict[type, tuple[str, ...]] = {}


def lot_info(lot: Any, wafer_count: int) -> LotInfo:
    return copy_row(LotInfo, lot, wafer_count=wafer_count)


def wafer_info(w: Any) -> WaferInfo:
    return copy_row(WaferInfo, w)


def event_info(e: Any) -> EventInfo:
    return copy_row(EventInfo, e)


def step_info(s: Any, curve: Any) -> StepInfo:
    shown = None
    if curve is not None:
        shown = CurveInfo(curve.interval_s, curve.liquidus_c, tuple(curve.samples_c))
    return copy_row(StepInfo, s, curve=shown)


def intent_info(i: Any, wafer_id: str, step_index: int) -> IntentInfo:
    return copy_row(IntentInfo, i, wafer_id=wafer_id, step_index=step_index)


def alarm_info(a: Any) -> AlarmInfo:
    return copy_row(AlarmInfo, a)


def tool_state_info(t: Any) -> ToolStateInfo:
    return copy_row(ToolStateInfo, t)


def request_info(r: Any) -> RequestInfo:
    return copy_row(RequestInfo, r)


def audit_info(a: Any) -> AuditInfo:
    return copy_row(AuditInfo, a)

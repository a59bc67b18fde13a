"""The record of batch tools: each batch with its wafers, and each tool's last event number.

A batch is written with its wafers before its carrier is loaded (persist before
acting, docs/decisions/0004) and closed with the tool's verdict, the baths as it
started and the alarm that ended it, if one did. A tool that pushes numbered
events (the plater) has the number of the last one delivered kept here, and
handed back to its driver when the line is opened again (``event_seqs``), so
the driver fetches what it missed (``EVENTS?``) and no DONE or ALARM is lost.

Beside ``controller/store.py`` (not in it: the store is large enough), on its
engine and sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db import writer
from controller.models import Batch, BatchWafer, ToolEventSeq
from controller.persistence.base import utc_now

if TYPE_CHECKING:
    from controller.store import Store


@dataclass(frozen=True)
class BatchInfo:
    id: str
    tool: str
    step_kind: str
    state: str  # started | done | failed
    status: str | None
    wafers: tuple[str, ...]
    tool_time_start: float | None
    tool_time_end: float | None
    ni_bath_c: float | None
    au_bath_c: float | None
    alarm_code: int | None
    alarm_text: str | None
    started_at: datetime | None = None  # UTC, when it was recorded (before LOAD)


class BatchRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._writer = writer(store.engine)  # ORM writes take SQLite's write lock up front

    def _write(self) -> Session:
        return Session(self._writer, expire_on_commit=False)

    def _read(self) -> Session:
        return Session(self.store.engine)

    def _now(self) -> datetime:
        return utc_now()

    # -- batches

    def started(self, batch_id: str, tool: str, step_kind: str, parameters: dict[str, Any],
                wafer_ids: list[str] | tuple[str, ...], tool_time: float | None) -> None:
        """Before the carrier is loaded: the batch and which wafers ride in it."""
        with self._write() as session, session.begin():
            session.add(Batch(id=batch_id, tool=tool, step_kind=step_kind,
                              parameters=dict(parameters), state="started",
                              started_at=self._now(), tool_time_start=tool_time))
            session.flush()
            for slot, wafer_id in enumerate(wafer_ids, start=1):
                session.add(BatchWafer(batch_id=batch_id, wafer_id=wafer_id, slot=slot))

    def ended(self, batch_id: str, *, state: str, status: str | None, tool_time: float | None,
              ni_bath_c: float | None = None, au_bath_c: float | None = None,
              alarm_code: int | None = None, alarm_text: str | None = None) -> None:
        with self._write() as session, session.begin():
            batch = session.get(Batch, batch_id)
            if batch is None:
                return
            batch.state, batch.status = state, status
            batch.ended_at, batch.tool_time_end = self._now(), tool_time
            batch.ni_bath_c, batch.au_bath_c = ni_bath_c, au_bath_c
            batch.alarm_code, batch.alarm_text = alarm_code, alarm_text

    def batches(self, *, tool: str | None = None, wafer_id: str | None = None
                ) -> list[BatchInfo]:
        """Batches, oldest first (of a tool, or the one a wafer rode in)."""
        query = select(Batch).order_by(Batch.started_at, Batch.id)
        if tool is not None:
            query = query.where(Batch.tool == tool)
        if wafer_id is not None:
            query = query.join(BatchWafer).where(BatchWafer.wafer_id == wafer_id)
        with self._read() as session:
            rows = session.scalars(query).all()
            members: dict[str, list[str]] = {}
            if rows:
                for m in session.scalars(select(BatchWafer).where(
                        BatchWafer.batch_id.in_([r.id for r in rows]))
                        .order_by(BatchWafer.slot)):
                    members.setdefault(m.batch_id, []).append(m.wafer_id)
            return [BatchInfo(r.id, r.tool, r.step_kind, r.state, r.status,
                              tuple(members.get(r.id, ())), r.tool_time_start, r.tool_time_end,
                              r.ni_bath_c, r.au_bath_c, r.alarm_code, r.alarm_text,
                              r.started_at)
                    for r in rows]

    # -- pushed-event numbers

    @property
    def _line(self) -> str:
        return self.store.line_id or ""  # a tool name repeats on every line

    def save_seq(self, tool: str, seq: int) -> None:
        with self._write() as session, session.begin():
            row = session.get(ToolEventSeq, (self._line, tool))
            if row is None:
                session.add(ToolEventSeq(line_id=self._line, tool=tool, seq=seq,
                                         updated_at=self._now()))
            elif seq != row.seq:
                row.seq, row.updated_at = seq, self._now()

    def seqs(self) -> dict[str, int]:
        """Per tool of this store's line, the last event number delivered: for
        ``open_line(event_seqs=...)``."""
        with self._read() as session:
            return {r.tool: r.seq for r in session.scalars(
                select(ToolEventSeq).where(ToolEventSeq.line_id == self._line))}

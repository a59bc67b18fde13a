"""The line event stream: what happened on the line, published after it is committed.

One ``LineEventStream`` per controller. The controller publishes an event only
once the store has committed what it describes (persist before telling), so a
subscriber never hears of something a crash could take back. Subscribers are
the live view, the report, and the host interfaces (SECS/GEM, the operator
screen, the MQTT feed).

A subscriber never blocks or breaks the line:

* ``listen(callback)`` runs a callback synchronously in ``publish``; it must be
  quick (the live view). An exception in it is logged and counted, never raised
  into the controller. ``listen(callback, kinds=...)`` hears only those kinds:
  an event no listener or subscription wants is not built at all (``wants``), so
  a line nobody watches pays nothing for the stream.
* ``subscribe(name)`` gives an async iterator over a bounded queue, read in the
  subscriber's own task (GEM, web, MQTT). A subscriber that falls behind loses
  the oldest events, never the line's time: the next event it reads carries the
  count of those it missed in ``Subscription.missed``, so it can resynchronise
  from the store.

Every event carries what its subscribers need without asking back: ids, the
tool time and UTC, codes and texts. ``LineEvent.as_dict`` is the stable,
JSON-ready form (schema version ``SCHEMA``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

log = logging.getLogger("controller.line.events")

SCHEMA = 1


class EventKind(StrEnum):
    """What an event reports. ``data`` keys per kind are listed in docs/events.md."""

    LOT_STATE = "lot_state"  # state, previous, recipe, reason
    WAFER_TRANSITION = "wafer_transition"  # from_state, to_state, trigger, why, step, step_kind
    STEP_STARTED = "step_started"  # step, step_kind, parameters
    STEP_ENDED = "step_ended"  # step, step_kind, outcome, measurements, windows, why
    DISPOSITION_NEEDED = "disposition_needed"  # step, step_kind, why
    ALARM_SET = "alarm_set"  # code, text, wafers
    ALARM_CLEARED = "alarm_cleared"  # code, text
    TOOL_STATE = "tool_state"  # e10_state, previous, reason; or e10_state, tool_state, zones_c
    TOOL_NOTE = "tool_note"  # text (setup changes, waits: what an operator reads)
    OPERATOR_REQUEST = "operator_request"  # action, target, by, reason, outcome
    BATCH_STARTED = "batch_started"  # batch_id, step, step_kind, wafers, parameters
    BATCH_ENDED = "batch_ended"  # batch_id, step, step_kind, wafers, state, status, alarm...
    TOOL_MODE = "tool_mode"  # mode, previous, by, reason, finishing (controller/line/modes.py)


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LineEvent:
    """One thing that happened on the line, after it was committed."""

    seq: int  # per stream, from 1, no gaps
    kind: EventKind
    line: str
    tool_time: float  # tool seconds on the line's clock
    utc: datetime
    lot_id: str | None = None
    wafer_id: str | None = None
    tool: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON-ready form (``schema`` is its version)."""
        return {
            "schema": SCHEMA, "seq": self.seq, "kind": self.kind.value, "line": self.line,
            "tool_time": self.tool_time, "utc": self.utc.isoformat(timespec="milliseconds"),
            "lot_id": self.lot_id, "wafer_id": self.wafer_id, "tool": self.tool,
            "data": dict(self.data),
        }


Listener = Callable[[LineEvent], None]


class Subscription:
    """An async iterator over the events published since it was made (bounded queue)."""

    def __init__(self, stream: LineEventStream, name: str, maxsize: int) -> None:
        self.name = name
        self.missed = 0  # events dropped because this subscriber fell behind
        self._stream = stream
        self._queue: deque[LineEvent] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False

    def _offer(self, event: LineEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.missed += 1  # the deque drops the oldest
        self._queue.append(event)
        self._ready.set()

    def pending(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> LineEvent | None:
        if not self._queue:
            return None
        event = self._queue.popleft()
        if not self._queue:
            self._ready.clear()
        return event

    async def get(self) -> LineEvent:
        """The next event; StopAsyncIteration once closed and drained."""
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self._ready.wait()
        event = self._queue.popleft()
        if not self._queue and not self._closed:
            self._ready.clear()
        return event

    def __aiter__(self) -> AsyncIterator[LineEvent]:
        return self

    async def __anext__(self) -> LineEvent:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; an iterating reader ends once it has read what is queued."""
        self._closed = True
        self._ready.set()
        self._stream._drop(self)


class LineEventStream:
    """Publishes committed line events to listeners and subscriptions."""

    def __init__(self, line: str, now: Callable[[], float]) -> None:
        self.line = line
        self._now = now
        self._seq = itertools.count(1)
        self._listeners: list[Listener] = []
        self._kinds: dict[Listener, frozenset[EventKind] | None] = {}  # None: every kind
        self._subscriptions: list[Subscription] = []
        self._wanted: frozenset[EventKind] = frozenset()  # what someone hears
        self.listener_failures = 0

    def wants(self, kind: EventKind) -> bool:
        """Does any listener or subscription hear ``kind``? (Else publishing it is a no-op:
        a publisher may skip building what it would carry.)"""
        return kind in self._wanted

    def _heard(self) -> None:
        kinds: set[EventKind] = set()
        for wanted in self._kinds.values():
            kinds |= set(EventKind) if wanted is None else wanted
        if self._subscriptions:
            kinds = set(EventKind)
        self._wanted = frozenset(kinds)

    def publish(
        self,
        kind: EventKind,
        *,
        lot_id: str | None = None,
        wafer_id: str | None = None,
        tool: str | None = None,
        tool_time: float | None = None,
        **data: Any,
    ) -> LineEvent | None:
        """Tell every subscriber; call only after the store committed what this reports.

        An event nobody hears (``wants``) is not built (and takes no number): None."""
        if kind not in self._wanted:
            return None
        event = LineEvent(
            next(self._seq), kind, self.line,
            self._now() if tool_time is None else tool_time, datetime.now(UTC),
            lot_id, wafer_id, tool, MappingProxyType(data) if data else _EMPTY,
        )
        kinds = self._kinds
        for listener in self._listeners:
            heard = kinds[listener]
            if heard is not None and kind not in heard:
                continue
            try:
                listener(event)
            except Exception:  # a display must never stop the line
                self.listener_failures += 1
                log.exception("event listener %r failed on %s", listener, kind)
        for subscription in self._subscriptions:
            subscription._offer(event)
        return event

    def use_clock(self, now: Callable[[], float]) -> None:
        """Tool time from the line's clock (a stream made before the line was opened)."""
        self._now = now

    def listen(self, listener: Listener, kinds: Iterable[EventKind] | None = None
               ) -> Callable[[], None]:
        """Call ``listener`` for each event (of ``kinds``; None: every kind), synchronously
        (keep it quick); returns the undo."""
        self._listeners.append(listener)
        self._kinds[listener] = frozenset(kinds) if kinds is not None else None
        self._heard()

        def undo() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
                if listener not in self._listeners:
                    del self._kinds[listener]
                self._heard()

        return undo

    def subscribe(self, name: str, *, maxsize: int = 10_000) -> Subscription:
        subscription = Subscription(self, name, maxsize)
        self._subscriptions.append(subscription)
        self._heard()
        return subscription

    def _drop(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._heard()

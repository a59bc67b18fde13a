"""The wafer journal on the store: commit each transition, then tell the line.

``StoreJournal`` is the controller's ``sequences.wafer.journal.WaferJournal``. A
transition and the step record it opens or closes commit in one transaction
(``Store.atomic``); only then is it published on the line event stream, so no
subscriber hears of something a crash could take back. When a step record
closes, the intents still open on it are answered: the step got its result, so
the command they guarded happened.

Acknowledging an intent does not get a transaction of its own: it rides on the
journal's next one (the next transition or intent, or ``flush`` when the run
ends). Persist before acting only needs the intent committed before its command
is sent; a crash before the resolution commits leaves the intent open, which is
what recovery is for (it asks the tool). A refusal commits at once: a refused
command leaves no trace on the tool to ask about. That saves six of a wafer's ~35 commits
(docs/reliability.md, "Intents answered on the next transaction").

A transition the runner marks ``deferrable`` (no tool command for its wafer follows
before that wafer's next journal write: a start, a judged_ok, a step_done with nothing
to unload) rides the same way on the journal's next transaction, whichever wafer's it
is, or on ``flush``: the journal's own flush timer, armed when the first item is queued and
cancelled when a transaction carries them, so the store is never more than
``FLUSH_AFTER_S`` wall seconds behind (docs/decisions/0021-flush-timer.md), and the run's
end. A crash before it commits leaves the store as a crash just before it would have,
with the tool in the same state: recovery settles it the same way
(docs/decisions/0017-deferred-transitions.md). Its measurements are checked and encoded
when it is recorded, so a value that cannot be stored is refused to its own wafer; it
is published once committed, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypedDict

from controller.db import EncodedJSON
from controller.line.events import EventKind, LineEventStream
from controller.store import Store, StoreError
from sequences.wafer.journal import DONE, WaferEvent
from sequences.wafer.machine import AWAITING, HELD

log = logging.getLogger(__name__)

INTERLOCK = "interlock:"  # how the runner says a wafer was stopped at an interlock
INTERLOCK_ALARM = "interlock"  # the line alarm's code on the event stream (docs/events.md)
# Wall seconds a deferred item waits at most for a transaction to ride on (decision 0017's
# bound: what the store shows is never more than about this far behind the controller).
FLUSH_AFTER_S = 1.0


class Timer(Protocol):
    """An armed flush (``asyncio.TimerHandle``, or a test's manual one)."""

    def cancel(self) -> None: ...


# Arm a call after so many wall seconds (the running loop's ``call_later``); None: no
# timer can run (no event loop runs), so what is queued is committed at once.
Arm = Callable[[float, Callable[[], None]], Timer | None]


def loop_timer(delay: float, callback: Callable[[], None]) -> Timer | None:
    """The controller's ``Arm``: the running event loop's timer, if a loop runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # called between runs: nothing would ever fire the timer
        return None
    return loop.call_later(delay, callback)


class _Common(TypedDict):
    """What every event published for a wafer's transition carries."""

    lot_id: str | None
    wafer_id: str
    tool: str | None
    tool_time: float | None


@dataclass(frozen=True, slots=True)
class _Deferred:
    """A deferrable transition, checked and encoded, waiting for the next transaction."""

    event: WaferEvent
    measurements: EncodedJSON | None
    closes_step: int | None  # the step record it closes, if any
    results: EncodedJSON | None  # that record's results
    answered: tuple[int, ...]  # the intents on that record, answered by its end


def _nothing() -> None:
    return None


class StoreJournal:
    def __init__(self, store: Store, stream: LineEventStream,
                 lot_of: Callable[[str], str | None], *, arm: Arm | None = None) -> None:
        """``arm``: how to call the flush back FLUSH_AFTER_S after the first item is queued;
        without it (tests of the journal alone) only ``flush`` and the next transaction
        commit what is queued."""
        self.store = store
        self._arm = arm
        self._timer: Timer | None = None  # the flush armed for what is queued now
        self.stream = stream
        self._lot_of = lot_of
        self._open_step: dict[str, int] = {}  # wafer -> its open step record
        self._open_intents: dict[str, list[int]] = {}  # wafer -> intents on that record
        self._interlocked: set[str] = set()  # wafers held at an interlock (a line alarm)
        self._resolved: list[tuple[int, str]] = []  # answered, not yet committed (intent, outcome)
        # Recorded, not yet committed, in order: (the write, what to do once it commits).
        self._deferred: list[tuple[Callable[[], object], Callable[[], object]]] = []

    def adopt(self, wafer_id: str, step_id: int | None) -> None:
        """Recovery: the wafer's step record found open in the store."""
        if step_id is None:
            self._open_step.pop(wafer_id, None)
        else:
            self._open_step[wafer_id] = step_id
            self._open_intents[wafer_id] = [i.id for i in self.store.step_intents(step_id)
                                            if i.outcome is None]

    def step_record(self, wafer_id: str) -> int | None:
        return self._open_step.get(wafer_id)

    def record(self, event: WaferEvent) -> None:
        wafer_id = event.wafer_id
        if event.deferrable and event.opens is None:
            self._defer(event)
            return
        with self.store.atomic():
            resolved, deferred = self._write_pending()
            opens = event.opens
            tool = event.tool or "?"
            # A step's start moves the wafer to its tool with the transition's own UPDATE.
            self.store.record_event(event, location=tool if opens is not None else None)
            if opens is not None:
                assert event.step is not None  # only a step's transition opens a record
                self._open_step[wafer_id] = self.store.start_step(
                    wafer_id, event.step, opens.kind, tool, opens.parameters,
                    windows=opens.windows, tool_time=event.tool_time, located=True)
            elif event.closes is not None and wafer_id in self._open_step:
                closes = event.closes
                self.store.end_step(
                    self._open_step.pop(wafer_id), status=closes.status,
                    results=dict(closes.results), curve_c=closes.curve_c,
                    liquidus_c=closes.liquidus_c, tool_time=event.tool_time, fetch=False)
                for intent in self._open_intents.pop(wafer_id, ()):
                    self.store.resolve_intent(intent, DONE)
        self._committed(resolved, deferred)
        self._publish(event)

    def _defer(self, event: WaferEvent) -> None:
        """Check and encode now (a refusal is this wafer's), write with the next transaction."""
        store, wafer_id = self.store, event.wafer_id
        measurements = (store.checked_json(event.measurements, "measurements")
                        if event.measurements is not None else None)
        step_id = results = None
        answered: tuple[int, ...] = ()
        if event.closes is not None and wafer_id in self._open_step:
            results = store.checked_json(dict(event.closes.results), "step results")
            step_id = self._open_step.pop(wafer_id)
            answered = tuple(self._open_intents.pop(wafer_id, ()))
        item = _Deferred(event, measurements, step_id, results, answered)
        self._deferred.append((lambda: self._write_deferred(item),
                               lambda: self._publish(event)))
        self._queued()

    def later(self, write: Callable[[], object], then: Callable[[], object]) -> None:
        """A hot write no tool command waits for (a tool's E10 change): committed with the
        journal's next transaction, like a deferred transition; ``then`` (its publication)
        once it is committed."""
        self._deferred.append((write, then))
        self._queued()

    def _queued(self) -> None:
        """Something waits for a transaction: make sure one comes within FLUSH_AFTER_S."""
        if self._timer is None and self._arm is not None:
            self._timer = self._arm(FLUSH_AFTER_S, self._due)
            if self._timer is None:
                self.flush()  # no loop to wait in: stored now rather than left queued

    def _due(self) -> None:
        """The flush timer: nothing carried what was queued in time, so commit it now."""
        self._timer = None
        try:
            self.flush()
        except StoreError as exc:  # kept queued: the next transaction or timer tries again
            log.warning("deferred transitions not stored yet: %s", exc)
            if self.pending:
                self._queued()

    def _write_deferred(self, item: _Deferred) -> None:
        event = item.event
        self.store.record_transition(
            event.wafer_id, event.from_state, event.to_state, event.trigger, event.why,
            step_index=event.step, step_kind=event.step_kind, tool=event.tool,
            tool_time=event.tool_time, measurements=item.measurements)
        if item.closes_step is not None:
            closes = event.closes
            assert closes is not None
            self.store.end_step(
                item.closes_step, status=closes.status, results=item.results,
                curve_c=closes.curve_c, liquidus_c=closes.liquidus_c,
                tool_time=event.tool_time, fetch=False)
            for intent in item.answered:
                self.store.resolve_intent(intent, DONE)

    def intend(self, wafer_id: str, command: str, tool: str) -> int:
        step_id = self._open_step[wafer_id]  # a guarded command is always inside a step
        with self.store.atomic():
            resolved, deferred = self._write_pending()
            intent = self.store.record_intent(step_id, command, tool=tool)
        self._committed(resolved, deferred)
        self._open_intents.setdefault(wafer_id, []).append(intent)
        return intent

    def resolve(self, intent: int, outcome: str) -> None:
        """Acknowledged: committed with the journal's next transaction (or ``flush``).
        Refused: committed now. Nothing of a refused command shows on the tool (the oven
        keeps no trace of a LOAD it refused), and the step may wait before it sends again
        (the oven's entrance): a stop then must find "refused", not an open intent that
        "may have reached" the tool. Refusals are rare; the commit costs nothing per wafer."""
        self._resolved.append((intent, outcome))
        for intents in self._open_intents.values():
            if intent in intents:
                intents.remove(intent)
        if outcome == DONE:
            self._queued()
            return
        try:
            self.flush()
        except StoreError as exc:  # kept queued: the next transaction or the timer carries it
            log.warning("intent %d's refusal not stored yet: %s", intent, exc)
            self._queued()

    @property
    def pending(self) -> int:
        """Transitions and answers recorded and not yet committed."""
        return len(self._deferred) + len(self._resolved)

    def flush(self) -> None:
        """Commit the transitions and answers not yet committed (the flush timer, the
        scheduler's return, the run's end)."""
        if self._resolved or self._deferred:
            with self.store.atomic():
                resolved, deferred = self._write_pending()
            self._committed(resolved, deferred)

    def _write_pending(self) -> tuple[int, int]:
        """Inside the caller's transaction: what waits for it, answers first; how many of
        each (forgotten once the transaction commits, kept if it rolls back)."""
        resolved = self._write_resolved()
        for i, (write, _) in enumerate(self._deferred):
            try:
                write()
            except StoreError as exc:
                # Refused by the store's rules although checked when recorded (a record
                # changed meanwhile): dropped and not published, as a crash before it would
                # have left it, rather than refusing every later transaction of the line.
                log.error("a deferred write was refused and is dropped: %s", exc)
                self._deferred[i] = (write, _nothing)
        return resolved, len(self._deferred)

    def _committed(self, resolved: int, deferred: int) -> None:
        del self._resolved[:resolved]
        done = self._deferred[:deferred]
        del self._deferred[:deferred]
        timer = self._timer
        if timer is not None and not (self._resolved or self._deferred):
            self._timer = None  # this transaction carried everything: no flush needed
            timer.cancel()
        for _, then in done:
            then()

    def _write_resolved(self) -> int:
        """Inside the caller's transaction: the intents answered since the last commit; how
        many (the caller forgets them once its transaction commits; kept if it rolls back)."""
        for intent, outcome in self._resolved:
            try:
                self.store.resolve_intent(intent, outcome)
            except StoreError as exc:  # answered meanwhile (recovery): the newer answer stands
                log.warning("intent %d not resolved as %s: %s", intent, outcome, exc)
        return len(self._resolved)

    def _publish(self, event: WaferEvent) -> None:
        wants = self.stream.wants
        transition = wants(EventKind.WAFER_TRANSITION)
        opened = event.opens is not None and wants(EventKind.STEP_STARTED)
        closed = event.closes is not None and wants(EventKind.STEP_ENDED)
        awaiting = event.to_state == AWAITING and wants(EventKind.DISPOSITION_NEEDED)
        interlock = event.trigger == "hold" or event.wafer_id in self._interlocked
        if not (transition or opened or closed or awaiting or interlock):
            return  # nobody hears these (the usual transition of a line nobody watches)
        lot_id = self._lot_of(event.wafer_id)
        common = _Common(lot_id=lot_id, wafer_id=event.wafer_id, tool=event.tool,
                         tool_time=event.tool_time)
        publish = self.stream.publish
        if transition:
            publish(EventKind.WAFER_TRANSITION, **common, step=event.step,
                    step_kind=event.step_kind, from_state=event.from_state,
                    to_state=event.to_state, trigger=event.trigger, why=event.why,
                    measurements=event.measurements)
        if opened:
            assert event.opens is not None
            publish(EventKind.STEP_STARTED, **common, step=event.step,
                    step_kind=event.step_kind, parameters=dict(event.opens.parameters))
        elif closed:
            assert event.closes is not None
            publish(EventKind.STEP_ENDED, **common, step=event.step,
                    step_kind=event.step_kind, outcome=event.closes.status,
                    measurements=dict(event.closes.results), why=event.why)
        if awaiting:
            publish(EventKind.DISPOSITION_NEEDED, **common, step=event.step,
                    step_kind=event.step_kind, why=event.why)
        if interlock:
            self._interlock_alarm(event, common)

    def _interlock_alarm(self, event: WaferEvent, common: _Common) -> None:
        """An interlock that stops a wafer is a line alarm (code "interlock") for the host and
        the screen; it clears when no wafer is held at one any more."""
        wafer = event.wafer_id
        if event.trigger == "hold" and event.why.startswith(INTERLOCK):
            first = not self._interlocked
            self._interlocked.add(wafer)
            self.stream.publish(EventKind.ALARM_SET, **common, code=INTERLOCK_ALARM,
                                text=event.why, wafers=sorted(self._interlocked), first=first)
        elif wafer in self._interlocked and event.from_state == HELD:
            self._interlocked.discard(wafer)
            if not self._interlocked:
                self.stream.publish(EventKind.ALARM_CLEARED, **common, code=INTERLOCK_ALARM,
                                    text="no wafer held at an interlock")

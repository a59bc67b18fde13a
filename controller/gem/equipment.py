"""The GEM equipment: bumpline as the factory host sees it (SEMI E30 over HSMS-SS).

``GemEquipment`` listens for the host (``hsms.HsmsPassive``), keeps the E30
communication and control states (``states``), and answers the host's primary
messages through handlers contributed by small capability modules
(``*_capability.py``: status data, event reports, alarms, remote commands,
process programs, terminal services, spooling). Line events reach it through a
subscription to the controller's ``LineEventStream``; what it sends the host
(S6F11, S5F1, S10F1) goes through one sender task (``sender``), in order, so a
slow or absent host never blocks the line: a message the host cannot take is
spooled in the database (``spool``) and delivered when the host asks (S6F23).

E30 rules enforced here, before any handler runs:

* not communicating (no S1F13/S1F14 exchange yet): every primary but S1F13 is
  answered with SxF0; in WAIT DELAY any message from the host also ends the delay:
  S1F13 goes at once (E30), the host is plainly there;
* equipment-offline and host-offline: every primary but S1F13 and S1F17 is
  answered with SxF0;
* a message for another device id gets S9F1, an unknown stream S9F3, an unknown
  function S9F5, a body that is not the message's structure S9F7.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import TypeVar

from controller.gem import ids
from controller.gem.alarms_capability import AlarmsCapability
from controller.gem.clock_capability import ClockCapability
from controller.gem.commands import LineCommands
from controller.gem.config import GemConfig
from controller.gem.context import Reply
from controller.gem.events_capability import on_line_event
from controller.gem.hsms import HsmsConnection, HsmsError, HsmsPassive, Message
from controller.gem.programs_capability import ProgramsCapability
from controller.gem.remote_capability import RemoteCapability
from controller.gem.reports_capability import ReportsCapability
from controller.gem.secs2 import U1, B, Fmt, Item, L, Secs2Error
from controller.gem.sender import Outgoing, Sender
from controller.gem.spool import GemDatabase
from controller.gem.spool_capability import SpoolCapability
from controller.gem.states import (
    CommState,
    ControlError,
    ControlModel,
    ControlState,
    allowed_offline,
)
from controller.gem.status_capability import StatusCapability
from controller.gem.terminal_capability import TerminalCapability
from controller.gem.trace_capability import TraceCapability
from controller.line.events import LineEventStream, Subscription

log = logging.getLogger("controller.gem")

Handler = Callable[[Message], Awaitable[Reply]]
_R = TypeVar("_R")  # what a control-state change answers (OFLACK, ONLACK, the new state)


class Abort(Exception):
    """Answer the primary with SxF0 (E5 abort transaction)."""


class BadStructure(Exception):
    """The primary's body is not the structure its message defines (answered with S9F7)."""


_CONTROL_EVENTS = {
    ControlState.EQUIPMENT_OFFLINE: ids.CE_EQUIPMENT_OFFLINE,
    ControlState.ONLINE_LOCAL: ids.CE_CONTROL_LOCAL,
    ControlState.ONLINE_REMOTE: ids.CE_CONTROL_REMOTE,
    ControlState.HOST_OFFLINE: ids.CE_HOST_OFFLINE,
}


def software_revision() -> str:
    try:
        return metadata.version("bumpline")[:20]
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


class GemEquipment:
    """One line's GEM interface; ``await start()`` in the controller's loop, ``close()``."""

    def __init__(
        self,
        config: GemConfig,
        *,
        db: GemDatabase,
        commands: LineCommands,
        events: LineEventStream | None = None,
        tools: list[str] | tuple[str, ...] = (),  # (a str is a Sequence, not tools)
        on_terminal: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.commands = commands
        self.mdln = config.model_name
        self.softrev = software_revision()
        saved = db.load("control") or {}
        self.control = ControlModel(
            ControlState(saved.get("state", ControlState.EQUIPMENT_OFFLINE)),
            remote=saved.get("remote", True),
        )
        self._comm = CommState.DISABLED
        self._comm_changed = asyncio.Event()  # replaced on each change (``comm_reached``)
        self._host_spoke = asyncio.Event()  # a message from the host during WAIT DELAY
        self._communicating = asyncio.Event()
        self._comm_failed = asyncio.Event()  # a T3 on a report: re-establish (E30)
        self._pump_busy = False
        self._pumped = asyncio.Condition()
        self._events = events
        self._subscription: Subscription | None = None
        self._pump_task: asyncio.Future[None] | None = None
        self.sender = Sender(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self.status = StatusCapability(self, tools)
        self.reports = ReportsCapability(self, tools)
        self.alarms = AlarmsCapability(self, tools)
        self.remote = RemoteCapability(self)
        self.programs = ProgramsCapability(self)
        self.terminal = TerminalCapability(self, on_terminal)
        self.spooling = SpoolCapability(self)
        self.clock = ClockCapability(self)
        self.trace = TraceCapability(self)
        self._handlers: dict[tuple[int, int], Handler] = {
            (1, 1): self._s1f1, (1, 13): self._s1f13, (1, 15): self._s1f15,
            (1, 17): self._s1f17, (2, 25): self._s2f25,
        }
        for capability in (self.status, self.reports, self.alarms, self.remote,
                           self.programs, self.terminal, self.spooling, self.clock,
                           self.trace):
            self._handlers.update(capability.handlers())
        self.server = HsmsPassive(
            host=config.host, port=config.port, device_id=config.device_id,
            timers=config.timers, handler=self._on_message, on_connection=self._on_connection,
        )

    # -- lifecycle

    async def start(self) -> None:
        await self.server.start()
        if self.db.load("control") is None:  # a line's first start: `bumpline gem` finds it
            self.db.save("control", {"state": int(self.control.state),
                                     "remote": self.control.remote})
        self.status.read_lots()  # the processing state; line events move it from here
        self.comm = CommState.WAIT_DELAY  # enabled, waiting for a host
        self._spawn(self.sender.run())
        if self._events is not None:
            self._subscription = self._events.subscribe("gem")
            self._pump_task = self._spawn(self._pump(self._subscription))
        log.info("GEM equipment %s (%s) listening on port %d, control state %s", self.mdln,
                 self.softrev, self.server.port, self.control.state.label)

    async def close(self) -> None:
        """Stop listening and separate from the host; nothing reported is lost: line events
        already published are reported, and what the host has not acknowledged is spooled."""
        if self._subscription is not None:
            self._subscription.close()  # the pump reports what is queued, then ends
        await self.server.close()  # a report in flight fails and is spooled, as the rest
        if self._pump_task is not None:
            await self._pump_task
        with contextlib.suppress(TimeoutError):  # a guard: spooling never waits on the host
            await asyncio.wait_for(self.sender.drained(), self.config.timers.t3)
        self.trace.stop_all("the equipment stops")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.comm = CommState.DISABLED

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def comm(self) -> CommState:
        """The E30 communication state."""
        return self._comm

    @comm.setter
    def comm(self, state: CommState) -> None:
        if state is CommState.WAIT_DELAY:
            self._host_spoke.clear()  # only a message during this delay ends it
        if state is not CommState.COMMUNICATING:
            self.trace.stop_all(f"communication {state.name}")  # the host sets them up again
        self._comm = state
        changed, self._comm_changed = self._comm_changed, asyncio.Event()
        changed.set()

    async def comm_reached(self, state: CommState) -> None:
        """Wait until the communication state is ``state`` (tests, the operator screen)."""
        while self._comm is not state:
            await self._comm_changed.wait()

    # -- the host link: establish communications

    async def _on_connection(self, conn: HsmsConnection) -> None:
        self.comm = CommState.WAIT_DELAY  # a new session establishes anew
        self._communicating.clear()
        self._comm_failed.clear()
        selected = asyncio.ensure_future(conn.wait_selected())
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            await asyncio.wait({selected, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            selected.cancel()
            closed.cancel()
        while conn.selected:
            await self._establish(conn)
            # communicating until the link closes or a report gets no reply in T3
            await _wait_any(conn.closed, self._comm_failed, limit_s=None)
            if conn.closed.is_set():
                break
            self._comm_failed.clear()
            # E30 communication failure: NOT COMMUNICATING, WAIT DELAY, then S1F13 again
            await self._wait_delay(conn)
        await conn.closed.wait()
        if self.server.connection is conn:  # not a newer session already established
            self.comm = CommState.WAIT_DELAY
            self._communicating.clear()
        log.info("host link down: spoolable messages are spooled until the host asks (S6F23)")

    async def _establish(self, conn: HsmsConnection) -> None:
        """S1F13 every ESTABLISHCOMMUNICATIONSTIMEOUT until communicating (or the link closes)."""
        while conn.selected and not self.comm.communicating:
            self.comm = CommState.WAIT_CRA
            try:
                reply = await conn.request(1, 13, L(*self._mdln_softrev()))
                if _first(reply.body) == 0:
                    self._now_communicating()
                    break
            except (HsmsError, Secs2Error, BadStructure) as exc:
                log.info("establish communications: %s", exc)
            if self.comm.communicating:  # the host's own S1F13 got there first
                break
            self.comm = CommState.WAIT_DELAY
            await self._wait_delay(conn)

    async def _wait_delay(self, conn: HsmsConnection) -> None:
        """E30 WAIT DELAY: ESTABLISHCOMMUNICATIONSTIMEOUT, cut short by the link closing, the
        host's own S1F13 or any other message from the host (then WAIT CRA: S1F13 now)."""
        await _wait_any(conn.closed, self._communicating, self._host_spoke,
                        limit_s=self.status.constant(ids.EC_ESTABLISH_COMM_DELAY))

    def communication_failed(self, why: str) -> None:
        """E30: a primary of ours got no reply in T3. NOT COMMUNICATING (WAIT DELAY) until
        an S1F13/S1F14 exchange again; meanwhile reports are spooled."""
        if not self.comm.communicating:
            return
        log.warning("communication failure (%s): not communicating; S1F13 follows", why)
        self.comm = CommState.WAIT_DELAY
        self._communicating.clear()
        self._comm_failed.set()

    def _now_communicating(self) -> None:
        if not self.comm.communicating:
            log.info("communicating with the host")
        self.comm = CommState.COMMUNICATING
        self._communicating.set()

    def _mdln_softrev(self) -> tuple[Item, Item]:
        return self.status.text(self.mdln), self.status.text(self.softrev)

    # -- receiving primaries

    async def _on_message(self, conn: HsmsConnection, message: Message) -> None:
        in_delay = self.comm is CommState.WAIT_DELAY
        try:
            await self._answer(conn, message)
        finally:
            if in_delay and self.comm is CommState.WAIT_DELAY:
                self._host_spoke.set()  # answered (SxF0) first, then S1F13 at once

    async def _answer(self, conn: HsmsConnection, message: Message) -> None:
        if message.session != self.config.device_id:
            await self._error(conn, 1, message)  # unrecognized device id
            return
        if message.error is not None:  # the body is not SECS-II: S9F7, the link stays
            log.warning("%s from the host: %s", message.name, message.error)
            await self._error(conn, 7, message)
            return
        key = (message.stream, message.function)
        handler = self._handlers.get(key)
        try:
            if not self.comm.communicating and key != (1, 13):
                raise Abort
            if not self.control.state.online and not allowed_offline(*key):
                raise Abort
            if handler is None:
                known = any(stream == message.stream for stream, _ in self._handlers)
                await self._error(conn, 5 if known else 3, message)
                return
            function, body = await handler(message)
        except Abort:
            function, body = 0, None
        except (BadStructure, ValueError, TypeError, AttributeError) as exc:
            # a body not shaped as the message defines (Secs2Error is a ValueError)
            log.warning("%s from the host: %s", message.name, exc)
            await self._error(conn, 7, message)  # illegal data
            return
        except Exception:
            # A fault of ours (a store refusing a value it should have been spared): the
            # host's transaction is aborted (SxF0), the session and every other stays up.
            log.exception("%s from the host could not be answered", message.name)
            function, body = 0, None
        if message.wbit:
            await conn.reply(message, function, body)

    def streams(self) -> set[int]:
        """The streams the equipment knows: those of the host's primaries it answers and of
        its own (S5, S6, S10 through the sender, S9 errors)."""
        return {stream for stream, _ in self._handlers} | {5, 6, 9, 10}

    async def _error(self, conn: HsmsConnection, function: int, message: Message) -> None:
        header = message.to_bytes()[4:14]  # MHEAD: the offending message's header
        with contextlib.suppress(HsmsError):
            await conn.send(Message(9, function, B(*header), False, conn.next_system(),
                                    self.config.device_id))

    async def _s2f25(self, message: Message) -> Reply:
        """Loopback diagnostic (E5): the bytes back as they came."""
        if message.item.fmt is not Fmt.B:
            raise ValueError(f"ABS must be binary, got {message.item!r}")
        return 26, message.item

    async def _s1f1(self, message: Message) -> Reply:
        return 2, L(*self._mdln_softrev())

    async def _s1f13(self, message: Message) -> Reply:
        self._now_communicating()
        return 14, L(B(0), L(*self._mdln_softrev()))

    async def _s1f15(self, message: Message) -> Reply:
        oflack = self._switch(self.control.host_offline)
        return 16, B(oflack)

    async def _s1f17(self, message: Message) -> Reply:
        onlack = self._switch(self.control.host_online)
        return 18, B(onlack)

    # -- control state: the operator's switches and the host's requests

    def _switch(self, change: Callable[[], _R]) -> _R:
        """Apply a control-state change; persist it and report its collection event."""
        before, was_remote = self.control.state, self.control.remote
        result = change()
        after = self.control.state
        if (after, self.control.remote) != (before, was_remote):
            self.db.save("control", {"state": int(after), "remote": self.control.remote})
        if after != before:
            log.info("control state %s -> %s", before.label, after.label)
            ceid = _CONTROL_EVENTS.get(after)
            failed_attempt = before is ControlState.ATTEMPT_ONLINE and not after.online
            if ceid is not None and not failed_attempt:  # the last offline report is sent
                self.emit(ceid, {ids.DV_PREVIOUS_CONTROL_STATE: U1(int(before))},
                          force=not after.online)
        return result

    async def operator_online(self) -> ControlState:
        """The operator's ON-LINE switch: attempt online (S1F1 to the host)."""
        self.control.operator_online()
        conn = self.server.connection
        try:
            if conn is None or not self.comm.communicating:
                raise HsmsError("not communicating with the host")
            await conn.request(1, 1, None)
        except HsmsError as exc:
            self._switch(self.control.attempt_failed)
            raise ControlError(f"host did not answer S1F1 ({exc}): stays offline") from None
        self._switch(self.control.attempt_succeeded)
        return self.control.state

    def operator_offline(self) -> ControlState:
        self._switch(self.control.operator_offline)
        return self.control.state

    def operator_remote(self, remote: bool) -> ControlState:
        """The operator's LOCAL/REMOTE switch."""
        self._switch(lambda: self.control.operator_switch(remote=remote))
        return self.control.state

    # -- sending: events, alarms, terminal text; spooled when the host cannot take them

    def emit(self, ceid: int, values: dict[int, Item], *, force: bool = False) -> None:
        """Report collection event ``ceid`` (if the host enabled it) with its data values."""
        body = self.reports.event_report(ceid, values)
        if body is not None:
            self.send(Outgoing(6, 11, body, f"CEID {ceid}", force=force))

    def send(self, outgoing: Outgoing) -> None:
        """Queue a primary for the host; never waits (the line must not)."""
        self.sender.put(outgoing)

    def send_primary(self, stream: int, function: int, body: Item, what: str) -> None:
        self.send(Outgoing(stream, function, body, what))

    async def drained(self) -> None:
        """Wait until everything queued so far has been sent or spooled (tests, shutdown)."""
        await self.sender.drained()

    async def drained_after_events(self) -> None:
        """Wait until every line event published so far is reported (sent or spooled)."""
        subscription = self._subscription
        if subscription is not None:
            async with self._pumped:
                await self._pumped.wait_for(
                    lambda: not subscription.pending() and not self._pump_busy)
        await self.sender.drained()

    async def communicating(self) -> None:
        """Wait until an S1F13/S1F14 exchange established communications."""
        await self._communicating.wait()

    # -- line events

    async def _pump(self, subscription: Subscription) -> None:
        async for event in subscription:
            self._pump_busy = True
            if subscription.missed:
                log.warning("GEM fell %d line events behind; status variables read the store",
                            subscription.missed)
                subscription.missed = 0
            try:
                on_line_event(self, event)
            except Exception:  # reporting must never stop
                log.exception("GEM could not report %s", event.kind)
            self._pump_busy = False
            async with self._pumped:
                self._pumped.notify_all()


def _first(body: Item | None) -> object:
    """The first scalar of a body: an ack code (``B`` or ``U1``), or the first list element's."""
    if body is None:
        raise BadStructure("empty body")
    while body.fmt.name == "L":
        if not body.value:
            raise BadStructure("empty list")
        body = body.value[0]
    return body.scalar


async def _wait_any(*events: asyncio.Event, limit_s: float | None) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

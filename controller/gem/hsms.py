"""HSMS-SS (SEMI E37/E37.1) on asyncio streams: the equipment's passive end of the host link.

One TCP connection at a time (HSMS-SS is a single session). A host that crashed
or lost its cable leaves a half-open connection that would lock its restarted self
out for ever, so the equipment checks the link itself (E37 linktest): when nothing
has come from the host for ``Timers.linktest`` seconds it sends linktest.req, and
when a second connection arrives it sends one to the open session at once; no
linktest.rsp within T6 and that session is dropped (the second connection then
takes its place); answered, the second connection is closed.

The host selects (``select.req``), may check the link (``linktest.req``), deselects
or separates; data messages are handed to the equipment's handler only while
selected. What E37 rejects is answered with ``reject.req`` and the link stays: a
PType other than SECS-II, an unknown SType, a response to no open transaction, data
before select. A stream 9 message from the host (E5 error report) is never
answered: it fails our transaction whose header it carries.

Timers (wall seconds, they are about the wire):

* T3 reply timeout for a primary we send with the W-bit (``request``), counted from the
  send: a primary that cannot leave in T3 (a host that stopped reading) fails it and
  drops the link;
* T6 control transaction timeout (a linktest we send), counted from the request, so a
  host that stopped reading (our send cannot leave) fails it too;
* T7 not-selected timeout: a connection that is not selected in time is closed;
* T8 network inter-character timeout: a message whose next byte (length bytes included)
  does not come within T8 of the one before closes the link.
* T5 connect separation applies to the active (host) side; kept for the settings;
* ``linktest``: seconds of silence from the host before we send linktest.req (0: never).

Nothing here blocks: the read loop runs in its own task, a reply reaches the
task waiting for it through a future keyed by the system bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from controller.gem.secs2 import B, Fmt, Item, Secs2Error, ascii_item, decode, encode

log = logging.getLogger("controller.gem.hsms")

MAX_FRAME = 16 * 1024 * 1024  # larger frames are refused (a broken or hostile peer)
CONTROL_SESSION = 0xFFFF
# Our transactions are numbered from 2^31: a host that matches replies by system bytes
# alone (some do) then never takes our primary for the reply to its own request.
FIRST_SYSTEM = 0x8000_0000


class SType(IntEnum):
    DATA = 0
    SELECT_REQ = 1
    SELECT_RSP = 2
    DESELECT_REQ = 3
    DESELECT_RSP = 4
    LINKTEST_REQ = 5
    LINKTEST_RSP = 6
    REJECT_REQ = 7
    SEPARATE_REQ = 9


class HsmsError(Exception):
    """The link cannot carry the message (down, not selected, or no reply in time)."""


class HostAborted(HsmsError):
    """The host answered our primary with SxF0: it received it and will not take it."""


class ReplyTimeout(HsmsError):
    """No reply within T3 (or T6 for a control transaction)."""


class HostRejected(HostAborted):
    """The host answered our primary with an S9Fx error (its MHEAD names our message)."""


class Unsupported(HsmsError):
    """A frame whose PType or SType we do not support: answered with ``reject``, the link stays."""

    def __init__(self, why: str, reject: Message) -> None:
        super().__init__(why)
        self.reject = reject


# reject.req reason codes (E37)
REJECT_STYPE = 1  # SType not supported
REJECT_PTYPE = 2  # PType not supported
REJECT_NO_TRANSACTION = 3  # a response with no open transaction
REJECT_NOT_SELECTED = 4  # a data message before select


@dataclass(frozen=True, slots=True)
class Timers:
    t3: float = 45.0
    t5: float = 10.0
    t6: float = 5.0
    t7: float = 10.0
    t8: float = 5.0
    linktest: float = 30.0  # host silent this long: linktest.req (0: never); not an E37 T


@dataclass(frozen=True, slots=True)
class Message:
    """One HSMS message: a SECS-II data message (``stype`` DATA) or a control message."""

    stream: int
    function: int
    body: Item | None = None
    wbit: bool = False
    system: int = 0
    session: int = 0
    stype: SType = SType.DATA
    status: int = 0  # byte 3 of a control message (select status, reject reason)
    error: str | None = None  # a data message whose body is not SECS-II (body None)

    @property
    def name(self) -> str:
        return f"S{self.stream}F{self.function}" if self.stype is SType.DATA else self.stype.name

    @property
    def item(self) -> Item:
        """The body of a message that defines one: a header-only one is illegal data, a
        Secs2Error like a body of the wrong shape (the equipment answers S9F7)."""
        if self.body is None:
            raise Secs2Error(f"{self.name} has no body")
        return self.body

    def to_bytes(self) -> bytes:
        if self.stype is SType.DATA:
            b2, b3 = (0x80 if self.wbit else 0) | self.stream, self.function
        else:
            b2, b3 = (self.stream, self.status)  # reject.req carries the SType it rejects
        body = encode(self.body) if self.body is not None else b""
        header = struct.pack(">HBBBBI", self.session, b2, b3, 0, self.stype, self.system)
        return struct.pack(">I", len(header) + len(body)) + header + body

    @classmethod
    def from_frame(cls, frame: bytes) -> Message:
        """A message from the bytes after the length field (header + body)."""
        session, b2, b3, ptype, stype_code, system = struct.unpack(">HBBBBI", frame[:10])
        if ptype != 0:  # E37: byte 2 of the reject carries the PType it rejects
            raise Unsupported(f"PType {ptype} is not SECS-II",
                              _reject_code(ptype, system, REJECT_PTYPE))
        try:
            stype = SType(stype_code)
        except ValueError:
            raise Unsupported(f"unknown SType {stype_code}",
                              _reject_code(stype_code, system, REJECT_STYPE)) from None
        if stype is SType.DATA:
            try:
                body, error = decode(frame[10:]), None
            except Secs2Error as exc:  # answered (S9F7) by the equipment, not a broken link
                body, error = None, str(exc)
            return cls(b2 & 0x7F, b3, body, bool(b2 & 0x80), system, session, error=error)
        return cls(b2, 0, None, False, system, session, stype, b3)


Handler = Callable[["HsmsConnection", Message], Awaitable[None]]


class HsmsConnection:
    """One TCP connection from the host, from connect to close."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        device_id: int,
        timers: Timers,
        handler: Handler,
        system: itertools.count,
    ) -> None:
        self.device_id = device_id
        self.timers = timers
        self.selected = False
        self.closed = asyncio.Event()
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._system = system
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._send_lock = asyncio.Lock()
        self._selected_event = asyncio.Event()
        self._heard_at = asyncio.get_running_loop().time()  # the host's last frame (wall)
        self.peer = writer.get_extra_info("peername")

    # -- sending

    def next_system(self) -> int:
        return next(self._system) & 0xFFFFFFFF

    async def send(self, message: Message) -> None:
        if self.closed.is_set():
            raise HsmsError("the host link is down")
        if message.body is not None:  # E5 A items are ASCII: many hosts decode nothing else
            message = replace(message, body=ascii_item(message.body))
        async with self._send_lock:
            try:
                self._writer.write(message.to_bytes())
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._close(f"send failed: {exc}")
                raise HsmsError(f"the host link is down ({exc})") from None
        if self.closed.is_set():  # dropped while it waited to leave (abort ends a drain quietly)
            raise HsmsError(f"the host link is down ({message.name} may not have left)")

    async def request(self, stream: int, function: int, body: Item | None) -> Message:
        """Send a primary with the W-bit and wait (T3) for its reply."""
        if not self.selected:
            raise HsmsError("the host link is not selected")
        system = self.next_system()
        primary = Message(stream, function, body, True, system, self.device_id)
        try:
            reply = await self._transact(primary, self.timers.t3)
        except ReplyTimeout:
            # E5: S9F9 transaction timer timeout, with the header of the primary (SHEAD)
            with contextlib.suppress(HsmsError):
                await self._send_within(Message(9, 9, B(*primary.to_bytes()[4:14]), False,
                                                self.next_system(), self.device_id),
                                        self.timers.t3)
            raise
        if reply.function == 0:
            raise HostAborted(f"the host aborted S{stream}F{function} (S{stream}F0)")
        return reply

    async def reply(self, primary: Message, function: int, body: Item | None) -> None:
        await self.send(
            Message(primary.stream, function, body, False, primary.system, self.device_id)
        )

    async def linktest(self) -> None:
        """linktest.req; ReplyTimeout when no linktest.rsp within T6 of this call (a send
        that cannot leave, to a host that stopped reading, is one)."""
        message = Message(0, 0, None, False, self.next_system(), CONTROL_SESSION,
                          SType.LINKTEST_REQ)
        try:
            await asyncio.wait_for(self._transact(message, None), self.timers.t6)
        except TimeoutError:
            raise ReplyTimeout(f"no linktest.rsp within T6 ({self.timers.t6:g} s)") from None

    async def probe(self) -> bool:
        """Is the host there? A linktest now: True when answered; else the link is dropped
        (a dead session must not keep the host's next connection out)."""
        if self.closed.is_set():
            return False
        try:
            await self.linktest()
        except HostRejected:
            return True  # a reject.req is an answer: the host is there
        except HsmsError as exc:
            log.warning("host link %s: %s; dropping it", self.peer, exc)
            self._close(f"linktest failed ({exc})", abort=True)
            return False
        return True

    async def _send_within(self, message: Message, limit_s: float | None) -> None:
        """Send, within ``limit_s`` (None: no limit). A message that cannot leave in time
        (behind a host that stopped reading, the kernel's buffers full) drops the link:
        nothing more would reach the host, and the send's wait must end. Whole frames only
        reach the transport (a cancelled drain leaves none half-written)."""
        try:
            await asyncio.wait_for(self.send(message), limit_s)
        except TimeoutError:
            self._close(f"{message.name} could not be sent within {limit_s:g} s", abort=True)
            raise ReplyTimeout(f"{message.name} could not be sent within {limit_s:g} s "
                               "(the host reads nothing): link dropped") from None

    async def _transact(self, message: Message, limit_s: float | None) -> Message:
        """Send ``message`` and wait for its reply, both within ``limit_s`` (T3 counts from
        the send, so a send the host never takes fails it too)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        self._pending[message.system] = future
        try:
            started = loop.time()
            await self._send_within(message, limit_s)
            left = None if limit_s is None else max(0.0, limit_s - (loop.time() - started))
            closed = asyncio.ensure_future(self.closed.wait())
            either: set[asyncio.Future[Any]] = {future, closed}  # the reply, or the link's end
            try:
                done, _ = await asyncio.wait(either, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if future in done:
                return future.result()
            if self.closed.is_set():
                raise HsmsError(f"the host link went down awaiting the reply to {message.name}")
            raise ReplyTimeout(f"no reply to {message.name} within {limit_s:g} s")
        finally:
            self._pending.pop(message.system, None)

    # -- receiving

    async def run(self) -> None:
        """Read until the link closes; T7 closes a connection never selected."""
        t7 = asyncio.get_running_loop().call_later(
            self.timers.t7, self._close_unselected
        )
        keep_alive = asyncio.ensure_future(self._keep_alive()) if self.timers.linktest \
            else None
        try:
            while not self.closed.is_set():
                try:
                    message = await self._read_message()
                except Unsupported as exc:  # the frame was read whole: reject it, read on
                    log.warning("host link %s: %s; rejected", self.peer, exc)
                    await self.send(exc.reject)
                    continue
                if message is None:
                    break
                await self._dispatch(message)
        except (HsmsError, Secs2Error) as exc:
            log.warning("host link %s: %s; closing", self.peer, exc)
        except (ConnectionError, OSError) as exc:
            log.info("host link %s lost: %s", self.peer, exc)
        finally:
            t7.cancel()
            self._close("read loop ended")
            if keep_alive is not None:
                keep_alive.cancel()
                await asyncio.gather(keep_alive, return_exceptions=True)

    async def _keep_alive(self) -> None:
        """linktest.req whenever the host has been silent for ``timers.linktest`` seconds;
        unanswered in T6, the link is dropped (``probe``)."""
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            quiet = loop.time() - self._heard_at
            if quiet < self.timers.linktest:
                await asyncio.sleep(self.timers.linktest - quiet)
            elif not await self.probe():  # its answer is a frame: heard again
                return

    def _close_unselected(self) -> None:
        if not self.selected and not self.closed.is_set():
            log.warning("host link %s: not selected within T7; closing", self.peer)
            self._close("T7")

    async def _read_message(self) -> Message | None:
        try:
            first = await self._reader.readexactly(1)  # the next message: no time limit
        except asyncio.IncompleteReadError:
            return None  # the host closed the connection
        self._heard_at = asyncio.get_running_loop().time()
        rest = await self._read_t8(3)
        if rest is None:
            return None
        (length,) = struct.unpack(">I", first + rest)
        if not 10 <= length <= MAX_FRAME:
            raise HsmsError(f"frame length {length} out of range")
        frame = await self._read_t8(length)
        return None if frame is None else Message.from_frame(frame)

    async def _read_t8(self, count: int) -> bytes | None:
        """``count`` more bytes of the message begun, each arrival within T8 of the one
        before (E37: T8 is the time between two characters of one message, the length
        bytes included, not a limit on the whole: a long S7F3 on a slow link keeps
        coming); None when the host closed the connection."""
        parts: list[bytes] = []
        while count:
            try:
                chunk = await asyncio.wait_for(self._reader.read(count), self.timers.t8)
            except TimeoutError:
                raise HsmsError("T8: the message stopped mid-way") from None
            if not chunk:
                return None
            # Heard: a long message still coming is no silence for the linktest keep-alive.
            self._heard_at = asyncio.get_running_loop().time()
            parts.append(chunk)
            count -= len(chunk)
        return b"".join(parts)

    async def _dispatch(self, message: Message) -> None:
        control = Message(0, 0, None, False, message.system, CONTROL_SESSION)
        kind = message.stype
        if kind is SType.DATA:
            if not self.selected:
                await self.send(_reject(message, reason=REJECT_NOT_SELECTED))
                return
            if message.stream == 9 and message.function % 2:
                self._host_error(message)  # E5: stream 9 is never answered
                return
            pending = self._pending.get(message.system)
            if pending is not None and message.function % 2 == 0 and not pending.done():
                pending.set_result(message)
                return
            if message.function % 2 == 0:
                log.warning("unexpected reply %s (system %#x) dropped", message.name,
                            message.system)
                return
            await self._handler(self, message)
        elif kind is SType.SELECT_REQ:
            status = 1 if self.selected else 0  # 1: communication already active
            await self.send(_control(control, SType.SELECT_RSP, status))
            if not self.selected:
                self.selected = True
                self._selected_event.set()
        elif kind is SType.DESELECT_REQ:
            status = 0 if self.selected else 1  # 1: communication not established
            await self.send(_control(control, SType.DESELECT_RSP, status))
            self.selected = False
            self._close("deselected")  # HSMS-SS: deselect ends the session
        elif kind is SType.LINKTEST_REQ:
            await self.send(_control(control, SType.LINKTEST_RSP, 0))
        elif kind is SType.SEPARATE_REQ:
            self._close("separated by the host")
        elif kind in (SType.LINKTEST_RSP, SType.SELECT_RSP, SType.DESELECT_RSP):
            pending = self._pending.get(message.system)
            if pending is not None and not pending.done():
                pending.set_result(message)
            else:  # E37: a response to no open transaction of ours
                await self.send(_reject(message, reason=REJECT_NO_TRANSACTION))
        elif kind is SType.REJECT_REQ:
            log.warning("host rejected a message (SType/PType %d, reason %d)",
                        message.stream, message.status)
            pending = self._pending.get(message.system)
            if pending is not None and not pending.done():
                pending.set_exception(HostRejected(f"the host rejected it (reason "
                                                   f"{message.status})"))
        else:  # pragma: no cover - SType covers every decoded value
            await self.send(_reject(message, reason=REJECT_STYPE))

    def _host_error(self, message: Message) -> None:
        """An S9Fx from the host: log it and fail our transaction its MHEAD names, if open."""
        body = message.body
        header = bytes(body.value) if body is not None and body.fmt is Fmt.B else b""
        system = int.from_bytes(header[6:10], "big") if len(header) == 10 else None
        log.warning("host sent %s about %s", message.name,
                    header.hex(" ") if header else "no message header")
        pending = self._pending.get(system) if system is not None else None
        if pending is not None and not pending.done():
            pending.set_exception(HostRejected(f"the host answered {message.name}"))

    async def wait_selected(self) -> None:
        await self._selected_event.wait()

    # -- closing

    def _close(self, why: str, *, abort: bool = False) -> None:
        """Close the link; ``abort`` drops it without flushing what is unsent (a dead host
        would never take it, and a send waiting on it must fail now)."""
        if self.closed.is_set():
            return
        log.info("host link %s closed: %s", self.peer, why)
        self.selected = False
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HsmsError(f"the host link closed ({why})"))
        with contextlib.suppress(Exception):
            if abort:
                self._writer.transport.abort()
            else:
                self._writer.close()

    async def close(self, *, separate: bool = False) -> None:
        if separate and self.selected and not self.closed.is_set():
            with contextlib.suppress(HsmsError):
                await self.send(Message(0, 0, None, False, self.next_system(),
                                        CONTROL_SESSION, SType.SEPARATE_REQ))
        self._close("closed by the equipment")
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def _control(like: Message, stype: SType, status: int) -> Message:
    return Message(0, 0, None, False, like.system, CONTROL_SESSION, stype, status)


def _reject(message: Message, *, reason: int) -> Message:
    return _reject_code(int(message.stype), message.system, reason)


def _reject_code(rejected: int, system: int, reason: int) -> Message:
    # E37 reject.req: the rejected message's system bytes; byte 2 its SType (its PType
    # for reason 2), byte 3 the reason
    return Message(rejected, 0, None, False, system, CONTROL_SESSION, SType.REJECT_REQ, reason)


class HsmsPassive:
    """The listening equipment end: one host connection at a time; a new one replaces the
    open one only when that fails a linktest."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        device_id: int,
        timers: Timers,
        handler: Handler,
        on_connection: Callable[[HsmsConnection], Awaitable[None]],
    ) -> None:
        self.host, self.port = host, port
        self.device_id = device_id
        self.timers = timers
        self.connection: HsmsConnection | None = None
        self._handler = handler
        self._on_connection = on_connection
        self._server: asyncio.Server | None = None
        self._system = itertools.count(FIRST_SYSTEM)
        self._tasks: set[asyncio.Task[None]] = set()
        self._deciding = asyncio.Lock()  # one new connection weighed against the open one
        self._closing = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # port 0: the one given
        log.info("HSMS-SS passive on %s:%d (device id %d)", self.host, self.port, self.device_id)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._deciding:
            current = self.connection
            # the open session is probed first: a host restarted after a crash or a pulled
            # cable must not be refused because of its own dead session
            if current is not None and await current.probe():
                log.warning("second host connection from %s refused: the session with %s "
                            "answers (HSMS-SS: one session)",
                            writer.get_extra_info("peername"), current.peer)
                writer.close()
                return
            if self._closing:  # closed while the open session was probed
                writer.close()
                return
            connection = HsmsConnection(reader, writer, device_id=self.device_id,
                                        timers=self.timers, handler=self._handler,
                                        system=self._system)
            self.connection = connection
            watcher = asyncio.ensure_future(self._on_connection(connection))
            self._tasks.add(watcher)
            watcher.add_done_callback(self._tasks.discard)
        await connection.run()

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self.connection is not None:
            await self.connection.close(separate=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

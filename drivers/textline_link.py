"""Text lines over TCP with pushed events, on the caller's asyncio loop.

The EP-25 barrier plater (../shared/specs/barrier-plater.md) answers every host
line with exactly one reply line, in order, and pushes numbered events
(``!<seq> <EVENT> <fields>``) on the same connection at any time between
replies. ``TextLineLink`` owns that connection:

* ONE reader task reads every line and sorts it: an event goes to the event
  handler at once, in arrival order; anything else is the reply to the one
  command in flight (a reply nobody waits for is stale and dropped);
* ``request`` sends one command at a time and waits ``timeout_s`` wall seconds
  for its reply. It never resends: commands are not idempotent on the wire,
  so a lost reply is a ``ReplyLost`` and the caller decides (the plater driver
  asks ``STATE?`` first);
* ``open`` connects and shakes hands with ``*IDN?`` (a tool that already has a
  host answers ``ERR 09 BUSY LINK`` and closes), then runs the ``on_connect``
  hooks, which is where the driver fetches the events it missed.

The connection itself comes from a factory, so the same link runs over a real
socket or over an in-memory script of sent and received lines (the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from drivers.errors import LinkBusy, LinkError, ReplyLost, text_error

log = logging.getLogger("drivers.textline")

MAX_LINE = 512  # bytes a line, LF included (spec)
Trace = Callable[[str, str], None]  # ('>' sent | '<' received | '!' event, the line)


class LineWriter(Protocol):
    """What the link needs of the sending half (``asyncio.StreamWriter`` has it)."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...

    async def wait_closed(self) -> None: ...


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, LineWriter]]]


@dataclass(frozen=True)
class EventLine:
    """One pushed event: ``!<seq> <name> <fields>``."""

    seq: int
    name: str
    fields: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join((f"!{self.seq}", self.name, *self.fields))


def parse_event(line: str) -> EventLine | None:
    """The event a ``!`` line carries, or None if it is not a well-formed one."""
    head, *rest = line[1:].split(" ")
    if not head.isdigit() or not rest or not rest[0]:
        return None
    return EventLine(int(head), rest[0], tuple(rest[1:]))


def tcp_connect(host: str, port: int, timeout_s: float) -> Connect:
    async def connect() -> tuple[asyncio.StreamReader, LineWriter]:
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=4 * MAX_LINE), timeout_s
        )

    return connect


class TextLineLink:
    """One text-line tool on one TCP connection. Open it before use; close it after."""

    def __init__(
        self,
        connect: Connect,
        *,
        tool: str,
        endpoint: str,
        timeout_s: float = 2.0,
        connect_attempts: int = 5,
        trace: Trace | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"{tool}: reply timeout must be > 0 s, got {timeout_s!r}")
        self.tool = tool
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.connect_attempts = max(1, connect_attempts)
        self.trace = trace
        self.identity: list[str] = []  # the fields of the *IDN? handshake's reply
        self.replies_lost = 0  # commands that got no reply in time
        self.stale_replies = 0  # replies that arrived with no command waiting
        self.bad_lines = 0  # '!' lines that are not events
        self.connections = 0  # successful handshakes: 1 + reconnections
        self._connect = connect
        self._writer: LineWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[str] | None = None
        self._event_handlers: list[Callable[[EventLine], None]] = []
        self._connect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._connecting_hooks: list[Callable[[], None]] = []
        self._lost_handlers: list[Callable[[str], None]] = []
        self._broken: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int, *, tool: str, timeout_s: float = 2.0,
            trace: Trace | None = None) -> TextLineLink:
        return cls(tcp_connect(host, port, timeout_s), tool=tool, endpoint=f"{host}:{port}",
                   timeout_s=timeout_s, trace=trace)

    # --- hooks -----------------------------------------------------------------------------------

    def add_event_handler(self, handler: Callable[[EventLine], None]) -> None:
        """``handler(event)`` is called from the reader task for every event, in order."""
        self._event_handlers.append(handler)

    def add_connect_hook(
        self, hook: Callable[[], Awaitable[None]], *, before: Callable[[], None] | None = None
    ) -> None:
        """``await hook()`` after every (re)connection, once the handshake has passed;
        ``before()`` just before each connection attempt (events may come with the
        handshake, ahead of what the hook fetches)."""
        self._connect_hooks.append(hook)
        if before is not None:
            self._connecting_hooks.append(before)

    def add_lost_handler(self, handler: Callable[[str], None]) -> Callable[[], None]:
        """``handler(why)`` when the tool's end of the connection goes away (not when we
        close it): nothing more can arrive until the next command reopens the link.
        Returns the unsubscriber."""
        self._lost_handlers.append(handler)
        return lambda: self._lost_handlers.remove(handler)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._writer is not None and self._broken is None

    async def open(self) -> None:
        """Connect, shake hands and run the connect hooks; LinkError if the tool is
        unreachable, LinkBusy if another host keeps it after every attempt."""
        if self.is_open:
            return
        await self._drop_connection()
        for attempt in range(self.connect_attempts):
            try:
                await self._open_once()
                break
            except LinkBusy:
                await self._drop_connection()
                if attempt + 1 == self.connect_attempts:
                    raise
                # the tool may not yet have seen our previous connection close
                await asyncio.sleep(0.05 * (attempt + 1))
            except BaseException:
                await self._drop_connection()
                raise
        try:
            for hook in self._connect_hooks:
                await hook()
        except BaseException:
            await self._drop_connection()  # half open is not open: the next call starts afresh
            raise

    async def _open_once(self) -> None:
        for before in self._connecting_hooks:
            before()
        try:
            reader, writer = await self._connect()
        except (OSError, TimeoutError) as exc:
            raise LinkError(self.tool, f"cannot connect to {self.endpoint}: {exc}") from None
        self._writer, self._broken = writer, None
        self._reader_task = asyncio.create_task(self._read(reader), name=f"textline-{self.tool}")
        for attempt in range(self.connect_attempts):  # *IDN? changes nothing: safe to repeat
            try:
                self.identity = await self.request("*IDN?")
                break
            except ReplyLost as exc:
                if self._broken is not None or attempt + 1 == self.connect_attempts:
                    raise LinkError(self.tool, f"{self.endpoint} did not answer *IDN? "
                                    f"({exc.detail})") from None
        self.connections += 1

    async def close(self) -> None:
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._fail_waiter(f"connection to {self.endpoint} closed")

    async def __aenter__(self) -> TextLineLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests --------------------------------------------------------------------------------

    async def request(self, line: str) -> list[str]:
        """Send one command; the fields of its ``OK`` reply. ``ERR`` raises its error
        class; no reply in ``timeout_s`` (or the connection gone) raises ReplyLost."""
        if "\n" in line or "\r" in line or len(line.encode("ascii", "replace")) >= MAX_LINE:
            raise ValueError(f"{self.tool}: cannot send {line[:40]!r}: not one line of "
                             f"< {MAX_LINE} bytes")
        async with self._lock:
            writer = self._writer
            if writer is None or self._broken is not None:
                raise ReplyLost(self.tool, line, self._broken or f"{self.endpoint} not connected")
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[str] = loop.create_future()
            self._waiter = waiter
            try:
                writer.write(line.encode("ascii", "replace") + b"\n")
                if self.trace is not None:
                    self.trace(">", line)
                reply = await asyncio.wait_for(waiter, self.timeout_s)
            except TimeoutError:
                self.replies_lost += 1
                raise ReplyLost(self.tool, line, f"no reply in {self.timeout_s:g} s") from None
            except (OSError, LinkError) as exc:
                self.replies_lost += 1
                detail = exc.detail if isinstance(exc, LinkError) else str(exc)
                raise ReplyLost(self.tool, line, detail) from None
            finally:
                self._waiter = None
        return _reply_fields(self.tool, line, reply)

    # --- the reader task -------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        why = "closed by the tool"
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    why = f"a line longer than {MAX_LINE} bytes"
                    break
                self._line(raw.decode("ascii", "replace").rstrip("\n").removesuffix("\r"))
        except OSError as exc:
            why = str(exc)
        self._broken = f"connection to {self.endpoint} lost: {why}"
        self._fail_waiter(self._broken)
        for handler in list(self._lost_handlers):  # a handler may unsubscribe itself
            try:
                handler(self._broken)
            except Exception:  # a subscriber's bug must not hide the loss from the others
                log.exception("%s: link-lost handler failed", self.tool)

    def _line(self, line: str) -> None:
        if self.trace is not None:
            self.trace("<", line)
        if line.startswith("!"):
            event = parse_event(line)
            if event is None:
                self.bad_lines += 1
                log.warning("%s: not an event line: %r", self.tool, line)
                return
            for handler in self._event_handlers:
                try:
                    handler(event)
                except Exception:  # a subscriber's bug must not stop the link
                    log.exception("%s: event handler failed on %r", self.tool, line)
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.stale_replies += 1
            log.warning("%s: reply with no command waiting (stale): %r", self.tool, line)
            return
        waiter.set_result(line)

    def _fail_waiter(self, why: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(LinkError(self.tool, why))


def _reply_fields(tool: str, command: str, reply: str) -> list[str]:
    word, _, rest = reply.partition(" ")
    if word == "OK":
        return rest.split(" ") if rest else []
    if word == "ERR":
        code_text, _, text = rest.partition(" ")
        if code_text.isdigit():
            code = int(code_text)
            if code == 9:
                raise LinkBusy(tool, f"{command}: ERR 09 {text}")
            raise text_error(tool, command, code, text)
    raise LinkError(tool, f"{command}: reply {reply[:60]!r} is neither OK nor ERR")

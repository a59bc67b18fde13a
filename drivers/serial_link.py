"""HostLink/1 request/response over any pyserial URL, on the caller's asyncio loop.

``HostLinkPort`` owns one port: a device (``/dev/ttyUSB0``), a pty, a serial
device server (``socket://HOST:PORT``) or ``loop://``. It sends one request at
a time and applies the link rules of hostlink.md:

* a reply must come within ``timeout_s`` wall seconds;
* on a timeout, a ``NAK 01`` (our request arrived damaged) or a garbled reply,
  the *identical* frame is sent again with the same SEQ — the tool answers a
  repeat by re-sending its previous reply without executing it twice;
* replies with another SEQ or CMD are stale (late answers to earlier
  requests) and are dropped;
* after ``retries`` retransmissions it gives up with a ``LinkError`` naming the
  tool and the command; NAK 02-06 raise their ``drivers.errors`` class;
* the first request after ``open()`` is preceded by an ``IDN`` whose reply is
  dropped: the tool remembers the previous host process's last request, and a
  new process starting at the same SEQ with the same body would otherwise be
  answered from memory and not executed (rule 3). IDN is harmless either way.

Reading never blocks the loop: the port's file descriptor is watched with
``loop.add_reader``; only a port without one (``loop://``) gets a reader thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import os
import threading
from collections.abc import Callable
from types import TracebackType

import serial

from drivers.errors import LinkError, nak_error
from drivers.hostlink import FrameError, FrameExtractor, Reply, encode_request, parse_reply

Trace = Callable[[str, bytes], None]  # ('>' sent | '<' received, whole frame)

_READ_CHUNK = 4096
_THREAD_POLL_S = 0.05  # reader thread wake-up, only for ports without a file descriptor
_EARLY_S = 1e-6  # a timer may run up to the loop's clock resolution before its time


class _Miss(enum.Enum):
    """Why an attempt produced no usable reply."""

    TIMEOUT = "timed out"
    GARBLED = "garbled"


class HostLinkPort:
    """One HostLink/1 tool on one port. Open it before use; close it after."""

    def __init__(
        self,
        url: str,
        *,
        tool: str,
        baudrate: int = 115200,
        parity: str = "N",
        timeout_s: float = 0.5,
        retries: int = 3,
        trace: Trace | None = None,
        sync: bool = True,
    ) -> None:
        """``sync=False`` skips the opening IDN: only for a scripted tool in a byte-exact test,
        which has no previous request to be mistaken for."""
        if not timeout_s > 0:
            raise ValueError(f"{tool}: reply timeout must be > 0 s, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"{tool}: retries must be >= 0, got {retries!r}")
        self.url = url
        self.tool = tool
        self.baudrate = baudrate
        # HostLink is 8N1 (hostlink.md); a site's converter may differ: the line file says
        # (``parity``), as it says the baud rate.
        self.parity = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN,
                       "O": serial.PARITY_ODD}[parity]
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.trace = trace
        self.retransmissions = 0  # frames sent again (timeout, NAK 01, garbled reply)
        self.stale_replies = 0  # well-formed replies dropped for a wrong SEQ or CMD
        self.garbled_replies = 0  # frames that failed framing or checksum
        self._seq = 0
        self.sync = sync
        self._synced = False
        self._serial: serial.SerialBase | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._extractor = FrameExtractor()
        self._frames: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[_Miss | None] | None = None
        self._deadline = 0.0  # loop time at which the current wait times out
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._broken: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        if self._serial is not None:
            return
        loop = asyncio.get_running_loop()

        def connect() -> serial.SerialBase:
            return serial.serial_for_url(
                self.url, baudrate=self.baudrate, bytesize=serial.EIGHTBITS,
                parity=self.parity, stopbits=serial.STOPBITS_ONE, timeout=0,
                xonxoff=False, rtscts=False, dsrdtr=False,
            )

        try:
            # a device server that is down can hold connect() for seconds: not on the loop
            ser = await asyncio.to_thread(connect) if self._is_socket else connect()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(self.tool, f"cannot open port {self.url}: {exc}") from None
        self._loop, self._serial, self._broken = loop, ser, None
        self._synced = not self.sync
        self._extractor.clear()
        self._frames.clear()
        try:
            fd = ser.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is not None:
            os.set_blocking(fd, False)  # reads and writes go straight to it from the loop
            self._reader_fd = fd
            loop.add_reader(fd, self._on_readable)
        else:
            ser.timeout = _THREAD_POLL_S
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._read_thread, args=(ser, loop), name=f"hostlink-{self.tool}",
                daemon=True,
            )
            self._thread.start()

    async def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is None:
            return
        if self._reader_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = None
        if self._thread is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                ser.cancel_read()
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._wake(f"port {self.url} was closed")
        if self._is_socket:
            await asyncio.to_thread(ser.close)  # pyserial's socket close sleeps 0.3 s
        else:
            ser.close()

    async def __aenter__(self) -> HostLinkPort:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def _is_socket(self) -> bool:
        return self.url.startswith("socket://")

    # --- requests ----------------------------------------------------------------------------

    async def request(self, cmd: str, *args: str) -> list[str]:
        """Send one command and return the fields of its ACK after CMD."""
        async with self._lock:
            if self._serial is None:
                raise LinkError(self.tool, f"port {self.url} is not open")
            try:
                frame = encode_request(self._seq, cmd, args)
            except FrameError as exc:  # checked before any byte goes out: it uses no SEQ
                raise FrameError(f"{self.tool}: cannot send {cmd}: {exc}") from None
            if not self._synced:
                # The tool compares with its previous request, perhaps another process's:
                # make that one an IDN of ours, so our first real request cannot equal it.
                seq = self._take_seq()
                await self._exchange(seq, "IDN", encode_request(seq, "IDN", ()))
                self._synced = True
                frame = encode_request(self._seq, cmd, args)
            return await self._exchange(self._take_seq(), cmd, frame)

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 100
        return seq

    async def _exchange(self, seq: int, cmd: str, frame: bytes) -> list[str]:
        # nothing is in flight between requests: whatever is queued now is stale
        self.stale_replies += len(self._frames)
        self._frames.clear()
        timeouts = garbled = checksum_naks = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.retransmissions += 1
            outcome = await self._attempt(seq, cmd, frame)
            if outcome is _Miss.TIMEOUT:
                timeouts += 1
            elif outcome is _Miss.GARBLED:
                garbled += 1
            elif outcome.ack:
                return list(outcome.fields)
            elif outcome.nak_code == 1:
                checksum_naks += 1  # our frame was damaged on the way: send it again
            else:
                raise nak_error(self.tool, cmd, outcome.nak_code or 0, outcome.nak_text)
        attempts = self.retries + 1
        if timeouts == attempts:
            detail = f"no reply to {cmd} after {attempts} attempts (timeout {self.timeout_s:g} s)"
        else:
            seen = [f"{n} {what}" for n, what in (
                (timeouts, "timed out"), (garbled, "garbled"), (checksum_naks, "NAK 01 CHECKSUM"),
            ) if n]
            detail = (
                f"no valid reply to {cmd} after {attempts} attempts "
                f"(timeout {self.timeout_s:g} s; {', '.join(seen)})"
            )
        raise LinkError(self.tool, detail)

    async def _attempt(self, seq: int, cmd: str, frame: bytes) -> Reply | _Miss:
        """Send ``frame`` once; the reply matching SEQ and CMD, or why there is none.

        The wait (future and timer) is set up before the frame goes out: on a loaded
        machine the tool's process may run on this core only once this one blocks, so
        everything done between the write and the wait delays the reply.
        """
        loop = self._loop
        assert loop is not None
        self._deadline = loop.time() + self.timeout_s
        waiter = self._wait(loop)
        try:
            self._send(frame)
            while True:
                why = await waiter
                while self._frames:
                    raw = self._frames.popleft()
                    try:
                        reply = parse_reply(raw)
                    except FrameError:
                        self.garbled_replies += 1
                        return _Miss.GARBLED
                    if reply.seq == seq and reply.cmd == cmd:
                        return reply
                    self.stale_replies += 1
                if self._broken is not None:
                    raise LinkError(self.tool, self._broken)
                if why is _Miss.TIMEOUT:
                    return _Miss.TIMEOUT
                waiter = self._wait(loop)
        finally:
            self._waiter = None

    def _wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[_Miss | None]:
        """A fresh waiter for the next frames; it times out at ``self._deadline``.

        One watchdog timer serves every request: a timer armed and cancelled per request
        costs more than the rest of the wait. It fires at the earliest deadline it was
        armed for and, if the waiter of that moment has time left, arms itself again.
        """
        waiter: asyncio.Future[_Miss | None] = loop.create_future()
        self._waiter = waiter
        watchdog = self._watchdog
        if watchdog is None or watchdog.when() > self._deadline:
            if watchdog is not None:
                watchdog.cancel()
            self._watchdog = loop.call_at(self._deadline, self._on_watchdog)
        return waiter

    def _on_watchdog(self) -> None:
        self._watchdog = None
        waiter, loop = self._waiter, self._loop
        if waiter is None or waiter.done() or loop is None:
            return  # nothing waits now: the next request arms it again
        if loop.time() >= self._deadline - _EARLY_S:  # the loop runs timers that early
            waiter.set_result(_Miss.TIMEOUT)
        else:
            self._watchdog = loop.call_at(self._deadline, self._on_watchdog)

    def _send(self, frame: bytes) -> None:
        ser = self._serial
        if ser is None or self._broken is not None:
            raise LinkError(self.tool, self._broken or f"port {self.url} is not open")
        try:
            fd = self._reader_fd
            # straight to the descriptor: pyserial's write adds a select() per call
            written = os.write(fd, frame) if fd is not None else 0
            if written < len(frame):
                ser.write(frame[written:])
        except BlockingIOError:
            ser.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(self.tool, f"cannot write to {self.url}: {exc}") from None
        if self.trace is not None:
            self.trace(">", frame)

    # --- receiving (loop side) ---------------------------------------------------------------

    def _on_readable(self) -> None:
        fd = self._reader_fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)  # the fd is non-blocking and known readable
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the pty's other side is gone
            self._lose_link(f"connection to {self.url} lost: {exc}")
            return
        if not data:  # a socket closed by the far end
            self._lose_link(f"connection to {self.url} lost: closed by the other end")
            return
        self._on_bytes(data)

    def _on_bytes(self, data: bytes) -> None:
        frames = self._extractor.feed(data)
        if not frames:
            return
        trace = self.trace
        for frame in frames:
            if trace is not None:
                trace("<", frame)
            self._frames.append(frame)
        self._wake(None)

    def _wake(self, broken: str | None) -> None:
        if broken is not None:
            self._broken = broken
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lose_link(self, why: str) -> None:
        if self._reader_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = None
        self._wake(why)

    # --- receiving (thread side, ports without a file descriptor) ----------------------------

    def _read_thread(self, ser: serial.SerialBase, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as exc:  # noqa: BLE001 - any failure ends the link, reported on the loop
                if not self._stop.is_set():
                    loop.call_soon_threadsafe(self._wake, f"connection to {self.url} lost: {exc}")
                return
            if data and not self._stop.is_set():
                try:
                    loop.call_soon_threadsafe(self._on_bytes, data)
                except RuntimeError:  # the loop is gone: nobody is listening any more
                    return


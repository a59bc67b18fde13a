"""Serve one simulated HostLink/1 tool over a real wire: a pty or raw TCP.

Runs on the caller's asyncio loop with plain callbacks (no threads, no tasks):
bytes arrive, the model is played forward to ``clock.now()``, replies go out at
once. A pty looks to the host like ``/dev/ttyUSB0``; the TCP port looks like a
serial device server in raw mode (pyserial ``socket://HOST:PORT``).

Faults (``sim.faults.FaultPlan``): every reply, retransmitted ones included,
rolls drop, then corrupt (one bit of one body byte flipped, so the host's
checksum catches it), then delay (held ``delay_s`` wall seconds with
``loop.call_later``, so other tools are never held up). Scheduled alarms and
door times are handed to the model, which applies them lazily in tool time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pty
import random
import tty
from typing import Protocol, cast

from sim.faults import FaultPlan
from sim.hostlink import FrameSplitter, HostLinkEndpoint, HostLinkModel


class ToolClock(Protocol):
    def now(self) -> float: ...


class _Wire(Protocol):
    splitter: FrameSplitter
    label: str

    def write(self, data: bytes) -> None: ...


def corrupt_reply(frame: bytes, rng: random.Random) -> bytes:
    """Flip one bit of one byte between ``$`` and ``*``: a checksum-detectable line error."""
    end = frame.rfind(b"*")
    if end <= 1:
        return frame
    index = rng.randrange(1, end)
    damaged = bytearray(frame)
    damaged[index] ^= 1 << rng.randrange(7)
    return bytes(damaged)


class SerialToolServer:
    def __init__(
        self,
        model: HostLinkModel,
        clock: ToolClock,
        *,
        name: str,
        faults: FaultPlan | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.model = model
        self.clock = clock
        self.name = name
        self.faults = faults
        self.log = logger or logging.getLogger(f"sim.{name}")
        self.endpoint = HostLinkEndpoint(model)
        self.urls: list[str] = []
        self.replies_sent = 0
        self.replies_dropped = 0
        self.replies_corrupted = 0
        self.replies_delayed = 0
        self._ptys: list[_PtyWire] = []
        self._servers: list[asyncio.Server] = []
        self._connections: set[_TcpWire] = set()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_keys = itertools.count()
        if faults is not None:
            use_faults = getattr(model, "use_faults", None)
            if use_faults is not None:
                use_faults(faults)

    async def __aenter__(self) -> SerialToolServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start_pty(self) -> str:
        """Serve on a new pty; returns the slave path a host opens like a serial port."""
        wire = _PtyWire(self, asyncio.get_running_loop())
        self._ptys.append(wire)
        self.urls.append(wire.path)
        self.log.info("%s serving on %s", self.name, wire.path)
        return wire.path

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve raw TCP like a serial device server; returns ``socket://HOST:PORT``."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _TcpWire(self, loop), host, port)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        url = f"socket://{host}:{bound}"
        self.urls.append(url)
        self.log.info("%s serving on %s", self.name, url)
        return url

    async def stop(self) -> None:
        """Close every pty, socket and pending delayed reply this server opened."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for wire in self._ptys:
            wire.close()
        self._ptys.clear()
        for server in self._servers:
            server.close()
        closing = [conn.closed for conn in self._connections]
        for conn in list(self._connections):
            conn.transport.close()
        if closing:
            await asyncio.wait(closing, timeout=2.0)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.urls.clear()

    # --- the path every request takes: keep it lean (target: reply within ~1 ms) --------------

    def received(self, wire: _Wire, data: bytes) -> None:
        now = self.clock.now()
        debug = self.log.isEnabledFor(logging.DEBUG)
        for frame in wire.splitter.feed(data):
            if debug:
                self.log.debug("%s %s rx $%s", self.name, wire.label, frame.decode("latin-1"))
            try:
                reply = self.endpoint.handle_frame(frame, now)
            except Exception:  # a model bug must not take the wire down: log it, stay silent
                self.log.exception("%s failed on $%s", self.name, frame.decode("latin-1"))
                continue
            if reply is not None:
                self._send(wire, reply, debug)
        drain = getattr(self.model, "drain_log", None)
        if drain is not None:
            for line in drain():
                self.log.info("%s %s", self.name, line)

    def _send(self, wire: _Wire, reply: bytes, debug: bool) -> None:
        plan = self.faults
        if plan is not None:
            if plan.roll(plan.drop):
                self.replies_dropped += 1
                self.log.debug("%s %s reply dropped (fault)", self.name, wire.label)
                return
            if plan.roll(plan.corrupt):
                reply = corrupt_reply(reply, plan.rng)
                self.replies_corrupted += 1
                self.log.debug("%s %s reply corrupted (fault)", self.name, wire.label)
            if plan.roll(plan.delay):
                self.replies_delayed += 1
                self.log.debug("%s %s reply held %.3fs (fault)", self.name, wire.label,
                               plan.delay_s)
                key = next(self._timer_keys)
                self._timers[key] = asyncio.get_running_loop().call_later(
                    plan.delay_s, self._deliver_late, key, wire, reply, debug
                )
                return
        self._write(wire, reply, debug)

    def _deliver_late(self, key: int, wire: _Wire, reply: bytes, debug: bool) -> None:
        del self._timers[key]
        self._write(wire, reply, debug)

    def _write(self, wire: _Wire, reply: bytes, debug: bool) -> None:
        wire.write(reply)
        self.replies_sent += 1
        if debug:
            self.log.debug("%s %s tx %s", self.name, wire.label, reply[:-2].decode("latin-1"))


class _PtyWire:
    """A pty pair: the server owns the master; the host opens the slave path."""

    def __init__(self, server: SerialToolServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.splitter = FrameSplitter()
        self.master, self.slave = pty.openpty()
        try:
            # Raw line discipline: no echo, no CR/LF translation, bytes pass as sent.
            tty.setraw(self.slave)
            os.set_blocking(self.master, False)
            self.path = os.ttyname(self.slave)
        except OSError:
            os.close(self.master)
            os.close(self.slave)
            raise
        # Holding the slave open ourselves keeps the master readable (no EIO storm)
        # while no host is attached, and lets a host close and re-open the port.
        self.label = self.path
        self._closed = False
        loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.server.log.warning("%s %s read failed: %s", self.server.name, self.path, exc)
            return
        if data:
            self.server.received(self, data)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            os.write(self.master, data)
        except BlockingIOError:  # the host is not reading: a real line would overrun too
            self.server.log.warning("%s %s host not reading, reply lost",
                                    self.server.name, self.path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


class _TcpWire(asyncio.Protocol):
    """One host connection to the raw TCP port."""

    def __init__(self, server: SerialToolServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.splitter = FrameSplitter()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.label = "tcp"
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports are asyncio.Transport in all but ancestry
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.label = f"tcp {peer[0]}:{peer[1]}" if peer else "tcp"
        self.server._connections.add(self)
        self.server.log.info("%s host connected (%s)", self.server.name, self.label)

    def data_received(self, data: bytes) -> None:
        self.server.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        self.server.log.info("%s host disconnected (%s)", self.server.name, self.label)

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

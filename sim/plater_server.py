"""Serve the simulated EP-25 plater on a real TCP port: text lines with pushed events.

Runs on the caller's asyncio loop with plain callbacks and one timer: lines
arrive, the model is played forward to ``clock.now()``, its events go out, then
the reply. Between commands a timer wakes the model at the tool time it names
(``next_change``), so STEP, BATH and DONE events are pushed while the host is
silent, on time at any time scale.

One host at a time: a second connection gets ``ERR 09 BUSY LINK`` and is
closed. The event log, the numbering and what else survives a power loss are
written to ``state_file`` (when given) after every change, so a restarted
server (``PlaterServer.restore_model``) carries on from them.

Faults (``sim.faults.FaultPlan``): ``drop`` loses a reply (never an event: the
tool executed the command), ``delay`` holds a reply ``delay_s`` wall seconds,
``disconnect=T`` drops the host connection at tool time T; scheduled alarms and
the door go to the model. ``corrupt`` and ``busy`` have no meaning on this link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol, cast

from sim.faults import FaultPlan
from sim.plater import PlaterModel
from sim.plater_process import ERROR_TEXT, LINE_MAX


class PlaterStateError(ValueError):
    """A state file the plater cannot come back from (named, with why)."""


class ToolClock(Protocol):
    def now(self) -> float: ...


MIN_WAKE_WALL_S = 0.001


class PlaterServer:
    def __init__(
        self,
        model: PlaterModel,
        clock: ToolClock,
        *,
        name: str,
        faults: FaultPlan | None = None,
        state_file: str | Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.model = model
        self.clock = clock
        self.name = name
        self.faults = faults
        self.state_file = Path(state_file) if state_file else None
        self.log = logger or logging.getLogger(f"sim.{name}")
        self.replies_sent = 0
        self.replies_dropped = 0
        self.replies_delayed = 0
        self.refused_connections = 0
        self._server: asyncio.Server | None = None
        self._host: _Connection | None = None
        self._others: set[_Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._late: set[asyncio.TimerHandle] = set()
        self._disconnects = list(faults.disconnects) if faults else []
        if faults is not None:
            model.apply_fault_plan(faults)

    @staticmethod
    def restore_model(state_file: str | Path, *, seed: int = 0, start: float = 0.0) -> PlaterModel:
        """The plater after a power loss: what ``state_file`` kept (a new tool if none)."""
        path = Path(state_file)
        try:
            saved: dict[str, Any] | None = json.loads(path.read_text(encoding="utf-8"))
            return PlaterModel(seed=seed, start=start, saved=saved)
        except FileNotFoundError:
            return PlaterModel(seed=seed, start=start)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise PlaterStateError(
                f"plater state file {path}: cannot restore from it ({why}); "
                "move it away to start the plater afresh") from None

    async def __aenter__(self) -> PlaterServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._save(strict=True)  # a state file that cannot be written: say so before serving
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, loop), host, port)
        bound = self._server.sockets[0].getsockname()[1]
        self.log.info("%s serving text lines on %s:%d", self.name, host, bound)
        self._push_events()  # the power-up STATE event: no host was connected to hear it
        self._after_change()
        return host, bound

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for timer in self._late:
            timer.cancel()
        self._late.clear()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        conns = [c for c in (self._host, *self._others) if c is not None]
        for conn in conns:
            conn.transport.close()
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=2.0)
        if server is not None:
            await server.wait_closed()
        self._save()

    def drop_host(self) -> None:
        """Close the host's connection (a cable pulled; the tool carries on)."""
        if self._host is not None:
            self.log.info("%s dropping the host connection", self.name)
            self._host.transport.close()

    # --- connections -----------------------------------------------------------------------------

    def _connected(self, conn: _Connection) -> bool:
        if self._host is not None:
            self.refused_connections += 1
            conn.transport.write(f"ERR 09 {ERROR_TEXT[9]}\n".encode())
            self._others.add(conn)
            conn.transport.close()
            return False
        self._host = conn
        self.log.info("%s host connected (%s)", self.name, conn.label)
        return True

    def _disconnected(self, conn: _Connection) -> None:
        self._others.discard(conn)
        if self._host is conn:
            self._host = None
            self.log.info("%s host disconnected (%s)", self.name, conn.label)

    def _received(self, conn: _Connection, line: str) -> None:
        now = self.clock.now()
        try:
            reply = self.model.handle(line, now)
        except Exception:  # a model bug must not take the wire down: log it, stay silent
            self.log.exception("%s failed on %r", self.name, line)
            return
        self._push_events()
        self._reply(conn, reply)
        self._after_change()

    def _reply(self, conn: _Connection, reply: str) -> None:
        plan = self.faults
        data = (reply + "\n").encode("ascii")
        if plan is not None:
            if plan.roll(plan.drop):
                self.replies_dropped += 1
                self.log.debug("%s reply dropped (fault): %s", self.name, reply)
                return
            if plan.roll(plan.delay):
                self.replies_delayed += 1
                loop = asyncio.get_running_loop()
                holder: list[asyncio.TimerHandle] = []

                def late() -> None:
                    self._late.discard(holder[0])
                    conn.write(data)

                holder.append(loop.call_later(plan.delay_s, late))
                self._late.add(holder[0])
                return
        conn.write(data)
        self.replies_sent += 1

    def _push_events(self) -> None:
        lines = self.model.drain_events()
        host = self._host
        if host is not None and lines:
            host.write("".join(line + "\n" for line in lines).encode("ascii"))
        for note in self.model.drain_notes():
            self.log.info("%s %s", self.name, note)

    # --- the clock between commands --------------------------------------------------------------

    def _after_change(self) -> None:
        self._save()
        if self._server is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wakes = [t for t in (self.model.next_change(), *self._disconnects[:1]) if t is not None]
        if not wakes:
            return
        scale = float(getattr(self.clock, "scale", 1.0))
        delay = max(MIN_WAKE_WALL_S, (min(wakes) - self.clock.now()) / scale)
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        now = self.clock.now()
        self.model.advance(now)
        self._push_events()
        while self._disconnects and self._disconnects[0] <= now + 1e-9:
            self._disconnects.pop(0)
            self.drop_host()
        self._after_change()

    def _save(self, *, strict: bool = False) -> None:
        if self.state_file is None or not self.model.dirty:
            return
        partial = self.state_file.with_name(self.state_file.name + ".partial")
        try:
            partial.write_text(json.dumps(self.model.snapshot()), encoding="utf-8")
            os.replace(partial, self.state_file)
        except OSError as exc:
            why = f"plater state file {self.state_file}: cannot write it ({exc.strerror})"
            if strict:
                raise PlaterStateError(why) from None
            # serving on matters more than the file; it is tried again at the next change
            self.log.error("%s %s", self.name, why)
            return
        self.model.dirty = False


class _Connection(asyncio.Protocol):
    """One TCP connection: the host, or a second one being turned away."""

    def __init__(self, server: PlaterServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.closed: asyncio.Future[None] = loop.create_future()
        self.label = "tcp"
        self.transport: asyncio.Transport
        self._buffer = b""
        self._overlong = False  # a line past LINE_MAX was answered; the rest of it is dropped
        self._accepted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports are asyncio.Transport in all but ancestry
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.label = f"tcp {peer[0]}:{peer[1]}" if peer else "tcp"
        self._accepted = self.server._connected(self)

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            return
        self._buffer += data
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            if self._overlong:  # the rest of a line already answered ERR 01: one reply a line
                self._overlong = False
                continue
            line = raw.removesuffix(b"\r").decode("latin-1")
            self.server._received(self, line)
        if len(self._buffer) > LINE_MAX and not self._overlong:  # not a line of this protocol
            self._overlong = True
            self.server._reply(self, "ERR 01 SYNTAX")
        if self._overlong:
            self._buffer = b""  # its bytes until the LF are dropped as they come

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._disconnected(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(AttributeError):
            if not self.transport.is_closing():
                self.transport.write(data)

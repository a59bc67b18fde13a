"""``ScriptedTool``: the tool end of a real pty or TCP connection, answering as a test says.

For link rules no simulator can be made to break on purpose (silence, a stale or
wrong reply, garbage, a hang-up), the test scripts the far end itself. What the
host sends is split into requests by a ``framing`` (HostLink frames, Modbus TCP
ADUs), each recorded in ``requests`` and answered by the test's ``answer``.
"""

from __future__ import annotations

import asyncio
import os
import struct
import tty
from collections.abc import Callable
from typing import cast

Answer = Callable[[bytes], "bytes | list[bytes] | None"]
Framing = Callable[[bytes], list[bytes]]  # bytes as they arrive -> whole requests


class ScriptedTool:
    """The far end of a real pty or TCP connection, answering each request through
    ``answer``."""

    def __init__(self, answer: Answer, framing: Framing) -> None:
        self.answer = answer
        self.framing = framing
        self.requests: list[bytes] = []
        self.port = 0  # TCP: the port it listens on
        self._master: int | None = None
        self._slave: int | None = None
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.Transport] = []

    async def start_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        asyncio.get_running_loop().add_reader(master, self._on_pty)
        return os.ttyname(slave)

    async def start_tcp(self) -> str:
        tool = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # cast, not isinstance: uvloop's transports do not derive from asyncio's
                self.transport = cast(asyncio.Transport, transport)
                tool._transports.append(self.transport)

            def data_received(self, data: bytes) -> None:
                for out in tool._answer(data):
                    self.transport.write(out)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(Proto, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"socket://127.0.0.1:{self.port}"

    def send(self, data: bytes) -> None:
        """Write bytes toward the host unasked (a misbehaving line)."""
        if self._master is not None:
            os.write(self._master, data)
        for t in self._transports:
            t.write(data)

    def _answer(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for request in self.framing(data):
            self.requests.append(request)
            reply = self.answer(request)
            if reply:
                out.extend([reply] if isinstance(reply, bytes) else reply)
        return out

    def _on_pty(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        for out in self._answer(data):
            os.write(self._master, out)

    def hang_up(self) -> None:
        """The tool end goes away (cable pulled, server down)."""
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        for t in self._transports:
            t.close()

    async def stop(self) -> None:
        self.hang_up()
        self._transports.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class ModbusTcpFraming:
    """Modbus TCP ADUs (MBAP header + PDU) out of a byte stream."""

    def __init__(self) -> None:
        self._buffer = b""

    def __call__(self, data: bytes) -> list[bytes]:
        self._buffer += data
        adus = []
        while len(self._buffer) >= 7:
            length = struct.unpack(">H", self._buffer[4:6])[0]
            if len(self._buffer) < 6 + length:
                break
            adus.append(self._buffer[:6 + length])
            self._buffer = self._buffer[6 + length:]
        return adus


def modbus_answer(reply: Callable[[int, bytes], bytes | None]) -> Answer:
    """``reply(request number, request PDU)`` -> reply PDU (None: silence), wrapped in the
    request's MBAP header."""
    count = 0

    def answer(adu: bytes) -> bytes | None:
        nonlocal count
        count += 1
        tid, _pid, _length, unit = struct.unpack(">HHHB", adu[:7])
        pdu = reply(count, adu[7:])
        if pdu is None:
            return None
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    return answer

"""A text-line tool (the EP-25 plater) played from a script, in memory (PyMeasure
``expected_protocol`` style): every host line must be the next one the script expects,
and the script is asserted used up. For a tool that behaves otherwise than our simulator
but as the spec allows (../shared/specs/barrier-plater.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from drivers.clock import Clock, ScaledClock
from drivers.plater import BarrierPlater
from drivers.textline_link import TextLineLink
from drivers.types import PlaterEvent

IDN = ("*IDN?", "OK BARRIERTEK,EP-25,SN0117,1.3.0")
LOST = 0.05  # wall seconds the scripted tests wait for a reply they know will not come


class ScriptedWire:
    """The tool's side of a connection, played from a script of ('>' sent | '<' received
    | 'x' the tool hangs up, line). A host line must be the next '>' line; the '<' lines
    after it are then sent. A '>' followed directly by another '>' is a lost reply. After
    an 'x' the next connection gets the lines that follow (a tool back from a power loss)."""

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = list(script)
        self.reader: asyncio.StreamReader | None = None
        self.connections = 0
        self._closing = False

    async def connect(self) -> tuple[asyncio.StreamReader, ScriptedWire]:
        self.connections += 1
        self.reader, self._closing = asyncio.StreamReader(), False
        self._send_received()
        return self.reader, self

    def _send_received(self) -> None:
        assert self.reader is not None
        while self.script and self.script[0][0] in ("<", "x"):
            direction, line = self.script.pop(0)
            if direction == "x":
                self.reader.feed_eof()
                return
            self.reader.feed_data(line.encode() + b"\n")

    def write(self, data: bytes) -> None:
        line = data.decode().removesuffix("\n")
        assert self.script, f"host sent {line!r} after the end of the script"
        direction, expected = self.script.pop(0)
        assert (direction, line) == (">", expected), (
            f"host sent {line!r}; the script expected {direction} {expected!r}")
        self._send_received()

    def close(self) -> None:
        self._closing = True
        if self.reader is not None:
            self.reader.feed_eof()

    def is_closing(self) -> bool:
        return self._closing

    async def wait_closed(self) -> None:
        return None

    @property
    def used_up(self) -> bool:
        return not self.script


@dataclass
class Scripted:
    wire: ScriptedWire
    link: TextLineLink
    plater: BarrierPlater
    events: list[PlaterEvent] = field(default_factory=list)


@asynccontextmanager
async def scripted(script: list[tuple[str, str]], *, last_seq: int | None = None,
                   retries: int = 2, clock: Clock | None = None) -> AsyncIterator[Scripted]:
    wire = ScriptedWire(script)
    link = TextLineLink(wire.connect, tool="plater-1", endpoint="script", timeout_s=LOST)
    plater = BarrierPlater(link, clock or ScaledClock(1000.0), last_seq=last_seq,
                           retries=retries)
    s = Scripted(wire, link, plater)
    plater.on_event(s.events.append)
    await link.open()
    try:
        yield s
    finally:
        await link.close()


def sent(line: str) -> tuple[str, str]:
    return (">", line)


def got(line: str) -> tuple[str, str]:
    return ("<", line)


def hang_up() -> tuple[str, str]:
    return ("x", "")

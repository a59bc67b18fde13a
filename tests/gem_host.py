"""A minimal factory host for tests (the active HSMS end, written from E37 and E5), and
the line it talks to (``GemLine``: a store, an event stream and the equipment).

It uses the codec and frame layout (tested byte-exact on their own) but none of the
equipment's logic: it connects, selects, sends primaries and answers the
equipment's primaries (S1F13, S1F1, S5F1, S6F11, S10F1) the way a host does,
keeping every primary it received in order for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Callable
from datetime import datetime

from controller.gem.commands import StoreLineCommands
from controller.gem.config import GemConfig
from controller.gem.equipment import GemEquipment
from controller.gem.hsms import CONTROL_SESSION, Message, SType, Timers
from controller.gem.secs2 import B, Item, L
from controller.gem.spool import GemDatabase
from controller.gem.states import CommState, ControlState
from controller.line.events import EventKind, LineEventStream
from controller.store import Store

WAIT_S = 10.0  # a guard against a hang, never a timing assertion


class TestHost:
    __test__ = False  # not a test class

    def __init__(self, device_id: int = 0, *, commack: int = 0) -> None:
        self.device_id = device_id
        self.commack = commack
        self.received: list[Message] = []  # the equipment's primaries, in order
        self.linktests = 0  # the equipment's linktest.req answered
        self._new = asyncio.Condition()
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._system = itertools.count(0x100)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, port: int, *, select: bool = True) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self.closed.clear()
        self._task = asyncio.ensure_future(self._read())
        if select:
            reply = await self.control(SType.SELECT_REQ)
            assert reply.stype is SType.SELECT_RSP and reply.status == 0

    async def control(self, stype: SType) -> Message:
        system = next(self._system)
        return await self._transact(Message(0, 0, None, False, system, CONTROL_SESSION, stype))

    async def request(self, stream: int, function: int, body: Item | None = None) -> Message:
        system = next(self._system)
        return await self._transact(
            Message(stream, function, body, True, system, self.device_id))

    async def send(self, message: Message) -> None:
        self._writer.write(message.to_bytes())
        await self._writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def _transact(self, message: Message) -> Message:
        return await self.transact_raw(message.system, message.to_bytes())

    async def transact_raw(self, system: int, frame: bytes) -> Message:
        """Send bytes as they are and wait for the answer carrying ``system``."""
        future = asyncio.get_running_loop().create_future()
        self._pending[system] = future
        await self.send_raw(frame)
        try:
            return await asyncio.wait_for(future, WAIT_S)
        finally:
            self._pending.pop(system, None)

    async def primary(self, stream: int, function: int, *, after: int = 0) -> Message:
        """The first S<stream>F<function> the equipment sent at or after index ``after``."""
        async with self._new:
            def found() -> Message | None:
                for m in self.received[after:]:
                    if (m.stream, m.function) == (stream, function):
                        return m
                return None
            await asyncio.wait_for(self._new.wait_for(lambda: found() is not None), WAIT_S)
            return found()

    async def count(self, stream: int, function: int, n: int, *,
                    limit_s: float = WAIT_S) -> list[Message]:
        """Wait until ``n`` S<stream>F<function> primaries arrived; return them in order."""
        def matching() -> list[Message]:
            return [m for m in self.received if (m.stream, m.function) == (stream, function)]
        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: len(matching()) >= n), limit_s)
            return matching()

    async def answered_linktests(self, n: int) -> None:
        """Wait until the equipment's ``n``-th linktest.req was answered."""
        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: self.linktests >= n), WAIT_S)

    def go_silent(self) -> None:
        """Stop reading and answering, the socket left open: a host that crashed or lost
        its cable, as the equipment sees it (nothing tells it the link is gone)."""
        self._task.cancel()

    async def _read(self) -> None:
        try:
            while True:
                (length,) = struct.unpack(">I", await self._reader.readexactly(4))
                message = Message.from_frame(await self._reader.readexactly(length))
                future = self._pending.get(message.system)
                is_reply = (message.stype in (SType.SELECT_RSP, SType.LINKTEST_RSP,
                                              SType.DESELECT_RSP, SType.REJECT_REQ)
                            or (message.stype is SType.DATA and message.function % 2 == 0))
                if future is not None and is_reply and not future.done():
                    future.set_result(message)
                    continue
                if message.stype is SType.LINKTEST_REQ:
                    await self.send(Message(0, 0, None, False, message.system,
                                            CONTROL_SESSION, SType.LINKTEST_RSP))
                    async with self._new:
                        self.linktests += 1
                        self._new.notify_all()
                    continue
                if message.stype is SType.DATA:
                    async with self._new:
                        self.received.append(message)
                        self._new.notify_all()
                    if message.wbit:
                        await self._answer(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            async with self._new:
                self._new.notify_all()

    async def _answer(self, message: Message) -> None:
        body = {
            (1, 13): L(B(self.commack), L()),
            (1, 1): L(),
            (5, 1): B(0),
            (6, 11): B(0),
            (10, 1): B(0),
        }.get((message.stream, message.function))
        await self.send(Message(message.stream, message.function + 1, body, False,
                                message.system, self.device_id))

    async def close(self, *, separate: bool = True) -> None:
        if self._writer is None:
            return
        if separate and not self.closed.is_set():
            with contextlib.suppress(ConnectionError):
                await self.send(Message(0, 0, None, False, next(self._system),
                                        CONTROL_SESSION, SType.SEPARATE_REQ))
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        if self._task is not None:  # ends once the equipment closes its side
            await asyncio.gather(self._task, return_exceptions=True)  # (or went silent)
        self._writer = None



# --- the line side: a store, an event stream, the equipment ---------------------------------

TOOLS = ("printer-1", "placer-1", "oven-1", "cleaner-1")
CONFIG = GemConfig(port=0, host="127.0.0.1", model_name="BUMPLINE-T",
                   timers=Timers(t3=2.0, t5=1.0, t6=1.0, t7=2.0, t8=1.0))
RECIPE = "rebump-hipb-snpb"


class GemLine:
    """A store, an event stream and the equipment on them, restartable."""

    def __init__(self, url: str, config: GemConfig = CONFIG,
                 now: Callable[[], datetime] | None = None, line_id: str | None = None,
                 tools: tuple[str, ...] = TOOLS) -> None:
        self.url, self.config, self.tools = url, config, tools
        self.now = now  # the equipment's UTC clock (CLOCK, SPOOLSTARTTIME); None: the real one
        self.store = Store(url, line_id=line_id)  # line_id: the line this equipment is
        self.stream = LineEventStream("line-1", lambda: 0.0)
        self.eq: GemEquipment | None = None
        self.terminal: list[str] = []
        self.hosts: list[TestHost] = []

    async def start(self) -> GemEquipment:
        db = (GemDatabase(self.store.engine) if self.now is None
              else GemDatabase(self.store.engine, now=self.now))
        self.eq = GemEquipment(self.config, db=db,
                               commands=StoreLineCommands(self.store), events=self.stream,
                               tools=self.tools, on_terminal=self.terminal.append)
        await self.eq.start()
        return self.eq

    async def host(self) -> TestHost:
        """A host connected, selected and communicating (it answered our S1F13)."""
        host = TestHost()
        self.hosts.append(host)
        await host.connect(self.eq.port)
        await host.primary(1, 13)
        await self.eq.communicating()  # the S1F14 is handled in the equipment's own task
        assert self.eq.comm is CommState.COMMUNICATING
        return host

    async def remote_host(self) -> TestHost:
        """``host()``, and the operator puts the equipment ON-LINE REMOTE."""
        host = await self.host()
        assert await self.eq.operator_online() is ControlState.ONLINE_REMOTE
        return host

    async def publish(self, kind: EventKind, **fields) -> None:
        self.stream.publish(kind, **fields)
        await self.eq.drained_after_events()

    async def close(self) -> None:
        for host in self.hosts:  # a failed test's hosts too
            with contextlib.suppress(Exception):
                await host.close(separate=False)
        if self.eq is not None:
            await self.eq.close()
        self.store.close()

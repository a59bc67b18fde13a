"""Our TCP servers (the simulated tools, the scripted test tool) on both event loops.

The simulators and drivers use asyncio's API only, so they must run on any
implementation of its event loop. uvloop (tried for the controller: docs/scheduling.md,
"uvloop, tried and parked") has transports with asyncio's methods but not its classes:
``isinstance(transport, asyncio.Transport)`` is False there. A protocol that asserts
it fails in ``connection_made``; the loop only logs that, the connection stays open
and unread, and the host sees a tool that never answers (``no reply to IDN after N
attempts``) and a socket left open.

These tests choose each loop themselves, whatever loop the rest of the suite runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from scripted import ScriptedTool

from drivers.hostlink import FrameExtractor, encode_reply, parse_request
from drivers.serial_link import HostLinkPort
from sim.clock import ManualClock
from sim.plater import PlaterModel
from sim.plater_server import PlaterServer
from sim.printer import PastePrinterModel
from sim.serial_server import SerialToolServer

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    if request.param == "asyncio":
        return asyncio.new_event_loop
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop


def run_on(loop_factory: LoopFactory, main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(main, 10.0))


def test_a_simulated_hostlink_tool_answers_over_tcp(loop_factory: LoopFactory) -> None:
    async def main() -> list[str]:
        server = SerialToolServer(PastePrinterModel(seed=0), ManualClock(), name="printer-1")
        try:
            url = await server.start_tcp()
            async with HostLinkPort(url, tool="printer-1", timeout_s=0.5, retries=0) as port:
                return await port.request("IDN")
        finally:
            await server.stop()

    assert run_on(loop_factory, main())


def test_the_simulated_plater_answers_over_tcp(loop_factory: LoopFactory) -> None:
    async def main() -> bytes:
        async with PlaterServer(PlaterModel(seed=0), ManualClock(), name="plater-1") as server:
            host, port = await server.start_tcp()
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"*IDN?\n")
                line = await reader.readline()
                while line.startswith(b"!"):  # events pushed unasked
                    line = await reader.readline()
                return line
            finally:
                writer.close()
                await writer.wait_closed()

    assert run_on(loop_factory, main()).startswith(b"OK BARRIERTEK,EP-25,")


def test_a_scripted_tool_answers_over_tcp(loop_factory: LoopFactory) -> None:
    def answer(frame: bytes) -> bytes:
        request = parse_request(frame)
        return encode_reply(request.seq, request.cmd, ["SCRIPTED"])

    async def main() -> list[str]:
        tool = ScriptedTool(answer, FrameExtractor().feed)
        try:
            url = await tool.start_tcp()
            async with HostLinkPort(url, tool="t", timeout_s=0.5, retries=0, sync=False) as port:
                return await port.request("IDN")
        finally:
            await tool.stop()

    assert run_on(loop_factory, main()) == ["SCRIPTED"]

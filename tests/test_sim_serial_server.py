"""The serial tool server over real wires: a pty and a raw TCP socket, with fault injection."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from functools import reduce

import pytest
import serial

from sim.clock import ManualClock
from sim.faults import FaultPlan, parse_tool_faults
from sim.placer import BallPlacerModel
from sim.printer import PastePrinterModel
from sim.serial_server import SerialToolServer, corrupt_reply

IDN_REQUEST = b"$07,IDN*68\r\n"
IDN_REPLY = b"$07,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*4F\r\n"
WAIT_S = 5.0  # bound on every wait for a reply; never reached when things work


def frame(body: str) -> bytes:
    return f"${body}*{reduce(lambda a, b: a ^ b, body.encode(), 0):02X}\r\n".encode()


def checksum_ok(reply: bytes) -> bool:
    body, ck = reply[1:-2].rsplit(b"*", 1)
    return f"{reduce(lambda a, b: a ^ b, body, 0):02X}".encode() == ck


class OnlyReplies(FaultPlan):
    """A fault plan that hits exactly the listed replies (1-based), so no timing is involved."""

    def __init__(self, hit: set[int], **probabilities: float) -> None:
        super().__init__(**probabilities)
        self.hit, self.rolls = hit, 0

    def roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        self.rolls += 1
        return self.rolls in self.hit


class PtyHost:
    """A tiny raw host on a pty slave path: plain os.read/os.write on the event loop."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            self.buffer += os.read(self.fd, 4096)
        except BlockingIOError:
            return
        self.arrived.set()

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def reply(self) -> bytes:
        async with asyncio.timeout(WAIT_S):
            while (end := self.buffer.find(b"\n")) < 0:
                self.arrived.clear()
                await self.arrived.wait()
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    async def ask(self, data: bytes) -> bytes:
        self.send(data)
        return await self.reply()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


class TcpHost:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> TcpHost:
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def ask(self, data: bytes) -> bytes:
        self.writer.write(data)
        async with asyncio.timeout(WAIT_S):
            return await self.reader.readuntil(b"\n")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# --- pty ----------------------------------------------------------------------------------


async def test_pty_golden_exchange() -> None:
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="printer-1") as server:
        path = await server.start_pty()
        assert path.startswith("/dev/pts/") and server.urls == [path]
        host = PtyHost(path)
        try:
            assert await host.ask(IDN_REQUEST) == IDN_REPLY
            assert await host.ask(b"$30,STS*00\r\n") == b"$30,NAK,STS,01,CHECKSUM*1F\r\n"
        finally:
            host.close()


async def test_pty_bytes_in_pieces_and_noise() -> None:
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="printer-1") as server:
        host = PtyHost(await server.start_pty())
        try:
            host.send(b"\x00garbage")
            for b in IDN_REQUEST:
                host.send(bytes([b]))
            assert await host.reply() == IDN_REPLY
        finally:
            host.close()


async def test_pty_survives_the_host_closing_and_reopening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sim.printer-1")
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="printer-1") as server:
        path = await server.start_pty()
        for _ in range(3):
            host = PtyHost(path)
            try:
                assert await host.ask(IDN_REQUEST) == IDN_REPLY
            finally:
                host.close()
            for _ in range(5):  # loop turns with no host attached: an EIO storm would log here
                await asyncio.sleep(0)
    assert not caplog.records  # no read errors while no host was attached


async def test_tool_time_comes_from_the_clock() -> None:
    clock = ManualClock()
    printer = PastePrinterModel()
    async with SerialToolServer(printer, clock, name="printer-1") as server:
        host = PtyHost(await server.start_pty())
        try:
            await host.ask(frame("01,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
            await host.ask(frame("02,LOD,W1"))
            assert b",LOADING,W1," in await host.ask(frame("03,STS"))
            clock.advance(20)
            assert b",READY,W1," in await host.ask(frame("04,STS"))
        finally:
            host.close()


def _pyserial_exchange(url: str, requests: list[bytes]) -> list[bytes]:
    with serial.serial_for_url(url, baudrate=115200, timeout=WAIT_S) as port:
        replies = []
        for request in requests:
            port.write(request)
            replies.append(port.read_until(b"\n"))
        return replies


async def test_pyserial_host_on_the_pty() -> None:
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="printer-1") as server:
        path = await server.start_pty()
        replies = await asyncio.to_thread(_pyserial_exchange, path, [IDN_REQUEST, frame("08,ALR")])
        assert replies == [IDN_REPLY, frame("08,ACK,ALR,0,")]
        # and again after the port was closed: the pty is still served
        assert await asyncio.to_thread(_pyserial_exchange, path, [IDN_REQUEST]) == [IDN_REPLY]


# --- TCP ----------------------------------------------------------------------------------


async def test_tcp_golden_exchange_and_reconnect() -> None:
    async with SerialToolServer(BallPlacerModel(), ManualClock(), name="placer-1") as server:
        url = await server.start_tcp()
        assert url.startswith("socket://127.0.0.1:") and server.urls == [url]
        for _ in range(2):
            host = await TcpHost.connect(url)
            try:
                assert await host.ask(b"$20,IDN*6D\r\n") == (
                    b"$20,ACK,IDN,ACME-BALL,WBM-300,SN0077,1.9.0*4F\r\n"
                )
            finally:
                await host.close()


async def test_pyserial_host_over_socket_url() -> None:
    async with SerialToolServer(BallPlacerModel(), ManualClock(), name="placer-1") as server:
        url = await server.start_tcp()
        replies = await asyncio.to_thread(_pyserial_exchange, url, [b"$20,IDN*6D\r\n"])
        assert replies == [b"$20,ACK,IDN,ACME-BALL,WBM-300,SN0077,1.9.0*4F\r\n"]


async def test_stop_closes_open_connections() -> None:
    server = SerialToolServer(BallPlacerModel(), ManualClock(), name="placer-1")
    url = await server.start_tcp()
    await server.start_pty()
    host = await TcpHost.connect(url)
    await host.ask(frame("01,STS"))
    await server.stop()
    async with asyncio.timeout(WAIT_S):
        assert await host.reader.read() == b""  # the tool hung up
    await host.close()
    assert server.urls == []


async def test_retransmission_memory_is_the_tools_not_the_connections() -> None:
    printer = PastePrinterModel()
    async with SerialToolServer(printer, ManualClock(), name="printer-1") as server:
        url = await server.start_tcp()
        first = await TcpHost.connect(url)
        await first.ask(frame("01,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
        ack = await first.ask(frame("02,LOD,W1"))
        await first.close()
        second = await TcpHost.connect(url)  # the device server reconnected
        try:
            assert await second.ask(frame("02,LOD,W1")) == ack
        finally:
            await second.close()
        assert printer.wafers_loaded == 1


# --- faults on the wire -------------------------------------------------------------------


@pytest.mark.faults
async def test_dropped_reply_and_recovery_by_retransmission() -> None:
    printer = PastePrinterModel()
    plan = OnlyReplies({2}, drop=1.0)
    async with SerialToolServer(printer, ManualClock(), name="printer-1", faults=plan) as server:
        host = PtyHost(await server.start_pty())
        try:
            await host.ask(frame("01,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
            host.send(frame("02,LOD,W1"))  # executed, but the reply is lost
            # the host times out and retransmits: the next thing on the wire is the replayed
            # reply, so nothing was sent for the first copy
            assert await host.ask(frame("02,LOD,W1")) == frame("02,ACK,LOD")
            assert printer.wafers_loaded == 1
            assert server.replies_dropped == 1
            assert server.endpoint.retransmissions == 1
        finally:
            host.close()


@pytest.mark.faults
async def test_dropped_replies_never_arrive_late() -> None:
    plan = OnlyReplies({1, 2}, drop=1.0)
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="p", faults=plan) as srv:
        host = PtyHost(await srv.start_pty())
        try:
            host.send(frame("01,STS"))
            host.send(frame("02,ALR"))
            assert (await host.ask(frame("03,IDN")))[:3] == b"$03"
            assert srv.replies_dropped == 2
        finally:
            host.close()


@pytest.mark.faults
async def test_corrupted_reply_fails_its_checksum() -> None:
    plan = parse_tool_faults("corrupt=1.0")
    async with SerialToolServer(PastePrinterModel(), ManualClock(), name="p", faults=plan) as srv:
        host = PtyHost(await srv.start_pty())
        try:
            damaged = await host.ask(IDN_REQUEST)
        finally:
            host.close()
    assert len(damaged) == len(IDN_REPLY)
    assert sum(a != b for a, b in zip(damaged, IDN_REPLY, strict=True)) == 1
    assert not checksum_ok(damaged)
    assert srv.replies_corrupted == 1


def test_corruption_always_breaks_the_checksum() -> None:
    rng = random.Random(3)
    for _ in range(500):
        damaged = corrupt_reply(IDN_REPLY, rng)
        assert damaged != IDN_REPLY and damaged.endswith(b"\r\n")
        assert not checksum_ok(damaged)


@pytest.mark.faults
async def test_delayed_reply_does_not_hold_up_another_tool() -> None:
    slow_plan = parse_tool_faults("delay=1.0,delay_s=0.2")
    slow = SerialToolServer(PastePrinterModel(), ManualClock(), name="printer-1", faults=slow_plan)
    fast = SerialToolServer(BallPlacerModel(), ManualClock(), name="placer-1")
    async with slow, fast:
        slow_host = PtyHost(await slow.start_pty())
        fast_host = PtyHost(await fast.start_pty())
        try:
            slow_host.send(IDN_REQUEST)
            fast_host.send(b"$20,IDN*6D\r\n")
            order = []

            async def collect(name: str, host: PtyHost) -> None:
                await host.reply()
                order.append(name)

            await asyncio.gather(collect("slow", slow_host), collect("fast", fast_host))
            assert order == ["fast", "slow"]
            assert slow.replies_delayed == 1
        finally:
            slow_host.close()
            fast_host.close()


@pytest.mark.faults
async def test_stop_cancels_a_held_reply() -> None:
    plan = OnlyReplies({1}, delay=1.0, delay_s=30.0)
    server = SerialToolServer(PastePrinterModel(), ManualClock(), name="p", faults=plan)
    host = PtyHost(await server.start_pty())
    try:
        host.send(IDN_REQUEST)  # its reply is held back 30 s
        assert await host.ask(frame("08,ALR")) == frame("08,ACK,ALR,0,")
    finally:
        await server.stop()
        host.close()
    assert server.replies_delayed == 1 and server.replies_sent == 1


@pytest.mark.faults
async def test_scheduled_door_reaches_the_wire() -> None:
    clock = ManualClock()
    plan = parse_tool_faults("door=10-20")
    async with SerialToolServer(BallPlacerModel(), clock, name="placer-1", faults=plan) as srv:
        host = PtyHost(await srv.start_pty())
        try:
            clock.advance(15)
            assert (await host.ask(frame("01,STS"))).startswith(b"$01,ACK,STS,ALARM,,400,")
            assert (await host.ask(frame("02,CLR"))).startswith(b"$02,NAK,CLR,04,")
            clock.advance(5)
            assert await host.ask(frame("03,CLR")) == frame("03,ACK,CLR")
        finally:
            host.close()


# --- logging ------------------------------------------------------------------------------


async def test_requests_replies_and_state_changes_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sim.printer-1")
    clock = ManualClock()
    async with SerialToolServer(PastePrinterModel(), clock, name="printer-1") as server:
        host = PtyHost(await server.start_pty())
        try:
            await host.ask(frame("01,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20"))
            await host.ask(frame("02,LOD,W1"))
        finally:
            host.close()
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("rx $02,LOD,W1*" in m for m in debug)
    assert any("tx $02,ACK,LOD*" in m for m in debug)
    assert "printer-1 t=0.0s IDLE -> LOADING wafer 'W1'" in info
    assert all(r.name == "sim.printer-1" for r in caplog.records)


class _BuggyPrinter(PastePrinterModel):
    def handle(self, cmd: str, args: list[str], now: float) -> list[str]:
        if cmd == "BUG":
            raise RuntimeError("model bug")
        return super().handle(cmd, args, now)


async def test_a_model_bug_is_logged_and_the_wire_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="sim.printer-1")
    async with SerialToolServer(_BuggyPrinter(), ManualClock(), name="printer-1") as server:
        host = PtyHost(await server.start_pty())
        try:
            host.send(frame("01,BUG"))  # no reply: the host would time out
            assert await host.ask(IDN_REQUEST) == IDN_REPLY
        finally:
            host.close()
    assert any("printer-1 failed on $01,BUG*" in r.getMessage() for r in caplog.records)

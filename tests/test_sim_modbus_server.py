"""The simulated Modbus tools over real sockets and a real pty, with plain pymodbus clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from modbus_frames import rtu, tcp
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from sim.cleaner import CleanerModel
from sim.clock import ManualClock
from sim.faults import FaultPlan, parse_tool_faults
from sim.modbus_map import Table, text_to_registers
from sim.modbus_server import CleanerServer, OvenServer
from sim.oven import OvenModel

EUTECTIC = [1400, 1550, 1650, 1750, 1850, 2000, 2350, 2500, 1400, 600]


@contextlib.asynccontextmanager
async def tcp_client(host: str, port: int, wait_s: float = 2.0
                     ) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(host, port=port, timeout=wait_s, retries=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


@contextlib.asynccontextmanager
async def rtu_client(port: str, wait_s: float = 2.0) -> AsyncIterator[AsyncModbusSerialClient]:
    # parity N on the pty: this machine's kernel refuses PARENB on ptys (see docs/simulator.md);
    # over socket:// pyserial ignores line settings anyway.
    parity = "N" if port.startswith("/dev/") else "E"
    client = AsyncModbusSerialClient(port, framer=FramerType.RTU, baudrate=19200, bytesize=8,
                                     parity=parity, stopbits=1, timeout=wait_s, retries=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


@contextlib.asynccontextmanager
async def served_oven(faults: FaultPlan | None = None, model: OvenModel | None = None,
                      clock: ManualClock | None = None) -> AsyncIterator[tuple]:
    clock = clock or ManualClock()
    model = model or OvenModel(seed=1)
    server = OvenServer(model, clock, name="oven-t", faults=faults)
    try:
        host, port = await server.start_tcp()
        yield server, model, clock, host, port
    finally:
        await server.stop()


async def test_oven_round_trip_over_modbus_tcp() -> None:
    async with served_oven() as (_, model, clock, host, port), tcp_client(host, port) as c:
        staged = EUTECTIC + [600, 100, 1830, 42]
        assert not (await c.write_registers(0, staged, device_id=1)).isError()
        assert (await c.read_holding_registers(0, count=14, device_id=1)).registers == staged
        echo = await c.write_register(20, 1, device_id=1)  # APPLY
        assert echo.registers == [1]  # a single write is echoed...
        assert (await c.read_holding_registers(20, count=1, device_id=1)).registers == [0]  # ...
        ir = (await c.read_input_registers(10, count=5, device_id=1)).registers
        assert ir[0] == 1 and ir[4] == 42  # HEATING, active profile 42
        assert not (await c.write_coil(0, True, device_id=1)).isError()
        assert (await c.read_coils(0, count=2, device_id=1)).bits[:2] == [True, True]
        clock.advance(120)
        assert 20 <= (await c.read_input_registers(13, count=1, device_id=1)).registers[0] <= 30
        di = (await c.read_discrete_inputs(0, count=4, device_id=1)).bits[:4]
        assert di == [True, False, False, False]
        pv = (await c.read_input_registers(0, count=10, device_id=1)).registers
        assert all(abs(p / 10 - t) < 0.25 for p, t in zip(pv, model.zone_air(clock.now()),
                                                            strict=True))


async def test_exception_responses_over_the_wire() -> None:
    async with served_oven() as (*_, host, port), tcp_client(host, port) as c:
        r = await c.write_register(10, 100, device_id=1)  # conveyor below 200 mm/min
        assert r.isError() and r.exception_code == 3
        assert (await c.read_holding_registers(10, count=1, device_id=1)).registers == [600]
        r = await c.read_holding_registers(14, count=1, device_id=1)
        assert r.isError() and r.exception_code == 2
        r = await c.read_input_registers(340, count=20, device_id=1)  # past the curve
        assert r.isError() and r.exception_code == 2
        r = await c.read_discrete_inputs(2, count=3, device_id=1)  # DI 4 does not exist
        assert r.isError() and r.exception_code == 2
        r = await c.read_coils(0, count=3, device_id=1)
        assert r.isError() and r.exception_code == 2
        r = await c.write_register(20, 2, device_id=1)  # LOAD while OFF
        assert r.isError() and r.exception_code == 6
        r = await c.write_register(20, 9, device_id=1)
        assert r.isError() and r.exception_code == 3
        r = await c.write_coils(0, [True, True], device_id=1)  # FC 15 is not in the spec
        assert r.isError() and r.exception_code == 1
        r = await c.read_input_registers(0, count=1, device_id=9)  # no such unit behind here
        assert r.isError() and r.exception_code == 0x0B


@pytest.mark.parametrize("pdu", [
    bytes([0x08, 0x00, 0x00, 0x12, 0x34]),  # diagnostics, return query data
    bytes([0x0B]),  # get comm event counter
    bytes([0x11]),  # report server id
    bytes([0x2B, 0x0E, 0x01, 0x00]),  # read device identification
])
async def test_function_codes_the_spec_does_not_list_are_exception_01(pdu: bytes) -> None:
    """reflow-oven.md lists 01 02 03 04 05 06 16: every other function code is refused,
    also those pymodbus would answer by itself."""
    async with served_oven() as (*_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(bytes([0x00, 0x07, 0x00, 0x00, 0x00, len(pdu) + 1, 0x01]) + pdu)
            reply = await asyncio.wait_for(reader.readexactly(9), 2.0)
        finally:
            writer.close()
            await writer.wait_closed()
    # MBAP echoing transaction 7 and unit 1, then the exception: function | 0x80, code 01
    assert reply == bytes([0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x01, pdu[0] | 0x80, 0x01])


async def exchange(host: str, port: int, request: bytes, reply_len: int) -> bytes:
    """One request over a fresh connection, as a client other than pymodbus sends it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readexactly(reply_len), 2.0)
    finally:
        writer.close()
        await writer.wait_closed()


MALFORMED = [  # request PDU, the exception PDU Modbus answers it with
    ("04 0064 00FA", "84 03"),  # the whole curve in one read: reflow-oven.md says at most 125
    ("04 0064 007E", "84 03"),  # 126 registers
    ("03 0000 0000", "83 03"),  # quantity 0
    ("01 0000 0000", "81 03"),  # bits: quantity 0
    ("02 0000 07D1", "82 03"),  # 2001 bits
    ("41 0000 0001", "C1 01"),  # a function code nobody defines
]


@pytest.mark.parametrize("pdu, answer", MALFORMED)
async def test_oven_answers_a_bad_quantity_03_and_an_unknown_function_01(pdu: str, answer: str
                                                                           ) -> None:
    """Modbus: the exception reply is the request's function | 0x80; a quantity outside
    1-125 registers / 1-2000 bits is 03, a function the server lacks 01."""
    async with served_oven() as (*_, host, port):
        reply = await exchange(host, port, tcp(9, pdu), 9)
    assert reply == tcp(9, answer)


@pytest.mark.parametrize("pdu, answer", [
    *MALFORMED[1:3],
    ("01 0000 0000", "81 01"),  # the FC-1 has no coils: 01 before any quantity check
    ("41 0000 0001", "C1 01"),
    ("05 0000 1234", "85 01"),
])
async def test_cleaner_rtu_answers_a_bad_quantity_03_and_an_unknown_function_01(
        pdu: str, answer: str) -> None:
    async with CleanerServer(CleanerModel(), ManualClock(), name="cleaner-t") as server:
        url = await server.start_rtu_tcp()
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        reply = await exchange(host, int(port), rtu(pdu), 5)
    assert reply == rtu(answer)


async def test_bad_requests_leave_the_link_usable() -> None:
    """After an unknown function on RTU (its frame ends where its CRC checks) the next
    request on the same connection is answered; on TCP a bad quantity for another unit is
    0B, as any request for it."""
    async with CleanerServer(CleanerModel(), ManualClock(), name="cleaner-t") as server:
        url = await server.start_rtu_tcp()
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for request, answer in ((rtu("41 0000 0001"), rtu("C1 01")),
                                    (rtu("04 0000 0001"), rtu("04 02 0001"))):  # READY
                writer.write(request)
                assert await asyncio.wait_for(reader.readexactly(len(answer)), 2.0) == answer
        finally:
            writer.close()
            await writer.wait_closed()
    async with served_oven() as (*_, host, port):
        assert await exchange(host, port, tcp(5, "03 0000 0000", unit=9), 9) == tcp(
            5, "83 0B", unit=9)


@pytest.mark.parametrize("value", ["0001", "1234", "FFFF", "00FF"])
async def test_a_coil_value_other_than_on_or_off_is_03_and_writes_nothing(value: str) -> None:
    """Modbus FC 05 takes 0x0000 or 0xFF00 only; reflow-oven.md: 03 and nothing is written."""
    async with served_oven() as (*_, host, port):
        assert await exchange(host, port, tcp(1, f"05 0000 {value}"), 9) == tcp(1, "85 03")
        assert await exchange(host, port, tcp(2, "01 0000 0002"), 10) == tcp(2, "01 01 02")
        # a correct write is echoed byte for byte
        assert await exchange(host, port, tcp(3, "05 0000 FF00"), 12) == tcp(3, "05 0000 FF00")
        assert await exchange(host, port, tcp(4, "01 0000 0002"), 10) == tcp(4, "01 01 03")


async def test_two_servers_on_one_model_agree() -> None:
    clock, model = ManualClock(), OvenModel(seed=2)
    async with served_oven(model=model, clock=clock) as (*_, h1, p1), \
            served_oven(model=model, clock=clock) as (*_, h2, p2), \
            tcp_client(h1, p1) as a, tcp_client(h2, p2) as b:
        await a.write_registers(0, EUTECTIC + [600, 100, 1830, 9], device_id=1)
        assert (await b.read_holding_registers(0, count=14, device_id=1)).registers[13] == 9
        await b.write_register(20, 1, device_id=1)
        await a.write_coil(0, True, device_id=1)
        assert (await b.read_coils(0, count=1, device_id=1)).bits[0] is True
        clock.advance(600)
        ra = (await a.read_input_registers(0, count=15, device_id=1)).registers
        rb = (await b.read_input_registers(0, count=15, device_id=1)).registers
        assert ra == rb and ra[10] == 2  # READY, seen the same from both


async def test_cleaner_rtu_over_tcp_and_on_a_pty_share_the_model() -> None:
    clock, model = ManualClock(), CleanerModel(seed=3)
    server = CleanerServer(model, clock, name="cleaner-t")
    try:
        url = await server.start_rtu_tcp()
        path = await server.start_rtu_pty()
        assert url.startswith("socket://127.0.0.1:") and path.startswith("/dev/")
        async with rtu_client(url) as net, rtu_client(path) as tty:
            await net.write_registers(10, text_to_registers("W-PTY", 8), device_id=2)
            await tty.write_register(5, 1, device_id=2)  # LOAD
            assert (await net.read_input_registers(0, count=1, device_id=2)).registers == [2]
            await net.write_register(5, 2, device_id=2)  # START
            clock.advance(240)
            regs = (await tty.read_input_registers(0, count=7, device_id=2)).registers
            assert regs[0] == 6 and regs[6] == 1  # DONE, OK
            count = (await tty.read_input_registers(20, count=2, device_id=2)).registers
            assert count == [0, 1]  # CYCLE_COUNT, high word first
            r = await tty.read_coils(0, count=1, device_id=2)
            assert r.isError() and r.exception_code == 1
            r = await net.write_register(0, 900, device_id=2)
            assert r.isError() and r.exception_code == 3
            bits = (await tty.read_discrete_inputs(0, count=4, device_id=2)).bits[:4]
            assert bits == [True, False, False, False]
    finally:
        await server.stop()


async def test_rtu_bus_stays_silent_for_another_unit() -> None:
    async with CleanerServer(CleanerModel(), ManualClock(), name="cleaner-t", unit_id=5) as server:
        url = await server.start_rtu_tcp()
        async with rtu_client(url, wait_s=0.3) as c:
            assert (await c.read_input_registers(0, count=1, device_id=5)).registers == [1]
            with pytest.raises(ModbusException):
                await c.read_input_registers(0, count=1, device_id=2)


@pytest.mark.faults
async def test_busy_fault_answers_06_without_touching_the_model() -> None:
    model = OvenModel(seed=1)
    async with served_oven(faults=parse_tool_faults("busy=1"), model=model) as (*_, host, port), \
            tcp_client(host, port) as c:
        r = await c.write_register(13, 5, device_id=1)
        assert r.isError() and r.exception_code == 6
    assert model.read(Table.HOLDING, 13, 1, 0.0) == [0]  # the write never reached the tool


@pytest.mark.faults
async def test_dropped_and_corrupted_answers_never_reach_the_client() -> None:
    for spec in ("drop=1", "corrupt=1"):
        server = CleanerServer(CleanerModel(), ManualClock(), name="cleaner-t",
                               faults=parse_tool_faults(spec))
        try:
            url = await server.start_rtu_tcp()
            async with rtu_client(url, wait_s=0.3) as c:
                with pytest.raises(ModbusException):
                    await c.read_input_registers(0, count=1, device_id=2)
        finally:
            await server.stop()


@pytest.mark.faults
async def test_delayed_answer_arrives_and_stop_releases_a_held_one() -> None:
    plan = parse_tool_faults("delay=1,delay_s=0.2")
    async with served_oven(faults=plan) as (*_, host, port), tcp_client(host, port) as c:
        assert (await c.read_holding_registers(10, count=1, device_id=1)).registers == [600]

    plan = parse_tool_faults("delay=1,delay_s=60")
    async with served_oven(faults=plan) as (server, *_, host, port), \
            tcp_client(host, port, wait_s=30) as c:
        pending = asyncio.create_task(c.read_holding_registers(10, count=1, device_id=1))
        for _ in range(500):  # bounded poll until the server holds the answer
            if server.held_answers:
                break
            await asyncio.sleep(0.01)
        assert server.held_answers == 1
        await server.stop()
        assert server.held_answers == 0
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ModbusException):
            await pending


@pytest.mark.faults
async def test_a_delayed_answer_is_late_but_what_the_request_did_is_done_at_once() -> None:
    """``delay`` holds the answer, not the request (as the serial server's does): while the
    answer to a write is held, the tool already holds the value, so a probe the client
    sends after its timeout sees it. Held before the tool acted, a probe overtook the
    write, found it not done, and the driver sent the oven's LOAD again: two LOADs of one
    wafer (the random fault soak, seed 7 plan 5, oven-1 delay=0.048,delay_s=0.15)."""
    model = OvenModel(seed=1)
    plan = parse_tool_faults("delay=1,delay_s=60")
    async with served_oven(faults=plan, model=model) as (server, *_, host, port), \
            tcp_client(host, port, wait_s=30) as c:
        pending = asyncio.create_task(c.write_register(13, 5, device_id=1))
        for _ in range(500):  # bounded poll until the server holds the answer
            if server.held_answers:
                break
            await asyncio.sleep(0.01)
        assert server.held_answers == 1
        assert model.read(Table.HOLDING, 13, 1, 0.0) == [5]  # done while its answer waits
        await server.stop()
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ModbusException):
            await pending


@pytest.mark.faults
async def test_scheduled_alarm_from_the_fault_plan_is_logged(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    caplog.set_level(logging.INFO, logger="sim.oven-t")
    plan = parse_tool_faults("alarm=550@100")
    async with served_oven(faults=plan) as (_, _, clock, host, port), tcp_client(host, port) as c:
        clock.advance(99)
        assert (await c.read_input_registers(12, count=1, device_id=1)).registers == [0]
        clock.advance(1)
        assert (await c.read_input_registers(12, count=1, device_id=1)).registers == [550]
        await c.write_register(20, 4, device_id=1)  # CLEAR: momentary fault, cause gone
        assert (await c.read_input_registers(12, count=1, device_id=1)).registers == [0]
    messages = [r.getMessage() for r in caplog.records if r.name == "sim.oven-t"]
    assert any("alarm 550 N2 FLOW LOW" in m for m in messages)
    assert any("CLEAR" in m for m in messages)


async def test_a_port_in_use_is_a_clear_error() -> None:
    async with served_oven() as (_, model, clock, host, port):
        other = OvenServer(model, clock, name="oven-2")
        with pytest.raises(OSError, match=f"oven-2: cannot listen on {host}:{port}"):
            await other.start_tcp(host, port)
        await other.stop()


def test_bad_server_configuration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="oven-x: door= faults apply to the cleaner"):
        OvenServer(OvenModel(), ManualClock(), name="oven-x", faults=parse_tool_faults("door=5"))
    with pytest.raises(ValueError, match="unit id must be 1-247"):
        CleanerServer(CleanerModel(), ManualClock(), name="c", unit_id=0)

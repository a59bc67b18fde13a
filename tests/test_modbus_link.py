"""ModbusLink against real sockets: exact request bytes, timeouts and bounded retries,
late/mismatched replies, exception mapping, chunked reads, reconnection, RTU over TCP.

Two kinds of server stand on the other side: a byte-level tool
(``ScriptedTool`` of tests/scripted.py with Modbus TCP framing), which lets a
test decide reply by reply what the wire carries (silence, a wrong reply, an
exception), and a plain pymodbus server for
ordinary traffic. The simulated oven and cleaner are exercised through the
drivers in test_oven_driver.py and test_cleaner_driver.py.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from scripted import ModbusTcpFraming, ScriptedTool, modbus_answer

from drivers.errors import DeviceBusy, IllegalAddress, IllegalValue, LinkError
from drivers.modbus_link import ModbusLink, after_lost_reply

# --- a byte-level Modbus TCP tool whose every reply the test scripts --------------------------

# (request number, request PDU) -> reply PDU, or None for silence
Reply = Callable[[int, bytes], bytes | None]


def registers_reply(fc: int, words: list[int]) -> bytes:
    return bytes([fc, 2 * len(words)]) + b"".join(struct.pack(">H", w) for w in words)


def echo(pdu: bytes) -> bytes:
    """The normal reply to FC 05/06/16: the first five bytes of the request."""
    return pdu[:5]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Reply], Awaitable[tuple[ScriptedTool, int]]]]:
    tools: list[ScriptedTool] = []

    async def start(reply: Reply) -> tuple[ScriptedTool, int]:
        tool = ScriptedTool(modbus_answer(reply), ModbusTcpFraming())
        tools.append(tool)
        await tool.start_tcp()
        return tool, tool.port

    yield start
    for tool in tools:
        await tool.stop()


@pytest.fixture
async def links() -> AsyncIterator[list[ModbusLink]]:
    """Links a test opens; closed afterwards even when the test fails."""
    opened: list[ModbusLink] = []
    yield opened
    for link in opened:
        await link.close()


async def tcp_link(port: int, links: list[ModbusLink], **kw: object) -> ModbusLink:
    options = {"tool": "oven-1", "unit": 1, "timeout_s": 0.2, "retries": 2} | kw
    link = ModbusLink.tcp("127.0.0.1", port, **options)  # type: ignore[arg-type]
    links.append(link)
    await link.open()
    return link


# --- exact bytes and decoding -----------------------------------------------------------------


async def test_read_input_request_bytes_and_reply(scripted, links) -> None:
    words = [2251, 2302, 0x7FFF, 0, 1, 2, 3, 4, 5, 65535]
    tool, port = await scripted(lambda n, pdu: registers_reply(4, words))
    link = await tcp_link(port, links)
    assert await link.read_input(0, 10, what="ZONE_PV") == words
    # MBAP: transaction id, protocol 0, length 6, unit 1; PDU: FC 04, address 0, count 10.
    assert tool.requests[0][2:] == bytes.fromhex("0000 0006 01 04 0000 000A")


async def test_write_request_bytes(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: echo(pdu))
    link = await tcp_link(port, links)
    await link.write_register(20, 1, what="COMMAND")
    await link.write_registers(10, [600, 100], what="CONVEYOR_SPEED..O2_LIMIT")
    await link.write_coil(0, True, what="N2_ON")
    pdus = [r[7:] for r in tool.requests]
    assert pdus == [
        bytes.fromhex("06 0014 0001"),
        bytes.fromhex("10 000A 0002 04 0258 0064"),
        bytes.fromhex("05 0000 FF00"),
    ]


# --- silence, lost and mismatched replies -----------------------------------------------------


async def test_silent_tool_gives_link_error_after_bounded_attempts(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: None)
    link = await tcp_link(port, links, retries=2)
    with pytest.raises(LinkError) as info:
        await link.read_input(0, 10, what="ZONE_PV")
    message = str(info.value)
    assert message.startswith("oven-1: ZONE_PV: no reply within 0.2 s")
    assert "3 attempts" in message
    assert len(tool.requests) == 3
    assert len({r[7:] for r in tool.requests}) == 1  # the same request each time


async def test_a_tcp_tool_silent_five_times_running_is_reconnected(scripted, links) -> None:
    # The link runs pymodbus's execute itself (one loop turn less per request) and keeps
    # its rule: after retries + 3 unanswered requests in a row (3 here) the next silence
    # drops the connection, and the next attempt opens a new one.
    tool, port = await scripted(lambda n, pdu: None if n <= 5 else registers_reply(4, [7]))
    link = await tcp_link(port, links, timeout_s=0.05, retries=5)
    assert await link.read_input(0, 1, what="ZONE_PV") == [7]
    assert len(tool.requests) == 6
    assert len(tool._transports) == 2  # the sixth attempt came on a new connection


async def test_a_lost_reply_is_asked_again(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: None if n == 1 else registers_reply(3, [7]))
    link = await tcp_link(port, links)
    assert await link.read_holding(13, 1, what="PROFILE_ID") == [7]
    assert len(tool.requests) == 2


async def test_a_reply_that_does_not_match_is_dropped(scripted, links) -> None:
    # First answer carries 9 registers for a 10-register request (a stale reply).
    def reply(n: int, pdu: bytes) -> bytes:
        return registers_reply(4, list(range(9 if n == 1 else 10)))

    tool, port = await scripted(reply)
    link = await tcp_link(port, links)
    assert await link.read_input(0, 10, what="ZONE_PV") == list(range(10))
    assert len(tool.requests) == 2


# --- exception responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error", "meaning"),
    [(2, IllegalAddress, "ILLEGAL DATA ADDRESS"), (3, IllegalValue, "ILLEGAL DATA VALUE")],
)
async def test_exceptions_name_tool_and_register(scripted, links, code, error, meaning) -> None:
    tool, port = await scripted(lambda n, pdu: bytes([pdu[0] | 0x80, code]))
    link = await tcp_link(port, links)
    with pytest.raises(error) as info:
        await link.write_register(11, 5, what="O2_LIMIT")
    assert info.value.tool == "oven-1" and info.value.register == "O2_LIMIT"
    assert str(info.value) == f"oven-1: O2_LIMIT: Modbus exception {code:02d} {meaning}"
    assert len(tool.requests) == 1  # a refusal is an answer: not repeated


async def test_busy_is_asked_again_then_surfaces(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: bytes([0x86, 6]))
    link = await tcp_link(port, links, retries=2)
    with pytest.raises(DeviceBusy) as info:
        await link.write_register(20, 2, what="COMMAND=LOAD")
    assert info.value.register == "COMMAND=LOAD" and info.value.code == 6
    assert not after_lost_reply(info.value)
    assert len(tool.requests) == 3


async def test_busy_once_then_done(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: bytes([0x86, 6]) if n == 1 else echo(pdu))
    link = await tcp_link(port, links)
    await link.write_register(20, 1, what="COMMAND=APPLY")
    assert len(tool.requests) == 2


def probe(answer: bool | Exception, asked: list[int]) -> Callable[[], Awaitable[bool]]:
    """A driver's "did it happen?" for a command: records each time it is asked."""

    async def done() -> bool:
        asked.append(1)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return done


async def test_a_refusal_after_a_lost_reply_asks_the_tool_first(scripted, links) -> None:
    # The first LOAD's reply was lost; the tool refuses the repeat, and says it did not run.
    tool, port = await scripted(lambda n, pdu: None if n == 1 else bytes([0x86, 6]))
    link = await tcp_link(port, links, retries=1)
    asked: list[int] = []
    with pytest.raises(DeviceBusy) as info:
        await link.write_register(20, 2, what="COMMAND=LOAD", done=probe(False, asked))
    assert after_lost_reply(info.value)
    assert len(asked) == 2  # before the resend, and before calling the refusal a failure
    assert len(tool.requests) == 2


async def test_a_refusal_of_a_command_the_lost_copy_carried_out_is_success(
    scripted, links
) -> None:
    tool, port = await scripted(lambda n, pdu: None if n == 1 else bytes([0x86, 6]))
    link = await tcp_link(port, links, retries=3)
    answers = iter([False, True])  # not yet when asked first; done when refused

    async def done() -> bool:
        return next(answers)

    await link.write_register(20, 2, what="COMMAND=LOAD", done=done)
    assert len(tool.requests) == 2


async def test_a_command_the_tool_says_ran_is_not_sent_again(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: None if n == 1 else echo(pdu))
    link = await tcp_link(port, links, retries=3)
    asked: list[int] = []
    await link.write_register(20, 2, what="COMMAND=LOAD", done=probe(True, asked))
    assert len(tool.requests) == 1 and len(asked) == 1


async def test_a_command_the_tool_says_did_not_run_is_sent_again(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: None if n == 1 else echo(pdu))
    link = await tcp_link(port, links, retries=3)
    asked: list[int] = []
    await link.write_register(20, 2, what="COMMAND=LOAD", done=probe(False, asked))
    assert len(tool.requests) == 2 and len(asked) == 1


async def test_silence_is_judged_on_the_tools_word_before_giving_up(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: None)
    link = await tcp_link(port, links, retries=2)
    asked: list[int] = []
    with pytest.raises(LinkError, match="3 attempts, and the tool says it was not done") as info:
        await link.write_register(20, 2, what="COMMAND=LOAD", done=probe(False, asked))
    assert after_lost_reply(info.value)
    assert len(asked) == 3 and len(tool.requests) == 3
    # ... and a tool that cannot be asked is not guessed about
    err = LinkError("oven-1", "STATE: no reply")
    with pytest.raises(LinkError, match="reply lost, and the tool could not be asked .*STATE"):
        await link.write_register(20, 2, what="COMMAND=LOAD", done=probe(err, []))


async def test_a_setpoint_write_whose_reply_was_lost_is_read_back_not_resent(
    scripted, links
) -> None:
    def tool_side(n: int, pdu: bytes) -> bytes | None:
        if n == 1:
            return None  # written; the reply is lost
        return registers_reply(3, [100])  # the read-back: the value is there

    tool, port = await scripted(tool_side)
    link = await tcp_link(port, links, retries=3)
    await link.write_register(11, 100, what="O2_LIMIT")
    assert [r[7] for r in tool.requests] == [6, 3]  # FC 06, then FC 03 - no second write


# --- garbled replies (issue 10 item 8) -----------------------------------------------------------


@pytest.mark.parametrize(
    "garbled",
    [
        bytes([4, 40, 0x08, 0xCB]),  # byte count beyond the frame: pymodbus cannot decode it
        bytes([0xFB, 0x14]),  # the function code damaged: an "exception" to another function
    ],
)
async def test_a_garbled_reply_is_asked_again_without_a_traceback(
    scripted, links, garbled: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    tool, port = await scripted(
        lambda n, pdu: garbled if n == 1 else registers_reply(4, [2251, 2302])
    )
    link = await tcp_link(port, links)
    assert await link.read_input(0, 2, what="ZONE_PV") == [2251, 2302]
    assert link.garbled_replies == 1
    assert len(tool.requests) == 2
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


# --- trace ------------------------------------------------------------------------------------


async def test_trace_lines(scripted, links) -> None:
    lines: list[tuple[str, str]] = []
    tool, port = await scripted(lambda n, pdu: registers_reply(4, [2251, 2302]))
    link = await tcp_link(port, links, trace=lambda d, text: lines.append((d, text)))
    await link.read_input(0, 2, what="ZONE_PV")
    assert lines == [(">", "read_input 0..1 unit 1 (ZONE_PV)"), ("<", "[2251, 2302]")]


# --- a plain pymodbus server: chunking, bits, reconnection, RTU over TCP ----------------------


def plain_device(unit: int) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=[True, False, True, True], datatype=DataType.BITS)],
            [SimData(0, values=[False, True, False, True], datatype=DataType.BITS)],
            [SimData(0, values=list(range(100, 120)), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(range(300)), datatype=DataType.REGISTERS)],
        ),
    )


async def start_plain(port: int = 0, framer: FramerType = FramerType.SOCKET, unit: int = 1):
    server = ModbusTcpServer(plain_device(unit), address=("127.0.0.1", port), framer=framer)
    await server.serve_forever(background=True)
    return server, server.transport.sockets[0].getsockname()[1]


@pytest.fixture
async def plain() -> AsyncIterator[Callable]:
    servers: list[ModbusTcpServer] = []

    async def start(port: int = 0, framer: FramerType = FramerType.SOCKET, unit: int = 1):
        server, bound = await start_plain(port, framer, unit)
        servers.append(server)
        return server, bound

    yield start
    for server in servers:
        await server.shutdown()


async def test_long_reads_are_split_into_chunks_of_125(plain, links) -> None:
    _, port = await plain()
    lines: list[tuple[str, str]] = []
    link = await tcp_link(port, links, trace=lambda d, text: lines.append((d, text)))
    assert await link.read_input(0, 300, what="EXIT_CURVE") == list(range(300))
    requests = [text for d, text in lines if d == ">"]
    assert requests == [
        "read_input 0..124 unit 1 (EXIT_CURVE)",
        "read_input 125..249 unit 1 (EXIT_CURVE)",
        "read_input 250..299 unit 1 (EXIT_CURVE)",
    ]
    lines.clear()
    assert await link.read_input(100, 125, what="EXIT_CURVE") == list(range(100, 225))
    assert len([d for d, _ in lines if d == ">"]) == 1


async def test_bits_and_holding_round_trip(plain, links) -> None:
    _, port = await plain()
    link = await tcp_link(port, links)
    assert await link.read_coils(0, 4, what="coils") == [True, False, True, True]
    assert await link.read_discrete(0, 4, what="inputs") == [False, True, False, True]
    await link.write_coil(1, True, what="CONVEYOR_RUN")
    assert await link.read_coils(0, 2, what="coils") == [True, True]
    await link.write_registers(0, [1, 2, 3], what="ZONE_SP")
    await link.write_register(5, 65535, what="X")
    assert await link.read_holding(0, 6, what="H") == [1, 2, 3, 103, 104, 65535]
    assert await link.read("discrete", 1, 1, what="WAFER_AT_EXIT") == [1]


async def test_reads_outside_the_server_map_are_illegal_address(plain, links) -> None:
    _, port = await plain()
    link = await tcp_link(port, links)
    with pytest.raises(IllegalAddress, match="oven-1: BEYOND: Modbus exception 02"):
        await link.read_input(290, 20, what="BEYOND")


async def test_reconnects_after_the_tool_restarts(plain, links) -> None:
    server, port = await plain()
    link = await tcp_link(port, links, timeout_s=0.2, retries=1)
    assert await link.read_input(0, 2, what="ZONE_PV") == [0, 1]
    await server.shutdown()
    with pytest.raises(LinkError, match=f"ZONE_PV: cannot connect to 127.0.0.1:{port}"):
        await link.read_input(0, 2, what="ZONE_PV")
    await plain(port)  # the tool is back on the same port
    assert await link.read_input(2, 2, what="ZONE_PV") == [2, 3]


async def test_rtu_frames_over_tcp_socket_url(plain, links) -> None:
    _, port = await plain(framer=FramerType.RTU, unit=2)
    link = ModbusLink.rtu(f"socket://127.0.0.1:{port}", tool="cleaner-1", unit=2, timeout_s=0.3)
    links.append(link)
    await link.open()
    assert await link.read_holding(0, 5, what="recipe") == [100, 101, 102, 103, 104]
    await link.write_registers(0, [650, 120], what="WASH_TEMP_SP..WASH_TIME")
    assert await link.read_holding(0, 2, what="recipe") == [650, 120]


async def test_rtu_request_bytes_carry_the_crc(scripted, links) -> None:
    # A serial device server passes raw RTU frames; capture one with a bare socket.
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.readexactly(8))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = ModbusLink.rtu(f"socket://127.0.0.1:{port}", tool="cleaner-1", unit=1,
                          timeout_s=0.1, retries=0)
    links.append(link)
    await link.open()
    with pytest.raises(LinkError):
        await link.read_holding(0, 10, what="H")
    # The textbook frame: unit 1, FC 03, address 0, count 10, CRC C5CD (low byte first).
    assert await asyncio.wait_for(received, 1.0) == bytes.fromhex("01 03 0000 000A C5 CD")
    server.close()
    await server.wait_closed()


# --- bad use ----------------------------------------------------------------------------------


async def test_open_fails_clearly_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = ModbusLink.tcp("127.0.0.1", port, tool="oven-1", unit=1, timeout_s=0.2)
    with pytest.raises(LinkError, match=f"oven-1: cannot connect to 127.0.0.1:{port}"):
        await link.open()
    assert not link.is_open


async def test_closed_link_refuses_requests(scripted) -> None:
    tool, port = await scripted(lambda n, pdu: registers_reply(4, [1]))
    link = ModbusLink.tcp("127.0.0.1", port, tool="oven-1", unit=1)
    async with link:
        assert await link.read_input(0, 1, what="X") == [1]
    with pytest.raises(LinkError, match="oven-1: X: link to .* is closed"):
        await link.read_input(0, 1, what="X")


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="cleaner-1: bad serial device server URL"):
        ModbusLink.rtu("socket://host-without-port", tool="cleaner-1", unit=2)
    with pytest.raises(ValueError, match="parity must be N, E or O"):
        ModbusLink.rtu("/dev/ttyUSB0", tool="cleaner-1", unit=2, parity="X")
    with pytest.raises(ValueError, match="unit id must be 0-247"):
        ModbusLink.tcp("h", 502, tool="oven-1", unit=300)


async def test_bad_values_are_refused_before_sending(scripted, links) -> None:
    tool, port = await scripted(lambda n, pdu: echo(pdu))
    link = await tcp_link(port, links)
    with pytest.raises(ValueError, match="oven-1: PROFILE_ID: 70000 is not a 16-bit register word"):
        await link.write_register(13, 70000, what="PROFILE_ID")
    with pytest.raises(ValueError, match="bad register span"):
        await link.read_input(65535, 2, what="X")
    assert tool.requests == []


async def test_a_connect_waits_longer_than_a_reply_on_a_fast_simulated_line() -> None:
    """pymodbus has one timeout for both; a simulated line's reply timeout shrinks to 0.1 s
    with its scale, and a connect to the simulator on a loaded 2-core machine took longer
    (the line failed to open: "cannot connect"). Replies keep the link's own timeout
    (``_execute`` arms its timer from ``timeout_s``; the reply-timeout tests above)."""
    links = [(ModbusLink.tcp("127.0.0.1", 1, tool="oven-1", unit=1, timeout_s=0.1), 1.0),
             (ModbusLink.rtu("socket://127.0.0.1:1", tool="cleaner-1", unit=2,
                             timeout_s=0.1), 1.0),
             (ModbusLink.tcp("127.0.0.1", 1, tool="oven-1", unit=1, timeout_s=3.0), 3.0)]
    for link, connect_s in links:
        assert link._make_client().comm_params.timeout_connect == connect_s

"""HostLinkPort link rules, against a scripted tool end on a real pty or TCP socket."""

from __future__ import annotations

import asyncio

import pytest
import serial
from serial_fixtures import scripted_tool

from drivers.errors import (
    AlarmActive,
    BadParameter,
    InterlockActive,
    LinkError,
    NakError,
    UnknownCommand,
    WrongState,
)
from drivers.hostlink import FrameError, encode_reply, parse_request
from drivers.serial_link import HostLinkPort

FAST = 0.1  # s: the scripted tool answers synchronously, so a short timeout is plenty


def ack(frame: bytes, *fields: str) -> bytes:
    req = parse_request(frame)
    return encode_reply(req.seq, req.cmd, fields)


def nak(frame: bytes, code: int, text: str) -> bytes:
    req = parse_request(frame)
    return encode_reply(req.seq, req.cmd, [f"{code:02d}", text], ack=False)


def idn(frame: bytes) -> bytes:
    return ack(frame, "ACME-PRINT", "WP-300", "SN1042", "2.4.1")


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []

    def __call__(self, direction: str, frame: bytes) -> None:
        self.frames.append((direction, frame))

    def sent(self) -> list[bytes]:
        return [f for d, f in self.frames if d == ">"]

    def received(self) -> list[bytes]:
        return [f for d, f in self.frames if d == "<"]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_request_returns_ack_fields_and_traces_both_ways(transport: str) -> None:
    trace = Recorder()
    async with scripted_tool(idn, transport) as (tool, url):
        async with HostLinkPort(
            url, tool="printer-1", timeout_s=FAST, trace=trace, sync=False,
        ) as port:
            assert await port.request("IDN") == ["ACME-PRINT", "WP-300", "SN1042", "2.4.1"]
    assert trace.frames == [
        (">", b"$00,IDN*6F\r\n"),
        ("<", b"$00,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*48\r\n"),
    ]
    assert tool.requests == [b"$00,IDN*6F\r\n"]
    assert port.retransmissions == 0 and not port.is_open


async def test_sequence_numbers_count_up_and_wrap_99_to_00() -> None:
    async with scripted_tool(ack) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            for _ in range(102):
                assert await port.request("STS") == []
    seqs = [parse_request(f).seq for f in tool.requests]
    assert seqs == [*range(100), 0, 1]


async def test_lost_reply_is_recovered_by_retransmitting_the_identical_frame() -> None:
    answered: set[bytes] = set()

    def drop_first(frame: bytes) -> bytes | None:
        if frame not in answered:
            answered.add(frame)
            return None  # the reply is lost on the way
        return ack(frame, "IDLE")

    trace = Recorder()
    async with scripted_tool(drop_first) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST, trace=trace) as port:
            assert await port.request("STS") == ["IDLE"]
            assert await port.request("STS") == ["IDLE"]
    assert trace.sent() == [b"$00,STS*78\r\n"] * 2 + [b"$01,STS*79\r\n"] * 2
    assert tool.requests == trace.sent()
    assert port.retransmissions == 2


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_silent_tool_gives_link_error_after_bounded_retries(transport: str) -> None:
    async with scripted_tool(lambda frame: None, transport) as (tool, url):
        async with HostLinkPort(
            url, tool="printer-1", timeout_s=FAST, retries=2, sync=False,
        ) as port:
            with pytest.raises(LinkError) as info:
                await port.request("PRT")
    assert str(info.value) == "printer-1: no reply to PRT after 3 attempts (timeout 0.1 s)"
    assert info.value.tool == "printer-1"
    assert tool.requests == [b"$00,PRT*7A\r\n"] * 3
    assert port.retransmissions == 2


async def test_stale_replies_are_discarded() -> None:
    def with_stale(frame: bytes) -> list[bytes]:
        req = parse_request(frame)
        return [
            encode_reply((req.seq - 1) % 100, req.cmd, ["OLD"]),  # late answer to an earlier SEQ
            encode_reply(req.seq, "RES", ["OTHER"]),  # right SEQ, another command
            ack(frame, "FRESH"),
        ]

    async with scripted_tool(with_stale) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            assert await port.request("STS") == ["FRESH"]
    assert port.stale_replies == 2
    assert port.retransmissions == 0
    assert len(tool.requests) == 1


async def test_unsolicited_frames_between_requests_are_dropped() -> None:
    async with scripted_tool(lambda f: ack(f, "NOW")) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            assert await port.request("STS") == ["NOW"]
            # a duplicate of the answer arrives late, after the exchange ended
            tool.send(encode_reply(0, "STS", ["THEN"]))
            assert await port.request("STS") == ["NOW"]
    assert port.stale_replies == 1


async def test_garbage_around_replies_is_ignored() -> None:
    async with scripted_tool(lambda f: [b"\x00\xff noise\r\n", ack(f, "OK"), b"tail"]) as (_, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            assert await port.request("STS") == ["OK"]
            assert await port.request("STS") == ["OK"]
    assert port.retransmissions == 0 and port.garbled_replies == 0


async def test_corrupted_reply_is_recovered() -> None:
    count = 0

    def corrupt_first(frame: bytes) -> bytes:
        nonlocal count
        count += 1
        reply = ack(frame, "IDLE")
        if count == 1:
            reply = reply.replace(b"IDLE", b"IDLF")  # one damaged byte: checksum no longer fits
        return reply

    trace = Recorder()
    async with scripted_tool(corrupt_first) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST, trace=trace) as port:
            assert await port.request("STS") == ["IDLE"]
    assert port.garbled_replies == 1 and port.retransmissions == 1
    assert tool.requests == [b"$00,STS*78\r\n"] * 2
    assert trace.received()[0].startswith(b"$00,ACK,STS,IDLF")


async def test_always_garbled_replies_end_in_link_error_naming_what_was_seen() -> None:
    async with scripted_tool(lambda f: ack(f, "X")[:-5] + b"*00\r\n") as (_, url):
        async with HostLinkPort(
            url, tool="placer-1", timeout_s=FAST, retries=1, sync=False,
        ) as port:
            with pytest.raises(LinkError, match=r"placer-1: no valid reply to STS after 2 attempts"
                               r" \(timeout 0.1 s; 2 garbled\)"):
                await port.request("STS")


async def test_nak_01_checksum_makes_the_host_retransmit() -> None:
    seen: list[bytes] = []

    def checksum_nak_first(frame: bytes) -> bytes:
        seen.append(frame)
        return nak(frame, 1, "CHECKSUM") if len(seen) == 1 else ack(frame)

    async with scripted_tool(checksum_nak_first) as (_, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            assert await port.request("PRT") == []
    assert seen == [b"$00,PRT*7A\r\n"] * 2
    assert port.retransmissions == 1


@pytest.mark.parametrize(
    ("code", "text", "cls"),
    [
        (2, "UNKNOWN COMMAND", UnknownCommand),
        (3, "BAD PARAMETER", BadParameter),
        (4, "WRONG STATE", WrongState),
        (5, "ALARM ACTIVE", AlarmActive),
        (6, "INTERLOCK", InterlockActive),
        (7, "SOMETHING NEW", NakError),
    ],
)
async def test_naks_raise_their_error_class_without_retransmitting(
    code: int, text: str, cls: type[NakError]
) -> None:
    async with scripted_tool(lambda f: nak(f, code, text)) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=FAST) as port:
            with pytest.raises(cls) as info:
                await port.request("PRT")
    assert type(info.value) is cls
    assert (info.value.code, info.value.text, info.value.command) == (code, text, "PRT")
    assert str(info.value) == f"printer-1: PRT refused: NAK {code:02d} {text}"
    assert len(tool.requests) == 1 and port.retransmissions == 0


async def test_one_request_in_flight_at_a_time() -> None:
    trace = Recorder()
    async with scripted_tool(lambda f: ack(f, parse_request(f).cmd)) as (_, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST, trace=trace) as port:
            results = await asyncio.gather(*(port.request(c) for c in ("STS", "ALR", "RES", "IDN")))
    assert results == [["STS"], ["ALR"], ["RES"], ["IDN"]]
    assert [d for d, _ in trace.frames] == [">", "<"] * 4


async def test_bad_argument_is_a_frame_error_naming_the_tool_and_uses_no_sequence_number() -> None:
    async with scripted_tool(ack) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=FAST) as port:
            with pytest.raises(FrameError, match=r"printer-1: cannot send LOD: .*'A,B'"):
                await port.request("LOD", "A,B")
            await port.request("STS")
    assert tool.requests == [b"$00,STS*78\r\n"]


async def test_tool_hanging_up_is_a_link_error() -> None:
    async with scripted_tool(ack) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="t", timeout_s=FAST) as port:
            assert await port.request("STS") == []
            tool.hang_up()
            with pytest.raises(LinkError, match="t: "):
                await port.request("STS")


async def test_unopenable_port_is_a_clear_link_error() -> None:
    port = HostLinkPort("/dev/does-not-exist", tool="printer-1")
    with pytest.raises(LinkError, match="printer-1: cannot open port /dev/does-not-exist"):
        await port.open()
    assert not port.is_open


async def test_request_on_a_closed_port_is_a_link_error() -> None:
    port = HostLinkPort("loop://", sync=False, tool="t")
    with pytest.raises(LinkError, match="t: port loop:// is not open"):
        await port.request("STS")


async def test_loop_url_works_through_the_reader_thread() -> None:
    # loop:// has no file descriptor; it hands our own frame back, which is no reply
    trace = Recorder()
    async with HostLinkPort(
        "loop://", tool="t", timeout_s=FAST, retries=1, trace=trace, sync=False,
    ) as port:
        with pytest.raises(LinkError, match="no valid reply to STS after 2 attempts"):
            await port.request("STS")
    assert trace.received() == [b"$00,STS*78\r\n"] * 2
    assert port.garbled_replies == 2


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="printer-1: reply timeout must be > 0 s"):
        HostLinkPort("loop://", sync=False, tool="printer-1", timeout_s=0)
    with pytest.raises(ValueError, match="printer-1: retries must be >= 0"):
        HostLinkPort("loop://", sync=False, tool="printer-1", retries=-1)


async def test_the_parity_the_line_file_names_is_the_ports() -> None:
    """`parity = "E"` on a HostLink tool was accepted and silently ignored (the port always
    opened 8N1): a site whose converter is set otherwise got garbage and no hint."""
    from drivers.line_config import parse_line_config
    from drivers.tools import _link_for

    async with scripted_tool(idn, "tcp") as (_, url):
        config = parse_line_config(
            f'[line]\nname = "p"\n[tools.printer-1]\nrole = "printer"\ntransport = "serial"\n'
            f'port = "{url}"\nparity = "E"\n', source="test")
        async with _link_for(config.tools["printer-1"], None) as port:
            assert port._serial.parity == serial.PARITY_EVEN
        async with HostLinkPort(url, tool="printer-1", timeout_s=FAST, sync=False) as port:
            assert port._serial.parity == serial.PARITY_NONE  # HostLink's own 8N1

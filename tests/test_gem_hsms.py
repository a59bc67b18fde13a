"""HSMS-SS (E37) on real sockets: frames byte-exact, select/linktest/deselect/separate,
the T7 and T8 timers, one session at a time (a live one kept), replies matched by system
bytes."""

import asyncio

import pytest

from controller.gem.hsms import (
    CONTROL_SESSION,
    HostRejected,
    HsmsConnection,
    HsmsError,
    HsmsPassive,
    Message,
    ReplyTimeout,
    SType,
    Timers,
)
from controller.gem.secs2 import U1, A, B, L
from tests.gem_host import WAIT_S, TestHost

FAST = Timers(t3=0.5, t5=1.0, t6=0.5, t7=0.3, t8=0.3)


def test_frames_are_e37_byte_exact():
    select = Message(0, 0, None, False, 1, CONTROL_SESSION, SType.SELECT_REQ)
    assert select.to_bytes().hex(" ") == "00 00 00 0a ff ff 00 00 00 01 00 00 00 01"
    s1f1 = Message(1, 1, None, True, 0x12345678, 0)
    assert s1f1.to_bytes().hex(" ") == "00 00 00 0a 00 00 81 01 00 00 12 34 56 78"
    s1f2 = Message(1, 2, L(A("BUMP"), A("0.1")), False, 7, 3)
    wire = s1f2.to_bytes()
    assert wire[:14].hex(" ") == "00 00 00 17 00 03 01 02 00 00 00 00 00 07"  # 10 + 2 + 6 + 5
    assert Message.from_frame(wire[4:]) == s1f2
    assert Message.from_frame(select.to_bytes()[4:]) == select


class Echo:
    """Equipment end under test: answers S1F1 and records connections."""

    def __init__(self, timers: Timers = FAST):
        self.connections: list[HsmsConnection] = []
        self.handled: list[Message] = []
        self.server = HsmsPassive(host="127.0.0.1", port=0, device_id=0, timers=timers,
                                  handler=self.handle, on_connection=self.connected)

    async def handle(self, conn, message):
        self.handled.append(message)
        if (message.stream, message.function) == (1, 1):
            await conn.reply(message, 2, L(A("ECHO"), A("1")))

    async def connected(self, conn):
        self.connections.append(conn)


@pytest.fixture
async def echo():
    e = Echo()
    await e.server.start()
    yield e
    await e.server.close()


async def test_select_then_data_then_linktest_then_separate(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    reply = await host.request(1, 1)
    assert reply.function == 2 and reply.body == L(A("ECHO"), A("1"))
    linktest = await host.control(SType.LINKTEST_REQ)
    assert linktest.stype is SType.LINKTEST_RSP
    again = await host.control(SType.SELECT_REQ)
    assert again.status == 1  # already selected
    await host.close(separate=True)
    await echo.connections[0].closed.wait()


async def test_data_before_select_is_rejected(echo):
    host = TestHost()
    await host.connect(echo.server.port, select=False)
    reply = await host.request(1, 1)
    assert reply.stype is SType.REJECT_REQ and reply.status == 4  # entity not selected
    assert reply.stream == 0  # byte 2: the rejected message's SType (data), not its stream
    assert reply.session == CONTROL_SESSION
    await host.close()


async def test_a_connection_never_selected_is_closed_after_t7(echo):
    host = TestHost()
    await host.connect(echo.server.port, select=False)
    await asyncio.wait_for(host.closed.wait(), 5)
    assert not echo.connections[0].selected
    await host.close(separate=False)


async def test_a_frame_that_stops_midway_closes_the_link_after_t8(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    await host.send_raw(bytes.fromhex("0000000a0000"))  # 6 of the 14 bytes
    await asyncio.wait_for(host.closed.wait(), 5)
    await host.close(separate=False)


async def test_a_message_stalled_in_its_length_bytes_closes_the_link_after_t8(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    await host.send_raw(bytes.fromhex("0000"))  # 2 of the 4 length bytes, then nothing
    await asyncio.wait_for(host.closed.wait(), 5)
    await host.close(separate=False)


@pytest.fixture
async def slow_link():
    # linktest 0.8 s: a message still coming after it is no silence to probe (a linktest
    # sent then would cut into the host's message)
    e = Echo(Timers(t3=0.5, t5=1.0, t6=0.5, t7=0.3, t8=1.0, linktest=0.8))
    await e.server.start()
    yield e
    await e.server.close()


async def test_t8_is_between_bytes_not_over_the_whole_message(slow_link):
    """E37: T8 bounds the gap between two bytes of a message. A message that keeps coming,
    slower in all than T8, is read (a long S7F3 on a slow link)."""
    host = TestHost()
    await host.connect(slow_link.server.port)
    frame = Message(1, 1, None, True, 0x42, 0).to_bytes()
    await host.send_raw(frame[:4])
    for start, end in ((4, 6), (6, 8), (8, 11)):
        await asyncio.sleep(0.45)  # the slow link's pace (the stimulus, not a wait)
        await host.send_raw(frame[start:end])
    await asyncio.sleep(0.45)
    reply = await host.transact_raw(0x42, frame[11:])  # its last bytes, then the reply
    assert reply.function == 2 and reply.body == L(A("ECHO"), A("1"))
    assert not host.closed.is_set()
    await host.close()


async def test_hsms_ss_takes_one_session_at_a_time(echo):
    first, second = TestHost(), TestHost()
    await first.connect(echo.server.port)
    await second.connect(echo.server.port, select=False)
    await asyncio.wait_for(second.closed.wait(), 5)  # refused: the first answers linktest
    assert first.linktests == 1  # probed once, at the second's connect
    assert (await first.request(1, 1)).function == 2  # the first is untouched
    await second.close(separate=False)
    await first.close()


async def test_a_host_that_stops_reading_fails_linktest_even_behind_a_stuck_send(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    conn = echo.connections[0]
    host.go_silent()  # reads nothing more: what we send piles up; its socket stays open
    # more than the kernel buffers on both ends hold: this send's drain never returns
    big = Message(10, 1, L(B(0), A("x" * 12_000_000)), False, conn.next_system(), 0)
    stuck = asyncio.ensure_future(conn.send(big))  # runs first and holds the send lock
    assert not await asyncio.wait_for(conn.probe(), WAIT_S)  # T6 all the same
    assert conn.closed.is_set()
    with pytest.raises(HsmsError, match="down"):  # the stuck send fails instead of hanging
        await asyncio.wait_for(stuck, WAIT_S)
    await host.close(separate=False)


async def test_t3_counts_from_the_send_so_a_request_that_cannot_leave_fails(echo):
    """A host that stops reading: the primary's send never drains. T3 counted only from
    the drain left the request waiting on the linktest (30 s here; never with linktest
    = 0). Now it fails at T3 with the link dropped, and the S9F9 it would send is not
    awaited on the dead link."""
    host = TestHost()
    await host.connect(echo.server.port)
    conn = echo.connections[0]
    assert conn.timers.linktest == 30.0 and conn.timers.t3 == FAST.t3
    host.go_silent()
    big = L(B(0), A("x" * 12_000_000))  # more than the kernel buffers on both ends hold
    with pytest.raises(ReplyTimeout, match="could not be sent"):
        await asyncio.wait_for(conn.request(6, 11, big), WAIT_S)
    assert conn.closed.is_set()
    with pytest.raises(HsmsError, match="down|not selected"):
        await conn.request(6, 11, L(U1(1)))
    await host.close(separate=False)


async def test_deselect_ends_the_session(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    reply = await host.control(SType.DESELECT_REQ)
    assert reply.stype is SType.DESELECT_RSP and reply.status == 0
    await asyncio.wait_for(host.closed.wait(), 5)
    await host.close(separate=False)


async def test_equipment_requests_get_their_replies_or_t3(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    conn = echo.connections[0]
    reply = await conn.request(6, 11, L(U1(1)))  # the host answers S6F12
    assert reply.function == 12
    host_silent = asyncio.Event()

    async def never_answer(message):  # the host stops answering
        host_silent.set()

    host._answer = never_answer
    with pytest.raises(ReplyTimeout, match="S6F11"):
        await conn.request(6, 11, L(U1(2)))
    assert host_silent.is_set()
    s9f9 = await host.primary(9, 9)  # E5: the host is told which transaction timed out
    timed_out = host.received[-2]
    assert bytes(s9f9.body.value) == timed_out.to_bytes()[4:14]
    await conn.linktest()  # a control transaction (T6) on the same link
    await host.close()
    with pytest.raises(HsmsError, match="down|not selected|closed"):
        await conn.request(6, 11, L(U1(3)))


async def test_what_e37_does_not_support_is_rejected_and_the_link_stays(echo):
    host = TestHost()
    await host.connect(echo.server.port)

    def frame(b2: int, b3: int, ptype: int, stype: int, system: int) -> bytes:
        return bytes([0, 0, 0, 10, 0, 0, b2, b3, ptype, stype]) + system.to_bytes(4, "big")

    # PType 1 (not SECS-II): reason 2, byte 2 the PType
    reply = await host.transact_raw(0x51, frame(0x81, 1, 1, 0, 0x51))
    assert (reply.stype, reply.stream, reply.status) == (SType.REJECT_REQ, 1, 2)
    # SType 8 (none in E37): reason 1, byte 2 the SType
    reply = await host.transact_raw(0x52, frame(0, 0, 0, 8, 0x52))
    assert (reply.stype, reply.stream, reply.status) == (SType.REJECT_REQ, 8, 1)
    # a linktest.rsp and a select.rsp answering nothing: reason 3, byte 2 their SType
    for stype in (SType.LINKTEST_RSP, SType.SELECT_RSP):
        reply = await host.transact_raw(0x53, frame(0, 0, 0, stype, 0x53))
        assert (reply.stype, reply.stream, reply.status) == (SType.REJECT_REQ, stype, 3)
        assert reply.system == 0x53 and reply.session == CONTROL_SESSION
    assert (await host.request(1, 1)).function == 2  # the link stays selected
    await host.close()


async def test_an_s9_from_the_host_fails_our_transaction_and_is_not_answered(echo):
    host = TestHost()
    await host.connect(echo.server.port)
    conn = echo.connections[0]

    async def s9f7(message):  # the host cannot read our primary: S9F7 with its header
        await host.send(Message(9, 7, B(*message.to_bytes()[4:14]), False, 0x9999, 0))

    host._answer = s9f7
    with pytest.raises(HostRejected, match="S9F7"):  # at once, not after T3
        await conn.request(6, 11, L(U1(1)))
    assert (await host.request(1, 1)).function == 2  # S9F7 was read before this
    assert [(m.stream, m.function) for m in echo.handled] == [(1, 1)]  # S9F7 not handled
    assert not [m for m in host.received if m.stream == 9]  # nor answered (no S9F3)
    await host.close()

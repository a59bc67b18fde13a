"""E30 spooling on real sockets and a real database, with the host of tests/gem_host.py:
the host names what is spooled (S2F43/S2F44), turns spooling off (S2F43 with no
streams, ENABLESPOOL), and follows the spool state (SPOOLINGACTIVATED and
SPOOLINGDEACTIVATED with their reports; SPOOLSTATE, SPOOLSTARTTIME, SPOOLFULLTIME)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from controller.gem import ids
from controller.gem.hsms import Message
from controller.gem.secs2 import BOOLEAN, U1, U4, A, B, L, decode
from controller.line.events import EventKind
from tests.gem_host import CONFIG, GemLine, TestHost

ACTIVATED, DEACTIVATED = ids.CE_SPOOLING_ACTIVATED, ids.CE_SPOOLING_DEACTIVATED
SPOOL_SVS = (ids.SV_SPOOL_STATE, ids.SV_SPOOL_START_TIME, ids.SV_SPOOL_FULL_TIME,
             ids.SV_SPOOL_COUNT_ACTUAL)


class Clock:
    """The equipment's UTC clock, set by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 8, 0, 0, 120_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def line(tmp_path, clock):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}", now=clock)
    await line.start()
    yield line
    await line.close()


async def enable_all_events(host: TestHost) -> None:
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)


async def drop(line: GemLine, host: TestHost) -> None:
    """The host link goes down (the host closes its side)."""
    await host.close()
    await line.eq.server.connection.closed.wait()


async def step_started(line: GemLine, step: int) -> None:
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01", tool="oven-1",
                       step=step, step_kind="reflow")


def spooled_kinds(line: GemLine) -> list[tuple[int, int, int | None]]:
    """(stream, function, CEID or None) of each spooled message, oldest first."""
    out = []
    for s in line.eq.db.spooled():
        body = decode(s.body)
        out.append((s.stream, s.function, body.items[1].number if s.function == 11 else None))
    return out


def s2f43(*streams: tuple[int, tuple[int, ...]]):
    return L(*(L(U1(stream), L(*(U1(f) for f in functions))) for stream, functions in streams))


def ceid_of(message) -> int:
    return message.body.items[1].number


# --- S2F43/S2F44 --------------------------------------------------------------------------------


async def test_a_host_that_never_sends_s2f43_gets_s5f1_and_s6f11_spooled_not_s10f1(line):
    host = await line.remote_host()
    await enable_all_events(host)
    await drop(line, host)
    line.stream.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    line.eq.terminal.to_host("oven-1 PM done")
    await line.eq.drained_after_events()
    assert spooled_kinds(line) == [
        (6, 11, ACTIVATED), (5, 1, None), (6, 11, ids.CE_ALARM_SET),
        (6, 11, ids.alarm_ceid(301_520, is_set=True))]  # S10F1 not: dropped


async def test_s2f43_names_what_is_spooled_and_the_setting_survives_a_restart(line):
    host = await line.remote_host()
    await enable_all_events(host)
    # S5F1 only, and every primary of stream 10 (S10F1): S6F11 is no longer spooled
    reply = await host.request(2, 43, s2f43((5, (1,)), (10, ())))
    assert reply.body == L(B(0), L())  # RSPACK 0
    await host.close()
    await line.eq.close()
    await line.start()
    assert line.eq.spooling.setting == {5: [1], 10: []}
    host = await line.host()
    await drop(line, host)
    line.stream.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    line.eq.terminal.to_host("oven-1 PM done")
    await step_started(line, 1)
    # the SPOOLINGACTIVATED report is an S6F11 too: not spooled either
    assert spooled_kinds(line) == [(10, 1, None), (5, 1, None)]  # as they were sent
    host = await line.host()
    svs = await host.request(1, 3, L(U4(ids.SV_SPOOL_STATE)))
    assert svs.body == L(U1(2))  # SPOOL ACTIVE
    assert (await host.request(6, 23, U1(0))).body == B(0)
    assert (await host.primary(5, 1)).body.items[1] == U4(301_520)
    assert (await host.primary(10, 1)).body == L(B(0), A("oven-1 PM done"))
    # emptied: SPOOL INACTIVE, and its report goes to the communicating host
    assert ceid_of(await host.primary(6, 11)) == DEACTIVATED
    assert (await host.request(1, 3, L(U4(ids.SV_SPOOL_STATE)))).body == L(U1(1))
    await host.close()


async def test_s2f43_refused_names_each_stream_in_error_and_changes_nothing(line):
    host = await line.remote_host()
    reply = await host.request(2, 43, s2f43(
        (5, (1,)),  # fine
        (1, (13,)),  # stream 1 is never spooled
        (9, ()),  # nor stream 9 (S9Fx answer a host that is there)
        (99, (1,)),  # a stream the equipment does not know
        (6, (11, 12)),  # S6F12 is a reply
        (7, (1,)),  # the equipment never sends S7F1
    ))
    assert reply.body == L(B(1), L(  # RSPACK 1, then STRID, STRACK, the functions in error
        L(U1(1), B(1), L(U1(13))),
        L(U1(9), B(1), L()),
        L(U1(99), B(2), L(U1(1))),
        L(U1(6), B(4), L(U1(12))),
        L(U1(7), B(3), L(U1(1)))))
    assert line.eq.spooling.setting == {5: [1], 6: [11]}  # all or nothing: as before
    assert line.eq.db.load("spooled_messages") is None
    # not the structure S2F43 defines: S9F7
    before = len(host.received)
    await host.send(Message(2, 43, L(L(U1(5))), True, 0x7778, host.device_id))
    await host.primary(9, 7, after=before)
    await host.close()


async def test_s2f43_with_no_streams_turns_spooling_off(line):
    host = await line.remote_host()
    await enable_all_events(host)
    assert (await host.request(2, 43, L())).body == L(B(0), L())
    await drop(line, host)
    await step_started(line, 1)
    line.stream.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    await line.eq.drained_after_events()
    assert line.eq.db.spool_count() == 0  # lost (logged), as the host asked
    host = await line.host()
    assert (await host.request(1, 3, L(*(U4(v) for v in SPOOL_SVS)))).body == L(
        U1(1), A(""), A(""), U4(0))  # never activated
    assert (await host.request(6, 23, U1(0))).body == B(2)  # nothing spooled
    await host.close()


async def test_enablespool_false_spools_nothing_and_true_spools_again(line):
    host = await line.remote_host()
    await enable_all_events(host)
    off = L(L(U4(ids.EC_ENABLE_SPOOL), BOOLEAN(False)))
    assert (await host.request(2, 15, off)).body == B(0)
    assert (await host.request(2, 13, L(U4(ids.EC_ENABLE_SPOOL)))).body == L(BOOLEAN(False))
    await drop(line, host)
    await step_started(line, 1)
    assert line.eq.db.spool_count() == 0
    host = await line.host()
    on = L(L(U4(ids.EC_ENABLE_SPOOL), BOOLEAN(True)))
    assert (await host.request(2, 15, on)).body == B(0)
    await drop(line, host)
    await step_started(line, 2)
    assert spooled_kinds(line) == [(6, 11, ACTIVATED), (6, 11, ids.CE_STEP_STARTED)]


# --- the spool state model -------------------------------------------------------------------


async def link_spool_report(host: TestHost) -> None:
    """RPT 7 = SPOOLSTATE, SPOOLSTARTTIME, SPOOLFULLTIME, SPOOLCOUNTACTUAL, on both spool
    events; the step event (RPT 8, STEP) to have something to spool; those enabled."""
    rpts = L(U4(1), L(L(U4(7), L(*(U4(v) for v in SPOOL_SVS))),
                      L(U4(8), L(U4(ids.DV_STEP)))))
    assert (await host.request(2, 33, rpts)).body == B(0)
    links = L(U4(2), L(L(U4(ACTIVATED), L(U4(7))), L(U4(DEACTIVATED), L(U4(7))),
                       L(U4(ids.CE_STEP_STARTED), L(U4(8)))))
    assert (await host.request(2, 35, links)).body == B(0)
    enable = L(BOOLEAN(True), L(U4(ACTIVATED), U4(DEACTIVATED), U4(ids.CE_STEP_STARTED)))
    assert (await host.request(2, 37, enable)).body == B(0)


def values(message) -> list:
    """The first report's values of an S6F11."""
    return message.body.items[2].items[0].items[1].python()


async def test_activated_with_the_first_message_spooled_deactivated_when_emptied(line, clock):
    host = await line.remote_host()
    await link_spool_report(host)
    await drop(line, host)
    clock.now = datetime(2026, 12, 1, 9, 30, 15, 470_000, tzinfo=UTC)
    await step_started(line, 1)  # the first message the host cannot take
    clock.now = datetime(2026, 12, 1, 9, 45, tzinfo=UTC)
    await step_started(line, 2)  # the spool is active already: no second activation
    assert spooled_kinds(line) == [(6, 11, ACTIVATED), (6, 11, ids.CE_STEP_STARTED),
                                   (6, 11, ids.CE_STEP_STARTED)]
    host = await line.host()
    svs = await host.request(1, 3, L(*(U4(v) for v in SPOOL_SVS)))
    assert svs.body == L(U1(2), A("2026120109301547"), A(""), U4(3))
    live_before = len(host.received)
    assert (await host.request(6, 23, U1(0))).body == B(0)
    activated, first, second, deactivated = await host.count(6, 11, 4)
    assert host.received.index(activated) >= live_before
    assert ceid_of(activated) == ACTIVATED
    # SPOOL ACTIVE, SPOOLSTARTTIME, no SPOOLFULLTIME, nothing spooled yet at activation
    assert values(activated) == [2, "2026120109301547", "", 0]
    assert [values(first), values(second)] == [[1], [2]]
    assert ceid_of(deactivated) == DEACTIVATED
    assert values(deactivated) == [1, "2026120109301547", "", 0]  # SPOOL INACTIVE
    # TIMEFORMAT 0 applies to the spool times as to CLOCK
    short = L(L(U4(ids.EC_TIME_FORMAT), U1(0)))
    assert (await host.request(2, 15, short)).body == B(0)
    svs = await host.request(1, 3, L(U4(ids.SV_SPOOL_START_TIME)))
    assert svs.body == L(A("261201093015"))
    await host.close()


async def test_spoolfulltime_is_when_the_spool_became_full(tmp_path, clock):
    line = GemLine(f"sqlite:///{tmp_path / 'small.db'}", replace(CONFIG, spool_limit=2),
                   now=clock)
    await line.start()
    try:
        host = await line.remote_host()
        await link_spool_report(host)
        await drop(line, host)
        await step_started(line, 1)  # SPOOLINGACTIVATED and step 1 fill it
        clock.now = datetime(2026, 12, 1, 10, 0, 0, 990_000, tzinfo=UTC)
        await step_started(line, 2)  # does not fit: full now (kept: the oldest)
        clock.now = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
        await step_started(line, 3)  # full already: SPOOLFULLTIME stays
        host = await line.host()
        svs = await host.request(1, 3, L(U4(ids.SV_SPOOL_FULL_TIME), U4(ids.SV_SPOOL_FULL)))
        assert svs.body == L(A("2026120110000099"), BOOLEAN(True))
        assert (await host.request(6, 23, U1(1))).body == B(0)  # purge
        deactivated = await host.primary(6, 11)
        assert ceid_of(deactivated) == DEACTIVATED
        assert values(deactivated) == [1, "2026120108000012", "2026120110000099", 0]
        await host.close()
    finally:
        await line.close()


async def test_a_stored_setting_that_is_not_one_falls_back_to_the_default(line):
    line.eq.db.save("spooled_messages", "S6F11")  # not what S2F43 stores
    await line.eq.close()
    eq = await line.start()
    assert eq.spooling.setting == {5: [1], 6: [11]}

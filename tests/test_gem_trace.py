"""GEM trace data collection (S2F23/S2F24, S6F1) on real sockets and a real database,
driven by the host written from the standards (tests/gem_host.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.gem import ids
from controller.gem.secs2 import U1, U4, A, B, L
from controller.gem.states import CommState
from controller.gem.trace_capability import MAX_SVIDS, MAX_TRACES, parse_period
from tests.gem_host import GemLine

PC_NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
FAST = A("00000010")  # DSPER 0.1 s, the shortest we take
HOURLY = A("010000")  # a trace that outlives the test unless it is ended


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}", now=lambda: PC_NOW)
    await line.start()
    yield line
    await line.close()


def trace(trid, dsper, total: int, group: int, *svids: int):
    return L(trid, dsper, U4(total), U4(group), L(*(U4(v) for v in svids)))


def test_dsper_in_either_e5_form():
    assert parse_period("000130") == 90.0
    assert parse_period("00000025") == 0.25
    assert parse_period("010000") == 3600.0
    for bad in ("0001", "0000005", "006000", "000060", "00:01:00", "+00130"):
        assert parse_period(bad) is None, bad


async def test_samples_reach_the_host_in_groups(line):
    host = await line.remote_host()
    svids = (ids.SV_CONTROL_STATE, ids.SV_PROCESS_STATE)
    assert (await host.request(2, 23, trace(U4(7), FAST, 5, 2, *svids))).body == B(0)
    groups = [m.body.python() for m in await host.count(6, 1, 3)]
    stime = "2026120412000000"  # the (held) clock in CLOCK's format
    # REPGSZ 2: samples 1-2, 3-4, then the last one alone; values sample after sample
    assert groups == [[7, 2, stime, [5, 1, 5, 1]], [7, 4, stime, [5, 1, 5, 1]],
                      [7, 5, stime, [5, 1]]]
    assert line.eq.trace.running == []  # TOTSMP reached: the trace is over
    await host.close()


async def test_a_text_trid_is_echoed_and_totsmp_0_ends_the_trace(line):
    host = await line.remote_host()
    assert (await host.request(2, 23, trace(A("OVEN"), HOURLY, 100, 1,
                                            ids.SV_CONTROL_STATE))).body == B(0)
    first = await host.primary(6, 1)  # the first sample is taken at once
    assert first.body == L(A("OVEN"), U4(1), A("2026120412000000"), L(U1(5)))
    assert line.eq.trace.running == ["OVEN"]
    assert (await host.request(2, 23, trace(A("OVEN"), HOURLY, 0, 1))).body == B(0)
    assert line.eq.trace.running == []
    # ending a trace that does not run is no error either
    assert (await host.request(2, 23, trace(A("NONE"), HOURLY, 0, 1))).body == B(0)
    await host.close()


async def test_what_cannot_be_traced_is_refused_with_its_tiaack(line):
    host = await line.remote_host()
    sv = ids.SV_CONTROL_STATE
    cases = [
        (trace(U4(1), A("000000"), 3, 1, sv), 3),  # no period
        (trace(U4(1), A("00000005"), 3, 1, sv), 3),  # 0.05 s: faster than we sample
        (trace(U4(1), A("0001"), 3, 1, sv), 3),  # not hhmmss
        (trace(U4(1), FAST, 3, 1, ids.DV_LOT_ID), 4),  # a DV has no value outside its event
        (trace(U4(1), FAST, 3, 1, ids.EC_TIME_FORMAT), 4),  # not a status variable
        (trace(U4(1), FAST, 3, 1, 424242), 4),  # no such variable
        (trace(U4(1), FAST, 3, 1), 4),  # nothing to sample
        (trace(U4(1), FAST, 3, 1, *[sv] * (MAX_SVIDS + 1)), 1),  # too many SVIDs
        (trace(U4(1), FAST, 3, 0, sv), 5),  # REPGSZ 0
    ]
    for body, tiaack in cases:
        assert (await host.request(2, 23, body)).body == B(tiaack), body
    assert line.eq.trace.running == []  # nothing started
    for trid in range(MAX_TRACES):
        assert (await host.request(2, 23, trace(U4(trid), HOURLY, 10, 10, sv))).body == B(0)
    assert (await host.request(2, 23, trace(U4(99), HOURLY, 10, 10, sv))).body == B(2)
    # one of them set up again: replaced, not one more
    assert (await host.request(2, 23, trace(U4(3), HOURLY, 10, 10, sv))).body == B(0)
    assert sorted(line.eq.trace.running) == list(range(MAX_TRACES))
    await host.close()


async def test_traces_end_when_communication_does(line):
    host = await line.remote_host()
    assert (await host.request(2, 23, trace(U4(1), HOURLY, 10, 1,
                                            ids.SV_CONTROL_STATE))).body == B(0)
    await host.primary(6, 1)
    assert line.eq.trace.running == [1]
    await host.close()  # separate: the equipment waits for a host again
    await line.eq.comm_reached(CommState.WAIT_DELAY)
    assert line.eq.trace.running == []

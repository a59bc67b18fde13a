"""Losing and regaining the host, on real sockets and a real database: a host that goes
silent (crashed, cable pulled) is found out by linktest and does not lock its restarted
self out; a message from the host in WAIT DELAY brings S1F13 at once (E30); DATAIDs do not
repeat across a restart while reports are spooled."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from controller.gem import ids
from controller.gem.secs2 import BOOLEAN, U1, U4, B, L
from controller.gem.spool import GemDatabase
from controller.gem.states import CommState
from controller.line.events import EventKind
from tests.gem_host import CONFIG, WAIT_S, GemLine, TestHost


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    yield line
    await line.close()


# --- a half-open connection -------------------------------------------------------------------


async def test_a_silent_host_is_dropped_after_an_unanswered_linktest(tmp_path):
    quick = replace(CONFIG, timers=replace(CONFIG.timers, linktest=0.3))
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}", quick)
    await line.start()
    try:
        host = await line.host()
        conn = line.eq.server.connection
        await host.answered_linktests(2)  # a quiet host that answers keeps its session
        assert not conn.closed.is_set() and line.eq.comm is CommState.COMMUNICATING
        host.go_silent()  # stops reading and answering; its socket stays open
        await asyncio.wait_for(conn.closed.wait(), WAIT_S)  # linktest.req unanswered in T6
        await asyncio.wait_for(line.eq.comm_reached(CommState.WAIT_DELAY), WAIT_S)
        await line.host()  # a new host connects, selects and communicates
        assert line.eq.server.connection is not conn
    finally:
        await line.close()


async def test_a_new_connection_replaces_a_session_that_fails_a_linktest(line):
    eq = await line.start()  # linktest 30 s: only the probe on connecting is at work here
    first = await line.host()
    intruder = TestHost()
    await intruder.connect(eq.port, select=False)
    await asyncio.wait_for(intruder.closed.wait(), WAIT_S)  # the first one answered: refused
    await intruder.close(separate=False)
    assert first.linktests == 1 and eq.comm is CommState.COMMUNICATING
    dead = eq.server.connection
    first.go_silent()
    second = await line.host()  # let in once the first failed the linktest (T6)
    assert dead.closed.is_set() and eq.server.connection is not dead
    assert (await second.request(1, 1)).function == 0  # equipment-offline: S1F0, but served


# --- WAIT DELAY -------------------------------------------------------------------------------


async def test_a_message_in_wait_delay_brings_s1f13_at_once(line):
    # an hour between S1F13 attempts: only the host's message can bring the next one
    GemDatabase(line.store.engine).save("constants", {str(ids.EC_ESTABLISH_COMM_DELAY): 3600})
    eq = await line.start()
    host = TestHost(commack=1)  # refuses the first S1F13
    line.hosts.append(host)
    await host.connect(eq.port)
    await host.primary(1, 13)
    await asyncio.wait_for(eq.comm_reached(CommState.WAIT_DELAY), WAIT_S)
    host.commack = 0
    assert (await host.request(1, 1)).function == 0  # not communicating: S1F0
    await host.count(1, 13, 2)  # and S1F13 at once, not an hour later
    await asyncio.wait_for(eq.communicating(), WAIT_S)
    assert eq.comm is CommState.COMMUNICATING


# --- DATAID across a restart ------------------------------------------------------------------


async def test_dataids_do_not_repeat_across_a_restart_with_reports_spooled(line):
    eq = await line.start()
    host = await line.remote_host()
    vids = L(U4(ids.DV_LOT_ID), U4(ids.DV_STEP))
    assert (await host.request(2, 33, L(U4(1), L(L(U4(1), vids))))).body == B(0)
    link = L(L(U4(ids.CE_STEP_STARTED), L(U4(1))))
    assert (await host.request(2, 35, L(U4(2), link))).body == B(0)
    enable = L(BOOLEAN(True), L(U4(ids.CE_STEP_STARTED)))
    assert (await host.request(2, 37, enable)).body == B(0)
    await host.close()
    await eq.server.connection.closed.wait()
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                       tool="oven-1", step=1, step_kind="reflow")
    assert eq.db.spool_count() == 1  # spooled before the restart
    await eq.close()
    eq = await line.start()
    host = await line.host()
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                       tool="oven-1", step=2, step_kind="reflow")
    assert (await host.request(6, 23, U1(0))).body == B(0)
    reports = await host.count(6, 11, 2)
    steps = [r.body.items[2].items[0].items[1].items[1].number for r in reports]
    assert steps == [1, 2]  # the one spooled before the restart, then the one after
    dataids = [r.body.items[0].number for r in reports]
    assert dataids[0] != dataids[1]

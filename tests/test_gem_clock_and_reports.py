"""GEM's clock (S2F17/S2F18, S2F31/S2F32) and variable data collection (S6F15/S6F16,
S6F19/S6F20, S6F21/S6F22), on real sockets and a real database, driven by the host
written from the standards (tests/gem_host.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.gem import ids
from controller.gem.clock_capability import parse_time
from controller.gem.hsms import Message
from controller.gem.secs2 import BOOLEAN, U1, U4, A, B, L
from tests.gem_host import GemLine
from tests.test_gem_equipment import setup_reports

PC_NOW = datetime(2026, 12, 4, 12, 0, 0, 250_000, tzinfo=UTC)  # the PC's clock, held still


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}", now=lambda: PC_NOW)
    await line.start()
    yield line
    await line.close()


async def clock(host) -> str:
    reply = await host.request(2, 17)
    assert reply.function == 18
    return reply.body.text


def test_time_in_either_e5_form_and_nothing_else():
    assert parse_time("261204133025") == datetime(2026, 12, 4, 13, 30, 25)
    assert parse_time("2026120413302550") == datetime(2026, 12, 4, 13, 30, 25, 500_000)
    for bad in ("2026133112000000", "2026023012000000", "261204243000", "12345",
                "2026-12-04T13:30:25Z", "20261204 1330255", "２０２６１２０４１３３０２５５０"):
        assert parse_time(bad) is None, bad


async def test_the_host_reads_and_sets_the_equipments_clock(line):
    host = await line.remote_host()
    assert await clock(host) == "2026120412000025"  # TIMEFORMAT 1: YYYYMMDDhhmmsscc
    assert (await host.request(2, 31, A("2026120413302550"))).body == B(0)
    assert await clock(host) == "2026120413302550"
    # every time GEM shows follows: CLOCK
    assert (await host.request(1, 3, L(U4(ids.SV_CLOCK)))).body == L(A("2026120413302550"))
    # TIMEFORMAT 0: the short form, in S2F18 and in S2F31
    assert (await host.request(2, 15, L(L(U4(ids.EC_TIME_FORMAT), U1(0))))).body == B(0)
    assert await clock(host) == "261204133025"
    assert (await host.request(2, 31, A("261205080000"))).body == B(0)
    assert await clock(host) == "261205080000"
    # who set it, and by how much, is in the audit log
    audit = [a for a in line.store.audit_log() if a.action == "gem.clock"]
    assert [a.actor for a in audit] == ["host", "host"]
    assert "261205080000" in audit[-1].detail
    await host.close()


async def test_a_time_that_is_not_one_is_refused_and_changes_nothing(line):
    host = await line.remote_host()
    assert (await host.request(2, 31, A("2026120413302550"))).body == B(0)
    for bad in ("2026133112000000", "2026-12-04T13:30:25", "1330", ""):
        assert (await host.request(2, 31, A(bad))).body == B(1), bad  # TIACK 1: not done
    assert await clock(host) == "2026120413302550"
    # not ASCII at all: illegal data (S9F7), the link stays and the clock is as it was
    await host.send(Message(2, 31, U4(2026), True, 0x7001, host.device_id))
    s9f7 = await host.primary(9, 7)
    assert bytes(s9f7.body.value)[6:10] == (0x7001).to_bytes(4, "big")  # MHEAD: that one
    assert await clock(host) == "2026120413302550"
    await host.close()


async def test_the_host_clock_survives_a_restart(line):
    host = await line.remote_host()
    assert (await host.request(2, 31, A("2027010100000000"))).body == B(0)
    await host.close()
    await line.eq.close()
    await line.start()
    host = await line.host()
    assert await clock(host) == "2027010100000000"
    await host.close()


async def test_reports_asked_for_now_outside_their_events(line):
    host = await line.remote_host()
    await setup_reports(host)  # RPT 1: LOTID, WAFERID, STEP, OUTCOME, CONTROLSTATE
    # S6F15: the reports an event carries, with the values now (a DV outside its event: L,0)
    first = await host.request(6, 15, U4(ids.CE_LOT_STARTED))
    assert first.function == 16
    dataid, ceid, rpt = first.body.items
    assert ceid == U4(ids.CE_LOT_STARTED)
    assert rpt == L(L(U4(1), L(L(), L(), L(), L(), U1(5))))  # 5: ON-LINE REMOTE
    # the event disabled: asked for, it is still answered
    assert (await host.request(2, 37, L(BOOLEAN(False), L()))).body == B(0)
    again = await host.request(6, 15, U4(ids.CE_LOT_STARTED))
    assert again.body.items[2] == rpt
    assert again.body.items[0].number > dataid.number  # a DATAID of its own
    # an event with nothing linked, and one that does not exist: no reports
    bare = await host.request(6, 15, U4(ids.CE_ALARM_SET))
    assert bare.body.items[1:] == (U4(ids.CE_ALARM_SET), L())
    unknown = await host.request(6, 15, U4(999_999))
    assert unknown.body.items[1:] == (U4(999_999), L())
    # S6F19 / S6F21: one report's values, plain and annotated; L,0 for no such report
    assert (await host.request(6, 19, U4(1))).body == L(L(), L(), L(), L(), U1(5))
    assert (await host.request(6, 19, U4(99))).body == L()
    annotated = (await host.request(6, 21, U4(1))).body
    assert annotated == L(L(U4(ids.DV_LOT_ID), L()), L(U4(ids.DV_WAFER_ID), L()),
                          L(U4(ids.DV_STEP), L()), L(U4(ids.DV_OUTCOME), L()),
                          L(U4(ids.SV_CONTROL_STATE), U1(5)))
    assert (await host.request(6, 21, U4(99))).body == L()
    # a CEID that is no integer: illegal data
    await host.send(Message(6, 15, A("LOTSTARTED"), True, 0x7002, host.device_id))
    s9f7 = await host.primary(9, 7)
    assert bytes(s9f7.body.value)[6:10] == (0x7002).to_bytes(4, "big")
    await host.close()


async def test_dv_namelist_loopback_and_multi_block_terminal_text(line):
    host = await line.remote_host()
    # S1F21: a DV's name and units; an id that is no DV (here an SV) gets empty ones
    names = (await host.request(1, 21, L(U4(ids.DV_LOT_ID), U4(ids.SV_CLOCK)))).body
    assert names == L(L(U4(ids.DV_LOT_ID), A("LOTID"), A("")),
                      L(U4(ids.SV_CLOCK), A(""), A("")))
    every = (await host.request(1, 21, L())).body.python()
    assert [ids.DV_LOT_ID, "LOTID", ""] in every
    assert all(vid >= 200 for vid, _, _ in every)  # DVs only: no SV or EC among them
    # S2F25: the bytes come back as sent
    assert (await host.request(2, 25, B(0, 1, 2, 255))).body == B(0, 1, 2, 255)
    # S10F5: the lines shown as one message; another terminal: ACKC10 2, nothing shown
    lines = L(A("Lot P7: stencil changed."), A("Check the first print."))
    assert (await host.request(10, 5, L(B(0), lines))).body == B(0)
    assert line.terminal == ["Lot P7: stencil changed.\nCheck the first print."]
    assert (await host.request(10, 5, L(B(3), lines))).body == B(2)
    assert len(line.terminal) == 1
    await host.close()

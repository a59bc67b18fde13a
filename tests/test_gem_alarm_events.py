"""E30 alarm management: each alarm's own set and clear collection events, on real
sockets and a real database, driven by the host written from the standards
(tests/gem_host.py). Alarms come as line events, as the controller publishes them."""

from __future__ import annotations

import pytest

from controller.gem import ids
from controller.gem.secs2 import BOOLEAN, U4, A, B, L
from controller.line.events import EventKind
from tests.gem_host import GemLine, TestHost

O2_HIGH, JAM = 301_540, 301_520  # oven-1, alarms 540 and 520
O2_SET, O2_CLEARED = 1_301_540, 2_301_540  # docs/gem.md: 1000000 / 2000000 + ALID
JAM_SET = 1_301_520


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    await line.start()
    yield line
    await line.close()


def ceids(host: TestHost) -> list[int]:
    return [m.body.items[1].number for m in host.received if (m.stream, m.function) == (6, 11)]


async def test_the_rule_and_the_namelist(line):
    assert ids.alarm_ceid(O2_HIGH, is_set=True) == O2_SET
    assert ids.alarm_ceid(O2_HIGH, is_set=False) == O2_CLEARED
    host = await line.remote_host()
    names = await host.request(1, 23, L(U4(O2_SET), U4(O2_CLEARED), U4(1_000_001),
                                        U4(1_301_777)))  # 777: no alarm of the tables
    alarm_dvs = [ids.DV_ALID, ids.DV_ALTX, ids.DV_TOOL]
    assert names.body.python() == [[O2_SET, "ALARM301540SET", alarm_dvs],
                                   [O2_CLEARED, "ALARM301540CLEARED", alarm_dvs],
                                   [1_000_001, "ALARM1SET", alarm_dvs],
                                   [1_301_777, "", []]]
    every = [entry[0] for entry in (await host.request(1, 23, L())).body.python()]
    assert every[:len(ids.EVENTS)] == [e.ceid for e in ids.EVENTS]
    alarms = [a.alid for a in ids.line_alarms()] + [
        a.alid for t in ("printer-1", "placer-1", "oven-1", "cleaner-1")
        for a in ids.tool_alarms(t)]
    assert every[len(ids.EVENTS):] == [c for a in alarms for c in (1_000_000 + a, 2_000_000 + a)]
    # a CEID no alarm of the line has cannot be linked or enabled
    assert (await host.request(2, 33, L(U4(1), L(L(U4(1), L(U4(ids.DV_ALID))))))).body == B(0)
    assert (await host.request(2, 35, L(U4(2), L(L(U4(1_301_777), L(U4(1))))))).body == B(4)
    assert (await host.request(2, 37, L(BOOLEAN(True), L(U4(1_301_777))))).body == B(1)
    assert (await host.request(2, 37, L(BOOLEAN(True), L(U4(3_301_540))))).body == B(1)
    await host.close()


async def test_an_alarms_own_set_and_clear_events_carry_the_linked_report(line):
    host = await line.remote_host()
    # RPT 7: ALID, ALTX, TOOL and the ALARMSSET status variable; RPT 8: ALID only
    rpt7 = L(*(U4(v) for v in (ids.DV_ALID, ids.DV_ALTX, ids.DV_TOOL, ids.SV_ALARMS_SET)))
    assert (await host.request(2, 33, L(U4(1), L(L(U4(7), rpt7),
                                                  L(U4(8), L(U4(ids.DV_ALID))))))).body == B(0)
    links = L(L(U4(O2_SET), L(U4(7))), L(U4(O2_CLEARED), L(U4(7))), L(U4(JAM_SET), L(U4(8))))
    assert (await host.request(2, 35, L(U4(2), links))).body == B(0)
    # only the alarms' own events: O2 HIGH's set and clear, CONVEYOR JAM's set
    enabled = L(U4(O2_SET), U4(O2_CLEARED), U4(JAM_SET))
    assert (await host.request(2, 37, L(BOOLEAN(True), enabled))).body == B(0)

    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=540, text="O2 HIGH")
    s5f1, = await host.count(5, 1, 1)
    assert s5f1.body == L(B(0x80 | ids.ALCD_ATTENTION), U4(O2_HIGH), A("oven-1 O2 HIGH"))
    report, = await host.count(6, 11, 1)
    assert report.body.items[1] == U4(O2_SET)
    assert report.body.items[2].python() == [[7, [O2_HIGH, "oven-1 O2 HIGH", "oven-1",
                                                  [O2_HIGH]]]]

    # another alarm set and cleared: S5F1 for both, and only its own enabled set event
    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    await line.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=520, text="CONVEYOR JAM")
    await line.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=540, text="O2 HIGH")
    await host.count(6, 11, 3)
    await host.count(5, 1, 4)
    # the sender keeps order: everything reported before the last clear has arrived
    assert ceids(host) == [O2_SET, JAM_SET, O2_CLEARED]
    jam = [m for m in host.received if (m.stream, m.function) == (6, 11)][1]
    assert jam.body.items[2].python() == [[8, [JAM]]]
    cleared = [m for m in host.received if (m.stream, m.function) == (6, 11)][2]
    assert cleared.body.items[2].python() == [[7, [O2_HIGH, "oven-1 O2 HIGH", "oven-1", []]]]
    await host.close()


async def test_shared_and_own_events_in_order_whatever_the_alarm_enables(line):
    host = await line.remote_host()
    assert (await host.request(5, 3, L(B(0), U4(O2_HIGH)))).body == B(0)  # no S5F1 for it
    enabled = L(U4(ids.CE_ALARM_SET), U4(O2_SET), U4(ids.CE_ALARM_CLEARED), U4(O2_CLEARED))
    assert (await host.request(2, 37, L(BOOLEAN(True), enabled))).body == B(0)
    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=540, text="O2 HIGH")
    await line.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=540, text="O2 HIGH")
    await host.count(6, 11, 4)
    assert ceids(host) == [ids.CE_ALARM_SET, O2_SET, ids.CE_ALARM_CLEARED, O2_CLEARED]
    assert all(m.body.items[2] == L() for m in host.received if m.stream == 6)  # no reports
    assert not [m for m in host.received if m.stream == 5]
    # disabled again: neither is sent (the shared set event, enabled, shows the order)
    off = L(U4(O2_SET), U4(ids.CE_ALARM_CLEARED), U4(O2_CLEARED))
    assert (await host.request(2, 37, L(BOOLEAN(False), off))).body == B(0)
    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=540, text="O2 HIGH")
    await line.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=540, text="O2 HIGH")
    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    await host.count(6, 11, 6)
    assert ceids(host)[4:] == [ids.CE_ALARM_SET, ids.CE_ALARM_SET]
    await host.close()

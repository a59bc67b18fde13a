"""One ALID per alarm condition (E5/E30), on real sockets and a real database, driven by
the host written from the standards (tests/gem_host.py): each set S5F1 is paired with one
clear S5F1 of the same ALID, and ALARMSSET lists every condition set. Alarms come as line
events, as the controller publishes them (controller/line/controller.py: a tool's alarm
by its code, a lost link as ``link_lost``; controller/line/journal.py: ``interlock``)."""

from __future__ import annotations

import pytest

from controller.gem import ids
from controller.gem.secs2 import BOOLEAN, U4, A, B, L
from controller.line.events import EventKind
from tests.gem_host import TOOLS, GemLine, TestHost

# a line with two platers and a tool named outside the <role>-<unit> scheme
LINE_TOOLS = (*TOOLS, "plater-1", "plater-2", "ep25")
PRINTER_LINK, OVEN_LINK = 101_000, 301_000  # docs/gem.md: code 0 is the tool's link lost
NI_TEMP_1, NI_TEMP_2 = 501_700, 502_700  # plater-1 and plater-2, alarm 700
SET, CLEAR = True, False


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}", tools=LINE_TOOLS)
    await line.start()
    yield line
    await line.close()


def s5f1s(host: TestHost) -> list[tuple[int, bool, str]]:
    """(ALID, set, ALTX) of each S5F1 received, in order."""
    out = []
    for m in host.received:
        if (m.stream, m.function) == (5, 1):
            alcd, alid, altx = m.body.items
            out.append((alid.number, bool(alcd.scalar & ids.ALCD_SET), altx.text))
    return out


async def sv(host: TestHost, svid: int) -> list:
    return (await host.request(1, 3, L(U4(svid)))).body.python()[0]


def paired(reports: list[tuple[int, bool, str]]) -> bool:
    """Per ALID: set, clear, set, clear... never two sets or two clears in a row."""
    last: dict[int, bool] = {}
    for alid, is_set, _ in reports:
        if last.get(alid, False) == is_set:
            return False
        last[alid] = is_set
    return True


async def test_two_tools_lose_their_links_and_one_comes_back(line):
    host = await line.remote_host()
    for tool in ("printer-1", "oven-1"):
        await line.publish(EventKind.ALARM_SET, tool=tool, code="link_lost",
                           text=f"TOOL LINK LOST: {tool} STS timed out (no wafer inside)",
                           wafer_id=None, wafers=[])
    await line.publish(EventKind.ALARM_CLEARED, tool="printer-1", code="link_lost",
                       text="answers again")
    await host.count(5, 1, 4)
    assert s5f1s(host) == [(PRINTER_LINK, SET, "printer-1 TOOL LINK LOST"),
                           (ids.ALID_TOOL_LINK_LOST, SET, "TOOL LINK LOST"),
                           (OVEN_LINK, SET, "oven-1 TOOL LINK LOST"),
                           (PRINTER_LINK, CLEAR, "printer-1 TOOL LINK LOST")]
    # the oven's link is still lost: its own alarm and the line's TOOL LINK LOST stay set
    assert await sv(host, ids.SV_ALARMS_SET) == [ids.ALID_TOOL_LINK_LOST, OVEN_LINK]
    listed = (await host.request(5, 5, L(U4(1), U4(PRINTER_LINK), U4(OVEN_LINK)))).body
    assert listed.python() == [[ids.ALCD_SET | ids.ALCD_EQUIPMENT_SAFETY, 1, "TOOL LINK LOST"],
                               [ids.ALCD_EQUIPMENT_SAFETY, PRINTER_LINK,
                                "printer-1 TOOL LINK LOST"],
                               [ids.ALCD_SET | ids.ALCD_EQUIPMENT_SAFETY, OVEN_LINK,
                                "oven-1 TOOL LINK LOST"]]

    await line.publish(EventKind.ALARM_CLEARED, tool="oven-1", code="link_lost",
                       text="answers again")
    await host.count(5, 1, 6)
    assert s5f1s(host)[4:] == [(OVEN_LINK, CLEAR, "oven-1 TOOL LINK LOST"),
                               (ids.ALID_TOOL_LINK_LOST, CLEAR, "TOOL LINK LOST")]
    assert paired(s5f1s(host))
    assert await sv(host, ids.SV_ALARMS_SET) == []
    await host.close()


async def test_a_plater_alarm_has_its_own_alid_and_text(line):
    host = await line.remote_host()
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)  # every event
    await line.publish(EventKind.ALARM_SET, tool="plater-1", code=700, text="NI BATH TEMP OUT",
                       wafer_id="L1-01", wafers=["L1-01"])
    await line.publish(EventKind.ALARM_SET, tool="plater-2", code=700, text="NI BATH TEMP OUT",
                       wafer_id="L2-01", wafers=["L2-01"])
    await line.publish(EventKind.ALARM_CLEARED, tool="plater-1", code=700, text="")
    await host.count(5, 1, 3)
    assert s5f1s(host) == [(NI_TEMP_1, SET, "plater-1 NI BATH TEMP OUT"),
                           (NI_TEMP_2, SET, "plater-2 NI BATH TEMP OUT"),
                           (NI_TEMP_1, CLEAR, "plater-1 NI BATH TEMP OUT")]
    first = [m for m in host.received if (m.stream, m.function) == (5, 1)][0]
    assert first.body == L(B(ids.ALCD_SET | ids.ALCD_ATTENTION), U4(NI_TEMP_1),
                           A("plater-1 NI BATH TEMP OUT"))
    assert await sv(host, ids.SV_ALARMS_SET) == [NI_TEMP_2]
    # its own set and clear collection events, after the shared ALARMSET/ALARMCLEARED
    await host.count(6, 11, 6)
    reported = [m.body.items[1].number for m in host.received if (m.stream, m.function) == (6, 11)]
    assert reported == [ids.CE_ALARM_SET, ids.alarm_ceid(NI_TEMP_1, is_set=True),
                        ids.CE_ALARM_SET, ids.alarm_ceid(NI_TEMP_2, is_set=True),
                        ids.CE_ALARM_CLEARED, ids.alarm_ceid(NI_TEMP_1, is_set=False)]
    # listed (S5F5), disabled (S5F3) and so missing from ALARMSENABLED; 741 is a warning,
    # no alarm of the tables (E5: an unknown ALID's ALCD and ALTX are zero-length)
    listed = await host.request(5, 5, L(U4(NI_TEMP_1), U4(501_000), U4(501_741)))
    assert listed.body.python() == [[ids.ALCD_ATTENTION, NI_TEMP_1, "plater-1 NI BATH TEMP OUT"],
                                    [ids.ALCD_EQUIPMENT_SAFETY, 501_000,
                                     "plater-1 TOOL LINK LOST"],
                                    [[], 501_741, ""]]
    assert (await host.request(5, 3, L(B(0), U4(NI_TEMP_1)))).body == B(0)
    enabled = await sv(host, ids.SV_ALARMS_ENABLED)
    assert NI_TEMP_1 not in enabled and {1, 2, 3, NI_TEMP_2, 501_000, 502_000} <= set(enabled)
    await host.close()


async def test_the_lines_interlock_alarm_is_not_a_tools(line):
    host = await line.remote_host()
    # a plater alarm, the wafer it hit held at its interlock (journal.py: "interlock"),
    # and an alarm of a tool outside the <role>-<unit> scheme (no ALID of its own)
    await line.publish(EventKind.ALARM_SET, tool="plater-1", code=700, text="NI BATH TEMP OUT",
                       wafer_id="L1-01", wafers=["L1-01"])
    await line.publish(EventKind.ALARM_SET, tool="plater-1", code="interlock",
                       text="interlock: plater-1 in alarm 700", wafer_id="L1-02",
                       wafers=["L1-02"], first=True)
    await line.publish(EventKind.ALARM_SET, tool="ep25", code=700, text="NI BATH TEMP OUT")
    await line.publish(EventKind.ALARM_CLEARED, tool="plater-1", code=700, text="")
    await line.publish(EventKind.ALARM_CLEARED, tool="ep25", code=700, text="")
    await host.count(5, 1, 5)
    assert s5f1s(host) == [(NI_TEMP_1, SET, "plater-1 NI BATH TEMP OUT"),
                           (ids.ALID_INTERLOCK, SET, "INTERLOCK"),
                           (ids.ALID_UNNUMBERED, SET, "TOOL ALARM WITHOUT ITS OWN ALID"),
                           (NI_TEMP_1, CLEAR, "plater-1 NI BATH TEMP OUT"),
                           (ids.ALID_UNNUMBERED, CLEAR, "TOOL ALARM WITHOUT ITS OWN ALID")]
    # the wafer is still held at its interlock
    assert await sv(host, ids.SV_ALARMS_SET) == [ids.ALID_INTERLOCK]
    await line.publish(EventKind.ALARM_CLEARED, tool=None, code="interlock",
                       text="no wafer held at an interlock")
    await host.count(5, 1, 6)
    assert s5f1s(host)[5] == (ids.ALID_INTERLOCK, CLEAR, "INTERLOCK")
    assert paired(s5f1s(host)) and await sv(host, ids.SV_ALARMS_SET) == []
    await host.close()


async def test_a_platers_status_variables_are_read(line):
    host = await line.remote_host()
    e10, state = 1510, 1511  # docs/gem.md: 1000 + 100 × 5 (plater) + 10 × 1 + offset
    names = await host.request(1, 11, L(U4(e10), U4(state)))
    assert names.body.python() == [[e10, "PLATER1E10STATE", ""], [state, "PLATER1TOOLSTATE", ""]]
    await line.publish(EventKind.TOOL_STATE, tool="plater-1", e10_state="productive",
                       previous=None, reason="barrier batch B-1")
    await line.publish(EventKind.TOOL_STATE, tool="plater-1", e10_state="productive",
                       tool_state="RUNNING")
    reply = await host.request(1, 3, L(U4(e10), U4(state), U4(1520), U4(1521)))
    assert reply.body.python() == ["productive", "RUNNING", "", ""]  # plater-2: not heard of
    every = [entry[0] for entry in (await host.request(1, 11, L())).body.python()]
    assert {1510, 1511, 1520, 1521} <= set(every) and 1512 not in every  # no zone temps
    await host.close()

"""Line events as the controller publishes them (controller/line/controller.py,
controller/line/journal.py)
become the collection events docs/gem.md promises: hold, resume and abort arrive as
operator requests, and a tool's first E10 report has no previous state."""

from __future__ import annotations

import math

import pytest

from controller.gem import ids
from controller.gem.secs2 import BOOLEAN, U1, U4, A, B, L
from controller.line.events import EventKind
from tests.gem_host import RECIPE, GemLine, TestHost


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    await line.start()
    yield line
    await line.close()


async def link(host: TestHost, vids: tuple[int, ...], ceids: tuple[int, ...]) -> None:
    assert (await host.request(2, 33, L(U4(1), L(L(U4(1), L(*map(U4, vids))))))).body == B(0)
    links = L(*(L(U4(c), L(U4(1))) for c in ceids))
    assert (await host.request(2, 35, L(U4(2), links))).body == B(0)
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)


def reports(messages) -> list[tuple[int, list]]:
    return [(m.body.items[1].number, m.body.items[2].items[0].items[1].python())
            for m in messages]


async def test_hold_resume_abort_requests_report_the_lot_events(line):
    host = await line.remote_host()
    await link(host, (ids.DV_LOT_ID, ids.DV_RECIPE, ids.DV_LOT_STATE, ids.DV_REASON),
               (ids.CE_LOT_HELD, ids.CE_LOT_RESUMED, ids.CE_LOT_ABORTED))
    # RPT 2: the processing state and the one before, on each change of it
    states = L(U4(ids.SV_PROCESS_STATE), U4(ids.SV_PREVIOUS_PROCESS_STATE))
    assert (await host.request(2, 33, L(U4(3), L(L(U4(2), states))))).body == B(0)
    link2 = L(L(U4(ids.CE_PROCESS_STATE_CHANGED), L(U4(2))))
    assert (await host.request(2, 35, L(U4(4), link2))).body == B(0)
    assert (await host.request(1, 3, L(U4(ids.SV_PROCESS_STATE),
                                       U4(ids.SV_PREVIOUS_PROCESS_STATE)))).body == L(
        U1(1), U1(0))  # IDLE, and INIT before it: no change yet
    start = L(A("START"), L(L(A("LOTID"), A("H1")), L(A("RECIPE"), A(RECIPE)),
                            L(A("SLOTS"), A("1")), L(A("PRIORITY"), U1(5))))
    assert (await host.request(2, 41, start)).body == L(B(4), L())
    line.store.set_lot_state("H1", "running")
    for rcmd, action, reason in (("HOLD", "hold_lot", "check paste"),
                                 ("RESUME", "resume_lot", ""),
                                 ("ABORT", "abort_lot", "wrong stencil")):
        params = [L(A("LOTID"), A("H1"))] + ([L(A("REASON"), A(reason))] if reason else [])
        assert (await host.request(2, 41, L(A(rcmd), L(*params)))).body == L(B(0), L())
        # what LineController.poll_requests publishes once it carried the request out
        await line.publish(EventKind.OPERATOR_REQUEST, lot_id="H1", wafer_id=None,
                           action=action, by="host", reason=reason, outcome="done")
    await line.publish(EventKind.OPERATOR_REQUEST, lot_id="H1", wafer_id="H1-01",
                       action="hold_wafer", by="ann", reason="look", outcome="held")
    got = reports(await host.count(6, 11, 6))
    # (1 IDLE, 2 EXECUTING, 3 PAUSE): the running lot held pauses the line, each change
    # after the lot event that made it
    assert got == [
        (ids.CE_LOT_HELD, ["H1", RECIPE, "held", "check paste"]),
        (ids.CE_PROCESS_STATE_CHANGED, [3, 1]),
        (ids.CE_LOT_RESUMED, ["H1", RECIPE, "running", ""]),
        (ids.CE_PROCESS_STATE_CHANGED, [2, 3]),
        (ids.CE_LOT_ABORTED, ["H1", RECIPE, "aborted", "wrong stencil"]),
        (ids.CE_PROCESS_STATE_CHANGED, [1, 2]),
    ]
    assert len([m for m in host.received if (m.stream, m.function) == (6, 11)]) == 6
    await host.close()


async def test_a_tools_first_e10_report_has_an_empty_previous_state(line):
    host = await line.remote_host()
    await link(host, (ids.DV_TOOL, ids.DV_E10_STATE, ids.DV_PREVIOUS_E10_STATE),
               (ids.CE_E10_STATE_CHANGED,))
    # ToolReports.tool_state: previous is None the first time it reports a tool
    await line.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="scheduled down",
                       previous=None, reason="setup for a reflow step")
    await line.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                       previous="scheduled down", reason="reflow W-01")
    assert reports(await host.count(6, 11, 2)) == [
        (ids.CE_E10_STATE_CHANGED, ["oven-1", "scheduled down", ""]),
        (ids.CE_E10_STATE_CHANGED, ["oven-1", "productive", "scheduled down"]),
    ]
    await host.close()


async def test_a_tools_status_fills_its_variables_without_an_e10_event(line):
    host = await line.remote_host()
    await link(host, (ids.DV_TOOL, ids.DV_E10_STATE), (ids.CE_E10_STATE_CHANGED,))
    await line.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                       previous=None, reason="reflow W-01")
    # ToolReports._tool_status: what the oven said of itself, no E10 change
    zones = [150.0, 170.5, None] + [200.0] * 7  # zone 3's thermocouple failed
    await line.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                       tool_state="PROCESSING", zones_c=zones)
    reply = await host.request(1, 3, L(U4(1310), U4(1311), U4(1312)))
    e10, state, temps = reply.body.items
    assert (e10.text, state.text) == ("productive", "PROCESSING")
    values = [item.scalar for item in temps.items]
    assert values[:2] == [150.0, 170.5] and math.isnan(values[2]) and values[3:] == [200.0] * 7
    await line.eq.drained_after_events()
    s6f11 = [m for m in host.received if (m.stream, m.function) == (6, 11)]
    assert reports(s6f11) == [(ids.CE_E10_STATE_CHANGED, ["oven-1", "productive"])]
    await host.close()


async def test_the_processing_state_is_read_from_the_stored_lots_at_start(line):
    host = await line.remote_host()
    start = L(A("START"), L(L(A("LOTID"), A("P1")), L(A("RECIPE"), A(RECIPE)),
                            L(A("SLOTS"), A("1"))))
    assert (await host.request(2, 41, start)).body == L(B(4), L())
    line.store.set_lot_state("P1", "running")
    line.store.set_lot_state("P1", "held")
    await host.close()
    await line.eq.close()
    await line.start()  # the equipment starts again with a held lot in the store
    host = await line.host()
    svs = L(U4(ids.SV_PROCESS_STATE), U4(ids.SV_PREVIOUS_PROCESS_STATE))
    assert (await host.request(1, 3, svs)).body == L(U1(3), U1(0))  # PAUSE, after INIT
    await host.close()


async def test_a_tool_note_reaches_the_host(line):
    host = await line.remote_host()
    await link(host, (ids.DV_WAFER_ID, ids.DV_TOOL, ids.DV_REASON), (ids.CE_TOOL_NOTE,))
    # StepContext.note of a HostLink step waiting at the tool's interlock (NAK 06)
    await line.publish(EventKind.TOOL_NOTE, lot_id="N1", wafer_id="N1-02", tool="printer-1",
                       text="LOD refused: INTERLOCK (door?); asking again every 5 s")
    assert reports(await host.count(6, 11, 1)) == [
        (ids.CE_TOOL_NOTE, ["N1-02", "printer-1",
                            "LOD refused: INTERLOCK (door?); asking again every 5 s"])]
    await host.close()

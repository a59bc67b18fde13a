"""The GEM equipment end to end on real sockets and a real database, driven by a host
written from the standards (tests/gem_host.py): establish, control state, dynamic
reports, remote commands into the store, alarms, spooling across a dropped link and
a restart, process programs through the validator, terminal services."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest

from controller.gem import ids
from controller.gem.hsms import Message
from controller.gem.secs2 import BOOLEAN, F4, I2, I4, I8, U1, U2, U4, U8, A, B, Fmt, L, decode
from controller.gem.states import CommState, ControlError, ControlState
from controller.line.events import EventKind
from controller.store import LotState, Store
from sequences.recipes.recipe import shipped_recipe_paths
from tests.gem_host import CONFIG, RECIPE, GemLine, TestHost


@pytest.fixture
async def line(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    await line.start()
    yield line
    await line.close()


async def setup_reports(host: TestHost) -> None:
    """RPT 1 = LOTID, WAFERID, STEP, OUTCOME, CONTROLSTATE; on lot/step events; all enabled."""
    vids = L(*(U4(v) for v in (ids.DV_LOT_ID, ids.DV_WAFER_ID, ids.DV_STEP, ids.DV_OUTCOME,
                               ids.SV_CONTROL_STATE)))
    drack = await host.request(2, 33, L(U4(1), L(L(U4(1), vids))))
    assert drack.body == B(0)
    links = L(*(L(U4(c), L(U4(1))) for c in (ids.CE_LOT_STARTED, ids.CE_STEP_STARTED,
                                              ids.CE_STEP_ENDED)))
    assert (await host.request(2, 35, L(U4(2), links))).body == B(0)
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)


def ceid_of(message) -> int:
    return message.body.items[1].number


def report_values(message) -> list:
    return [r.items[1].python() for r in message.body.items[2].items]


# --- establish communications and the control state -------------------------------------------


async def test_s1f13_s1f1_and_the_offline_rules(line):
    host = await line.host()
    s1f13 = host.received[0]
    assert s1f13.body == L(A("BUMPLINE-T"), A(line.eq.softrev))
    # equipment-offline: every primary but S1F13 and S1F17 gets SxF0
    assert (await host.request(1, 1)).function == 0
    assert (await host.request(2, 41, L(A("HOLD"), L()))).function == 0
    assert (await host.request(1, 17)).body == B(1)  # ONLACK 1: the operator decides
    reply = await host.request(1, 13, L())
    assert reply.body == L(B(0), L(A("BUMPLINE-T"), A(line.eq.softrev)))
    # the operator goes online; local/remote follows the switch
    assert await line.eq.operator_online() is ControlState.ONLINE_REMOTE
    s1f2 = await host.request(1, 1)
    assert s1f2.body.items[0] == A("BUMPLINE-T")  # MDLN is ours, never a library's
    assert (await host.request(1, 17)).body == B(2)  # already online
    assert (await host.request(1, 15)).body == B(0)  # host-offline
    assert line.eq.control.state is ControlState.HOST_OFFLINE
    assert (await host.request(1, 3, L())).function == 0
    assert (await host.request(1, 17)).body == B(0)
    assert line.eq.control.state is ControlState.ONLINE_REMOTE
    await host.close()


async def test_unknown_device_stream_and_function_get_s9(line):
    host = await line.remote_host()
    await host.send(replace_session(await _primary(host, 1, 3), 7))
    s9f1 = await host.primary(9, 1)
    assert len(s9f1.body.value) == 10  # MHEAD: the header we sent
    await host.send(await _primary(host, 99, 1))
    await host.primary(9, 3)
    await host.send(await _primary(host, 1, 99))
    await host.primary(9, 5)
    await host.send(await _primary(host, 2, 33, U4(5)))  # not L,2 <DATAID> <L>
    await host.primary(9, 7)
    await host.close()


async def _primary(host: TestHost, stream: int, function: int, body=None) -> Message:
    return Message(stream, function, body, True, 0x7777, host.device_id)


def replace_session(message, session: int):
    return replace(message, session=session)


async def test_control_state_and_setup_survive_a_restart(line):
    host = await line.remote_host()
    await setup_reports(host)
    assert (await host.request(5, 3, L(B(0), U4()))).body == B(0)  # disable all alarms
    assert (await host.request(2, 15, L(L(U4(ids.EC_MAX_SPOOL_TRANSMIT), U4(3))))).body == B(0)
    await host.close()
    await line.eq.close()
    eq = await line.start()
    assert eq.control.state is ControlState.ONLINE_REMOTE
    assert eq.reports.reports == {1: [200, 201, 203, 205, 1]}
    assert ids.CE_STEP_ENDED in eq.reports.enabled
    assert eq.alarms.disabled == set(eq.alarms.known)
    host = await line.host()
    ecs = await host.request(2, 13, L(U4(ids.EC_MAX_SPOOL_TRANSMIT)))
    assert ecs.body == L(U4(3))
    await host.close()


# --- data collection, events, remote commands ---------------------------------------------------


async def test_start_a_lot_and_receive_its_events_in_order(line):
    host = await line.remote_host()
    await setup_reports(host)
    params = L(L(A("LOTID"), A("L1")), L(A("RECIPE"), A(RECIPE)), L(A("SLOTS"), A("1-2")),
               L(A("PRIORITY"), U1(3)))
    reply = await host.request(2, 41, L(A("START"), params))
    assert reply.body == L(B(4), L())  # acknowledged, completion by event
    lot = line.store.get_lot("L1")
    assert (lot.state, lot.priority, lot.wafer_count, lot.created_by) == (
        LotState.QUEUED, 3, 2, "host")
    before = len(host.received)
    await line.publish(EventKind.LOT_STATE, lot_id="L1", state="running", previous="queued",
                       recipe=RECIPE)
    for step in (1, 2):
        await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                           tool="printer-1", step=step, step_kind="print")
        await line.publish(EventKind.STEP_ENDED, lot_id="L1", wafer_id="L1-01",
                           tool="printer-1", step=step, step_kind="print", outcome="ok",
                           measurements={"vol_mean_pct": 101.5})
    reports = await host.count(6, 11, 6)
    # the lot running moves the processing state IDLE -> EXECUTING, after the lot's event
    assert [ceid_of(m) for m in reports] == [ids.CE_LOT_STARTED,
                                             ids.CE_PROCESS_STATE_CHANGED] + [
        ids.CE_STEP_STARTED, ids.CE_STEP_ENDED] * 2
    assert report_values(reports[0]) == [["L1", "", [], [], 5]]  # DVs outside their event: L,0
    assert report_values(reports[1]) == []  # enabled, nothing linked
    assert report_values(reports[5]) == [["L1", "L1-01", 2, "ok", 5]]
    assert all(m.wbit for m in host.received[before:])
    # status variables read the store
    svs = await host.request(1, 3, L(U4(ids.SV_QUEUED_LOTS), U4(ids.SV_CONTROL_STATE)))
    assert svs.body == L(L(A("L1")), U1(5))
    await host.close()


async def test_remote_commands_refused_with_the_reason(line):
    host = await line.remote_host()

    async def command(rcmd, *params):
        reply = await host.request(2, 41, L(A(rcmd), L(*(L(A(n), v) for n, v in params))))
        return reply.body.python()

    assert await command("FLY") == [1, []]
    assert await command("START", ("LOTID", A("L2")), ("RECIPE", A("no-such")),
                         ("SLOTS", A("1"))) == [3, [["RECIPE", 2]]]
    assert await command("START", ("LOTID", A("L2")), ("RECIPE", A("../etc/x")),
                         ("SLOTS", A("1"))) == [3, [["RECIPE", 2]]]
    assert await command("START", ("LOTID", A("L2")), ("COLOUR", A("red"))) == [3, [["COLOUR", 1]]]
    assert await command("START", ("LOTID", U4(2)), ("RECIPE", A(RECIPE)),
                         ("SLOTS", A("1"))) == [3, [["LOTID", 3]]]
    assert await command("HOLD", ("LOTID", A("NOPE"))) == [6, [["LOTID", 2]]]
    # S2F49 with a slot list and PP-SELECT's recipe
    assert await command("PP-SELECT", ("PPID", A(RECIPE))) == [0, []]
    reply = await host.request(2, 49, L(U4(1), A(""), A("START"), L(
        L(A("LOTID"), A("L3")), L(A("SLOTS"), L(U1(2), U1(4))))))
    assert reply.function == 50 and reply.body.python() == [4, []]
    assert [w.slot for w in line.store.wafers("L3")] == [2, 4]
    assert line.store.get_lot("L3").recipe_name == RECIPE
    assert await command("HOLD", ("LOTID", A("L3")), ("REASON", A("MES says"))) == [0, []]
    assert line.store.get_lot("L3").state == LotState.HELD
    assert await command("ABORT", ("LOTID", A("L3"))) == [3, [["REASON", 2]]]
    assert await command("ABORT", ("LOTID", A("L3")), ("REASON", A("bad carrier"))) == [0, []]
    audit = line.store.audit_log(lot_id="L3")
    # No controller runs L3: each change is carried out at once and its request answered
    # (Store.act_on_lot, as `bumpline lot hold/abort` do), none left pending for nobody.
    assert [(a.actor, a.action) for a in audit if a.wafer_id is None] == [
        ("host", "lot.start"), ("host", "lot.hold"), ("host", "request.hold_lot.handled"),
        ("host", "lot.abort"), ("host", "request.abort_lot.handled")]
    assert line.store.pending_requests("L3") == []
    # and the abort's transitions of the wafers still in the carrier (decision 0020)
    assert [(a.wafer_id, a.detail) for a in audit if a.wafer_id is not None] == [
        (w.id, "queued -> aborted (abort): bad carrier") for w in line.store.wafers("L3")]
    # online-local: remote commands are refused with HCACK 2 (E30)
    assert line.eq.operator_remote(False) is ControlState.ONLINE_LOCAL
    assert await command("START", ("LOTID", A("L4")), ("RECIPE", A(RECIPE)),
                         ("SLOTS", A("1"))) == [2, []]
    assert not [lot for lot in line.store.list_lots() if lot.id == "L4"]
    trail = [a.detail for a in line.store.audit_log() if a.action == "gem.rcmd"]
    assert trail[0] == "FLY(): refused, HCACK 1: no remote command 'FLY'"
    assert trail[-1].startswith("START(LOTID=L4, RECIPE=rebump-hipb-snpb, SLOTS=1): refused, "
                                "HCACK 2: control state is online-local")
    await host.close()


# --- alarms ---------------------------------------------------------------------------------


async def test_alarm_set_and_cleared_reach_the_host_without_waiting(line):
    host = await line.remote_host()
    alid = 300_000 + 1000 + 540  # oven-1, O2 HIGH
    line.stream.publish(EventKind.ALARM_SET, tool="oven-1", code=540, text="O2 HIGH")
    # publishing returned at once; the report follows
    s5f1 = await host.primary(5, 1)
    assert s5f1.body == L(B(0x80 | 7), U4(alid), A("oven-1 O2 HIGH"))  # E5: 7 attention
    listed = await host.request(5, 5, U4(alid))
    assert listed.body == L(L(B(0x80 | ids.ALCD_ATTENTION), U4(alid), A("oven-1 O2 HIGH")))
    assert (await host.request(1, 3, L(U4(ids.SV_ALARMS_SET)))).body == L(L(U4(alid)))
    line.stream.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=540, text="O2 HIGH")
    cleared = (await host.count(5, 1, 2))[1]
    assert cleared.body.items[0] == B(ids.ALCD_ATTENTION)
    assert (await host.request(5, 3, L(B(0), U4(alid)))).body == B(0)
    assert alid not in [e.items[1].number for e in (await host.request(5, 7)).body.items]
    assert (await host.request(5, 3, L(B(0x80), U4(1234567)))).body == B(1)
    await host.close()


# --- spooling ---------------------------------------------------------------------------------


async def test_spooled_while_the_link_is_down_and_delivered_in_order_after(line):
    host = await line.remote_host()
    await setup_reports(host)
    await host.close()
    await line.eq.server.connection.closed.wait()
    for step in (1, 2, 3):
        await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                           tool="oven-1", step=step, step_kind="reflow")
    line.stream.publish(EventKind.ALARM_SET, tool="oven-1", code=520, text="CONVEYOR JAM")
    await line.eq.drained_after_events()
    # SPOOLINGACTIVATED, 3 steps, S5F1, ALARMSET and the alarm's own set event (all
    # events are enabled)
    assert line.eq.db.spool_count() == 7
    # a restart in between loses nothing
    await line.eq.close()
    eq = await line.start()
    host = await line.host()
    svs = await host.request(1, 3, L(U4(ids.SV_SPOOL_COUNT_ACTUAL)))
    assert svs.body == L(U4(7))
    live_before = len(host.received)
    assert (await host.request(6, 23, U1(0))).body == B(0)
    await host.count(6, 11, 7)  # the spool, then SPOOLINGDEACTIVATED
    delivered = host.received[live_before:]
    assert [(m.stream, m.function) for m in delivered] == [(6, 11)] * 4 + [(5, 1)] + [(6, 11)] * 3
    assert [ceid_of(m) for m in delivered[:1] + delivered[5:]] == [
        ids.CE_SPOOLING_ACTIVATED, ids.CE_ALARM_SET, ids.alarm_ceid(301_520, is_set=True),
        ids.CE_SPOOLING_DEACTIVATED]
    assert [report_values(m)[0][2] for m in delivered[1:4]] == [1, 2, 3]
    await eq.drained()
    assert eq.db.spool_count() == 0
    assert (await host.request(6, 23, U1(0))).body == B(2)  # nothing spooled
    await host.close()


async def test_spool_limit_and_purge(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'small.db'}", replace(CONFIG, spool_limit=2))
    await line.start()
    try:
        host = await line.remote_host()
        assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)
        await host.close()
        await line.eq.server.connection.closed.wait()
        for step in (1, 2, 3):
            await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                               step=step, step_kind="print")
        # OVERWRITESPOOL false: the oldest are kept (SPOOLINGACTIVATED and step 1)
        assert [s.what for s in line.eq.db.spooled()] == [
            f"CEID {ids.CE_SPOOLING_ACTIVATED}", f"CEID {ids.CE_STEP_STARTED}"]
        state = line.eq.db.spool_state()
        assert (state["total"], state["full"], state["lost"]) == (4, True, 2)
        host = await line.host()
        assert (await host.request(6, 23, U1(1))).body == B(0)  # purge
        assert line.eq.db.spool_count() == 0
        # the spool emptied by the purge: SPOOL INACTIVE, reported
        assert ceid_of(await host.primary(6, 11)) == ids.CE_SPOOLING_DEACTIVATED
        assert (await host.request(6, 23, U1(1))).body == B(2)  # nothing spooled
        await host.close()
    finally:
        await line.close()


# --- process programs and terminal services -------------------------------------------------


def shipped(name: str) -> str:
    return shipped_recipe_paths()[name].read_text(encoding="utf-8")


async def test_process_programs_validated_versioned_listed(line):
    host = await line.remote_host()
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)
    good = shipped(RECIPE).replace(f'name = "{RECIPE}"', 'name = "gem-ok"')
    remelt = good.replace('name = "gem-ok"', 'name = "gem-remelt"').replace(
        "peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]")
    assert (await host.request(7, 1, L(A("gem-ok"), U4(len(good))))).body == B(0)
    assert (await host.request(7, 3, L(A("gem-ok"), A(good)))).body == B(0)
    assert (await host.request(7, 3, L(A("gem-ok"), A(good)))).body == B(0)  # same: idempotent
    changed = good.replace("squeegee_kgf = 6.0", "squeegee_kgf = 6.5")
    assert (await host.request(7, 3, L(A("gem-ok"), A(changed)))).body == B(1)
    refused = await host.request(7, 3, L(A("gem-remelt"), A(remelt)))
    assert refused.body == B(1)  # ACKC7 1: permission not granted (6 would accept it)
    notices = await host.count(10, 1, 2)
    assert "version 1 is already stored" in notices[0].body.items[1].text
    reason = notices[1].body.items[1].text
    assert reason.startswith("PP gem-remelt refused:") and "rebump" in reason
    assert "308 degC" in reason and "<= 288 degC" in reason  # the validator's numbers
    events = await host.count(6, 11, 3)
    assert [ceid_of(m) for m in events] == [ids.CE_PP_CHANGED, ids.CE_PP_REFUSED,
                                            ids.CE_PP_REFUSED]
    names = (await host.request(7, 19)).body.python()
    assert "gem-ok" in names and RECIPE in names and "gem-remelt" not in names
    upload = await host.request(7, 5, A("gem-ok"))
    assert upload.body == L(A("gem-ok"), B(*good.encode("utf-8")))  # "°C": not ASCII
    assert (await host.request(7, 5, A("nothing"))).body == L()
    assert (await host.request(7, 17, L(A(RECIPE)))).body == B(1)  # shipped: not the host's
    assert (await host.request(7, 17, L(A("gem-ok")))).body == B(0)
    assert (await host.request(7, 5, A("gem-ok"))).body == L()
    assert (await host.request(7, 3, L(A("gem-ok"), A(good)))).body == B(0)  # back again
    assert (await host.request(7, 5, A("gem-ok"))).body.items[1] == B(*good.encode("utf-8"))
    await host.close()


async def test_terminal_messages_both_ways(line):
    host = await line.remote_host()
    assert (await host.request(10, 3, L(B(0), A("call the MES desk")))).body == B(0)
    assert line.terminal == ["call the MES desk"]
    line.eq.terminal.to_host("oven-1 PM done")
    s10f1 = await host.primary(10, 1)
    assert s10f1.body == L(B(0), A("oven-1 PM done"))
    await host.close()


async def test_status_and_constants_namelists(line):
    host = await line.remote_host()
    names = (await host.request(1, 11, L(U4(ids.SV_CONTROL_STATE), U4(1211), U4(999)))).body
    assert names.python() == [[1, "CONTROLSTATE", ""], [1211, "PLACER1TOOLSTATE", ""],
                              [999, "", ""]]
    assert (await host.request(2, 15, L(L(U4(ids.EC_TIME_FORMAT), U1(7))))).body == B(3)
    assert (await host.request(2, 15, L(L(U4(4242), U1(1))))).body == B(1)
    ec = (await host.request(2, 29, L(U4(ids.EC_MAX_SPOOL_SIZE)))).body.items[0]
    assert ec.python() == [ids.EC_MAX_SPOOL_SIZE, "MAXSPOOLSIZE", 1, 1_000_000, 10_000,
                           "messages"]
    namelist = (await host.request(1, 23, L(U4(ids.CE_ALARM_SET)))).body
    assert namelist.python() == [[ids.CE_ALARM_SET, "ALARMSET",
                                  [ids.DV_ALID, ids.DV_ALTX, ids.DV_TOOL]]]
    line.stream.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                        previous="standby", tool_state="PROCESSING", zones_c=[150.0, 175.5])
    await line.eq.drained_after_events()
    svs = await host.request(1, 3, L(U4(1310), U4(1311), U4(1312)))
    assert svs.body.python() == ["productive", "PROCESSING", [150.0, 175.5]]
    assert svs.body.items[2].items[0].fmt is Fmt.F4
    await host.close()


async def test_close_is_clean_with_a_host_attached(line):
    host = await line.remote_host()
    await line.eq.close()
    with contextlib.suppress(Exception):
        await host.close(separate=False)
    assert line.eq.comm is CommState.DISABLED
    line.eq = None


async def test_a_body_that_is_not_secs2_gets_s9f7_and_the_link_stays(line):
    host = await line.remote_host()
    # S1F3 W, system 0x99, body: an A item that claims 5 bytes and has 1
    header = bytes.fromhex("0000 8103 0000 00000099")
    await host.send_raw(len(header + b"\x41\x05A").to_bytes(4, "big") + header + b"\x41\x05A")
    s9f7 = await host.primary(9, 7)
    assert bytes(s9f7.body.value) == header
    assert (await host.request(1, 1)).function == 2  # still selected and answering
    await host.close()


async def test_closing_spools_what_the_host_has_not_acknowledged(line):
    host = await line.remote_host()
    await setup_reports(host)

    async def silent(message):  # the host stops acknowledging
        pass

    host._answer = silent
    for step in (1, 2, 3):  # the first is in flight, the others wait behind it
        line.stream.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                            step=step, step_kind="print")
    await host.count(6, 11, 1)
    await line.eq.close()  # stopping the controller loses none of them
    eq = await line.start()
    activated, *steps = [decode_body(s) for s in eq.db.spooled()]
    assert ceid_of(activated) == ids.CE_SPOOLING_ACTIVATED  # ahead of what activated it
    assert [report_values(m)[0][2] for m in steps] == [1, 2, 3]


def decode_body(spooled):
    return Message(spooled.stream, spooled.function, decode(spooled.body))


async def test_a_report_without_reply_in_t3_is_a_communication_failure(line):
    host = await line.remote_host()
    await setup_reports(host)
    # S1F13 again one second after the failure (ESTABLISHCOMMUNICATIONSTIMEOUT's minimum)
    assert (await host.request(2, 15, L(L(U4(ids.EC_ESTABLISH_COMM_DELAY), U2(1))))).body \
        == B(0)
    answer = host._answer
    silent_once = []

    async def drop_first_s6f11(message):  # the host misses one report
        if (message.stream, message.function) == (6, 11) and not silent_once:
            silent_once.append(message)
            return
        await answer(message)

    host._answer = drop_first_s6f11
    before = len(host.received)
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                       tool="oven-1", step=1, step_kind="reflow")
    assert line.eq.db.spool_count() == 2  # after T3: spooled (SPOOLINGACTIVATED first)
    assert line.eq.comm is not CommState.COMMUNICATING
    await host.primary(9, 9, after=before)  # E5: the host is told of the T3
    # not communicating: the host's primaries get SxF0 until S1F13/S1F14 again
    s1f13 = await host.primary(1, 13, after=before)  # the equipment re-establishes
    await line.eq.communicating()
    assert host.received.index(s1f13) > host.received.index(silent_once[0])
    # communicating again; later reports queue behind the spooled one, offered by S6F23
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01",
                       tool="oven-1", step=2, step_kind="reflow")
    assert line.eq.db.spool_count() == 3
    live_before = len(host.received)
    assert (await host.request(6, 23, U1(0))).body == B(0)
    delivered = await host.count(6, 11, 5)
    assert [ceid_of(m) for m in delivered[1:]] == [
        ids.CE_SPOOLING_ACTIVATED, ids.CE_STEP_STARTED, ids.CE_STEP_STARTED,
        ids.CE_SPOOLING_DEACTIVATED]
    assert [report_values(m)[0][2] for m in delivered[2:4]] == [1, 2]
    assert host.received.index(delivered[1]) >= live_before
    await line.eq.drained()
    assert line.eq.db.spool_count() == 0
    await host.close()


async def test_s2f15_takes_only_values_of_each_constants_type_all_or_nothing(line):
    host = await line.remote_host()

    async def s2f15(*pairs):
        return (await host.request(2, 15, L(*(L(U4(e), v) for e, v in pairs)))).body

    async def s2f13(*ecids):
        return (await host.request(2, 13, L(*(U4(e) for e in ecids)))).body

    delay, size, overwrite, fmt = (ids.EC_ESTABLISH_COMM_DELAY, ids.EC_MAX_SPOOL_SIZE,
                                   ids.EC_OVERWRITE_SPOOL, ids.EC_TIME_FORMAT)
    assert await s2f15((delay, F4(2.5))) == B(3)  # an integer constant: no float
    assert await s2f15((size, BOOLEAN(True))) == B(3)  # nor a boolean
    assert await s2f15((overwrite, U1(1))) == B(3)  # a boolean constant: BOOLEAN only
    assert await s2f15((delay, A("20"))) == B(3)
    assert await s2f15((delay, U4(20, 30))) == B(3)  # one value, not an array
    # one value refused: nothing of the message is stored (E30: all or nothing)
    assert await s2f15((fmt, U1(0)), (delay, F4(20.0))) == B(3)
    assert await s2f13(delay, size, overwrite, fmt) == L(U2(10), U4(10_000), BOOLEAN(False),
                                                        U1(1))
    assert await s2f15((fmt, I2(0)), (delay, U4(20)), (overwrite, BOOLEAN(True))) == B(0)
    assert await s2f13(delay, overwrite, fmt) == L(U2(20), BOOLEAN(True), U1(0))
    await host.close()


async def test_a_stored_constant_of_the_wrong_type_falls_back_to_its_default(line):
    # a database written before S2F15 checked formats: an F4 and a BOOLEAN stored
    line.eq.db.save("constants", {str(ids.EC_ESTABLISH_COMM_DELAY): 2.5,
                                  str(ids.EC_MAX_SPOOL_SIZE): True,
                                  str(ids.EC_MAX_SPOOL_TRANSMIT): 7})
    await line.eq.close()
    await line.start()
    host = await line.remote_host()
    ecs = await host.request(2, 13, L(U4(ids.EC_ESTABLISH_COMM_DELAY), U4(ids.EC_MAX_SPOOL_SIZE),
                                      U4(ids.EC_MAX_SPOOL_TRANSMIT)))
    assert ecs.body == L(U2(10), U4(10_000), U4(7))  # not S9F7
    await host.close()


async def test_text_we_send_is_ascii_and_no_character_loses_a_report(line):
    host = await line.remote_host()
    names = (await host.request(1, 11, L(U4(1312)))).body  # oven-1 zone temperatures
    assert names.python() == [[1312, "OVEN1ZONETEMPS", "degC"]]  # not the byte 0xB0
    rpt = L(U4(2), L(L(U4(2), L(U4(ids.DV_WAFER_ID), U4(ids.DV_REASON)))))
    assert (await host.request(2, 33, rpt)).body == B(0)
    link = L(U4(3), L(L(U4(ids.CE_WAFER_TRANSITION), L(U4(2)))))
    assert (await host.request(2, 35, link)).body == B(0)
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)
    # "–" is outside Latin-1: the encoder refused it, and the report was neither sent
    # nor spooled; "✓" has no ASCII form at all
    for n, why in enumerate(("bath 5 °C low – held", "checked ✓")):
        await line.publish(EventKind.WAFER_TRANSITION, lot_id="L1", wafer_id=f"L1-0{n + 1}",
                           to_state="held", why=why)
    reports = await host.count(6, 11, 2)
    assert [report_values(m)[0] for m in reports] == [
        ["L1-01", "bath 5 degC low - held"], ["L1-02", "checked ?"]]
    assert [m.body.items[0].number for m in reports] == [1, 2]  # no DATAID skipped
    await host.close()



async def test_a_report_spooled_with_text_outside_latin1_is_kept_and_ascii(line):
    host = await line.remote_host()
    rpt = L(U4(2), L(L(U4(2), L(U4(ids.DV_WAFER_ID), U4(ids.DV_REASON)))))
    assert (await host.request(2, 33, rpt)).body == B(0)
    link = L(U4(3), L(L(U4(ids.CE_WAFER_TRANSITION), L(U4(2)))))
    assert (await host.request(2, 35, link)).body == B(0)
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)
    await host.close()
    await line.eq.server.connection.closed.wait()
    # spooled while the link is down: "–" has no 8-bit form, so unconverted it could
    # not be encoded into the spool and the report would be lost
    await line.publish(EventKind.WAFER_TRANSITION, lot_id="L1", wafer_id="L1-01",
                       to_state="held", why="bath 5 °C low – held")
    assert line.eq.db.spool_count() == 2  # SPOOLINGACTIVATED, then the transition
    host = await line.host()
    assert (await host.request(6, 23, U1(0))).body == B(0)
    _activated, report, _deactivated = await host.count(6, 11, 3)
    assert report_values(report)[0] == ["L1-01", "bath 5 degC low - held"]
    await host.close()


async def test_e5_codes_for_what_does_not_exist_or_is_already_so(line):
    host = await line.remote_host()
    # S5F5 of an unknown ALID: zero-length ALCD and ALTX
    assert (await host.request(5, 5, U4(999))).body == L(L(B(), U4(999), A("")))
    # S2F29: no minimum, maximum or default is a zero-length A (never a list)
    ecs = (await host.request(2, 29, L(U4(ids.EC_OVERWRITE_SPOOL), U4(4242)))).body.items
    assert ecs[0] == L(U4(ids.EC_OVERWRITE_SPOOL), A("OVERWRITESPOOL"), A(""), A(""),
                       BOOLEAN(False), A(""))
    assert ecs[1] == L(U4(4242), *(A("") for _ in range(5)))
    # S1F3 naming an ECID (or a DVID): not a status variable, a zero-length item
    svs = await host.request(1, 3, L(U4(ids.EC_MAX_SPOOL_SIZE), U4(ids.DV_LOT_ID),
                                     U4(ids.SV_CONTROL_STATE)))
    assert svs.body == L(L(), L(), U1(5))
    # S10F3 to a terminal we do not have: ACKC10 2, nothing displayed
    assert (await host.request(10, 3, L(B(1), A("to TID 1")))).body == B(2)
    assert line.terminal == []
    # S2F33 deleting a report that is not defined: nothing to do, DRACK 0
    assert (await host.request(2, 33, L(U4(1), L(L(U4(99), L()))))).body == B(0)
    # HOLD of a held lot: HCACK 5, already in the desired condition
    start = L(A("START"), L(L(A("LOTID"), A("H1")), L(A("RECIPE"), A(RECIPE)),
                            L(A("SLOTS"), A("1"))))
    assert (await host.request(2, 41, start)).body.python() == [4, []]
    hold = L(A("HOLD"), L(L(A("LOTID"), A("H1"))))
    assert (await host.request(2, 41, hold)).body.python() == [0, []]
    assert (await host.request(2, 41, hold)).body.python() == [5, []]
    await host.close()


async def test_terminal_text_is_not_held_behind_the_spool(line):
    host = await line.remote_host()
    assert (await host.request(2, 37, L(BOOLEAN(True), L()))).body == B(0)
    await host.close()
    await line.eq.server.connection.closed.wait()
    await line.publish(EventKind.STEP_STARTED, lot_id="L1", wafer_id="L1-01", step=1,
                       step_kind="print")
    assert line.eq.db.spool_count() == 2  # SPOOLINGACTIVATED and the step
    host = await line.host()
    line.eq.terminal.to_host("oven-1 PM done")  # communicating, the spool not asked for yet
    assert (await host.primary(10, 1)).body == L(B(0), A("oven-1 PM done"))
    assert line.eq.db.spool_count() == 2
    await host.close()


async def test_the_operator_cannot_bring_a_host_offline_equipment_online(line):
    host = await line.remote_host()
    assert (await host.request(1, 15)).body == B(0)
    with pytest.raises(ControlError, match="only the host"):
        await line.eq.operator_online()
    assert line.eq.control.state is ControlState.HOST_OFFLINE
    assert (await host.request(1, 17)).body == B(0)  # the host does
    assert line.eq.control.state is ControlState.ONLINE_REMOTE
    await host.close()


async def test_alarms_and_events_enabled_status_variables(line):
    host = await line.remote_host()
    o2_high, jam = 301_540, 301_520
    assert (await host.request(5, 3, L(B(0), U4()))).body == B(0)  # every alarm disabled
    assert (await host.request(5, 3, L(B(0x80), L(U4(jam), U4(o2_high))))).body == B(0)
    events = L(U4(ids.CE_LOT_STARTED), U4(ids.CE_ALARM_SET))
    assert (await host.request(2, 37, L(BOOLEAN(True), events))).body == B(0)
    svs = await host.request(1, 3, L(U4(ids.SV_ALARMS_ENABLED), U4(ids.SV_EVENTS_ENABLED)))
    assert svs.body.python() == [[jam, o2_high], [ids.CE_LOT_STARTED, ids.CE_ALARM_SET]]
    names = await host.request(1, 11, L(U4(ids.SV_ALARMS_ENABLED), U4(ids.SV_EVENTS_ENABLED)))
    assert [n[1] for n in names.body.python()] == ["ALARMSENABLED", "EVENTSENABLED"]
    await host.close()


# --- what a host may get wrong: answered, named, and the session stays ----------------------


async def test_each_bad_start_parameter_is_named_and_the_link_stays(line):
    host = await line.remote_host()

    async def start(**params):
        body = L(A("START"), L(*(L(A(n), v) for n, v in params.items())))
        return (await host.request(2, 41, body)).body.python()

    good = {"LOTID": A("N1"), "RECIPE": A(RECIPE), "SLOTS": A("1-2")}
    for slots in (A("abc"), A(""), A("3-1"), A("1,1"), A("1-99"), L(U1(1), U1(99)), L()):
        assert await start(**{**good, "SLOTS": slots}) == [3, [["SLOTS", 2]]], slots
    assert await start(**{**good, "LOTID": A("no spaces")}) == [3, [["LOTID", 2]]]
    assert await start(**{**good, "PRIORITY": U1(99)}) == [3, [["PRIORITY", 2]]]
    assert await start(**good) == [4, []]
    assert await start(**good) == [3, [["LOTID", 2]]]  # lot ids are never reused
    pp_select = L(A("PP-SELECT"), L(L(A("PPID"), A("no-such-recipe"))))
    assert (await host.request(2, 41, pp_select)).body.python() == [3, [["PPID", 2]]]
    # E5 allows RCMD as U1 or I1: ours are all named, so no such command (not S9F7)
    assert (await host.request(2, 41, L(U1(3), L()))).body.python() == [1, []]
    assert (await host.request(1, 1)).function == 2  # the session is still up
    assert not host.closed.is_set()
    await host.close()


async def test_resume_of_a_lot_not_held_and_abort_of_an_aborted_one_are_already_so(line):
    host = await line.remote_host()

    async def command(rcmd, **params):
        body = L(A(rcmd), L(*(L(A(n), v) for n, v in params.items())))
        return (await host.request(2, 41, body)).body.python()

    assert await command("START", LOTID=A("Q1"), RECIPE=A(RECIPE), SLOTS=A("1")) == [4, []]
    assert await command("RESUME", LOTID=A("Q1")) == [5, []]  # queued: not held
    assert await command("ABORT", LOTID=A("Q1"), REASON=A("carrier")) == [0, []]
    assert await command("ABORT", LOTID=A("Q1"), REASON=A("again")) == [5, []]
    assert await command("RESUME", LOTID=A("Q1")) == [5, []]  # aborted: not held either
    assert line.store.get_lot("Q1").state == LotState.ABORTED
    # a reason longer than the line keeps is a wrong parameter, named (not HCACK 2)
    assert await command("START", LOTID=A("Q2"), RECIPE=A(RECIPE), SLOTS=A("1")) == [4, []]
    assert await command("HOLD", LOTID=A("Q2"), REASON=A("x" * 501)) == [3, [["REASON", 2]]]
    assert line.store.get_lot("Q2").state == LotState.QUEUED
    await host.close()


async def test_a_fault_of_ours_aborts_the_transaction_not_the_session(line, monkeypatch):
    host = await line.remote_host()

    async def broken(message):
        raise RuntimeError("a fault no message from the host should cause")

    monkeypatch.setitem(line.eq._handlers, (1, 3), broken)
    assert (await host.request(1, 3, L())).function == 0  # S1F0: transaction aborted
    assert (await host.request(1, 1)).function == 2  # the session is still up
    # a program whose version no database INTEGER holds is refused by the validator
    huge = shipped(RECIPE).replace(f'name = "{RECIPE}"', 'name = "mine"').replace(
        "version = 1", f"version = {2**63}")
    assert huge != shipped(RECIPE).replace(f'name = "{RECIPE}"', 'name = "mine"')
    assert (await host.request(7, 3, L(A("mine"), A(huge)))).body == B(1)
    assert (await host.request(1, 1)).function == 2
    await host.close()


async def test_ids_the_host_sends_in_any_integer_format(line):
    host = await line.remote_host()
    # an id no U4 holds is simply not one of ours: echoed in a format that holds it
    assert (await host.request(1, 11, L(I4(-1)))).body == L(L(I8(-1), A(""), A("")))
    assert (await host.request(5, 5, L(U8(2**40)))).body == L(L(B(), U8(2**40), A("")))
    known = await host.request(1, 11, L(U2(ids.SV_CONTROL_STATE)))
    assert known.body.items[0].items[0] == U4(ids.SV_CONTROL_STATE)  # ours go out as U4
    # RPTID: text, or a number S6F11 could not carry as U4, is refused (DRACK 2)
    vids = L(U4(ids.DV_LOT_ID))
    assert (await host.request(2, 33, L(U4(1), L(L(A("R9"), vids))))).body == B(2)
    assert (await host.request(2, 33, L(U4(1), L(L(U8(2**33), vids))))).body == B(2)
    assert (await host.request(2, 33, L(U4(1), L(L(U2(7), vids))))).body == B(0)
    await host.close()


async def test_an_abort_no_controller_can_carry_out_is_refused_to_the_host(line):
    """The host's ABORT of a lot with a wafer in a tool and no controller running it: HCACK
    2 (cannot perform now) and nothing changed, as `bumpline lot abort` refuses it."""
    host = await line.remote_host()
    start = L(A("START"), L(L(A("LOTID"), A("P1")), L(A("RECIPE"), A(RECIPE)),
                            L(A("SLOTS"), A("1-2"))))
    assert (await host.request(2, 41, start)).body.python() == [4, []]
    line.store.set_lot_state("P1", "running")
    line.store.record_transition("P1-01", "queued", "step1_waiting", "start",
                                 location="printer-1")
    abort = L(A("ABORT"), L(L(A("LOTID"), A("P1")), L(A("REASON"), A("MES says"))))
    assert (await host.request(2, 41, abort)).body.python() == [2, []]
    assert line.store.get_lot("P1").state == "running"
    assert line.store.pending_requests("P1") == []
    await host.close()


async def test_the_equipment_of_one_line_starts_reports_and_commands_its_own_lots(tmp_path):
    """Lines share one database: bay-A's host started lots for any line, counted bay-B's
    running lots as its own (RUNNINGLOTS, WAFERSINPROCESS) and held bay-B's lot."""
    url = f"sqlite:///{tmp_path / 'gem.db'}"
    line = GemLine(url, line_id="bay-A")
    await line.start()
    try:
        with Store(url, line_id="bay-B") as bay_b:
            bay_b.create_lot("LB", recipe_name=RECIPE, recipe_version="1", recipe_hash="0" * 64,
                             slots=[1, 2], user="b", line_id="bay-B")
            bay_b.set_lot_state("LB", "running")
        host = await line.remote_host()
        start = L(A("START"), L(L(A("LOTID"), A("LA")), L(A("RECIPE"), A(RECIPE)),
                                L(A("SLOTS"), A("1"))))
        assert (await host.request(2, 41, start)).body.python() == [4, []]
        assert line.store.get_lot("LA").line_id == "bay-A"
        hold = L(A("HOLD"), L(L(A("LOTID"), A("LB")), L(A("REASON"), A("MES"))))
        assert (await host.request(2, 41, hold)).body.python() == [6, [["LOTID", 2]]]
        assert line.store.get_lot("LB").state == "running"
        snapshot = line.eq.commands.snapshot()
        assert snapshot.running_lots == () and snapshot.wafers_in_process == 0
        assert snapshot.queued_lots == ("LA",)
        await host.close()
    finally:
        await line.close()

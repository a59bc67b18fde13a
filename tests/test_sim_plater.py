"""The simulated EP-25 plater as a pure model (manual tool time), then its TCP server:
the spec's commands, refusals, steps and times, the nickel rate, baths, alarms and the
event log that survives a power loss."""

from __future__ import annotations

import asyncio
import json

import pytest

from sim.clock import ManualClock
from sim.faults import parse_tool_faults
from sim.plater import PlaterModel
from sim.plater_process import EVENT_LOG_SIZE, STEPS, nickel_rate_um_s
from sim.plater_server import PlaterServer, PlaterStateError

HEAT_UP_S = 2100  # nickel 25 -> 84 °C at 0.03 °C/s takes 1,967 s; gold is sooner


def ready(seed: int = 0) -> PlaterModel:
    m = PlaterModel(seed=seed)
    m.advance(HEAT_UP_S)
    return m


def ok(m: PlaterModel, line: str, t: float | None = None) -> str:
    reply = m.handle(line, m.time if t is None else t)
    assert reply.startswith("OK"), (line, reply)
    return reply


def events(m: PlaterModel) -> list[tuple[str, ...]]:
    return [tuple(line.split(" ")[1:]) for line in m.drain_events()]


def run_until_state(m: PlaterModel, state: str, limit_s: float = 20_000) -> float:
    start = m.time
    while m.state.value != state:
        assert m.time - start < limit_s, f"still {m.state} after {limit_s} s"
        m.advance(m.time + 1)
    return m.time - start


def step_times(m: PlaterModel) -> dict[str, float]:
    """Tool seconds each step of the running batch took, from its STEP events."""
    assert m.batch is not None
    starts = {STEPS[m.batch.step]: m.time - m.batch.step_elapsed_s}
    while m.state.value == "RUNNING":
        for e in events(m):
            if e[0] == "STEP" and e[1] not in starts:
                starts[e[1]] = m.time
        m.advance(m.time + 1)
    starts["END"] = m.time
    names = [*starts]
    return {names[i]: starts[names[i + 1]] - starts[names[i]] for i in range(len(names) - 1)}


def test_power_up_identity_and_state() -> None:
    m = PlaterModel()
    assert m.handle("*IDN?", 0) == "OK BARRIERTEK,EP-25,EP25-0117,1.3.0"
    assert m.handle("STATE?", 0) == "OK IDLE - - 0"
    assert m.handle("RECIPE?", 0) == "OK 3 0.08 85 80"
    assert m.handle("BATH?", 0) == "OK 25.0 25.0 4.80 0.00 100.0"
    assert m.handle("RESULT?", 0) == "ERR 02 UNKNOWN"
    assert m.handle("ALARM?", 0) == "OK 0 NONE"
    assert events(m) == [("STATE", "IDLE")]  # pushed at power-up


@pytest.mark.parametrize(("line", "reply"), [
    ("FOO", "ERR 01 SYNTAX"),
    ("STATE? now", "ERR 01 SYNTAX"),
    ("RECIPE 3 0.08 85", "ERR 01 SYNTAX"),
    ("RECIPE 9 0.08 85 80", "ERR 03 RANGE"),
    ("RECIPE 3 0.2 85 80", "ERR 03 RANGE"),
    ("RECIPE 3 0.08 79 80", "ERR 03 RANGE"),
    ("LOAD B1 " + ",".join(f"W{i}" for i in range(26)), "ERR 03 RANGE"),
    ("LOAD B1 W1,W1", "ERR 03 RANGE"),
    ("LOAD B1234567890123456 W1", "ERR 03 RANGE"),
    ("START", "ERR 04 WRONG STATE"),
    ("UNLOAD", "ERR 04 WRONG STATE"),
    ("ABORT", "ERR 04 WRONG STATE"),
    ("CLEAR", "ERR 04 WRONG STATE"),
])
def test_refusals_change_nothing(line: str, reply: str) -> None:
    m = ready()
    events(m)
    assert m.handle(line, m.time) == reply
    assert m.handle("STATE?", m.time) == "OK IDLE - - 0"
    assert m.handle("RECIPE?", m.time) == "OK 3 0.08 85 80"
    assert events(m) == []


def test_baths_heat_at_their_rates_and_push_bath_once() -> None:
    m = PlaterModel()
    ok(m, "LOAD B1 W1", 0)
    assert m.handle("START", 0) == "ERR 05 NOT READY"
    m.advance(1000)
    assert m.bath_c["ni"] == pytest.approx(25 + 0.03 * 1000)
    assert m.bath_c["au"] == pytest.approx(75.0)  # 0.05 °C/s, 1 °C short of 80
    m.advance(1960)
    assert m.handle("START", m.time) == "ERR 05 NOT READY"  # nickel at 83.8 °C
    m.advance(1970)  # nickel within 1 °C of 85 at 1,967 s
    bath = [e for e in events(m) if e[0] == "BATH"]
    assert bath == [("BATH", "57.4", "79.0"), ("BATH", "84.0", "80.0")]  # gold, then nickel
    assert m.handle("START", m.time) == "OK"
    m.advance(m.time + 600)
    assert [e for e in events(m) if e[0] == "BATH"] == []


def test_a_lower_setpoint_cools_at_the_cooling_rate() -> None:
    m = ready()
    m.advance(3000)
    ok(m, "RECIPE 3 0.08 80 80")
    m.advance(m.time + 100)
    assert m.bath_c["ni"] == pytest.approx(85 - 0.01 * 100)
    ok(m, "RECIPE 3 0.08 85 80")  # already within 1 °C of 85: no BATH event for it
    events(m)
    m.advance(m.time + 200)
    assert [e for e in events(m) if e[0] == "BATH"] == []


def test_a_batch_runs_the_steps_in_the_spec_times() -> None:
    m = ready()
    events(m)
    ok(m, "LOAD B0042 W01,W02,W03")
    assert events(m) == [("STATE", "LOADED")]
    ok(m, "START")
    assert events(m) == [("STATE", "RUNNING"), ("STEP", "PRECLEAN", "B0042")]
    assert m.handle("STATE?", m.time).startswith("OK RUNNING B0042 PRECLEAN ")
    times = step_times(m)
    assert list(times) == list(STEPS)
    assert times["PRECLEAN"] == 120 and times["ACTIVATE"] == 90
    # 3 µm at 15 µm/h is 720 s; NI_PLATE ends in the second the gauge reaches 3 µm, but the
    # batch ages the bath as it plates (0.004 MTO per wafer-µm, 0.95 per MTO): 720.7 s
    assert times["NI_PLATE"] == 721
    assert times["AU_IMMERSION"] == 900  # 0.08 µm: up to 0.10
    assert times["RINSE_1"] == times["RINSE_2"] == 60 and times["DRY"] == 300
    done = ok(m, "RESULT?").split(" ")
    assert done[1:3] == ["B0042", "OK"] and float(done[3]) == pytest.approx(3.0, abs=0.002)
    assert done[-1] == "3"


def test_the_nickel_rate_follows_temperature_and_bath_age() -> None:
    assert nickel_rate_um_s(85, 0) * 3600 == pytest.approx(15.0)
    assert nickel_rate_um_s(86, 0) / nickel_rate_um_s(85, 0) == pytest.approx(1.08)
    assert nickel_rate_um_s(85, 1) / nickel_rate_um_s(85, 0) == pytest.approx(0.95)
    hot = ready()
    ok(hot, "RECIPE 3 0.08 88 80")
    hot.advance(hot.time + 200)
    aged = ready()
    aged.age_bath(3.0, aged.time)
    times = {}
    for name, m in (("hot", hot), ("aged", aged)):
        ok(m, "LOAD B1 W1")
        ok(m, "START")
        times[name] = step_times(m)["NI_PLATE"]
    assert times["hot"] == pytest.approx(720 / 1.08 ** 3, abs=2)
    assert times["aged"] > 720 / 0.95 ** 3 - 2  # and the batch itself ages the bath further


def test_gold_time_steps_with_thickness_and_batch_size_does_not_matter() -> None:
    for au, expected in ((0.05, 600), (0.10, 900), (0.15, 1200)):
        m = ready()
        ok(m, f"RECIPE 3 {au} 85 80")
        ok(m, "LOAD B1 " + ",".join(f"W{i}" for i in range(25)))
        ok(m, "START")
        assert step_times(m)["AU_IMMERSION"] == expected


def test_wafers_lie_within_the_spec_spread_of_the_batch_mean() -> None:
    m = ready(seed=7)
    wafers = [f"W{i:02d}" for i in range(25)]
    ok(m, "LOAD B1 " + ",".join(wafers))
    ok(m, "START")
    run_until_state(m, "DONE")
    _, _, _, ni_mean, ni_min, ni_max, au_mean, count = ok(m, "RESULT?").split(" ")
    assert count == "25" and float(ni_min) < float(ni_mean) < float(ni_max)
    for w in wafers:
        _, wid, ni, au = ok(m, f"RESULT? {w}").split(" ")
        assert wid == w
        assert abs(float(ni) / float(ni_mean) - 1) <= 0.05 + 1e-3
        assert abs(float(au) / float(au_mean) - 1) <= 0.10 + 1e-3
    assert m.handle("RESULT? W99", m.time) == "ERR 02 UNKNOWN"


def test_bath_life_warns_at_5_5_and_refuses_start_at_6_mto_until_replenished() -> None:
    m = ready()
    m.age_bath(5.45, m.time)
    ok(m, "LOAD B1 " + ",".join(f"W{i}" for i in range(10)))
    ok(m, "START")  # 10 wafers x 3 µm x 0.004 = 0.12 MTO: crosses 5.5
    run_until_state(m, "DONE")
    assert ("ALARM", "741", "NI", "MTO", "HIGH") in events(m)
    assert m.handle("ALARM?", m.time) == "OK 0 NONE"  # a warning, not an alarm state
    ok(m, "UNLOAD")
    m.age_bath(6.0, m.time)
    ok(m, "LOAD B2 W1")
    assert m.handle("START", m.time) == "ERR 06 ALARM ACTIVE"
    assert m.handle("ALARM?", m.time) == "OK 740 NI BATH LIFE"
    assert m.handle("CLEAR", m.time) == "ERR 06 ALARM ACTIVE"  # its cause is still there
    ok(m, "REPLENISH")
    assert m.handle("STATE?", m.time) == "OK MAINT B2 - 3600"
    assert m.handle("START", m.time) == "ERR 04 WRONG STATE"
    m.advance(m.time + 3600)
    assert m.state.value == "LOADED"  # the carrier waited in the load port
    assert ok(m, "BATH?").split(" ")[3:5] == ["4.80", "0.00"]
    ok(m, "START")


def test_ph_below_4_4_ends_the_running_batch_with_720() -> None:
    m = ready()
    m.age_bath(5.95, m.time)
    ok(m, "LOAD B1 " + ",".join(f"W{i}" for i in range(25)))
    ok(m, "START")  # 25 x 3 µm x 0.004 = 0.3 MTO: the pH passes 4.4 at 6.0
    run_until_state(m, "ALARM")
    assert m.handle("ALARM?", m.time) == "OK 720 NI PH OUT OF RANGE"
    assert ok(m, "RESULT?").split(" ")[2] == "ALARM"
    ok(m, "REPLENISH")
    assert m.state.value == "MAINT"


def test_a_heater_failure_raises_700_and_clear_after_repair_leads_to_done() -> None:
    m = ready()
    ok(m, "LOAD B1 W1,W2")
    ok(m, "START")
    m.advance(m.time + 300)
    m.fail_heater("ni", m.time)
    run_until_state(m, "ALARM")  # 3 °C at 0.01 °C/s
    evs = events(m)
    assert ("ALARM", "700", "NI", "BATH", "TEMP", "OUT") in evs and ("DONE", "B1", "ALARM") in evs
    assert m.handle("CLEAR", m.time) == "ERR 06 ALARM ACTIVE"
    m.repair_heater("ni", m.time)
    ok(m, "CLEAR")
    assert m.state.value == "DONE"  # the batch does not resume
    assert events(m)[-2:] == [("CLEARED", "700"), ("STATE", "DONE")]


def test_a_gold_heater_failure_raises_710_only_while_running() -> None:
    m = ready()
    m.fail_heater("au", m.time)  # idle: the bath drifts, nothing is raised
    m.advance(m.time + 600)
    assert m.state.value == "IDLE" and m.handle("ALARM?", m.time) == "OK 0 NONE"
    m.repair_heater("au", m.time)
    back = m.time
    while abs(float(ok(m, "BATH?").split()[2]) - 80.0) > 1.0:  # heats back at 0.05 °C/s
        assert m.time - back < 1000
        m.advance(m.time + 10)
    ok(m, "LOAD B1 W1")
    ok(m, "START")
    m.fail_heater("au", m.time)
    run_until_state(m, "ALARM")  # 3 °C at 0.02 °C/s
    evs = events(m)
    assert ("ALARM", "710", "AU", "BATH", "TEMP", "OUT") in evs and ("DONE", "B1", "ALARM") in evs
    m.repair_heater("au", m.time)
    ok(m, "CLEAR")
    assert m.state.value == "DONE"


def test_door_tank_level_and_emergency_stop() -> None:
    m = ready()
    ok(m, "LOAD B1 W1")
    m.set_door(True, m.time)  # no batch running: START is refused, no alarm
    assert m.handle("START", m.time) == "ERR 05 NOT READY"
    assert m.handle("ALARM?", m.time) == "OK 0 NONE" and m.state.value == "LOADED"
    m.set_door(False, m.time)
    ok(m, "START")
    m.advance(m.time + 60)
    m.set_door(True, m.time)  # over a running batch: alarm 400, the batch ends
    assert m.handle("ALARM?", m.time) == "OK 400 DOOR OPEN"
    assert m.handle("CLEAR", m.time) == "ERR 06 ALARM ACTIVE"
    m.set_door(False, m.time)
    ok(m, "CLEAR")
    assert m.state.value == "DONE" and ok(m, "RESULT?").split(" ")[2] == "ALARM"
    ok(m, "UNLOAD")
    ok(m, "LOAD B1 W1")
    m.set_level(15.0, m.time)
    assert m.handle("START", m.time) == "ERR 06 ALARM ACTIVE"
    assert m.handle("ALARM?", m.time) == "OK 730 TANK LEVEL LOW"
    m.set_level(90.0, m.time)
    ok(m, "CLEAR")
    m.schedule_alarm(900, at_time=m.time + 100)
    ok(m, "START")
    run_until_state(m, "ALARM")
    assert ok(m, "RESULT?").split(" ")[2] == "ALARM"
    ok(m, "CLEAR")  # released at once
    ok(m, "UNLOAD")


def test_abort_rinses_the_carrier_and_ends_aborted() -> None:
    m = ready()
    ok(m, "LOAD B1 W1")
    ok(m, "START")
    m.advance(m.time + 400)
    ok(m, "ABORT")
    fields = ok(m, "RESULT?").split(" ")
    assert fields[2] == "ABORTED" and 0 < float(fields[3]) < 3.0
    assert m.handle("LOAD B2 W1", m.time) == "ERR 04 WRONG STATE"


def test_events_are_numbered_and_the_last_thousand_are_kept() -> None:
    m = ready()
    for i in range(EVENT_LOG_SIZE // 5 + 10):  # 6 events a round
        for line in (f"LOAD B{i} W1", "START", "ABORT", "UNLOAD"):
            ok(m, line)
    assert m.seq > EVENT_LOG_SIZE
    kept = m.events_after(0)
    assert len(kept) == EVENT_LOG_SIZE and kept[-1].startswith(f"!{m.seq} ")
    m.drain_events()
    assert ok(m, f"EVENTS? {m.seq - 3}") == "OK 3"
    assert [e.split(" ")[0] for e in m.drain_events()] == [f"!{m.seq - i}" for i in (2, 1, 0)]


def test_power_loss_keeps_numbering_recipe_bath_age_and_aborts_the_running_batch() -> None:
    m = ready()
    ok(m, "RECIPE 4 0.05 86 80")
    m.advance(m.time + 300)
    ok(m, "LOAD B1 W1,W2")
    ok(m, "START")
    m.advance(m.time + 500)
    saved = json.loads(json.dumps(m.snapshot()))
    back = PlaterModel(saved=saved)
    assert back.seq == m.seq + 3  # DONE ABORTED, STATE DONE, then STATE at power-up
    assert back.events_after(m.seq)[-1].endswith(" STATE DONE")
    assert ok(back, "RECIPE?", 0) == "OK 4 0.05 86 80"
    assert ok(back, "RESULT?", 0).split(" ")[1:3] == ["B1", "ABORTED"]
    assert ok(back, "BATH?", 0).split(" ")[:2] == ["OK", "25.0"]  # the baths went cold
    assert float(ok(back, "BATH?", 0).split(" ")[4]) == round(m.mto, 2) > 0


# --- the server, over a real socket -------------------------------------------------------------


async def _line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().rstrip("\n")


async def test_server_pushes_events_between_replies_and_turns_a_second_host_away() -> None:
    clock = ManualClock(HEAT_UP_S)
    model = ready()
    async with PlaterServer(model, clock, name="plater-1") as server:
        host, port = await server.start_tcp()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"LOAD B0042 W01,W02,W03\r\n")  # a CR before the LF is ignored
            assert [await _line(reader), await _line(reader)] == ["!4 STATE LOADED", "OK"]
            r2, w2 = await asyncio.open_connection(host, port)
            try:
                assert await _line(r2) == "ERR 09 BUSY LINK"
                assert await r2.read() == b""  # and closed
            finally:
                w2.close()
                await w2.wait_closed()
            writer.write(b"START\n")
            assert [await _line(reader) for _ in range(3)] == [
                "!5 STATE RUNNING", "!6 STEP PRECLEAN B0042", "OK"]
            writer.write(b"EVENTS? 3\n")
            assert [await _line(reader) for _ in range(4)] == [
                "!4 STATE LOADED", "!5 STATE RUNNING", "!6 STEP PRECLEAN B0042", "OK 3"]
        finally:
            writer.close()
            await writer.wait_closed()


async def test_an_overlong_line_gets_one_reply() -> None:
    """barrier-plater.md: at most 512 bytes a line, and every host line gets exactly one
    reply: the rest of an overlong line, when its LF comes, is not a second command."""
    clock = ManualClock(HEAT_UP_S)
    async with PlaterServer(ready(), clock, name="plater-1") as server:
        host, port = await server.start_tcp()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"RECIPE " + b"9" * 600)  # no LF in 512 bytes
            assert await _line(reader) == "ERR 01 SYNTAX"
            writer.write(b" still the same line\n*IDN?\n")
            assert (await _line(reader)).startswith("OK BARRIERTEK,EP-25,")
        finally:
            writer.close()
            await writer.wait_closed()


async def test_server_keeps_the_event_log_in_its_state_file(tmp_path) -> None:
    state_file = tmp_path / "plater-1.json"
    clock = ManualClock(HEAT_UP_S)
    async with PlaterServer(ready(), clock, name="plater-1", state_file=state_file) as server:
        host, port = await server.start_tcp()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"LOAD B1 W1\n")
            assert await _line(reader) == "!4 STATE LOADED"
        finally:
            writer.close()
            await writer.wait_closed()
    model = PlaterServer.restore_model(state_file)  # power back: the carrier is still there
    assert model.seq == 5 and model.events_after(3) == ["!4 STATE LOADED", "!5 STATE LOADED"]
    state_file.write_text("{not json")
    with pytest.raises(PlaterStateError, match="plater-1.json: cannot restore from it"):
        PlaterServer.restore_model(state_file)


def test_disconnect_is_a_fault_plan_key() -> None:
    plan = parse_tool_faults("disconnect=3000,drop=0.1", tool="plater-1")
    assert plan.disconnects == [3000.0] and plan.drop == 0.1 and not plan.is_empty


async def test_a_state_file_that_cannot_be_written_is_refused_before_serving(tmp_path) -> None:
    server = PlaterServer(PlaterModel(), ManualClock(), name="plater-1",
                          state_file=tmp_path / "missing" / "plater-1.json")
    with pytest.raises(PlaterStateError, match=r"plater-1.json: cannot write it \(No such file"):
        await server.start_tcp()
    await server.stop()

"""BarrierPlater: line for line against the spec's example (an in-memory script of sent
and received lines, asserted used up), then batches, lost replies, dropped connections
and alarms against the simulated EP-25 over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from controller.console import ConsoleUsageError, run_command
from controller.console.plater import PLATER_COMMANDS
from drivers.clock import ScaledClock
from drivers.errors import (
    LinkBusy,
    RefusedRange,
    RefusedState,
    ReplyLost,
    ToolAlarm,
    ToolError,
)
from drivers.plater import BarrierPlater
from drivers.textline_link import TextLineLink
from drivers.types import BarrierRecipe, PlaterEvent, PlaterState, PlaterStep, RunStatus
from sim.clock import ManualClock
from sim.faults import parse_tool_faults
from sim.plater import PlaterModel
from sim.plater_server import PlaterServer
from tests.scripted_lines import IDN, LOST, ScriptedWire, got, scripted, sent

# --- line for line, in memory (PyMeasure expected_protocol style) -------------------------------


async def test_the_spec_example_line_for_line() -> None:
    script = [
        sent(IDN[0]), got(IDN[1]),
        sent("EVENTS? 1186"), got("OK 0"),
        sent("LOAD B0042 W01,W02,W03"), got("!1187 STATE LOADED"), got("OK"),
        sent("START"), got("OK"), got("!1188 STATE RUNNING"), got("!1189 STEP PRECLEAN B0042"),
        sent("STATE?"), got("OK RUNNING B0042 PRECLEAN 2580"),
    ]
    async with scripted(script, last_seq=1186) as s:
        await s.plater.load("B0042", ["W01", "W02", "W03"])
        await s.plater.start()
        status = await s.plater.status()
        assert s.wire.used_up
    assert (status.state, status.batch_id, status.step, status.remaining_s) == (
        PlaterState.RUNNING, "B0042", PlaterStep.PRECLEAN, 2580.0)
    assert [(e.seq, e.name, e.fields) for e in s.events] == [
        (1187, "STATE", ("LOADED",)), (1188, "STATE", ("RUNNING",)),
        (1189, "STEP", ("PRECLEAN", "B0042"))]
    assert s.plater.last_seq == 1189


async def test_typed_replies_and_errors() -> None:
    script = [
        sent(IDN[0]), got(IDN[1]),
        sent("RECIPE 3 0.08 85 80"), got("OK"),
        sent("RECIPE?"), got("OK 3 0.08 85 80"),
        sent("BATH?"), got("OK 84.6 79.9 4.72 1.20 96.5"),
        sent("RESULT?"), got("OK B0042 OK 3.012 2.901 3.140 0.081 3"),
        sent("RESULT? W02"), got("OK W02 3.050 0.0790"),
        sent("ALARM?"), got("OK 0 NONE"),
        sent("ALARM?"), got("OK 700 NI BATH TEMP OUT"),
        sent("STATE?"), got("OK ALARM B0042 - 0"),
        sent("RECIPE 9 0.08 85 80"), got("ERR 03 RANGE"),
        sent("UNLOAD"), got("ERR 04 WRONG STATE"),
    ]
    async with scripted(script) as s:
        p = s.plater
        await p.set_recipe(BarrierRecipe(3.0, 0.08, 85.0, 80.0))
        assert await p.recipe() == BarrierRecipe(3.0, 0.08, 85.0, 80.0)
        bath = await p.bath()
        assert (bath.ni_temp_c, bath.ni_ph, bath.ni_mto, bath.ni_level_pct) == (
            84.6, 4.72, 1.2, 96.5)
        result = await p.result()
        assert (result.batch_id, result.status, result.ni_min_um, result.wafers) == (
            "B0042", RunStatus.OK, 2.901, 3)
        wafer = await p.wafer_result("W02")
        assert (wafer.ni_um, wafer.au_um) == (3.05, 0.079)
        assert await p.alarm() is None
        alarm = await p.alarm()
        assert alarm is not None and (alarm.code, alarm.text) == (700, "NI BATH TEMP OUT")
        with pytest.raises(RefusedRange, match=r"RECIPE 9 0.08 85 80 refused: ERR 03 RANGE"):
            await p.set_recipe(BarrierRecipe(9.0, 0.08, 85.0, 80.0))
        with pytest.raises(RefusedState):
            await p.unload()
        assert s.wire.used_up


async def test_a_warning_or_a_code_outside_the_alarm_state_is_no_latched_alarm() -> None:
    """barrier-plater.md: ALARM? answers "OK <code> <text> or OK 0 NONE"; 741 NI MTO HIGH
    is "warning only" ("not blocking"), and a blocking alarm puts the tool in ALARM (CLEAR
    is allowed there only). A tool that names its warning in ALARM? (the spec does not
    forbid it) was taken as in alarm: the line took it out of service, its CLEAR refused
    04, until someone replenished. A warning is never latched (not even asked about
    further); another code counts only while STATE? is ALARM."""
    script = [
        sent(IDN[0]), got(IDN[1]),
        sent("ALARM?"), got("OK 741 NI MTO HIGH"),
        sent("ALARM?"), got("OK 730 TANK LEVEL LOW"),
        sent("STATE?"), got("OK DONE B7 - 0"),
        sent("ALARM?"), got("OK 730 TANK LEVEL LOW"),
        sent("STATE?"), got("OK ALARM B7 - 0"),
    ]
    async with scripted(script) as s:
        assert await s.plater.alarm() is None
        assert await s.plater.alarm() is None
        alarm = await s.plater.alarm()
        assert alarm is not None and (alarm.code, alarm.text) == (730, "TANK LEVEL LOW")
        assert s.wire.used_up


@pytest.mark.parametrize("printed", ["nan", "inf", "-inf", "NaN"])
async def test_a_bath_printed_as_no_number_is_the_tools_error(printed: str) -> None:
    # Python's float() takes these: a nickel bath at NaN °C was never in band, and the
    # setup's wait, sized from it, had a NaN deadline it never passed (polls for ever).
    script = [sent(IDN[0]), got(IDN[1]),
              sent("BATH?"), got(f"OK {printed} 79.9 4.72 1.20 96.5")]
    async with scripted(script) as s:
        with pytest.raises(ToolError, match=f"plater-1: BATH\\?: '{printed}' is not a number"):
            await s.plater.bath()
        assert s.wire.used_up


async def test_a_lost_start_reply_is_not_resent_when_state_shows_it_ran() -> None:
    script = [
        sent(IDN[0]), got(IDN[1]),
        sent("START"),  # the reply is lost
        sent("STATE?"), got("!12 STATE RUNNING"), got("OK RUNNING B7 PRECLEAN 2600"),
        sent("ALARM?"), got("OK 0 NONE"),
    ]
    async with scripted(script) as s:
        await s.plater.start()
        await s.plater.alarm()
        assert s.wire.used_up
    assert s.link.replies_lost == 1
    assert [e.seq for e in s.events] == [12]


async def test_a_lost_start_reply_is_resent_when_state_shows_it_did_not_run() -> None:
    script = [
        sent(IDN[0]), got(IDN[1]),
        sent("START"),
        sent("STATE?"), got("OK LOADED B7 - 0"),
        sent("START"), got("OK"),
    ]
    async with scripted(script) as s:
        await s.plater.start()
        assert s.wire.used_up


async def test_an_action_whose_every_reply_is_lost_and_not_seen_done_is_reply_lost() -> None:
    script = [sent(IDN[0]), got(IDN[1]), sent("UNLOAD"),
              sent("STATE?"), got("OK DONE B7 - 0"), sent("UNLOAD"),
              sent("STATE?"), got("OK DONE B7 - 0")]
    async with scripted(script, retries=1) as s:
        with pytest.raises(ReplyLost, match="plater-1: UNLOAD: reply lost"):
            await s.plater.unload()
        assert s.wire.used_up


async def test_queries_are_repeated_and_give_up_with_reply_lost() -> None:
    script = [sent(IDN[0]), got(IDN[1]), sent("STATE?"), sent("STATE?"),
              got("OK IDLE - - 0"), sent("STATE?"), sent("STATE?")]
    async with scripted(script, retries=1) as s:
        assert (await s.plater.state()) is PlaterState.IDLE
        with pytest.raises(ReplyLost, match="plater-1: STATE\\?: reply lost"):
            await s.plater.status()
        assert s.wire.used_up


async def test_catch_up_delivers_missed_events_once_and_in_order() -> None:
    # A live event (#45) arrives during the handshake, ahead of the replay of #43-#45
    # that EVENTS? brings: each is delivered once, in order, then live ones follow.
    script = [
        sent(IDN[0]), got("!45 STEP RINSE_1 B7"), got(IDN[1]),
        sent("EVENTS? 42"), got("!43 STATE RUNNING"), got("!44 STEP NI_PLATE B7"),
        got("!45 STEP RINSE_1 B7"), got("OK 3"),
        sent("STATE?"), got("!46 STEP AU_IMMERSION B7"),
        got("OK RUNNING B7 AU_IMMERSION 1500"),
    ]
    async with scripted(script, last_seq=42) as s:
        await s.plater.status()
        assert s.wire.used_up
    assert [e.seq for e in s.events] == [43, 44, 45, 46]
    assert s.plater.duplicates == 1 and s.plater.events_lost == 0 and s.plater.renumbered == 0


async def test_numbering_that_goes_back_is_followed_not_dropped() -> None:
    # a replaced or reset tool: live events numbered below what we had are new events
    script = [
        sent(IDN[0]), got(IDN[1]), sent("EVENTS? 900"), got("OK 0"),
        sent("LOAD B1 W1"), got("!3 STATE LOADED"), got("OK"),
        sent("START"), got("!4 STATE RUNNING"), got("OK"),
    ]
    async with scripted(script, last_seq=900) as s:
        await s.plater.load("B1", ["W1"])
        await s.plater.start()
        assert s.wire.used_up
    assert [e.seq for e in s.events] == [3, 4] and s.plater.renumbered == 1


async def test_a_failed_catch_up_leaves_the_link_closed() -> None:
    # EVENTS? is a query: asked again on a lost reply, up to 1 + retries times
    script = [sent(IDN[0]), got(IDN[1]), sent("EVENTS? 5"), sent("EVENTS? 5")]
    wire = ScriptedWire(script)
    link = TextLineLink(wire.connect, tool="plater-1", endpoint="script", timeout_s=LOST)
    BarrierPlater(link, ScaledClock(1000.0), last_seq=5, retries=1)
    with pytest.raises(ReplyLost, match="EVENTS\\? 5: reply lost"):
        await link.open()
    assert not link.is_open and wire.used_up


async def test_the_console_refuses_bad_arguments_in_one_line() -> None:
    async with scripted([sent(IDN[0]), got(IDN[1])]) as s:
        with pytest.raises(ConsoleUsageError, match="expected 4 arguments"):
            await run_command(PLATER_COMMANDS, s.plater, "recipe", ["3", "0.08"])
        with pytest.raises(ConsoleUsageError, match="expected 1-16 printable characters"):
            await run_command(PLATER_COMMANDS, s.plater, "load", ["B1", "W 1"])
        with pytest.raises(ConsoleUsageError, match="a batch holds 1-25 wafers"):
            await run_command(PLATER_COMMANDS, s.plater, "load",
                              ["B1", ",".join(f"W{i}" for i in range(26))])
        assert s.wire.used_up


# --- against the simulated EP-25 over a real socket ---------------------------------------------

SPEED = 5_000.0  # tool seconds per wall second: the bath heat-up and a batch in about a second
RECIPE = BarrierRecipe(3.0, 0.08, 85.0, 80.0)
PATIENCE_S = 36_000.0  # tool seconds: bounds the waits without ever biting


@dataclass
class SimPlater:
    server: PlaterServer
    clock: ScaledClock
    host: str
    port: int

    def link(self, **kw: object) -> TextLineLink:
        return TextLineLink.tcp(self.host, self.port, tool="plater-1", **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def sim_plater(faults: str = "", state_file: object = None,
                     model: PlaterModel | None = None,
                     clock: object = None) -> AsyncIterator[SimPlater]:
    clock = clock or ScaledClock(SPEED)
    plan = parse_tool_faults(faults, tool="plater-1") if faults else None
    if plan is not None:
        plan.seed(1)  # the draws of `bumpline sim --seed`: a faulty run repeats exactly
    server = PlaterServer(model or PlaterModel(), clock, name="plater-1", faults=plan,
                          state_file=state_file)  # type: ignore[arg-type]
    host, port = await server.start_tcp()
    try:
        yield SimPlater(server, clock, host, port)  # type: ignore[arg-type]
    finally:
        await server.stop()


async def run_batch(p: BarrierPlater, batch: str, wafers: list[str]) -> None:
    await p.set_recipe(RECIPE)
    await p.wait_bath_ready(PATIENCE_S)
    await p.load(batch, wafers)
    await p.start()


async def test_a_whole_batch_with_every_event_once() -> None:
    async with sim_plater() as sim:
        link = sim.link()
        plater = BarrierPlater(link, sim.clock, last_seq=0)
        events: list[PlaterEvent] = []
        plater.on_event(events.append)
        async with link:
            identity = await plater.identity()
            await run_batch(plater, "B0042", ["W01", "W02", "W03"])
            result = await plater.wait_done(PATIENCE_S)
            wafers = [await plater.wafer_result(w) for w in ("W01", "W02", "W03")]
            await plater.unload()
            await plater.state()  # the UNLOAD's STATE IDLE event is in by now
    assert (identity.vendor, identity.model) == ("BARRIERTEK", "EP-25")
    assert result.status is RunStatus.OK and result.wafers == 3
    assert result.ni_mean_um == pytest.approx(3.0, abs=0.002)
    for w in wafers:
        assert abs(w.ni_um / result.ni_mean_um - 1) <= 0.05
        assert abs(w.au_um / result.au_mean_um - 1) <= 0.10
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    steps = [e.fields[0] for e in events if e.name == "STEP"]
    assert steps == [s.value for s in PlaterStep]
    assert ("DONE", ("B0042", "OK")) in [(e.name, e.fields) for e in events]
    assert events[-1].fields == ("IDLE",) and plater.last_seq == events[-1].seq


async def test_open_tool_catches_up_from_the_seq_the_caller_kept() -> None:
    from drivers.line_config import parse_line_config
    from drivers.tools import open_tool

    async with sim_plater() as sim:
        config = parse_line_config(
            f'[line]\nname="l"\ntime_scale={SPEED}\n[tools.plater-1]\nrole="plater"\n'
            f'host="{sim.host}"\nport={sim.port}\n')
        async with open_tool(config.tool("plater-1"), sim.clock, last_seq=0) as plater:
            assert isinstance(plater, BarrierPlater)
            await plater.status()  # the catch-up ran as the link opened
            # the power-up STATE event, and any BATH event since, were replayed
            assert plater.last_seq == sim.server.model.seq >= 1


async def test_a_second_host_is_turned_away_busy() -> None:
    async with sim_plater() as sim:
        async with sim.link():
            other = sim.link()
            other.connect_attempts = 2
            with pytest.raises(LinkBusy, match="ERR 09 BUSY LINK"):
                await other.open()
            await other.close()
    assert sim.server.refused_connections == 2


@pytest.mark.faults
async def test_dropped_replies_never_start_a_batch_twice() -> None:
    async with sim_plater("drop=0.2") as sim:
        link = sim.link(timeout_s=0.3)
        # a long poll: the waits wake on events, so few queries, few 0.3 s timeouts
        plater = BarrierPlater(link, sim.clock, last_seq=0, retries=8, poll_s=600.0)
        async with link:
            await run_batch(plater, "B1", ["W01", "W02"])
            result = await plater.wait_done(PATIENCE_S)
            await plater.unload()
            assert await plater.state() is PlaterState.IDLE
    assert result.status is RunStatus.OK and result.wafers == 2
    starts = [line for line in sim.server.model.events_after(0) if line.endswith("STATE RUNNING")]
    assert len(starts) == 1  # however many START replies were lost
    assert sim.server.replies_dropped > 0 and link.replies_lost >= sim.server.replies_dropped


@pytest.mark.faults
async def test_a_connection_dropped_mid_batch_is_reopened_and_caught_up() -> None:
    async with sim_plater("disconnect=3000") as sim:  # heat-up ~2,000 s, then plating
        link = sim.link()
        plater = BarrierPlater(link, sim.clock, last_seq=0)
        events: list[PlaterEvent] = []
        plater.on_event(events.append)
        async with link:
            await run_batch(plater, "B1", ["W01"])
            result = await plater.wait_done(PATIENCE_S)
    assert result.status is RunStatus.OK and link.connections == 2
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # none lost, none twice
    assert [e.fields[0] for e in events if e.name == "STEP"] == [s.value for s in PlaterStep]
    assert sim.server.model.seq == events[-1].seq


@pytest.mark.faults
async def test_an_alarm_ends_the_batch_and_clear_leads_to_done() -> None:
    async with sim_plater("alarm=700@wafer1") as sim:  # half way through batch 1's nickel
        link = sim.link()
        plater = BarrierPlater(link, sim.clock)
        async with link:
            await run_batch(plater, "B1", ["W01", "W02"])
            with pytest.raises(ToolAlarm, match="alarm 700 NI BATH TEMP OUT") as caught:
                await plater.wait_done(PATIENCE_S)
            result = await plater.result()
            await plater.clear_alarm()
            state = await plater.state()
    assert caught.value.code == 700
    assert result.status is RunStatus.ALARM and 0 < result.ni_mean_um < 3.0
    assert state is PlaterState.DONE


@pytest.mark.faults
async def test_an_alarm_latched_while_the_baths_heat_ends_the_bath_wait() -> None:
    """710 latched 200 tool s into the heat-up from 25 °C (the gold bath needs ~1,100 s, the
    nickel ~2,000). The baths go on heating in ALARM, and the wait polled BATH? only: it
    went on until both were in band and returned as if the plater were ready (a setup
    waited ~1,300 tool s on an alarm it never reported: the random fault soak, seed 1 plan
    21). Now the wait ends with the alarm as soon as it is latched."""
    # 1,000x: the ~1,800 tool s between the alarm and the nickel bath in band are ~2 wall s.
    async with sim_plater("alarm=710@200", clock=ScaledClock(1000.0)) as sim:
        link = sim.link()
        plater = BarrierPlater(link, sim.clock)
        async with link:
            await plater.set_recipe(RECIPE)
            with pytest.raises(ToolAlarm, match="alarm 710 AU BATH TEMP OUT") as caught:
                await plater.wait_bath_ready(PATIENCE_S)
            bath = await plater.bath()
    assert caught.value.code == 710
    assert bath.ni_temp_c < RECIPE.ni_temp_c - 1.0  # ended by the alarm, not by the baths


async def test_power_loss_ends_the_batch_aborted_and_keeps_the_numbering(tmp_path) -> None:
    state_file = tmp_path / "plater-1.json"
    seen: list[PlaterEvent] = []
    warm = PlaterModel()
    warm.advance(2100)  # both baths at the power-up recipe's setpoints
    # tool time stands still: the batch is RUNNING when the power goes, whatever the load
    async with sim_plater(state_file=state_file, model=warm, clock=ManualClock(2100)) as sim:
        link = sim.link()
        plater = BarrierPlater(link, ScaledClock(SPEED), last_seq=0)
        plater.on_event(seen.append)
        async with link:
            await run_batch(plater, "B1", ["W01", "W02"])
            assert (await plater.status()).step is PlaterStep.PRECLEAN
    last = plater.last_seq
    assert last is not None
    # power back: a new tool process from what the state file kept, a new host connection
    async with sim_plater(model=PlaterServer.restore_model(state_file),
                          state_file=state_file, clock=ManualClock(0)) as sim:
        link = sim.link()
        plater = BarrierPlater(link, ScaledClock(SPEED), last_seq=last)
        plater.on_event(seen.append)
        async with link:
            result = await plater.result()
            status = await plater.status()
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert ("DONE", ("B1", "ABORTED")) in [(e.name, e.fields) for e in seen]
    assert result.status is RunStatus.ABORTED and result.batch_id == "B1"
    assert status.state is PlaterState.DONE  # the carrier waits to be unloaded

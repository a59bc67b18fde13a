"""The controller against an EP-25 barrier plater written by someone else from the spec.

``tests/independent/ep25.py`` is written from barrier-plater.md alone, without reading
``sim/`` or the plater's driver, taking the strictest reasonable choice where the spec is
silent (docs/protocols.md, "Independent tools"): cold baths and a foreign recipe at
power-up, events before or after the reply that caused them by turns, a DONE after its
``STATE DONE`` (an alarm's only at CLEAR), held events lost with the power. Short barrier
lots run on it (the other tools from ``bumpline sim --platers 0``) on every test run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.line.scheduled import ScheduledTool, ToolReport
from controller.line.tool_alarms import CLEAR_RETRY_S, ToolAlarms
from drivers.clock import ScaledClock
from drivers.errors import LinkBusy
from drivers.line_config import parse_line_config
from drivers.tools import open_tool
from drivers.types import BarrierRecipe, PlaterState, RunStatus
from sequences.kinds.barrier import _start_when_ready
from tests.independent.ep25 import Plater
from tests.independent.ep25_server import LinkFaults, ServedPlater, line_table, serve
from tests.independent.lot import BUMPLINE, run_lot

RECIPE = "rebump-sncu-niau-snpb"  # print, reflow, clean, Ni/Au barrier, print, reflow, clean
LOT_SPEED = 600.0
DRIVER_SPEED = 2000.0


def _alarms(tmp_path: Path, db: Path) -> str:
    return subprocess.run([*BUMPLINE, "alarms", "--db", str(db)], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout


async def _lot(tmp_path: Path, lot: str, db: Path, **served_as: Any
               ) -> tuple[int | None, str, ServedPlater]:
    """A lot of RECIPE run by ``bumpline run`` on our simulator with the independent plater
    (``serve``'s options): the run's exit status, its output and the plater as it ended."""
    async with serve(LOT_SPEED, **served_as) as served:
        code, text = await run_lot(tmp_path, line_table(served), leave_out=("platers",),
                                   speed=LOT_SPEED, lot=lot, recipe=RECIPE, db=db)
    return code, text, served


async def test_a_barrier_lot_on_the_independent_plater(tmp_path: Path) -> None:
    """The plater powers up cold with another recipe; the reply to START is lost (the
    driver asks STATE? before sending it again: RUNNING, so never) and the tool hangs up
    as NI_PLATE starts (the batch's wait reopens the link and catches up). One LOAD, one
    START, every event's number kept by the controller, the lot complete."""
    db = tmp_path / "ep.db"
    faults = LinkFaults(lose_reply={"START": 1}, hang_up_after=["STEP NI_PLATE"])
    code, text, served = await _lot(tmp_path, "EP1", db, faults=faults)
    assert code == 0, text
    assert "lot EP1: complete; 2/2 wafers complete" in text, text
    log = served.tool.log
    assert [e.split()[0] for e in log] == ["recipe", "load", "start", "done", "unload"], log
    assert log[3].split()[2] == "OK", log
    assert served.hang_ups == 1 and served.connections == 2, served.lines
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT seq FROM tool_event_seqs WHERE tool = 'plater-1'").fetchall()
    assert stored == [(served.tool.seq,)], (stored, served.tool.seq)


async def test_an_alarm_that_ends_a_batch_names_every_rider(tmp_path: Path) -> None:
    """barrier-plater.md: 900 EMERGENCY STOP, "a RUNNING batch ends with status ALARM";
    CLEAR, once released, leads to DONE (this plater pushes the batch's DONE only then).
    Every rider fails with the alarm; the alarm was recorded naming only the first of them
    (the scheduler named the others only for an oven's belt): now the whole carrier."""
    db = tmp_path / "estop.db"
    code, text, served = await _lot(tmp_path, "ES", db, tool=Plater(faults=["900@start1+300/5"]))
    assert code == 3, text
    assert text.count("alarm 900 EMERGENCY STOP") == 2, text
    assert "2 awaiting disposition" in text, text
    assert served.tool.log[-3:] == ["clear 900", "clear", "unload"], served.tool.log
    alarms = await asyncio.to_thread(_alarms, tmp_path, db)
    assert "EMERGENCY STOP (also hit: ES-02)" in alarms, alarms


async def test_a_plater_that_loses_its_power_mid_batch_is_called_back(tmp_path: Path) -> None:
    """barrier-plater.md, power loss: the running batch ends ABORTED, its carrier rinsed by
    hand; the tool pushes only ``STATE <state>`` at power-up. The plater is silent for 300
    tool seconds in NI_PLATE. A batch whose tool stopped answering was left with its riders
    in their step and the tool in service, with no alarm and no call-back: the run ended
    at once with both wafers "step4 running". Now the tool is out of service with one
    link-lost alarm naming both, called back, and recovery settles them from RESULT?
    (ABORTED: awaiting disposition)."""
    db = tmp_path / "power.db"
    code, text, served = await _lot(tmp_path, "PW", db, tool=Plater(faults=["power@plate+100/300"]))
    assert code == 3, text
    assert "(wafers inside: PW-01, PW-02)" in text, text
    assert text.count("plater-1 reports batch") == 2 and "ABORTED" in text, text
    assert "2 awaiting disposition" in text and "step4 running" not in text, text
    assert served.tool.power_cuts == 1 and "start" in served.tool.log, served.tool.log
    assert served.tool.log.count("start") == 1, served.tool.log


async def test_the_catch_up_after_a_power_loss_counts_the_events_it_lost() -> None:
    """The numbering survives a power loss; this plater's held events do not. The tool
    hangs up as ACTIVATE starts, goes on alone (its steps' events held for the host), then
    loses its power: the catch-up meets a gap, counted, and delivery goes on in order from
    the tool's ``STATE IDLE``. A second host is turned away (``ERR 09 BUSY LINK``)."""
    tool = Plater(faults=["power@plate+100/100"])
    faults = LinkFaults(hang_up_after=["STEP ACTIVATE"])
    async with serve(DRIVER_SPEED, tool=tool, faults=faults) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + line_table(served))
        tables = config.tools["plater-1"]
        clock = ScaledClock(DRIVER_SPEED)
        async with open_tool(tables, clock) as plater:
            seen: list[int] = []
            plater.on_event(lambda e: seen.append(e.seq))
            with pytest.raises(LinkBusy):
                async with open_tool(tables, ScaledClock(DRIVER_SPEED)):
                    pass
            await plater.set_recipe(BarrierRecipe(3.0, 0.08, 85.0, 80.0))
            await plater.wait_bath_ready(timeout_s=3600)
            await plater.load("B1", ["W1", "W2"])
            # As the barrier step starts it: BATH? prints 0.1 °C, the tool judges its ±1 °C
            # on its own reading, so START may meet ERR 05 once at the band's edge.
            await _start_when_ready(plater, clock, plater.start)
            await asyncio.wait_for(served.power_back.wait(), timeout=20)
            status = await plater.status()  # reopens the link: *IDN?, EVENTS? <last seen>
            result = await plater.result()
    assert served.busy_refused >= 1 and served.hang_ups == 1  # the driver tries a few times
    assert status.state is PlaterState.IDLE and status.batch_id is None, status
    assert (result.batch_id, result.status) == ("B1", RunStatus.ABORTED)
    assert seen == sorted(set(seen)) and seen[-1] == tool.seq, (seen, tool.seq)
    assert plater.events_lost == 1, plater.events_lost  # STEP NI_PLATE, gone with the power


async def test_a_plater_naming_its_warning_in_alarm_q_stays_in_service() -> None:
    """barrier-plater.md: at 5.5 MTO the tool pushes "a warning event ALARM 741 NI MTO HIGH
    (not blocking)"; ALARM? answers "OK <code> <text> or OK 0 NONE". This EP-25 names its
    standing warning in ALARM? (``warning_in_alarm``, a reading the spec allows). The line
    asks ALARM? when a wafer is held at the tool's interlock (and when a step fails, or a
    setup): 741 was taken for a latched alarm, reported, the tool out of service, our CLEAR
    refused 04 every 5 s until someone replenished. Now nothing is reported, nothing sent
    but queries, and the tool stays in service."""
    tool = Plater(mto=5.6, warning_in_alarm=True)
    async with serve(DRIVER_SPEED, tool=tool) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + line_table(served))
        clock = ScaledClock(DRIVER_SPEED)
        async with open_tool(config.tools["plater-1"], clock) as plater:
            assert await plater.link.request("ALARM?") == ["741", "NI", "MTO", "HIGH"]
            assert await plater.alarm() is None
            reports: list[ToolReport] = []
            scheduled = ScheduledTool("plater-1", "plater", plater)
            alarms = ToolAlarms(clock, {"plater-1": scheduled}, {}, reports.append,
                                lambda: None, asyncio.ensure_future)
            await alarms.tool_down(scheduled, "W1")
            for _ in range(3):
                alarms.check()
                await alarms.clears_done()
                await clock.sleep(CLEAR_RETRY_S)
            assert scheduled.alarm == 0, reports
    assert [r for r in reports if r.what != "note"] == [], reports
    assert not [line for line, _ in served.lines if line == "CLEAR"], served.lines


async def test_a_failed_batch_on_a_plater_naming_its_warning_raises_no_alarm(
        tmp_path: Path) -> None:
    """The same EP-25 (its bath past 5.5 MTO, 741 named by ALARM?) with its door open from
    the LOAD on: START is refused 05 twice and both riders fail (no alarm: the door raises
    400 only over a running batch). The failed step asks ALARM?, as after every failure:
    741 was recorded as the plater's alarm (naming both wafers) and CLEAR sent. Now the
    riders await disposition for the refused START and no alarm is recorded."""
    db = tmp_path / "warn.db"
    tool = Plater(mto=5.6, warning_in_alarm=True, faults=["400@load/900"])
    code, text, served = await _lot(tmp_path, "WN", db, tool=tool)
    assert code == 3, text
    assert "2 awaiting disposition" in text and "ERR 05 NOT READY" in text, text
    assert "741" not in text, text
    alarms = await asyncio.to_thread(_alarms, tmp_path, db)
    assert "741" not in alarms and "MTO" not in alarms, alarms
    assert not [line for line, _ in served.lines if line == "CLEAR"], served.lines
    assert "start" not in served.tool.log, served.tool.log


async def test_an_alarm_between_done_and_unload_keeps_the_riders_until_the_carrier_is_out(
        tmp_path: Path) -> None:
    """barrier-plater.md: UNLOAD only in DONE; this EP-25 raises 730 TANK LEVEL LOW "at once
    in any state". The tank runs low as the batch ends (its DONE OK pushed, 730 latched
    right after, for 300 tool seconds). The carrier was not unloaded (STATE? ALARM: nothing
    said), yet both riders went on to their next steps; no alarm was recorded, nobody sent
    CLEAR, and the lot ended with the carrier in the tool. Now the alarm is recorded once,
    naming both wafers; they wait (held) while the carrier is inside; CLEAR is taken once
    the tank is topped up, the carrier unloaded, and the riders go on with their judged
    results: the lot completes, each wafer plated once."""
    db = tmp_path / "kept.db"
    code, text, served = await _lot(tmp_path, "KP", db, tool=Plater(faults=["730@done/300"]))
    assert code == 0, text
    assert "lot KP: complete; 2/2 wafers complete" in text, text
    log = served.tool.log
    assert [e.split()[0] for e in log] == [
        "recipe", "load", "start", "done", "alarm", "clear", "clear", "unload"], log
    assert log[3].split()[2] == "OK" and log[4] == "alarm 730", log
    assert served.tool.carrier is None and served.tool.state() == "IDLE"
    alarms = await asyncio.to_thread(_alarms, tmp_path, db)
    assert alarms.count("TANK LEVEL LOW") == 1, alarms
    assert "TANK LEVEL LOW (also hit: KP-02)" in alarms, alarms
    assert text.count("still in plater-1") == 2, text  # each rider held, saying why

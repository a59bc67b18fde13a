"""End to end on the simulated line: real drivers over real ptys, sockets and Modbus
servers, the simulator's tool models behind them, and the wafer's events checked."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.line.e10 import ToolMode
from controller.line.events import LineEventStream
from controller.line.modes import ToolModes
from controller.line.scheduled import ScheduledTool
from controller.persistence.tool_modes import ToolModeInfo
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import LineTools, open_line
from drivers.types import PlacerState, PrinterState
from sequences.errors import InterlockError, SequenceError
from sequences.kinds import ROLE_OF_KIND, kind_of
from sequences.kinds.base import when_in
from sequences.kinds.reflow import transit_s
from sequences.recipes.recipe import find_recipe, parse_recipe, shipped_recipe_paths
from sequences.wafer.journal import MemoryJournal
from sequences.wafer.machine import WaferEvent
from sequences.wafer.runner import WaferRun, check_interlocks, run_wafer
from sim.faults import parse_faults
from sim.line import SimulatedLine

SPEED = 2000.0  # tool seconds per wall second


class Line:
    """A simulated line with its drivers open, and one timeline of events and frames."""

    def __init__(self, tools: LineTools, clock: ScaledClock, sim: SimulatedLine) -> None:
        self.tools, self.clock, self.sim = tools, clock, sim
        self.timeline: list[tuple[str, Any]] = []  # ("event", WaferEvent) | ("frame", (tool, data))
        self.journal = MemoryJournal(listeners=[self.on_event])

    def trace(self, tool: str, direction: str, data: Any) -> None:
        if direction == ">":
            self.timeline.append(("frame", (tool, data)))

    def on_event(self, event: WaferEvent) -> None:
        self.timeline.append(("event", event))

    @property
    def events(self) -> list[WaferEvent]:
        return [e for kind, e in self.timeline if kind == "event"]

    def __getitem__(self, role: str) -> Any:
        return self.tools.by_role(role)[0]


@contextlib.asynccontextmanager
async def simulated_line(
    faults: str = "", seed: int = 1, speed: float = SPEED, cleaners: tuple[str, ...] = (),
    platers: int = 0,
) -> AsyncIterator[Line]:
    clock = ScaledClock(speed)
    layout = {"printer": 1, "placer": 1, "oven": 1, "cleaner": max(1, len(cleaners)),
              "plater": platers}
    async with SimulatedLine(speed=speed, seed=seed, clock=clock, layout=layout,
                             faults=parse_faults(faults), cleaner_models=cleaners) as sim:
        config = parse_line_config(sim.config_text(), source="sim")
        holder: list[Line] = []
        def trace(tool: str, d: str, data: Any) -> None:
            if holder:  # the plater's link opens (a handshake) before the line is handed out
                holder[0].trace(tool, d, data)

        async with open_line(config, clock, trace=trace) as tools:
            holder.append(Line(tools, clock, sim))
            yield holder[0]


async def prepare(driver: Any, step: Any, clock: Any) -> list[str]:
    """Set the tool up for the step, as the scheduler does; what was done."""
    done: list[str] = []
    await kind_of(step).prepare(driver, step, clock=clock, recipe_name="bumpline",
                                note=done.append)
    return done


def sent(frame: Any, command: str) -> bool:
    """A HostLink request frame carrying this command, or a Modbus request for this name."""
    if isinstance(frame, bytes | bytearray):
        fields = bytes(frame).split(b"*")[0].split(b",")
        return len(fields) > 1 and fields[1] == command.encode()
    return command in str(frame)


@pytest.mark.parametrize("name", sorted(shipped_recipe_paths()))
async def test_one_wafer_of_every_shipped_recipe(name: str) -> None:
    recipe = find_recipe(name)
    # A line with an FC-1 and an FC-2: a strip can only go to the FC-2. A barrier
    # recipe's line has the plater (a batch of one here).
    platers = int(any(s.kind == "barrier" for s in recipe.steps))
    async with simulated_line(cleaners=("FC-1", "FC-2"), platers=platers) as line:
        run = await run_wafer(recipe, "W-" + name[:8], line.tools, line.clock,
                              journal=line.journal)
        assert run.state == "complete", run.events[-1]
        events = line.events
        assert events == run.events
        assert all(e.wafer_id == "W-" + name[:8] for e in events)
        times = [e.tool_time for e in events]
        assert times == sorted(times)
        for number, step in enumerate(recipe.steps, start=1):
            mine = [e for e in events if e.step == number]
            triggers = [e.trigger for e in mine]
            assert triggers[0] in ("start", "tool_acquired")
            core = [t for t in triggers if t != "start"]
            assert core[0] == "tool_acquired" and core[-1] == "judged_ok"
            assert core[1:-1] in (["step_done"], ["step_done", "repair", "step_done"])
            able = [d.name for d in line.tools.by_role(ROLE_OF_KIND[step.kind])
                    if kind_of(step).can_run(d)]
            assert {e.tool for e in mine if e.tool} == {able[0]}  # strips: the FC-2 only
            done = [e for e in mine if e.trigger == "step_done"][-1]
            m = done.measurements
            if step.kind == "reflow":  # the measured profile sits in the recipe's own windows
                assert step.peak_c[0] <= m["peak_c"] <= step.peak_c[1]
                assert step.tal_s[0] <= m["tal_s"] <= step.tal_s[1]
                assert m["ramp_max_c_s"] <= 3.0 and m["cool_max_c_s"] <= 6.0
                assert m["profile_id"] == step.profile_id and m["flags"] == 0
            elif step.kind == "print":
                assert step.vol_mean_pct[0] <= m["vol_mean_pct"] <= step.vol_mean_pct[1]
            elif step.kind == "place":
                first = [e for e in mine if e.trigger == "step_done"][0].measurements
                repaired = "repair" in triggers
                assert repaired == (first["defects"] > step.max_defects_after_repair)
                assert m["defects"] <= step.max_defects_after_repair
            elif step.kind == "barrier":  # a batch of one, judged on its own XRF figures
                assert step.ni_measured_um[0] <= m["ni_um"] <= step.ni_measured_um[1]
                assert step.au_measured_um[0] <= m["au_um"] <= step.au_measured_um[1]
                assert m["batch_status"] == "OK" and m["batch_wafers"] == 1
                assert abs(m["ni_bath_c"] - step.ni_temp_c) <= 1.0
            else:
                assert m["ionic_ug_cm2"] <= step.max_ionic_ug_cm2
                if step.kind == "strip":
                    assert m["mask_residue_pct"] <= step.max_mask_residue_pct
                    assert able == ["cleaner-2"]
        assert events[-1].to_state == "complete"
        # every tool is left free for the next wafer
        assert (await line["printer"].status()).state is PrinterState.IDLE
        assert (await line["placer"].status()).state is PlacerState.IDLE
        assert not (await line["oven"].status()).wafer_at_exit


async def test_events_are_delivered_before_the_tool_is_commanded() -> None:
    recipe = find_recipe("rebump-hipb-snpb")
    async with simulated_line() as line:
        run = await run_wafer(recipe, "W-ORDER", line.tools, line.clock, steps=(1, 2),
                              journal=line.journal)
        assert run.state == "complete"
        timeline = line.timeline

        def index(pred) -> int:
            return next(i for i, item in enumerate(timeline) if pred(item))

        acquired_print = index(lambda it: it[0] == "event" and it[1].trigger == "tool_acquired")
        first_lod = index(lambda it: it[0] == "frame" and sent(it[1][1], "LOD"))
        assert acquired_print < first_lod
        acquired_oven = index(lambda it: it[0] == "event" and it[1].trigger == "tool_acquired"
                              and it[1].step == 2)
        load = index(lambda it: it[0] == "frame" and sent(it[1][1], "LOAD_WAFER_ID"))
        assert acquired_oven < load
        # the print's judgment is recorded before the oven is touched for the reflow
        judged = index(lambda it: it[0] == "event" and it[1].trigger == "judged_ok")
        first_oven = index(lambda it: it[0] == "frame" and it[1][0] == "oven-1")
        assert judged < first_oven


async def test_wrong_paste_mounted_holds_the_wafer_and_leaves_the_printer_alone() -> None:
    recipe = find_recipe("rebump-sac305-snbi")  # SAC305 paste; the printer starts on Pb95Sn5
    async with simulated_line() as line:
        printer = line["printer"]
        run = WaferRun(recipe, "W-PASTE", line.clock, journal=line.journal)
        run.start()
        state = await run.run_step(printer)
        assert state == "held"
        hold = line.events[-1]
        assert hold.trigger == "hold" and hold.tool == printer.name
        assert "Pb95Sn5 paste loaded, the step needs SAC305" in hold.why
        assert hold.why.startswith("interlock: ")
        frames = [f for kind, f in line.timeline if kind == "frame"]
        assert not any(sent(data, c) for _, data in frames for c in ("LOD", "CHG", "RCP"))
        status = await printer.status()
        assert (status.paste_alloy, status.state) == ("Pb95Sn5", PrinterState.IDLE)
        with pytest.raises(InterlockError, match="printer-1: interlock: stencil ST-300-100 "
                           "mounted, the step needs"):
            await check_interlocks(printer, recipe.step(4), "W-PASTE")
        # the explicit setup change, then resume and run
        done = await prepare(printer, recipe.step(1), line.clock)
        assert any("CHG" in d for d in done)
        run.resume("printer changed over")
        assert await run.run_step(printer) == "step2_waiting"


async def test_oven_not_ready_holds_the_reflow() -> None:
    recipe = find_recipe("rebump-hipb-snpb")
    async with simulated_line() as line:
        oven = line["oven"]
        run = WaferRun(recipe, "W-OVEN", line.clock, steps=(2, 3), journal=line.journal)
        assert await run.run_step(oven) == "held"
        why = line.events[-1].why
        assert f"the step needs profile {recipe.step(2).profile_id}" in why  # type: ignore[union-attr]
        assert "not READY or PROCESSING" in why and "nitrogen is off" in why
        assert not any(sent(f[1], "COMMAND=LOAD") or sent(f[1], "COMMAND=APPLY")
                       for kind, f in line.timeline if kind == "frame")
        run.resume()
        with pytest.raises(SequenceError, match="a reflow step runs on an oven; printer-1 is not "
                                                "one"):
            await run.run_step(line["printer"])
        assert run.state == "step2_waiting"  # a refused call changes nothing


async def test_abort_reaches_a_running_print_at_once() -> None:
    recipe = find_recipe("rebump-hipb-snpb")
    # a slow clock: the wafer is in the printer for ~60 tool s, which must outlast the poll
    async with simulated_line(speed=100.0) as line:
        printer = line["printer"]
        await prepare(printer, recipe.step(1), line.clock)
        run = WaferRun(recipe, "W-ABORT", line.clock, journal=line.journal)
        task = asyncio.create_task(run.run_step(printer))
        in_tool = (PrinterState.LOADING, PrinterState.READY, PrinterState.PRINTING)
        deadline = line.clock.now() + 600
        while (await printer.status()).state not in in_tool:
            assert line.clock.now() < deadline, "the wafer never went into the printer"
            await line.clock.sleep(1.0)
        event = await run.abort("lot cancelled")
        assert run.state == "aborted" and event.from_state == "step1_running"
        assert await task == "aborted"
        assert any(sent(f[1], "ABT") for kind, f in line.timeline if kind == "frame")
        assert "ABT sent" in run.tool_notes and "wafer unloaded" in run.tool_notes
        status = await printer.wait_for(PrinterState.IDLE, timeout_s=120)
        assert status.wafer_id is None
        assert [e.trigger for e in line.events][-1] == "abort"  # nothing after the abort


async def test_hold_while_running_takes_effect_when_the_step_ends() -> None:
    recipe = find_recipe("ballmount-sac305")
    async with simulated_line() as line:
        placer = line["placer"]
        await prepare(placer, recipe.step(1), line.clock)
        deferred: list[object] = []

        def hold_once_running(event: WaferEvent) -> None:
            line.on_event(event)
            if event.trigger == "tool_acquired":  # the step is running now
                deferred.append(run.hold("engineer wants to look at it"))

        run = WaferRun(recipe, "W-HOLD", line.clock,
                       journal=MemoryJournal(listeners=[hold_once_running]))
        assert await run.run_step(placer) == "held"
        assert deferred == [None]  # not held mid-step: deferred to its end
        assert [e.trigger for e in line.events][-2:] == ["judged_ok", "hold"]
        assert line.events[-1].from_state == "step2_waiting"
        run.resume("looked")
        assert run.state == "step2_waiting"


async def test_a_command_sent_before_its_state_waits_and_is_sent_again() -> None:
    """PRT goes out when the spec says the wafer is aligned; a tool that is not there yet
    answers NAK 04 (nothing changed), so the step polls and sends PRT once more."""
    recipe = find_recipe("rebump-hipb-snpb")
    async with simulated_line() as line:
        printer = line["printer"]
        await prepare(printer, recipe.step(1), line.clock)
        await printer.load("W-EARLY")
        mark = len(line.timeline)
        await when_in(printer, PrinterState.READY, 120.0, printer.start_print)
        frames = [f[1] for kind, f in line.timeline[mark:] if kind == "frame"]
        prt = [i for i, f in enumerate(frames) if sent(f, "PRT")]
        assert len(prt) == 2  # refused while LOADING, accepted once READY
        assert any(sent(f, "STS") for f in frames[prt[0]:prt[1]])
        assert (await printer.status()).state is PrinterState.PRINTING


@pytest.mark.faults
async def test_an_alignment_alarm_stops_the_print_with_its_code() -> None:
    recipe = find_recipe("rebump-hipb-snpb")
    async with simulated_line(faults="printer-1:alarm=210@wafer1") as line:
        printer = line["printer"]
        await prepare(printer, recipe.step(1), line.clock)
        run = WaferRun(recipe, "W-ALIGN", line.clock, journal=line.journal)
        assert await run.run_step(printer) == "awaiting_disposition"
        failed = line.events[-1]
        assert (failed.trigger, failed.measurements["alarm_code"]) == ("step_failed", 210)
        assert "ALIGNMENT FAILED" in failed.why
        prt = [f for kind, f in line.timeline if kind == "frame" and sent(f[1], "PRT")]
        assert len(prt) == 1  # refused (alarm latched), never sent again


@pytest.mark.faults
async def test_tool_alarm_awaits_disposition_and_a_placement_can_be_retried() -> None:
    recipe = find_recipe("ballmount-sac305")
    async with simulated_line(faults="placer-1:alarm=240@wafer1") as line:
        placer = line["placer"]
        await prepare(placer, recipe.step(1), line.clock)
        run = WaferRun(recipe, "W-ALARM", line.clock, journal=line.journal)
        assert await run.run_step(placer) == "awaiting_disposition"
        failed = line.events[-1]
        assert failed.trigger == "step_failed" and failed.tool == placer.name
        assert failed.measurements["alarm_code"] == 240
        assert "240" in failed.why and failed.measurements["alarm_text"]
        with pytest.raises(SequenceError, match="needs a reason"):
            run.disposition("retry", " ")
        await placer.clear_alarm()  # the engineer clears the tool; the wafer is still inside
        run.disposition("retry", "head reseated; re-place")
        assert run.state == "step1_waiting"
        assert await run.run_step(placer) == "step2_waiting"
        assert (await placer.status()).state is PlacerState.IDLE


async def test_out_of_window_reflow_awaits_disposition_and_is_never_retried() -> None:
    text = shipped_recipe_paths()["ballmount-sac305"].read_text(encoding="utf-8")
    text = text.replace("tal_s = [50.0, 100.0]", "tal_s = [10.0, 20.0]")
    recipe = parse_recipe(text, source="tight.toml")
    async with simulated_line() as line:
        run = await run_wafer(recipe, "W-TAL", line.tools, line.clock, steps=(1, 2),
                              journal=line.journal)
        assert run.state == "awaiting_disposition"
        failed = line.events[-1]
        assert failed.step == 2 and failed.trigger == "step_failed"
        assert "time above 220 °C" in failed.why and "outside 10-20 s" in failed.why
        assert failed.measurements["tal_s"] > 20
        assert not (await line["oven"].status()).wafer_at_exit  # taken off all the same
        with pytest.raises(SequenceError, match="a reflow is never repeated"):
            run.disposition("retry", "try again")
        run.disposition("continue", "TAL long but bumps inspected fine")
        assert run.state == "complete"
        assert run.history.entries[-1].accepted_as_is == "TAL long but bumps inspected fine"


def test_sequence_run_command_on_the_in_process_line(capsys) -> None:
    from controller.cli import main

    assert main(["sequence", "run", "rebump-hipb-snpb", "--wafer", "W-CLI", "--steps", "1-3",
                 "--speed", str(SPEED)]) == 0
    out = capsys.readouterr().out
    assert "step 1 (print)   step1_waiting -> step1_running [tool_acquired]" in out
    assert "measured: peak_c" in out and "windows: peak 340-360 °C" in out
    assert "printer-1:" in out and "requests (" in out  # the exchanges, summarised
    assert "prepare oven-1: profile" in out and "wafer W-CLI complete" in out


def test_sequence_run_refuses_bad_input(capsys, tmp_path) -> None:
    from controller.cli import main

    assert main(["sequence", "run", "rebump-hipb-snpb", "--wafer", "W1", "--steps", "5-9"]) == 1
    assert "steps '5-9': the recipe has steps 1-6" in capsys.readouterr().err
    assert main(["sequence", "run", "rebump-hipb-snpb", "--wafer", "W,1"]) == 1
    assert "wafer id 'W,1': expected 1-16 printable characters" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(shipped_recipe_paths()["rebump-hipb-snpb"].read_text("utf-8")
                   .replace("peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]"), "utf-8")
    assert main(["sequence", "run", str(bad), "--wafer", "W1"]) == 1
    assert "rebump rule" in capsys.readouterr().err
    assert main(["sequence", "run", "rebump-hipb-snpb", "--wafer", "W1",
                 "--line", str(tmp_path / "none.toml")]) == 1
    assert "none.toml: cannot read line configuration" in capsys.readouterr().err


@pytest.mark.timing
async def test_two_wafers_share_the_oven_and_each_takes_its_own_off() -> None:
    recipe = find_recipe("ballmount-sac305")
    # the second wafer reaches the exit ~39 tool s after the first: at 300x that leaves
    # the first one's step 130 ms of wall time to take its wafer off
    async with simulated_line(speed=300.0) as line:
        placer, oven = line["placer"], line["oven"]
        runs = [WaferRun(recipe, f"W-SHARE{i}", line.clock, journal=line.journal)
                for i in (1, 2)]
        await prepare(placer, recipe.step(1), line.clock)
        for run in runs:
            assert await run.run_step(placer) == "step2_waiting"
        await prepare(oven, recipe.step(2), line.clock)
        states = await asyncio.gather(*(run.run_step(oven) for run in runs))
        assert states == ["step3_waiting", "step3_waiting"]
        for run in runs:
            done = [e for e in run.events if e.trigger == "step_done" and e.step == 2]
            assert len(done) == 1 and recipe.step(2).peak_c[0] <= done[0].measurements[
                "peak_c"] <= recipe.step(2).peak_c[1]
        loads = [item for kind, item in line.timeline
                 if kind == "frame" and sent(item[1], "COMMAND=LOAD")]
        assert len(loads) == 2
        # both rode the belt together: the second LOAD went out before the first came off
        second_load = line.timeline.index(("frame", loads[1]))
        first_off = next(i for i, (kind, e) in enumerate(line.timeline)
                         if kind == "event" and e.trigger == "step_done" and e.step == 2)
        assert second_load < first_off
        status = await oven.status()
        assert status.alarm_code == 0 and status.wafers_on_belt == 0
        assert not status.wafer_at_exit


async def test_print_parameters_are_sent_once_and_again_when_the_printer_lost_them() -> None:
    """RCP once per setup: the printer keeps it until a CHG. A CHG from outside the step
    (the console, an alarm's remedy) clears it; the LOD refused for want of it (NAK 04)
    sends it again and loads."""
    recipe = find_recipe("rebump-hipb-snpb")  # the printer starts with the step's setup
    async with simulated_line() as line:
        printer = line["printer"]

        async def print_one(wafer: str) -> None:
            run = WaferRun(recipe, wafer, line.clock, journal=line.journal)
            run.start()
            assert await run.run_step(printer) == "step2_waiting"

        def frames(command: str) -> int:
            return sum(sent(data, command) for kind, (tool, data) in
                       ((k, f) for k, f in line.timeline if k == "frame")
                       if tool == printer.name)

        await print_one("W-RCP1")
        await print_one("W-RCP2")
        assert (frames("RCP"), frames("LOD")) == (1, 2)

        status = await printer.status()
        await printer.changeover(status.stencil_id, status.paste_alloy)  # clears RCP
        await printer.wait_for(PrinterState.IDLE, timeout_s=1200)
        await print_one("W-RCP3")
        assert (frames("RCP"), frames("LOD")) == (2, 4)  # LOD refused once, then sent again


async def test_a_cool_down_is_looked_at_when_the_cooling_seen_says_it_can_be_done() -> None:
    """High-lead to eutectic (15-25 min): the zones are read when the cooling seen so far
    says they can be in the band, not a READY poll every 20 s; the oven ends READY on the
    new profile."""
    recipe = find_recipe("rebump-hipb-snpb")  # step 2 high-lead, step 5 eutectic
    async with simulated_line() as line:
        oven = line["oven"]
        await prepare(oven, recipe.step(2), line.clock)
        begun = len(line.timeline)
        started = line.clock.now()
        await prepare(oven, recipe.step(5), line.clock)
        took = line.clock.now() - started
        frames = [str(data) for kind, (tool, data) in
                  ((k, f) for k, f in line.timeline[begun:] if k == "frame")
                  if tool == oven.name]
        status = await oven.status()
        assert status.state.name == "READY" and status.active_profile_id == 27551
        looks = sum("(ZONE_PV)" in f or "(STATE..ALARM_CODE)" in f for f in frames)
        assert took > 600 and looks <= 12, (took, looks)  # 20 s polls: one per 20 s of it
        assert looks < took / 20 / 3


async def test_a_reflow_after_standby_stages_its_profile_again() -> None:
    """reflow-oven.md: STANDBY sets all zone setpoints (ZONE_SP, HR 0-9) to 100.0 °C; the
    step stages its own profile again before APPLY, so the oven ends READY on it."""
    step = find_recipe("rebump-hipb-snpb").step(5)
    async with simulated_line() as line:
        oven = line["oven"]
        await prepare(oven, step, line.clock)
        await oven.standby()
        assert (await oven.staged_profile()).zone_setpoints_c == (100.0,) * 10
        done = await prepare(oven, step, line.clock)
        assert any("stage + APPLY" in note for note in done), done
        staged = await oven.staged_profile()
        assert staged.zone_setpoints_c == step.tool_profile().zone_setpoints_c
        status = await oven.status()
        assert status.state.name == "READY" and status.active_profile_id == step.profile_id


async def test_the_oven_load_reads_no_belt_count_after_the_interlocks_status() -> None:
    """The belt count LOAD's lost reply is judged by comes from the status the interlocks
    read, carried through our own LOADs and UNLOADs: no read of its own. Learning how the
    oven counts a wafer waiting at the exit costs two requests in the oven's life: the
    inputs before its first LOAD, the count before its first UNLOAD (docs/protocols.md)."""
    recipe = find_recipe("ballmount-sac305")
    async with simulated_line(speed=300.0) as line:
        placer, oven = line["placer"], line["oven"]
        runs = [WaferRun(recipe, f"W-BELT{i}", line.clock, journal=line.journal)
                for i in (1, 2)]
        await prepare(placer, recipe.step(1), line.clock)
        for run in runs:
            assert await run.run_step(placer) == "step2_waiting"
        await prepare(oven, recipe.step(2), line.clock)
        for run in runs:
            assert await run.run_step(oven) == "step3_waiting"
        frames = [str(data) for kind, (tool, data) in
                  ((k, f) for k, f in line.timeline if k == "frame") if tool == oven.name]
        assert sum("COMMAND=LOAD" in f for f in frames) == 2
        counts = [i for i, f in enumerate(frames) if "(WAFERS_ON_BELT)" in f]
        assert len(counts) == 1 and "COMMAND=UNLOAD" in frames[counts[0] + 1], frames
        assert oven.belt.counts_exit is True  # the simulator's default, learned there
        # Nor the inputs: the interlocks read IR 0-14 and the coils, and the entrance's
        # timing stands for ENTRANCE_CLEAR. The one DI read is the first LOAD's (is the exit
        # empty? the interlocks' count is the same in both counting models then); the exit
        # watcher's first take needs none (WAFER_AT_EXIT): it read whose id the exit showed
        # while the first wafer rode (oven_exit.ExitWatch._learn_left).
        inputs = [i for i, f in enumerate(frames) if "ENTRANCE_CLEAR" in f]
        assert len(inputs) == 1, frames
        assert "COMMAND=LOAD" in frames[inputs[0] + 1]
        assert sum("(N2_ON..CONVEYOR_RUN)" in f for f in frames) == 3  # the setup's, each LOAD's
        # the exit values and id in one read (IR 20-37, the spec's worked example)
        exits = [i for i, f in enumerate(frames) if "(EXIT_PEAK..EXIT_WAFER_ID)" in f]
        assert len(exits) >= 2
        alone = [i for i, f in enumerate(frames) if "(EXIT_WAFER_ID)" in f]
        assert len(alone) == 1 and alone[0] < exits[0], frames  # the watcher's first look


async def test_a_load_refused_at_a_closed_entrance_looks_at_it_before_each_try() -> None:
    """A wafer the entrance's timing does not know (loaded before a restart; here straight
    through the driver) keeps the entrance closed: the oven refuses the step's LOAD (06,
    nothing moves), and the step reads the inputs before each try until it clears."""
    recipe = find_recipe("ballmount-sac305")
    async with simulated_line(speed=300.0) as line:
        placer, oven = line["placer"], line["oven"]
        run = WaferRun(recipe, "W-GATE1", line.clock, journal=line.journal)
        await prepare(placer, recipe.step(1), line.clock)
        assert await run.run_step(placer) == "step2_waiting"
        await prepare(oven, recipe.step(2), line.clock)
        await oven.load("W-BEFORE")
        loaded_at = line.clock.now()
        mark = len(line.timeline)

        async def take_it_off() -> None:  # as recovery would; no look at the inputs
            await line.clock.sleep(transit_s(recipe.step(2)) - (line.clock.now() - loaded_at))
            while await oven.exit_values_of({"W-BEFORE"}, left="") is None:
                await line.clock.sleep(1.0)
            await oven.unload("W-BEFORE")

        taker = asyncio.create_task(take_it_off())
        assert await run.run_step(oven) == "step3_waiting"
        await taker
        frames = [str(item[1]) for kind, item in line.timeline[mark:]
                  if kind == "frame" and item[0] == oven.name]
        loads = [i for i, f in enumerate(frames) if "COMMAND=LOAD" in f]
        assert len(loads) >= 2  # refused, then taken
        assert not [f for f in frames[:loads[0]] if "ENTRANCE_CLEAR" in f]
        assert [f for f in frames[loads[0]:loads[-1]] if "ENTRANCE_CLEAR" in f]
        done = [e for e in run.events if e.trigger == "step_done" and e.step == 2]
        assert len(done) == 1 and done[0].measurements["flags"] == 0
        status = await oven.status()
        assert status.alarm_code == 0 and status.wafers_on_belt == 0


def _printer_frames(line: Line, printer: Any, command: str) -> int:
    return sum(sent(data, command) for kind, (tool, data) in
               ((k, f) for k, f in line.timeline if k == "frame") if tool == printer.name)


async def test_a_stencil_never_wiped_by_its_recipe_is_wiped_before_the_61st_print() -> None:
    """wipe_every 0 (never): the printer counts prints since its last wipe, and the 61st
    raises alarm 220 STENCIL CLOGGED (paste-printer.md), every later wafer too until a WPE
    that nothing sent. The step now sends WPE before the LOD once 60 are counted."""
    shipped = find_recipe("rebump-hipb-snpb")
    first = dataclasses.replace(shipped.steps[0], wipe_every=0)
    recipe = dataclasses.replace(shipped, steps=(first, *shipped.steps[1:]))
    async with simulated_line() as line:
        printer, model = line["printer"], line.sim.models["printer-1"]
        model.prints_since_wipe = 60
        run = WaferRun(recipe, "W-WPE", line.clock, journal=line.journal)
        run.start()
        assert await run.run_step(printer) == "step2_waiting", run.machine.hold_reason
        assert (model.wipes, model.prints_since_wipe) == (1, 1)
        assert _printer_frames(line, printer, "WPE") == 1


async def test_a_printer_back_in_production_gets_its_print_parameters_again() -> None:
    """RCP once per setup assumed no one else sent one. An engineer's RCP while the printer
    was out of production (same stencil, another squeegee pressure) shows in no status, and
    the next wafer was printed with it. Back in production, the step sends its own again."""
    recipe = find_recipe("rebump-hipb-snpb")
    async with simulated_line() as line:
        printer, model = line["printer"], line.sim.models["printer-1"]
        tool = ScheduledTool("printer-1", "printer", printer)
        modes = ToolModes({"printer-1": tool}, LineEventStream("line", line.clock.now),
                          lambda *_: None)

        async def print_one(wafer: str) -> None:
            run = WaferRun(recipe, wafer, line.clock, journal=line.journal)
            run.start()
            assert await run.run_step(printer) == "step2_waiting"

        await print_one("W-ENG1")
        ours = model.recipe
        modes.apply({"printer-1": ToolModeInfo("line", "printer-1", ToolMode.ENGINEERING,
                                               "squeegee trial", "erik", datetime.now(UTC))})
        await printer.set_recipe(dataclasses.replace(recipe.steps[0].tool_recipe("TRIAL"),
                                                     squeegee_kgf=9.0))
        modes.apply({})  # back in production
        await print_one("W-ENG2")
        assert model.recipe == ours and _printer_frames(line, printer, "RCP") == 3

"""Faults that hit more than one wafer or take a tool away (issue 10, items 6 and 11), on the
simulated line in-process with real drivers and a fresh store (the rig of test_lot_run)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from test_lot_run import (
    RECIPE,
    WAIT_S,
    Watch,
    assert_line_empty,
    finish,
    is_,
    rig,
    run_lots,
)

from controller.line.controller import LINK_LOST_CODE
from controller.line.events import EventKind, LineEvent
from drivers.types import PlaterEvent
from sequences.kinds.oven_exit import ExitWatch
from sequences.kinds.paste_print import PastePrint
from sequences.kinds.reflow import Reflow
from sequences.recipes.validate import load_valid_recipe
from sequences.wafer.runner import run_wafer
from sim.faults import FaultPlan, ScheduledAlarm, parse_tool_faults

SLOW = 500.0  # a reflow pass lasts about a second of wall time: the oven is away mid-pass


@pytest.mark.faults
async def test_an_oven_alarm_names_every_wafer_on_the_belt(tmp_path: Path) -> None:
    """560 (thermocouple) while four wafers ride: the alarm names all four, not the first."""
    faults = {"oven-1": FaultPlan(alarms=[ScheduledAlarm(560, at_wafer=3)])}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("TC1", 4)
        controller = r.controller()
        alarms: list[LineEvent] = []
        controller.events.listen(
            lambda e: alarms.append(e) if e.kind is EventKind.ALARM_SET else None)
        await run_lots(controller, ["TC1"])
        failed = [w for w in wafers if r.store.get_wafer(w).state == "awaiting_disposition"]
        assert len(failed) > 1  # the thermocouple hit several wafers on the belt
        hits = [e for e in alarms if e.data["code"] == 560]
        assert len(hits) == 1, [(e.tool, e.data) for e in alarms]
        event = hits[0]
        assert sorted(event.data["wafers"]) == failed
        alarms_560 = [a for a in r.store.alarms(tool="oven-1") if a.code == 560]
        assert len(alarms_560) == 1, r.store.alarms()
        alarm = alarms_560[0]
        assert alarm.wafer_id == event.data["wafers"][0]
        assert all(w in alarm.text for w in failed if w != alarm.wafer_id)


async def test_an_oven_alarm_that_leaves_the_belt_running_is_recorded_while_its_wafers_ride(
        tmp_path: Path) -> None:
    """550 N2 FLOW LOW latched half way through the third wafer's first reflow, the whole
    lot on the belt. The belt runs on and UNLOAD is allowed in ALARM, so the riders came
    out as usual and the alarm was heard of only when the second pass's APPLY was refused,
    ~1,100 tool s later: a row naming no wafer, the oven productive meanwhile, nothing
    told. Now it is recorded while the wafers ride, naming all three, the oven down until
    the scheduler's CLEAR is taken; each wafer is judged on its own values."""
    faults = {"oven-1": FaultPlan(alarms=[ScheduledAlarm(550, at_wafer=3)])}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("N2", 3)
        controller = r.controller()
        seen: list[LineEvent] = []

        def heard(e: LineEvent) -> None:
            if e.tool == "oven-1" and e.kind in (EventKind.ALARM_SET, EventKind.ALARM_CLEARED,
                                                 EventKind.TOOL_STATE):
                seen.append(e)
            elif (e.kind is EventKind.WAFER_TRANSITION and e.data["step"] == 2
                  and e.data["trigger"] == "step_done"):
                seen.append(e)

        controller.events.listen(heard)
        await run_lots(controller, ["N2"])
        assert {r.store.get_wafer(w).state for w in wafers} == {"complete"}  # their own values
        (raised,) = [e for e in seen if e.kind is EventKind.ALARM_SET]
        assert raised.data["code"] == 550 and raised.data["wafers"] == wafers
        last_off = max(i for i, e in enumerate(seen) if e.kind is EventKind.WAFER_TRANSITION)
        at = seen.index(raised)
        assert at < last_off, "not recorded while the wafers rode"
        assert any(e.kind is EventKind.TOOL_STATE and e.data.get("e10_state") ==
                   "unscheduled down" for e in seen[:last_off])
        assert any(e.kind is EventKind.ALARM_CLEARED for e in seen[at:])
        (alarm,) = [a for a in r.store.alarms(tool="oven-1") if a.code == 550]
        assert alarm.wafer_id == wafers[0] and alarm.cleared_at is not None
        assert all(w in alarm.text for w in wafers[1:]), alarm.text
        for wafer in wafers:
            assert not any("alarm 550" in e.why for e in r.store.events(wafer))
        await assert_line_empty(r)


async def test_an_alarm_a_person_reset_at_the_printer_puts_it_back_in_service(
        tmp_path: Path) -> None:
    """The printer's door is open as the lot starts (400: the first wafer is held at its
    interlock, the printer out of service, our CLR refused while the door stays open).
    A person closes it and resets the alarm at the printer's own panel: our CLR is then
    refused for want of an alarm (NAK 04), and the printer stayed out of service for
    good. Now the scheduler asks the printer's alarm, finds none, and the lot goes on."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("PNL", 2)
        printer = r.model("printer-1")
        printer.open_door(r.clock.now())

        async def person() -> None:
            await r.clock.sleep(300.0)
            printer.close_door(r.clock.now())
            printer.reset_at_panel(r.clock.now())

        at_panel = asyncio.ensure_future(person())
        await run_lots(r.controller(), ["PNL"])
        await at_panel
        assert {r.store.get_wafer(w).state for w in wafers} == {"complete"}
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert "alarm 400 cleared (at the tool)" in notes, notes
        (alarm,) = [a for a in r.store.alarms(tool="printer-1") if a.code == 400]
        assert alarm.cleared_at is not None


async def test_a_jam_while_the_next_wafer_holds_the_entrance_is_cleared_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The belt jams while the next wafer's step holds the oven, waiting for the exit to take
    the wafer riding ahead of it (``ExitWatch.stand_clear``), due within its window. The
    oven is busy, and the scheduler cleared alarms only on tools no step held: the jam
    stayed latched until the rider's step gave up on it (860 s after its LOAD). Now the
    alarm the exit watcher reports is cleared as soon as its cause is gone; the rider
    comes out before its deadline, judged out for the stopped belt, and the waiting
    wafer is loaded after it."""
    stand_clear = ExitWatch.stand_clear
    jammed: list[asyncio.Task[None]] = []

    async def jam_while_waiting(watch: ExitWatch, window_s: float) -> bool:
        if watch.riding and not jammed:
            # As a step does that stands clear of a rider due within its window: the belt
            # jams 20 s before the rider is due, for 5 s (520 stays latched until CLEAR).
            oven = r.model("oven-1")
            await r.clock.sleep(watch._riders[0].due - 20.0 - r.clock.now())
            oven.jam_conveyor(r.clock.now())

            async def freed() -> None:
                await r.clock.sleep(5.0)
                oven.clear_jam(r.clock.now())

            jammed.append(asyncio.ensure_future(freed()))
            return await stand_clear(watch, math.inf)  # waits for the rider's take
        return await stand_clear(watch, window_s)

    monkeypatch.setattr(ExitWatch, "stand_clear", jam_while_waiting)
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        first, second, third = r.new_lot("JAM", 3)
        await run_lots(r.controller(), ["JAM"])
        assert jammed, "no wafer waited at the entrance behind a rider"
        out = r.store.events(first)[-1]
        assert out.to_state == "awaiting_disposition", out
        assert "alarm 520 CONVEYOR JAM during the pass" in out.why, out.why
        assert "not at the exit" not in out.why, out.why
        assert {r.store.get_wafer(w).state for w in (second, third)} == {"complete"}
        (alarm,) = [a for a in r.store.alarms(tool="oven-1") if a.code == 520]
        assert alarm.cleared_at is not None
        await assert_line_empty(r)


@pytest.mark.faults
def oven_logs(text: str) -> asyncio.Future[None]:
    """A future done once the simulated oven logs a line containing ``text`` (the oven's
    own account: the step's events say what the controller did, not what the oven did)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    logger = logging.getLogger("sim.oven-1")

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                logger.removeHandler(self)
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    logger.addHandler(Seen())
    return done


async def test_an_oven_that_stops_answering_is_down_then_settles_its_wafers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The oven's server goes away with a wafer on the belt and comes back on the same
    endpoint: a line alarm names the wafer and the exchange, the oven is unscheduled down,
    the wafer is settled by asking the oven (reflowed once), and the lot completes."""
    caplog.set_level(logging.INFO, logger="sim")
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW) as r:
        wafers = r.new_lot("LINK1", 1)
        watch = Watch()
        controller = r.controller(watch)
        seen: list[LineEvent] = []
        lost: asyncio.Future[LineEvent] = asyncio.get_running_loop().create_future()

        def listen(event: LineEvent) -> None:
            seen.append(event)
            if (event.kind is EventKind.ALARM_SET and event.data["code"] == "link_lost"
                    and not lost.done()):
                lost.set_result(event)

        controller.events.listen(listen)
        on_belt = oven_logs(f": LOAD '{wafers[0]}'")  # the oven took it: it rides
        task = asyncio.create_task(controller.run(["LINK1"]))
        await asyncio.wait_for(on_belt, WAIT_S)
        await r.line.stop_tool("oven-1")
        alarm = await asyncio.wait_for(lost, WAIT_S)
        assert wafers[0] in alarm.data["wafers"]
        assert "oven-1" == alarm.tool and "unit 1" in alarm.data["text"]  # the exchange
        assert r.store.get_wafer(wafers[0]).state == "step2_running"  # no verdict on silence
        downs = [s for s in r.store.tool_state_history("oven-1")
                 if s.e10_state == "unscheduled down"]
        assert downs and "not answering" in downs[-1].reason
        await r.line.restart_tool("oven-1")
        [outcome] = await finish(task)
    assert outcome.state == "complete", outcome
    assert set(outcome.wafers.values()) == {"complete"}
    (row,) = [a for a in r.store.alarms(tool="oven-1") if a.code == LINK_LOST_CODE]
    assert row.cleared_at is not None and wafers[0] in row.text
    cleared = [e for e in seen if e.kind is EventKind.ALARM_CLEARED]
    assert [e.data["code"] for e in cleared] == ["link_lost"]
    loads = [m for m in (rec.getMessage() for rec in caplog.records)
             if m.startswith("oven-1 ") and ": LOAD '" in m]
    for wafer in wafers:  # the oven's own log: each wafer reflowed once per reflow step
        assert sum(f": LOAD '{wafer}'" in line for line in loads) == 2, loads


@pytest.mark.faults
async def test_a_plater_silent_mid_batch_keeps_its_batch_record_open_for_its_own_word(
    tmp_path: Path,
) -> None:
    """The plater's server goes away while its batch runs and comes back on the same
    endpoint, the batch having gone on (a cable pulled, not a power loss). The batch was
    recorded as failed the moment the link was lost, before the tool was asked; its record
    now stays open until recovery has settled the riders from the tool's result: done,
    status OK, and the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW, platers=1) as r:
        wafers = r.new_lot("PLT1", 1, recipe_name="rebump-sncu-niau-snpb")
        watch = Watch()
        controller = r.controller(watch)
        # The batch runs: the plater pushes its first STEP after START.
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        r.tools["plater-1"].on_event(
            lambda e: running.set_result(None) if e.name == "STEP" and not running.done()
            else None)
        lost: asyncio.Future[LineEvent] = asyncio.get_running_loop().create_future()

        def listen(event: LineEvent) -> None:
            if (event.kind is EventKind.ALARM_SET and event.data["code"] == "link_lost"
                    and not lost.done()):
                lost.set_result(event)

        controller.events.listen(listen)
        task = asyncio.create_task(controller.run(["PLT1"]))
        await asyncio.wait_for(running, WAIT_S)
        await r.line.stop_tool("plater-1")
        alarm = await asyncio.wait_for(lost, WAIT_S)
        assert alarm.data["wafers"] == wafers
        (batch,) = controller.batches.batches(tool="plater-1")
        assert batch.state == "started"  # no verdict on silence
        await r.line.restart_tool("plater-1")
        [outcome] = await finish(task)
    assert outcome.state == "complete", outcome
    (batch,) = controller.batches.batches(tool="plater-1")
    assert (batch.state, batch.status) == ("done", "OK"), batch


async def test_an_alarm_between_a_batch_end_and_its_unload_holds_the_riders_until_it_is_out(
    tmp_path: Path,
) -> None:
    """barrier-plater.md: UNLOAD only in DONE. The plater's tank runs low as its batch ends
    (730 latched right after its DONE OK; topped up 600 tool seconds later). The carrier was
    not unloaded (STATE? ALARM: nothing said) and the riders went on anyway, their batch
    step promising that none moves on with the carrier in the tool; no alarm was recorded,
    no CLEAR sent, and the carrier stayed in. Now the alarm is recorded once naming both
    riders, the tool out of service; they are held until the alarm is cleared and the
    carrier unloaded, then go on with their judged results: the lot completes, each wafer
    plated once, nothing left in any tool."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        wafers = r.new_lot("KEPT", 2, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        topped_up: list[asyncio.Future[None]] = []
        topped_at: list[float] = []

        async def top_up() -> None:
            await r.clock.sleep(600.0)
            topped_at.append(r.clock.now())
            plater.set_level(100.0, topped_at[0])

        def tank_low_at_done(event: PlaterEvent) -> None:
            if event.name == "DONE" and not topped_up:
                now = r.clock.now()
                plater.set_level(10.0, now)
                plater.latch_alarm(730, now, "the tank drained as the batch ended")
                topped_up.append(asyncio.ensure_future(top_up()))

        r.tools["plater-1"].on_event(tank_low_at_done)
        controller = r.controller()
        alarms: list[LineEvent] = []
        controller.events.listen(
            lambda e: alarms.append(e) if e.kind is EventKind.ALARM_SET else None)
        [outcome] = await run_lots(controller, ["KEPT"])
        assert topped_up, "no batch ended"
        await topped_up[0]
        assert outcome.state == "complete", outcome
        assert plater.batch is None and plater.state.value == "IDLE"  # the carrier is out
        assert plater._batches_started == 1  # plated once
        (event,) = [e for e in alarms if e.tool == "plater-1"]
        assert (event.data["code"], event.data["wafers"]) == (730, wafers), event.data
        (alarm,) = r.store.alarms(tool="plater-1")
        assert alarm.code == 730 and alarm.cleared_at is not None, alarm
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        unloaded = [n for n in notes if "carrier unloaded (alarm 730 cleared)" in n]
        assert len(unloaded) == 1, notes
        for wafer in wafers:
            events = r.store.events(wafer)
            plated = [e for e in events if e.step_kind == "barrier" and e.trigger == "judged_ok"]
            assert len(plated) == 1, events
            triggers = [e.trigger for e in events]
            held = triggers.index("hold")
            assert triggers[held - 1:held + 2] == ["judged_ok", "hold", "resume"], triggers
            assert "still in plater-1: alarm 730 TANK LEVEL LOW" in events[held].why
            assert "is out of plater-1" in events[held + 1].why
            assert (events[held + 1].tool_time or 0.0) >= topped_at[0]
            assert r.store.get_wafer(wafer).state == "complete"
        await assert_line_empty(r)


async def test_a_rider_a_person_held_stays_held_when_the_kept_carrier_comes_out(
    tmp_path: Path,
) -> None:
    """As above, and an operator asks to hold one rider while the batch runs. Holding the
    riders for the kept carrier replaced the person's hold, and the carrier's coming out
    then resumed that wafer too. Now the person's hold stands: only the other goes on."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        first, second = r.new_lot("KEPT2", 2, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller()
        topped_up: list[asyncio.Future[None]] = []

        async def top_up() -> None:
            await r.clock.sleep(600.0)
            plater.set_level(100.0, r.clock.now())

        def tank_low_at_done(event: PlaterEvent) -> None:
            if event.name == "DONE" and not topped_up:
                controller.scheduler.wafers[first].run.hold("operator: look at it first")
                now = r.clock.now()
                plater.set_level(10.0, now)
                plater.latch_alarm(730, now, "the tank drained as the batch ended")
                topped_up.append(asyncio.ensure_future(top_up()))

        r.tools["plater-1"].on_event(tank_low_at_done)
        await run_lots(controller, ["KEPT2"])
        assert topped_up, "no batch ended"
        await topped_up[0]
        assert plater.batch is None  # the carrier is out
        assert r.store.get_wafer(second).state == "complete"
        held = r.store.get_wafer(first)
        assert held.state == "held", held
        assert r.store.events(first)[-1].why == "operator: look at it first"


async def test_an_alarm_found_as_a_batch_forms_holds_every_member_until_it_is_cleared(
    tmp_path: Path,
) -> None:
    """The plater's tank alarm (730, the level already back) latches as a batch of two is
    formed, before its members' interlocks read the plater: both are held at the interlock
    and the batch ends without a START. Only the first member was handed to the tool
    alarms (``tool_down``), so the CLEAR resumed it alone: it was plated in a batch of its
    own and the second stayed held for a person, the lot never complete. Now every held
    member is: the alarm recorded once, cleared, and both go on and are plated together,
    once each; the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        wafers = r.new_lot("BHOLD", 2, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller()
        seen: list[LineEvent] = []

        def heard(e: LineEvent) -> None:
            if e.kind is EventKind.BATCH_STARTED and not seen:
                # As the batch is formed: its members' interlocks have not read the plater yet.
                plater.latch_alarm(730, r.clock.now(), "the tank level dipped and came back")
            if e.tool == "plater-1" and e.kind in (EventKind.BATCH_STARTED,
                                                   EventKind.ALARM_SET):
                seen.append(e)

        controller.events.listen(heard)
        [outcome] = await run_lots(controller, ["BHOLD"])
        batches = [e for e in seen if e.kind is EventKind.BATCH_STARTED]
        assert batches and list(batches[0].data["wafers"]) == wafers, batches  # both
        assert outcome.state == "complete", outcome
        raised = [e for e in seen if e.kind is EventKind.ALARM_SET and e.data["code"] == 730]
        assert len(raised) == 1, raised
        (alarm,) = [a for a in r.store.alarms(tool="plater-1") if a.code == 730]
        assert alarm.cleared_at is not None, alarm
        assert plater._batches_started == 1  # the held batch never started; one carrier plated
        for wafer in wafers:
            events = r.store.events(wafer)
            held = [e for e in events if e.trigger == "hold"]
            assert len(held) == 1 and "alarm 730 TANK LEVEL LOW" in held[0].why, events
            resumed = events[events.index(held[0]) + 1]
            assert resumed.trigger == "resume", events
            assert "back in service (alarm 730 cleared)" in resumed.why, resumed.why
            plated = [e for e in events if e.step_kind == "barrier" and e.trigger == "judged_ok"]
            assert len(plated) == 1, events
            assert r.store.get_wafer(wafer).state == "complete"
        await assert_line_empty(r)


async def test_a_member_a_person_held_as_the_batch_formed_stays_held_after_the_clear(
    tmp_path: Path,
) -> None:
    """As above, and an operator holds one member as the batch is formed (before its step
    reads the plater). The CLEAR resumed every wafer handed to the tool alarms that was
    held, a person's hold too. Now only holds that are still the interlock's go on: the
    other member is plated and completes, the person's stays held with their reason."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        first, second = r.new_lot("BHOLD2", 2, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller()
        formed: list[LineEvent] = []

        def heard(e: LineEvent) -> None:
            if e.kind is EventKind.BATCH_STARTED and not formed:
                formed.append(e)
                controller.scheduler.wafers[first].run.hold("operator: look at it first")
                plater.latch_alarm(730, r.clock.now(), "the tank level dipped and came back")

        controller.events.listen(heard)
        await run_lots(controller, ["BHOLD2"])
        assert formed and list(formed[0].data["wafers"]) == [first, second], formed
        (alarm,) = [a for a in r.store.alarms(tool="plater-1") if a.code == 730]
        assert alarm.cleared_at is not None, alarm
        assert r.store.get_wafer(second).state == "complete"
        held = r.store.get_wafer(first)
        assert held.state == "held", held
        assert r.store.events(first)[-1].why == "operator: look at it first"
        await assert_line_empty(r)


async def test_batch_members_held_for_an_alarm_gone_when_asked_again_all_wait_again(
    tmp_path: Path,
) -> None:
    """As above, but the alarm is gone (reset at the plater) by the time the batch's end asks
    the plater again: every member held for it waits again (``_recheck_hold``), their
    interlocks checked again before the step, not the first alone; both are plated
    together, once each, and the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        wafers = r.new_lot("BHOLD3", 2, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller()
        formed: list[LineEvent] = []
        held: set[str] = set()

        def heard(e: LineEvent) -> None:
            if e.kind is EventKind.BATCH_STARTED and not formed:
                formed.append(e)
                plater.latch_alarm(730, r.clock.now(), "the tank level dipped and came back")
            elif (e.kind is EventKind.WAFER_TRANSITION and e.data["trigger"] == "hold"
                  and e.wafer_id in wafers):
                held.add(e.wafer_id or "")
                if held == set(wafers):  # a person resets it at the plater: CLEAR there
                    plater.advance(r.clock.now())
                    plater._clear([])

        controller.events.listen(heard)
        [outcome] = await run_lots(controller, ["BHOLD3"])
        assert formed and list(formed[0].data["wafers"]) == wafers, formed
        assert held == set(wafers)
        assert outcome.state == "complete", outcome
        assert plater._batches_started == 1
        for wafer in wafers:
            events = r.store.events(wafer)
            triggers = [e.trigger for e in events]
            at = triggers.index("hold")
            assert triggers[at + 1] == "resume", triggers
            assert "shows no alarm when asked again" in events[at + 1].why, events[at + 1].why
            plated = [e for e in events if e.step_kind == "barrier" and e.trigger == "judged_ok"]
            assert len(plated) == 1, events
        await assert_line_empty(r)


async def test_an_oven_silent_between_taking_the_wafer_and_its_load_loads_it_once_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The oven goes silent after the wafer's reflow took it and before the LOAD (the
    staged id is the first thing that finds it silent): no LOAD was journalled, so once
    the oven answers the wafer is loaded - once - and the lot completes; nothing waits
    for an engineer."""
    caplog.set_level(logging.INFO, logger="sim")
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW) as r:
        wafers = r.new_lot("SILENT", 1)
        oven = r.tools["oven-1"]
        name_load = oven.name_load
        calls = 0

        async def silent_first(wafer_id: str) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # the first reflow: the oven is gone before the id reaches it
                await r.line.stop_tool("oven-1")
            await name_load(wafer_id)

        oven.name_load = silent_first  # type: ignore[method-assign]
        controller = r.controller()
        lost: asyncio.Future[LineEvent] = asyncio.get_running_loop().create_future()
        controller.events.listen(lambda e: e.kind is EventKind.ALARM_SET
                                 and e.data["code"] == "link_lost" and not lost.done()
                                 and lost.set_result(e))
        task = asyncio.create_task(controller.run(["SILENT"]))
        await asyncio.wait_for(lost, WAIT_S)
        await r.line.restart_tool("oven-1")
        [outcome] = await finish(task)
    assert outcome.state == "complete", outcome
    assert calls >= 2
    intents = [i for s in r.store.steps(wafers[0]) if s.kind == "reflow"
               for i in r.store.step_intents(s.id)]
    assert [i.command for i in intents] == ["LOAD", "LOAD"]  # one per reflow, both done
    assert {i.outcome for i in intents} == {"done"}
    loads = [m for m in (rec.getMessage() for rec in caplog.records)
             if m.startswith("oven-1 ") and f": LOAD '{wafers[0]}'" in m]
    assert len(loads) == 2, loads


async def test_a_link_lost_in_a_one_wafer_run_still_fails_its_step(tmp_path: Path) -> None:
    """Where nobody waits for the tool (``sequence run``), silence fails the step as before."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        await r.line.stop_tool("printer-1")
        run = await run_wafer(load_valid_recipe(RECIPE), "ONE-01", r.tools, r.clock)
        assert run.state in ("held", "awaiting_disposition")
        assert run.link_lost is None


async def test_a_lot_aborted_while_its_controller_was_gone_is_brought_out(
    tmp_path: Path
) -> None:
    """The controller stops with a wafer in the printer, the lot is aborted meanwhile (the
    request queued): the next run brings that wafer out as aborted and answers the request,
    so no lot ends "aborted" with a wafer neither finished nor aborted (issue 10, item 10)."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("AB1", 2)
        watch = Watch()
        in_printer = watch.when(is_(wafers[0], "tool_acquired", 1))
        task = asyncio.create_task(r.controller(watch).run(["AB1"]))
        await asyncio.wait_for(in_printer, WAIT_S)
        task.cancel()  # gone at once, as a killed controller: the step stays open
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert r.store.get_wafer(wafers[0]).state == "step1_running"
        r.store.abort_lot("AB1", user="ann", reason="wrong carrier")
        [outcome] = await run_lots(r.controller(), ["AB1"])
        assert outcome.state == "aborted"
        assert set(outcome.wafers.values()) == {"aborted"}, outcome
        assert r.store.pending_requests("AB1") == []
        await assert_line_empty(r)


async def test_a_lot_aborted_between_its_claim_and_its_run_is_answered_the_others_run(
    tmp_path: Path
) -> None:
    """`bumpline lot abort` while a serve opens its line for the lot it claimed: every wafer
    was still in the carrier (aborted at home at once). The run answers the abort request
    and runs the other lots; before, "nothing to run" stopped the whole serve and left the
    request pending for good."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        r.new_lot("GONE", 2)
        r.new_lot("NEXT", 1)
        r.store.abort_lot("GONE", user="ann", reason="wrong carrier")
        assert [q.action for q in r.store.pending_requests("GONE")] == ["abort_lot"]
        outcomes = await run_lots(r.controller(), ["GONE", "NEXT"])
        assert [(o.lot_id, o.state) for o in outcomes] == [("GONE", "aborted"),
                                                            ("NEXT", "complete")]
        assert set(outcomes[0].wafers.values()) == {"aborted"}
        assert r.store.pending_requests("GONE") == []
        await assert_line_empty(r)


@pytest.mark.faults
async def test_half_the_printer_replies_lost_does_not_stop_the_lot(tmp_path: Path) -> None:
    """``--faults 'printer-1:drop=0.5'``: a command whose every resend went unanswered takes
    the printer out of service with an alarm, not the wafer; the lot completes."""
    # A short reply timeout (the wire, not the tool): half the replies lost costs less wall time.
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults={"printer-1": FaultPlan(drop=0.5)},
                   timeouts={"printer-1": 0.03}) as r:
        r.new_lot("DROP1", 1)
        controller = r.controller()
        lost: list[LineEvent] = []
        controller.events.listen(lambda e: lost.append(e) if e.kind is EventKind.ALARM_SET
                                 and e.data["code"] == "link_lost" else None)
        [outcome] = await run_lots(controller, ["DROP1"])
        assert outcome.state == "complete", outcome
        recorded = [a for a in r.store.alarms(tool="printer-1") if a.code == LINK_LOST_CODE]
        assert lost, "no command went unanswered four times: the test exercised nothing"
        assert len(recorded) == len(lost)  # every silence an alarm, every alarm cleared
        assert all(a.cleared_at is not None for a in recorded)


async def test_chemistry_spent_by_a_clean_that_ends_is_recorded_and_the_wafer_brought_out(
        tmp_path: Path) -> None:
    """flux-cleaner.md: "Chemistry lasts 500 cycles; then 640 until replenished", read as a
    cleaner that latches 640 as the 500th cycle ends (the wafer cleaned, in the chamber,
    UNLOAD refused in ALARM). That wafer goes to an engineer with the alarm; the alarm is
    recorded once and cleared once a person has replenished; the wafer is taken out of
    the chamber then, the cleaner's result for it noted for the engineer (it was cleaned:
    before, only "wafer unloaded"), and the lot's other wafers go on."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("CH1", 2)
        cleaner = r.model("cleaner-1")
        cleaner.chemistry_alarm_at = "end"
        cleaner._chemistry_cycles = 499  # the first clean is the chemistry's 500th
        controller = r.controller()
        replenished: list[asyncio.Future[None]] = []

        async def person() -> None:
            await r.clock.sleep(300.0)
            cleaner.replenish_chemistry(r.clock.now())

        def on_event(event: LineEvent) -> None:
            if (event.kind is EventKind.ALARM_SET and event.data.get("code") == 640
                    and not replenished):
                replenished.append(asyncio.ensure_future(person()))

        controller.events.listen(on_event)
        await run_lots(controller, ["CH1"])
        assert replenished, "no 640"
        await replenished[0]
        states = {w: r.store.get_wafer(w).state for w in wafers}
        assert sorted(states.values()) == ["awaiting_disposition", "complete"], states
        (failed,) = [w for w, s in states.items() if s == "awaiting_disposition"]
        assert "640" in r.store.events(failed)[-1].why, r.store.events(failed)[-1].why
        (alarm,) = [a for a in r.store.alarms(tool="cleaner-1") if a.code == 640]
        assert alarm.cleared_at is not None and alarm.wafer_id == failed
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert any(n.startswith(f"{failed}: its result: OK, ionic residue") for n in notes), notes
        await assert_line_empty(r)


async def test_an_alarm_that_fails_a_setup_ahead_is_recorded_and_cleared_before_it_is_needed(
        tmp_path: Path) -> None:
    """The printer is set up ahead of the wafers (ballmount-sac305-rebump-snbi prints at step
    4), and a person opens its door during that changeover (400: the CHG stops). The alarm
    was only a tool note: no alarm row, the tool not out of service, nothing CLEARed it, so
    a lot whose wafers all stopped before the print ended with the printer in ALARM and no
    alarm recorded (the random fault soak, plan 13 of seed 1: 102 during the changeover).
    Now it is recorded at once and CLEARed once the door is closed, long before the wafer
    needs the printer."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        [wafer] = r.new_lot("AHD", 1, recipe_name="ballmount-sac305-rebump-snbi")
        printer = r.model("printer-1")
        handle = printer.handle
        opened = asyncio.Event()

        def door_opened_in_changeover(cmd: str, args: list[str], now: float) -> list[str]:
            ack = handle(cmd, args, now)
            if cmd == "CHG" and not opened.is_set():
                printer.open_door(now)
                opened.set()
            return ack

        printer.handle = door_opened_in_changeover

        async def person() -> None:
            await opened.wait()
            await r.clock.sleep(60.0)
            printer.close_door(r.clock.now())

        closing = asyncio.ensure_future(person())
        await run_lots(r.controller(), ["AHD"])
        await closing
        assert r.store.get_wafer(wafer).state == "complete"
        [alarm] = [a for a in r.store.alarms(tool="printer-1")]
        assert alarm.code == 400 and alarm.cleared_at is not None
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert "setup ahead of the wafers failed: alarm 400 DOOR OPEN" in notes
        assert "alarm 400 cleared (cause gone)" in notes
        # Recorded before the wafer needed the printer, not by the wafer's own changeover
        # once it came to print (step 4), which alone found it before.
        needs = next(e for e in r.store.events(wafer) if e.to_state == "step4_waiting")
        assert alarm.tool_time is not None and needs.tool_time is not None
        assert alarm.tool_time < needs.tool_time


async def test_an_alarm_no_clear_takes_away_holds_the_wafers_waiting_for_its_tool(
        tmp_path: Path) -> None:
    """102 PASTE EMPTY during the second wafer's print: that wafer goes to an engineer; the
    first, back from its reflow and clean for its second print, waits for the printer,
    whose changeover is refused in ALARM and whose CLR is refused for good (102 needs FIL,
    paste-printer.md). It waited for ever, held by nobody: the run never ended (the random
    fault soak, seed 1 plan 29). Now it is held, naming the alarm and its remedy, and the
    run ends with the wafers waiting for people. The hold names the printer, so the line's
    "interlock" alarm does (docs/events.md): it named no tool, and the live view printed
    it under a tool with no name (the random soak's seed 11 plan 30, a 111 on the mounter)."""
    faults = {"printer-1": FaultPlan(alarms=[ScheduledAlarm(102, at_wafer=2)])}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        first, second = r.new_lot("PST", 2)
        controller = r.controller()
        interlocks: list[LineEvent] = []
        controller.events.listen(lambda e: interlocks.append(e) if (
            e.kind is EventKind.ALARM_SET and e.data["code"] == "interlock") else None)
        await run_lots(controller, ["PST"])
        assert r.store.get_wafer(second).state == "awaiting_disposition"
        assert r.store.get_wafer(first).state == "held"
        held = next(e for e in reversed(r.store.events(first)) if e.to_state == "held")
        assert "printer-1 alarm 102 PASTE EMPTY" in held.why and "FIL" in held.why
        assert held.tool == "printer-1"
        assert [(e.tool, e.wafer_id) for e in interlocks] == [("printer-1", first)]
        [alarm] = r.store.alarms(tool="printer-1")
        assert alarm.code == 102 and alarm.cleared_at is None  # still latched: it is shown


async def test_a_fault_of_ours_in_a_step_sends_the_wafer_to_an_engineer_and_the_run_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """A bug in a step's code (here the reflow's judgment raising for one wafer: nothing a
    tool can do) escaped the runner into the scheduler's task: the wafer stayed running
    with no step to run it and the run never ended. Now that wafer fails its step with the
    reason, an engineer decides, the traceback is stored with its event and the other wafer
    finishes."""
    original = Reflow.judge

    def judge(self, step, result, wafer_id, *, repaired=False):
        if wafer_id.endswith("-02"):
            raise RuntimeError("a bug in the judgment")
        return original(self, step, result, wafer_id, repaired=repaired)

    monkeypatch.setattr(Reflow, "judge", judge)
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        first, second = r.new_lot("B1", 2)
        with caplog.at_level(logging.ERROR, logger="sequences.wafer.runner"):
            await run_lots(r.controller(), ["B1"])
        assert r.store.get_wafer(first).state == "complete"
        assert r.store.get_wafer(second).state == "awaiting_disposition"
        last = r.store.events(second)[-1]
        assert (last.trigger, last.step_index) == ("step_failed", 2)
        assert last.why == "internal error: RuntimeError: a bug in the judgment"
        # the traceback is kept with the event, for the bug report
        assert "RuntimeError: a bug in the judgment" in last.measurements["traceback"]
        assert "in judge" in last.measurements["traceback"]
    # the terminal gets one line, no traceback
    (logged,) = [rec for rec in caplog.records if rec.name == "sequences.wafer.runner"]
    assert logged.exc_info is None and "internal error" in logged.getMessage()


async def test_a_fault_of_ours_in_a_changeover_puts_the_tool_out_of_service_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """A bug in a changeover's code (here the printer's for the second paste: nothing a
    tool can do) escaped into the scheduler's task, which logged it and freed the tool: the
    next pass started the same changeover again, and again, without end. Now the tool is
    out of service for the run (as a setup failing with no alarm is), told once, and the
    run ends with the wafers that needed it held, naming why."""
    original = PastePrint.prepare
    tried: list[str] = []

    async def prepare(self, driver, step, **kwargs):
        if step.paste_alloy != "Pb95Sn5":  # the recipe's first paste
            tried.append(step.paste_alloy)
            raise RuntimeError("a bug in the changeover")
        return await original(self, driver, step, **kwargs)

    monkeypatch.setattr(PastePrint, "prepare", prepare)
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("B1", 2)
        with caplog.at_level(logging.ERROR):
            (outcome,) = await run_lots(r.controller(), ["B1"])
        states = {w: r.store.get_wafer(w).state for w in wafers}
        notes = [a.detail for a in r.store.audit_log() if a.actor == "printer-1"]
        whys = {r.store.events(w)[-1].why for w in wafers}
        tools = {r.store.events(w)[-1].tool for w in wafers}
        # The next run leaves them held for a person: they name their tool (for the line's
        # interlock alarm), yet are not the holds recovery takes up (tests/
        # test_interlock_holds.py): no changeover is tried again without a person's word.
        (again,) = await run_lots(r.controller(), ["B1"])
        assert again.wafers == states, again.wafers
        assert [r.store.events(w)[-1].why for w in wafers] == [*whys] * len(wafers)
    assert len(tried) == 1, tried  # tried once, not on every pass
    assert any("internal error: RuntimeError: a bug in the changeover" in n for n in notes), notes
    assert outcome.wafers == states and set(states.values()) == {"held"}, states
    assert whys == {"interlock: printer-1 is out of service for this run (changeover failed: "
                    "internal error: RuntimeError: a bug in the changeover); a person "
                    "decides: continued, it goes on in the lot's next run"}, whys
    assert tools == {"printer-1"}, tools  # the holds (and so the interlock alarm) name it


async def test_an_alarm_on_a_tool_the_lot_never_needs_is_recorded_when_the_run_ends(
        tmp_path: Path) -> None:
    """The mounter's door opened and closed while a print lot ran (400 latched, CLR once
    closed): no wafer needed the mounter, so nothing asked it, and the run ended with the
    mounter in ALARM and no row of `bumpline alarms` (the soak on the independent tools,
    seed 1 plan 17: an oven the lot was done with). Now every tool in service is asked
    once as the run ends: the alarm is recorded, and cleared, its cause gone."""
    faults = {"placer-1": parse_tool_faults("door=100-200")}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("B1", 1)  # rebump-hipb-snpb: printer, oven, cleaner only
        (outcome,) = await run_lots(r.controller(), ["B1"])
        assert outcome.wafers == {wafers[0]: "complete"}, outcome.wafers
        (alarm,) = r.store.alarms(tool="placer-1")
        assert alarm.code == 400 and "found as the run ended" in alarm.text, alarm.text
        assert not alarm.active  # the door was closed: the CLEAR was taken
        assert r.model("placer-1").state == "IDLE"


async def test_wafers_held_for_a_remedy_go_on_after_a_restart_once_it_is_done(
        tmp_path: Path) -> None:
    """102 PASTE EMPTY latches while the printer is idle between the two passes. The first
    wafer back for its second print is held at the interlock, the CLR refused (102 needs
    FIL), and the other, waiting, is held naming the remedy; the run ends. A person refills
    (FIL clears 102 at the printer) and runs the lot again: both were restored held for a
    person for good. Now the line's holds at the printer are taken up as the line held
    them: the printer shows no alarm, they go on (their interlocks checked again) and the
    lot completes."""
    faults = {"printer-1": parse_tool_faults("alarm=102@800")}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("FIL", 2)
        (outcome,) = await run_lots(r.controller(), ["FIL"])
        assert outcome.wafers == dict.fromkeys(wafers, "held"), outcome.wafers
        whys = {r.store.events(w)[-1].why for w in wafers}
        assert any("its remedy is FIL" in why for why in whys), whys
        assert {r.store.events(w)[-1].tool for w in wafers} == {"printer-1"}

        await r.tools["printer-1"].fill()  # the person's remedy
        (outcome,) = await run_lots(r.controller(), ["FIL"])
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        for wafer in wafers:
            assert [s.kind for s in r.store.steps(wafer) if s.status == "done"] == [
                "print", "reflow", "clean", "print", "reflow", "clean"]
        await assert_line_empty(r)


def link_lost_heard(controller: Any) -> asyncio.Future[LineEvent]:
    """The first link-lost alarm the controller's event stream tells, for awaiting."""
    lost: asyncio.Future[LineEvent] = asyncio.get_running_loop().create_future()
    controller.events.listen(
        lambda e: lost.set_result(e) if e.kind is EventKind.ALARM_SET
        and e.data["code"] == "link_lost" and not lost.done() else None)
    return lost


@pytest.mark.faults
async def test_a_plater_silent_mid_batch_whose_batch_an_alarm_ended_meanwhile(
    tmp_path: Path,
) -> None:
    """The plater's link goes away while its batch runs; meanwhile an emergency stop is
    pressed and released at the plater (900 ends the batch where it stands: ALARM). When
    the link is back, recovery asks the tool, as after a controller stop: the batch ended
    in an alarm with the carrier inside (``StoppedByAlarm`` on the link's return): the
    rider's step failed, for an engineer, the alarm recorded naming it, CLEARed, and the
    carrier unloaded once, so nothing is left in the plater."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW, platers=1) as r:
        wafers = r.new_lot("PLT2", 1, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller(Watch())
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        r.tools["plater-1"].on_event(
            lambda e: running.set_result(None) if e.name == "STEP" and not running.done()
            else None)
        lost = link_lost_heard(controller)
        task = asyncio.create_task(controller.run(["PLT2"]))
        await asyncio.wait_for(running, WAIT_S)
        await r.line.stop_tool("plater-1")
        await asyncio.wait_for(lost, WAIT_S)
        plater.latch_alarm(900, r.clock.now(), "emergency stop pressed and released")
        await r.line.restart_tool("plater-1")
        [outcome] = await finish(task)
        assert outcome.wafers == {wafers[0]: "awaiting_disposition"}, outcome
        failed = r.store.events(wafers[0])[-1]
        assert (failed.trigger, failed.step_index) == ("step_failed", 4), failed
        assert "900" in failed.why, failed.why
        (alarm,) = [a for a in r.store.alarms(tool="plater-1") if a.code == 900]
        assert alarm.wafer_id == wafers[0] and alarm.cleared_at is not None, alarm
        assert (plater.state.value, plater.batch) == ("IDLE", None)  # cleared, carrier out
        assert plater._batches_started == 1


@pytest.mark.faults
async def test_a_plater_silent_before_its_unload_with_an_alarm_latched_meanwhile(
    tmp_path: Path,
) -> None:
    """The batch ended OK (DONE, its result read); as the line sends its UNLOAD the link
    goes away, and meanwhile an emergency stop is pressed and released at the plater (900
    latched in DONE keeps the carrier in). When the link is back, recovery asks the tool:
    the result is final and OK, the carrier kept in by an alarm (``KeptInside`` on the
    link's return): the rider is judged from it, never plated again, held until the alarm
    is recorded, CLEARed and the carrier unloaded once, then goes on and completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW, platers=1) as r:
        wafers = r.new_lot("PLT3", 1, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        controller = r.controller(Watch())
        driver = r.tools["plater-1"]
        unload = driver.unload
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def silent_at_the_unload(*args: Any, **kwargs: Any) -> Any:
            if not gone.done():
                assert plater.state.value == "DONE" and plater.result.status == "OK"
                plater.latch_alarm(900, r.clock.now(), "emergency stop pressed and released")
                await r.line.stop_tool("plater-1")
                gone.set_result(None)
            return await unload(*args, **kwargs)

        driver.unload = silent_at_the_unload
        lost = link_lost_heard(controller)
        task = asyncio.create_task(controller.run(["PLT3"]))
        await asyncio.wait_for(lost, WAIT_S)
        await r.line.restart_tool("plater-1")
        [outcome] = await finish(task)
        assert outcome.wafers == {wafers[0]: "complete"}, outcome
        assert plater._batches_started == 1  # plated once
        assert (plater.state.value, plater.batch) == ("IDLE", None)  # cleared, carrier out
        (alarm,) = [a for a in r.store.alarms(tool="plater-1") if a.code == 900]
        assert alarm.wafer_id == wafers[0] and alarm.cleared_at is not None, alarm
        assert [s.status for s in r.store.steps(wafers[0]) if s.kind == "barrier"] == ["done"]

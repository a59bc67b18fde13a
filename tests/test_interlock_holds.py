"""Wafers held at a tool's interlock that nobody looked at again, on the simulated line
in-process with real drivers and a fresh store (the rig of test_lot_run).

A HostLink LOD refused past the NAK 06 wait failed the step, though nothing of the wafer
had reached the tool: an engineer's disposition for a wafer the printer never took. A
wafer held at the cleaner's DI input stayed held for a person after the water recovered,
where one held for an alarm goes on once the CLEAR is taken. After a restart, a wafer the
line had held at an interlock stayed held for a person, alarm or none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_lot_run import WAIT_S, Watch, assert_line_empty, is_, rig, run_lots

from controller.line.rechecks import RECHECK_FOR_S
from sequences.kinds.hostlink_step import INTERLOCK_WAIT_S
from sim.faults import parse_tool_faults


def door_at_first_load(r: Any, open_s: float) -> list[asyncio.Future[None]]:
    """A person opens the printer's door as the first wafer's LOD is sent, and closes it
    ``open_s`` tool s later (our simulator latches 400 and refuses LOD with NAK 06 while it
    is open, then with NAK 05 while 400 stays latched). The person's walk, for awaiting."""
    driver, printer = r.tools["printer-1"], r.model("printer-1")
    load = driver.load
    walks: list[asyncio.Future[None]] = []

    async def person() -> None:
        await r.clock.sleep(open_s)
        printer.close_door(r.clock.now())

    async def opening(*args: Any, **kwargs: Any) -> Any:
        if not walks:
            printer.open_door(r.clock.now())
            walks.append(asyncio.ensure_future(person()))
        return await load(*args, **kwargs)

    driver.load = opening
    return walks


async def door_lot(tmp_path: Path, lot: str, open_s: float) -> tuple[Any, list[str], list[Any]]:
    """A 2-wafer lot whose first LOD meets the printer's door, open ``open_s`` tool s: both
    wafers complete, each loaded and printed twice (the rebump's two prints), the alarm
    recorded and cleared; the first wafer's events."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot(lot, 2)
        walks = door_at_first_load(r, open_s)
        (outcome,) = await run_lots(r.controller(), [lot])
        await walks[0]
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        printer = r.model("printer-1")
        assert (printer.wafers_loaded, printer.prints_executed) == (4, 4)
        (alarm,) = r.store.alarms(tool="printer-1")
        assert alarm.code == 400 and alarm.cleared_at is not None
        await assert_line_empty(r)
        events = r.store.events(wafers[0])
    assert not any(e.to_state == "awaiting_disposition" for e in events), events
    (back,) = [e for e in events if e.trigger == "recover"]
    assert (back.from_state, back.to_state) == ("step1_running", "step1_waiting")
    held = events[events.index(back) + 1]
    assert (held.trigger, held.tool) == ("hold", "printer-1")
    assert back.why.endswith("before the wafer went in"), back.why
    return held, wafers, events


async def test_a_load_refused_past_the_door_wait_is_held_not_failed(tmp_path: Path) -> None:
    """The door stays open past the 300 tool s LOD is asked again for: the step failed
    ("tool error: LOD refused: NAK 06 INTERLOCK"), an engineer's disposition for a wafer
    the printer never took. Now it goes back to waiting, held at the printer's interlock
    naming the refusal; the printer's alarm (400, latched by the door) is recorded and
    cleared once the door is closed, and the wafer goes on."""
    held, _, _ = await door_lot(tmp_path, "LODW", INTERLOCK_WAIT_S + 100.0)
    assert held.why == (f"interlock: printer-1 refused LOD for {INTERLOCK_WAIT_S:g} s "
                        "(NAK 06 INTERLOCK: a door open?) before the wafer went in"), held.why


async def test_a_load_refused_for_an_alarm_latched_during_the_wait_is_held(
        tmp_path: Path) -> None:
    """The door is closed within the wait, but the 400 it latched stays: the next LOD is
    refused with NAK 05 ALARM ACTIVE, which is not waited out, and the step failed. The
    wafer never went in: it is held for the alarm, which the line clears, and goes on."""
    held, _, _ = await door_lot(tmp_path, "LODA", 100.0)
    assert held.why == "interlock: alarm 400 DOOR OPEN active", held.why


async def test_a_wafer_held_at_low_di_water_goes_on_once_it_recovers(tmp_path: Path) -> None:
    """flux-cleaner.md's DI_RESISTIVITY_LOW: the water is bad from the start until tool
    time 1500 (no alarm: 630 comes only at a START). Both wafers reach the cleaner while it
    is bad and are held at its interlock; they stayed held for a person, the run ending at
    once. Now the cleaner is looked at again every minute, and once its interlocks refuse
    no more the wafers go on (their interlocks checked again) and the lot completes."""
    faults = {"cleaner-1": parse_tool_faults("di=0-1500")}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("DI1", 2)
        (outcome,) = await run_lots(r.controller(), ["DI1"])
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        for wafer in wafers:
            events = r.store.events(wafer)
            (held,) = [e for e in events if e.trigger == "hold"]
            assert (held.why, held.tool) == ("interlock: DI rinse resistivity low", "cleaner-1")
            resumed = events[events.index(held) + 1]
            assert resumed.trigger == "resume" and "cleaner-1 looked at again" in resumed.why
            assert held.tool_time < 1500.0 <= resumed.tool_time, (held, resumed)
            assert [s.kind for s in r.store.steps(wafer)] == [
                "print", "reflow", "clean", "print", "reflow", "clean"]  # one clean each
        assert r.store.alarms(tool="cleaner-1") == []
        await assert_line_empty(r)


async def test_a_wafer_held_at_di_water_that_never_recovers_is_left_for_a_person(
        tmp_path: Path) -> None:
    """The water stays bad: the run waits while a look may bring the wafers back, then
    ends with them held naming why, each left for a person with a note."""
    faults = {"cleaner-1": parse_tool_faults("di=0")}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        (wafer,) = r.new_lot("DI2", 1)
        (outcome,) = await run_lots(r.controller(), ["DI2"])
        ended = r.clock.now()
        assert outcome.wafers == {wafer: "held"}, outcome.wafers
        held = r.store.events(wafer)[-1]
        assert (held.trigger, held.why) == ("hold", "interlock: DI rinse resistivity low")
        assert ended >= held.tool_time + RECHECK_FOR_S  # waited for the looks, then ended
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"
                 and a.detail.startswith(wafer)]
        assert notes == [f"{wafer}: still held at its interlock after {RECHECK_FOR_S:g} tool s "
                         "of looks at cleaner-1: it shows DI rinse resistivity low; left held "
                         "for a person: continued, it goes on"], notes
        assert r.store.alarms(tool="cleaner-1") == []
        assert [s.kind for s in r.store.steps(wafer)] == ["print", "reflow"]


async def test_an_alarm_a_look_finds_is_recorded_and_cleared(tmp_path: Path) -> None:
    """While both wafers are held at the bad water, a person opens the cleaner's door for
    100 tool s (400). The look finds the cleaner in ALARM: no step asks it, so the alarm is
    handed to the tool alarms (recorded, CLEARed once the door is closed), the wafers go
    back to their interlocks, are held again at the water, and go on once it is good."""
    faults = {"cleaner-1": parse_tool_faults("di=0-2100,door=1350-1450")}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        wafers = r.new_lot("DI3", 2)
        (outcome,) = await run_lots(r.controller(), ["DI3"])
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        (alarm,) = r.store.alarms(tool="cleaner-1")
        assert alarm.code == 400 and alarm.cleared_at is not None, alarm
        assert 1350.0 <= alarm.tool_time < 1450.0, alarm  # recorded before the door closed
        for wafer in wafers:
            holds = [e for e in r.store.events(wafer) if e.trigger == "hold"]
            assert holds[0].tool_time < 1350.0 and holds[-1].tool_time < 2100.0, holds
            assert {e.why for e in holds} == {"interlock: DI rinse resistivity low"}, holds


async def test_a_wafer_held_at_low_paste_goes_on_after_the_line_changed_the_printer_over(
        tmp_path: Path) -> None:
    """The cartridge holds one print (0.5 %): the first wafer prints, the second is held at
    the printer's interlock (paste below one print, no alarm). The line then changes the
    printer over for the first wafer's second print (another stencil and paste: a fresh
    cartridge). The looks found the paste good but the printer set up for the other print
    and counted that as a refusal: the held wafer stayed held for a person although the
    line changes the setup for any waiting wafer (the independent soak, seed 5 plan 14).
    Now a setup the hold did not name is the scheduler's to change: the wafer goes back to
    waiting, the printer is changed over for it, and the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("PST", 2)
        r.model("printer-1").paste_tenths = 5
        (outcome,) = await run_lots(r.controller(), ["PST"])
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        holds = {w: [e for e in r.store.events(w) if e.trigger == "hold"] for w in wafers}
        (held_wafer,) = [w for w, hs in holds.items() if hs]
        (held,) = holds[held_wafer]
        assert held.why == "interlock: paste level 0.1 % is below one print (0.4 %)", held.why
        events = r.store.events(held_wafer)
        resumed = events[events.index(held) + 1]
        assert resumed.trigger == "resume" and "printer-1 looked at again" in resumed.why
        assert resumed.tool_time - held.tool_time < RECHECK_FOR_S, (held, resumed)
        assert r.model("printer-1").prints_executed == 4
        await assert_line_empty(r)


@pytest.mark.parametrize("fault, why", [
    ("di=0-2000", "interlock: DI rinse resistivity low"),
    # Latched on the idle cleaner long before the wafer can come (nothing reads an idle
    # tool): found by the wafer's interlock read. At 1000 it once fell in the wafer's
    # wash on a loaded machine (the wafer then failed inside, no hold).
    ("alarm=620@500", "interlock: alarm 620 SPRAY PRESSURE LOW active; cleaner is ALARM"),
])
async def test_a_wafer_held_at_an_interlock_when_the_controller_stopped_goes_on_after_it(
        tmp_path: Path, fault: str, why: str) -> None:
    """The wafer reaches the cleaner while its DI water is bad (no alarm), or while it shows
    620 (the spray pressure, latched while it stood idle), and is held at its interlock; then the
    controller stops (its task cancelled: what it committed stays). The next run restored
    it held and ended at once: held for a person, the water recovered, or the cleaner left
    in ALARM with the alarm never cleared. Now recovery hands it to the line's alarm
    handling as the step did: the water is looked at again, the alarm CLEARed (the alarm
    recorded once), and the wafer goes on (its interlocks checked again) and completes."""
    faults = {"cleaner-1": parse_tool_faults(fault)}
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", faults=faults) as r:
        (wafer,) = r.new_lot("RH1", 1)
        watch = Watch()
        held = watch.when(is_(wafer, "hold"))
        stopped = asyncio.ensure_future(r.controller(watch).run(["RH1"]))
        await asyncio.wait_for(held, WAIT_S)
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        assert r.store.get_wafer(wafer).state == "held"
        hold = r.store.events(wafer)[-1]
        assert (hold.trigger, hold.why, hold.tool) == ("hold", why, "cleaner-1"), hold

        (outcome,) = await run_lots(r.controller(), ["RH1"])
        assert outcome.wafers == {wafer: "complete"}, outcome.wafers
        events = r.store.events(wafer)
        resumed = events[events.index(hold) + 1]
        assert resumed.trigger == "resume", resumed
        assert [s.kind for s in r.store.steps(wafer)] == [
            "print", "reflow", "clean", "print", "reflow", "clean"]  # one clean each
        alarms = r.store.alarms(tool="cleaner-1")
        if fault.startswith("alarm"):
            (alarm,) = alarms
            assert alarm.code == 620 and alarm.cleared_at is not None, alarm
        else:
            assert resumed.tool_time >= 2000.0 and "looked at again" in resumed.why, resumed
            assert alarms == []
        await assert_line_empty(r)


async def test_a_cleaner_load_refused_for_an_alarm_since_the_interlock_read_is_held(
        tmp_path: Path) -> None:
    """A person opens the cleaner's door as the first wafer's LOAD is sent (400 latched
    after the interlock read) and closes it 100 tool s later. The LOAD, refused in ALARM
    with the chamber empty, failed the step for an engineer ("tool error: COMMAND=LOAD
    (state ALARM, alarm 400 DOOR OPEN)", the independent soak's seed 7 plan 23), though
    nothing of the wafer went in. Now it is held at the cleaner's interlock naming the
    alarm, the alarm is recorded and CLEARed once the door is shut, and the wafer goes on,
    as at the oven's entrance and a HostLink LOD."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        wafers = r.new_lot("CLD", 2)
        driver, cleaner = r.tools["cleaner-1"], r.model("cleaner-1")
        load = driver.load
        walks: list[asyncio.Future[None]] = []

        async def person() -> None:
            await r.clock.sleep(100.0)
            cleaner.close_door(r.clock.now())

        async def opening(*args: Any, **kwargs: Any) -> Any:
            if not walks:
                cleaner.open_door(r.clock.now())
                walks.append(asyncio.ensure_future(person()))
            return await load(*args, **kwargs)

        driver.load = opening
        (outcome,) = await run_lots(r.controller(), ["CLD"])
        await walks[0]
        assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
        (alarm,) = r.store.alarms(tool="cleaner-1")
        assert alarm.code == 400 and alarm.cleared_at is not None, alarm
        await assert_line_empty(r)
        events = r.store.events(wafers[0])
    assert not any(e.to_state == "awaiting_disposition" for e in events), events
    (back,) = [e for e in events if e.trigger == "recover"]
    assert back.from_state.endswith("_running") and back.to_state.endswith("_waiting"), back
    held = events[events.index(back) + 1]
    assert (held.trigger, held.tool) == ("hold", "cleaner-1"), held
    assert held.why == "interlock: alarm 400 DOOR OPEN active", held.why

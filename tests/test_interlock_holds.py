"""Wafers held at a tool's interlock, on the simulated line in-process with real drivers
and a fresh store (the rig of test_lot_run).

A HostLink LOD refused past the NAK 06 wait failed the step, though nothing of the wafer
had reached the tool: an engineer's disposition for a wafer the printer never took."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_lot_run import assert_line_empty, rig, run_lots

from sequences.kinds.hostlink_step import INTERLOCK_WAIT_S


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

"""An alarm latched during a setup's long wait (the plater's baths, a printer's or mounter's
changeover, the oven's heat-up or cool-down after APPLY) ends the wait and is recorded at
once, on the simulated line in-process with real drivers and a fresh store (the rig of
test_lot_run). These waits looked at the tool at their end only (or, the plater's, at its
baths only): the alarm was heard of up to 25 minutes late, or never when the run ended or
was stopped first, since a stop cancels a setup (the random fault soak, seed 1 plan 21)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_lot_run import WAIT_S, assert_line_empty, finish, rig, run_lots

from controller.line.controller import LineController
from sequences.kinds.base import SETUP_ALARM_LOOK_S
from sequences.kinds.paste_print import CHANGEOVER_S

# The stopped runs' tests stop the controller this many tool seconds into the wait, well
# before its end without a look (the CHG's 600 s, a cold oven's ~520 s heat-up) and ten
# looks after the alarm; at this speed the margin either side is seconds of wall time.
STOP_AFTER_S = 300.0
SLOW = 100.0


async def stop_at(controller: LineController, task: asyncio.Task[object],
                  clock: object, at: float) -> None:
    """Stop ``controller`` at tool time ``at`` and wait for its run to end."""
    await clock.sleep(at - clock.now())  # type: ignore[attr-defined]
    controller.stop()
    await finish(task)  # type: ignore[arg-type]


@pytest.mark.faults
async def test_an_alarm_during_the_plater_bath_wait_fails_its_setup_ahead_and_is_recorded(
        tmp_path: Path) -> None:
    """The plater is set up ahead of the wafers (its baths heat from 25 °C, ~2,000 tool s),
    and 710 latches during that wait. The wait polled the baths only, and the baths go on
    heating in ALARM: the setup waited them out and 710 was heard of only when the wafer came
    to the plater, by its interlocks (in the random fault soak, seed 1 plan 21, a lot whose
    wafers all stopped before the plater ended with 710 never recorded). Now the wait ends
    with the alarm, which is recorded at once and CLEARed long before the wafer needs the
    plater; the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", platers=1) as r:
        [wafer] = r.new_lot("BTH", 1, recipe_name="rebump-sncu-niau-snpb")
        plater = r.model("plater-1")
        handle = plater.handle
        looks: list[float] = []

        def alarm_in_bath_wait(line: str, now: float) -> str:
            reply: str = handle(line, now)
            if line.startswith("BATH?"):
                looks.append(now)
                if len(looks) == 2:  # the wait's first look (prepare's own was the first)
                    plater.latch_alarm(710, now, "the gold heater tripped in the heat-up")
            return reply

        plater.handle = alarm_in_bath_wait
        await run_lots(r.controller(), ["BTH"])
        assert r.store.get_wafer(wafer).state == "complete"
        [alarm] = r.store.alarms(tool="plater-1")
        assert alarm.code == 710 and alarm.cleared_at is not None, alarm
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert "setup ahead of the wafers failed: alarm 710 AU BATH TEMP OUT" in notes, notes
        needs = next(e for e in r.store.events(wafer) if e.to_state == "step4_waiting")
        assert alarm.tool_time is not None and needs.tool_time is not None
        assert alarm.tool_time < needs.tool_time
        await assert_line_empty(r)


@pytest.mark.faults
async def test_an_alarm_during_the_printer_changeover_ahead_is_recorded_before_a_stop(
        tmp_path: Path) -> None:
    """The printer is set up ahead of the wafers (ballmount-sac305-rebump-snbi prints at step
    4: a CHG, 600 tool s), and its door is opened as the CHG starts (400). The changeover
    slept its 600 s before its first STS: the controller stopped 300 s into it (a stop
    cancels a setup) left the printer in ALARM and no alarm recorded. Now the changeover
    looks every SETUP_ALARM_LOOK_S: the alarm is recorded, and the setup ahead failed on it."""
    assert SETUP_ALARM_LOOK_S * 2 < STOP_AFTER_S < CHANGEOVER_S
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW) as r:
        r.new_lot("CHG", 1, recipe_name="ballmount-sac305-rebump-snbi")
        printer = r.model("printer-1")
        handle = printer.handle
        changing: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def door_opened_as_chg_starts(cmd: str, args: list[str], now: float) -> list[str]:
            ack: list[str] = handle(cmd, args, now)
            if cmd == "CHG" and not changing.done():
                printer.open_door(now)
                changing.set_result(now)
            return ack

        printer.handle = door_opened_as_chg_starts
        controller = r.controller()
        task = asyncio.ensure_future(controller.run(["CHG"]))
        chg_at = await asyncio.wait_for(changing, WAIT_S)
        await stop_at(controller, task, r.clock, chg_at + STOP_AFTER_S)
        [alarm] = r.store.alarms(tool="printer-1")
        assert alarm.code == 400, alarm
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert "setup ahead of the wafers failed: alarm 400 DOOR OPEN" in notes, notes


@pytest.mark.faults
async def test_an_alarm_during_the_oven_heat_up_ahead_is_recorded_before_a_stop(
        tmp_path: Path) -> None:
    """The oven is set up ahead of the wafers from cold (rebump-hipb-snpb's high-lead profile:
    the hottest zone 25 -> 362 °C, ~520 tool s expected before a READY poll), and its N2
    flow drops 60 s after APPLY (550). The heat-up was slept through: the controller
    stopped 300 s after APPLY left the oven in ALARM and no alarm recorded. Now the wait
    reads ALARM_CODE every SETUP_ALARM_LOOK_S: the alarm is recorded, the setup failed on it."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=SLOW) as r:
        r.new_lot("HOT", 1, recipe_name="rebump-hipb-snpb")
        oven = r.model("oven-1")
        command = oven._command
        applied: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def n2_lost_after_apply(code: int) -> None:
            command(code)
            if code == 1 and not applied.done():  # APPLY (reflow-oven.md, COMMAND codes)
                now = r.clock.now()
                oven.schedule_alarm(550, at_time=now + 60.0)
                applied.set_result(now)

        oven._command = n2_lost_after_apply
        controller = r.controller()
        task = asyncio.ensure_future(controller.run(["HOT"]))
        apply_at = await asyncio.wait_for(applied, WAIT_S)
        await stop_at(controller, task, r.clock, apply_at + STOP_AFTER_S)
        [alarm] = r.store.alarms(tool="oven-1")
        assert alarm.code == 550, alarm
        notes = [a.detail for a in r.store.audit_log() if a.action == "tool.note"]
        assert "setup ahead of the wafers failed: alarm 550 N2 FLOW LOW" in notes, notes



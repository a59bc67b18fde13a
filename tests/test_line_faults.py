"""Faults that hit more than one wafer or take a tool away (issue 10, items 6 and 11), on the
simulated line in-process with real drivers and a fresh store (the rig of test_lot_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lot_run import rig, run_lots

from controller.events import EventKind, LineEvent
from sim.faults import FaultPlan, ScheduledAlarm


@pytest.mark.faults
async def test_an_oven_alarm_names_every_wafer_on_the_belt(tmp_path: Path) -> None:
    """560 (thermocouple) while four wafers ride: the alarm names all four, not the first."""
    faults = {"oven-1": FaultPlan(alarms=[ScheduledAlarm(560, at_wafer=3)])}
    async with rig(tmp_path, faults=faults) as r:
        wafers = r.new_lot("TC1", 4)
        controller = r.controller()
        alarms: list[LineEvent] = []
        controller.events.listen(
            lambda e: alarms.append(e) if e.kind is EventKind.ALARM_SET else None)
        await run_lots(controller, ["TC1"])
        failed = [w for w in wafers if r.store.get_wafer(w).state == "awaiting_disposition"]
        assert len(failed) > 1  # the thermocouple hit several wafers on the belt
        (event,) = [e for e in alarms if e.data["code"] == 560]
        assert sorted(event.data["wafers"]) == failed
        (alarm,) = r.store.alarms(tool="oven-1")
        assert alarm.wafer_id == event.data["wafers"][0]
        assert all(w in alarm.text for w in failed if w != alarm.wafer_id)

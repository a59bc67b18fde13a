"""SEMI E10 states from the tools' own states, alarms, links and modes
(controller/line/e10.py)."""

from __future__ import annotations

import pytest

from controller.line.e10 import E10State, ToolMode, e10_from_status, e10_state
from drivers.types import (
    CleanerState,
    OvenState,
    OvenStatus,
    PlacerState,
    PrinterState,
    PrinterStatus,
)


@pytest.mark.parametrize(
    "states", [PrinterState, PlacerState, OvenState, CleanerState], ids=lambda s: s.__name__
)
def test_every_tool_state_has_an_e10_state(states) -> None:  # noqa: ANN001
    for state in states:
        assert isinstance(e10_state(state), E10State)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (PrinterState.PRINTING, E10State.PRODUCTIVE),
        (PrinterState.IDLE, E10State.STANDBY),
        (PrinterState.CHANGEOVER, E10State.SCHEDULED_DOWN),
        (PrinterState.FILLING, E10State.SCHEDULED_DOWN),
        (PlacerState.REPAIRING, E10State.PRODUCTIVE),
        (OvenState.PROCESSING, E10State.PRODUCTIVE),
        (OvenState.HEATING, E10State.SCHEDULED_DOWN),
        (OvenState.READY, E10State.STANDBY),
        (OvenState.OFF, E10State.NON_SCHEDULED),
        (CleanerState.WASHING, E10State.PRODUCTIVE),
        (CleanerState.ALARM, E10State.UNSCHEDULED_DOWN),
    ],
)
def test_e10_mapping(state, expected: E10State) -> None:  # noqa: ANN001
    assert e10_state(state) is expected


def test_alarms_links_and_modes_override_the_tool_state() -> None:
    assert e10_state(OvenState.PROCESSING, alarm_code=540) is E10State.UNSCHEDULED_DOWN
    assert e10_state(PrinterState.IDLE, link_up=False) is E10State.UNSCHEDULED_DOWN
    assert e10_state(None) is E10State.UNSCHEDULED_DOWN
    assert e10_state(PrinterState.IDLE, mode=ToolMode.ENGINEERING) is E10State.ENGINEERING
    assert e10_state(OvenState.READY, mode=ToolMode.MAINTENANCE) is E10State.SCHEDULED_DOWN
    assert e10_state(OvenState.READY, mode=ToolMode.OFFLINE) is E10State.NON_SCHEDULED
    # The cleaner's RINSING is 4 like the oven's ALARM: it is no alarm.
    assert e10_state(CleanerState.RINSING, mode=ToolMode.ENGINEERING) is E10State.ENGINEERING
    assert e10_state(CleanerState.READY) is E10State.STANDBY  # READY == OvenState.HEATING == 1
    # An alarm shows even on a tool an engineer has taken.
    assert e10_state(PrinterState.ALARM, 400, mode=ToolMode.ENGINEERING) is (
        E10State.UNSCHEDULED_DOWN
    )


def test_e10_from_driver_status() -> None:
    oven = OvenStatus(
        state=OvenState.PROCESSING,
        zone_pv_c=(200.0,) * 10,
        wafers_on_belt=2,
        alarm_code=0,
        o2_ppm=20,
        active_profile_id=7,
        entrance_clear=True,
        wafer_at_exit=False,
        zones_stable=True,
        alarm_active=False,
        nitrogen_on=True,
        conveyor_running=True,
    )
    assert e10_from_status(oven) == (E10State.PRODUCTIVE, "PROCESSING")
    printer = PrinterStatus(
        state=PrinterState.ALARM,
        wafer_id="LOT42-01",
        alarm_code=102,
        prints_since_wipe=3,
        paste_level_pct=0.0,
        stencil_id="ST-300-100",
        paste_alloy="Pb95Sn5",
    )
    assert e10_from_status(printer) == (E10State.UNSCHEDULED_DOWN, "ALARM")
    assert e10_from_status(None) == (E10State.UNSCHEDULED_DOWN, "NO LINK")


def test_e10_state_names_parse() -> None:
    assert E10State.parse("SCHEDULED_DOWN") is E10State.SCHEDULED_DOWN
    assert E10State.parse("non-scheduled") is E10State.NON_SCHEDULED
    assert E10State.parse("Non Scheduled") is E10State.NON_SCHEDULED
    with pytest.raises(ValueError, match="unknown E10 state 'idle'"):
        E10State.parse("idle")

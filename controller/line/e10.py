"""SEMI E10 equipment states, and how each tool's own state maps onto them.

E10 splits a tool's time into six basic states. This module decides which one
a tool is in from what the controller sees: the tool's reported state, its
alarm code, whether the link is up, and the mode an engineer or the fab's plan
put it in. Pure functions; the store records the result over time.

Mapping decisions (E10 leaves the tool-specific split to the user):
- a tool running or holding a wafer (loading, processing, inspecting, repair,
  waiting for unload) is productive — repair is rework, which E10 counts as
  productive;
- idle and ready-to-load are standby; the oven at READY or in its energy-saving
  STANDBY is standby too (it can take a wafer with no setup);
- changeover, stencil wipe, paste refill and the oven heating to a new profile
  are scheduled down (E10's "setup" and "change of consumables");
- a latched alarm, any alarm code, or a lost link is unscheduled down;
- an oven switched OFF is non-scheduled (not planned for production);
- an explicit mode (engineering, maintenance, offline) wins over the tool's
  state unless the tool is in alarm, which always shows as unscheduled down.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from drivers.types import (
    CleanerState,
    CleanerStatus,
    OvenState,
    OvenStatus,
    PlacerState,
    PlacerStatus,
    PrinterState,
    PrinterStatus,
)


class E10State(StrEnum):
    PRODUCTIVE = "productive"
    STANDBY = "standby"
    ENGINEERING = "engineering"
    SCHEDULED_DOWN = "scheduled down"
    UNSCHEDULED_DOWN = "unscheduled down"
    NON_SCHEDULED = "non-scheduled"

    @classmethod
    def parse(cls, text: str) -> E10State:
        """From its value or name, e.g. "scheduled down", "SCHEDULED_DOWN", "scheduled-down"."""
        key = text.strip().lower().replace("_", " ").replace("-", " ")
        for state in cls:
            if key == state.value.replace("-", " "):
                return state
        names = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown E10 state {text!r} (expected one of: {names})")


class ToolMode(StrEnum):
    """What the line plan says the tool is for, set by people, not read from the tool."""

    PRODUCTION = "production"
    ENGINEERING = "engineering"  # process or equipment engineering runs
    MAINTENANCE = "maintenance"  # planned maintenance: scheduled down
    OFFLINE = "offline"  # not planned for use: non-scheduled


ToolStateValue = PrinterState | PlacerState | OvenState | CleanerState

_P, _S, _SD, _UD, _NS = (
    E10State.PRODUCTIVE,
    E10State.STANDBY,
    E10State.SCHEDULED_DOWN,
    E10State.UNSCHEDULED_DOWN,
    E10State.NON_SCHEDULED,
)

# One table per tool type: the oven's and cleaner's states are IntEnums, and equal
# numbers (OvenState.HEATING == CleanerState.READY == 1) would collide in one dict.
_MAPS: dict[type, dict[Any, E10State]] = {
    PrinterState: {
        PrinterState.IDLE: _S,
        PrinterState.CHANGEOVER: _SD,
        PrinterState.LOADING: _P,
        PrinterState.READY: _P,
        PrinterState.PRINTING: _P,
        PrinterState.INSPECTING: _P,
        PrinterState.DONE: _P,
        PrinterState.UNLOADING: _P,
        PrinterState.WIPING: _SD,
        PrinterState.FILLING: _SD,
        PrinterState.ALARM: _UD,
    },
    PlacerState: {
        PlacerState.IDLE: _S,
        PlacerState.CHANGEOVER: _SD,
        PlacerState.LOADING: _P,
        PlacerState.READY: _P,
        PlacerState.FLUXING: _P,
        PlacerState.PLACING: _P,
        PlacerState.INSPECTING: _P,
        PlacerState.DONE: _P,
        PlacerState.REPAIRING: _P,
        PlacerState.UNLOADING: _P,
        PlacerState.ALARM: _UD,
    },
    OvenState: {
        OvenState.OFF: _NS,
        OvenState.HEATING: _SD,
        OvenState.READY: _S,
        OvenState.PROCESSING: _P,
        OvenState.ALARM: _UD,
        OvenState.STANDBY: _S,
    },
    CleanerState: {
        CleanerState.IDLE: _S,
        CleanerState.READY: _S,
        CleanerState.LOADED: _P,
        CleanerState.WASHING: _P,
        CleanerState.STRIPPING: _P,  # the FC-2's resist strip: producing, as WASHING
        CleanerState.RINSING: _P,
        CleanerState.DRYING: _P,
        CleanerState.DONE: _P,
        CleanerState.ALARM: _UD,
    },
}

# Compared by identity: IntEnum members equal to other tools' numbers (OvenState.ALARM == 4).
_ALARM_STATES = (PrinterState.ALARM, PlacerState.ALARM, OvenState.ALARM, CleanerState.ALARM)

_MODE_STATE = {
    ToolMode.ENGINEERING: E10State.ENGINEERING,
    ToolMode.MAINTENANCE: E10State.SCHEDULED_DOWN,
    ToolMode.OFFLINE: E10State.NON_SCHEDULED,
}


def state_name(state: ToolStateValue) -> str:
    """The tool state as the tool names it (IntEnum states by name)."""
    return state.name


def e10_state(
    state: ToolStateValue | None,
    alarm_code: int = 0,
    *,
    link_up: bool = True,
    mode: ToolMode = ToolMode.PRODUCTION,
) -> E10State:
    """The E10 state of a tool in ``state`` (None when it could not be read)."""
    if not link_up or state is None:
        return E10State.UNSCHEDULED_DOWN
    if alarm_code or any(state is s for s in _ALARM_STATES):
        return E10State.UNSCHEDULED_DOWN
    if mode is not ToolMode.PRODUCTION:
        return _MODE_STATE[mode]
    try:
        return _MAPS[type(state)][state]
    except KeyError:
        raise ValueError(f"no E10 mapping for tool state {state!r}") from None


ToolStatus = PrinterStatus | PlacerStatus | OvenStatus | CleanerStatus


def e10_from_status(
    status: ToolStatus | None,
    *,
    link_up: bool = True,
    mode: ToolMode = ToolMode.PRODUCTION,
) -> tuple[E10State, str]:
    """(E10 state, tool state name) from a driver status; None = the tool did not answer."""
    if status is None or not link_up:
        return E10State.UNSCHEDULED_DOWN, "NO LINK"
    return (
        e10_state(status.state, status.alarm_code, mode=mode),
        state_name(status.state),
    )

"""Every driver class satisfies its kind's protocol (drivers/protocols.py), and the line
hands drivers out typed by the role its configuration gives them."""

from __future__ import annotations

import pytest
from modbus_fixtures import sim_cleaner, sim_oven

from drivers.cleaner import FluxCleaner
from drivers.line_config import parse_line_config
from drivers.oven import ReflowOven
from drivers.placer import BallPlacer
from drivers.printer import PastePrinter
from drivers.protocols import Cleaner, Oven, Placer, Printer, Tool
from drivers.serial_link import HostLinkPort
from drivers.tools import LineTools
from drivers.types import CleanerState, CleanerStatus, OvenState, OvenStatus, PlacerState
from sim.clock import ManualClock

KINDS = {PastePrinter: Printer, BallPlacer: Placer, ReflowOven: Oven, FluxCleaner: Cleaner}


def hostlink_drivers() -> tuple[PastePrinter, BallPlacer]:
    port = HostLinkPort("loop://", tool="t")  # never opened: only the verbs are looked at
    clock = ManualClock()
    return PastePrinter(port, clock), BallPlacer(port, clock)  # type: ignore[arg-type]


def test_hostlink_drivers_are_their_kind_and_only_their_kind() -> None:
    printer, placer = hostlink_drivers()
    # the static checker sees these assignments; a verb renamed in a driver breaks them
    typed_printer: Printer = printer
    typed_placer: Placer = placer
    assert isinstance(typed_printer, Printer) and isinstance(typed_printer, Tool)
    assert isinstance(typed_placer, Placer) and isinstance(typed_placer, Tool)
    assert not isinstance(printer, Placer) and not isinstance(placer, Printer)


async def test_modbus_drivers_are_their_kind_and_wait_for_returns_the_status() -> None:
    async with sim_oven() as (oven, _):
        typed_oven: Oven = oven
        assert isinstance(typed_oven, Oven) and not isinstance(oven, Cleaner)
        status = await typed_oven.wait_for(OvenState.OFF, OvenState.STANDBY, timeout_s=10)
        assert isinstance(status, OvenStatus) and status.state is OvenState.OFF
    async with sim_cleaner() as (cleaner, _):
        typed_cleaner: Cleaner = cleaner
        assert isinstance(typed_cleaner, Cleaner) and not isinstance(cleaner, Oven)
        clean = await typed_cleaner.wait_for(CleanerState.IDLE, CleanerState.READY, timeout_s=10)
        assert isinstance(clean, CleanerStatus)
        assert clean.state in (CleanerState.IDLE, CleanerState.READY)


def test_every_kind_clears_an_alarm_with_the_same_verb() -> None:
    for cls in KINDS:
        assert callable(getattr(cls, "clear_alarm", None)), cls
        assert not hasattr(cls, "clear"), cls


LINE = """
[line]
name = "t"
[tools.printer-1]
role = "printer"
port = "loop://"
[tools.placer-1]
role = "placer"
port = "loop://"
"""


def test_line_tools_types_drivers_by_their_configured_role() -> None:
    config = parse_line_config(LINE)
    printer, placer = hostlink_drivers()
    tools = LineTools(config, {"printer-1": printer, "placer-1": placer})
    assert tools.printer("printer-1") is printer
    assert tools.placer("placer-1") is placer
    assert tools.by_role("placer") == [placer]
    with pytest.raises(ValueError, match="placer-1 is a placer in <memory>, not a printer"):
        tools.printer("placer-1")
    with pytest.raises(ValueError, match="no tool named 'oven-9'"):
        tools.oven("oven-9")


def test_hostlink_states_reachable_without_a_host_command() -> None:
    _, placer = hostlink_drivers()
    assert placer.reachable(PlacerState.IDLE) == {PlacerState.IDLE, PlacerState.ALARM}
    assert PlacerState.DONE in placer.reachable(PlacerState.FLUXING)
    assert PlacerState.DONE in placer.reachable(PlacerState.REPAIRING)
    assert PlacerState.IDLE not in placer.reachable(PlacerState.READY)

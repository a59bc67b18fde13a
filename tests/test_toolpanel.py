"""The live view's tool panel with fixed inputs: the oven's heating/changeover ETA (its
model, in tool time, with its basis said), the tool's own state, belt count and alarm,
each fitting 80 columns; and the events that feed it, through the real event stream."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from controller.cli.progress import LiveProgress
from controller.cli.toolpanel import ToolView
from controller.line.events import EventKind, LineEventStream
from controller.line.heating import (
    COOL_TAU_S,
    HEAT_TAU_S,
    STABLE_HOLD_S,
    nominal_ready_in,
    oven_ready_in,
)
from controller.store import Store
from sequences.kinds import kind_of
from sequences.recipes.validate import load_valid_recipe
from sequences.wafer.machine import WaferEvent

EUTECTIC = [150.0, 170.0, 190.0, 190.0, 200.0, 215.0, 225.0, 225.0, 120.0, 40.0]
HIGH_LEAD_NOW = [150.0, 170.0, 190.0, 190.0, 200.0, 280.0, 345.0, 345.0, 120.0, 40.0]
SETUP = {"step": 5, "step_kind": "reflow", "changeover_s": [900.0, 1500.0],
         "profile_id": 7, "setpoints_c": EUTECTIC}


def test_the_cooling_model_gives_the_specs_example_back() -> None:
    """345 → 225 °C takes 15–25 min in the spec: the fitted range says exactly that."""
    eta = oven_ready_in(HIGH_LEAD_NOW, EUTECTIC, read_ago_s=0.0)
    assert eta is not None and eta.basis == "zones"
    assert (eta.soonest_s, eta.latest_s) == (pytest.approx(900.0), pytest.approx(1500.0))
    assert eta.text() == "ready in 15–25 min"


def test_heating_uses_the_assumed_constants_and_counts_down_from_the_reading() -> None:
    cold = [25.0] * 10
    eta = oven_ready_in(cold, EUTECTIC, read_ago_s=100.0)
    assert eta is not None
    worst = math.log((225.0 - 25.0) / 2.0)  # the hottest zones are furthest away
    assert eta.soonest_s == pytest.approx(HEAT_TAU_S[0] * worst + STABLE_HOLD_S - 100.0)
    assert eta.latest_s == pytest.approx(HEAT_TAU_S[1] * worst + STABLE_HOLD_S - 100.0)
    assert COOL_TAU_S[0] > HEAT_TAU_S[1]  # the spec: zones heat quickly, cool slowly


def test_settled_zones_need_at_most_the_hold_and_a_failed_thermocouple_gives_no_eta() -> None:
    eta = oven_ready_in([z + 1.0 for z in EUTECTIC], EUTECTIC, read_ago_s=0.0)
    assert eta is not None and (eta.soonest_s, eta.latest_s) == (0.0, STABLE_HOLD_S)
    assert eta.text() == "ready in 0–1 min"
    broken = [*EUTECTIC[:3], None, *EUTECTIC[4:]]
    assert oven_ready_in(broken, EUTECTIC, read_ago_s=0.0) is None
    off = [0.0, *EUTECTIC[1:]]  # a zone that is off takes no part
    assert oven_ready_in([999.0, *EUTECTIC[1:]], off, read_ago_s=0.0) is not None


def test_nominal_counts_down_from_the_changeover_start() -> None:
    eta = nominal_ready_in((900.0, 1500.0), elapsed_s=600.0)
    assert (eta.soonest_s, eta.latest_s, eta.basis) == (300.0, 900.0, "nominal")
    assert nominal_ready_in((900.0, 1500.0), elapsed_s=2000.0).text() == "ready within 1 min"


def oven_in_changeover(*, zones_at: float | None) -> ToolView:
    view = ToolView("oven-1", role="oven")
    view.on_tool_state(1000.0, {"e10_state": "scheduled down", "previous": "standby",
                                "reason": "setup for a reflow step", "setup": SETUP}, "L1-01")
    if zones_at is not None:
        view.on_tool_state(zones_at, {"e10_state": "scheduled down", "tool_state": "HEATING",
                                      "zones_c": HIGH_LEAD_NOW})
    return view


def test_a_changeover_without_a_reading_says_the_nominal_time_left() -> None:
    line = oven_in_changeover(zones_at=None).line(now=1300.0, width=80).plain
    assert line == "oven-1     to profile 7: ready in 10–20 min (nominal)"


def test_a_changeover_with_zones_says_state_zones_and_the_estimate_in_80_columns() -> None:
    view = oven_in_changeover(zones_at=1100.0)
    line = view.line(now=1160.0, width=80).plain  # read a minute ago: a minute less
    assert line == "oven-1     to profile 7: HEATING 345→225 °C, ready in 14–24 min (est.)"
    assert len(line) <= 80
    wide = view.line(now=1160.0, width=160).plain
    assert "(estimate from the zones read; heating rate assumed) (for L1-01)" in wide


def test_zones_read_before_the_changeover_are_not_its_basis() -> None:
    view = ToolView("oven-1", role="oven")
    view.on_tool_state(900.0, {"e10_state": "standby", "tool_state": "READY",
                               "zones_c": EUTECTIC})
    view.on_tool_state(1000.0, {"e10_state": "scheduled down", "previous": "standby",
                                "reason": "setup", "setup": SETUP})
    assert view.line(now=1000.0, width=80).plain.endswith("ready in 15–25 min (nominal)")


def test_after_the_changeover_the_panel_shows_belt_state_and_alarm() -> None:
    view = oven_in_changeover(zones_at=1100.0)
    view.on_tool_state(2400.0, {"e10_state": "productive", "previous": "scheduled down",
                                "reason": "reflow L1-01"})
    view.wafers = {"L1-01", "L1-02"}
    assert view.line(now=2500.0, width=80).plain == "oven-1     2 on the belt: L1-01, L1-02"
    view.wafers = set()
    view.on_tool_state(3000.0, {"e10_state": "standby", "previous": "productive",
                                "reason": "no wafer to take"})
    view.on_tool_state(3001.0, {"e10_state": "standby", "tool_state": "READY",
                                "zones_c": EUTECTIC})
    assert view.line(now=3002.0, width=80).plain == "oven-1     idle · READY"
    view.alarm = "ALARM 510 ZONE OVER TEMPERATURE"
    assert view.line(now=3003.0, width=80).plain == "oven-1     ALARM 510 ZONE OVER TEMPERATURE"


def test_another_tools_setup_uses_its_kinds_nominal_time() -> None:
    view = ToolView("printer-1")
    view.on_tool_state(0.0, {"e10_state": "scheduled down", "previous": None, "reason": "x",
                             "setup": {"step": 4, "step_kind": "print",
                                       "changeover_s": [300.0, 300.0]}})
    assert view.role == "printer"
    assert view.line(now=100.0, width=80).plain == (
        "printer-1  setup for a print step: ready in ~4 min (nominal)")


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as s:
        s.create_lot("L1", recipe_name="rebump-hipb-snpb", recipe_version=1, recipe_hash="h",
                     slots=list(range(1, 26)), user="op")
        yield s


class Clock:
    scale = 250.0
    t = 0.0

    def now(self) -> float:
        return self.t


def test_the_stream_feeds_the_panel_and_a_waiting_wafer_names_the_changeover(
    store: Store,
) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    stream = LineEventStream("line", clock.now)
    stream.listen(live.progress.listen)
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", wafer_id="L1-01", tool_time=1000.0,
                   e10_state="scheduled down", previous="standby", reason="setup",
                   setup=SETUP)
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", tool_time=1100.0,
                   e10_state="scheduled down", tool_state="HEATING", zones_c=HIGH_LEAD_NOW)
    live.progress.on_event(WaferEvent("L1-02", 4, "print", "step4_judging", "step5_waiting",
                                      "judged_ok", ""))
    clock.t = 1160.0
    lines = [t.plain for t in live.lines(80, 23)]
    assert "oven-1     to profile 7: HEATING 345→225 °C, ready in 14–24 min (est.)" in lines
    assert any(line.startswith("L1-02            step 5 waiting for the oven (oven-1 changing "
                               "over)") for line in lines)
    assert all(len(line) <= 80 for line in lines) and len(lines) <= 23


def test_a_state_read_before_wafers_came_is_not_shown_beside_them_nor_idle_twice() -> None:
    oven = ToolView("oven-1", role="oven")
    oven.on_tool_state(10.0, {"e10_state": "standby", "tool_state": "READY"})
    oven.wafers = {"L1-01"}
    assert oven.line(now=20.0, width=80).plain == "oven-1     1 on the belt: L1-01"
    printer = ToolView("printer-1", role="printer", note="stencil ST-300-080 mounted")
    printer.on_tool_state(10.0, {"e10_state": "standby", "tool_state": "IDLE"})
    assert printer.line(now=20.0, width=80).plain == (
        "printer-1  idle · stencil ST-300-080 mounted")


def test_a_plain_log_says_the_setup_and_its_first_estimate(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    live = LiveProgress(store, ["L1"], plain=True, clock=Clock())
    stream = LineEventStream("line", lambda: 0.0)
    stream.listen(live.progress.listen)
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", tool_time=1000.0,
                   e10_state="scheduled down", previous="standby", reason="setup", setup=SETUP)
    for t in (1100.0, 1220.0):  # only the first reading is logged
        stream.publish(EventKind.TOOL_STATE, tool="oven-1", tool_time=t,
                       e10_state="scheduled down", tool_state="HEATING", zones_c=HIGH_LEAD_NOW)
    assert capsys.readouterr().out.splitlines() == [
        "  oven-1: to profile 7: ready in 15–25 min (nominal)",
        "  oven-1: to profile 7: HEATING 345→225 °C, ready in 15–25 min (est.)",
    ]


def test_a_setup_with_no_nominal_time_claims_none_and_says_its_note() -> None:
    """A cleaner's bath change is waited out: no made-up time, what it waits for instead."""
    clean = load_valid_recipe("rebump-hipb-snpb").step(3)
    facts = {"step": 3, "step_kind": "clean", **kind_of(clean).setup_facts(clean)}
    assert "changeover_s" not in facts
    view = ToolView("cleaner-1")
    view.on_tool_state(0.0, {"e10_state": "scheduled down", "previous": "standby",
                             "reason": "setup", "setup": facts})
    view.note = "waiting for the bath: 70 -> 60 °C"
    assert view.line(now=50.0, width=80).plain == (
        "cleaner-1  setup for a clean step: under way · waiting for the bath: 70 -> 60 °C")


def test_ready_during_a_changeover_is_not_shown_as_its_state() -> None:
    """Read before the APPLY, READY is the old profile's: the zones and the ETA say it."""
    view = ToolView("oven-1", role="oven")
    view.on_tool_state(1000.0, {"e10_state": "scheduled down", "previous": "standby",
                                "reason": "setup", "setup": SETUP})
    view.on_tool_state(1001.0, {"e10_state": "scheduled down", "tool_state": "READY",
                                "zones_c": HIGH_LEAD_NOW})
    assert view.line(now=1001.0, width=80).plain == (
        "oven-1     to profile 7: 345→225 °C, ready in 15–25 min (est.)")


def test_a_setup_that_names_no_step_is_still_a_setup_not_idle() -> None:
    plater = ToolView("plater-1", role="plater", note="bath to 85 °C")
    plater.on_tool_state(0.0, {"e10_state": "scheduled down", "previous": "standby",
                               "reason": "bath for the next batch"})
    assert plater.line(now=10.0, width=80).plain == "plater-1   setup under way · bath to 85 °C"


def test_what_a_setup_waited_for_goes_with_it() -> None:
    plater = ToolView("plater-1", role="plater")
    plater.on_tool_state(0.0, {"e10_state": "scheduled down", "previous": "standby",
                               "reason": "baths"})
    plater.note = "waiting for the baths: nickel 26.9 -> 85 °C"
    plater.on_tool_state(600.0, {"e10_state": "standby", "previous": "scheduled down",
                                 "reason": "no wafer to take"})
    assert plater.line(now=601.0, width=80).plain == "plater-1   idle"

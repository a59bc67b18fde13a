"""The live view of `bumpline run`: what it says about wafers and tools, that it fits an
80x24 terminal with what matters first, and the plain log lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from controller.cli.progress import LiveProgress, _describe
from controller.line.controller import LotOutcome
from controller.store import Store
from sequences.wafer.machine import WaferEvent


class Clock:
    scale = 250.0

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def _event(step: int, kind: str, source: str, dest: str, trigger: str, wafer: str = "L1-01",
           **kw) -> WaferEvent:
    return WaferEvent(wafer, step, kind, source, dest, trigger, kw.pop("why", ""), **kw)


@pytest.mark.parametrize(
    ("state", "event", "waiting_for", "shown"),
    [
        ("step4_waiting", _event(3, "clean", "step3_judging", "step4_waiting", "judged_ok"),
         "the printer (printer-1 busy)", "step 4 waiting for the printer (printer-1 busy)"),
        ("step3_running",
         _event(3, "clean", "step3_waiting", "step3_running", "tool_acquired", tool="cleaner-1"),
         None, "step 3 clean: running on cleaner-1"),
        ("step2_judging", None, None, "step 2 judging"),
        ("awaiting_disposition", None, None, "awaiting disposition"),
        ("complete", None, None, "complete"),
    ],
)
def test_each_state_reads_as_a_person_would_say_it(state, event, waiting_for, shown) -> None:  # noqa: ANN001
    assert _describe(state, event, waiting_for) == shown


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as s:
        s.create_lot("L1", recipe_name="rebump-hipb-snpb", recipe_version=1, recipe_hash="h",
                     slots=list(range(1, 26)), user="op")
        yield s


def busy_line(live: LiveProgress, clock: Clock) -> None:
    """25 wafers: 6 complete, 1 awaiting disposition after an alarm, 3 on the oven's belt,
    2 waiting for the printer, 1 on the printer, the rest queued; notes on every tool."""
    on = live.progress.on_event
    for n in range(1, 7):
        w = f"L1-{n:02d}"
        on(_event(6, "clean", "step6_judging", "complete", "judged_ok", w,
                  measurements={"ionic_ug_cm2": 0.21}, tool_time=clock.t))
    on(_event(4, "print", "step4_running", "awaiting_disposition", "step_failed", "L1-07",
              why="ALARM 210 ALIGNMENT FAILED"))
    for n in (8, 9, 10):
        on(_event(2, "reflow", "step2_waiting", "step2_running", "tool_acquired", f"L1-{n:02d}",
                  tool="oven-1"))
    on(_event(1, "print", "step1_waiting", "step1_running", "tool_acquired", "L1-11",
              tool="printer-1"))
    for n in (12, 13):
        on(_event(3, "clean", "step3_judging", "step4_waiting", "judged_ok", f"L1-{n:02d}",
                  measurements={"ionic_ug_cm2": 0.2}))
    live.progress.on_tool_note("cleaner-1", "rinse 60 s, dry 60 s stored")
    for i in range(30):  # events scroll by; the wafer needing a person must stay
        on(_event(1, "print", "step1_judging", "step2_waiting", "judged_ok", "L1-11",
                  measurements={"vol_mean_pct": 97.0 + i / 10, "bridges": 0}))
    on(_event(1, "print", "step1_waiting", "step1_running", "tool_acquired", "L1-11",
              tool="printer-1"))


def test_80x24_shows_progress_eta_tools_and_who_needs_a_person(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    clock.t = 3600.0
    busy_line(live, clock)
    lines = [t.plain for t in live.lines(80, 23)]
    text = "\n".join(lines)
    assert len(lines) <= 23 and all(len(line) <= 80 for line in lines)
    assert "6/25 complete" in lines[1] and "1 need a person" in lines[1]
    assert "tool time 1 h" in lines[2] and "ETA " in lines[2]
    assert "L1-07 awaiting disposition: ALARM 210 ALIGNMENT FAILED" in text
    assert "oven-1     3 on the belt: L1-08, L1-09, L1-10" in text
    assert "printer-1  busy: L1-11" in text
    assert "cleaner-1  idle · rinse 60 s, dry 60 s stored" in text
    assert "L1-12            step 4 waiting for the printer (printer-1 busy)" in text
    assert "latest:" in text


def test_eta_from_the_share_of_steps_done(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    assert live.eta_tool_s() is None  # nothing done yet
    clock.t = 1000.0
    for n in range(1, 6):  # 5 of 25 wafers complete: 30 of 150 steps
        live.progress.on_event(_event(6, "clean", "step6_judging", "complete", "judged_ok",
                                      f"L1-{n:02d}"))
    assert live.eta_tool_s() == pytest.approx(1000.0 * 120 / 30)


def test_screen_fits_the_terminal_when_rendered(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    clock.t = 900.0
    busy_line(live, clock)
    live.console = Console(file=io.StringIO(), width=80, height=24, force_terminal=True,
                           color_system=None, record=True)
    live.console.print(live._screen())
    rendered = live.console.export_text().rstrip("\n").splitlines()
    assert len(rendered) <= 23 and max(len(line) for line in rendered) <= 80
    assert rendered[3].startswith("needs a person: bumpline wafer disposition ID")


def test_larger_terminal_shows_every_wafer(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    busy_line(live, clock)
    text = "\n".join(t.plain for t in live.lines(160, 60))
    assert all(f"L1-{n:02d} " in text for n in range(1, 26))
    assert "L1-25            queued" in text


def test_plain_mode_prints_one_line_per_finished_step(store: Store, capsys) -> None:  # noqa: ANN001
    live = LiveProgress(store, ["L1"], plain=True)
    with live:
        live.progress.on_event(_event(2, "reflow", "step2_waiting", "step2_running",
                                      "tool_acquired", tool="oven-1"))
        live.progress.on_event(_event(2, "reflow", "step2_judging", "step3_waiting", "judged_ok",
                                      measurements={"peak_c": 348.8, "tal_s": 64.3}))
        live.progress.on_tool_note("printer-1", "changeover to stencil ST-300-080")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2  # the step start is not a line of its own; the result and the note are
    assert "judged_ok" in out[0] and "peak 348.8 °C, TAL 64 s" in out[0]
    assert out[1].strip() == "printer-1: changeover to stencil ST-300-080"


def test_summary_yield_is_the_reports(store: Store, capsys) -> None:  # noqa: ANN001
    live = LiveProgress(store, ["L1"], plain=True)
    wafers = {f"L1-0{n}": "complete" for n in (1, 2, 3)} | {"L1-04": "awaiting_disposition"}
    live.summary(LotOutcome("L1", "running", wafers), tool_s=13260.0, wall_s=53.0, cpu_s=1.7)
    out = capsys.readouterr().out
    assert "3/4 wafers complete (yield 100 % of 3 finished)" in out
    assert "1 awaiting disposition" in out
    assert "lot tool time 3 h 41 min; this run 53.0 s wall, controller CPU 1.7 s" in out


def test_a_step_failed_without_a_result_says_why_not_the_last_result(
    store: Store, capsys  # noqa: ANN001
) -> None:
    """After a conveyor jam (520) the reflow has no result: the line is its reason, never the
    print's SPI numbers from the step before (issue 10, item 11)."""
    live = LiveProgress(store, ["L1"], plain=True)
    with live:
        live.progress.on_event(_event(1, "print", "step1_judging", "step2_waiting", "judged_ok",
                                      measurements={"vol_mean_pct": 98.3, "bridges": 0}))
        live.progress.on_event(_event(2, "reflow", "step2_running", "awaiting_disposition",
                                      "step_failed", why="alarm 520 CONVEYOR JAM"))
    out = capsys.readouterr().out.splitlines()
    assert "SPI mean" in out[0]
    assert "alarm 520 CONVEYOR JAM" in out[1] and "SPI" not in out[1]


def test_a_hold_line_says_why_not_the_last_result(store: Store, capsys) -> None:  # noqa: ANN001
    live = LiveProgress(store, ["L1"], plain=True)
    with live:
        live.progress.on_event(_event(4, "print", "step4_judging", "step5_waiting", "judged_ok",
                                      measurements={"vol_mean_pct": 98.8, "bridges": 0}))
        live.progress.on_event(_event(5, "reflow", "step5_waiting", "held", "hold",
                                      why="interlock: alarm latched"))
    out = capsys.readouterr().out.splitlines()
    assert "interlock: alarm latched" in out[-1] and "SPI" not in out[-1]


def test_when_every_wafer_finished_the_clock_line_says_so_not_an_eta(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    clock.t = 5000.0
    for n in range(1, 26):
        live.progress.on_event(_event(6, "clean", "step6_judging", "complete", "judged_ok",
                                      f"L1-{n:02d}"))
    line = live.lines(80, 23)[2].plain
    assert line.endswith("· every wafer finished") and "ETA" not in line


def test_the_tools_the_lot_needs_are_listed_from_the_start(store: Store) -> None:
    line = {"printer-1": "printer", "placer-1": "placer", "oven-1": "oven",
            "cleaner-1": "cleaner"}
    live = LiveProgress(store, ["L1"], plain=True, clock=Clock(), line_tools=line)
    lines = [t.plain for t in live.lines(80, 23)]
    assert [line for line in lines if line.endswith("idle")] == [
        "cleaner-1  idle", "oven-1     idle", "printer-1  idle"]  # the recipe places no balls
    assert not any(line.startswith("placer-1") for line in lines)


def test_when_only_wafers_for_a_person_are_left_the_clock_line_says_so(store: Store) -> None:
    clock = Clock()
    live = LiveProgress(store, ["L1"], plain=True, clock=clock)
    clock.t = 5000.0
    for n in range(1, 25):
        live.progress.on_event(_event(6, "clean", "step6_judging", "complete", "judged_ok",
                                      f"L1-{n:02d}"))
    live.progress.on_event(_event(1, "print", "step1_running", "awaiting_disposition",
                                  "step_failed", "L1-25", why="bridges 1 above the limit 0"))
    line = live.lines(80, 23)[2].plain
    assert line.endswith("· the rest waits for a person") and "ETA" not in line, line

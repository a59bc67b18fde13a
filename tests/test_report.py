"""The HTML lot report, on lots recorded through the store as the controller records them:
wall time barely moving (a simulated line at 250x) while tool time runs for hours."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.line.e10 import E10State
from controller.report import (
    Timeline,
    duration,
    in_window,
    lot_figures,
    lot_timeline,
    lot_trends,
    render_lot_report,
    tool_figures,
    write_lot_report,
)
from controller.report.svg import nice_ticks
from controller.store import CurveInfo, StepInfo, Store, StoreError

SCALE = 250.0  # tool seconds per wall second, as `make demo` runs


class Line:
    """One clock for both sides: ``tool`` seconds, and the wall time the store reads."""

    def __init__(self) -> None:
        self.t0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
        self.tool = 0.0

    def advance(self, seconds: float) -> float:
        self.tool += seconds
        return self.tool

    def wall(self) -> datetime:
        return self.t0 + timedelta(seconds=self.tool / SCALE)


def reflow_curve(peak_c: float, preheat_c: float = 150.0, samples: int = 80) -> list[float]:
    """Wafer temperature every 5 s shaped like a real profile: ramp, soak, spike, cool."""
    curve = []
    for i in range(samples):
        t = 5.0 * i
        if t < 60:
            temp = 25.0 + t * (preheat_c - 25.0) / 60.0
        elif t < 150:
            temp = preheat_c + (t - 60.0) * 0.33
        elif t < 260:
            start = preheat_c + 90 * 0.33
            temp = start + (t - 150.0) * (peak_c - start) / 110.0
        elif t < 275:
            temp = peak_c - (t - 260.0) * 0.1
        else:
            temp = max(40.0, peak_c - 1.5 - (t - 275.0) * 2.4)
        curve.append(round(temp, 1))
    return curve


PRINT_WINDOWS = {
    "vol_mean_pct": (85, 115),
    "vol_min_pct": (60, None),
    "bridges": (None, 0),
    "insufficient": (None, 5),
}
REFLOW_1 = {"peak_c": (340, 360), "tal_s": (40, 90), "ramp_max_c_s": (None, 3.0),
            "cool_max_c_s": (None, 6.0)}
REFLOW_2 = {"peak_c": (215, 240), "tal_s": (45, 100), "ramp_max_c_s": (None, 3.0),
            "cool_max_c_s": (None, 6.0)}
CLEAN_WINDOWS = {"ionic_ug_cm2": (None, 1.56)}
PRINT_1 = {"paste_alloy": "Pb95Sn5", "squeegee_kgf": 6.0, "stencil_id": "ST-300-100"}
PRINT_2 = {"paste_alloy": "Sn63Pb37", "squeegee_kgf": 5.0, "stencil_id": "ST-300-080"}
ZONES_1 = [150.0, 175.0, 200.0, 200.0, 210.0, 290.0, 362.0, 362.0, 150.0, 50.0]
ZONES_2 = [120.0, 140.0, 160.0, 160.0, 170.0, 210.0, 241.0, 241.0, 120.0, 40.0]


class Recorder:
    """Records steps as ``LineController`` does: transition, step start and end with tool time."""

    def __init__(self, store: Store, line: Line) -> None:
        self.store, self.line = store, line

    def step(self, wafer, index, kind, tool, params, windows, results, seconds, **curve):  # noqa: ANN001
        s, line = self.store, self.line
        state = f"step{index}"
        s.record_transition(wafer, f"{state}_waiting", f"{state}_running", "tool_acquired",
                            step_index=index, step_kind=kind, tool=tool, tool_time=line.tool)
        s.record_tool_state(tool, E10State.PRODUCTIVE, tool_state="", tool_time=line.tool)
        step_id = s.start_step(wafer, index, kind, tool, params, windows=windows,
                               tool_time=line.tool)
        line.advance(seconds)
        failed = any(in_window(results.get(k), w) is False for k, w in windows.items())
        s.end_step(step_id, status="failed" if failed else "done", results=results,
                   tool_time=line.tool, **curve)
        s.record_transition(wafer, f"{state}_running", f"{state}_judging",
                            "step_failed" if failed else "judged_ok", step_index=index,
                            step_kind=kind, tool=tool, tool_time=line.tool, measurements=results)
        return failed


def record_lot(store: Store, line: Line, lot: str, peaks: dict[int, tuple[float, float | None]],
               *, reprint: int | None = None, bridged: int | None = None) -> None:
    """A rebump lot, one wafer after another: print 60 s, reflow 400 s, clean 240 s, twice.

    ``reprint``: that slot's cap print fails once and is retried (a reprint);
    ``bridged``: that slot's cap print is bridged and the wafer scrapped.
    """
    store.create_lot(lot, recipe_name="rebump-hipb-snpb", recipe_version=1,
                     recipe_hash="ae6220a0fd655736" * 4, slots=sorted(peaks), user="ann")
    store.set_lot_state(lot, "running")
    rec = Recorder(store, line)
    for slot, (peak_1, peak_2) in sorted(peaks.items()):
        wafer = f"{lot}-{slot:02d}"
        store.record_transition(wafer, "queued", "step1_waiting", "start", tool_time=line.tool)
        good_print = {"vol_mean_pct": 98.6 + slot / 10, "vol_min_pct": 81.2, "bridges": 0,
                      "insufficient": 0}
        rec.step(wafer, 1, "print", "printer-1", PRINT_1, PRINT_WINDOWS, good_print, 60)
        rec.step(wafer, 2, "reflow", "oven-1",
                 {"zones_c": ZONES_1, "conveyor_mm_min": 600, "tal_threshold_c": 312.0},
                 REFLOW_1, {"peak_c": peak_1, "tal_s": 61.5, "ramp_max_c_s": 2.1,
                            "cool_max_c_s": 2.4, "o2_max_ppm": 22},
                 400, curve_c=reflow_curve(peak_1 - 0.5), liquidus_c=312.0)
        rec.step(wafer, 3, "clean", "cleaner-1", {"wash_time_s": 120}, CLEAN_WINDOWS,
                 {"ionic_ug_cm2": 0.42}, 240)
        if slot == reprint:
            bad = {**good_print, "bridges": 2}
            rec.step(wafer, 4, "print", "printer-1", PRINT_2, PRINT_WINDOWS, bad, 60)
            store.record_transition(wafer, "step4_judging", "awaiting_disposition",
                                    "step_failed", "2 bridges", tool_time=line.tool)
            store.disposition_wafer(wafer, "retry", user="eve", reason="wipe and reprint")
            store.record_transition(wafer, "awaiting_disposition", "step4_waiting", "retry",
                                    tool_time=line.tool)
        cap = {**good_print, "bridges": 3 if slot == bridged else 0}
        if rec.step(wafer, 4, "print", "printer-1", PRINT_2, PRINT_WINDOWS, cap, 60):
            store.record_transition(wafer, "step4_judging", "awaiting_disposition",
                                    "step_failed", "3 bridges", tool_time=line.tool)
            store.disposition_wafer(wafer, "scrap", user="eve", reason="bridged cap print")
            store.record_transition(wafer, "awaiting_disposition", "scrapped", "scrap",
                                    tool_time=line.tool)
            continue
        if peak_2 is None:  # stopped here: the wafer waits for an engineer
            store.record_transition(wafer, "step4_judging", "awaiting_disposition",
                                    "step_failed", "ALARM 210 ALIGNMENT FAILED",
                                    tool_time=line.tool)
            continue
        rec.step(wafer, 5, "reflow", "oven-1",
                 {"zones_c": ZONES_2, "conveyor_mm_min": 1000, "tal_threshold_c": 183.0},
                 REFLOW_2, {"peak_c": peak_2, "tal_s": 70.0, "ramp_max_c_s": 1.9,
                            "cool_max_c_s": 2.2, "o2_max_ppm": 35},
                 400, curve_c=reflow_curve(peak_2 - 0.5, preheat_c=120.0), liquidus_c=183.0)
        rec.step(wafer, 6, "clean", "cleaner-1", {"wash_time_s": 120}, CLEAN_WINDOWS,
                 {"ionic_ug_cm2": 0.38}, 240)
        store.record_transition(wafer, "step6_judging", "complete", "judged_ok",
                                tool_time=line.tool)
    store.set_lot_state(lot, "complete" if all(p[1] for p in peaks.values()) else "held")


@pytest.fixture
def line() -> Line:
    return Line()


@pytest.fixture
def store(tmp_path: Path, line: Line):
    s = Store(f"sqlite:///{tmp_path / 'report.db'}", now=line.wall)
    yield s
    s.close()


@pytest.fixture
def lot7(store: Store, line: Line) -> Store:
    """LOT7: wafers 1, 2 good (2 saw an oven alarm of 600 s), 3 scrapped after its cap print."""
    store.record_tool_state("oven-1", E10State.STANDBY, tool_state="READY", tool_time=0.0)
    peaks = {1: (348.2, 228.4), 2: (351.7, 231.9), 3: (346.9, 229.0)}
    record_lot(store, line, "LOT7", peaks, bridged=3)
    return store


def html_of(store: Store, lot: str) -> str:
    return render_lot_report(store, lot)


# --- the page -----------------------------------------------------------------------------------


def test_report_is_one_self_contained_file(lot7: Store, tmp_path: Path) -> None:
    path = write_lot_report(lot7, "LOT7", tmp_path / "out")
    assert path == tmp_path / "out" / "LOT7" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    page = path.read_text(encoding="utf-8")
    assert "<img" not in page and "src=" not in page and "<link" not in page
    assert not re.search(r'href="(?!#)', page)  # only links within the page
    # 5 wafer profiles + 2 overlays + 6 trends (SPI twice, reflow peak/TAL/ramp twice, ...)
    assert page.count("<svg") == 5 + 2 + len(lot_trends(_histories(lot7, "LOT7")))


def test_report_shows_every_wafer_step_window_and_the_scrap(lot7: Store) -> None:
    page = html_of(lot7, "LOT7")
    for wafer in ("LOT7-01", "LOT7-02", "LOT7-03"):
        assert f'id="{wafer}"' in page and f'href="#{wafer}"' in page
    for text in ("348.2", "351.7", "346.9", "228.4", "231.9", "0.42", "61.5",
                 "340 – 360", "215 – 240", "85 – 115", "≤ 1.56", "≥ 60", "≤ 0"):
        assert text in page, text
    assert page.count('class="out">OUT') == 1
    out_row = re.search(r"<tr><td>bridges</td><td><span class=\"num\">3</span>.*?</tr>", page)
    assert out_row and "OUT" in out_row.group(0)
    assert "bridged cap print" in page and "scrapped" in page


def test_times_are_tool_time_with_units(lot7: Store) -> None:
    # 3 wafers, one after another: 2 x 1400 s + 760 s (the scrapped one) of tool time,
    # in 14 s of wall time.
    page = html_of(lot7, "LOT7")
    assert re.search(r"Lot cycle time</th><td>59 min 20 s tool time", page)
    assert "Mean wafer cycle time</th><td>19 min 47 s tool time" in page  # (1400*2+760)/3
    assert "6 min 40 s tool time" in page  # a 400 s reflow step
    assert not re.search(r"\(\d:\d\d\)", page)  # no bare m:ss


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (38.4, "38 s"), (60, "1 min"), (252, "4 min 12 s"), (13260, "3 h 41 min"),
     (13289, "3 h 41 min"), (13290, "3 h 42 min"), (7200, "2 h")],
)
def test_duration(seconds, text) -> None:  # noqa: ANN001
    assert duration(seconds) == text


def test_yield_first_pass_and_rework(store: Store, line: Line) -> None:
    record_lot(store, line, "LOT9", {1: (350.0, 230.0), 2: (350.0, 230.0)}, reprint=2)
    f = lot_figures(store.get_lot("LOT9"), _histories(store, "LOT9"))
    assert (f.good, f.first_pass, f.reworked_steps) == (2, 1, 1)
    assert (f.yield_pct, f.first_pass_yield_pct) == (100.0, 50.0)
    page = html_of(store, "LOT9")
    assert "First-pass yield</th><td>50.0 % (1 good" in page
    assert "Reworked steps</th><td>1 " in page
    assert '<span class="rework" title="2 attempts">×2</span>' in page


def test_yield_leaves_a_wafer_awaiting_disposition_out(store: Store, line: Line) -> None:
    peaks = {1: (350.0, 230.0), 2: (350.0, 230.0), 3: (350.0, 230.0), 4: (350.0, None)}
    record_lot(store, line, "LOT5", peaks)
    f = lot_figures(store.get_lot("LOT5"), _histories(store, "LOT5"))
    assert (f.good, f.finished, f.unfinished, f.yield_pct) == (3, 3, 1, 100.0)
    page = html_of(store, "LOT5")
    assert "100.0 % (3 good of 3 finished; 1 unfinished not counted)" in page
    assert "awaiting disposition" in page


# --- tools: utilisation and E10 -----------------------------------------------------------------


def test_e10_shares_add_up_and_agree_with_utilisation(lot7: Store) -> None:
    # The controller records PRODUCTIVE when a step starts and nothing when it ends: the
    # idle time after a step is standby here all the same.
    page = html_of(lot7, "LOT7")
    histories = _histories(lot7, "LOT7")
    timeline = lot_timeline(histories)
    steps = [s for h in histories for s in h.steps]
    for tool in ("printer-1", "oven-1", "cleaner-1"):
        f = tool_figures(tool, steps, lot7.tool_state_history(tool), [], timeline)
        assert f.span == pytest.approx(timeline.span)
        assert sum(f.share_pct(s) for s in E10State) == pytest.approx(100.0)
        assert f.utilisation_pct == f.share_pct(E10State.PRODUCTIVE) <= 100.0
        assert f.seconds[E10State.STANDBY] > 0
    printer = tool_figures("printer-1", steps, lot7.tool_state_history("printer-1"), [],
                           timeline)
    assert printer.seconds[E10State.PRODUCTIVE] == pytest.approx(6 * 60)
    assert printer.utilisation_pct == pytest.approx(100 * 360 / 3560)
    assert f"<td>printer-1</td><td><span class=\"num\">6</span></td><td><span class=\"num\">" \
           f"6 min</span></td><td><span class=\"num\">{100 * 360 / 3560:.1f} %" in page


def _step(tool: str, start: float, end: float, index: int = 2) -> StepInfo:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    return StepInfo(1, "W-01", index, 1, "reflow", tool, "done", None, {}, {}, None,
                    t0 + timedelta(seconds=start / SCALE), t0 + timedelta(seconds=end / SCALE),
                    start, end, None)


def test_oven_belt_counts_once_however_many_wafers_ride_it() -> None:
    # Three wafers on the belt at once, 400 s transit each, 100 s apart: 600 s of oven.
    steps = [_step("oven-1", 100 * i, 100 * i + 400) for i in range(3)]
    steps.append(_step("printer-1", 0, 1000, index=1))
    timeline = Timeline([(s.started_at, s.tool_time_start) for s in steps]
                        + [(s.ended_at, s.tool_time_end) for s in steps])
    oven = tool_figures("oven-1", steps, [], [], timeline)
    assert oven.seconds[E10State.PRODUCTIVE] == pytest.approx(600.0)
    assert oven.utilisation_pct == pytest.approx(60.0)
    assert oven.seconds[E10State.STANDBY] == pytest.approx(400.0)


def test_alarms_and_setups_take_their_time_from_productive_and_standby(
    store: Store, line: Line
) -> None:
    store.record_tool_state("oven-1", E10State.SCHEDULED_DOWN, tool_state="HEATING",
                            tool_time=0.0)
    line.advance(300)  # heating to the first profile
    record_lot(store, line, "LOT3", {1: (350.0, 230.0)})
    histories = _histories(store, "LOT3")
    store.alarm_set("oven-1", 540, "O2 HIGH", wafer_id="LOT3-01", tool_time=line.tool - 100)
    alarms = store.alarms(lot_id="LOT3")
    timeline = lot_timeline(histories)
    steps = [s for h in histories for s in h.steps]
    oven = tool_figures("oven-1", steps, store.tool_state_history("oven-1"), alarms, timeline)
    # The lot's first record is at 300 s; the oven turns productive at its first reflow.
    assert oven.seconds[E10State.SCHEDULED_DOWN] == pytest.approx(60.0)  # printing first
    assert oven.seconds[E10State.UNSCHEDULED_DOWN] == pytest.approx(100.0)  # still active
    assert oven.seconds[E10State.PRODUCTIVE] == pytest.approx(800.0)
    assert sum(oven.seconds.values()) == pytest.approx(timeline.span) == 1400.0


# --- time ---------------------------------------------------------------------------------------


def test_a_resumed_lot_counts_each_controller_run_once() -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    wall = [t0 + timedelta(seconds=s) for s in (0, 10, 20, 3600, 3610)]
    # First run: tool 0..5000 s at 250x; the controller stops for an hour; the second
    # run's clock starts again at 0 (and once above the first run's last reading).
    for second_run in ((2.0, 2502.0), (6000.0, 8500.0)):
        tools = [0.0, 2500.0, 5000.0, *second_run]
        timeline = Timeline(list(zip(wall, tools, strict=True)))
        assert len(timeline.sessions) == 2
        assert timeline.span == pytest.approx(7500.0)
        assert timeline.at(wall[3], tools[3]) == pytest.approx(5000.0)
        assert timeline.at(t0 + timedelta(seconds=1800)) == pytest.approx(5000.0)  # stopped
        assert timeline.at(wall[1]) == pytest.approx(2500.0)  # no tool time: interpolated


def test_records_without_tool_time_fall_back_to_wall_time() -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    timeline = Timeline([(t0, None), (t0 + timedelta(seconds=90), None)])
    assert timeline.span == 90.0


# --- the engineer's additions -------------------------------------------------------------------


def test_profile_plot_shows_the_tables_peak_tal_window_and_limits(lot7: Store) -> None:
    page = html_of(lot7, "LOT7")
    section = page[page.index('id="LOT7-01"'):page.index('id="LOT7-02"')]
    first = section[section.index("Step 2 reflow"):section.index("Step 3 clean")]
    # The curve's own maximum is 347.7; the plot is labelled with the tool's reading.
    assert "peak 348.2 °C" in first and "347.7 °C" not in first
    assert "TAL 61.5 s (window 40 – 90)" in first
    assert "max ramp 2.1 °C/s (window ≤ 3)" in first
    assert "max cool 2.4 °C/s (window ≤ 6)" in first
    assert 'class="liquidus-label"' in first and "liquidus 312 °C" in first
    assert 'class="above"' in first  # the time above liquidus, shaded
    assert "solidus" not in first  # nothing melted before the first reflow


def test_second_reflow_shows_the_first_bumps_solidus(lot7: Store) -> None:
    page = html_of(lot7, "LOT7")
    section = page[page.index('id="LOT7-01"'):page.index('id="LOT7-02"')]
    second = section[section.index("Step 5 reflow"):section.index("Step 6 clean")]
    # process-data.md marks Pb95Sn5's solidus "commonly quoted, unverified": said so
    assert "Pb95Sn5 solidus 308 °C (assumed): stay below" in second
    assert "liquidus 183 °C" in second


def test_overlays_one_per_reflow_step_with_every_wafer(lot7: Store) -> None:
    page = html_of(lot7, "LOT7")
    overlays = page[page.index('id="profiles"'):page.index('id="trends"')]
    assert "Step 2 reflow: 3 profiles" in overlays and "Step 5 reflow: 2 profiles" in overlays
    assert overlays.count('class="overlay"') == 5
    assert "peak 340 – 360 °C; TAL 40 – 90 s; ramp ≤ 3 °C/s; cool ≤ 6 °C/s" in overlays
    assert "Pb95Sn5 solidus 308 °C (assumed): stay below" in overlays


def test_trends_with_limits_and_cpk(store: Store, line: Line) -> None:
    peaks = {slot: (345.0 + slot % 5, 225.0 + slot % 3) for slot in range(1, 13)}
    record_lot(store, line, "LOT12", peaks)
    trends = {(t.step_index, t.result): t for t in lot_trends(_histories(store, "LOT12"))}
    assert set(trends) == {(1, "vol_mean_pct"), (2, "peak_c"), (2, "tal_s"),
                           (2, "ramp_max_c_s"), (3, "ionic_ug_cm2"), (4, "vol_mean_pct"),
                           (5, "peak_c"), (5, "tal_s"), (5, "ramp_max_c_s"),
                           (6, "ionic_ug_cm2")}
    peak = trends[(2, "peak_c")]
    assert peak.window == (340, 360) and len(peak.points) == 12
    values = peak.values
    mean = sum(values) / 12
    sigma = (sum((v - mean) ** 2 for v in values) / 11) ** 0.5
    assert peak.cpk == pytest.approx(min(360 - mean, mean - 340) / (3 * sigma))
    assert trends[(2, "tal_s")].cpk is None  # every wafer 61.5 s: no spread
    page = html_of(store, "LOT12")
    assert f"Cpk {peak.cpk:.2f}" in page
    trend_part = page[page.index('id="trends"'):page.index('id="tools"')]
    assert "LSL 340" in trend_part and "USL 360" in trend_part and "USL 1.56" in trend_part


def test_few_wafers_give_no_cpk(lot7: Store) -> None:
    assert all(t.cpk is None for t in lot_trends(_histories(lot7, "LOT7")))
    assert "Cpk — (needs 10 wafers and spread)" in html_of(lot7, "LOT7")


def test_report_of_unknown_lot_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no lot LOT8"):
        write_lot_report(store, "LOT8", tmp_path)


def test_report_of_a_queued_lot(store: Store, tmp_path: Path) -> None:
    store.create_lot("LOT8", recipe_name="r", recipe_version=2, recipe_hash="00", slots=[4],
                     user="ann")
    page = write_lot_report(store, "LOT8", tmp_path).read_text(encoding="utf-8")
    assert 'id="LOT8-04"' in page and "No steps recorded." in page
    assert "No reflow profiles recorded." in page and "<svg" not in page


def test_report_that_cannot_be_written_is_one_clear_error(lot7: Store, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot write the report to .*file/LOT7"):
        write_lot_report(lot7, "LOT7", tmp_path / "file")


@pytest.mark.parametrize(
    ("value", "window", "verdict"),
    [(348.2, (340, 360), True), (339.9, (340, 360), False), (3, (None, 0), False),
     (0, (None, 0), True), (81.2, (60, None), True), ("OK", (0, 1), None),
     (True, (0, 1), None), (1.0, None, None)],
)
def test_in_window(value, window, verdict) -> None:  # noqa: ANN001
    assert in_window(value, window) is verdict


def test_nice_ticks() -> None:
    assert nice_ticks(22.0, 361.0) == [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_svg_curve_goes_through_the_samples() -> None:
    from controller.report.svg import Axes, ProfileLimits, profile_svg

    samples = [25.0, 100.0, 200.0, 100.0]
    svg = profile_svg(samples, 5.0, ProfileLimits((180.0, 220.0), 183.0), title="t", peak_c=None)
    axes = Axes.around([0.0, 15.0], [*samples, 20.0, 180.0, 220.0, 183.0])
    points = re.search(r'class="curve" points="([^"]+)"', svg).group(1).split()
    assert points[2] == f"{axes.x(10.0):.1f},{axes.y(200.0):.1f}"
    assert "peak 200.0 °C" in svg
    curve = CurveInfo(5.0, 183.0, tuple(samples))
    assert curve.samples_c[2] == 200.0


def _histories(store: Store, lot: str):  # noqa: ANN202
    return [store.wafer_history(w.id) for w in store.wafers(lot)]

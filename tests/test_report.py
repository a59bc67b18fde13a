"""The HTML lot report, on a lot populated through the store like the scheduler would."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from matplotlib.image import imread

from controller.e10 import E10State
from controller.report import (
    e10_seconds,
    in_window,
    lot_figures,
    reflow_figure,
    write_lot_report,
)
from controller.store import Store, StoreError, ToolStateInfo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Ticker:
    """Wall time that moves ``step`` seconds per reading."""

    def __init__(self, step_s: float = 30.0) -> None:
        self.t = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
        self.step = timedelta(seconds=step_s)

    def __call__(self) -> datetime:
        self.t += self.step
        return self.t


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
REFLOW_1 = {
    "peak_c": (340, 360),
    "tal_s": (40, 90),
    "ramp_max_c_s": (None, 3.0),
    "cool_max_c_s": (None, 6.0),
}
REFLOW_2 = {
    "peak_c": (215, 240),
    "tal_s": (45, 100),
    "ramp_max_c_s": (None, 3.0),
    "cool_max_c_s": (None, 6.0),
}
CLEAN_WINDOWS = {"ionic_ug_cm2": (None, 1.56)}


def run_step(store, wafer, index, kind, tool, params, windows, results, **curve):  # noqa: ANN001
    state = f"step{index}"
    store.record_transition(
        wafer,
        f"{state}_waiting",
        f"{state}_running",
        "tool_acquired",
        step_index=index,
        step_kind=kind,
        tool=tool,
    )
    step_id = store.start_step(wafer, index, kind, tool, params, windows=windows)
    if kind == "reflow":
        intent = store.record_intent(step_id, "LOAD")
        store.resolve_intent(intent, "done")
    failed = any(in_window(results.get(k), w) is False for k, w in windows.items())
    store.end_step(step_id, results=results, disposition="fail" if failed else "pass", **curve)
    store.record_transition(
        wafer,
        f"{state}_running",
        f"{state}_judging",
        "step_done",
        step_index=index,
        step_kind=kind,
        tool=tool,
        measurements=results,
    )
    return failed


def populate(store: Store) -> None:
    """Lot LOT7: wafers 1, 2 good (2 saw an oven alarm), 3 scrapped after its cap print."""
    store.create_lot(
        "LOT7",
        recipe_name="rebump-hipb-snpb",
        recipe_version=1,
        recipe_hash="ae6220a0fd655736" * 4,
        slots=[1, 2, 3],
        user="ann",
    )
    store.set_lot_state("LOT7", "running")
    for tool, state in (("printer-1", "IDLE"), ("oven-1", "READY"), ("cleaner-1", "IDLE")):
        store.record_tool_state(tool, E10State.STANDBY, tool_state=state)
    zones_1 = [150.0, 175.0, 200.0, 200.0, 210.0, 290.0, 362.0, 362.0, 150.0, 50.0]
    zones_2 = [120.0, 140.0, 160.0, 160.0, 170.0, 210.0, 241.0, 241.0, 120.0, 40.0]
    peaks = {"LOT7-01": (348.2, 228.4), "LOT7-02": (351.7, 231.9), "LOT7-03": (346.9, None)}
    for wafer, (peak_1, peak_2) in peaks.items():
        store.record_transition(wafer, "queued", "step1_waiting", "start")
        store.record_tool_state("printer-1", E10State.PRODUCTIVE, tool_state="PRINTING")
        run_step(
            store,
            wafer,
            1,
            "print",
            "printer-1",
            {"squeegee_kgf": 6.0, "speed_mm_s": 40.0, "stencil_id": "ST-300-100"},
            PRINT_WINDOWS,
            {"vol_mean_pct": 98.6, "vol_min_pct": 81.2, "bridges": 0, "insufficient": 0},
        )
        store.record_tool_state("oven-1", E10State.PRODUCTIVE, tool_state="PROCESSING")
        run_step(
            store,
            wafer,
            2,
            "reflow",
            "oven-1",
            {"zones_c": zones_1, "conveyor_mm_min": 600, "tal_threshold_c": 312.0},
            REFLOW_1,
            {
                "peak_c": peak_1,
                "tal_s": 61.5,
                "ramp_max_c_s": 2.1,
                "cool_max_c_s": 2.4,
                "o2_max_ppm": 22,
                "flags": 0,
            },
            curve_c=reflow_curve(peak_1),
            liquidus_c=312.0,
        )
        run_step(
            store,
            wafer,
            3,
            "clean",
            "cleaner-1",
            {"wash_temp_c": 60.0, "wash_time_s": 120},
            CLEAN_WINDOWS,
            {"ionic_ug_cm2": 0.42},
        )
        bridges = 3 if wafer == "LOT7-03" else 0
        failed = run_step(
            store,
            wafer,
            4,
            "print",
            "printer-1",
            {"squeegee_kgf": 5.0, "speed_mm_s": 40.0, "stencil_id": "ST-300-080"},
            PRINT_WINDOWS,
            {"vol_mean_pct": 101.3, "vol_min_pct": 77.0, "bridges": bridges, "insufficient": 1},
        )
        if failed:
            store.record_transition(
                wafer,
                "step4_judging",
                "awaiting_disposition",
                "step_failed",
                "3 bridges",
                step_index=4,
                step_kind="print",
            )
            store.disposition_wafer(wafer, "scrap", user="eve", reason="bridged cap print")
            store.record_transition(wafer, "awaiting_disposition", "scrapped", "scrap")
            continue
        if wafer == "LOT7-02":
            store.alarm_set("oven-1", 540, "O2 HIGH", wafer_id=wafer)
            store.alarm_cleared("oven-1", 540)
        run_step(
            store,
            wafer,
            5,
            "reflow",
            "oven-1",
            {"zones_c": zones_2, "conveyor_mm_min": 1000, "tal_threshold_c": 183.0},
            REFLOW_2,
            {
                "peak_c": peak_2,
                "tal_s": 70.0,
                "ramp_max_c_s": 1.9,
                "cool_max_c_s": 2.2,
                "o2_max_ppm": 35,
                "flags": 0,
            },
            curve_c=reflow_curve(peak_2, preheat_c=120.0),
            liquidus_c=183.0,
        )
        run_step(
            store,
            wafer,
            6,
            "clean",
            "cleaner-1",
            {"wash_temp_c": 60.0, "wash_time_s": 120},
            CLEAN_WINDOWS,
            {"ionic_ug_cm2": 0.38},
        )
        store.record_transition(wafer, "step6_judging", "complete", "judged_ok")
    store.record_tool_state("oven-1", E10State.STANDBY, tool_state="READY")
    store.set_lot_state("LOT7", "complete")


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'report.db'}", now=Ticker())
    populate(s)
    yield s
    s.close()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_shows_every_wafer_step_window_and_yield(store: Store, tmp_path: Path) -> None:
    path = write_lot_report(store, "LOT7", tmp_path / "out")
    assert path == tmp_path / "out" / "LOT7" / "report.html"
    page = path.read_text(encoding="utf-8")
    for wafer in ("LOT7-01", "LOT7-02", "LOT7-03"):
        assert f'id="{wafer}"' in page
    # Each step's numbers with their windows.
    for text in (
        "348.2",
        "351.7",
        "346.9",
        "228.4",
        "231.9",
        "98.6",
        "0.42",
        "61.5",
        "340 – 360",
        "215 – 240",
        "85 – 115",
        "≤ 1.56",
        "≥ 60",
        "≤ 0",
    ):
        assert text in page, text
    for step in (
        "Step 1 print on printer-1",
        "Step 2 reflow on oven-1",
        "Step 3 clean on cleaner-1",
        "Step 5 reflow on oven-1",
    ):
        assert step in page
    # The one result out of its window is flagged, and the scrap decision is there.
    assert page.count('class="out">OUT') == 1
    out_row = re.search(r"<tr><td>bridges</td><td><span class=\"num\">3</span>.*?</tr>", page)
    assert out_row and "OUT" in out_row.group(0)
    assert "bridged cap print" in page and "scrapped" in page
    # Lot figures: yield over finished wafers, cycle time, alarms, utilisation per tool.
    assert "66.7 % (2 good of 3 finished)" in page
    assert "rebump-hipb-snpb v1" in page
    assert "O2 HIGH" in page and "540" in page
    for tool in ("printer-1", "oven-1", "cleaner-1"):
        assert f"<td>{tool}</td>" in page
    assert "productive" in page and "unscheduled down" in page


def test_report_plots_every_reflow_curve(store: Store, tmp_path: Path) -> None:
    path = write_lot_report(store, "LOT7", tmp_path)
    page = path.read_text(encoding="utf-8")
    pngs = sorted(path.parent.glob("*.png"))
    # Two reflows for each good wafer, one for the wafer scrapped before its second.
    assert [p.name for p in pngs] == [
        "LOT7-01-step2-a1-reflow.png",
        "LOT7-01-step5-a1-reflow.png",
        "LOT7-02-step2-a1-reflow.png",
        "LOT7-02-step5-a1-reflow.png",
        "LOT7-03-step2-a1-reflow.png",
    ]
    for png in pngs:
        assert f'src="{png.name}"' in page
        width, height = png_size(png)
        assert width > 300 and height > 150
        pixels = imread(png)
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0.05  # something was drawn


def test_reflow_figure_draws_curve_window_and_liquidus(store: Store) -> None:
    step = next(s for s in store.steps("LOT7-01") if s.step_index == 2)
    fig = reflow_figure(step, "LOT7-01 step 2 reflow")
    [ax] = fig.axes
    curve = [line for line in ax.lines if line.get_label() == "wafer temperature"]
    assert list(curve[0].get_ydata()) == list(step.curve.samples_c)
    assert list(curve[0].get_xdata())[:3] == [0.0, 5.0, 10.0]
    liquidus = [line for line in ax.lines if line.get_label().startswith("liquidus")]
    assert list(liquidus[0].get_ydata()) == [312.0, 312.0]
    [band] = [p for p in ax.patches if p.get_label() == "peak window"]
    corners = band.get_path().transformed(band.get_patch_transform()).vertices[:, 1]
    assert (corners.min(), corners.max()) == (340.0, 360.0)


def test_step_without_curve_cannot_be_plotted(store: Store) -> None:
    step = store.steps("LOT7-01")[0]
    with pytest.raises(StoreError, match="has no temperature curve"):
        reflow_figure(step, "print")


def test_report_of_unknown_lot_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no lot LOT8"):
        write_lot_report(store, "LOT8", tmp_path)


def test_report_of_a_queued_lot(store: Store, tmp_path: Path) -> None:
    store.create_lot(
        "LOT8", recipe_name="r", recipe_version=2, recipe_hash="00", slots=[4], user="ann"
    )
    page = write_lot_report(store, "LOT8", tmp_path).read_text(encoding="utf-8")
    assert 'id="LOT8-04"' in page and "No steps recorded." in page
    assert not list((tmp_path / "LOT8").glob("*.png"))


# --- the figures, on their own ------------------------------------------------------------------


def test_lot_figures(store: Store) -> None:
    lot = store.get_lot("LOT7")
    histories = [store.wafer_history(w.id) for w in store.wafers("LOT7")]
    f = lot_figures(lot, histories)
    assert (f.wafers, f.good, f.scrapped, f.aborted, f.unfinished) == (3, 2, 1, 0, 0)
    assert f.yield_pct == pytest.approx(200 / 3)
    assert f.cycle_s == (lot.ended_at - lot.started_at).total_seconds() > 0
    assert 0 < f.mean_wafer_cycle_s < f.cycle_s


@pytest.mark.parametrize(
    ("value", "window", "verdict"),
    [
        (348.2, (340, 360), True),
        (339.9, (340, 360), False),
        (3, (None, 0), False),
        (0, (None, 0), True),
        (81.2, (60, None), True),
        ("OK", (0, 1), None),
        (True, (0, 1), None),
        (1.0, None, None),
    ],
)
def test_in_window(value, window, verdict) -> None:  # noqa: ANN001
    assert in_window(value, window) is verdict


def test_e10_seconds_splits_the_window() -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

    def at(minutes: float, state: str) -> ToolStateInfo:
        return ToolStateInfo("oven-1", state, "", "", t0 + timedelta(minutes=minutes), None)

    history = [
        at(-10, "standby"),
        at(5, "productive"),
        at(20, "unscheduled down"),
        at(25, "productive"),
        at(90, "standby"),
    ]
    seconds = e10_seconds(history, t0, t0 + timedelta(minutes=60))
    assert seconds == {"standby": 300.0, "productive": 900.0 + 2100.0, "unscheduled down": 300.0}

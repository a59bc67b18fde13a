"""The end-of-lot report's CPU against the controller's CPU for the lot (issue 12).

    .venv/bin/python benchmarks/bench_report.py
    .venv/bin/python benchmarks/bench_report.py --db sqlite:///demo.db --lot DEMO-123456 \\
                                                --controller-cpu 1.7

By default a 25-wafer rebump lot is recorded in a fresh SQLite file the way the
controller records it (every transition, step with the recipe's parameters and
windows, an 80-sample curve per reflow, tool-state changes, tool times of a
3.7 h lot) and ``render_lot_report`` is timed on it; with ``--db`` and
``--lot`` it is timed on a lot a real run recorded (``make demo`` prints that
run's controller CPU: give it as ``--controller-cpu``).

Measures process CPU (median of ``--runs``, after one warm-up that loads the
template and the alloy library) and peak memory (ru_maxrss). Target: report CPU
<= 1x the controller CPU of the lot, which is --controller-cpu when given, else
the controller's own budget (benchmarks/bench_lot.py: 20 ms per wafer).
Exit status 0 when the target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from controller.line.e10 import E10State  # noqa: E402
from controller.report import render_lot_report  # noqa: E402
from controller.store import Store  # noqa: E402
from sequences.kinds import kind_of  # noqa: E402
from sequences.recipes.validate import load_valid_recipe  # noqa: E402

RECIPE = "rebump-hipb-snpb"
WAFERS = 25
CONTROLLER_CPU_MS_PER_WAFER = 20.0  # the controller's target (bench_lot.py)
SCALE = 250.0  # tool seconds per wall second, as `make demo`
STEP_S = {"print": 150.0, "place": 200.0, "reflow": 400.0, "clean": 300.0}
DEFAULT_RUNS = 5
TARGET_PEAK_MB = 200.0


class Clock:
    """Tool seconds, and the wall time the store reads (SCALE times slower)."""

    def __init__(self) -> None:
        self.t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        self.tool = 0.0

    def wall(self) -> datetime:
        return self.t0 + timedelta(seconds=self.tool / SCALE)


def curve(peak_c: float, samples: int = 80) -> list[float]:
    """A reflow profile every 5 s: ramp to a soak, spike to the peak, cool."""
    out = []
    for i in range(samples):
        t = 5.0 * i
        if t < 150:
            temp = 25.0 + t * 1.2
        elif t < 260:
            temp = 205.0 + (t - 150.0) * (peak_c - 205.0) / 110.0
        else:
            temp = max(40.0, peak_c - (t - 260.0) * 2.4)
        out.append(round(temp, 1))
    return out


def record_lot(store: Store, clock: Clock, lot: str = "BENCH", wafers: int = WAFERS) -> None:
    """A lot as the controller records it, one wafer entering every 400 tool seconds."""
    recipe = load_valid_recipe(RECIPE)
    slots = list(range(1, wafers + 1))
    store.create_lot(lot, recipe_name=RECIPE, recipe_version=recipe.version,
                     recipe_hash=recipe.hash, slots=slots, user="bench")
    store.set_lot_state(lot, "running")
    for slot in slots:
        wafer = f"{lot}-{slot:02d}"
        clock.tool = 400.0 * (slot - 1)
        store.record_transition(wafer, "queued", "step1_waiting", "start", tool_time=clock.tool)
        for index, step in enumerate(recipe.steps, start=1):
            state, tool = f"step{index}", f"{step.kind}-1"
            store.record_transition(wafer, f"{state}_waiting", f"{state}_running",
                                    "tool_acquired", step_index=index, step_kind=step.kind,
                                    tool=tool, tool_time=clock.tool)
            store.record_tool_state(tool, E10State.PRODUCTIVE, tool_state="", tool_time=clock.tool)
            kind = kind_of(step)
            step_id = store.start_step(wafer, index, step.kind, tool, dict(kind.parameters(step)),
                                       windows=kind.windows(step), tool_time=clock.tool)
            clock.tool += STEP_S[step.kind]
            results, extra = _results(step.kind, slot)
            store.end_step(step_id, results=results, tool_time=clock.tool, fetch=False, **extra)
            store.record_transition(wafer, f"{state}_running", f"{state}_judging", "judged_ok",
                                    step_index=index, step_kind=step.kind, tool=tool,
                                    tool_time=clock.tool, measurements=results)
        store.record_transition(wafer, f"step{len(recipe.steps)}_judging", "complete",
                                "judged_ok", tool_time=clock.tool)
    store.set_lot_state(lot, "complete")


def _results(kind: str, slot: int) -> tuple[dict, dict]:
    jitter = (slot % 7) / 10
    if kind == "print":
        return {"vol_mean_pct": 96.0 + jitter, "vol_min_pct": 80.0, "bridges": 0,
                "insufficient": 0}, {}
    if kind == "place":
        return {"missing": 0, "extra": 0, "defects": 0}, {}
    if kind == "reflow":
        peak = 348.5 + jitter
        return ({"peak_c": peak, "tal_s": 63.0 + jitter, "ramp_max_c_s": 2.5,
                 "cool_max_c_s": 2.4, "o2_max_ppm": 20},
                {"curve_c": curve(peak), "liquidus_c": 312.0})
    return {"ionic_ug_cm2": 0.2 + jitter / 10}, {}


def measure(store: Store, lot: str, runs: int) -> list[float]:
    render_lot_report(store, lot)  # warm-up: template, alloy library, SQL compilation
    cpu = []
    for _ in range(runs):
        start = time.process_time()
        render_lot_report(store, lot)
        cpu.append(time.process_time() - start)
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", metavar="URL", help="a database with a recorded lot")
    parser.add_argument("--lot", metavar="ID", help="the recorded lot (with --db)")
    parser.add_argument("--controller-cpu", type=float, metavar="S",
                        help="the controller's CPU seconds for that lot")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    args = parser.parse_args(argv)
    if bool(args.db) != bool(args.lot):
        parser.error("--db and --lot go together")
    with tempfile.TemporaryDirectory() as tmp:
        if args.db:
            store, lot = Store(args.db), args.lot
        else:
            clock = Clock()
            store, lot = Store(f"sqlite:///{Path(tmp) / 'bench.db'}", now=clock.wall), "BENCH"
            record_lot(store, clock)
        with store:
            wafers = len(store.wafers(lot))
            cpu = measure(store, lot, args.runs)
            size = len(render_lot_report(store, lot).encode())
    budget = (args.controller_cpu if args.controller_cpu is not None
              else CONTROLLER_CPU_MS_PER_WAFER * wafers / 1000.0)
    median = statistics.median(cpu)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    where = "measured" if args.controller_cpu is not None else "budget, 20 ms/wafer"
    print(f"report of lot {lot} ({wafers} wafers): CPU median {median * 1000:.0f} ms "
          f"(runs: {', '.join(f'{c * 1000:.0f}' for c in cpu)} ms), {size / 1024:.0f} KiB HTML, "
          f"peak memory {peak_mb:.0f} MB")
    ratio = median / budget if budget > 0 else float("inf")
    print(f"controller CPU for the lot: {budget:.2f} s ({where}); report/controller = "
          f"{ratio:.2f}x (target <= 1x)")
    ok = ratio <= 1.0 and peak_mb <= TARGET_PEAK_MB
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

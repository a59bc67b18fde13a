"""A 25-wafer rebump lot on the simulated line: makespan against the lower bound.

    .venv/bin/python benchmarks/bench_lot.py [--speed S] [--wafers N] [--seed N] [--runs N]
                                             [--side-by-side N] [--idle]
                                             [--baseline [--baseline-speed S]]
    .venv/bin/python benchmarks/bench_lot.py --sweep      # which time scales stay correct
    .venv/bin/python benchmarks/bench_lot.py --db postgresql+psycopg://user@host/db

The simulator runs in its own process (``bumpline sim``), so the CPU measured
here is the controller's alone: drivers, scheduler, store. This process runs the
lot with ``LineController`` on a fresh SQLite file and reports

* makespan: tool seconds from the start of the run to its end;
* the lower bound (``controller.line.bound.lower_bound``; the printer starts mounted
  with ST-300-100 / Pb95Sn5) and efficiency = bound / makespan;
* controller CPU per wafer, wall time, peak memory (ru_maxrss);
* on the role that sets the bound, what each run adds to it (``benchmarks.losses``);

the lot is run ``--runs`` times (3), each on a fresh simulator and database: the CPU
figure is the median (one run on a small VM moves by a few ms per wafer with the same
work), efficiency the worst run, and every run must be correct. With two or more cores
the controller is pinned to one and the simulator to the others, so the simulator's work
never runs on the core being measured; with ``--baseline``, a one-wafer-at-a-time
baseline (N lots of one wafer in a row) for comparison only, not a target (a wafer the
process fails there is listed, not counted). A run is correct when every wafer is
complete (or judged out by the printer's SPI: the simulator's seeded paste defects, about
one print in 50; printed as "+N SPI") and the oven never raised alarm 530 (exit blocked).

A second process keeps one core busy the whole time (``--idle`` turns it off): a plant
PC or a CI machine runs other things too. Every request each tool's link sends is
counted (``count_requests``) and printed per wafer and tool. After the single-lot
runs, 4 lots of 25 start together on one line (``--side-by-side``).

Targets (issue 12), each printed with its margin: requests per wafer <= 32 (worst
run); efficiency against the lower bound, worst run, >= 0.97 (>= 0.99 at 200x and
below); controller CPU per wafer, median, <= 12 ms; 4 x 25 side by side all complete,
no alarm 530; peak memory with them <= 100 MB. Exit status 0 when every target is
met, 1 otherwise.

With ``--db URL`` (a throwaway PostgreSQL database) every run is made twice, on
SQLite and on that database, one after the other (the same minutes of a
loaded machine), and the controller CPU per wafer on PostgreSQL is compared
with SQLite's (issue 13: <= 1.5x, the margin printed); no baseline then.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.load import busy_core, check, pace_ms, spread  # noqa: E402
from benchmarks.losses import Losses, role_losses  # noqa: E402
from benchmarks.lot_sim import sim_alarms, simulator, split_cpus  # noqa: E402
from controller.line.bound import MakespanBound, lower_bound  # noqa: E402
from controller.line.controller import LineController  # noqa: E402
from controller.store import Store, slots_for_count  # noqa: E402
from drivers.clock import ScaledClock  # noqa: E402
from drivers.line_config import LineConfig  # noqa: E402
from drivers.tools import open_line  # noqa: E402
from sequences.kinds.oven_exit import watch_of  # noqa: E402
from sequences.recipes.validate import load_valid_recipe  # noqa: E402

RECIPE = "rebump-hipb-snpb"  # --recipe changes it (a barrier recipe's line gets a plater)
MOUNTED = {"printer": ("ST-300-100", "Pb95Sn5")}  # what the simulated printer powers up with
DEFAULT_SPEED = 1600.0  # the highest of --sweep's scales still correct with margin (0.93)
DEFAULT_RUNS = 3  # single runs on a 2-core VM move by a few ms of CPU per wafer: take the median
DEFAULT_SEED = 1  # seed 0 draws a printer alignment failure (alarm 210) on wafer 9
SWEEP_SPEEDS = (200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)
TARGET_EFFICIENCY = 0.97  # worst run, against the lower bound, above SLOW_SPEED
TARGET_EFFICIENCY_SLOW = 0.99  # the same at SLOW_SPEED or below
SLOW_SPEED = 200.0
TARGET_CPU_MS_PER_WAFER = 12.0  # median of the runs
TARGET_REQUESTS_PER_WAFER = 32.0  # the demo recipe; what the specs need is about 30
TARGET_PEAK_MB = 100.0  # with the side-by-side lots
SIDE_BY_SIDE = 4  # lots started together after the single-lot runs
TARGET_PG_CPU_RATIO = 1.5  # issue 13: the controller on PostgreSQL against SQLite
EXIT_BLOCKED = re.compile(r"alarm 530\b")
# A print judged out on the SPI's measurements: the simulated printer draws its defects
# from the seed and the prints since the last wipe (bridges about 1 in 50 prints), so 4
# lots of 25 draw a few whatever the controller does.
SPI_REJECT = re.compile(r"^(SPI |bridges |insufficient sites )")


@dataclass
class RunResult:
    label: str
    speed: float
    wafers: int
    makespan_s: float
    wall_s: float
    cpu_s: float
    states: dict[str, int] = field(default_factory=dict)
    sim_alarms: list[str] = field(default_factory=list)  # alarm lines from the simulator's log
    store_alarms: list[str] = field(default_factory=list)
    busy: dict[str, float] = field(default_factory=dict)  # tool -> share of the makespan busy
    unfinished: list[str] = field(default_factory=list)  # wafer: state, last event's why
    requests: dict[str, int] = field(default_factory=dict)  # tool -> requests on its link
    exit_latency: list[float] = field(default_factory=list)  # tool s, due to UNLOAD
    rejected: int = 0  # judged out by the paste printer's SPI: the process's, not ours
    losses: dict[str, Losses] = field(default_factory=dict)  # role -> where its time went

    @property
    def complete(self) -> int:
        return self.states.get("complete", 0)

    @property
    def done(self) -> str:
        """'complete/wafers', and the SPI rejects when there were any."""
        return f"{self.complete}/{self.wafers}" + (f" +{self.rejected} SPI" if self.rejected
                                                   else "")

    @property
    def exit_blocked(self) -> bool:
        return any(EXIT_BLOCKED.search(line) for line in self.sim_alarms + self.store_alarms)

    @property
    def correct(self) -> bool:
        return self.complete + self.rejected == self.wafers and not self.exit_blocked

    @property
    def cpu_ms_per_wafer(self) -> float:
        return 1000.0 * self.cpu_s / self.wafers

    @property
    def requests_per_wafer(self) -> float:
        return sum(self.requests.values()) / self.wafers


# (tool, request) -> count over the process, for --requests-by-what: which reads and
# writes a wafer costs (a Modbus request is named by its operation and register name,
# a HostLink one by its command).
REQUESTS_BY_WHAT: dict[tuple[str, str], int] = {}


def count_requests(tools: Any) -> dict[str, int]:
    """Count every request each tool's link sends (a resend and a probe count too): the
    links' one request method of each kind, wrapped on the instance."""
    counts: dict[str, int] = {}
    for name, driver in tools.items():
        link = getattr(driver, "link", None) or getattr(driver, "port", None)
        method = "_request" if hasattr(link, "_request") else "request"
        if link is None or not hasattr(link, method):
            continue
        counts[name] = 0
        setattr(link, method, _counted(getattr(link, method), counts, name))
    return counts


def _counted(request: Any, counts: dict[str, int], name: str) -> Any:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        # Modbus: (fc, op, span, what, ...); HostLink: (cmd, *args); a text line: (line,)
        modbus = isinstance(args[0], int) and len(args) > 3
        label = f"{args[1]} {args[3]}" if modbus else str(args[0]).split(" ")[0]
        key = (name, label)
        REQUESTS_BY_WHAT[key] = REQUESTS_BY_WHAT.get(key, 0) + 1
        return await request(*args, **kwargs)

    return counted


# --- the simulator, in its own process --------------------------------------------------------


# --- runs -------------------------------------------------------------------------------------


def _new_lot(store: Store, lot_id: str, wafers: int) -> None:
    recipe = load_valid_recipe(RECIPE)
    store.create_lot(lot_id, recipe_name=RECIPE, recipe_version=recipe.version,
                     recipe_hash=recipe.hash, slots=slots_for_count(wafers), user="bench")


async def _run(config: LineConfig, db: Path | str, lots: list[tuple[str, int]], label: str,
               speed: float, log_path: Path, *, together: bool = False) -> RunResult:
    """Run the lots one after the other on the line (``together``: side by side, in one
    controller run); measure the whole.

    ``db``: a SQLite file, or a database URL (its lot ids must be new to it)."""
    clock = ScaledClock(config.time_scale)
    store = Store(db if isinstance(db, str) else f"sqlite:///{db}")
    started = datetime.now(UTC)  # a shared database keeps earlier runs' alarms
    try:
        async with open_line(config, clock) as tools:
            requests = count_requests(tools)
            for lot_id, wafers in lots:
                _new_lot(store, lot_id, wafers)
            busy: dict[str, float] = {}
            wall0, cpu0, tool0 = time.monotonic(), time.process_time(), clock.now()
            batches = [[lot_id for lot_id, _ in lots]] if together else [[lot_id]
                                                                          for lot_id, _ in lots]
            for batch in batches:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe,
                                            user="bench")
                await controller.run(batch)
                for name, slot in controller.scheduler.tools.items():
                    busy[name] = busy.get(name, 0.0) + slot.busy_s
            makespan = clock.now() - tool0
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            latency = [t for _, d in tools.items() if (w := watch_of(d)) for t in w.latencies]
        states: dict[str, int] = {}
        unfinished = []
        rejected = 0
        steps: list[Any] = []
        for lot_id, _ in lots:
            for wafer in store.wafers(lot_id):
                steps += store.steps(wafer.id)
                states[wafer.state] = states.get(wafer.state, 0) + 1
                if wafer.state != "complete":
                    last = store.events(wafer.id)[-1]
                    rejected += (wafer.state == "awaiting_disposition"
                                 and last.step_kind == "print"
                                 and bool(SPI_REJECT.match(last.why or "")))
                    unfinished.append(f"{wafer.id} {wafer.state} at step {last.step_index} "
                                      f"({last.step_kind}): {last.why}")
        store_alarms = [f"{a.tool} alarm {a.code} {a.text} ({a.wafer_id or '-'})"
                        for a in store.alarms() if a.set_at >= started]  # this run's
    finally:
        store.close()
    return RunResult(label, speed, sum(n for _, n in lots), makespan, wall, cpu, states,
                     sim_alarms(log_path), store_alarms,
                     {name: b / makespan for name, b in busy.items()} if makespan else {},
                     unfinished, requests, latency, rejected,
                     role_losses(steps, load_valid_recipe(RECIPE).step, tool0, tool0 + makespan))


def run_lot(speed: float, wafers: int, workdir: Path, seed: int,
            run: int = 1, db_url: str | None = None) -> tuple[RunResult, LineConfig]:
    """One lot on a fresh simulator: on a fresh SQLite file, or on ``db_url``; the last
    run's cycles collected first, off the clock, as `bumpline serve` does between lots."""
    gc.collect()
    with simulator(speed, workdir, seed, RECIPE) as (config, log_path):
        db: Path | str = workdir / f"lot-{speed:g}x-{run}.db"
        lot_id = "BENCH"
        if db_url is not None:  # a shared database: a lot id it has not seen
            db, lot_id = db_url, f"B{time.time_ns() // 1000 % 10**10}{run}"  # <= 13 chars
        result = asyncio.run(_run(config, db, [(lot_id, wafers)],
                                  f"{wafers}-wafer lot", speed, log_path))
    return result, config


def run_side_by_side(speed: float, lots: int, wafers: int, workdir: Path,
                     seed: int) -> RunResult:
    """``lots`` lots of ``wafers`` wafers started together on one line (one controller)."""
    with simulator(speed, workdir, seed, RECIPE) as (config, log_path):
        return asyncio.run(_run(config, workdir / f"lines-{speed:g}x.db",
                                [(f"SIDE{i}", wafers) for i in range(1, lots + 1)],
                                f"{lots} x {wafers} side by side", speed, log_path,
                                together=True))


def run_baseline(speed: float, wafers: int, workdir: Path, seed: int) -> RunResult:
    """One wafer at a time: N one-wafer lots in a row on a fresh simulator."""
    lots = [(f"ONE{i:02d}", 1) for i in range(1, wafers + 1)]
    with simulator(speed, workdir, seed, RECIPE) as (config, log_path):
        return asyncio.run(_run(config, workdir / f"baseline-{speed:g}x.db", lots,
                                "one wafer at a time", speed, log_path))


def bound_for(config: LineConfig, wafers: int) -> MakespanBound:
    counts = {role: len(config.by_role(role)) for role in ("printer", "placer", "oven",
                                                             "cleaner", "plater")}
    return lower_bound(load_valid_recipe(RECIPE), wafers, counts, mounted=MOUNTED)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --- report -----------------------------------------------------------------------------------


def _row(r: RunResult, bound: MakespanBound) -> str:
    eff = bound.seconds / r.makespan_s if r.makespan_s else 0.0
    return (f"{r.label:<22} {r.speed:>6g}x {r.complete:>3}/{r.wafers:<3} {r.makespan_s:>9.0f} s "
            f"{r.makespan_s / 3600:>6.2f} h {eff:>6.3f} {r.cpu_ms_per_wafer:>8.1f} "
            f"{r.wall_s:>8.1f} s  {'yes' if r.correct else 'NO'}")


def _header() -> str:
    return (f"{'run':<22} {'speed':>7} {'done':>7} {'makespan':>11} {'':>8} {'eff.':>6} "
            f"{'CPU ms/w':>8} {'wall':>10}  correct")


def _problems(r: RunResult) -> list[str]:
    out = []
    if r.complete != r.wafers:
        out.append(f"{r.label} at {r.speed:g}x: only {r.complete}/{r.wafers} wafers complete "
                   f"({', '.join(f'{n} {s}' for s, n in sorted(r.states.items()))}"
                   + (f"; {r.rejected} judged out by the printer's SPI" if r.rejected else "")
                   + ")")
    if r.exit_blocked:
        out.append(f"{r.label} at {r.speed:g}x: the oven raised 530 (exit blocked) "
                   f"{sum(bool(EXIT_BLOCKED.search(a)) for a in r.sim_alarms)} time(s)")
    out += [f"{r.label} at {r.speed:g}x: {line}" for line in r.unfinished]
    out += [f"{r.label} at {r.speed:g}x: simulator log: {line}" for line in r.sim_alarms]
    out += [f"{r.label} at {r.speed:g}x: stored alarm: {line}" for line in r.store_alarms]
    return out


def _use_recipe(name: str) -> None:
    global RECIPE
    RECIPE = name


def _median_requests(runs: list[RunResult], tool: str) -> float:
    return statistics.median(r.requests.get(tool, 0) / r.wafers for r in runs)


def efficiency_target(speed: float) -> float:
    return TARGET_EFFICIENCY_SLOW if speed <= SLOW_SPEED else TARGET_EFFICIENCY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help=f"simulator time scale (default {DEFAULT_SPEED:g})")
    parser.add_argument("--recipe", default=RECIPE,
                        help=f"shipped recipe to run (default {RECIPE}; e.g. "
                        "rebump-sncu-niau-snpb, the barrier flow on a line with a plater)")
    parser.add_argument("--wafers", type=int, default=25, help="wafers in the lot (default 25)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"simulator seed (default {DEFAULT_SEED})")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"lot runs, each on a fresh simulator (default {DEFAULT_RUNS}); "
                        "CPU per wafer is their median")
    parser.add_argument("--side-by-side", type=int, default=SIDE_BY_SIDE, metavar="N",
                        help=f"then N lots of --wafers started together (default "
                        f"{SIDE_BY_SIDE}; 0 skips it)")
    parser.add_argument("--idle", action="store_true",
                        help="no second process keeping a core busy (measure an idle machine)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the one-wafer-at-a-time baseline (for comparison only)")
    parser.add_argument("--baseline-speed", type=float, default=None, metavar="S",
                        help="time scale of the baseline's simulator (default: --speed); "
                        "the baseline is about 7 times longer in tool time")
    parser.add_argument("--db", metavar="URL",
                        help="also run every lot on this throwaway PostgreSQL database and "
                        f"compare the CPU per wafer (target <= {TARGET_PG_CPU_RATIO}x SQLite's)")
    parser.add_argument("--requests-by-what", action="store_true",
                        help="also print each tool's requests per wafer by what they ask "
                        "(all runs, side by side included)")
    parser.add_argument("--sweep", action="store_true",
                        help=f"run the lot at {', '.join(f'{s:g}' for s in SWEEP_SPEEDS)}x "
                        "and report which time scales stay correct (no baseline)")
    args = parser.parse_args(argv)
    _use_recipe(args.recipe)
    if not 1 <= args.wafers <= 25:
        parser.error(f"--wafers must be 1-25, got {args.wafers}")
    if not 1 <= args.runs <= 9:
        parser.error(f"--runs must be 1-9, got {args.runs}")
    if not 0 <= args.side_by_side <= 8:
        parser.error(f"--side-by-side must be 0-8, got {args.side_by_side}")
    for flag, value in (("--speed", args.speed), ("--baseline-speed", args.baseline_speed)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be > 0, got {value:g}")

    controller_cpus = split_cpus()[0]
    with tempfile.TemporaryDirectory(prefix="bench_lot-") as tmp, busy_core(not args.idle):
        # Pinned after the spinner started: it must not inherit the controller's core.
        if controller_cpus:
            os.sched_setaffinity(0, controller_cpus)  # the simulator gets the other core(s)
        workdir = Path(tmp)
        pace = pace_ms()  # on the controller's core, the spinner running: see the summary
        if args.sweep:
            return _sweep(args.wafers, workdir, args.seed)
        if args.db:
            return _compare_db(args, workdir)
        lots = []
        for run in range(1, args.runs + 1):
            lot, config = run_lot(args.speed, args.wafers, workdir, args.seed, run)
            lot.label = f"{args.wafers}-wafer lot" + (f", run {run}" if args.runs > 1 else "")
            lots.append(lot)
        side = None if not args.side_by_side else run_side_by_side(
            args.speed, args.side_by_side, args.wafers, workdir, args.seed)
        memory = peak_mb()  # every run so far, the side-by-side lots the largest
        baseline = None if not args.baseline else run_baseline(
            args.baseline_speed or args.speed, args.wafers, workdir, args.seed)
    bound = bound_for(config, args.wafers)
    efficiencies = [bound.seconds / r.makespan_s for r in lots]
    cpus = [r.cpu_ms_per_wafer for r in lots]
    correct = all(r.correct for r in lots)

    print(f"bench_lot: {args.wafers} wafers of {RECIPE}, simulator in its own process at "
          f"{args.speed:g}x (seed {args.seed}); "
          + ("idle machine" if args.idle else "a second process keeps one core busy"))
    print(f"lower bound {bound.seconds:.0f} s ({bound.seconds / 3600:.2f} h), set by "
          f"{bound.limiting}; per role: "
          + ", ".join(f"{role} {s:.0f} s" for role, s in sorted(bound.per_role.items())))
    print()
    print(_header())
    for r in lots:
        print(_row(r, bound))
    if side is not None:
        print(_row(side, bound) + "  (efficiency vs one lot's bound: not a target)")
    lot = lots[0]
    if baseline is not None:
        print(_row(baseline, bound))
        print(f"speed-up over one wafer at a time: {baseline.makespan_s / lot.makespan_s:.2f}x")
    print("tool busy (share of the first lot's makespan): "
          + ", ".join(f"{name} {share:.0%}" for name, share in sorted(lot.busy.items())
                      if share > 0))
    for r in lots:  # what the runs add to the bound, on the role that sets it
        if bound.limiting in r.losses:
            print(f"{r.label}: makespan - bound {r.makespan_s - bound.seconds:.0f} s; "
                  + r.losses[bound.limiting].line())
    print("requests per wafer, median of the runs: "
          + ", ".join(f"{name} {_median_requests(lots, name):.1f}"
                      for name in sorted(lot.requests)
                      if any(r.requests.get(name) for r in lots))
          + f"; total {spread([r.requests_per_wafer for r in lots])}")
    if args.requests_by_what:
        all_wafers = sum(r.wafers for r in [*lots, *([side] if side else [])])
        for (tool, what), n in sorted(REQUESTS_BY_WHAT.items()):
            print(f"  {tool:12} {what:40} {n / all_wafers:6.2f} per wafer")
    for r in [*lots, *([side] if side else [])]:
        if r.exit_latency:
            late = sorted(r.exit_latency)
            print(f"{r.label}: oven exit, tool s from a wafer's due time to its UNLOAD: "
                  f"median {statistics.median(late):.1f}, 90 % {late[int(0.9 * len(late))]:.1f},"
                  f" max {late[-1]:.1f}")
    print(f"efficiency: {spread(efficiencies, '{:.3f}')}; controller CPU per wafer: "
          f"{spread(cpus)} ms" + ("" if side else f"; peak memory {memory:.0f} MB (no target "
                                   "without the side-by-side lots; it compares runs)"))
    print(f"this machine's pace: {pace:.0f} ms of reference work (benchmarks/load.py), so CPU "
          f"per wafer is {statistics.median(cpus) / pace:.3f} paces; compare machines by that")
    print()
    results = [
        (correct, f"{'PASS' if correct else 'FAIL'}  {'every wafer complete, no alarm 530':<44} "
         + ", ".join(r.done + (" 530" if r.exit_blocked else "")
                     for r in lots)),
        check("requests per wafer, worst run", max(r.requests_per_wafer for r in lots),
              TARGET_REQUESTS_PER_WAFER, at_most=True, fmt="{:.1f}"),
        check("efficiency (bound / makespan), worst run", min(efficiencies),
              efficiency_target(args.speed), at_most=False, fmt="{:.3f}"),
        check("controller CPU per wafer, median", statistics.median(cpus),
              TARGET_CPU_MS_PER_WAFER, at_most=True, unit=" ms", fmt="{:.1f}"),
    ]
    if side is not None:
        results.append((side.correct, f"{'PASS' if side.correct else 'FAIL'}  "
                        f"{side.label + ': all complete, no 530':<44} "
                        + side.done + (" 530" if side.exit_blocked else "")))
        results.append(check(f"peak memory (ru_maxrss, with {side.label})", memory,
                             TARGET_PEAK_MB, at_most=True, unit=" MB", fmt="{:.0f}"))
    for _, line in results:
        print(line)
    for problem in [p for r in lots for p in _problems(r)] + (
            _problems(side) if side else []) + (_problems(baseline) if baseline else []):
        print(f"  note: {problem}")
    print(f"controller wall time {lot.wall_s:.1f} s for {lot.makespan_s / 3600:.2f} h of tool "
          f"time ({lot.makespan_s / lot.wall_s:.0f}x achieved)")
    return 0 if all(ok for ok, _ in results) else 1


def _compare_db(args: argparse.Namespace, workdir: Path) -> int:
    """Every run on SQLite, then on the given database; CPU per wafer side by side."""
    runs: dict[str, list[RunResult]] = {"SQLite": [], "PostgreSQL": []}
    for run in range(1, args.runs + 1):
        for name, url in (("SQLite", None), ("PostgreSQL", args.db)):
            result, _ = run_lot(args.speed, args.wafers, workdir, args.seed, run, url)
            result.label = f"{name}, run {run}"
            runs[name].append(result)
    print(f"bench_lot --db: {args.wafers} wafers of {RECIPE} at {args.speed:g}x (seed "
          f"{args.seed}), each run on SQLite then on PostgreSQL")
    cpu = {}
    for name, results in runs.items():
        cpus = sorted(r.cpu_ms_per_wafer for r in results)
        cpu[name] = statistics.median(cpus)
        print(f"{name:<11} controller CPU per wafer: median {cpu[name]:.1f} ms (runs: "
              f"{', '.join(f'{c:.1f}' for c in cpus)}); correct "
              f"{sum(r.correct for r in results)}/{len(results)}")
        for problem in [p for r in results for p in _problems(r)]:
            print(f"  note: {problem}")
    ratio = cpu["PostgreSQL"] / cpu["SQLite"]
    checks = [
        ("every run correct", all(r.correct for rs in runs.values() for r in rs), "", ""),
        ("CPU per wafer, PostgreSQL / SQLite", ratio <= TARGET_PG_CPU_RATIO, f"{ratio:.2f}x",
         f"<= {TARGET_PG_CPU_RATIO}x (margin {TARGET_PG_CPU_RATIO - ratio:+.2f}x)"),
        ("CPU per wafer on PostgreSQL", cpu["PostgreSQL"] <= TARGET_CPU_MS_PER_WAFER,
         f"{cpu['PostgreSQL']:.1f} ms", f"<= {TARGET_CPU_MS_PER_WAFER:g} ms (margin "
         f"{TARGET_CPU_MS_PER_WAFER - cpu['PostgreSQL']:+.1f} ms)"),
    ]
    for name, ok, value, target in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<38} {value:>8}   target {target}".rstrip())
    return 0 if all(ok for _, ok, _, _ in checks) else 1


def _sweep(wafers: int, workdir: Path, seed: int) -> int:
    results = [run_lot(speed, wafers, workdir, seed) for speed in SWEEP_SPEEDS]
    bound = bound_for(results[0][1], wafers)
    print(f"bench_lot --sweep: {wafers} wafers of {RECIPE}; lower bound {bound.seconds:.0f} s")
    print(_header())
    for result, _ in results:
        print(_row(result, bound), *(f"\n  note: {p}" for p in _problems(result)), sep="")
    correct = [r.speed for r, _ in results if r.correct]
    efficient = [r.speed for r, _ in results if r.correct
                 and bound.seconds / r.makespan_s >= TARGET_EFFICIENCY]
    print(f"highest correct time scale: {max(correct):g}x" if correct else "none was correct")
    if efficient:
        print(f"highest that is also efficient (>= {TARGET_EFFICIENCY}): {max(efficient):g}x "
              "(controller latency costs more tool time as the scale rises)")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())

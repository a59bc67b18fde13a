"""A/B of the controller's CPU per wafer: this checkout against an older commit.

    .venv/bin/python tools/ab_lot.py --base 1d79257 [--pairs 5] [--speed 200]
                                     [--base-python PATH] [--no-load]

On a shared machine one run of ``benchmarks/bench_lot.py`` moves by several ms
of CPU per wafer with the same code, so two runs taken minutes apart say
nothing. This runs the two sides in the same minutes, alternating which goes
first (A B, B A, ...), with a second process keeping one core busy so both
sides see the same contention, and reports the paired differences: their
median and their spread, with efficiency beside them.

The base commit is checked out into a temporary git worktree. Its controller
runs from that worktree (``bench_lot`` puts its own checkout first on the
path); ``--base-python`` names an interpreter whose environment fits the base
commit's dependencies (default: this one). A run that is not correct (a wafer
not complete, alarm 530) is listed and left out of the statistics.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 900  # wall seconds for one 25-wafer run before it counts as hung


@dataclass(frozen=True)
class Run:
    cpu_ms: float
    efficiency: float
    peak_mb: float  # the run's process (ru_maxrss)
    correct: bool


def _figure(text: str, label: str) -> float:
    m = re.search(rf"{label}\s+([0-9.]+)", text)
    if m is None:
        raise ValueError(f"bench_lot printed no '{label}'")
    return float(m.group(1))


def _megabytes(text: str) -> float:
    m = re.search(r"peak memory[^\n]*?([0-9.]+) MB", text)
    if m is None:
        raise ValueError("bench_lot printed no peak memory")
    return float(m.group(1))


def bench(checkout: Path, python: str, speed: float) -> Run | str:
    """One bench_lot run; its figures, or why it gave none."""
    # One lot, no side-by-side lots; --idle: the busy core is this script's, the same one
    # through both sides of every pair. An older bench_lot lacks some of these options
    # (1d79257 has neither --idle nor --side-by-side): pass only those it knows.
    usage = subprocess.run([python, "benchmarks/bench_lot.py", "--help"], cwd=checkout,
                           capture_output=True, text=True, check=False).stdout
    wanted = [("--runs", "1"), ("--side-by-side", "0"), ("--idle", None),
              ("--no-baseline", None)]
    options = [part for flag, value in wanted if flag in usage
               for part in ((flag,) if value is None else (flag, value))]
    try:
        out = subprocess.run(
            [python, "benchmarks/bench_lot.py", "--speed", f"{speed:g}", *options],
            cwd=checkout, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
            check=False).stdout
    except subprocess.TimeoutExpired:
        return f"no result within {RUN_TIMEOUT_S} s"
    try:
        # One run: older versions print the figures without ", median"/", worst run".
        return Run(_figure(out, r"controller CPU per wafer(?:, median)?"),
                   _figure(out, r"efficiency \(bound / makespan\)(?:, worst run)?"),
                   _megabytes(out),
                   bool(re.search(r"PASS\s+every wafer complete", out)))
    except ValueError as exc:
        return str(exc)



def spread(values: list[float], digits: int = 1) -> str:
    return (f"median {statistics.median(values):+.{digits}f} "
            f"(min {min(values):+.{digits}f}, max {max(values):+.{digits}f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs (default 5)")
    parser.add_argument("--speed", type=float, default=200.0,
                        help="simulator time scale (default 200: slow enough that a loaded "
                             "machine still unloads the oven in time)")
    parser.add_argument("--base-python", default=sys.executable,
                        help="interpreter for the base commit (default: this one)")
    parser.add_argument("--no-load", action="store_true", help="no busy core beside the runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ab-lot-") as tmp:
        base = Path(tmp) / "base"
        added = subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base],
                               cwd=ROOT, capture_output=True, text=True, check=False)
        if added.returncode != 0:
            print(f"ab_lot: cannot check out {args.base}: {added.stderr.strip()}")
            return 2
        load = None if args.no_load else subprocess.Popen(
            [sys.executable, "-c", "while True: pass"])
        sides = {"base": (base, args.base_python), "this": (ROOT, sys.executable)}
        pairs: list[tuple[Run, Run]] = []
        try:
            for i in range(args.pairs):
                order = ("base", "this") if i % 2 == 0 else ("this", "base")
                got = {side: bench(*sides[side], args.speed) for side in order}
                for side in order:
                    r = got[side]
                    shown = (f"{r.cpu_ms:.1f} ms, efficiency {r.efficiency:.3f}, "
                             f"{r.peak_mb:.0f} MB"
                             + ("" if r.correct else ", NOT CORRECT")
                             if isinstance(r, Run) else r)
                    print(f"pair {i + 1} {side}: {shown}", flush=True)
                b, t = got["base"], got["this"]
                if isinstance(b, Run) and isinstance(t, Run) and b.correct and t.correct:
                    pairs.append((b, t))
        finally:
            if load is not None:
                load.kill()
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           capture_output=True, check=False)
    if not pairs:
        print("ab_lot: no pair where both runs were correct")
        return 1
    cpu = [t.cpu_ms - b.cpu_ms for b, t in pairs]
    print(f"{len(pairs)} correct pairs at {args.speed:g}x; this minus {args.base}:")
    print(f"  CPU per wafer: base {statistics.median(b.cpu_ms for b, _ in pairs):.1f} ms, "
          f"this {statistics.median(t.cpu_ms for _, t in pairs):.1f} ms (medians); "
          f"paired difference {spread(cpu)} ms")
    print(f"  relative: {spread([100 * (t.cpu_ms / b.cpu_ms - 1) for b, t in pairs])} %")
    print(f"  efficiency: {spread([t.efficiency - b.efficiency for b, t in pairs], 3)}")
    print(f"  peak memory: base {statistics.median(b.peak_mb for b, _ in pairs):.0f} MB; "
          f"paired difference {spread([t.peak_mb - b.peak_mb for b, t in pairs])} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

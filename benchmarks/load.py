"""What the benchmarks share to hold on a busy machine: a second process keeping one core
busy, medians with their spread, and each target printed with its margin.

A plant PC or a CI machine runs other things beside the controller: a target that holds
only on an idle machine does not hold. ``busy_core()`` starts a process that spins (not
pinned: the scheduler of the operating system puts it where it likes, as it would another
program), for as long as the benchmark measures.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_core(enabled: bool = True) -> Iterator[None]:
    """A second process keeping one core busy while the block runs."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _reference_work() -> int:
    """Pure Python of the controller's kind: calls, attribute reads, small dicts and
    tuples, string formatting. No I/O, no allocation that grows."""

    class Reading:
        __slots__ = ("tool", "value")

        def __init__(self, tool: str, value: int) -> None:
            self.tool, self.value = tool, value

    def judge(r: Reading, limits: dict[str, int]) -> bool:
        return r.value <= limits.get(r.tool, 0)

    limits = {f"tool-{i}": 500 for i in range(8)}
    ok = 0
    for i in range(200_000):
        r = Reading(f"tool-{i % 8}", i % 1000)
        ok += judge(r, limits) and len((r.tool, r.value)) == 2
    return ok


def pace_ms(runs: int = 5) -> float:
    """This machine's pace: the median CPU milliseconds of a fixed pure-Python workload,
    on the calling process's core(s), under whatever load is running. CPU per wafer
    measured on two machines compares only as multiples of it: the same code took
    17 ms a wafer on one machine and 43-48 ms on one about 3x slower per core."""
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        _reference_work()
        times.append(1000.0 * (time.process_time() - t0))
    return statistics.median(times)


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """'median m (min-max over n runs)'."""
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"median {fmt.format(statistics.median(values))} ({fmt.format(min(values))}-"
            f"{fmt.format(max(values))} over {len(values)} runs)")


def check(name: str, value: float, target: float, *, at_most: bool, unit: str = "",
          fmt: str = "{:.3g}") -> tuple[bool, str]:
    """(met, a line: PASS/FAIL, the figure, the target and the margin to it)."""
    ok = value <= target if at_most else value >= target
    margin = (target - value) if at_most else (value - target)
    rel = f" ({margin / target:+.0%})" if target else ""
    sign = "<=" if at_most else ">="
    line = (f"{'PASS' if ok else 'FAIL'}  {name:<44} {fmt.format(value) + unit:>12}   target "
            f"{sign} {fmt.format(target)}{unit}   margin {fmt.format(margin)}{unit}{rel}")
    return ok, line

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

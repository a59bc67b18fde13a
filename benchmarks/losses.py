"""Where a lot's time went on each role: what the makespan adds to the lower bound.

The lower bound (``controller.line.bound``) lets the limiting role start as early as
the recipe allows and work back to back at the specs' nominal times. What a run adds to
it shows on that role as four parts: its first cycle starting later, each cycle taking
longer than nominal (the handover's requests and commits, the look that finds the
tool done: wall time, so in tool seconds it grows with the clock's scale and the
machine's load), the tool standing free between two cycles, and the time left after
its last cycle. ``bench_lot`` prints them for the bottleneck, so a low efficiency
says which of them to work on (issue 12: at 1600x the cleaner's cycles, not the oven).

A cycle is one step record on a tool of the role, from its start to its end in tool
seconds (the store's ``tool_time_start``/``tool_time_end``); for a pipelined role (the
oven) the records overlap and the gaps count as none. A batch tool's cycle (the plater)
carries several wafers' records, so batch steps are left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sequences.kinds import kind_of


@dataclass(frozen=True)
class Cycle:
    tool: str
    start: float  # tool seconds
    end: float
    nominal: float  # the spec's time for it (the bound's)


@dataclass(frozen=True)
class Losses:
    role: str
    cycles: int
    first_start: float  # tool s from the run's start to the role's first cycle
    over_nominal: float  # tool s the cycles took beyond their nominal times, in all
    over_median: float  # the same, the median cycle's
    idle: float  # tool s a tool of the role stood free between two of its cycles
    after_last: float  # tool s from the role's last cycle's end to the run's end

    def line(self) -> str:
        return (f"{self.role}: first cycle at {self.first_start:.0f} s; {self.cycles} cycles "
                f"+{self.over_nominal:.0f} s over nominal (median +{self.over_median:.1f} s "
                f"each); {self.idle:.0f} s free between cycles; {self.after_last:.0f} s after "
                "the last")


def losses(role: str, cycles: Iterable[Cycle], run_start: float, run_end: float
           ) -> Losses | None:
    """The four parts for one role's cycles in a run (None: the role had none)."""
    done = sorted((c for c in cycles), key=lambda c: c.start)
    if not done:
        return None
    over = [c.end - c.start - c.nominal for c in done]
    idle = 0.0
    last_end: dict[str, float] = {}
    for c in done:
        if c.tool in last_end:
            idle += max(0.0, c.start - last_end[c.tool])  # overlapping (a belt): none
        last_end[c.tool] = max(c.end, last_end.get(c.tool, c.end))
    return Losses(role, len(done), done[0].start - run_start, sum(over),
                  statistics.median(over), idle, run_end - max(c.end for c in done))


def role_losses(steps: Iterable[Any], recipe_step: Callable[[int], Any], run_start: float,
                run_end: float) -> dict[str, Losses]:
    """Each role's losses from a run's step records (``StepInfo``: ``step_index``, ``tool``,
    ``tool_time_start``/``_end``; records not ended are left out), ``recipe_step`` giving
    the recipe step of an index."""
    by_role: dict[str, list[Cycle]] = {}
    for s in steps:
        if s.tool_time_start is None or s.tool_time_end is None:
            continue
        step = recipe_step(s.step_index)
        kind = kind_of(step)
        if kind.batch:  # one cycle carries several wafers' records: not counted here
            continue
        by_role.setdefault(kind.role, []).append(
            Cycle(s.tool, s.tool_time_start, s.tool_time_end, kind.nominal_s(step)))
    found = {role: losses(role, cycles, run_start, run_end) for role, cycles in by_role.items()}
    return {role: lost for role, lost in found.items() if lost is not None}

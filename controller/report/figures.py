"""The lot's numbers, as pure functions of what the store returns.

Yield, first-pass yield and rework; cycle times in tool seconds (``timeline``);
each tool's SEMI E10 time split over the lot; per-result trends with Cpk. No
HTML here, so each figure is tested on its own.

E10 over the lot, per tool (every instant in exactly one state, so the shares
add up to 100 % and utilisation *is* the productive share):

1. unscheduled down: an alarm of the tool during the lot, or a recorded
   unscheduled-down state;
2. productive: one of this lot's wafers on the tool (a step running; the oven's
   belt counts once however many wafers ride it);
3. scheduled down, engineering, non-scheduled: as the controller recorded them
   (changeover, oven heating to a new profile, a mode an engineer set);
4. standby: the rest — the tool was up and had nothing of this lot to do.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.e10 import E10State
from controller.report.kinds import trend_results
from controller.report.timeline import Timeline
from controller.store import AlarmInfo, LotInfo, StepInfo, ToolStateInfo, WaferHistory

MIN_CPK_WAFERS = 10  # fewer values make a Cpk more noise than figure

# Higher wins where two states claim the same instant.
_PRIORITY = (
    E10State.UNSCHEDULED_DOWN,
    E10State.PRODUCTIVE,
    E10State.SCHEDULED_DOWN,
    E10State.ENGINEERING,
    E10State.NON_SCHEDULED,
)
_RECORDED = frozenset(_PRIORITY) - {E10State.PRODUCTIVE}


def in_window(value: Any, window: Sequence[float | None] | None) -> bool | None:
    """True/False for a number against ``[low, high]`` (None = open end); None if not judged."""
    if window is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = window
    return (low is None or value >= low) and (high is None or value <= high)


# --- time ---------------------------------------------------------------------------------------


def lot_timeline(histories: Sequence[WaferHistory]) -> Timeline:
    """The lot's tool-time timeline from its wafers' transitions and steps."""
    anchors: list[tuple[datetime, float | None]] = []
    for h in histories:
        anchors += [(e.at, e.tool_time) for e in h.events]
        for s in h.steps:
            anchors.append((s.started_at, s.tool_time_start))
            if s.ended_at is not None:
                anchors.append((s.ended_at, s.tool_time_end))
    return Timeline(anchors)


def step_seconds(step: StepInfo, timeline: Timeline) -> float | None:
    return timeline.seconds(
        step.started_at, step.tool_time_start, step.ended_at, step.tool_time_end
    )


def step_interval(step: StepInfo, timeline: Timeline) -> tuple[float, float]:
    """Lot seconds from the step's start to its end (the lot's end while it runs)."""
    start = timeline.at(step.started_at, step.tool_time_start)
    if step.ended_at is None:
        return start, timeline.span
    return start, max(start, timeline.at(step.ended_at, step.tool_time_end))


def wafer_cycle_s(steps: Sequence[StepInfo], timeline: Timeline) -> float | None:
    """First step's start to last step's end, in tool seconds."""
    if not steps or any(s.ended_at is None for s in steps):
        return None
    spans = [step_interval(s, timeline) for s in steps]
    return max(e for _, e in spans) - min(s for s, _ in spans)


# --- yield --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotFigures:
    wafers: int
    good: int
    scrapped: int
    aborted: int
    unfinished: int
    first_pass: int  # good with every step passed at its first attempt
    reworked_steps: int  # step attempts after the first (retries, reprints)
    cycle_s: float  # tool seconds under a controller
    mean_wafer_cycle_s: float | None
    start: datetime | None  # wall clock, for people to find the lot in other records
    end: datetime | None

    @property
    def finished(self) -> int:
        return self.good + self.scrapped + self.aborted

    @property
    def yield_pct(self) -> float | None:
        """Good wafers over finished ones (None before any finished); unfinished ones —
        running, held, awaiting disposition — are not counted either way."""
        return None if self.finished == 0 else 100.0 * self.good / self.finished

    @property
    def first_pass_yield_pct(self) -> float | None:
        """Wafers good at the first attempt of every step, over finished ones."""
        return None if self.finished == 0 else 100.0 * self.first_pass / self.finished


def first_pass(history: WaferHistory) -> bool:
    return history.wafer.outcome == "good" and all(
        s.attempt == 1 and s.status == "done" for s in history.steps
    )


def lot_figures(
    lot: LotInfo, histories: Sequence[WaferHistory], timeline: Timeline | None = None
) -> LotFigures:
    timeline = timeline or lot_timeline(histories)
    outcomes = [h.wafer.outcome for h in histories]
    cycles = [c for c in (wafer_cycle_s(h.steps, timeline) for h in histories) if c is not None]
    walls = [s.started_at for h in histories for s in h.steps] + [
        e.at for h in histories for e in h.events
    ]
    return LotFigures(
        wafers=len(histories),
        good=outcomes.count("good"),
        scrapped=outcomes.count("scrapped"),
        aborted=outcomes.count("aborted"),
        unfinished=outcomes.count(None),
        first_pass=sum(first_pass(h) for h in histories),
        reworked_steps=sum(1 for h in histories for s in h.steps if s.attempt > 1),
        cycle_s=timeline.span,
        mean_wafer_cycle_s=sum(cycles) / len(cycles) if cycles else None,
        start=lot.started_at or min(walls, default=None),
        end=lot.ended_at or max(walls, default=None),
    )


# --- tools --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolFigures:
    tool: str
    steps: int
    seconds: dict[E10State, float]  # every E10 state, adding up to the lot's span

    @property
    def span(self) -> float:
        return sum(self.seconds.values())

    def share_pct(self, state: E10State) -> float | None:
        span = self.span
        return None if span <= 0 else 100.0 * self.seconds[state] / span

    @property
    def utilisation_pct(self) -> float | None:
        return self.share_pct(E10State.PRODUCTIVE)


def tool_figures(
    tool: str,
    steps: Sequence[StepInfo],
    history: Sequence[ToolStateInfo],
    alarms: Sequence[AlarmInfo],
    timeline: Timeline,
) -> ToolFigures:
    """The tool's E10 split over the lot (module docstring: which state wins when)."""
    span = timeline.span
    claims: dict[E10State, list[tuple[float, float]]] = {s: [] for s in _PRIORITY}
    mine = [s for s in steps if s.tool == tool]
    claims[E10State.PRODUCTIVE] = [step_interval(s, timeline) for s in mine]
    for a in alarms:
        if a.tool == tool:
            start = timeline.at(a.set_at, a.tool_time)
            end = span if a.cleared_at is None else timeline.at(a.cleared_at)
            claims[E10State.UNSCHEDULED_DOWN].append((start, end))
    changes = sorted(history, key=lambda h: h.at)
    for i, change in enumerate(changes):
        state = _e10(change.e10_state)
        if state not in _RECORDED:
            continue
        start = timeline.at(change.at, change.tool_time)
        end = (
            timeline.at(changes[i + 1].at, changes[i + 1].tool_time)
            if i + 1 < len(changes)
            else span
        )
        claims[state].append((start, end))
    seconds = dict.fromkeys(E10State, 0.0)
    cuts = sorted({0.0, span, *(t for spans in claims.values() for se in spans for t in se)})
    cuts = [t for t in cuts if 0.0 <= t <= span]
    for left, right in zip(cuts, cuts[1:], strict=False):
        middle = (left + right) / 2
        owner = next(
            (s for s in _PRIORITY if any(a <= middle < b for a, b in claims[s])),
            E10State.STANDBY,
        )
        seconds[owner] += right - left
    return ToolFigures(tool, len(mine), seconds)


def _e10(text: str) -> E10State | None:
    try:
        return E10State.parse(text)
    except ValueError:
        return None


# --- trends -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """One result of one recipe step across the lot's wafers (last attempt of each)."""

    step_index: int
    kind: str
    result: str
    window: tuple[float | None, float | None] | None
    points: tuple[tuple[str, float], ...]  # (wafer, value) in slot order

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]

    @property
    def cpk(self) -> float | None:
        """Process capability against the window (None with too few wafers or no spread)."""
        values = self.values
        if self.window is None or len(values) < MIN_CPK_WAFERS:
            return None
        sigma = statistics.stdev(values)
        if sigma == 0:
            return None
        mean = statistics.fmean(values)
        low, high = self.window
        sides = [(high - mean) / (3 * sigma)] if high is not None else []
        if low is not None:
            sides.append((mean - low) / (3 * sigma))
        return min(sides) if sides else None


def lot_trends(histories: Sequence[WaferHistory]) -> list[Trend]:
    """Per recipe step and trended result: every wafer's value, with the step's window."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for h in sorted(histories, key=lambda h: h.wafer.slot):
        last: dict[int, StepInfo] = {}
        for s in h.steps:
            if s.results is not None:
                last[s.step_index] = s
        for index, s in sorted(last.items()):
            for name in trend_results(s.kind):
                value = s.results.get(name) if s.results else None
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if not math.isfinite(value):
                    continue
                entry = found.setdefault(
                    (index, name), {"kind": s.kind, "window": s.windows.get(name), "points": []}
                )
                entry["points"].append((h.wafer.id, float(value)))
    return [
        Trend(
            index,
            e["kind"],
            name,
            tuple(e["window"]) if e["window"] is not None else None,
            tuple(e["points"]),
        )
        for (index, name), e in sorted(found.items(), key=lambda kv: kv[0][0])
    ]

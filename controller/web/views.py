"""Pure helpers for the pages: lot progress and ETA, judgments, the reflow curve as SVG.

The curve is drawn as inline SVG (vector, no image files, no plotting library in
the request path): the wafer's measured temperature, the recipe's peak window
as a band, the liquidus of what this reflow melts, and the solidus of the
wafer's first bump, which a later reflow must stay below (docs/recipes.md).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from controller.store import LotInfo, StepInfo, WaferInfo
from sequences.errors import RecipeError
from sequences.kinds import steps_no_tool_takes
from sequences.recipes.alloys import default_alloys
from sequences.recipes.recipe import DEPOSIT_KINDS, find_recipe, shipped_recipe_paths
from sequences.wafer.machine import AWAITING, HELD

SVG_W, SVG_H, PAD_L, PAD_B, PAD_T, PAD_R = 640, 240, 44, 28, 10, 10
FOR_A_PERSON = (HELD, AWAITING)  # wafer states only a person moves on


@dataclass(frozen=True)
class LotProgress:
    lot: LotInfo
    done: int
    total: int
    eta: str  # e.g. "12 min", "waits for a person", or "" when unknown
    stopped: bool = False  # "running" in the store, and no controller runs it (its lease)

    @property
    def state(self) -> str:
        """As `bumpline lot list` says it: a running lot no controller runs is stopped."""
        return "stopped" if self.stopped else self.lot.state

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def lot_progress(lot: LotInfo, wafers: Sequence[WaferInfo], now: datetime | None = None,
                 *, stopped: bool = False) -> LotProgress:
    """Wafers finished of the lot, and when the rest should be (the pace so far). Wafers
    held or awaiting a disposition wait for a person, not for the line: left out of the
    ETA. ``stopped``: no controller runs the lot, so nothing comes by itself: no ETA."""
    done = sum(w.outcome is not None for w in wafers)
    total = len(wafers)
    waiting = sum(w.outcome is None and w.state in FOR_A_PERSON for w in wafers)
    moving = total - done - waiting
    eta = ""
    if lot.state == "running" and not stopped:
        if moving == 0 and waiting:
            eta = "waits for a person"
        elif lot.started_at is not None and done and moving:
            now = now or datetime.now(UTC)
            eta = _duration((now - lot.started_at) / done * moving)
            if waiting:
                eta += f" (+{waiting} waiting for a person)"
    return LotProgress(lot, done, total, eta, stopped)


def startable_recipes(tools: list[tuple[str, Any]] | None) -> list[str]:
    """The shipped recipes a line with ``tools`` ((role, driver) each) can run: a tool takes
    each of its steps (None: all of them)."""
    names = sorted(shipped_recipe_paths())
    return names if tools is None else [n for n in names if not why_not_here(n, tools)]


def why_not_here(recipe_name: str, tools: list[tuple[str, Any]]) -> list[str]:
    """The steps of a shipped recipe no tool of the line can take, said for a person."""
    return steps_no_tool_takes(_shipped(recipe_name), tools)


@functools.cache
def _shipped(recipe_name: str) -> Any:
    return find_recipe(recipe_name)  # loaded once


def _duration(span: timedelta) -> str:
    seconds = max(0, round(span.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def judged(step: StepInfo) -> list[tuple[str, Any, str, bool | None]]:
    """(name, measured, window text, inside?) for every result of a step."""
    rows = []
    results = step.results or {}
    for name, value in results.items():
        if isinstance(value, list | dict):
            continue  # curves and the like are drawn, not listed
        window = step.windows.get(name)
        inside: bool | None = None
        text = ""
        if window is not None and isinstance(value, int | float):
            low, high = window
            inside = (low is None or value >= low) and (high is None or value <= high)
            text = f"{'' if low is None else f'{low:g}'} … {'' if high is None else f'{high:g}'}"
        rows.append((name, value, text, inside))
    return rows


def first_bump_solidus(recipe_name: str) -> tuple[str, float, bool] | None:
    """(alloy, solidus °C, whether that figure is assumed) of the first solder the recipe
    deposits, if the recipe is known."""
    try:
        recipe = find_recipe(recipe_name)
        alloys = default_alloys()
    except (RecipeError, OSError, KeyError, ValueError):
        return None
    for step in recipe.steps:
        if step.kind in DEPOSIT_KINDS:
            alloy = alloys[step.alloy]  # type: ignore[union-attr]
            return alloy.id, alloy.solidus_c, "solidus_c" in alloy.assumed
    return None


def reflow_svg(step: StepInfo, solidus: tuple[str, float, bool] | None) -> str:
    """The step's measured curve as an inline SVG element ('' when it has none)."""
    curve = step.curve
    if curve is None or not curve.samples_c:
        return ""
    temps = list(curve.samples_c)
    times = [i * curve.interval_s for i in range(len(temps))]
    window = step.windows.get("peak_c") or (None, None)
    liquidus = curve.liquidus_c if curve.liquidus_c is not None else (
        step.parameters.get("tal_threshold_c"))
    marks = [t for t in (*window, liquidus, solidus[1] if solidus else None) if t is not None]
    low = min([*temps, *marks]) - 10
    high = max([*temps, *marks]) + 10
    t_end = times[-1] or 1.0

    def x(t: float) -> float:
        return PAD_L + (SVG_W - PAD_L - PAD_R) * t / t_end

    def y(c: float) -> float:
        return PAD_T + (SVG_H - PAD_T - PAD_B) * (high - c) / (high - low)

    parts = [f'<svg class="curve" viewBox="0 0 {SVG_W} {SVG_H}" role="img" '
             f'aria-label="reflow curve step {step.step_index}">']
    if window != (None, None):
        top = y(window[1] if window[1] is not None else high)
        bottom = y(window[0] if window[0] is not None else low)
        parts.append(f'<rect class="window" x="{PAD_L}" y="{top:.1f}" '
                     f'width="{SVG_W - PAD_L - PAD_R}" height="{bottom - top:.1f}">'
                     f'<title>peak window</title></rect>')
    for value, css, label in ((liquidus, "liquidus", "liquidus"),
                              (solidus[1] if solidus else None, "solidus",
                               f"first bump {solidus[0]} solidus" if solidus else "")):
        if value is None:
            continue
        assumed = " (assumed)" if css == "solidus" and solidus and solidus[2] else ""
        # liquidus labelled above its line at the right, solidus below at the left: the
        # two are often a few degrees apart
        at = (f'x="{SVG_W - PAD_R - 4}" y="{y(value) - 3:.1f}" text-anchor="end"'
              if css == "liquidus" else f'x="{PAD_L + 4}" y="{y(value) + 11:.1f}"')
        parts.append(f'<line class="{css}" x1="{PAD_L}" x2="{SVG_W - PAD_R}" '
                     f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                     f'<text class="{css}" {at}>{escape(label)} {value:g} °C{assumed}</text>')
    points = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in zip(times, temps, strict=True))
    parts.append(f'<polyline class="temp" points="{points}"/>')
    peak = max(range(len(temps)), key=temps.__getitem__)
    parts.append(f'<circle class="peak" cx="{x(times[peak]):.1f}" cy="{y(temps[peak]):.1f}" '
                 f'r="3"/><text x="{x(times[peak]) + 5:.1f}" y="{y(temps[peak]) - 5:.1f}">'
                 f'peak {temps[peak]:.1f} °C</text>')
    for c in range(int(low // 50 + 1) * 50, int(high), 50):
        parts.append(f'<text class="axis" x="{PAD_L - 4}" y="{y(c) + 4:.1f}" '
                     f'text-anchor="end">{c}</text>')
    parts.append(f'<text class="axis" x="{SVG_W - PAD_R}" y="{SVG_H - 6}" '
                 f'text-anchor="end">{t_end:.0f} s from LOAD</text></svg>')
    return "".join(parts)

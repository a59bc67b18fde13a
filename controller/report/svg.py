"""Small hand-written inline SVG plots: a reflow profile, an overlay, a lot trend.

Inline SVG keeps the report one self-contained file (mail it, archive it, open
it anywhere) and costs microseconds per plot: a plotting library at report time
cost more CPU than running the lot. Each function returns an ``<svg>`` element
as text; colours and fonts come from the page's CSS classes (``templates/``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 30  # plot margins (px)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering ``[low, high]`` (about ``count`` of them)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs(math.log(s / raw)))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


@dataclass(frozen=True)
class Axes:
    """Data coordinates to pixels for one plot, and the frame, grid and tick labels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = WIDTH
    height: int = HEIGHT
    top: int = TOP  # room above the plot area (a line of notes)

    @classmethod
    def around(
        cls, xs: Sequence[float], ys: Sequence[float], *, pad: float = 0.05, **size: int
    ) -> Axes:
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 == y0:
            y0, y1 = y0 - 1, y1 + 1
        margin = (y1 - y0) * pad
        return cls(x0, x1, y0 - margin, y1 + margin, **size)

    def x(self, value: float) -> float:
        span = self.width - LEFT - RIGHT
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = self.height - self.top - BOTTOM
        return self.height - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * span

    def clamp_y(self, value: float) -> float:
        return self.y(min(max(value, self.y0), self.y1))

    def frame(self, x_label: str, y_label: str, *, x_ticks: bool = True) -> list[str]:
        parts = []
        for t in nice_ticks(self.y0, self.y1):
            y = self.y(t)
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{self.width - RIGHT}" '
                         f'y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(f'<text class="tick" x="{LEFT - 4}" y="{y + 3:.1f}" '
                         f'text-anchor="end">{_fmt(t)}</text>')
        if x_ticks:
            for t in nice_ticks(self.x0, self.x1, 8):
                x = self.x(t)
                parts.append(f'<text class="tick" x="{x:.1f}" y="{self.height - BOTTOM + 12}" '
                             f'text-anchor="middle">{_fmt(t)}</text>')
        parts.append(
            f'<rect class="frame" x="{LEFT}" y="{self.top}" width="{self.width - LEFT - RIGHT}" '
            f'height="{self.height - self.top - BOTTOM}"/>'
        )
        parts.append(f'<text class="label" x="{(LEFT + self.width - RIGHT) / 2:.0f}" '
                     f'y="{self.height - 4}" text-anchor="middle">{_e(x_label)}</text>')
        middle = self.top + (self.height - self.top - BOTTOM) / 2
        parts.append(f'<text class="label" x="10" y="{middle:.0f}" '
                     f'transform="rotate(-90 10 {middle:.0f})" '
                     f'text-anchor="middle">{_e(y_label)}</text>')
        return parts

    def band(self, low: float | None, high: float | None, css: str, title: str) -> str:
        """A horizontal band (a window); an open end runs to the plot's edge."""
        top = self.clamp_y(high if high is not None else self.y1)
        bottom = self.clamp_y(low if low is not None else self.y0)
        return (f'<rect class="{css}" x="{LEFT}" y="{top:.1f}" '
                f'width="{self.width - LEFT - RIGHT}" height="{max(0.0, bottom - top):.1f}">'
                f"<title>{_e(title)}</title></rect>")

    def hline(self, value: float, css: str, label: str) -> str:
        y = self.y(value)
        return (f'<line class="{css}" x1="{LEFT}" x2="{self.width - RIGHT}" y1="{y:.1f}" '
                f'y2="{y:.1f}"/><text class="{css}-label" x="{self.width - RIGHT - 4}" '
                f'y="{y - 3:.1f}" text-anchor="end">{_e(label)}</text>')

    def polyline(self, xs: Sequence[float], ys: Sequence[float], css: str, title: str = "") -> str:
        points = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in zip(xs, ys, strict=True))
        tip = f"<title>{_e(title)}</title>" if title else ""
        return f'<polyline class="{css}" points="{points}">{tip}</polyline>'


def _svg(parts: list[str], title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
            + "".join(parts) + "</svg>")


@dataclass(frozen=True)
class ProfileLimits:
    """What a reflow step's plot is judged against."""

    peak_window: tuple[float | None, float | None] | None
    liquidus_c: float | None  # of what this reflow melts: TAL counts above it
    solidus_c: float | None = None  # of an earlier bump that must not melt again
    solidus_alloy: str = ""
    solidus_assumed: bool = False  # the alloy library's figure is an assumption

    @property
    def solidus_text(self) -> str:
        """'Pb95Sn5 solidus 308 °C (assumed)' ('' with no solidus)."""
        if self.solidus_c is None:
            return ""
        assumed = " (assumed)" if self.solidus_assumed else ""
        return f"{self.solidus_alloy} solidus {self.solidus_c:g} °C{assumed}".strip()


def _limits(axes: Axes, limits: ProfileLimits) -> list[str]:
    parts: list[str] = []
    if limits.peak_window is not None:
        low, high = limits.peak_window
        parts.append(axes.band(low, high, "window", "peak window"))
    if limits.liquidus_c is not None:
        liquidus = limits.liquidus_c
        parts.append(axes.hline(liquidus, "liquidus", f"liquidus {liquidus:g} °C"))
    if limits.solidus_c is not None:
        parts.append(axes.hline(
            limits.solidus_c, "solidus",
            f"{limits.solidus_text}: stay below",
        ))
    return parts


def _y_range(samples: Sequence[float], limits: ProfileLimits) -> list[float]:
    ys = [*samples, 20.0]
    if limits.peak_window is not None:
        ys += [v for v in limits.peak_window if v is not None]
    if limits.solidus_c is not None:
        ys.append(limits.solidus_c + 5)
    if limits.liquidus_c is not None:
        ys.append(limits.liquidus_c)
    return ys


def profile_svg(
    samples_c: Sequence[float],
    interval_s: float,
    limits: ProfileLimits,
    *,
    title: str,
    peak_c: float | None,
    notes: Sequence[str] = (),
) -> str:
    """One wafer's measured profile: peak window, liquidus with the time above it
    shaded, an earlier bump's solidus, the peak marked with the tool's reading, and
    ``notes`` (TAL, ramp and cool against their limits) in the top-left corner."""
    times = [i * interval_s for i in range(len(samples_c))]
    top = TOP + (18 if notes else 0)
    axes = Axes.around(times, _y_range(samples_c, limits), height=HEIGHT + top - TOP, top=top)
    parts = axes.frame("time from LOAD (s)", "°C")
    parts += _limits(axes, limits)
    if limits.liquidus_c is not None:
        parts += _above(axes, times, samples_c, limits.liquidus_c)
    parts.append(axes.polyline(times, samples_c, "curve"))
    if samples_c:
        i = max(range(len(samples_c)), key=samples_c.__getitem__)
        shown = peak_c if peak_c is not None else samples_c[i]
        x, y = axes.x(times[i]), axes.y(samples_c[i])
        parts.append(f'<circle class="peak" cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
                     f'<text class="note" x="{x + 6:.1f}" y="{max(axes.top + 10, y - 4):.1f}">'
                     f"peak {shown:.1f} °C</text>")
    if notes:  # one line above the plot, clear of the curve and the limits
        parts.append(f'<text class="note" x="{LEFT}" y="{TOP + 2}">{_e(" · ".join(notes))}</text>')
    return _svg(parts, title, height=axes.height)


def _above(axes: Axes, times: Sequence[float], temps: Sequence[float], line: float) -> list[str]:
    """Shaded areas where the curve is above ``line`` (the time above liquidus)."""
    parts = []
    run: list[tuple[float, float]] = []
    for i, (t, temp) in enumerate(zip(times, temps, strict=True)):
        if temp > line:
            if not run and i > 0:  # enter where the curve crosses the line
                t0, c0 = times[i - 1], temps[i - 1]
                run.append((t0 + (line - c0) / (temp - c0) * (t - t0), line))
            run.append((t, temp))
        elif run:
            t0, c0 = times[i - 1], temps[i - 1]
            run.append((t0 + (c0 - line) / (c0 - temp) * (t - t0), line))
            parts.append(_area(axes, run, line))
            run = []
    if run:
        parts.append(_area(axes, run, line))
    return parts


def _area(axes: Axes, run: list[tuple[float, float]], line: float) -> str:
    points = [(run[0][0], line), *run, (run[-1][0], line)]
    text = " ".join(f"{axes.x(t):.1f},{axes.y(c):.1f}" for t, c in points)
    return f'<polygon class="above" points="{text}"/>'


def overlay_svg(
    curves: Sequence[tuple[str, Sequence[float], float]],
    limits: ProfileLimits,
    *,
    title: str,
) -> str:
    """Every wafer's profile of one reflow step over the same window and limits."""
    times = [i * interval for _, samples, interval in curves for i in range(len(samples))]
    temps = [c for _, samples, _ in curves for c in samples]
    axes = Axes.around(times or [0.0, 1.0], _y_range(temps, limits))
    parts = axes.frame("time from LOAD (s)", "°C")
    parts += _limits(axes, limits)
    for wafer, samples, interval in curves:
        xs = [i * interval for i in range(len(samples))]
        parts.append(axes.polyline(xs, samples, "overlay", wafer))
    parts.append(f'<text class="note" x="{LEFT + 6}" y="{TOP + 13}">'
                 f"{len(curves)} wafer{'s' if len(curves) != 1 else ''}</text>")
    return _svg(parts, title)


def trend_svg(
    points: Sequence[tuple[str, float]],
    window: tuple[float | None, float | None] | None,
    *,
    title: str,
    y_label: str,
    out: Sequence[bool] = (),
) -> str:
    """A result across the lot's wafers (slot order), its window's limits as lines;
    ``out[i]`` marks a point outside the window."""
    height = 190
    values = [v for _, v in points]
    limits = [v for v in (window or ()) if v is not None]
    # Half a slot of room each side, so the first and last wafers are off the frame.
    axes = Axes.around([-0.5, len(points) - 0.5], values + limits, pad=0.12, height=height)
    parts = axes.frame("wafer (slot order)", y_label, x_ticks=False)
    for i, (wafer, _) in enumerate(points):
        if len(points) <= 25 or i % 2 == 0:
            parts.append(f'<text class="tick" x="{axes.x(i):.1f}" y="{height - BOTTOM + 12}" '
                         f'text-anchor="middle">{_e(wafer.rsplit("-", 1)[-1])}</text>')
    if window is not None:
        low, high = window
        for value, name in ((low, "LSL"), (high, "USL")):
            if value is not None:
                parts.append(axes.hline(value, "limit", f"{name} {value:g}"))
    xs = list(range(len(points)))
    if len(points) > 1:
        parts.append(axes.polyline(xs, values, "trend"))
    for i, (wafer, value) in enumerate(points):
        css = "point out" if i < len(out) and out[i] else "point"
        parts.append(f'<circle class="{css}" cx="{axes.x(i):.1f}" cy="{axes.y(value):.1f}" '
                     f'r="3"><title>{_e(wafer)}: {value:g}</title></circle>')
    return _svg(parts, title, height=height)

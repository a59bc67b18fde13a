"""The HTML lot report: per wafer every step's results against their windows, per lot
yield, cycle time, tool utilisation and alarms, and a temperature plot per reflow.

``write_lot_report(store, lot_id, out_dir)`` writes ``out_dir/<lot>/report.html``
and one PNG per reflow step that has a measured curve. The figures are pure
functions of what the store returns (``lot_figures``), so they are tested
without HTML. Plots use matplotlib's Agg canvas directly: no pyplot, no GUI, no
global figure state.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sqlalchemy import make_url

from controller.e10 import E10State
from controller.store import (
    AlarmInfo,
    LotInfo,
    StepInfo,
    Store,
    StoreError,
    ToolStateInfo,
    WaferHistory,
)

REPORT_NAME = "report.html"


# --- figures (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LotFigures:
    wafers: int
    good: int
    scrapped: int
    aborted: int
    unfinished: int
    start: datetime | None
    end: datetime | None
    mean_wafer_cycle_s: float | None

    @property
    def yield_pct(self) -> float | None:
        """Good wafers as a share of the wafers that finished (None before any finished)."""
        finished = self.good + self.scrapped + self.aborted
        return None if finished == 0 else 100.0 * self.good / finished

    @property
    def cycle_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


def in_window(value: Any, window: Sequence[float | None] | None) -> bool | None:
    """True/False for a number against ``[low, high]`` (None = open end); None if not judged."""
    if window is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = window
    return (low is None or value >= low) and (high is None or value <= high)


def wafer_cycle_s(steps: Iterable[StepInfo]) -> float | None:
    """First step start to last step end."""
    steps = list(steps)
    ends = [s.ended_at for s in steps if s.ended_at is not None]
    if not steps or not ends:
        return None
    return (max(ends) - min(s.started_at for s in steps)).total_seconds()


def lot_figures(lot: LotInfo, histories: Sequence[WaferHistory]) -> LotFigures:
    outcomes = [h.wafer.outcome for h in histories]
    steps = [s for h in histories for s in h.steps]
    start = lot.started_at or min((s.started_at for s in steps), default=None)
    end = lot.ended_at
    if end is None:  # still running: up to the latest thing recorded
        times = [s.ended_at or s.started_at for s in steps] + [
            e.at for h in histories for e in h.events
        ]
        end = max(times, default=None)
    cycles = [c for c in (wafer_cycle_s(h.steps) for h in histories) if c is not None]
    return LotFigures(
        wafers=len(histories),
        good=outcomes.count("good"),
        scrapped=outcomes.count("scrapped"),
        aborted=outcomes.count("aborted"),
        unfinished=outcomes.count(None),
        start=start,
        end=end,
        mean_wafer_cycle_s=sum(cycles) / len(cycles) if cycles else None,
    )


def busy_seconds(steps: Iterable[StepInfo]) -> dict[str, float]:
    """Seconds each tool spent on this lot's steps."""
    busy: dict[str, float] = {}
    for step in steps:
        if step.ended_at is not None:
            busy[step.tool] = (
                busy.get(step.tool, 0.0) + (step.ended_at - step.started_at).total_seconds()
            )
    return busy


def e10_seconds(
    history: Sequence[ToolStateInfo], start: datetime, end: datetime
) -> dict[str, float]:
    """Seconds in each E10 state between ``start`` and ``end`` from a tool's state changes.

    Time before the first recorded change is not counted (the state is unknown).
    """
    totals: dict[str, float] = {}
    changes = sorted(history, key=lambda h: h.at)
    for i, change in enumerate(changes):
        seg_start = max(change.at, start)
        seg_end = min(changes[i + 1].at if i + 1 < len(changes) else end, end)
        if seg_end > seg_start:
            totals[change.e10_state] = (
                totals.get(change.e10_state, 0.0) + (seg_end - seg_start).total_seconds()
            )
    return totals


# --- plots --------------------------------------------------------------------------------------


def plot_reflow_curve(step: StepInfo, path: Path, title: str) -> Path:
    """PNG of the wafer's measured temperature with the peak window and the liquidus."""
    reflow_figure(step, title).savefig(path, format="png")
    return path


def reflow_figure(step: StepInfo, title: str) -> Figure:
    """The wafer's measured curve, the recipe's peak window (band) and the liquidus (line)."""
    if step.curve is None or not step.curve.samples_c:
        raise StoreError(f"step {step.id} has no temperature curve to plot")
    curve = step.curve
    times = [i * curve.interval_s for i in range(len(curve.samples_c))]
    temps = list(curve.samples_c)
    liquidus = _liquidus(step)
    fig = Figure(figsize=(7.5, 3.6), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    peak_window = step.windows.get("peak_c")
    if peak_window is not None:
        low, high = peak_window
        ax.axhspan(
            low if low is not None else min(temps),
            high if high is not None else max(temps),
            color="tab:green",
            alpha=0.15,
            label="peak window",
        )
    if liquidus is not None:
        ax.axhline(
            liquidus,
            color="tab:red",
            linestyle="--",
            linewidth=1.2,
            label=f"liquidus {liquidus:g} °C",
        )
        ax.fill_between(
            times,
            temps,
            liquidus,
            where=[t > liquidus for t in temps],
            color="tab:orange",
            alpha=0.3,
            interpolate=True,
            label="above liquidus",
        )
    ax.plot(times, temps, color="tab:blue", linewidth=1.6, label="wafer temperature")
    peak_at = max(range(len(temps)), key=temps.__getitem__)
    ax.plot([times[peak_at]], [temps[peak_at]], "o", color="tab:blue")
    ax.annotate(
        f"peak {temps[peak_at]:.1f} °C",
        (times[peak_at], temps[peak_at]),
        textcoords="offset points",
        xytext=(6, 6),
        fontsize=8,
    )
    ax.set_xlabel("time from LOAD (s)")
    ax.set_ylabel("°C")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def _liquidus(step: StepInfo) -> float | None:
    if step.curve is not None and step.curve.liquidus_c is not None:
        return step.curve.liquidus_c
    value = step.parameters.get("tal_threshold_c")
    return float(value) if isinstance(value, int | float) else None


# --- HTML ---------------------------------------------------------------------------------------


def write_lot_report(store: Store, lot_id: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/<lot>/report.html`` (and its PNGs); returns the HTML's path."""
    lot = store.get_lot(lot_id)
    histories = [store.wafer_history(w.id) for w in store.wafers(lot_id)]
    alarms = store.alarms(lot_id=lot_id)
    figures = lot_figures(lot, histories)
    folder = Path(out_dir) / lot.id
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write the report to {folder}: {exc.strerror}") from None
    steps = [s for h in histories for s in h.steps]
    tools = sorted({s.tool for s in steps})
    tool_history = {t: store.tool_state_history(t) for t in tools}
    wafers_html = "\n".join(_wafer_section(h, folder) for h in histories)
    page = Template(_template()).substitute(
        lot_id=_e(lot.id),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        db_url=_e(_safe_url(store.url)),
        summary=_summary(lot, figures),
        utilisation=_utilisation(steps, tool_history, figures),
        alarms=_alarms(alarms),
        wafers=wafers_html or "<p>No wafers.</p>",
    )
    path = folder / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path


def _template() -> str:
    return (resources.files("controller") / "templates" / "lot_report.html").read_text("utf-8")


def _summary(lot: LotInfo, f: LotFigures) -> str:
    yield_text = (
        "—"
        if f.yield_pct is None
        else f"{f.yield_pct:.1f} % ({f.good} good of {f.good + f.scrapped + f.aborted} finished)"
    )
    rows = [
        ("Recipe", _e(f"{lot.recipe_name} v{lot.recipe_version}")),
        ("Recipe hash", f"<code>{_e(lot.recipe_hash)}</code>"),
        ("State", _e(lot.state)),
        ("Priority", str(lot.priority)),
        ("Started by", f"{_e(lot.created_by)}, queued {_t(lot.created_at)}"),
        ("Started / ended", f"{_t(lot.started_at)} / {_t(lot.ended_at)}"),
        ("Wafers", str(f.wafers)),
        (
            "Good / scrapped / aborted / unfinished",
            f"{f.good} / {f.scrapped} / {f.aborted} / {f.unfinished}",
        ),
        ("Yield", yield_text),
        ("Lot cycle time", _duration(f.cycle_s)),
        ("Mean wafer cycle time", _duration(f.mean_wafer_cycle_s)),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _utilisation(
    steps: Sequence[StepInfo], history: Mapping[str, Sequence[ToolStateInfo]], f: LotFigures
) -> str:
    if not steps:
        return "<p>No steps recorded.</p>"
    busy = busy_seconds(steps)
    states = [s.value for s in E10State]
    span = f.cycle_s or 0.0
    rows = []
    for tool in sorted({s.tool for s in steps}):
        used = busy.get(tool, 0.0)
        e10 = e10_seconds(history.get(tool, ()), f.start, f.end) if f.start and f.end else {}
        rows.append(
            [
                _e(tool),
                _num(sum(1 for s in steps if s.tool == tool)),
                _duration(used),
                _pct(100.0 * used / span if span else None),
            ]
            + [_pct(100.0 * e10[s] / span) if span and s in e10 else "—" for s in states]
        )
    note = (
        '<p class="muted">Utilisation: time the tool spent on this lot\'s steps over the lot '
        "cycle time. E10 columns: share of the lot's time in each SEMI E10 state, from the "
        "tool's recorded state changes (— where none were recorded).</p>"
    )
    return _table(["tool", "steps", "busy on this lot", "utilisation", *states], rows) + note


def _alarms(alarms: Sequence[AlarmInfo]) -> str:
    if not alarms:
        return "<p>No alarms during this lot.</p>"
    rows = []
    for a in sorted(alarms, key=lambda a: a.id):
        cleared = _t(a.cleared_at) if a.cleared_at else '<span class="out">active</span>'
        acked = f"{_t(a.acknowledged_at)} by {_e(a.acknowledged_by)}" if a.acknowledged_at else "—"
        rows.append(
            [
                _num(a.id),
                _e(a.tool),
                _num(a.code),
                _e(a.text),
                _e(a.wafer_id or "—"),
                _t(a.set_at),
                cleared,
                acked,
            ]
        )
    headers = ["#", "tool", "code", "text", "wafer", "set", "cleared", "acknowledged"]
    return _table(headers, rows)


def _wafer_section(history: WaferHistory, folder: Path) -> str:
    w = history.wafer
    parts = [
        f'<div class="wafer" id="{_e(w.id)}"><h3>{_e(w.id)} — slot {w.slot}</h3>',
        f"<p>state <b>{_e(w.state)}</b>, outcome <b>{_e(w.outcome or 'unfinished')}</b>, "
        f"at {_e(w.location)}; cycle time {_duration(wafer_cycle_s(history.steps))}</p>",
    ]
    if not history.steps:
        parts.append('<p class="muted">No steps recorded.</p>')
    for step in history.steps:
        parts.append(_step_block(w.id, step, folder))
    if history.requests:
        rows = [
            [
                _t(r.requested_at),
                _e(r.action),
                _e(r.requested_by),
                _e(r.reason),
                _e(r.handled_note or "done") if r.handled_at else "pending",
            ]
            for r in history.requests
        ]
        parts.append("<p><b>Holds and dispositions</b></p>")
        parts.append(_table(["when", "request", "by", "reason", "handled"], rows))
    parts.append("</div>")
    return "\n".join(parts)


def _step_block(wafer: str, step: StepInfo, folder: Path) -> str:
    title = f"Step {step.step_index} {step.kind} on {step.tool}" + (
        f" (attempt {step.attempt})" if step.attempt > 1 else ""
    )
    head = (
        f"<p><b>{_e(title)}</b> — {_e(step.status)}"
        f"{', disposition <b>' + _e(step.disposition) + '</b>' if step.disposition else ''}; "
        f"{_t(step.started_at)} to {_t(step.ended_at)} ({_duration(_step_seconds(step))})</p>"
    )
    params = ", ".join(f"{_e(k)}={_e(_value(v))}" for k, v in step.parameters.items())
    results = step.results or {}
    rows = []
    for name in [*results, *(n for n in step.windows if n not in results)]:
        value, window = results.get(name), step.windows.get(name)
        mark = {
            True: '<span class="in">in window</span>',
            False: '<span class="out">OUT</span>',
            None: "",
        }[in_window(value, window)]
        rows.append([_e(name), _num(_value(value)), _num(_window(window)), mark])
    table = (
        _table(["result", "measured", "window", ""], rows)
        if rows
        else '<p class="muted">No results.</p>'
    )
    image = ""
    if step.kind == "reflow" and step.curve is not None and step.curve.samples_c:
        name = f"{wafer}-step{step.step_index}-a{step.attempt}-reflow.png"
        plot_reflow_curve(step, folder / name, f"{wafer} step {step.step_index} reflow")
        image = f'<img class="curve" src="{_e(name)}" alt="{_e(wafer)} reflow curve">'
    return f'{head}<p class="params">sent: {params or "—"}</p>{table}{image}'


def _step_seconds(step: StepInfo) -> float | None:
    return None if step.ended_at is None else (step.ended_at - step.started_at).total_seconds()


# --- formatting ---------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table from header texts and rows of cells that are already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value: object) -> str:
    """A number cell's content, right-aligned."""
    return f'<span class="num">{_e(value)}</span>'


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _t(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "—" if value is None else str(value)


def _window(window: Sequence[float | None] | None) -> str:
    if window is None:
        return "—"
    low, high = window
    if low is None:
        return f"≤ {high:g}"
    if high is None:
        return f"≥ {low:g}"
    return f"{low:g} – {high:g}"


def _safe_url(url: str) -> str:
    """The database URL without its password (the store already checked it parses)."""
    return make_url(url).render_as_string(hide_password=True)

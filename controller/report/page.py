"""The lot report's HTML: one self-contained page (inline SVG, inline CSS).

Sections in the order a process engineer reads them: the lot's figures, one row
per wafer with links to its details, every reflow step's profiles overlaid,
the trends with their limits, tool utilisation, alarms, then each wafer's steps.
Wafers that need a look (not good, or reworked) open expanded.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from string import Template
from typing import Any

from controller.line.batch_records import BatchInfo
from controller.line.e10 import E10State
from controller.report.figures import (
    LotFigures,
    ToolFigures,
    Trend,
    first_pass,
    in_window,
    step_seconds,
    wafer_cycle_s,
)
from controller.report.kinds import (
    deposit_alloy,
    has_profile,
    result_label,
    solidus_assumed,
    solidus_c,
    trend_results,
)
from controller.report.svg import ProfileLimits, overlay_svg, profile_svg, trend_svg
from controller.report.timeline import Timeline
from controller.store import AlarmInfo, LotInfo, StepInfo, WaferHistory

TIME_NOTE = (
    "Durations are tool time (the clock the tools run on; under simulation it runs "
    "faster than the wall clock). Time with no controller running is not counted."
)


def render_page(
    *,
    lot: LotInfo,
    db_url: str,
    histories: Sequence[WaferHistory],
    alarms: Sequence[AlarmInfo],
    figures: LotFigures,
    tools: Sequence[ToolFigures],
    trends: Sequence[Trend],
    timeline: Timeline,
    batches: Sequence[BatchInfo] = (),
) -> str:
    return Template(_template()).substitute(
        lot_id=_e(lot.id),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        db_url=_e(db_url),
        summary=_summary(lot, figures),
        wafer_table=_wafer_table(histories, timeline),
        overlays=_overlays(histories) or "<p>No reflow profiles recorded.</p>",
        trends=_trends(trends) or "<p>No results to trend yet.</p>",
        utilisation=_utilisation(tools),
        alarms=_alarms(alarms),
        batches=_batches(batches),
        wafers="\n".join(_wafer_section(h, timeline) for h in histories) or "<p>No wafers.</p>",
    )


def _template() -> str:
    return (resources.files("controller") / "templates" / "lot_report.html").read_text("utf-8")


# --- summary ------------------------------------------------------------------------------------


def _summary(lot: LotInfo, f: LotFigures) -> str:
    of = f"of {f.finished} finished" + (f"; {f.unfinished} unfinished not counted"
                                        if f.unfinished else "")
    yield_text = "—" if f.yield_pct is None else f"{f.yield_pct:.1f} % ({f.good} good {of})"
    fpy = (
        "—"
        if f.first_pass_yield_pct is None
        else f"{f.first_pass_yield_pct:.1f} % ({f.first_pass} good at the first attempt of "
        f"every step {of})"
    )
    rows = [
        ("Recipe", _e(f"{lot.recipe_name} v{lot.recipe_version}")),
        ("Recipe hash", f"<code>{_e(lot.recipe_hash)}</code>"),
        ("State", _e(lot.state)),
        ("Priority", str(lot.priority)),
        ("Queued", f"{_t(lot.created_at)} by {_e(lot.created_by)}"),
        ("Started / ended (wall clock, UTC)", f"{_t(f.start)} / {_t(lot.ended_at)}"),
        ("Wafers", str(f.wafers)),
        (
            "Good / scrapped / aborted / unfinished",
            f"{f.good} / {f.scrapped} / {f.aborted} / {f.unfinished}",
        ),
        ("Yield", yield_text),
        ("First-pass yield", fpy),
        ("Reworked steps", f"{f.reworked_steps} (attempts after a step's first: reprints)"),
        ("Lot cycle time", f"{duration(f.cycle_s)} tool time"),
        ("Mean wafer cycle time", f"{duration(f.mean_wafer_cycle_s)} tool time"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table><p class="muted">{_e(TIME_NOTE)}</p>'


# --- per-wafer table ----------------------------------------------------------------------------


def _wafer_table(histories: Sequence[WaferHistory], timeline: Timeline) -> str:
    if not histories:
        return "<p>No wafers.</p>"
    columns: dict[int, str] = {}
    for h in histories:
        for s in h.steps:
            columns.setdefault(s.step_index, s.kind)
    order = sorted(columns)
    headers = ["slot", "wafer", "outcome", "first pass", "cycle time"] + [
        f"{i} {columns[i]}" for i in order
    ]
    rows = []
    for h in histories:
        w = h.wafer
        last = _last_attempts(h.steps)
        attempts = {s.step_index: s.attempt for s in h.steps}
        cells = [
            _num(w.slot),
            f'<a href="#{_e(w.id)}">{_e(w.id)}</a>',
            _outcome(w.outcome, w.state),
            "yes" if first_pass(h) else ("—" if w.outcome is None else "no"),
            _num(duration(wafer_cycle_s(h.steps, timeline))),
        ]
        for i in order:
            step = last.get(i)
            cells.append(_step_cell(step, attempts.get(i, 1)) if step else "")
        rows.append(cells)
    return _table(headers, rows, css="wafers")


def _last_attempts(steps: Iterable[StepInfo]) -> dict[int, StepInfo]:
    last: dict[int, StepInfo] = {}
    for s in steps:
        last[s.step_index] = s  # the store returns attempts in order
    return last


def _step_cell(step: StepInfo, attempts: int) -> str:
    results = step.results or {}
    names = trend_results(step.kind)
    value = results.get(names[0]) if names else None
    bad = [n for n, w in step.windows.items() if in_window(results.get(n), w) is False]
    text = _value(value) if value is not None else step.status
    why = results.get("why")
    if bad or step.status in ("failed", "aborted"):
        tip = f"out of window: {', '.join(bad)}" if bad else f"{step.status}: {why or ''}"
        text = f'<span class="out" title="{_e(tip)}">{_e(text)}</span>'
    else:
        text = _e(text)
    if attempts > 1:
        text += f' <span class="rework" title="{attempts} attempts">×{attempts}</span>'
    return f'<span class="num">{text}</span>'


def _outcome(outcome: str | None, state: str) -> str:
    if outcome == "good":
        return '<span class="in">good</span>'
    if outcome is not None:
        return f'<span class="out">{_e(outcome)}</span>'
    return f'<span class="pending">{_e(state.replace("_", " "))}</span>'


# --- reflow profiles ----------------------------------------------------------------------------


def profile_limits(step: StepInfo, steps: Sequence[StepInfo]) -> ProfileLimits:
    """The limits a reflow is judged against, with the solidus of any bump an earlier
    reflow of the same wafer made (rebumping must stay below it)."""
    window = step.windows.get("peak_c")
    liquidus = step.curve.liquidus_c if step.curve is not None else None
    if liquidus is None:
        value = step.parameters.get("tal_threshold_c")
        liquidus = float(value) if isinstance(value, int | float) else None
    earlier = [s for s in steps if s.step_index < step.step_index]
    reflows = [s.step_index for s in earlier if has_profile(s.kind)]
    best: tuple[float, str] | None = None
    if reflows:
        for s in earlier:
            alloy = deposit_alloy(s.kind, s.parameters) if s.step_index < max(reflows) else None
            solidus = solidus_c(alloy) if alloy else None
            if solidus is not None and (best is None or solidus < best[0]):
                best = (solidus, alloy or "")
    return ProfileLimits(
        peak_window=tuple(window) if window is not None else None,
        liquidus_c=liquidus,
        solidus_c=best[0] if best else None,
        solidus_alloy=best[1] if best else "",
        solidus_assumed=solidus_assumed(best[1]) if best else False,
    )


def _overlays(histories: Sequence[WaferHistory]) -> str:
    by_step: dict[int, list[tuple[str, StepInfo, Sequence[StepInfo]]]] = {}
    for h in histories:
        for s in _last_attempts(h.steps).values():
            if has_profile(s.kind) and s.curve is not None and s.curve.samples_c:
                by_step.setdefault(s.step_index, []).append((h.wafer.id, s, h.steps))
    parts = []
    for index, entries in sorted(by_step.items()):
        _, first, steps = entries[0]
        limits = profile_limits(first, steps)
        curves = [(w, s.curve.samples_c, s.curve.interval_s) for w, s, _ in entries if s.curve]
        title = f"Step {index} reflow: {len(curves)} profiles"
        parts.append(f"<h3>{_e(title)}</h3>")
        parts.append(_limit_line(first, limits))
        parts.append(f'<div class="plot">{overlay_svg(curves, limits, title=title)}</div>')
    return "\n".join(parts)


def _limit_line(step: StepInfo, limits: ProfileLimits) -> str:
    w = step.windows
    items = [f"peak {_window(w.get('peak_c'))} °C", f"TAL {_window(w.get('tal_s'))} s"]
    if "ramp_max_c_s" in w:
        items.append(f"ramp {_window(w['ramp_max_c_s'])} °C/s")
    if "cool_max_c_s" in w:
        items.append(f"cool {_window(w['cool_max_c_s'])} °C/s")
    if limits.liquidus_c is not None:
        items.append(f"liquidus {limits.liquidus_c:g} °C")
    if limits.solidus_c is not None:
        items.append(f"{limits.solidus_text}: stay below")
    return f'<p class="params">{_e("; ".join(items))}</p>'


def _profile_notes(step: StepInfo) -> list[str]:
    results, windows = step.results or {}, step.windows
    notes = []
    for name, text, unit in (
        ("tal_s", "TAL", "s"),
        ("ramp_max_c_s", "max ramp", "°C/s"),
        ("cool_max_c_s", "max cool", "°C/s"),
    ):
        value = results.get(name)
        if not isinstance(value, int | float):
            continue
        verdict = in_window(value, windows.get(name))
        flag = " OUT" if verdict is False else ""
        notes.append(f"{text} {value:g} {unit} (window {_window(windows.get(name))}){flag}")
    return notes


# --- trends -------------------------------------------------------------------------------------


def _trends(trends: Sequence[Trend]) -> str:
    parts = []
    for t in trends:
        title = f"Step {t.step_index} {t.kind}: {result_label(t.result)}"
        cpk = t.cpk
        stats = f"{len(t.points)} wafers, window {_window(t.window)}"
        if t.values:
            stats += f", mean {sum(t.values) / len(t.values):.3g}"
        stats += f", Cpk {cpk:.2f}" if cpk is not None else ", Cpk — (needs 10 wafers and spread)"
        out = [in_window(v, t.window) is False for v in t.values]
        svg = trend_svg(t.points, t.window, title=title, y_label=result_label(t.result), out=out)
        parts.append(f'<div class="trend"><h3>{_e(title)}</h3><p class="params">{_e(stats)}</p>'
                     f'<div class="plot">{svg}</div></div>')
    return "\n".join(parts)


# --- tools and alarms ---------------------------------------------------------------------------


def _utilisation(tools: Sequence[ToolFigures]) -> str:
    if not tools:
        return "<p>No steps recorded.</p>"
    states = list(E10State)
    rows = [
        [
            _e(t.tool),
            _num(t.steps),
            _num(duration(t.seconds[E10State.PRODUCTIVE])),
            _num(_pct(t.utilisation_pct)),
            *(_num(_pct(t.share_pct(s))) for s in states),
        ]
        for t in tools
    ]
    note = (
        '<p class="muted">Utilisation: the share of the lot\'s tool time with one of its wafers '
        "on the tool (the oven's belt counts once, however many wafers ride it); it equals the "
        "productive share. E10 shares add up to 100 %: alarms first, then productive, then the "
        "setup and modes the controller recorded; the rest is standby.</p>"
    )
    headers = ["tool", "steps", "productive time", "utilisation", *(s.value for s in states)]
    return _table(headers, rows) + note


def _alarms(alarms: Sequence[AlarmInfo]) -> str:
    if not alarms:
        return "<p>No alarms during this lot.</p>"
    rows = []
    for a in sorted(alarms, key=lambda a: a.id):
        cleared = _t(a.cleared_at) if a.cleared_at else '<span class="out">active</span>'
        acked = f"{_t(a.acknowledged_at)} by {_e(a.acknowledged_by)}" if a.acknowledged_at else "—"
        wafer = f'<a href="#{_e(a.wafer_id)}">{_e(a.wafer_id)}</a>' if a.wafer_id else "—"
        rows.append(
            [_num(a.id), _e(a.tool), _num(a.code), _e(a.text), wafer, _t(a.set_at), cleared, acked]
        )
    headers = ["#", "tool", "code", "text", "wafer", "set", "cleared", "acknowledged"]
    return _table(headers, rows)


def _batches(batches: Sequence[BatchInfo]) -> str:
    """A batch tool's cycles: the wafers that rode together, the verdict, the baths."""
    if not batches:
        return "<p>No batch tool ran for this lot.</p>"
    rows = []
    for b in batches:
        wafers = ", ".join(f'<a href="#{_e(w)}">{_e(w)}</a>' for w in b.wafers)
        alarm = f"{b.alarm_code} {_e(b.alarm_text or '')}" if b.alarm_code else "—"
        ends = (b.tool_time_end - b.tool_time_start
                if b.tool_time_end is not None and b.tool_time_start is not None else None)
        rows.append([_e(b.id), _e(b.tool), _e(b.step_kind), _num(len(b.wafers)), wafers,
                     _e(b.status or b.state), _num(_value(b.ni_bath_c)),
                     _num(_value(b.au_bath_c)), alarm, duration(ends)])
    headers = ["batch", "tool", "step", "wafers", "which", "status", "Ni bath °C",
               "Au bath °C", "alarm", "tool time"]
    return _table(headers, rows)


# --- each wafer ---------------------------------------------------------------------------------


def _wafer_section(history: WaferHistory, timeline: Timeline) -> str:
    w = history.wafer
    needs_look = w.outcome != "good" or not first_pass(history)
    parts = [
        f'<details class="wafer" id="{_e(w.id)}"{" open" if needs_look else ""}>'
        f"<summary>{_e(w.id)} — slot {w.slot}: {_outcome(w.outcome, w.state)}</summary>",
        f"<p>state <b>{_e(w.state)}</b> at {_e(w.location)}; cycle time "
        f"{duration(wafer_cycle_s(history.steps, timeline))} tool time</p>",
    ]
    if not history.steps:
        parts.append('<p class="muted">No steps recorded.</p>')
    for step in history.steps:
        parts.append(_step_block(w.id, step, history.steps, timeline))
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
    parts.append('<p><a href="#wafers">back to the wafer table</a></p></details>')
    return "\n".join(parts)


def _step_block(
    wafer: str, step: StepInfo, steps: Sequence[StepInfo], timeline: Timeline
) -> str:
    title = f"Step {step.step_index} {step.kind} on {step.tool}" + (
        f" (attempt {step.attempt})" if step.attempt > 1 else ""
    )
    head = (
        f"<p><b>{_e(title)}</b> — {_e(step.status)}"
        f"{', disposition <b>' + _e(step.disposition) + '</b>' if step.disposition else ''}; "
        f"{_t(step.started_at)}, {duration(step_seconds(step, timeline))} tool time</p>"
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
    plot = ""
    if has_profile(step.kind) and step.curve is not None and step.curve.samples_c:
        peak = results.get("peak_c")
        svg = profile_svg(
            step.curve.samples_c,
            step.curve.interval_s,
            profile_limits(step, steps),
            title=f"{wafer} step {step.step_index} reflow",
            peak_c=peak if isinstance(peak, int | float) else None,
            notes=_profile_notes(step),
        )
        plot = f'<div class="plot">{svg}</div>'
    return f'{head}<p class="params">sent: {params or "—"}</p>{table}{plot}'


# --- formatting ---------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """Tool seconds with units, e.g. ``38 s``, ``4 min 12 s``, ``3 h 41 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes + (1 if secs >= 30 else 0), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """A table from header texts and rows of cells that are already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def _num(value: object) -> str:
    """A number cell's content, right-aligned."""
    return f'<span class="num">{_e(value)}</span>'


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _t(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return "—" if value is None else str(value)


def _window(window: Sequence[float | None] | None) -> str:
    if window is None:
        return "—"
    low, high = window
    if low is None and high is None:
        return "—"
    if low is None:
        return f"≤ {high:g}"
    if high is None:
        return f"≥ {low:g}"
    return f"{low:g} – {high:g}"

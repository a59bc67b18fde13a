"""The HTML lot report: per wafer every step's results against their windows, per lot
yield, first-pass yield, cycle time in tool time, tool utilisation and alarms,
reflow profiles (per wafer and overlaid per step) and trends with their limits.

``write_lot_report(store, lot_id, out_dir)`` writes ``out_dir/<lot>/report.html``,
one self-contained file: plots are inline SVG (``svg``), so the page sent alone
keeps them. The numbers are pure functions of what the store returns
(``figures``, ``timeline``), the page is ``page``; what differs per step kind is
in ``kinds``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url

from controller.line.batch_records import BatchRecords
from controller.report.figures import (
    MIN_CPK_WAFERS,
    LotFigures,
    ToolFigures,
    Trend,
    in_window,
    lot_figures,
    lot_timeline,
    lot_trends,
    tool_figures,
)
from controller.report.page import duration, render_page
from controller.report.timeline import Timeline
from controller.store import Store, StoreError

__all__ = [
    "MIN_CPK_WAFERS",
    "REPORT_NAME",
    "LotFigures",
    "Timeline",
    "ToolFigures",
    "Trend",
    "duration",
    "in_window",
    "lot_figures",
    "lot_timeline",
    "lot_trends",
    "render_lot_report",
    "tool_figures",
    "write_lot_report",
]

REPORT_NAME = "report.html"


def render_lot_report(store: Store, lot_id: str) -> str:
    """The report's HTML for a lot, from the store."""
    lot = store.get_lot(lot_id)
    histories = [store.wafer_history(w.id) for w in store.wafers(lot_id)]
    alarms = store.alarms(lot_id=lot_id)
    timeline = lot_timeline(histories)
    steps = [s for h in histories for s in h.steps]
    riders = {h.wafer.id for h in histories}
    tools = [
        tool_figures(tool, steps, store.tool_state_history(tool, line_id=lot.line_id), alarms,
                     timeline)
        for tool in sorted({s.tool for s in steps})
    ]
    return render_page(
        lot=lot,
        db_url=_safe_url(store.url),
        histories=histories,
        alarms=alarms,
        figures=lot_figures(lot, histories, timeline),
        tools=tools,
        trends=lot_trends(histories),
        timeline=timeline,
        batches=[b for b in BatchRecords(store).batches() if set(b.wafers) & riders],
    )


def write_lot_report(store: Store, lot_id: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/<lot>/report.html``; returns its path."""
    page = render_lot_report(store, lot_id)
    folder = Path(out_dir) / lot_id
    path = folder / REPORT_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write the report to {folder}: {exc.strerror}") from None
    return path


def _safe_url(url: str) -> str:
    """The database URL without its password (the store already checked it parses)."""
    return make_url(url).render_as_string(hide_password=True)

"""What ``bumpline run`` and ``bumpline serve`` print as a run of lots ends.

For each lot the run had: its summary (the wafers by state, the lot's tool time, this
run's wall and CPU time: ``LiveProgress.summary``), its report written and named, and,
for a lot that did not complete, what to do next, one command a line (``resume_hint``).
The exit status says how it ended: 130 left at once (a second Ctrl-C), 3 a lot not
complete, else 0.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.cli.progress import LiveProgress


def print_lot_summaries(args: argparse.Namespace, store: Any, lot_ids: list[str],
                        live: LiveProgress, *, started: float, cpu_started: float,
                        left_at_once: bool) -> tuple[int, list[Any]]:
    """Each lot's summary, report and next step once its run ended; (exit status, the lots'
    outcomes). ``started``, ``cpu_started``: the run's start, ``time.monotonic`` and
    ``time.process_time``."""
    outcomes = [_outcome(store, lot_id) for lot_id in lot_ids]
    wall_s = time.monotonic() - started
    cpu_s = time.process_time() - cpu_started
    status = 130 if left_at_once else 0
    for outcome in outcomes:
        path = _report(store, outcome.lot_id, args.report_dir)
        live.summary(outcome, tool_s=_lot_tool_seconds(store, outcome.lot_id), wall_s=wall_s,
                     cpu_s=cpu_s)
        if path is not None:
            print(f"report: {path}")
        if outcome.state != "complete":
            status = status or 3
            for line in resume_hint(store, outcome.lot_id, args):
                print(line)
    if left_at_once:
        print("bumpline: left at once; steps that were running are checked with the tools "
              "on --resume", file=sys.stderr)
    return status, outcomes


def _outcome(store: Any, lot_id: str) -> Any:
    from controller.line.controller import LotOutcome

    lot = store.get_lot(lot_id)
    return LotOutcome(lot_id, lot.state, {w.id: w.state for w in store.wafers(lot_id)})


def _report(store: Any, lot_id: str, out_dir: str) -> Any:
    from controller.report import write_lot_report
    from controller.store import StoreError

    try:
        return write_lot_report(store, lot_id, out_dir)
    except StoreError as exc:  # the lot ran and is recorded: say so, and go on
        print(f"bumpline: {exc}", file=sys.stderr)
        return None


def _lot_tool_seconds(store: Any, lot_id: str) -> float:
    """The lot's own tool time, over every controller run of it (the report's figure)."""
    from controller.report import lot_timeline

    return lot_timeline([store.wafer_history(w.id) for w in store.wafers(lot_id)]).span


def resume_hint(store: Any, lot_id: str, args: argparse.Namespace) -> list[str]:
    """What to do with a lot that did not complete, one command per line (no line wraps
    mid-command on an 80-column terminal), the dispositions only when a wafer waits."""
    from sequences.wafer.machine import AWAITING, HELD

    lot = store.get_lot(lot_id)
    if lot.state in ("complete", "aborted"):
        return []
    db = f" --db {shlex.quote(db_shown(args.db))}" if getattr(args, "db", None) else ""
    line = f" --line {shlex.quote(args.line)}" if getattr(args, "line", None) else ""
    waiting = [w for w in store.wafers(lot_id) if w.state in (HELD, AWAITING)]
    lines = [f"lot {lot_id} is {lot.state} and not finished."]
    if waiting:
        names = ", ".join(w.id for w in waiting[:5]) + (" ..." if len(waiting) > 5 else "")
        lines.append(f"{len(waiting)} wafer{'s wait' if len(waiting) != 1 else ' waits'} "
                     f"for an engineer ({names}); decide each with")
        held = [w.state == HELD for w in waiting]  # a held wafer resumes or is scrapped
        if all(held):
            lines.append("--continue (it resumes) or --scrap, e.g.")
        elif any(held):
            lines.append("--continue, --retry or --scrap (a held wafer: --continue or "
                         "--scrap), e.g.")
        else:
            lines.append("--continue, --retry or --scrap, e.g.")
        example = "--continue" if waiting[0].state == HELD else "--retry"
        lines.append(f"  bumpline wafer disposition {waiting[0].id} {example} --reason TEXT{db}")
        lines.append("then continue the lot with")
    else:
        lines.append("continue it with")
    lines.append(f"  bumpline run --resume {lot_id}{line}{db}")
    return lines


def db_shown(url: str) -> str:
    """``--db`` as a person would type it: a SQLite file's path, else the URL."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and "?" not in url and url != prefix + ":memory:":
        return url[len(prefix):]
    return url

"""Live progress for ``bumpline run``: a table per wafer and step (rich), or plain lines.

On a terminal the table redraws a few times a second; piped to a file or a CI log
each finished step, hold and tool note is one line instead.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from controller.lots import LotOutcome, Progress
from sequences.machine import WaferEvent, step_of

_STYLE = {
    "complete": "green",
    "held": "yellow",
    "awaiting_disposition": "bold yellow",
    "aborted": "red",
    "scrapped": "red",
}


def _describe(state: str, event: WaferEvent | None) -> str:
    number = step_of(state)
    if number is None:
        return state.replace("_", " ")
    if state.endswith("_running") and event is not None:
        return f"step {number} {event.step_kind}: running on {event.tool}"
    if state.endswith("_waiting"):
        return f"step {number} waiting for a tool"
    return f"step {number} " + state.rsplit("_", 1)[1]


class LiveProgress:
    def __init__(self, store: Any, lot_ids: list[str], *, plain: bool) -> None:
        self.store = store
        self.lot_ids = lot_ids
        self.plain = plain
        self.console = Console(highlight=False)
        self.wafers: dict[str, tuple[str, WaferEvent | None, str]] = {}
        for lot_id in lot_ids:
            for wafer in store.wafers(lot_id):
                self.wafers[wafer.id] = (wafer.state, None, "")
        self.notes: list[str] = []
        self._live: Live | None = None
        self.progress = Progress(
            on_event=self._event, on_tool_note=self._note, on_waiting_for_people=self._blocked
        )

    def __enter__(self) -> LiveProgress:
        if not self.plain:
            self._live = Live(
                self._table(), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    def _event(self, event: WaferEvent) -> None:
        state, _, last = self.wafers.get(event.wafer_id, ("", None, ""))
        result = last
        if event.trigger in ("judged_ok", "step_failed") and event.measurements:
            result = _short(event.step_kind, event.measurements)
        self.wafers[event.wafer_id] = (event.to_state, event, result)
        if self.plain and event.trigger in (
            "judged_ok",
            "step_failed",
            "hold",
            "abort",
            "scrap",
            "continue_as_is",
            "retry",
            "recover",
        ):
            print(
                f"{event.wafer_id:<16} step {event.step or '-'} {event.step_kind or '':<6} "
                f"{event.trigger:<14} -> {event.to_state:<22} {result or event.why}",
                flush=True,
            )
        elif self._live is not None:
            self._live.update(self._table())

    def _note(self, tool: str, text: str) -> None:
        line = f"{tool}: {text}"
        self.notes = (self.notes + [line])[-6:]
        if self.plain:
            print(f"  {line}", flush=True)
        elif self._live is not None:
            self._live.update(self._table())

    def _blocked(self, wafers: list[str]) -> None:
        text = (
            f"waiting for people: {', '.join(wafers)} held or awaiting disposition "
            "('bumpline wafer disposition ID --continue|--retry|--scrap --reason ...')"
        )
        self._note("controller", text)

    def _table(self) -> Table:
        table = Table(title=f"bumpline: {', '.join(self.lot_ids)}", expand=False)
        table.add_column("wafer")
        table.add_column("state")
        table.add_column("last result")
        for wafer_id, (state, event, result) in self.wafers.items():
            style = _STYLE.get(state, "")
            table.add_row(
                wafer_id,
                f"[{style}]{_describe(state, event)}[/]" if style else _describe(state, event),
                result,
            )
        done = sum(1 for s, _, _ in self.wafers.values() if s == "complete")
        table.caption = f"{done}/{len(self.wafers)} complete" + (
            "\n" + "\n".join(self.notes) if self.notes else ""
        )
        return table

    def summary(self, outcome: LotOutcome, *, tool_s: float, wall_s: float, cpu_s: float) -> None:
        counts: dict[str, int] = {}
        for state in outcome.wafers.values():
            counts[state] = counts.get(state, 0) + 1
        total = len(outcome.wafers)
        good = counts.get("complete", 0)
        print(
            f"\nlot {outcome.lot_id}: {outcome.state}; {good}/{total} wafers complete"
            f" (yield {100.0 * good / total:.0f} %)"
            if total
            else "",
            file=sys.stdout,
        )
        for state, n in sorted(counts.items()):
            if state != "complete":
                print(f"  {n} {state.replace('_', ' ')}")
        print(
            f"  tool time {tool_s / 3600:.2f} h in {wall_s:.1f} s wall "
            f"({tool_s / wall_s if wall_s else 0:.0f}x); controller CPU {cpu_s:.1f} s"
        )


def _short(kind: str | None, m: dict[str, Any]) -> str:
    if kind == "print" and "vol_mean_pct" in m:
        return f"SPI mean {m['vol_mean_pct']:.1f} %, bridges {m.get('bridges', 0)}"
    if kind == "place" and "missing" in m:
        return f"{m.get('missing', 0)} missing, {m.get('extra', 0)} extra balls"
    if kind == "reflow" and "peak_c" in m:
        return f"peak {m['peak_c']:.1f} °C, TAL {m.get('tal_s', 0):.0f} s"
    if kind == "clean" and "ionic_ug_cm2" in m:
        return f"residue {m['ionic_ug_cm2']:.2f} µg/cm²"
    return ""

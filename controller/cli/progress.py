"""Live progress for ``bumpline run``: one screen on a terminal, or plain lines.

On a terminal the screen is redrawn a few times a second and always fits it: on
80x24 what matters first — progress, the clocks and the ETA, the wafers that
need a person (with why, kept on screen until they are decided), each tool —
then the wafers in work and the latest events with what room is left; a larger
terminal shows every wafer. Piped to a file or a CI log, each finished step,
hold and tool note is one line instead.

Its input is the controller's ``Progress`` callbacks (controller/line/controller.py), fed
by the line event stream; each tool's line, with a setup's time left, is
controller/cli/toolpanel.py. The clock is the line's (tool time) when given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from controller.cli.toolpanel import SETUP, ToolView
from controller.line.controller import LotOutcome, Progress
from controller.report.kinds import short_result
from controller.report.page import duration
from sequences.kinds import ROLE_OF_KIND
from sequences.wafer.machine import AWAITING, FINAL_STATES, HELD, QUEUED, WaferEvent, step_of

RESULT_TRIGGERS = ("judged_ok", "step_failed", "step_done")
_STYLE = {
    "complete": "green",
    "held": "yellow",
    "awaiting_disposition": "bold yellow",
    "aborted": "red",
    "scrapped": "red",
}
NEEDS_A_PERSON = (HELD, AWAITING)
DISPOSITION_HINT = "bumpline wafer disposition ID --continue|--retry|--scrap --reason TEXT"
PLAIN_TRIGGERS = ("judged_ok", "step_failed", "hold", "abort", "scrap", "continue_as_is",
                  "retry", "recover")
MIN_EVENT_LINES = 2  # the latest events keep at least this many lines when there is room


def _describe(state: str, event: WaferEvent | None, waiting_for: str | None = None) -> str:
    number = step_of(state)
    if number is None:
        return state.replace("_", " ")
    if state.endswith("_running") and event is not None:
        return f"step {number} {event.step_kind}: running on {event.tool}"
    if state.endswith("_waiting"):
        return f"step {number} waiting for {waiting_for or 'a tool'}"
    return f"step {number} " + state.rsplit("_", 1)[1]


@dataclass
class WaferView:
    state: str
    event: WaferEvent | None = None
    result: str = ""
    reason: str = ""  # why it waits for a person (kept until it is decided)


class LiveProgress:
    def __init__(
        self, store: Any, lot_ids: list[str], *, plain: bool, clock: Any = None,
        line_tools: dict[str, str] | None = None,
    ) -> None:
        """``line_tools``: the line's tools and their roles (the panel lists those the
        lots' recipes need from the start)."""
        self.store = store
        self.lot_ids = lot_ids
        self.plain = plain
        self.clock = clock
        self.console = Console(highlight=False)
        self.wafers: dict[str, WaferView] = {}
        self.kinds: dict[str, list[str]] = {}  # wafer -> step kinds of its recipe
        for lot_id in lot_ids:
            kinds = _recipe_kinds(store, lot_id)
            for wafer in store.wafers(lot_id):
                self.wafers[wafer.id] = WaferView(wafer.state)
                self.kinds[wafer.id] = kinds
        # Every tool of the line the lots need, from the start (an idle one is news too).
        needed = {ROLE_OF_KIND.get(k) for kinds in self.kinds.values() for k in kinds}
        self.tools: dict[str, ToolView] = {
            name: ToolView(name, role) for name, role in (line_tools or {}).items()
            if role in needed}
        self.notes: list[str] = []
        self._live: Live | None = None
        self._wall0 = time.monotonic()
        self._tool0 = clock.now() if clock is not None else None
        self._last_tool_time = 0.0
        self._steps_done: dict[str, int] = {}
        self.progress = Progress(
            on_event=self._event, on_tool_note=self._note, on_waiting_for_people=self._blocked,
            on_tool_state=self._tool_state, on_alarm_cleared=self._alarm_cleared,
        )

    def __enter__(self) -> LiveProgress:
        if not self.plain:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self._screen, vertical_overflow="crop")
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)
            self._live = None

    # --- what the controller tells ---------------------------------------------------------

    def _event(self, event: WaferEvent) -> None:
        view = self.wafers.setdefault(event.wafer_id, WaferView(event.from_state))
        self._last_tool_time = max(self._last_tool_time, event.tool_time)
        if event.trigger in ("judged_ok", "step_failed") and event.measurements:
            view.result = short_result(event.step_kind, event.measurements)
        elif event.trigger == "step_failed":  # no result (a jam): say why, not the last step's
            view.result = ""
        if event.trigger == "judged_ok" and event.step:
            self._steps_done[event.wafer_id] = event.step
        view.state, view.event = event.to_state, event
        if event.to_state in NEEDS_A_PERSON:
            view.reason = event.why or view.reason or event.trigger
        elif event.from_state in NEEDS_A_PERSON:
            view.reason = ""
        self._track_tools(event)
        if self.plain and event.trigger in PLAIN_TRIGGERS:
            print(
                f"{event.wafer_id:<16} step {event.step or '-'} {event.step_kind or '':<6} "
                f"{event.trigger:<14} -> {event.to_state:<22} "
                # a hold or an abort is said by its reason, not the last step's numbers
                f"{(view.result if event.trigger in RESULT_TRIGGERS else '') or event.why}",
                flush=True,
            )
        if event.trigger in ("judged_ok", "step_failed") or event.to_state in NEEDS_A_PERSON:
            text = view.result if event.trigger == "judged_ok" else (event.why or event.trigger)
            self._remember(f"{event.wafer_id} step {event.step} {event.step_kind}: "
                           f"{event.trigger.replace('_', ' ')}" + (f", {text}" if text else ""))

    def _track_tools(self, event: WaferEvent) -> None:
        for tool in self.tools.values():
            if tool.wafers and event.wafer_id in tool.wafers and not event.to_state.endswith(
                "_running"
            ):
                tool.wafers.discard(event.wafer_id)
        if event.tool and event.to_state.endswith("_running"):
            tool = self.tools.setdefault(event.tool, ToolView(event.tool))
            tool.role = ROLE_OF_KIND.get(event.step_kind or "", tool.role)
            tool.wafers.add(event.wafer_id)
            tool.alarm = ""  # a tool that takes a wafer is out of its alarm

    def _note(self, tool: str, text: str) -> None:
        view = self.tools.setdefault(tool, ToolView(tool)) if tool != "controller" else None
        if view is not None:
            if text.startswith("ALARM"):
                view.alarm = text
            else:
                view.note = text
        line = f"{tool}: {text}"
        self._remember(line)
        if self.plain:
            print(f"  {line}", flush=True)

    def _alarm_cleared(self, tool: str, code: object) -> None:
        """The tool's alarm was cleared (the line's word, as the store has it): its line
        stops showing it, as the plain log's panel line does. An alarm shown for another code
        (latched since) stays."""
        view = self.tools.get(tool)
        if view is not None and view.alarm.startswith(f"ALARM {code} "):
            view.alarm = ""

    def _tool_state(self, tool: str, tool_time: float, data: dict[str, Any]) -> None:
        self._last_tool_time = max(self._last_tool_time, tool_time)
        view = self.tools.setdefault(tool, ToolView(tool))
        first_reading = (view.setup is not None and "zones_c" in data
                         and view.zones_at < view.setup_since)
        view.on_tool_state(tool_time, data, str(data.get("wafer_id") or ""))
        if self.plain and (data.get("setup") or first_reading):
            # A log gets the setup's time left when it starts and once the zones are read.
            shown = view.line(tool_time, 80).plain
            print(f"  {tool}: {shown.removeprefix(f'{tool:<10} ')}", flush=True)

    def _blocked(self, wafers: list[str]) -> None:
        text = (f"waiting for people: {', '.join(wafers)} held or awaiting disposition "
                f"('{DISPOSITION_HINT}')")
        self._note("controller", text)

    def _remember(self, line: str) -> None:
        self.notes = (self.notes + [line])[-50:]

    # --- the screen ------------------------------------------------------------------------

    def tool_now(self) -> float:
        return self.clock.now() if self.clock is not None else self._last_tool_time

    def eta_tool_s(self) -> float | None:
        """Tool seconds left, from the share of all wafer steps done so far."""
        total = sum(len(k) for k in self.kinds.values())
        done = sum(
            len(self.kinds[w]) if v.state in FINAL_STATES else self._steps_done.get(w, 0)
            for w, v in self.wafers.items()
        )
        elapsed = self.tool_now() - (self._tool0 or 0.0)
        if not total or not done or elapsed <= 0:
            return None
        return max(0.0, elapsed * (total - done) / done)

    def _waiting_for(self, wafer: str, state: str) -> str | None:
        number = step_of(state)
        kinds = self.kinds.get(wafer, [])
        if number is None or not 1 <= number <= len(kinds):
            return None
        role = ROLE_OF_KIND.get(kinds[number - 1])
        if role is None:
            return None
        busy = [t for t in self.tools.values() if t.role == role]
        why = "; ".join(
            f"{t.name} " + (t.alarm or ("changing over" if t.setup and t.e10 == SETUP
                                        else "busy" if t.wafers else t.note or "idle"))
            for t in busy
        )
        return f"the {role}" + (f" ({why})" if why else "")

    def lines(self, width: int, height: int) -> list[Text]:
        """The screen as lines, at most ``height`` of them, none wider than ``width``."""
        counts: dict[str, int] = {}
        for v in self.wafers.values():
            counts[v.state] = counts.get(v.state, 0) + 1
        total = len(self.wafers)
        people = [(w, v) for w, v in self.wafers.items() if v.state in NEEDS_A_PERSON]
        active = [(w, v) for w, v in self.wafers.items()
                  if v.state not in FINAL_STATES and v.state != QUEUED
                  and v.state not in NEEDS_A_PERSON]
        elapsed_tool = self.tool_now() - (self._tool0 or 0.0)
        eta = self.eta_tool_s()
        scale = getattr(self.clock, "scale", 1.0) or 1.0
        head = [
            Text(f"bumpline  {', '.join(self.lot_ids)}", style="bold"),
            Text(f"{counts.get('complete', 0)}/{total} complete · {len(active)} in work · "
                 f"{len(people)} need a person · {counts.get(QUEUED, 0)} queued"
                 + "".join(f" · {n} {s}" for s, n in counts.items() if s in ("scrapped",
                                                                              "aborted"))),
            Text(f"tool time {duration(elapsed_tool)} · wall "
                 f"{_clock(time.monotonic() - self._wall0)}"
                 + (" · every wafer finished" if total and all(
                     v.state in FINAL_STATES for v in self.wafers.values())
                    else " · the rest waits for a person"
                    if people and not active and not counts.get(QUEUED)
                    else f" · ETA {duration(eta)} tool ({_clock(eta / scale)} wall)"
                    if eta is not None else " · ETA when the first steps are done")),
        ]
        need = []
        if people:
            need.append(Text("needs a person: bumpline wafer disposition ID "
                             "--continue|--retry|--scrap", style="bold yellow"))
            need += [Text(f"  {w} {v.state.replace('_', ' ')}: {v.reason}", style="yellow")
                     for w, v in people]
        now = self.tool_now()
        tools = [t.line(now, width) for t in sorted(self.tools.values(), key=lambda t: t.name)]
        wafer_lines = [self._wafer_line(w, v) for w, v in
                       (list(self.wafers.items()) if height >= total + 16 else active)]
        budget = height - len(head) - len(tools)
        need = _fit(need, max(2, budget - 1), "needing a person")
        budget -= len(need)
        room_for_events = min(MIN_EVENT_LINES + 1, max(0, budget - 2))
        wafer_lines = _fit(wafer_lines, max(0, budget - room_for_events), "wafers")
        budget -= len(wafer_lines)
        events = [Text("latest:", style="dim")] + [Text("  " + n, style="dim")
                                                   for n in self.notes[-max(0, budget - 1):]]
        events = events if budget >= 2 and self.notes else []
        out = [*head, *need, *tools, *wafer_lines, *events][:height]
        for line in out:
            line.truncate(width, overflow="ellipsis")
            line.no_wrap = True
        return out

    def _wafer_line(self, wafer: str, v: WaferView) -> Text:
        text = _describe(v.state, v.event, self._waiting_for(wafer, v.state))
        line = Text(f"{wafer:<16} ")
        line.append(text, style=_STYLE.get(v.state, ""))
        if v.result:
            line.append(f"  last: {v.result}", style="dim")
        return line

    def _screen(self) -> Group:
        size = self.console.size
        return Group(*self.lines(size.width, size.height - 1))

    # --- the end ---------------------------------------------------------------------------

    def summary(self, outcome: LotOutcome, *, tool_s: float, wall_s: float, cpu_s: float) -> None:
        counts: dict[str, int] = {}
        for state in outcome.wafers.values():
            counts[state] = counts.get(state, 0) + 1
        total = len(outcome.wafers)
        good = counts.get("complete", 0)
        finished = sum(counts.get(s, 0) for s in FINAL_STATES)
        # The report's yield: good over finished; unfinished wafers count neither way.
        shown = (f" (yield {100.0 * good / finished:.0f} % of {finished} finished)"
                 if finished else "")
        print(f"\nlot {outcome.lot_id}: {outcome.state}; {good}/{total} wafers complete{shown}")
        for state, n in sorted(counts.items()):
            if state != "complete":
                print(f"  {n} {state.replace('_', ' ')}")
        print(f"  lot tool time {duration(tool_s)}; this run {wall_s:.1f} s wall, "
              f"controller CPU {cpu_s:.1f} s")


def _fit(lines: list[Text], budget: int, what: str) -> list[Text]:
    """At most ``budget`` lines; the last says how many more there are."""
    if len(lines) <= budget:
        return lines
    if budget <= 0:
        return []
    more = len(lines) - budget + 1
    return [*lines[:budget - 1], Text(f"  … and {more} more {what}", style="dim")]


def _clock(seconds: float) -> str:
    """Wall time as h:mm:ss (labelled where shown)."""
    total = int(round(seconds))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def _recipe_kinds(store: Any, lot_id: str) -> list[str]:
    from sequences.errors import RecipeError
    from sequences.recipes.recipe import find_recipe

    try:
        return [s.kind for s in find_recipe(store.get_lot(lot_id).recipe_name).steps]
    except RecipeError:
        return []

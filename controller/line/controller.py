"""Running lots: the store, the recipes and the scheduler put together.

``LineController.run(lot_ids)`` takes queued (or unfinished) lots, builds one
wafer run per wafer, recovers wafers that were mid-step when a controller
stopped, and lets the scheduler drive the line. Every wafer event is committed
to the store from inside the event callback, i.e. before the tool command that
follows it (persist before acting).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from controller.line.batch_records import BatchRecords
from controller.line.e10 import E10State
from controller.line.events import EventKind, LineEvent, LineEventStream
from controller.line.journal import StoreJournal, loop_timer
from controller.line.modes import ToolModes
from controller.line.recovery import Recovery
from controller.line.scheduler import ScheduledTool, ScheduledWafer, Scheduler, ToolReport
from controller.store import LotInfo, LotState, RequestInfo, Store, StoreError
from drivers.clock import Clock
from drivers.errors import ToolError
from drivers.protocols import Plater
from drivers.tools import LineTools
from drivers.types import PlaterEvent
from sequences.errors import SequenceError
from sequences.kinds import KINDS
from sequences.recipes.recipe import Recipe
from sequences.wafer.machine import AWAITING, FINAL_STATES, HELD, QUEUED, WaferEvent
from sequences.wafer.runner import WaferRun

log = logging.getLogger("controller.line.controller")

REQUEST_LOOK_S = 1.0  # wall seconds between looks at operator and engineer requests
# A line alarm, not a tool's: the store keeps it under this number (tool codes are 1-999),
# events and GEM under its name (docs/gem.md: ALARM_SET with code "link_lost").
LINK_LOST_CODE = 1000
LINK_LOST = "link_lost"
# Tool seconds between zone reads while an oven changes profile (one request each: about
# 13 in a 25-minute cool-down, against its 15-25 minutes of nothing else on that link).
HEAT_LOOK_S = 120.0

RecipeLoader = Callable[[str], Recipe]
NOT_APPLIED = "not applied:"  # a request the store's state overtook (no line event)


@dataclass
class Progress:
    """What a live display needs; fed from the line event stream, they must be quick."""

    on_event: Callable[[WaferEvent], None] = lambda event: None
    on_tool_note: Callable[[str, str], None] = lambda tool, text: None
    on_waiting_for_people: Callable[[list[str]], None] = lambda wafers: None
    # (tool, tool time, data) of a TOOL_STATE event: E10 changes, setups, the tool's own
    # state and an oven's zones (docs/events.md); ``wafer_id``: the wafer a setup is for
    on_tool_state: Callable[[str, float, dict[str, Any]], None] = (
        lambda tool, tool_time, data: None)
    # (tool, code) of an ALARM_CLEARED event: the tool's alarm is cleared (its code as the
    # ALARM_SET that raised it said it: a number, or "link_lost")
    on_alarm_cleared: Callable[[str, object], None] = lambda tool, code: None

    def kinds(self) -> set[EventKind]:
        """The event kinds a callback of this display hears (the others cost nothing)."""
        kinds: set[EventKind] = set()
        if self.on_event is not Progress.on_event:
            kinds.add(EventKind.WAFER_TRANSITION)
        if self.on_tool_note is not Progress.on_tool_note:
            kinds |= {EventKind.TOOL_NOTE, EventKind.BATCH_STARTED, EventKind.BATCH_ENDED,
                      EventKind.ALARM_SET}
        if self.on_tool_state is not Progress.on_tool_state:
            kinds.add(EventKind.TOOL_STATE)
        if self.on_alarm_cleared is not Progress.on_alarm_cleared:
            kinds.add(EventKind.ALARM_CLEARED)
        return kinds

    def listen(self, event: LineEvent) -> None:
        """A line event, for the display."""
        data = event.data
        if event.kind is EventKind.WAFER_TRANSITION:
            self.on_event(WaferEvent(
                wafer_id=event.wafer_id or "", step=data["step"], step_kind=data["step_kind"],
                from_state=data["from_state"], to_state=data["to_state"],
                trigger=data["trigger"], why=data["why"],
                measurements=dict(data["measurements"]), tool=event.tool,
                tool_time=event.tool_time))
        elif event.kind is EventKind.TOOL_NOTE:
            self.on_tool_note(event.tool or "", data["text"])
        elif event.kind is EventKind.TOOL_STATE and event.tool:
            self.on_tool_state(event.tool, event.tool_time,
                               {**data, "wafer_id": event.wafer_id} if event.wafer_id
                               else dict(data))
        elif event.kind is EventKind.BATCH_STARTED:
            self.on_tool_note(event.tool or "", f"batch {data['batch_id']} started: "
                              f"{len(data['wafers'])} wafer(s), {', '.join(data['wafers'])}")
        elif event.kind is EventKind.BATCH_ENDED:
            alarm = f", alarm {data['alarm_code']}" if data.get("alarm_code") else ""
            self.on_tool_note(event.tool or "", f"batch {data['batch_id']} ended "
                              f"{data.get('status') or data['state']}{alarm}")
        elif event.kind is EventKind.ALARM_CLEARED:
            self.on_alarm_cleared(event.tool or "", data["code"])
        elif event.kind is EventKind.ALARM_SET:
            hit = data.get("wafers") or ([data["wafer_id"]] if data.get("wafer_id") else [])
            self.on_tool_note(event.tool or "", f"ALARM {data['code']} {data['text']}"
                              + (f" (wafer {', '.join(hit)})" if hit else ""))


@dataclass
class LotOutcome:
    lot_id: str
    state: str
    wafers: dict[str, str] = field(default_factory=dict)  # wafer -> final state


class LineController:
    """Runs lots on the tools of one line."""

    def __init__(
        self,
        store: Store,
        tools: LineTools,  # the line's drivers, by name and by role
        clock: Clock,
        *,
        recipes: RecipeLoader,
        user: str = "controller",
        progress: Progress | None = None,
        wait_for_dispositions: bool = False,
        line_id: str = "line",
        events: LineEventStream | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.recipes = recipes
        self.user = user
        self.progress = progress or Progress()
        self.wait_for_dispositions = wait_for_dispositions
        self.events = events or LineEventStream(line_id, clock.now)
        self.events.use_clock(clock.now)
        # The display hears this controller's runs only, first among their listeners (it
        # keeps the state others read): undone when a run ends (`serve` hands each lot's
        # controller one stream; a listener left behind made the N-th lot print N times).
        self._unlisten: Callable[[], None] | None = self.events.listen(
            self.progress.listen, self.progress.kinds())
        self._e10: dict[str, str] = {}
        self._e10_reason: dict[str, str] = {}  # why the tool is in its E10 state
        # What each tool said of itself since its last E10 change; stored when the run ends
        # (`bumpline tools`), not on the way: a write per change would stall a busy line.
        self._said: dict[str, str] = {}
        self.scheduler = Scheduler(
            {name: (tools.role_of(name), driver) for name, driver in tools.items()},
            clock,
            line=self,
        )
        # What rides on the journal's next transaction commits at the latest a wall second
        # after it was queued (the journal's flush timer, decision 0021).
        self.journal = StoreJournal(store, self.events, self._lot_of, arm=loop_timer)
        # Batch tools: batches with their wafers, and each pushing tool's last event number.
        self.batches = BatchRecords(store)
        self.scheduler.batch_log = self.batches
        # Tools that push numbered events (the plater): their last number is kept while this
        # controller runs (``run`` subscribes and unsubscribes: one writer per tool, however
        # many controllers are made on the same open line).
        self._pushing = {name: cast(Plater, driver) for name, driver in tools.items()
                         if callable(getattr(driver, "on_event", None))}
        self._lots: list[str] = []
        self._next_request_look = 0.0
        self._watches: dict[str, asyncio.Task[None]] = {}  # ovens changing profile, read
        self.modes = ToolModes(self.scheduler.tools, self.events, self._tool_state)

    def _lot_of(self, wafer_id: str) -> str | None:
        wafer = self.scheduler.wafers.get(wafer_id)
        return wafer.lot_id if wafer else None

    # --- lots --------------------------------------------------------------------------------

    def _recipe_for(self, lot: LotInfo) -> Recipe:
        recipe = self.recipes(lot.recipe_name)
        if recipe.hash != lot.recipe_hash:
            raise StoreError(
                f"lot {lot.id}: recipe {lot.recipe_name} changed since the lot was started "
                f"(hash {lot.recipe_hash[:12]} then, {recipe.hash[:12]} now); "
                "the lot cannot continue with a different recipe"
            )
        return recipe

    def add_lot(self, lot_id: str) -> None:
        lot = self.store.get_lot(lot_id)
        unfinished = any(w.state not in FINAL_STATES for w in self.store.wafers(lot_id))
        if lot.state == LotState.COMPLETE.value:
            raise StoreError(f"lot {lot_id} is {lot.state}: nothing to run")
        if lot.state == LotState.ABORTED.value and not unfinished:
            # Aborted after it was handed to this run and before any wafer left the carrier
            # (the abort aborted them all at home): nothing to bring out. Its abort request
            # is answered (_finish_aborts) and the other lots run; it was no reason to stop.
            self._lots.append(lot_id)
            return
        # An aborted lot whose controller stopped before its wafers were out is run to bring
        # them out (_finish_aborts), never to process them.
        recipe = self._recipe_for(lot)
        if lot.state == LotState.ABORTED.value:
            self.scheduler.held_lots.add(lot_id)
        if lot.state == LotState.QUEUED.value:
            self._set_lot_state(lot_id, LotState.RUNNING, previous=lot.state)
        elif lot.state == LotState.HELD.value:
            self.scheduler.held_lots.add(lot_id)
        self._lots.append(lot_id)
        for wafer in self.store.wafers(lot_id):
            if wafer.state in FINAL_STATES:
                continue
            if wafer.state == QUEUED:
                run = WaferRun(recipe, wafer.id, self.clock, journal=self.journal)
            else:
                run = self._recovery().restored_run(recipe, wafer.id, wafer.state)
            self.scheduler.add_wafer(run, lot_id, lot.priority)

    def _recovery(self) -> Recovery:
        return Recovery(self.store, self.journal, self.clock, self._recovery_note,
                        report=self.report, failed_inside=self.scheduler.alarms.after_failure,
                        carrier_kept=self.scheduler.alarms.carrier_kept,
                        held_at=self.scheduler.alarms.tool_down)

    def _recovery_note(self, wafer_id: str, text: str) -> None:
        lot_id = self._lot_of(wafer_id)
        self.store.audit("recovery", "wafer.recovery", text, lot_id=lot_id, wafer_id=wafer_id)
        self.events.publish(EventKind.TOOL_NOTE, lot_id=lot_id, wafer_id=wafer_id,
                            tool="recovery", text=f"{wafer_id}: {text}")

    def _set_lot_state(self, lot_id: str, state: LotState, *, previous: str,
                       reason: str = "") -> None:
        lot = self.store.set_lot_state(lot_id, state, user=self.user, reason=reason)
        self.events.publish(EventKind.LOT_STATE, lot_id=lot_id, state=state.value,
                            previous=previous, recipe=lot.recipe_name, reason=reason)

    def _save_seq(self, tool: str, event: PlaterEvent) -> None:
        self.batches.save_seq(tool, event.seq)

    async def run(self, lot_ids: list[str]) -> list[LotOutcome]:
        if self._unlisten is None:  # a second run of this controller
            self._unlisten = self.events.listen(self.progress.listen, self.progress.kinds())
        unsubscribe = [driver.on_event(functools.partial(self._save_seq, name))
                       for name, driver in self._pushing.items()]
        try:
            self.modes.apply(self.store.tool_modes(), announce=False)  # set before this start
            for lot_id in lot_ids:
                self.add_lot(lot_id)
            await self._recovery().settle(list(self.scheduler.wafers.values()),
                                          self.scheduler.tools)
            self._close_settled_batches()
            self._finish_aborts()
            # Start-up's objects (modules, schema, statements) live on: full collections need
            # not walk them (~3 ms/wafer). Undone at the end: this run is frozen too.
            gc.freeze()
            while True:
                await self.scheduler.run()
                self.journal.flush()  # transitions riding on the next transaction: read below
                self._close_finished_lots()
                blocked = self._waiting_for_people()
                if not blocked or not self.wait_for_dispositions or self.scheduler.stopping:
                    break
                self.progress.on_waiting_for_people(blocked)
                await self._wait_for_request()
            return [self._outcome(lot_id) for lot_id in self._lots]
        finally:
            gc.unfreeze()  # `bumpline serve` runs lot after lot: each run must be freed
            for stop in unsubscribe:
                stop()
            for task in self._watches.values():
                task.cancel()
            await asyncio.gather(*self._watches.values(), return_exceptions=True)
            self._watches.clear()
            try:
                self.journal.flush()  # transitions and answers not yet committed
            except StoreError as exc:  # left open: recovery asks the tool next start
                log.warning("transitions or intent outcomes not stored: %s", exc)
            self._unlisten()  # after the last flush: the display hears what it published
            self._unlisten = None
            self._store_what_tools_said()

    def _store_what_tools_said(self) -> None:
        """Each tool's own state with its E10 state, as `bumpline tools` shows it after
        the run (a row only where it adds something)."""
        for tool, said in self._said.items():
            try:
                self.store.record_tool_state(tool, self._e10[tool], tool_state=said,
                                             reason=self._e10_reason.get(tool, ""),
                                             tool_time=self.clock.now())
            except StoreError as exc:  # the lot's own records are already committed
                log.warning("%s: tool state not stored: %s", tool, exc)

    def stop(self) -> None:
        """Ctrl-C: no new steps start; running ones finish and are recorded."""
        self.scheduler.stop()

    @property
    def stopped(self) -> bool:
        return self.scheduler.stopping

    async def _wait_for_request(self) -> None:
        # Requests come from other processes (bumpline wafer disposition) through the
        # database, which has no notification: look once a second. Only a request for one
        # of this run's lots ends the wait: the look says whether any request waits, and
        # one for a lot no controller runs yet (or another line's) stays pending; woken by
        # it, the run would come straight back here, never yielding the event loop.
        while not self.scheduler.stopping:
            modes, waiting = self.store.look()
            self.modes.apply(modes)  # idle tools' E10 follows meanwhile
            if waiting and any(r.lot_id in self._lots for r in self.store.pending_requests()):
                self._next_request_look = 0.0  # the scheduler's next pass handles it
                return
            await asyncio.sleep(REQUEST_LOOK_S)

    def _waiting_for_people(self) -> list[str]:
        return [
            w.run.wafer_id
            for w in self.scheduler.wafers.values()
            if w.run.state in (HELD, AWAITING)
            or (w.lot_id in self.scheduler.held_lots and not w.run.done)
        ]

    def _close_finished_lots(self) -> None:
        for lot_id in self._lots:
            lot = self.store.get_lot(lot_id)
            if lot.state != LotState.RUNNING.value:
                continue
            wafers = self.store.wafers(lot_id)
            if all(w.state in FINAL_STATES for w in wafers):
                try:
                    self._set_lot_state(lot_id, LotState.COMPLETE, previous=lot.state,
                                        reason="every wafer finished")
                except StoreError as exc:
                    # A person's hold or abort landed between the read and the write (the
                    # row lock orders them): theirs stands, as the store now says.
                    log.info("lot %s not completed: %s", lot_id, exc)

    def _outcome(self, lot_id: str) -> LotOutcome:
        lot = self.store.get_lot(lot_id)
        return LotOutcome(lot_id, lot.state, {w.id: w.state for w in self.store.wafers(lot_id)})

    # --- what the scheduler reports of the tools ---------------------------------------------

    def report(self, report: ToolReport) -> None:
        what, tool = report.what, report.tool
        if what == "note":
            self.store.audit(tool, "tool.note", report.text)
            self.events.publish(EventKind.TOOL_NOTE, tool=tool, text=report.text)
        elif what == "productive":
            self._tool_state(tool, E10State.PRODUCTIVE, report.text)
        elif what == "setup":
            self._tool_state(tool, E10State.SCHEDULED_DOWN, report.text, setup=report.setup,
                             wafer_id=report.wafer_id)
        elif what == "standby":
            self._tool_state(tool, E10State.STANDBY, report.text)
        elif what == "alarm":
            wafer = self.scheduler.wafers.get(report.wafer_id or "")
            step_id = None
            if wafer is not None:
                steps = self.store.steps(wafer.run.wafer_id)
                step_id = steps[-1].id if steps else None
            hit = list(report.wafers or ([report.wafer_id] if report.wafer_id else []))
            text = report.text
            if len(hit) > 1:  # the store row names one wafer; its text names the others
                text = f"{text} (also hit: {', '.join(hit[1:])})"
            self.store.alarm_set(tool, report.code, text[:200], wafer_id=report.wafer_id,
                                 step_id=step_id, tool_time=self.clock.now())
            self._tool_state(tool, E10State.UNSCHEDULED_DOWN,
                             f"alarm {report.code} {report.text}")
            self.events.publish(EventKind.ALARM_SET, tool=tool, code=report.code,
                                text=report.text, wafer_id=report.wafer_id,
                                lot_id=self._lot_of(report.wafer_id or ""), wafers=hit)
        elif what in ("link_lost", "link_back"):
            self._link_report(report)
        elif what == "alarm_cleared":
            self.store.alarm_cleared(tool)
            self._tool_state(tool, E10State.STANDBY, "alarm cleared")
            self.events.publish(EventKind.ALARM_CLEARED, tool=tool, code=report.code, text="")
        elif what in ("batch_started", "batch_ended"):  # its record is written (batch_log)
            lots = {self._lot_of(w) for w in report.wafers}
            self.events.publish(
                EventKind.BATCH_STARTED if what == "batch_started" else EventKind.BATCH_ENDED,
                tool=tool, lot_id=lots.pop() if len(lots) == 1 else None,
                wafers=list(report.wafers), **report.data)

    def _link_report(self, report: ToolReport) -> None:
        """A tool that stopped answering is down (unscheduled) with a line alarm naming the
        wafers inside and the exchange that failed; answering again clears it."""
        tool = report.tool
        if report.what == "link_lost":
            hit = list(report.wafers)
            inside = f" (wafers inside: {', '.join(hit)})" if hit else " (no wafer inside)"
            text = f"TOOL LINK LOST: {report.text}" + inside
            # The row holds 200 characters: a long exchange is cut, never the wafers.
            stored = f"TOOL LINK LOST: {report.text}"[:max(0, 200 - len(inside))] + inside
            self.store.alarm_set(tool, LINK_LOST_CODE, stored[:200], wafer_id=report.wafer_id,
                                 tool_time=self.clock.now())
            self._tool_state(tool, E10State.UNSCHEDULED_DOWN, f"not answering: {report.text}")
            self.events.publish(EventKind.ALARM_SET, tool=tool, code=LINK_LOST, text=text,
                                wafer_id=report.wafer_id,
                                lot_id=self._lot_of(report.wafer_id or ""), wafers=hit)
        else:
            self.store.alarm_cleared(tool, LINK_LOST_CODE)
            self.store.audit(tool, "tool.note", report.text)
            self._tool_state(tool, E10State.STANDBY, "answers again")
            self.events.publish(EventKind.ALARM_CLEARED, tool=tool, code=LINK_LOST,
                                text=report.text)

    async def settle(self, tool: ScheduledTool, wafers: list[ScheduledWafer]) -> None:
        """The wafers a silent tool had, once it answers: each kind asks it what happened
        (the rules recovery uses after a controller stop)."""
        recovery = Recovery(self.store, self.journal, self.clock, self._recovery_note,
                            cause=f"{tool.name} stopped answering", report=self.report,
                            failed_inside=self.scheduler.alarms.after_failure,
                            carrier_kept=self.scheduler.alarms.carrier_kept)
        await recovery.settle(wafers, {tool.name: tool})
        self._close_settled_batches()  # a batch the silence left open, now its riders are

    def _tool_state(self, tool: str, state: E10State, reason: str, *,
                    setup: dict[str, Any] | None = None, wafer_id: str | None = None) -> None:
        """Record and publish an E10 change. A setup carries what it aims at (``setup``:
        StepKind.setup_facts with the step), for the live view's ETA."""
        state, reason = self.modes.e10(tool, state, reason)
        previous = self._e10.get(tool)
        extra: dict[str, Any] = {"setup": setup} if setup else {}
        slot = self.scheduler.tools.get(tool)
        if previous == state.value:
            if setup:  # a setup straight after another: no E10 change, a refresh says it
                self.events.publish(EventKind.TOOL_STATE, tool=tool, wafer_id=wafer_id,
                                    e10_state=state.value, **extra)
                self._watch_setup(slot, setup)
            return
        self._e10[tool] = state.value
        self._e10_reason[tool] = reason
        self._said.pop(tool, None)  # what it said before this change is not its state now
        write = functools.partial(self.store.record_tool_state, tool, state, reason=reason,
                                  tool_time=self.clock.now())
        tell = functools.partial(self.events.publish, EventKind.TOOL_STATE, tool=tool,
                                 wafer_id=wafer_id, e10_state=state.value, previous=previous,
                                 reason=reason, **extra)
        if state in (E10State.PRODUCTIVE, E10State.STANDBY):
            # The two a wafer's steps make: no tool command waits for the row, it rides on the
            # journal's next transaction (docs/decisions/0017-deferred-transitions.md). A tool
            # going down is stored at once, with the alarm that says why.
            self.journal.later(write, tell)
        else:
            write()
            tell()
        if slot is not None and not (slot.busy or slot.riding):
            # Only a tool nobody works on is asked: a status read on a working tool's link
            # delays its step (an oven's exit at speed).
            self.scheduler.spawn(self._tool_status(tool))
        elif setup:
            self._watch_setup(slot, setup)

    def _watch_setup(self, slot: ScheduledTool | None, setup: dict[str, Any]) -> None:
        """An oven heating or cooling to a new profile: its zones, read every HEAT_LOOK_S
        while the changeover runs and nothing rides its belt (a rider's exit must not wait
        behind a read), so the live view's ETA follows the measured zones.

        A look is the oven's process values alone (zones, state, belt count: one request)
        where the driver reads them apart, not its whole status (three): the ETA needs
        the zones, and no wafer's interlocks hang on it. The refresh then says nothing of
        the conveyor coil (the live view shows the belt without running/stopped)."""
        if slot is None or "setpoints_c" not in setup:
            return
        running = self._watches.get(slot.name)
        if running is not None and not running.done():
            return  # a changeover straight after another: the same watch goes on
        tool = slot.name
        process = getattr(self.scheduler.tools[tool].driver, "process_values", None)

        async def look() -> None:
            if process is None:
                await self._tool_status(tool)
                return
            try:
                now = await process()
            except ToolError as exc:  # the setup's own requests report a broken link
                log.debug("%s: no zones for the host: %s", tool, exc)
                return
            self._said[tool] = now.state.name
            self.events.publish(EventKind.TOOL_STATE, tool=tool, e10_state=self._e10[tool],
                                tool_state=now.state.name, zones_c=list(now.zone_pv_c),
                                wafers_on_belt=now.wafers_on_belt)

        async def watch() -> None:
            while slot.busy and slot.holder is None and not self.scheduler.stopping:
                if not slot.riding:
                    await look()
                await self.clock.sleep(HEAT_LOOK_S)

        # Not the scheduler's: it would wait for the watch's sleep before it stops.
        self._watches[slot.name] = asyncio.create_task(watch())

    async def _tool_status(self, tool: str) -> None:
        """What the tool says of itself once its E10 state changed (its state name, stored
        at the run's end; an oven's zone temperatures), for `bumpline tools`, the live
        view and the factory host's status variables: a TOOL_STATE without ``previous``,
        i.e. no E10 change. One status read per change, on the tool's own link (its lock
        orders it with the step's requests)."""
        read = getattr(self.scheduler.tools[tool].driver, "status", None)
        if read is None:
            return
        try:
            status = await read()
        except ToolError as exc:  # the step's own requests report a broken link
            log.debug("%s: no status for the host: %s", tool, exc)
            return
        extra: dict[str, Any] = {"tool_state": status.state.name}
        zones = getattr(status, "zone_pv_c", None)
        if zones is not None:
            extra["zones_c"] = list(zones)  # zone 1 first; None: a failed thermocouple
            extra["conveyor_running"] = status.conveyor_running
            extra["wafers_on_belt"] = status.wafers_on_belt
        self._said[tool] = status.state.name
        self.events.publish(EventKind.TOOL_STATE, tool=tool, e10_state=self._e10[tool],
                            **extra)

    # --- operator and engineer requests ------------------------------------------------------

    def poll_requests(self) -> None:
        # People type slower than this; looking once a second keeps the hot loop cheap.
        now = time.monotonic()
        if now < self._next_request_look:
            return
        self._next_request_look = now + REQUEST_LOOK_S
        # No flush here: deferred transitions have the journal's own timer (decision 0021).
        modes, waiting = self.store.look()  # one read: modes and "any request?"
        if self.modes.apply(modes):
            self.scheduler.wake()
        for request in self.store.pending_requests() if waiting else ():
            if request.lot_id not in self._lots:
                continue
            note = self._apply(request)
            self.store.mark_request_handled(request.id, note=note)
            if note.startswith(NOT_APPLIED):
                continue  # overtaken (the store's state says otherwise): nothing to tell
            self.events.publish(EventKind.OPERATOR_REQUEST, lot_id=request.lot_id,
                                wafer_id=request.wafer_id, action=request.action,
                                by=request.requested_by, reason=request.reason, outcome=note)
            self.scheduler.wake()

    def _apply(self, request: RequestInfo) -> str:
        wafers = [w for w in self.scheduler.wafers.values() if w.lot_id == request.lot_id]
        action = request.action
        if action in ("hold_lot", "resume_lot"):
            # The store's state is the person's last word: a hold whose lot was resumed
            # since (from another process, while no controller ran it) holds nothing.
            held = self.store.get_lot(request.lot_id).state == LotState.HELD.value
            if action == "hold_lot" and not held:
                return f"{NOT_APPLIED} the lot was resumed since"
            if action == "resume_lot" and held:
                return f"{NOT_APPLIED} the lot was held again since"
        if action == "hold_lot":
            self.scheduler.held_lots.add(request.lot_id)
            return "no new steps start for this lot"
        if action == "resume_lot":
            self.scheduler.held_lots.discard(request.lot_id)
            return "lot resumed"
        if action == "abort_lot":
            self.scheduler.held_lots.add(request.lot_id)  # nothing new starts meanwhile
            for each in wafers:
                if not each.run.done:
                    self._spawn_abort(each, request.reason or "lot aborted")
            return f"aborting {sum(not w.run.done for w in wafers)} wafer(s)"
        wafer = self.scheduler.wafers.get(request.wafer_id or "")
        if wafer is None:
            return "wafer not in this controller"
        try:
            if action == "hold_wafer":
                wafer.run.hold(f"{request.requested_by}: {request.reason}")
                return "held" if wafer.run.state == HELD else "held when its step ends"
            if action in ("continue", "retry", "scrap"):
                if wafer.run.state == HELD and action != "scrap":
                    wafer.run.resume(f"{request.requested_by}: {request.reason}")
                    return "resumed"
                wafer.run.disposition(action, f"{request.requested_by}: {request.reason}")
                return f"{action}: wafer is {wafer.run.state}"
        except SequenceError as exc:
            return f"refused: {exc}"
        return f"unknown request {action}"

    def _close_settled_batches(self) -> None:
        """Batches a stopped controller left open on this line's tools, once recovery has
        settled every member: closed from the members' step records (the tool's verdict and
        baths from a judged one), and their end published."""
        batch_roles = {kind.role for kind in KINDS.values() if kind.batch}
        if not any(tool.role in batch_roles for tool in self.scheduler.tools.values()):
            return  # no batch tool on this line: no query (a first ORM query costs ~20 ms)
        for batch in self.batches.batches():
            if batch.state != "started" or batch.tool not in self.scheduler.tools:
                continue
            records = []
            for wafer_id in batch.wafers:
                mine = [s for s in self.store.steps(wafer_id) if s.kind == batch.step_kind
                        and (batch.started_at is None or s.started_at >= batch.started_at)]
                if not mine or mine[-1].status == "running":
                    break  # not settled, or stopped before its step opened: left open
                records.append(mine[-1])
            else:
                judged = [res for r in records
                          if (res := r.results or {}).get("batch_id") == batch.id]
                verdict: dict[str, Any] = {"state": "failed", "status": None}
                if judged:
                    verdict.update(state="done", status=judged[0].get("batch_status"),
                                   ni_bath_c=judged[0].get("ni_bath_c"),
                                   au_bath_c=judged[0].get("au_bath_c"))
                self.batches.ended(batch.id, tool_time=self.clock.now(), **verdict)
                self.report(ToolReport(batch.tool, "batch_ended", wafers=batch.wafers, data={
                    "batch_id": batch.id, "step": records[0].step_index,
                    "step_kind": batch.step_kind, "riders": list(batch.wafers),
                    "recovered": True, **verdict}))

    def _finish_aborts(self) -> None:
        """Lots aborted while no controller could bring their wafers out: abort those now
        (the tools hand them out), and answer the abort requests they left pending."""
        aborted = [lot_id for lot_id in self._lots
                   if self.store.get_lot(lot_id).state == LotState.ABORTED.value]
        for lot_id in aborted:
            for request in self.store.pending_requests(lot_id):
                if request.action == "abort_lot":
                    self.store.mark_request_handled(request.id,
                                                    note="carried out when the lot resumed")
            for wafer in self.scheduler.wafers.values():
                if wafer.lot_id == lot_id and not wafer.run.done:
                    self._spawn_abort(wafer, "lot aborted while no controller ran it")

    def _spawn_abort(self, wafer: ScheduledWafer, why: str) -> None:
        async def abort() -> None:
            await wafer.run.abort(why)
            for note in wafer.run.tool_notes:  # what the abort left each tool doing
                self.store.audit(
                    "controller",
                    "wafer.abort",
                    note,
                    lot_id=wafer.lot_id,
                    wafer_id=wafer.run.wafer_id,
                )
            wafer.run.tool_notes.clear()

        self.scheduler.spawn(abort())

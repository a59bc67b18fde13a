"""What the scheduler reports of the tools, recorded and published: E10 states, alarms, links.

The scheduler reports through one callback (``ToolReport``, ``LineController.report``);
``ToolReports`` turns each report into the store's rows and the line event stream's
events: a note, a tool's E10 state (productive, standby, a setup; the modes people set
override it: controller/line/modes.py), a tool alarm naming the wafers it hit, a link
lost and back (a line alarm, ``LINK_LOST``), a batch started and ended. Once a tool's E10
state changes, what the tool says of itself is read (its state name, an oven's zones),
and an oven changing profile has its zones read while the changeover runs, for the live
view's ETA and the factory host's status variables. What each tool said is stored when
the run ends (``store_what_tools_said``), not on the way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from controller.line.e10 import E10State
from controller.line.events import EventKind, LineEventStream
from controller.line.journal import StoreJournal
from controller.line.modes import ToolModes
from controller.line.scheduler import ScheduledTool, Scheduler, ToolReport
from controller.store import Store, StoreError
from drivers.clock import Clock
from drivers.errors import ToolError

log = logging.getLogger("controller.line.controller")  # the controller's log, as before

# A line alarm, not a tool's: the store keeps it under this number (tool codes are 1-999),
# events and GEM under its name (docs/gem.md: ALARM_SET with code "link_lost").
LINK_LOST_CODE = 1000
LINK_LOST = "link_lost"
# Tool seconds between zone reads while an oven changes profile (one request each: about
# 13 in a 25-minute cool-down, against its 15-25 minutes of nothing else on that link).
HEAT_LOOK_S = 120.0


class ToolReports:
    """The E10 state, alarms and links of one controller's tools, as the scheduler
    reports them; ``modes``: the modes people set, which the E10 state follows."""

    def __init__(self, store: Store, events: LineEventStream, clock: Clock,
                 journal: StoreJournal, scheduler: Scheduler,
                 lot_of: Callable[[str], str | None]) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.journal = journal
        self.scheduler = scheduler
        self._lot_of = lot_of
        self._e10: dict[str, str] = {}
        self._e10_reason: dict[str, str] = {}  # why the tool is in its E10 state
        # What each tool said of itself since its last E10 change; stored when the run ends
        # (`bumpline tools`), not on the way: a write per change would stall a busy line.
        self._said: dict[str, str] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}  # ovens changing profile, read
        self.modes = ToolModes(scheduler.tools, events, self.tool_state)

    def report(self, report: ToolReport) -> None:
        what, tool = report.what, report.tool
        if what == "note":
            self.store.audit(tool, "tool.note", report.text)
            self.events.publish(EventKind.TOOL_NOTE, tool=tool, text=report.text)
        elif what == "productive":
            self.tool_state(tool, E10State.PRODUCTIVE, report.text)
        elif what == "setup":
            self.tool_state(tool, E10State.SCHEDULED_DOWN, report.text, setup=report.setup,
                             wafer_id=report.wafer_id)
        elif what == "standby":
            self.tool_state(tool, E10State.STANDBY, report.text)
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
            self.tool_state(tool, E10State.UNSCHEDULED_DOWN,
                             f"alarm {report.code} {report.text}")
            self.events.publish(EventKind.ALARM_SET, tool=tool, code=report.code,
                                text=report.text, wafer_id=report.wafer_id,
                                lot_id=self._lot_of(report.wafer_id or ""), wafers=hit)
        elif what in ("link_lost", "link_back"):
            self._link_report(report)
        elif what == "alarm_cleared":
            self.store.alarm_cleared(tool)
            self.tool_state(tool, E10State.STANDBY, "alarm cleared")
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
            self.tool_state(tool, E10State.UNSCHEDULED_DOWN, f"not answering: {report.text}")
            self.events.publish(EventKind.ALARM_SET, tool=tool, code=LINK_LOST, text=text,
                                wafer_id=report.wafer_id,
                                lot_id=self._lot_of(report.wafer_id or ""), wafers=hit)
        else:
            self.store.alarm_cleared(tool, LINK_LOST_CODE)
            self.store.audit(tool, "tool.note", report.text)
            self.tool_state(tool, E10State.STANDBY, "answers again")
            self.events.publish(EventKind.ALARM_CLEARED, tool=tool, code=LINK_LOST,
                                text=report.text)

    def tool_state(self, tool: str, state: E10State, reason: str, *,
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

    async def stop_watches(self) -> None:
        """The zone reads of ovens still changing profile end with the run."""
        for task in self._watches.values():
            task.cancel()
        await asyncio.gather(*self._watches.values(), return_exceptions=True)
        self._watches.clear()

    def store_what_tools_said(self) -> None:
        """Each tool's own state with its E10 state, as `bumpline tools` shows it after
        the run (a row only where it adds something)."""
        for tool, said in self._said.items():
            try:
                self.store.record_tool_state(tool, self._e10[tool], tool_state=said,
                                             reason=self._e10_reason.get(tool, ""),
                                             tool_time=self.clock.now())
            except StoreError as exc:  # the lot's own records are already committed
                log.warning("%s: tool state not stored: %s", tool, exc)

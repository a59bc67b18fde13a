"""Tool alarms on the line: recorded once, the tool out of service, cleared when the cause is gone.

A tool alarm is heard of four ways: a step that fails on it (``after_failure``), a
step's interlock that finds it latched (``tool_down``: the wafer is held), the
oven's exit watcher finding it while wafers ride (``on_belt``), and a batch tool that
cannot hand its judged carrier out (``carrier_kept``: the riders are held). Each records
it once (``ToolReport("alarm")``, naming every wafer it hit) and takes the tool out of
service; ``check``, from every scheduler pass, sends the tool's CLEAR until it is taken
(the tool accepts it only once the cause is gone, so no interlock is bypassed) and then
puts back what the alarm stopped: the failed wafer it kept inside comes out, a kept
carrier comes out and then its riders go on, the wafers it held go on, their interlocks
checked again.

A CLEAR and what follows it run beside the passes, one at a time per tool (a lock):
a tool whose link is slow, its replies timing out and resent, must not hold up the
wafers every other tool could be working on. The tool stays out of service until all of
it is done (its failed wafer out), so no pass gives it a wafer halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from controller.line.journal import INTERLOCK
from controller.line.rechecks import InterlockRechecks
from controller.line.scheduled import ScheduledTool, ScheduledWafer, ToolReport
from drivers.clock import Clock
from drivers.errors import ToolError
from drivers.types import Alarm
from sequences.kinds import kind_of
from sequences.kinds.base import ABORT_UNFINISHED
from sequences.kinds.batch import Batch
from sequences.kinds.oven_exit import watch_of
from sequences.recipes.recipe import Step
from sequences.wafer.machine import Phase

RECHECKS = 3  # an alarm hold the tool does not confirm is looked at again this often
# Tool seconds between two CLEARs a tool refused (its alarm's cause still there): a pass
# comes every IDLE_WAKE_S, which at wall speed was five CLEARs a second, each refusal a
# row of the audit log, for as long as a door stayed open.
CLEAR_RETRY_S = 5.0
CLEAR_APPLY_S = 1.0  # a CLEAR's OK may come before the tool leaves ALARM (its next tick)
# Alarms no CLEAR takes away: their spec's remedy is another command, which we leave to a
# person (it spends a consumable, docs/protocols.md decision 15). By (role, code).
REMEDIES = {
    ("printer", 102): "FIL (paste-printer.md)",
    ("placer", 111): "CHG with a fresh ball supply, then CLR (ball-placer.md)",
    ("plater", 720): "REPLENISH (barrier-plater.md)",
    ("plater", 740): "REPLENISH (barrier-plater.md)",
}

# How the holds of ``_hold_waiting`` end. They name the tool, as the runner's interlock
# holds do. A remedy's goes on once the alarm is cleared (after the person's remedy): a
# restart takes it up as it takes up the interlock holds. A tool out of service for the run
# (its setup failed with no alarm): a person decides, and recovery leaves it held
# (``for_a_person``).
REMEDY_HOLD_END = "for a person; the wafer goes on once it is cleared"
DOWN_HOLD_END = "a person decides: continued, it goes on in the lot's next run"


def for_a_person(why: str) -> bool:
    """A hold reason only a person moves on, not the line after a restart."""
    return why.endswith(DOWN_HOLD_END)


def _strays_on(tool: ScheduledTool) -> bool:
    """Wafers recovery left on this oven's belt (``ExitWatch.strays``): a step holding the
    oven's entrance waits for them, and they come out only once the alarm is cleared."""
    watch = watch_of(tool.driver)
    return watch is not None and watch.has_strays


async def read_alarm(tool: ScheduledTool) -> Alarm | None:
    """The tool's latched alarm, or None (also when the tool cannot be asked)."""
    try:
        return await tool.driver.alarm()
    except ToolError:
        return None


class ToolAlarms:
    """The line's tool alarms, for one scheduler: its tools, wafers, reports and wake-up."""

    def __init__(self, clock: Clock, tools: dict[str, ScheduledTool],
                 wafers: dict[str, ScheduledWafer], report: Callable[[ToolReport], None],
                 wake: Callable[[], None],
                 spawn: Callable[[Coroutine[Any, Any, object]], asyncio.Task[object]]) -> None:
        self.clock = clock
        self.tools = tools
        self.wafers = wafers
        self._report = report
        self._wake = wake
        self._spawn = spawn  # the scheduler's: a stop waits for what it runs
        self._clearing: dict[str, asyncio.Lock] = {}  # tool -> held while its CLEAR runs
        self._clears: dict[str, asyncio.Task[object]] = {}  # tool -> the one check started
        self._held: dict[str, set[str]] = {}  # tool -> wafers its alarm held
        self._left_inside: dict[str, tuple[str, Step]] = {}  # tool -> failed wafer, its step
        # tool -> a judged batch the alarm kept inside, its step, the riders held for it
        self._kept: dict[str, tuple[Batch, Step, set[str]]] = {}
        self._rechecked: dict[str, int] = {}  # wafer -> alarm holds the tool did not confirm
        # Holds at an interlock with no alarm to clear: the tool looked at again.
        self.rechecks = InterlockRechecks(clock, tools, wafers, report, spawn, self.tool_down)

    def _note(self, tool: ScheduledTool, text: str) -> None:
        self._report(ToolReport(tool.name, "note", text))

    async def after_failure(self, wafer: ScheduledWafer, step: Step, tool: ScheduledTool,
                            *, also_hit: tuple[str, ...] = ()) -> None:
        """A failed wafer leaves the tool (so the line goes on); an alarm is recorded.
        ``also_hit``: the other wafers the alarm failed with it (a batch's riders)."""
        alarm = await read_alarm(tool)
        if alarm is not None:
            if tool.alarm != alarm.code:  # a rider behind it ending on the same latched alarm
                tool.alarm = alarm.code  # was named with it: reported once
                # The wafer that ended first names the alarm; the others on the belt, or in
                # its carrier, are hit.
                others = (tool.riding | set(also_hit)) - {wafer.run.wafer_id}
                hit = (wafer.run.wafer_id, *sorted(others))
                self._report(ToolReport(tool.name, "alarm", alarm.text, alarm.code,
                                        wafer.run.wafer_id, wafers=hit))
            await self._try_clear(tool)
        for note in await kind_of(step).abort(tool.driver, step, wafer.run.wafer_id):
            self._note(tool, f"{wafer.run.wafer_id}: {note}")
        if tool.alarm > 0:  # still latched: the tool could not hand the wafer out yet
            self._left_inside[tool.name] = (wafer.run.wafer_id, step)

    def on_belt(self, tool: ScheduledTool, alarm: Alarm, riding: list[str]) -> None:
        """The oven's exit watcher found an alarm latched while wafers ride (a jam stopping
        the belt): out of service now, reported with every wafer on the belt, and cleared by
        ``check`` once its cause is gone, so the belt runs again before the riders'
        deadlines (also while the next wafer's step holds the entrance). Told on each
        late look while latched: reported once, as a rider failing on it later is."""
        if tool.alarm == alarm.code or tool.lost:
            return
        tool.alarm = alarm.code
        self._report(ToolReport(tool.name, "alarm", alarm.text, alarm.code,
                                riding[0] if riding else None, wafers=tuple(riding)))
        self._wake()

    def carrier_kept(self, tool: ScheduledTool, batch: Batch, step: Step, number: int,
                     wafers: list[ScheduledWafer], alarm: Alarm) -> None:
        """A batch's carrier an alarm keeps in the tool after every rider was judged (it
        latched between the batch's end and its UNLOAD, which the plater allows in DONE
        only). Recorded once, naming every wafer in the carrier; the tool out of service;
        each rider judged good is held as its step ends (none goes on with the carrier
        still inside; one judged bad goes to disposition as it would). Once ``check``'s
        CLEAR is taken the carrier comes out and the held riders go on with their judged
        results (``_clear``), as a failed wafer the alarm kept inside comes out.

        Recovery (the alarm latched while no controller watched) judges the riders one by
        one and tells the line right after each judgment: a rider it has just judged good
        (waiting for its next step, not started) is held at once, and the held riders of
        the same carrier add up."""
        inside = [w for w in wafers if w.run.wafer_id in batch.riders]
        ids = tuple(w.run.wafer_id for w in inside)
        if tool.alarm != alarm.code:
            tool.alarm = alarm.code
            self._report(ToolReport(tool.name, "alarm", alarm.text, alarm.code,
                                    ids[0] if ids else None, wafers=ids))
        why = (f"the carrier of batch {batch.batch_id} is still in {tool.name}: alarm "
               f"{alarm.code} {alarm.text} latched before its UNLOAD; it goes on once the "
               "alarm is cleared and the carrier is out")
        held = set()
        for wafer in inside:
            run = wafer.run
            judgment = run.judgments.get(number)
            where = run.machine.where
            judging = where.phase is Phase.JUDGING and where.step == number
            judged_by_recovery = (where.phase is Phase.WAITING and where.step == number + 1
                                  and not wafer.running)
            if ((judging or judged_by_recovery) and judgment is not None and judgment.ok
                    and not run.hold_requested):  # a person's hold stands
                run.hold(why)  # as its step ends (it is judging), or now
                held.add(run.wafer_id)
        earlier = self._kept.get(tool.name)
        if earlier is not None and earlier[0] is batch:
            held |= earlier[2]
        self._kept[tool.name] = (batch, step, held)
        self._wake()

    @property
    def keeping(self) -> bool:
        """Wafers are held for a carrier an alarm keeps in its tool (they go on once it is
        cleared, so the run waits for it)."""
        return any(self.wafers[w].run.phase is Phase.HELD
                   for _, _, held in self._kept.values() for w in held if w in self.wafers)

    async def tool_down(self, tool: ScheduledTool, *wafer_ids: str) -> None:
        """The step's interlock found the tool in alarm: the wafer is held, the tool is out of
        service until its alarm is cleared; then the wafers it held go on (interlock re-checked).
        Held for something else (the tool shows no alarm): looked at again (``rechecks``).
        Several wafers: a batch's members its interlock held together (one alarm read)."""
        alarm = await read_alarm(tool)
        if alarm is None:
            for wafer_id in wafer_ids:
                self._recheck_hold(tool, wafer_id)
            return
        self._held.setdefault(tool.name, set()).update(wafer_ids)
        if tool.alarm != alarm.code:  # not already reported (the exit watcher's, say)
            tool.alarm = alarm.code
            # An oven's riders went through it (the held wafers never went in): named.
            hit = tuple(sorted(tool.riding - set(wafer_ids)))
            self._report(ToolReport(tool.name, "alarm", alarm.text, alarm.code,
                                    hit[0] if hit else None, wafers=hit))

    async def look_at_the_end(self) -> None:
        """The run ends: each tool in service is asked for its alarm once. One latched while
        no wafer needed the tool (an oven the lot was done with, a plater beside a rebump
        lot) was heard of by nobody: now it is recorded, and cleared if its cause is gone,
        instead of being found by the next run (or never, the tool left in ALARM)."""
        found = False
        for tool in self.tools.values():
            if tool.alarm or tool.lost or tool.busy:
                continue
            alarm = await read_alarm(tool)
            if alarm is not None:
                found = True
                tool.alarm = alarm.code
                self._report(ToolReport(tool.name, "alarm", f"{alarm.text} (found as the run "
                                        "ended)", alarm.code))
        if found:
            self.check()
            await self.clears_done()

    def hold_for_tools_down(self) -> None:
        """The run ends with tools out of service with no alarm (a setup that failed): the
        wafers waiting for one, with no other tool of its role, are held naming why."""
        for tool in self.tools.values():
            if tool.alarm == -1:
                self._hold_waiting(tool, f"interlock: {tool.name} is out of service for this "
                                   f"run ({tool.down_why or 'its setup failed'}); "
                                   + DOWN_HOLD_END)

    def _recheck_hold(self, tool: ScheduledTool, wafer_id: str) -> None:
        """Held at its interlock for an alarm the tool, asked again, does not have: a reply
        damaged where Modbus TCP has no checksum, or an alarm gone since. The wafer waits for
        the tool again, and its interlocks are checked again before the step (never bypassed);
        a few times at most, then it stays held for a person. Held for no alarm: ``rechecks``."""
        wafer = self.wafers.get(wafer_id)
        if wafer is None:
            return
        if "alarm" not in wafer.run.machine.hold_reason:
            self.rechecks.held(tool, wafer_id)
            return
        count = self._rechecked[wafer_id] = self._rechecked.get(wafer_id, 0) + 1
        if count <= RECHECKS:
            wafer.run.resume(f"{tool.name} shows no alarm when asked again; interlocks are "
                             "checked again before the step")

    def check(self) -> None:
        """Tools out of service come back when their alarm's cause is gone: each one's CLEAR
        is started beside the pass (not awaited: see the module's docstring), unless one
        is running already. A tool whose setup failed without an alarm (-1) has nothing
        to clear: it waits for a person. A refused CLEAR is tried again CLEAR_RETRY_S
        later. A tool a step holds is left to that step, except an oven with wafers on its
        belt: the step holding it waits at the entrance for the exit to take the wafer
        ahead, and a jam left latched would keep them all waiting until the riders'
        deadlines."""
        now = self.clock.now()
        for tool in self.tools.values():
            if tool.alarm > 0 and not tool.lost and (
                    not tool.busy or tool.riding - {tool.holder} or _strays_on(tool)) and (
                    now - tool.clear_tried_at >= CLEAR_RETRY_S) and tool.name not in self._clears:
                task = self._clears[tool.name] = self._spawn(self._try_clear(tool))
                task.add_done_callback(partial(self._clear_ended, tool.name))

    def _clear_ended(self, name: str, _task: asyncio.Task[object]) -> None:
        self._clears.pop(name, None)

    async def clears_done(self) -> None:
        """Wait for the CLEARs ``check`` started (and what follows them) to end."""
        while self._clears:
            await asyncio.wait(set(self._clears.values()))

    async def _try_clear(self, tool: ScheduledTool) -> None:
        """CLEAR the tool's alarm and put back what it stopped; one at a time per tool (a
        step failing on the alarm and ``check`` may both want to), the second finding it
        cleared already."""
        async with self._clearing.setdefault(tool.name, asyncio.Lock()):
            if tool.alarm > 0:
                await self._clear(tool)

    async def _clear(self, tool: ScheduledTool) -> None:
        try:
            await tool.driver.clear_alarm()
            how = "cause gone"
        except ToolError as exc:
            if not await self._reset_at_the_tool(tool, exc):
                return
            how = "at the tool"
        tool.clear_tried_at, tool.clear_refused = float("-inf"), ""
        cleared = tool.alarm
        self._note(tool, f"alarm {cleared} cleared ({how})")
        if not await self._taken_out(tool, cleared) or await self._latched_at_clear(
                tool, cleared):
            return
        # Said cleared (E10 back from down) once the tool is back in service, not while what
        # the alarm kept inside is still coming out.
        self._report(ToolReport(tool.name, "alarm_cleared", code=cleared))
        # Back in service only now: a pass in the meantime must not give it a wafer.
        tool.alarm = 0
        for wafer_id in sorted(self._held.pop(tool.name, set())):
            wafer = self.wafers.get(wafer_id)
            # Held at the interlock, not by a person (theirs stands: a batch's member a
            # person held as the batch formed, beside the others its interlock held).
            if wafer is not None and wafer.run.phase is Phase.HELD and (
                    wafer.run.machine.hold_reason.startswith(INTERLOCK)):
                wafer.run.resume(
                    f"{tool.name} back in service (alarm {cleared} cleared); "
                    "interlocks are checked again before the step"
                )

    async def _latched_at_clear(self, tool: ScheduledTool, cleared: int) -> bool:
        """A tool that shows one alarm at a time latches another whose cause is still present
        as CLEAR takes the first (the independent RF-10N); it is read once more, or it would
        be heard of only at the tool's next use, never when the lot has none. True when one
        did: it is the tool's now, reported, and the tool stays out of service for it. The
        same code again is taken for our CLEAR not applied yet (a tool a tick late)."""
        again = await read_alarm(tool)
        if again is None or again.code == cleared:
            return False
        self._report(ToolReport(tool.name, "alarm_cleared", code=cleared))
        tool.alarm, tool.clear_tried_at = again.code, self.clock.now()
        self._report(ToolReport(tool.name, "alarm", again.text, again.code))
        return True

    async def _taken_out(self, tool: ScheduledTool, cleared: int) -> bool:
        """What the cleared alarm kept inside comes out: the failed wafer (its kind's abort),
        a judged carrier (then its riders go on). False when an alarm latched again
        meanwhile: the tool stays out of service for that one, and what is still inside
        is taken out once it too is cleared."""
        left = self._left_inside.pop(tool.name, None)
        left_out = True
        if left is not None:  # the failed wafer the alarm kept inside comes out first
            wafer_id, step = left
            notes = await kind_of(step).abort(tool.driver, step, wafer_id)
            for note in notes:
                self._note(tool, f"{wafer_id}: {note} (alarm {cleared} cleared)")
            left_out = not any(n.startswith(ABORT_UNFINISHED) for n in notes)
        kept = self._kept.pop(tool.name, None)
        carrier_out = kept is None or await self._carrier_out(tool, cleared, *kept)
        if left_out and carrier_out:
            return True
        again = await read_alarm(tool)
        if again is not None:
            if left is not None and not left_out:
                self._left_inside[tool.name] = left
            if kept is not None and not carrier_out:
                self._kept[tool.name] = kept
            tool.clear_tried_at = self.clock.now()
            if again.code != cleared:  # the same one: latched again, or our CLEAR not yet
                self._report(ToolReport(tool.name, "alarm_cleared", code=cleared))  # applied
                tool.alarm = again.code
                self._report(ToolReport(tool.name, "alarm", again.text, again.code))
            return False
        if kept is not None and not carrier_out:
            self._note(tool, f"batch {kept[0].batch_id}: carrier not unloaded after alarm "
                       f"{cleared} was cleared ({tool.name} still holds it); its wafers stay "
                       "held for a person")
        return True

    async def _carrier_out(self, tool: ScheduledTool, cleared: int, batch: Batch, step: Step,
                           held: set[str]) -> bool:
        """The alarm that kept a judged carrier in is cleared: the carrier out (the kind's
        ``close_batch``), and only once the tool says so do its held riders go on. False
        when it did not come out (another alarm latched since, say: ``_clear`` decides)."""
        for look in range(2):
            try:
                out = await kind_of(step).close_batch(tool.driver, batch)
            except ToolError as exc:
                self._note(tool, f"batch {batch.batch_id}: carrier not unloaded: {exc.detail}")
                return False
            if out:
                break
            if look == 0:  # a tool may apply our CLEAR on its next tick: look once more
                await self.clock.sleep(CLEAR_APPLY_S)
        if not out:
            return False
        self._note(tool, f"batch {batch.batch_id}: carrier unloaded (alarm {cleared} cleared)")
        for wafer_id in sorted(held):
            wafer = self.wafers.get(wafer_id)
            # Held for the carrier, not by a person who asked for a hold since (theirs).
            if wafer is not None and wafer.run.phase is Phase.HELD and (
                    wafer.run.machine.hold_reason.startswith(
                        f"the carrier of batch {batch.batch_id} ")):
                wafer.run.resume(f"the carrier of batch {batch.batch_id} is out of {tool.name} "
                                 f"(alarm {cleared} cleared): it goes on with its judged result")
        return True

    async def _reset_at_the_tool(self, tool: ScheduledTool, refused: ToolError) -> bool:
        """Our CLEAR was refused: the cause is still there, or no alarm is latched any more
        (a person reset it at the tool: hostlink.md's CLR answers NAK 04 to both). True when
        the tool shows none now; another alarm raised since becomes the tool's. Either way
        not cleared is tried again CLEAR_RETRY_S later, and its refusal told once."""
        try:
            latched: Alarm | None = await tool.driver.alarm()
        except ToolError:
            latched = Alarm(tool.alarm, "")  # not known: still out of service
        if latched is None:
            return True
        tool.clear_tried_at = self.clock.now()
        if latched.code != tool.alarm:  # reset at the tool, and another raised since
            self._report(ToolReport(tool.name, "alarm_cleared", code=tool.alarm))
            tool.alarm, tool.clear_refused = latched.code, ""
            self._report(ToolReport(tool.name, "alarm", latched.text, latched.code))
        elif refused.detail != tool.clear_refused:  # told once, not on every try
            tool.clear_refused = refused.detail
            self._note(tool, f"alarm {tool.alarm} not cleared: {refused.detail}")
        remedy = REMEDIES.get((tool.role, latched.code))
        if remedy is not None:
            self._hold_for_remedy(tool, latched, remedy)
        return False

    def _hold_for_remedy(self, tool: ScheduledTool, alarm: Alarm, remedy: str) -> None:
        """An alarm only a person's remedy clears (``REMEDIES``): the wafers waiting for the
        tool's role, with no other tool of it in service, are held naming the alarm and its
        remedy (they go on when it is cleared, as those its interlock held). Before, they
        waited for a CLEAR that could never be taken: the run never ended, nobody was asked
        (a 102 PASTE EMPTY during a print). Alarms whose cause a person removes at the tool
        (a door, an e-stop) are still waited for, as before."""
        self._hold_waiting(tool, f"interlock: {tool.name} alarm {alarm.code} {alarm.text} is "
                           f"not cleared by CLEAR; its remedy is {remedy}, " + REMEDY_HOLD_END)

    def _hold_waiting(self, tool: ScheduledTool, why: str) -> None:
        """The wafers waiting for the tool's role, with no other tool of it in service, are
        held with ``why`` (they go on when the tool is cleared, as those its interlock
        held, or when a person continues them). The hold names the tool, as the runner's
        interlock holds do, so the line's "interlock" alarm names it (docs/events.md)."""
        if any(t.role == tool.role and t.alarm == 0 and not t.lost
               for t in self.tools.values()):
            return
        for wafer in self.wafers.values():
            run = wafer.run
            if (run.phase is Phase.WAITING and not wafer.running
                    and run.next_role == tool.role):
                self._held.setdefault(tool.name, set()).add(run.wafer_id)
                run.hold(why, tool=tool.name)

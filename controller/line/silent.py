"""Tools that stop answering: out of service, called back, their wafers settled.

A tool whose link has spent its retries is taken out of service with one alarm
naming the wafers inside and the exchange that failed. The scheduler keeps the
rest of the line going; this module asks the silent tool again, backing off
(the wire, not the tool: wall seconds), and once it answers hands the wafers it
had to the line's recovery (each kind's own rules ask the tool what happened to
its wafer) before it takes work again. A wafer still in its step stays there
until the tool, answering again, says what happened to it; a waiting wafer
simply waits for a tool again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from controller.line.scheduled import ScheduledTool, ScheduledWafer, ToolReport
from drivers.clock import Clock
from drivers.errors import LinkError, ToolError

log = logging.getLogger("controller.line.scheduler")

# Asking a silent tool again: wall seconds (the wire, not the tool), doubling up to a cap.
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0


class Line(Protocol):
    async def settle(self, tool: ScheduledTool, wafers: list[ScheduledWafer]) -> None: ...


class Scheduler(Protocol):
    """What calling a silent tool back uses of the scheduler (controller/line/scheduler.py)."""

    clock: Clock
    wafers: dict[str, ScheduledWafer]

    @property
    def line(self) -> Line: ...
    @property
    def stopping(self) -> bool: ...
    def report(self, report: ToolReport) -> None: ...
    def spawn(self, coro: Any, *, setup: bool = False) -> None: ...


def link_lost(sched: Scheduler, tool: ScheduledTool, wafer: ScheduledWafer | None,
              exc: LinkError, also: tuple[ScheduledWafer, ...] = ()) -> None:
    """The tool did not answer: out of service, an alarm naming the wafers inside, and a
    call-back. ``wafer`` is the one whose exchange failed (None: a changeover's); ``also``
    the others it failed for at once (a batch's riders)."""
    for w in (wafer, *also) if wafer is not None else also:
        w.run.link_lost = None
        if w.run.machine.where.in_step:
            tool.stranded.add(w.run.wafer_id)
    if tool.lost:
        return  # already reported; this wafer joins the ones it had
    tool.lost = exc.detail
    tool.setup = None  # what it is set up for is asked again when it is back
    inside = tuple(sorted(tool.stranded | tool.riding))
    sched.report(ToolReport(tool.name, "link_lost", exc.detail,
                            wafer_id=inside[0] if inside else None, wafers=inside))
    sched.spawn(call_back(sched, tool))


async def call_back(sched: Scheduler, tool: ScheduledTool) -> None:
    """Ask the silent tool again, backing off, until it answers or the line stops; then
    settle the wafers it had and put it back."""
    pause = RECONNECT_FIRST_S
    while not sched.stopping:
        await asyncio.sleep(pause)
        pause = min(pause * 2, RECONNECT_MAX_S)
        if any(w.running for w in sched.wafers.values()
               if w.run.wafer_id in tool.riding):
            continue  # a rider's step still talks to it: let that one finish first
        if await answers(tool):
            break
    else:
        return  # stopped: --resume asks the tool about its wafers
    tool.take(sched.clock.now())  # nothing is dispatched to it while it is settled
    try:
        stranded = [sched.wafers[w] for w in sorted(tool.stranded) if w in sched.wafers]
        tool.stranded.clear()
        sched.report(ToolReport(tool.name, "link_back", f"answers again; settling "
                                f"{len(stranded)} wafer(s) it had",
                                wafers=tuple(w.run.wafer_id for w in stranded)))
        tool.lost = ""
        if stranded:
            await sched.line.settle(tool, stranded)
    finally:
        tool.release(sched.clock.now())  # the task's end wakes the loop (the scheduler's spawn)


async def answers(tool: ScheduledTool) -> bool:
    """Does the tool answer now? A link that broke (a closed connection) is opened anew."""
    try:
        await tool.driver.status()
        return True
    except ToolError:
        pass
    link = getattr(tool.driver, "link", None) or getattr(tool.driver, "port", None)
    if link is None:
        return False
    try:
        await link.close()
        await link.open()
        await tool.driver.status()
    except (ToolError, OSError) as exc:
        log.info("%s: still not answering: %s", tool.name, exc)
        return False
    return True

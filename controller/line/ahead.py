"""Setting a tool up ahead of its wafers.

An idle tool whose setup is not known, with no wafer waiting for it, is set up
for the first step on its role the most urgent unfinished wafer will need, so
the wafers find it ready: the oven heats to its first profile while the printer
changes paste and prints (from cold, about as long as the printer's changeover
plus a print), the plater's baths heat (about 2,000 s from cold), the cleaner's
bath reaches its wash temperature. A setup is never changed ahead: a tool whose
setup is known keeps it until a waiting wafer needs another (the changeover
rule of docs/scheduling.md). Each tool is set up ahead once at most: a setup
that failed is left to the wafers' own changeover. An alarm it failed on is
recorded at once and the tool is out of service until the scheduler's CLEAR is
taken, as for a wafer's own changeover: no wafer may have to come to the tool for
the alarm to be heard of (a lot whose wafers all stopped before it ended with the
tool in ALARM and no alarm recorded).
"""

from __future__ import annotations

import logging
from typing import Any

from controller.line.batching import Scheduler
from controller.line.scheduled import ScheduledTool, ToolReport
from controller.line.tool_alarms import read_alarm
from drivers.errors import ToolError
from sequences.kinds import ROLE_OF_KIND, kind_of
from sequences.wafer.machine import Phase

log = logging.getLogger("controller.line.ahead")


def set_up_ahead(sched: Scheduler, tool: ScheduledTool) -> bool:
    """Start setting ``tool`` up for the first step an unfinished wafer will need on it
    (the most urgent lot first, then slot order); False if there is nothing to do."""
    if tool.setup is not None or tool.ahead_tried or tool.riding:
        return False
    # Called on every scheduler pass for a tool no recipe step needs (a plater or a mounter
    # beside a rebump lot) too: first the roles of the recipes in play (kept while the
    # wafers are the same), then the role on the kind names, the step looked up last.
    role = tool.role
    if role not in sched.roles_in_play():
        return False
    for wafer in sorted(sched.wafers.values(), key=lambda w: (w.priority, w.order)):
        run = wafer.run
        if run.done or run.phase in (Phase.HELD, Phase.AWAITING) \
                or wafer.lot_id in sched.held_lots:
            continue
        kinds = run.machine.kinds
        for number in range(run.next_step or run.machine.step or run.first, run.last + 1):
            if ROLE_OF_KIND[kinds[number - 1]] != role:
                continue
            step = run.recipe.step(number)
            kind = kind_of(step)
            if kind.role != tool.role:
                continue
            if not kind.can_run(tool.driver):
                break  # e.g. a strip for an FC-1: another tool of the role takes it
            tool.ahead_tried = True
            tool.take(sched.clock.now())
            sched.spawn(_prepare(sched, tool, step, run.recipe.tool_recipe_name(number)),
                        setup=True)
            return True
    return False


async def _prepare(sched: Scheduler, tool: ScheduledTool, step: Any, recipe_name: str) -> None:
    kind = kind_of(step)
    sched.mark_setup(tool, f"setup for a {step.kind} step (ahead of its wafers)")
    try:
        await kind.prepare(tool.driver, step, clock=sched.clock, recipe_name=recipe_name,
                           note=lambda text: sched.note(tool, text))
        tool.setup = kind.setup_key(step)
    except ToolError as exc:
        sched.note(tool, f"setup ahead of the wafers failed: {exc.detail}")
        alarm = await read_alarm(tool)
        if alarm is not None and tool.alarm != alarm.code:
            tool.alarm = alarm.code
            sched.report(ToolReport(tool.name, "alarm", alarm.text, alarm.code))
    except Exception as exc:  # noqa: BLE001 - a fault of ours, not the tool's
        internal_setup_error(sched, tool, "setup ahead of the wafers", exc)
    finally:
        tool.release(sched.clock.now())
        sched.wake()


def internal_setup_error(sched: Scheduler, tool: ScheduledTool, what: str,
                         exc: Exception) -> None:
    """A fault of ours in a setup (a bug, nothing the tool did): the tool is out of service
    for the rest of the run, as after a setup that failed with no alarm (-1: nothing to
    clear, a person decides), told once with the reason; the traceback to the log at -vv.
    Released in service, every pass would start the same setup again, without end."""
    tool.alarm = -1  # first: whatever the note meets, the setup is not started again
    tool.down_why = f"{what} failed: internal error: {type(exc).__name__}: {exc}"
    sched.note(tool, tool.down_why)
    log.debug("the %s's traceback", what, exc_info=exc)

"""Batch tools in the scheduler: when a batch starts, and running it.

A batch tool (the EP-25 plater: up to 25 wafers, one cycle whose time does not
depend on how many ride) takes the waiting wafers that need its setup together.
The start rule (docs/scheduling.md, "Batch tools", has the reasoning):

* **full**: as many wafers wait as one cycle takes (the recipe's ``batch_size``,
  else the tool's 25): start;
* **nobody else is coming**: no other unfinished wafer (not held, not awaiting
  disposition) will reach this step with this setup: start, so the end of a lot
  never waits for wafers that will not come;
* **the batch would be over before it could fill**: a batch started now ends
  before the wafers still to come could fill it (their expected arrival, from
  the nominal times of the steps they still need and the work queued on those
  tools): start, the tool would idle otherwise and the latecomers lose nothing;
* **maximum wait**: the longest-waiting wafer has waited one cycle time: start;
* otherwise wait: the wafers to come arrive before a batch started now would end,
  and riding together saves a whole cycle.

Upstream tools keep working meanwhile: waiting here holds only this tool. The
scheduler calls ``choose`` from its dispatch for a kind whose ``batch`` flag is
set, and ``run_batch`` as the batch's task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from controller.line.scheduled import ScheduledTool, ScheduledWafer, ToolReport
from drivers.clock import Clock
from drivers.errors import LinkError, ToolError
from drivers.types import Alarm
from sequences.kinds import kind_of
from sequences.kinds.barrier import batch_id_for
from sequences.kinds.batch import Batch
from sequences.wafer.machine import Phase


class Scheduler(Protocol):
    """What batch dispatching uses of the scheduler (controller/line/scheduler.py)."""

    clock: Clock
    tools: dict[str, ScheduledTool]
    wafers: dict[str, ScheduledWafer]
    held_lots: set[str]
    batch_log: Any

    def note(self, tool: ScheduledTool, text: str) -> None: ...
    def roles_in_play(self) -> frozenset[str]: ...
    def report(self, report: ToolReport) -> None: ...
    def spawn(self, coro: Any, *, setup: bool = False) -> None: ...
    def wake(self) -> None: ...
    def mark_setup(self, tool: ScheduledTool, text: str) -> None: ...
    def mark_productive(self, tool: ScheduledTool, text: str, wafer_id: str | None) -> None: ...
    async def after_failure(self, wafer: ScheduledWafer, step: Any,
                            tool: ScheduledTool, *, also_hit: tuple[str, ...] = ()) -> None: ...
    def link_lost(self, tool: ScheduledTool, wafers: list[ScheduledWafer],
                  exc: LinkError) -> None: ...
    async def tool_down(self, tool: ScheduledTool, *wafer_ids: str) -> None: ...
    def carrier_kept(self, tool: ScheduledTool, batch: Batch, step: Any, number: int,
                     wafers: list[ScheduledWafer], alarm: Alarm) -> None: ...

MAX_WAIT_CYCLES = 2.0  # the longest a wafer waits for company, in cycle times


@dataclass(frozen=True)
class Decision:
    """What the start rule decided for a batch tool, and why (for the log and tests)."""

    start: list[ScheduledWafer]  # empty: wait
    why: str
    look_again_at: float | None = None  # tool time the rule may change without an arrival


def arrivals(sched: Scheduler, step_key: tuple[Any, ...], role: str,
             waiting: list[ScheduledWafer]) -> tuple[list[float], dict[str, float]]:
    """Expected tool seconds from now until each other unfinished wafer reaches a step of
    ``role`` with this setup, sorted (a lower estimate: each wafer's remaining nominal
    path, and the work queued ahead of it on every role it still needs); and that work
    per role (tool seconds, divided among the role's tools)."""
    here = {w.run.wafer_id for w in waiting}
    counts: dict[str, int] = {}
    for tool in sched.tools.values():
        counts[tool.role] = counts.get(tool.role, 0) + 1
    load: dict[str, float] = {}
    paths: list[float] = []
    for wafer in sched.wafers.values():
        run = wafer.run
        if run.wafer_id in here or run.done or wafer.lot_id in sched.held_lots \
                or run.phase in (Phase.HELD, Phase.AWAITING):
            continue
        current = run.machine.step
        if wafer.running and current is not None:
            start = current + 1  # its current step is under way: counted as nearly over
        else:
            start = run.next_step or current or run.first
        path = 0.0
        reaches = False
        for number in range(start, run.last + 1):
            step = run.recipe.step(number)
            kind = kind_of(step)
            if kind.role == role:
                reaches = kind.setup_key(step) == step_key
                break
            path += kind.nominal_s(step)
            load[kind.role] = load.get(kind.role, 0.0) + kind.occupancy_s(step)
        if reaches:
            paths.append(path)
    per_tool = {r: w / max(1, counts.get(r, 1)) for r, w in load.items()}
    if not paths:
        return [], per_tool
    queued = max(per_tool.values(), default=0.0)
    paths.sort()
    # The k-th arrival: not before its own path, nor before k/n of the queued work.
    n = len(paths)
    return [max(p, queued * (i + 1) / n) for i, p in enumerate(paths)], per_tool


@dataclass(frozen=True)
class Downstream:
    """The steps after the batch step, as the start rule sees them: the busiest role's
    time per wafer, the path to it, and the work already waiting for it."""

    role: str
    per_wafer_s: float
    before_s: float  # nominal path from the batch's end to that role's step (and through it)
    backlog_s: float  # work for it from wafers already past the batch step


def downstream(sched: Scheduler, wafer: ScheduledWafer, number: int) -> Downstream:
    run = wafer.run
    counts: dict[str, int] = {}
    for tool in sched.tools.values():
        counts[tool.role] = counts.get(tool.role, 0) + 1
    work: dict[str, float] = {}
    path = 0.0
    for n in range(number + 1, run.last + 1):
        step = run.recipe.step(n)
        kind = kind_of(step)
        work[kind.role] = work.get(kind.role, 0.0) + kind.occupancy_s(step) / max(
            1, counts.get(kind.role, 1))
        path += kind.nominal_s(step)
    if not work:
        return Downstream("", 0.0, 0.0, 0.0)
    role = max(work, key=work.__getitem__)
    past = sum(1 for w in sched.wafers.values() if not w.run.done
               and w.run.recipe is run.recipe and (w.run.machine.step or 0) > number)
    return Downstream(role, work[role], max(0.0, path - work[role]), past * work[role])


def choose(sched: Scheduler, tool: ScheduledTool, same: list[ScheduledWafer]) -> Decision:
    """The batch start rule for the waiting wafers ``same`` (oldest first) on ``tool``."""
    first = same[0]
    step = first.run.recipe.step(first.waiting)
    kind = kind_of(step)
    cap = kind.batch_capacity(step)
    now = sched.clock.now()
    if len(same) >= cap:
        return Decision(same[:cap], f"full ({cap} wafers)")
    coming, load = arrivals(sched, kind.setup_key(step), tool.role, same)
    if not coming:
        return Decision(same, "no other wafer will reach this step")
    cycle = kind.nominal_s(step)
    late = min(cap - len(same), len(coming))  # the wafers that would still fit
    fill = coming[late - 1]  # the wafer that fills it, or the last to come
    if cycle <= fill:
        return Decision(same, f"a batch now ends before the next ones fill it ({fill:.0f} s)")
    now_s, wait_s = finish_times(downstream(sched, first, first.waiting), load,
                                 len(same), late, cycle, fill)
    if now_s <= wait_s:
        return Decision(same, f"starting now ends the wafers sooner ({now_s:.0f} s against "
                        f"{wait_s:.0f} s waiting)")
    oldest = min(w.ready_since for w in same)
    deadline = oldest + MAX_WAIT_CYCLES * cycle
    if now >= deadline:
        return Decision(same, f"waited the maximum ({MAX_WAIT_CYCLES * cycle:.0f} s)")
    return Decision([], f"waiting for {len(coming)} wafer(s), expected within {fill:.0f} s",
                    look_again_at=deadline)


def finish_times(down: Downstream, load: dict[str, float], waiting: int, late: int,
                 cycle: float, fill: float) -> tuple[float, float]:
    """When the waiting and the late wafers would be through the busiest role after the batch
    step (tool seconds from now): starting now (the late ones ride the next batch), or
    waiting ``fill`` seconds for them all to ride together."""
    d = down.per_wafer_s
    free = down.backlog_s + load.get(down.role, 0.0)  # that role's work queued meanwhile

    def through(ends: float, n: int, free_at: float) -> float:
        return max(free_at, ends + down.before_s) + n * d

    first = through(cycle, waiting, free)
    start_now = through(max(cycle, fill) + cycle, late, first)
    wait = through(fill + cycle, waiting + late, free)
    return start_now, wait


def start(sched: Scheduler, group: list[ScheduledWafer], tool: ScheduledTool) -> Batch:
    """Take the tool for the group and run its batch in a task of the scheduler's."""
    ids = [w.run.wafer_id for w in group]
    batch = Batch(batch_id_for(ids, sched.clock.now()), ids, tool.name)
    number = group[0].waiting
    step = group[0].run.recipe.step(number)
    parameters = dict(kind_of(step).parameters(step))
    if sched.batch_log is not None:  # written before the carrier is loaded
        sched.batch_log.started(batch.batch_id, tool.name, step.kind, parameters, ids,
                                sched.clock.now())
    sched.report(ToolReport(tool.name, "batch_started", wafers=tuple(ids), data={
        "batch_id": batch.batch_id, "step": number, "step_kind": step.kind,
        "parameters": parameters}))
    # An alarm that keeps the carrier in once every rider is judged: recorded, the tool
    # out of service, the riders held until the carrier is out (controller/line/tool_alarms.py).
    batch.kept_inside = lambda alarm: sched.carrier_kept(tool, batch, step, number, group, alarm)
    for wafer in group:
        wafer.running = True
    tool.take(sched.clock.now(), batch.batch_id)
    sched.spawn(run_batch(sched, group, tool, batch, number))
    return batch


async def run_batch(sched: Scheduler, group: list[ScheduledWafer], tool: ScheduledTool,
                    batch: Batch, number: int) -> None:
    """Every member's step ``number`` at once, meeting at the batch; the tool is free once
    the carrier is out. A batch an alarm ended has every rider awaiting disposition with
    that alarm; the alarm is recorded once and cleared if its cause is gone. An alarm
    that latched after the batch ended keeps the carrier in: its judged riders are held
    (``ToolAlarms.carrier_kept``) and go on once it is cleared and the carrier out.

    ``number`` is the step the members waited at when the batch was formed: one may be
    held or aborted before this task first runs (its member then takes no part)."""
    step = group[0].run.recipe.step(number)
    kind = kind_of(step)
    sched.mark_productive(tool, f"{step.kind} batch {batch.batch_id} "
                          f"({len(group)} wafers)", group[0].run.wafer_id)
    try:
        try:
            await asyncio.gather(*(_member(sched, w, tool, batch) for w in group))
        except asyncio.CancelledError:
            await batch.cancel()
            raise
        lost = [w for w in group if w.run.link_lost is not None]
        failed = [w for w in group if w.run.phase is Phase.AWAITING
                  and w.run.machine.failed_step == number]
        held = [w for w in group if w.run.phase is Phase.HELD
                and w.run.machine.held_from == f"step{number}_waiting"]
        if lost:
            # The tool stopped answering with the riders in their step (a power loss): out
            # of service, one alarm naming them all, and called back, as a single wafer's
            # tool; recovery then asks it what became of the batch. Nothing is sent now.
            exc = lost[0].run.link_lost
            assert exc is not None
            sched.link_lost(tool, lost, exc)
        if failed:
            await sched.after_failure(failed[0], step, tool, also_hit=tuple(
                w.run.wafer_id for w in failed[1:]))
        elif held and not lost:
            # Every member its interlock held (the tool found in alarm as the batch formed):
            # all go on once the alarm is cleared, not only the first (one alarm read).
            await sched.tool_down(tool, *(w.run.wafer_id for w in held))
        if lost:
            # Left open, as a stopped controller leaves it: the tool's word (once it answers
            # and recovery has settled the riders) closes the record, not this silence.
            return
        try:
            await kind.close_batch(tool.driver, batch)
        except ToolError as exc:
            sched.note(tool, f"batch {batch.batch_id}: carrier not unloaded: {exc.detail}")
        verdict = _verdict(group, number)
        if sched.batch_log is not None:
            sched.batch_log.ended(batch.batch_id, tool_time=sched.clock.now(), **verdict)
        sched.report(ToolReport(tool.name, "batch_ended", wafers=batch.members, data={
            "batch_id": batch.batch_id, "step": number, "step_kind": step.kind,
            "riders": list(batch.riders), **verdict}))
    finally:
        tool.release(sched.clock.now())
        sched.wake()


def _verdict(group: list[ScheduledWafer], number: int) -> dict[str, Any]:
    """How the batch ended, from its members' records: the tool's status and baths from
    a judged wafer, the alarm from a wafer it failed."""
    out: dict[str, Any] = {"state": "failed", "status": None}
    for wafer in group:
        judgment = wafer.run.judgments.get(number)
        if judgment is not None:
            m = judgment.measurements
            out.update(state="done", status=m.get("batch_status"),
                       ni_bath_c=m.get("ni_bath_c"), au_bath_c=m.get("au_bath_c"))
            break
    for wafer in group:
        for event in reversed(wafer.run.events):
            code = (event.measurements or {}).get("alarm_code")
            if event.step == number and event.trigger == "step_failed" and code:
                out.update(state="failed", status=out["status"] or "ALARM", alarm_code=code,
                           alarm_text=event.measurements.get("alarm_text"))
                return out
    return out


async def _member(sched: Scheduler, wafer: ScheduledWafer, tool: ScheduledTool,
                  batch: Batch) -> None:
    run = wafer.run
    try:
        if run.next_step is not None:
            await run.run_step(tool.driver, batch=batch)
    except ToolError as exc:  # the runner turns tool errors into events; belt and braces
        sched.note(tool, f"{run.wafer_id}: {exc}")
    finally:
        batch.leave(run.wafer_id)
        wafer.running = False
        wafer.ready_since = sched.clock.now()

"""Running lots: the store, the recipes and the scheduler put together.

``LineController.run(lot_ids)`` takes queued (or unfinished) lots, builds one
wafer run per wafer, recovers wafers that were mid-step when a controller
stopped, and lets the scheduler drive the line. Every wafer event is committed
to the store from inside the event callback, i.e. before the tool command that
follows it (persist before acting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.e10 import E10State
from controller.scheduler import Scheduler, ToolSlot, WaferSlot, step_parameters, step_windows
from controller.store import LotInfo, LotState, Store, StoreError
from drivers.clock import Clock
from sequences.machine import AWAITING, FINAL_STATES, HELD, QUEUED, WaferEvent
from sequences.recipe import Recipe, ReflowStep, Step
from sequences.runner import WaferRun

log = logging.getLogger("controller.lots")

REQUEST_LOOK_S = 1.0  # wall seconds between looks at operator and engineer requests

RecipeLoader = Callable[[str], Recipe]


@dataclass
class Progress:
    """What a live display needs; the controller calls these, they must be quick."""

    on_event: Callable[[WaferEvent], None] = lambda event: None
    on_tool_note: Callable[[str, str], None] = lambda tool, text: None
    on_waiting_for_people: Callable[[list[str]], None] = lambda wafers: None


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
        tools: Any,  # drivers.tools.LineTools
        clock: Clock,
        *,
        recipes: RecipeLoader,
        user: str = "controller",
        progress: Progress | None = None,
        wait_for_dispositions: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.recipes = recipes
        self.user = user
        self.progress = progress or Progress()
        self.wait_for_dispositions = wait_for_dispositions
        self._e10: dict[str, str] = {}
        self.scheduler = Scheduler(
            {name: (tools.role_of(name), driver) for name, driver in tools.items()},
            clock,
            on_event=self._persist_event,
            on_step_start=self._step_started,
            on_tool_note=self._tool_note,
            on_changeover=self._changeover_started,
            on_alarm=self._alarm,
            before_load=self._before_oven_load,
            poll_requests=self._handle_requests,
        )
        self._lots: list[str] = []
        self._intents: dict[str, int] = {}
        self._next_request_look = 0.0

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
        if lot.state in (LotState.COMPLETE.value, LotState.ABORTED.value):
            raise StoreError(f"lot {lot_id} is {lot.state}: nothing to run")
        recipe = self._recipe_for(lot)
        if lot.state == LotState.QUEUED.value:
            self.store.set_lot_state(lot_id, LotState.RUNNING, user=self.user)
        elif lot.state == LotState.HELD.value:
            self.scheduler.held_lots.add(lot_id)
        for wafer in self.store.wafers(lot_id):
            if wafer.state in FINAL_STATES:
                continue
            run = self._wafer_run(recipe, wafer.id, wafer.state)
            self.scheduler.add_wafer(recipe, wafer.id, lot_id, lot.priority, run=run)
        self._lots.append(lot_id)

    def _wafer_run(self, recipe: Recipe, wafer_id: str, state: str) -> WaferRun:
        """A run for a wafer in ``state`` as stored (recovery for anything past queued)."""
        if state == QUEUED:
            return WaferRun(recipe, wafer_id, self.clock)
        from controller.recovery import recovered_run

        return recovered_run(self.store, recipe, wafer_id, state, self.clock)

    async def run(self, lot_ids: list[str]) -> list[LotOutcome]:
        for lot_id in lot_ids:
            self.add_lot(lot_id)
        from controller.recovery import settle_recovered

        await settle_recovered(self)
        while True:
            await self.scheduler.run()
            self._close_finished_lots()
            blocked = self._waiting_for_people()
            if not blocked or not self.wait_for_dispositions or self.scheduler.stopping:
                break
            self.progress.on_waiting_for_people(blocked)
            await self._wait_for_request()
        return [self._outcome(lot_id) for lot_id in self._lots]

    def stop(self) -> None:
        """Ctrl-C: no new steps start; running ones finish and are recorded."""
        self.scheduler.stop()

    @property
    def stopped(self) -> bool:
        return self.scheduler.stopping

    async def _wait_for_request(self) -> None:
        # Requests come from other processes (bumpline wafer disposition) through the
        # database, which has no notification: look once a second.
        while not self.store.pending_requests() and not self.scheduler.stopping:  # noqa: ASYNC110
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
                self.store.set_lot_state(
                    lot_id, LotState.COMPLETE, user=self.user, reason="every wafer finished"
                )

    def _outcome(self, lot_id: str) -> LotOutcome:
        lot = self.store.get_lot(lot_id)
        return LotOutcome(lot_id, lot.state, {w.id: w.state for w in self.store.wafers(lot_id)})

    # --- persistence hooks (called synchronously, before the next tool command) --------------

    def _persist_event(self, event: WaferEvent, wafer: WaferSlot) -> None:
        # The transition and the step record it opens or closes commit together.
        with self.store.atomic():
            self._record_event(event, wafer)
        self.progress.on_event(event)

    def _record_event(self, event: WaferEvent, wafer: WaferSlot) -> None:
        self.store.record_event(event)
        run = wafer.run
        if event.trigger == "tool_acquired":
            step = run.recipe.step(event.step)
            wafer.step_id = self.store.start_step(
                event.wafer_id,
                event.step,
                step.kind,
                event.tool or "?",
                step_parameters(step),
                windows=step_windows(step),
                tool_time=event.tool_time,
            )
        elif wafer.step_id is not None and event.trigger in ("judged_ok", "step_failed", "abort"):
            step = run.recipe.step(event.step) if event.step else None
            self._end_step(wafer, step, event)

    def _end_step(self, wafer: WaferSlot, step: Step | None, event: WaferEvent) -> None:
        status = {"judged_ok": "done", "step_failed": "failed", "abort": "aborted"}[event.trigger]
        curve = liquidus = None
        result = getattr(wafer.run, "results", {}).get(event.step) if event.step else None
        if isinstance(step, ReflowStep) and result is not None:
            curve = list(result.curve_c)
            liquidus = step.tal_threshold_c
        results = dict(event.measurements)
        if event.trigger != "judged_ok" and event.why:
            results.setdefault("why", event.why)
        self.store.end_step(
            wafer.step_id,
            status=status,
            results=results,
            curve_c=curve,
            liquidus_c=liquidus,
            tool_time=event.tool_time,
            fetch=False,
        )
        intent = self._intents.pop(event.wafer_id, None)
        if intent is not None:
            self.store.resolve_intent(intent, "done")
        wafer.last_step_id, wafer.step_id = wafer.step_id, None

    def _before_oven_load(self, wafer_id: str) -> None:
        wafer = self.scheduler.wafers.get(wafer_id)
        # One intent per step: a LOAD the oven refused and the step tries again is the same
        # intent (nothing went on the belt the first time).
        if wafer is not None and wafer.step_id is not None and wafer_id not in self._intents:
            self._intents[wafer_id] = self.store.record_intent(wafer.step_id, "LOAD", tool="oven")

    def _step_started(self, wafer: WaferSlot, step: Step, tool: ToolSlot) -> None:
        self._tool_state(tool, E10State.PRODUCTIVE, f"{step.kind} {wafer.run.wafer_id}")

    def _changeover_started(self, tool: ToolSlot, step: Step) -> None:
        self._tool_state(tool, E10State.SCHEDULED_DOWN, f"setup for a {step.kind} step")

    def _tool_note(self, tool: ToolSlot, text: str) -> None:
        self.store.audit(tool.name, "tool.note", text)
        self.progress.on_tool_note(tool.name, text)

    def _alarm(self, tool: ToolSlot, code: int, text: str, wafer_id: str | None) -> None:
        if code:
            wafer = self.scheduler.wafers.get(wafer_id or "")
            self.store.alarm_set(
                tool.name,
                code,
                text,
                wafer_id=wafer_id,
                step_id=wafer.last_step_id if wafer else None,
                tool_time=self.clock.now(),
            )
            self._tool_state(tool, E10State.UNSCHEDULED_DOWN, f"alarm {code} {text}")
            self.progress.on_tool_note(
                tool.name, f"ALARM {code} {text}" + (f" (wafer {wafer_id})" if wafer_id else "")
            )
        else:
            self.store.alarm_cleared(tool.name)
            self._tool_state(tool, E10State.STANDBY, "alarm cleared")

    def _tool_state(self, tool: ToolSlot, state: E10State, reason: str) -> None:
        if self._e10.get(tool.name) == state.value:
            return
        self._e10[tool.name] = state.value
        self.store.record_tool_state(tool.name, state, reason=reason, tool_time=self.clock.now())

    # --- operator and engineer requests ------------------------------------------------------

    def _handle_requests(self) -> None:
        # People type slower than this; looking once a second keeps the hot loop cheap.
        now = time.monotonic()
        if now < self._next_request_look:
            return
        self._next_request_look = now + REQUEST_LOOK_S
        for request in self.store.pending_requests():
            if request.lot_id not in self._lots:
                continue
            note = self._apply(request)
            self.store.mark_request_handled(request.id, note=note)
            self.scheduler.wake()

    def _apply(self, request: Any) -> str:
        from sequences.errors import SequenceError

        wafers = [w for w in self.scheduler.wafers.values() if w.lot_id == request.lot_id]
        action = request.action
        if action == "hold_lot":
            self.scheduler.held_lots.add(request.lot_id)
            return "no new steps start for this lot"
        if action == "resume_lot":
            self.scheduler.held_lots.discard(request.lot_id)
            return "lot resumed"
        if action == "abort_lot":
            self.scheduler.held_lots.add(request.lot_id)  # nothing new starts meanwhile
            for wafer in wafers:
                if not wafer.run.done:
                    self._spawn_abort(wafer, request.reason or "lot aborted")
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

    def _spawn_abort(self, wafer: WaferSlot, why: str) -> None:
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

        self.scheduler._spawn(abort())  # noqa: SLF001

"""A wafer run's recovery moves: settling a step whose end the run did not see.

After a controller stop the line's recovery (``controller/line/recovery.py``) puts each
``WaferRun`` back into the state the store recorded (``restore``) and, for a wafer found
mid-step, carries out what the step kind's rule found at the tool: the result taken and
judged as if this run had waited for it (``adopt_result``), back to waiting when the step
provably never reached its tool (``back_to_waiting``), or an engineer's decision
(``fail_recovered``). A one-wafer run, with no line to wait for a silent tool, settles a
lost link itself (``give_up_on_link``).

``WaferRun`` (``sequences/wafer/runner.py``) inherits these; ``Run`` says what they use
of it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from drivers.errors import LinkError
from drivers.protocols import AnyTool
from drivers.types import Alarm
from sequences.errors import SequenceError
from sequences.kinds.base import StepResult
from sequences.recipes.recipe import Recipe, Step
from sequences.wafer.journal import StepClosed, StepOpened
from sequences.wafer.machine import Phase, WaferEvent, WaferMachine, waiting


class Run(Protocol):
    """What the recovery moves use of the run (``WaferRun``)."""

    recipe: Recipe
    wafer_id: str
    machine: WaferMachine
    link_lost: LinkError | None
    _idle: asyncio.Event
    _driver: AnyTool | None
    _step_open: bool

    @property
    def state(self) -> str: ...
    @property
    def phase(self) -> Phase: ...
    def _fire(self, trigger: str, *, why: str = "", tool: str | None = None,
              measurements: dict[str, Any] | None = None, opens: StepOpened | None = None,
              closes: StepClosed | None = None, deferrable: bool = False) -> WaferEvent: ...
    def _fail(self, why: str, tool: str, measurements: dict[str, Any]) -> None: ...
    async def _finish(self, number: int, step: Step, driver: AnyTool,
                      outcome: StepResult, *, unloaded: bool = False) -> str: ...


class RecoveryMoves:
    """The moves of a ``WaferRun`` that settle a step after a controller stop or a lost
    link (mixed into ``WaferRun``)."""

    # What they set on the run, typed as the run has them.
    link_lost: LinkError | None
    _driver: AnyTool | None
    _step_open: bool

    def restore(self: Run, state: str, **kwargs: Any) -> None:
        """Back into the state the store recorded (see WaferMachine.restore); a step that
        was in progress has its record open."""
        self.machine.restore(state, **kwargs)
        self._step_open = self.machine.where.in_step

    def back_to_waiting(self: Run, why: str) -> None:
        """Recovery: the step in progress provably never reached its tool; its record is
        closed as aborted and the wafer waits for a tool again."""
        number = self.machine.where.step
        if number is None or not self.machine.where.in_step:
            raise SequenceError(f"wafer {self.wafer_id} is {self.state}: no step in progress")
        closes = StepClosed("aborted", {"why": why}) if self._step_open else None
        self._step_open = False
        self.machine.restore(waiting(number), announce=why, closes=closes)

    async def adopt_result(self: Run, driver: AnyTool, result: object, *,
                           unloaded: bool = False, alarms: tuple[Alarm, ...] = (),
                           repaired: bool = False) -> str:
        """The step in progress when the controller stopped has its result at the tool (or
        stored with its ``step_done``): judge it and go on exactly as if this run had waited
        for it."""
        where = self.machine.where
        if where.step is None or not where.in_step:
            raise SequenceError(f"wafer {self.wafer_id} is {self.state}: no step in progress")
        self._idle.clear()
        self._driver = driver
        try:
            return await self._finish(where.step, self.recipe.step(where.step), driver,
                                      StepResult(result, list(alarms), repaired),
                                      unloaded=unloaded)
        finally:
            self._idle.set()

    def give_up_on_link(self: Run) -> None:
        """No one waits for the tool to answer again (a one-wafer run): a lost link holds a
        waiting wafer, or fails its step, as any other tool error does."""
        exc, self.link_lost = self.link_lost, None
        if exc is None:
            return
        if self.phase is Phase.WAITING:
            if self.machine.may("hold"):
                self._fire("hold", why=f"interlock: {exc}", tool=exc.tool)
        else:
            self._fail(f"tool error: {exc.detail}", exc.tool, {"error": type(exc).__name__})

    def fail_recovered(self: Run, why: str) -> None:
        """Recovery could not tell what happened to the step in progress: an engineer decides."""
        if self.machine.may("step_failed"):
            self._fire("step_failed", why=f"recovery: {why}")
        elif self.machine.may("hold"):
            self._fire("hold", why=f"recovery: {why}")

"""What the print and place steps share: a HostLink/1 tool that takes one wafer at a time.

Both tools load a wafer (LOD), start it (PRT / PLC), keep it in DONE with its
result until the host unloads it (ULD), and take ABT while working
(../shared/specs/paste-printer.md, ball-placer.md).
"""

from __future__ import annotations

import logging
import weakref
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from drivers.clock import Clock
from drivers.errors import LinkError, ToolError, WrongState
from sequences.kinds.base import (
    NeverTaken,
    Note,
    Recovering,
    S,
    Settled,
    StepContext,
    StepKind,
    StepResult,
    TakeResult,
    ToolView,
    Unknown,
    expect,
    timeout_for,
    wait_free,
    when_in,
)
from sequences.wafer.journal import guarded

log = logging.getLogger("sequences.kinds.hostlink_step")

SETTLE_WAIT_S = 1800.0  # recovery waits this long for a step the tool is still running


class HostLinkStepKind(StepKind[S]):
    states: ClassVar[Any]  # the tool's state enum (PrinterState, PlacerState)
    what: ClassVar[str]  # how an operator calls the tool
    load_s: ClassVar[float]
    unload_s: ClassVar[float]  # ULD's nominal time
    to_idle_s: ClassVar[float]  # from ULD to IDLE at the most (a printer may wipe)

    @abstractmethod
    def cycle_s(self, step: S) -> float:
        """From start to result (print passes and SPI; flux, place and inspect)."""

    @abstractmethod
    async def start(self, driver: Any) -> None:
        """The guarded start command (PRT, PLC)."""

    @abstractmethod
    async def change_setup(self, driver: Any, step: S) -> str:
        """Send the setup change (CHG) the step needs; what was changed, for the log."""

    parameters_called: ClassVar[str]  # what the tool calls the stored recipe (the log)

    async def prepare(self, driver: Any, step: S, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        """CHG when the mounted setup differs (and wait it out), then RCP."""
        status = await self.free(driver, clock)
        if self.setup_mismatches(step, ToolView(status)):
            note(await self.change_setup(driver, step))
            await expect(clock, self.changeover_s)
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.changeover_s))
        await _send_recipe(driver, step.tool_recipe(recipe_name))  # type: ignore[attr-defined]
        note(f"{self.parameters_called} {recipe_name} stored (RCP)")

    async def execute(self, driver: Any, step: S, ctx: StepContext, seen: ToolView
                      ) -> StepResult:
        await self.release_own(driver, seen)
        recipe = step.tool_recipe(ctx.recipe_name)  # type: ignore[attr-defined]
        if _SENT.get(driver) != recipe:  # RCP once per setup: the tool keeps it until a CHG
            await _send_recipe(driver, recipe)
        return await self.load_and_run(driver, step, ctx, lambda: self.start(driver))

    async def settle(self, driver: Any, step: S, wafer: Recovering, clock: Clock) -> Settled:
        return await self.settle_hostlink(driver, wafer, self.start)

    def busy(self, status: Any, wafer_id: str) -> bool:
        st = self.states
        return status.state not in (st.IDLE, st.DONE, st.ALARM) or (
            status.state is st.DONE and status.wafer_id != wafer_id)

    def occupied(self, status: Any, wafer_id: str) -> list[str]:
        st = self.states
        if status.state is st.IDLE or (
                status.state is st.DONE and status.wafer_id == wafer_id):
            return []
        return [f"{self.what} is {status.state.value}"
                + (f" with wafer {status.wafer_id}" if status.wafer_id else "")]

    async def look(self, driver: Any, step: S, wafer_id: str, status: Any) -> ToolView:
        own = status.state is self.states.DONE and status.wafer_id == wafer_id
        return ToolView(status, own_wafer_done=own)

    async def free(self, driver: Any, clock: Clock) -> Any:
        return await wait_free(self, driver, "", clock, timeout_for(self.changeover_s))

    async def release_own(self, driver: Any, seen: ToolView) -> None:
        """Our own wafer left in the tool by an earlier alarm or abort goes out first."""
        if seen.own_wafer_done:
            _SENT.pop(driver, None)  # an alarm or abort came between: send RCP again
            await driver.unload()
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))

    async def load_and_run(self, driver: Any, step: S, ctx: StepContext,
                           start: Callable[[], Awaitable[Any]]) -> StepResult:
        st = self.states
        try:
            await driver.load(ctx.wafer_id)
        except WrongState:
            # LOD needs an RCP (NAK 04 without one): a CHG (an alarm's remedy, the console)
            # or a restarted tool cleared the one we sent. Nothing was loaded: send the
            # step's again and load. NAK 04 again (the tool not IDLE) is the tool's word.
            _SENT.pop(driver, None)
            await _send_recipe(driver, step.tool_recipe(ctx.recipe_name))  # type: ignore[attr-defined]
            await driver.load(ctx.wafer_id)
        await expect(ctx.clock, self.load_s)
        async with guarded(ctx.journal, ctx.wafer_id, self.guarded[0], driver.name):
            await when_in(driver, st.READY, timeout_for(self.load_s), start)
        cycle = self.cycle_s(step)
        await expect(ctx.clock, cycle)
        return StepResult(await when_in(driver, st.DONE, timeout_for(cycle),
                                        driver.result))

    async def unload(self, driver: Any, step: S) -> None:
        await driver.unload()
        await expect(driver.clock, self.unload_s)
        try:
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))
        except LinkError as exc:
            # ULD was acknowledged: the wafer is out and judged. A tool silent now is the
            # next step's to find (wait_free), not a reason to hold this wafer.
            log.warning("%s: not answering after ULD of a judged wafer: %s", driver.name, exc)

    async def abort(self, driver: Any, step: S, wafer_id: str) -> list[str]:
        st = self.states
        notes: list[str] = []
        try:
            status = await driver.status()
            if status.wafer_id == wafer_id and status.state not in (st.DONE, st.IDLE):
                await driver.abort()
                notes.append("ABT sent")
                status = await driver.wait_for(st.DONE, st.IDLE,
                                               timeout_s=timeout_for(10.0))
            if status.state is st.DONE and status.wafer_id == wafer_id:
                await driver.unload()
                notes.append("wafer unloaded")
        except ToolError as exc:
            notes.append(f"could not finish the abort: {exc}")
        return notes

    async def settle_hostlink(self, driver: Any, wafer: Recovering,
                              start: Callable[[Any], Awaitable[None]]) -> Settled:
        """The tool holds the wafer: start it if it was only loaded and no start was
        journalled, wait for its result, take it. It does not: it was never loaded (the
        load follows the committed transition, only a judged wafer is unloaded)."""
        st = self.states
        status = await driver.status()
        if status.wafer_id == wafer.wafer_id:
            if status.state is st.LOADING:
                status = await driver.wait_for(st.READY, st.DONE,
                                               timeout_s=timeout_for(self.load_s))
            if status.state is st.READY:
                # Loaded and not started. A start whose intent is open may be on its way:
                # the tool's READY says it never arrived (HostLink answers before it acts).
                wafer.note(f"{driver.name} holds it loaded: starting it")
                await start(driver)
            if status.state is not st.DONE:
                await driver.wait_for(st.DONE, timeout_s=SETTLE_WAIT_S)
            return TakeResult(await driver.result(), how=f"{driver.name} still holds it: "
                              "taking its result")
        started = [c for c in self.guarded if c in wafer.intents]
        if started and not wafer.judging:
            # Its start was sent, yet the tool shows no wafer: it forgot (a power loss, a
            # restart) what it may have done. Never run twice on a guess.
            return Unknown(f"{driver.name} no longer shows the wafer, and its {started[0]} "
                           "was sent: done or not, an engineer decides")
        if not wafer.judging:
            return NeverTaken(f"{driver.name} never took it")
        return Unknown(f"{driver.name} no longer shows the wafer")


# The parameters each HostLink tool holds, as we last sent them (RCP): the tool keeps
# them until a CHG, so a step sends them only when they differ (a LOD refused for want
# of them, NAK 04, sends them again).
_SENT: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


async def _send_recipe(driver: Any, recipe: Any) -> None:
    _SENT.pop(driver, None)  # a refused or lost RCP leaves the tool's unknown
    await driver.set_recipe(recipe)
    _SENT[driver] = recipe

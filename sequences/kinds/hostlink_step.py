"""What the print and place steps share: a HostLink/1 tool that takes one wafer at a time.

Both tools load a wafer (LOD), start it (PRT / PLC), keep it in DONE with its
result until the host unloads it (ULD), and take ABT while working
(../shared/specs/paste-printer.md, ball-placer.md).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from drivers.clock import Clock
from drivers.errors import ToolError
from sequences.journal import guarded
from sequences.kinds.base import (
    NeverTaken,
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
            await driver.unload()
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))

    async def load_and_run(self, driver: Any, step: S, ctx: StepContext,
                           start: Callable[[], Awaitable[Any]]) -> StepResult:
        st = self.states
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
        await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))

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
        if not wafer.judging:
            return NeverTaken(f"{driver.name} never took it")
        return Unknown(f"{driver.name} no longer shows the wafer")

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
from typing import Any, ClassVar, Protocol, TypeVar

from drivers.clock import Clock
from drivers.errors import (
    AlarmActive,
    InterlockActive,
    LinkError,
    ToolAlarm,
    ToolError,
    WrongState,
)
from drivers.protocols import Tool
from drivers.types import PlacerState, PlacerStatus, PrinterState, PrinterStatus
from sequences.kinds.base import (
    ABORT_UNFINISHED,
    AlarmBeforeEntry,
    NeverTaken,
    Note,
    R,
    Recovering,
    RefusedBeforeEntry,
    S,
    Settled,
    StepContext,
    StepKind,
    StepResult,
    StoppedByAlarm,
    TakeResult,
    ToolView,
    Unknown,
    expect,
    expect_watching,
    timeout_for,
    tool_note,
    wait_free,
    when_in,
)
from sequences.wafer.journal import guarded

log = logging.getLogger("sequences.kinds.hostlink_step")

SETTLE_WAIT_S = 1800.0  # recovery waits this long for a step the tool is still running
# ABT has no time in the specs: a tool that applies commands on its next tick still shows
# the state before (READY, LOADING: neither leads to DONE or IDLE by itself) on an STS
# sent straight after the ACK. Wait this long first (decision 13, docs/protocols.md).
ABORT_APPLY_S = 1.0
# hostlink.md's NAK 06 INTERLOCK: a tool may refuse motion while, say, its door is open
# without latching an alarm (nothing was changed). The step sends the command again this
# often while the interlock lasts, and fails after INTERLOCK_WAIT_S (a person is at the
# tool: the failure says why, and the wafer goes to an engineer; refused before the wafer
# went in, it is held at the tool's interlock instead: ``enter``).
INTERLOCK_RETRY_S = 5.0
INTERLOCK_WAIT_S = 300.0

T = TypeVar("T")


async def past_interlock(driver: Tool[Any], command: Callable[[], Awaitable[T]],
                         note: Note | None = None) -> T:
    """``command()``, sent again while the tool refuses it with NAK 06 (see above); the
    wait told once in the log and to ``note`` (the line's tool notes: the operator; by
    default the note of the step running on the tool)."""
    note = note or tool_note(driver)  # an unload or repair: its step's operator note
    deadline = driver.clock.now() + INTERLOCK_WAIT_S
    told = False
    while True:
        try:
            return await command()
        except InterlockActive:
            if driver.clock.now() >= deadline:
                raise
            if not told:
                text = (f"refused by a safety interlock (NAK 06: a door open?): asking again "
                        f"every {INTERLOCK_RETRY_S:g} s for up to {INTERLOCK_WAIT_S:g} s")
                log.warning("%s: %s", driver.name, text)
                if note is not None:
                    note(text)
                told = True
            await driver.clock.sleep(INTERLOCK_RETRY_S)


class HostLinkTool(Tool[Any], Protocol):
    """The verbs the printer and the mounter share (drivers/protocols.py Printer, Placer)."""

    async def load(self, wafer_id: str) -> None: ...
    async def result(self) -> Any: ...  # the tool's result dataclass (the kind's R)
    async def unload(self) -> None: ...
    async def abort(self) -> None: ...


H = TypeVar("H", bound=HostLinkTool)
HSt = TypeVar("HSt", bound=PrinterStatus | PlacerStatus)


class HostLinkStepKind(StepKind[S, H, HSt, R]):
    states: ClassVar[type[PrinterState] | type[PlacerState]]  # the tool's state enum
    what: ClassVar[str]  # how an operator calls the tool
    load_s: ClassVar[float]
    unload_s: ClassVar[float]  # ULD's nominal time
    to_idle_s: ClassVar[float]  # from ULD to IDLE at the most (a printer may wipe)
    # The states after a ULD in which the tool may still show the wafer it hands out.
    handing_out: ClassVar[frozenset[PrinterState] | frozenset[PlacerState]]

    @abstractmethod
    def cycle_s(self, step: S) -> float:
        """From start to result (print passes and SPI; flux, place and inspect)."""

    @abstractmethod
    async def start(self, driver: H) -> None:
        """The guarded start command (PRT, PLC)."""

    @abstractmethod
    async def change_setup(self, driver: H, step: S) -> str:
        """Send the setup change (CHG) the step needs; what was changed, for the log."""

    @abstractmethod
    async def store_recipe(self, driver: H, step: S, recipe_name: str) -> None:
        """Store the step's parameters on the tool under ``recipe_name`` (RCP)."""

    parameters_called: ClassVar[str]  # what the tool calls the stored recipe (the log)

    def forget(self, driver: H) -> None:
        _SENT.pop(driver, None)  # an engineer's RCP (same stencil, other parameters) shows nowhere

    async def before_load(self, driver: H, step: S, ctx: StepContext, seen: ToolView[HSt]
                          ) -> None:
        """What the tool needs before this wafer's LOD (the printer: a wipe)."""

    async def send_recipe(self, driver: H, step: S, recipe_name: str,
                          note: Note | None = None) -> None:
        """RCP, remembered: a refused or lost one leaves what the tool holds unknown. Our
        simulator refuses it with NAK 06 while a door is open, as any but the common five:
        asked again as the CHG before it and the LOD after it are."""
        _SENT.pop(driver, None)
        await past_interlock(driver, lambda: self.store_recipe(driver, step, recipe_name), note)
        _SENT[driver] = (recipe_name, step)

    async def prepare(self, driver: H, step: S, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        """CHG when the mounted setup differs (and wait it out), then RCP."""
        status = await self.free(driver, clock)
        if self.setup_mismatches(step, ToolView(status)):
            note(await past_interlock(driver, lambda: self.change_setup(driver, step), note))
            await expect_watching(clock, self.changeover_s, lambda: self.no_alarm(driver))
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.changeover_s))
        await self.send_recipe(driver, step, recipe_name, note)
        note(f"{self.parameters_called} {recipe_name} stored (RCP)")

    async def execute(self, driver: H, step: S, ctx: StepContext, seen: ToolView[HSt]
                      ) -> StepResult[R]:
        await self.release_own(driver, seen)
        await self.enter(driver, step, ctx, seen)
        return await self.run_loaded(driver, step, ctx, lambda: self.start(driver))

    async def enter(self, driver: H, step: S, ctx: StepContext, seen: ToolView[HSt]) -> None:
        """RCP (once per setup: kept until a CHG), what the tool needs first, then LOD. Up to
        LOD's ACK nothing of the wafer is in the tool (a NAK changes nothing), so a refusal
        or an alarm here is no failed step for an engineer: ``BeforeEntry``, the wafer held
        at the tool's interlock (the scheduler's alarm handling clears an alarm; a refusal
        with none is looked at again). PRT, RES, ULD come with the wafer inside: failed."""
        try:
            if _SENT.get(driver) != (ctx.recipe_name, step):
                await self.send_recipe(driver, step, ctx.recipe_name, ctx.note)
            await self.before_load(driver, step, ctx, seen)
            await self.load_wafer(driver, step, ctx)
        except InterlockActive as exc:  # past the wait
            raise RefusedBeforeEntry(driver.name, f"{driver.name} refused {exc.command} for "
                                     f"{INTERLOCK_WAIT_S:g} s (NAK 06 INTERLOCK: a door "
                                     "open?)") from exc
        except AlarmActive as exc:  # latched since the interlock check (a door, our simulator)
            alarm = await driver.alarm()
            if alarm is None:  # reset at the tool since: looked at again as a refusal
                raise RefusedBeforeEntry(driver.name, f"{driver.name} refused "
                                         f"{exc.command} (NAK 05 ALARM ACTIVE)") from exc
            raise AlarmBeforeEntry(driver.name, alarm.code, alarm.text) from exc
        except ToolAlarm as exc:  # latched during a wipe before the LOD
            raise AlarmBeforeEntry(driver.name, exc.code, exc.text) from exc

    async def load_wafer(self, driver: H, step: S, ctx: StepContext) -> None:
        def load() -> Awaitable[None]:
            return past_interlock(driver, lambda: driver.load(ctx.wafer_id), ctx.note)

        try:
            await load()
        except WrongState:
            # LOD needs an RCP (NAK 04 without one): a CHG (an alarm's remedy, the console)
            # or a restarted tool cleared the one we sent. Nothing was loaded: send the
            # step's again and load. NAK 04 again (the tool not IDLE) is the tool's word.
            await self.send_recipe(driver, step, ctx.recipe_name, ctx.note)
            await load()

    async def settle(self, driver: H, step: S, wafer: Recovering, clock: Clock) -> Settled:
        return await self.settle_hostlink(driver, step, wafer, self.start, clock)

    def busy(self, status: HSt, wafer_id: str) -> bool:
        st = self.states
        return status.state not in (st.IDLE, st.DONE, st.ALARM) or (
            status.state is st.DONE and status.wafer_id != wafer_id)

    def occupied(self, status: HSt, wafer_id: str) -> list[str]:
        st = self.states
        if status.state is st.IDLE or (
                status.state is st.DONE and status.wafer_id == wafer_id):
            return []
        return [f"{self.what} is {status.state.value}"
                + (f" with wafer {status.wafer_id}" if status.wafer_id else "")]

    async def look(self, driver: H, step: S, wafer_id: str, status: HSt) -> ToolView[HSt]:
        own = status.state is self.states.DONE and status.wafer_id == wafer_id
        return ToolView(status, own_wafer_done=own)

    async def no_alarm(self, driver: H) -> None:
        """One STS: ToolAlarm (ALR's text) if the tool is in ALARM (a changeover's look)."""
        status = await driver.status()
        if status.state is self.states.ALARM:
            alarm = await driver.alarm()
            raise ToolAlarm(driver.name, alarm.code if alarm else status.alarm_code,
                            alarm.text if alarm else "")

    async def free(self, driver: H, clock: Clock) -> HSt:
        return await wait_free(self, driver, "", clock, timeout_for(self.changeover_s))

    async def release_own(self, driver: H, seen: ToolView[HSt]) -> None:
        """Our own wafer left in the tool by an earlier alarm or abort goes out first."""
        if seen.own_wafer_done:
            _SENT.pop(driver, None)  # an alarm or abort came between: send RCP again
            await past_interlock(driver, driver.unload)
            # ULD's time first: the tool may still show DONE on an STS right after the ACK,
            # and DONE does not lead to IDLE by itself.
            await expect(driver.clock, self.unload_s)
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))

    async def run_loaded(self, driver: H, step: S, ctx: StepContext,
                         start: Callable[[], Awaitable[None]]) -> StepResult[R]:
        st = self.states
        await expect(ctx.clock, self.load_s)
        async with guarded(ctx.journal, ctx.wafer_id, self.guarded[0], driver.name):
            await when_in(driver, st.READY, timeout_for(self.load_s),
                          lambda: past_interlock(driver, start, ctx.note))
        cycle = self.cycle_s(step)
        await expect(ctx.clock, cycle)
        # RES too: a tool may refuse more than motion while its door is open (our simulator
        # answers only the common five then); the result waits in DONE meanwhile.
        return StepResult(await when_in(driver, st.DONE, timeout_for(cycle),
                                        lambda: past_interlock(driver, driver.result,
                                                               ctx.note)))

    async def unload(self, driver: H, step: S) -> None:
        await past_interlock(driver, driver.unload)
        await expect(driver.clock, self.unload_s)
        try:
            await driver.wait_for(self.states.IDLE, timeout_s=timeout_for(self.to_idle_s))
        except LinkError as exc:
            # ULD was acknowledged: the wafer is out and judged. A tool silent now is the
            # next step's to find (wait_free), not a reason to hold this wafer.
            log.warning("%s: not answering after ULD of a judged wafer: %s", driver.name, exc)

    async def abort(self, driver: H, step: S, wafer_id: str) -> list[str]:
        st = self.states
        notes: list[str] = []
        try:
            status = await driver.status()
            if status.wafer_id == wafer_id and status.state not in (st.DONE, st.IDLE):
                await driver.abort()
                notes.append("ABT sent")
                await expect(driver.clock, ABORT_APPLY_S)
                status = await driver.wait_for(st.DONE, st.IDLE,
                                               timeout_s=timeout_for(10.0))
            if status.state is st.DONE and status.wafer_id == wafer_id:
                await driver.unload()
                notes.append("wafer unloaded")
        except ToolError as exc:
            notes.append(f"{ABORT_UNFINISHED}: {exc}")
        return notes

    async def holds(self, driver: H, wafer_id: str, started: bool) -> bool:
        """(The tool names the wafer it holds; one on its way out is not held.)"""
        status = await driver.status()
        return (status.wafer_id == wafer_id and status.state is not self.states.IDLE
                and status.state not in self.handing_out)

    async def settle_hostlink(self, driver: H, step: S, wafer: Recovering,
                              start: Callable[[H], Awaitable[None]], clock: Clock) -> Settled:
        """The tool holds the wafer: start it if it was only loaded and no start was
        journalled, wait for its result, take it. It does not: it was never loaded (the
        load follows the committed transition, only a judged wafer is unloaded). Handing it
        out (its ULD came after its judgment): as not holding it, once it is out."""
        st = self.states
        status = await driver.status()
        holds = status.wafer_id == wafer.wafer_id
        if holds and status.state in self.handing_out:
            await driver.wait_for(st.IDLE, timeout_s=timeout_for(self.to_idle_s))
            holds = False
        if holds and status.state is st.ALARM:
            return StoppedByAlarm(f"{driver.name} holds it, stopped by alarm "
                                  f"{status.alarm_code}")
        if holds:
            if status.state is st.LOADING:
                status = await driver.wait_for(st.READY, st.DONE,
                                               timeout_s=timeout_for(self.load_s))
            if status.state is st.READY:
                # Loaded and not started. A start whose intent is open may be on its way:
                # the tool's READY says it never arrived (HostLink answers before it acts).
                wafer.note(f"{driver.name} holds it loaded: starting it")
                async with wafer.guarded(self.guarded[0], driver.name):
                    await start(driver)
                # The cycle's time first, as a step does: right after the ACK the tool may
                # still show READY, which does not lead to DONE by itself.
                await expect(clock, self.cycle_s(step))
            if status.state is not st.DONE:
                await driver.wait_for(st.DONE, timeout_s=SETTLE_WAIT_S)
            # Judging after a repair (its step_done says so): judged as repaired, so the
            # tool is never asked for a second repair.
            return TakeResult(await driver.result(), how=f"{driver.name} still holds it: "
                              "taking its result",
                              repaired=bool((wafer.measured or {}).get("repaired")))
        started = [c for c in self.guarded if c in wafer.intents]
        if started and not wafer.judging:
            # Its start was sent, yet the tool shows no wafer: it forgot (a power loss, a
            # restart) what it may have done. Never run twice on a guess.
            return Unknown(f"{driver.name} no longer shows the wafer, and its {started[0]} "
                           "was sent: done or not, an engineer decides")
        if not wafer.judging:
            return NeverTaken(f"{driver.name} never took it")
        return self.judged_before(step, wafer, driver.name)


# The parameters each HostLink tool holds, as we last sent them (RCP): the tool keeps
# them until a CHG, so a step sends them only when they differ (a LOD refused for want
# of them, NAK 04, sends them again). Keyed by the driver; the value is (recipe name, step).
_SENT: weakref.WeakKeyDictionary[Any, tuple[str, Any]] = weakref.WeakKeyDictionary()

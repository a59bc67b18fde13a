"""A barrier batch's one cycle on the EP-25 (../shared/specs/barrier-plater.md): LOAD,
START once the baths are in band, the pushed DONE of its batch id, RESULT?.

The batch's own task (``Barrier.execute``, ``sequences/kinds/barrier.py``) runs
``plate_batch`` once for all its riders: LOAD and START are each a guarded intent per
wafer (persist before acting; a LOAD's intent names the carrier, which recovery
matches). START goes once ``BATH?`` shows both baths in band; an ERR 05 NOT READY at the
band's edge waits for the tool's own ``BATH`` event and starts once more
(``_start_when_ready``, which recovery's START of a loaded carrier uses too). Then the
task waits for the pushed ``DONE`` of its batch id, not for a poll: an alarm, a state
change or a dropped link wakes it to look, since the spec does not promise that DONE
after a power loss (``_until_ended``). A batch an alarm ended raises that alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.clock import Clock
from drivers.errors import RefusedNotReady, ToolAlarm, ToolError
from drivers.types import BatchResult, PlaterBath, PlaterEvent, PlaterState, RunStatus
from sequences.kinds.base import StepContext, timeout_for
from sequences.kinds.batch import Batch
from sequences.wafer.journal import guarded

log = logging.getLogger("sequences.kinds.barrier")  # the barrier step's log, as before

BATH_SETTLE_S = 300.0  # a bath that drifted out of band between check and START
# STATE events that say nothing new while a batch runs (the START's own); any other one
# wakes the batch's wait to look (a power-up STATE, an ALARM state, DONE, IDLE).
GOING = ((PlaterState.LOADED.value,), (PlaterState.RUNNING.value,))


@dataclass
class Cycle:
    """What the batch's cycle on the plater saw (its events and baths)."""

    result: BatchResult | None = None
    bath: PlaterBath | None = None
    alarm: tuple[int, str] | None = None
    done: bool = False  # ``DONE <our batch id>`` heard
    # A reason to look (our DONE, an alarm, a state change, the link gone): not a verdict.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


async def plate_batch(driver: Any, batch: Batch, ctx: StepContext, cycle_s: float) -> Cycle:
    """The batch's one cycle: LOAD, START, and the pushed DONE of its batch id. ``cycle_s``:
    the step's nominal time (a wait with no word of the batch gives up past twice that)."""
    run = Cycle()
    riders = list(batch.riders)

    def heard(event: PlaterEvent) -> None:
        if event.name == "ALARM" and event.fields and event.fields[0] not in ("741",):
            code = int(event.fields[0]) if event.fields[0].isdigit() else 0
            run.alarm = (code, " ".join(event.fields[1:]))
            run.wake.set()
        elif event.name == "DONE" and event.fields[:1] == (batch.batch_id,):
            run.done = True
            run.wake.set()
        elif event.name == "STATE" and event.fields[:1] not in GOING:
            run.wake.set()

    unsubscribe = driver.on_event(heard)
    unsubscribe_lost = driver.on_link_lost(lambda why: run.wake.set())
    try:
        await _unload_if_done(driver)  # an ended batch's carrier (see ``Barrier.look``)
        async with contextlib.AsyncExitStack() as stack:
            for wafer_id in riders:  # the intent names the carrier (recovery matches it)
                await stack.enter_async_context(guarded(
                    batch.journals[wafer_id] or ctx.journal, wafer_id,
                    f"LOAD {batch.batch_id}", driver.name))
            await driver.load(batch.batch_id, riders)

        async def start() -> None:  # each copy its own intents: persist before acting
            async with contextlib.AsyncExitStack() as stack:
                for wafer_id in riders:
                    await stack.enter_async_context(guarded(
                        batch.journals[wafer_id] or ctx.journal, wafer_id, "START",
                        driver.name))
                run.wake.clear()  # what came before START says nothing of the batch
                await driver.start()

        # The interlocks saw the baths in band; START needs them there still.
        run.bath = await _start_when_ready(driver, ctx.clock, start)
        state = await _until_ended(driver, run, ctx.clock, cycle_s)
        result = await _last_result(driver)
    finally:
        unsubscribe()
        unsubscribe_lost()
    if result is None or result.batch_id != batch.batch_id:
        if state is not PlaterState.ALARM:
            named = f"batch {result.batch_id}" if result else "no batch"
            raise ToolError(driver.name, f"RESULT? names {named}, expected "
                            f"{batch.batch_id} (the plater is {state})")
        result = None  # an alarm stopped it and no result says so yet (it may at CLEAR)
    run.result = result
    if result is None or result.status is RunStatus.ALARM:
        code, text = run.alarm or (0, "")
        if not code:
            alarm = await driver.alarm()
            code, text = (alarm.code, alarm.text) if alarm else (0, "batch ended by an alarm")
        raise ToolAlarm(driver.name, code, text)
    return run


async def _first(*aws: Any) -> None:
    """Until the first of ``aws`` ends; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def _last_result(driver: Any) -> BatchResult | None:
    """RESULT?: the last finished batch (None: none has finished, ERR 02)."""
    try:
        result: BatchResult = await driver.result()
    except ToolError:
        return None
    return result


async def _start_when_ready(driver: Any, clock: Clock, start: Callable[[], Awaitable[None]]
                            ) -> PlaterBath:
    """``start()`` once ``BATH?`` shows both baths in band; the baths as it went.

    ERR 05 NOT READY changed nothing (the tool judges its ±1 °C on its own reading, which
    BATH? may print rounded; or its door): wait for the tool's own ``BATH`` event (it
    pushes one as a bath comes into its band) for up to BATH_SETTLE_S, look at the baths
    again and start once more. A second refusal is the caller's error."""
    reached = asyncio.Event()
    unsubscribe = driver.on_event(lambda e: reached.set() if e.name == "BATH" else None)
    try:
        bath: PlaterBath = await driver.wait_bath_ready(timeout_s=timeout_for(BATH_SETTLE_S))
        reached.clear()  # only a bath coming into band after the refusal counts
        try:
            await start()
        except RefusedNotReady as exc:
            log.info("%s: %s; waiting for the baths again, then START once more",
                     driver.name, exc.detail)
            await _first(reached.wait(), clock.sleep(BATH_SETTLE_S))
            bath = await driver.wait_bath_ready(timeout_s=timeout_for(BATH_SETTLE_S))
            await start()
    finally:
        unsubscribe()
    return bath


async def _until_ended(driver: Any, run: Cycle, clock: Clock, cycle_s: float) -> PlaterState:
    """Until our batch's DONE is heard (DONE), or the tool, looked at on a wake-up, is no
    longer running it (its state then). A wake-up while it still runs waits again: no
    polling. Past twice the cycle with no word, or once it stopped running, STATE? is
    polled until DONE, IDLE (a power loss: the carrier was rinsed by hand) or ALARM."""
    deadline = clock.now() + timeout_for(cycle_s)
    while not run.done:
        left = deadline - clock.now()
        if left <= 0:
            break
        await _first(run.wake.wait(), clock.sleep(left))
        if run.done or not run.wake.is_set():
            break  # our DONE, or the time is up
        run.wake.clear()
        if (await driver.state()) is not PlaterState.RUNNING:  # reopens a dropped link
            break
    if run.done:
        return PlaterState.DONE
    status = await driver.wait_for(PlaterState.DONE, PlaterState.IDLE, PlaterState.ALARM,
                                   timeout_s=timeout_for(cycle_s))
    return status.state


async def _unload_if_done(driver: Any) -> bool:
    if (await driver.status()).state is PlaterState.DONE:
        await driver.unload()
        return True
    return False


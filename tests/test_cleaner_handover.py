"""The cleaner's handover byte for byte: one clean's DONE to the next wafer's START.

The cleaner is the line's bottleneck, and between two cycles it waits for the round
trips of the handover, each a wall-clock wait that grows in tool seconds with the
clock's scale (issue 12). These tests run the clean kind (interlock look, execute,
unload) on the real driver and ``ModbusLink`` against a scripted wire, as
``test_modbus_exchanges.py`` does, and pin the exact request list: the inputs are
read in the cycle's last moments (not after UNLOAD), the poll waits what REMAINING_S
says, and on the FC-2, whose map lists IR 7-9, the DONE poll carries the result's id.
Frames are written out from ../shared/specs/flux-cleaner.md and flux-cleaner-fc2.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from test_modbus_exchanges import (
    COMMAND_START,
    COMMAND_UNLOAD_FC,
    DONE_READ,
    INPUTS,
    RECIPE_READ,
    RESULT_ID,
    ExpectedExchanges,
    Pair,
    rtu,
)

from drivers.cleaner import KNOWN_FOR_S, FluxCleaner
from drivers.clock import ManualClock
from drivers.modbus_link import ModbusLink
from drivers.types import CleanerState
from sequences.kinds.base import StepContext, ToolView, wait_free
from sequences.kinds.flux_clean import FLUX_CLEAN
from sequences.recipes.recipe import CleanStep
from sequences.wafer.journal import MemoryJournal

STEP = CleanStep(wash_temp_c=60.0, wash_time_s=120, rinse_time_s=60, dry_time_s=60,
                 spray_pressure_bar=3.0, max_ionic_ug_cm2=1.0)  # RECIPE_READ's values
CYCLE_S = 240.0
ID_07 = "4C4F 5434 322D 3037 0000 0000 0000 0000"  # "LOT42-07"
ID_08 = "4C4F 5434 322D 3038 0000 0000 0000 0000"  # "LOT42-08"
COMMAND_LOAD = "06 0005 0001"  # HR 5 = 1
READY_STATUS = [(rtu("04 0000 0005"), rtu("04 0A 0001 0259 0096 0000 0000")),  # IR 0-4
                (rtu(INPUTS), rtu("02 01 00"))]  # nothing set


def wafer_in(ident: str) -> list[Pair]:
    """WAFER_ID (HR 10-17), then COMMAND = LOAD, then COMMAND = START."""
    return [(rtu("10 000A 0008 10 " + ident), rtu("10 000A 0008")),
            (rtu(COMMAND_LOAD), rtu(COMMAND_LOAD)),
            (rtu(COMMAND_START), rtu(COMMAND_START))]


class Wire:
    """The scripted tool, noting the tool time of every request."""

    def __init__(self, pairs: Sequence[Pair], clock: ManualClock) -> None:
        self.script = ExpectedExchanges(pairs)
        self.clock = clock
        self.times: list[float] = []

    def __call__(self, request: bytes) -> bytes | None:
        self.times.append(self.clock.now())
        return self.script(request)


@contextlib.asynccontextmanager
async def cleaner_on(pairs: Sequence[Pair], model: str = "fc-1"
                     ) -> AsyncIterator[tuple[FluxCleaner, Wire]]:
    clock = ManualClock()
    wire = Wire(pairs, clock)
    link = ModbusLink.in_memory(wire, tool="cleaner-1", unit=2, framer="rtu", timeout_s=0.05)
    await link.open()
    try:
        yield FluxCleaner(link, clock, register_map=model), wire
    finally:
        await link.close()
    wire.script.assert_used_up()


async def clean(cleaner: FluxCleaner, wafer_id: str, *, unload: bool = True) -> ToolView:
    """One wafer's clean step as the runner drives it: the tool free, the interlock look
    (no reason to hold), execute up to the result, unload."""
    clock = cleaner.clock
    status = await wait_free(FLUX_CLEAN, cleaner, wafer_id, clock, 60.0)
    seen = await FLUX_CLEAN.look(cleaner, STEP, wafer_id, status)
    assert FLUX_CLEAN.interlocks(STEP, seen, wafer_id) == []
    ctx = StepContext(wafer_id, clock, "CLEAN", MemoryJournal())
    result = (await FLUX_CLEAN.execute(cleaner, STEP, ctx, seen)).result
    assert result.wafer_id == wafer_id and FLUX_CLEAN.judge(STEP, result, wafer_id).ok
    if unload:
        await FLUX_CLEAN.unload(cleaner, STEP)
    return seen


async def test_the_handover_from_done_to_the_next_start_is_six_requests() -> None:
    pairs = [
        *READY_STATUS, RECIPE_READ,  # the first wafer's look: status, recipe (once)
        *wafer_in(ID_07),
        (rtu(INPUTS), rtu("02 01 01")),  # the cycle's last moments: wafer in, nothing set
        # --- the handover: DONE with the residue, the result's id, UNLOAD; then the next
        # wafer's interlocks ask nothing (READY by our UNLOAD, the bath and alarm from the
        # DONE read, the inputs from just before it): WAFER_ID, LOAD, START
        DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        *wafer_in(ID_08),
        # the second cycle, as the first
        (rtu(INPUTS), rtu("02 01 01")),
        (DONE_READ[0], rtu("04 0E 0006 0259 0096 0000 0000 0028 0001")),
        (RESULT_ID[0][0], rtu("04 10 " + ID_08)),
    ]
    async with cleaner_on(pairs) as (cleaner, wire):
        await clean(cleaner, "LOT42-07")
        seen = await clean(cleaner, "LOT42-08", unload=False)
    assert seen.status.state is CleanerState.READY and not seen.status.wafer_present
    assert seen.status.wash_temp_c == 60.1  # the DONE read's bath
    # The inputs go at the cycle's end (their read takes no tool time on this clock), the
    # DONE poll right after: nothing waits for a poll interval.
    starts = [i for i, (want, _) in enumerate(pairs) if want == rtu(COMMAND_START)]
    for start in starts:
        assert wire.times[start + 1] == wire.times[start + 2] == wire.times[start] + CYCLE_S


async def test_the_inputs_seen_before_done_hold_the_next_wafer_without_a_request() -> None:
    pairs = [
        *READY_STATUS, RECIPE_READ, *wafer_in(ID_07),
        (rtu(INPUTS), rtu("02 01 03")),  # wafer in, CHEMISTRY_LOW
        DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
    ]
    async with cleaner_on(pairs) as (cleaner, _):
        await clean(cleaner, "LOT42-07")
        status = await wait_free(FLUX_CLEAN, cleaner, "LOT42-08", cleaner.clock, 60.0)
        seen = await FLUX_CLEAN.look(cleaner, STEP, "LOT42-08", status)
    assert status.chemistry_low and not status.wafer_present
    assert FLUX_CLEAN.interlocks(STEP, seen, "LOT42-08") == ["chemistry low"]


async def test_inputs_seen_too_long_before_or_without_the_wafer_are_read_again() -> None:
    pairs = [
        *READY_STATUS, RECIPE_READ, *wafer_in(ID_07),
        (rtu(INPUTS), rtu("02 01 01")),
        DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        # the next look comes more than KNOWN_FOR_S after: the status is read whole
        *READY_STATUS,
        *wafer_in(ID_08),
        (rtu(INPUTS), rtu("02 01 00")),  # no wafer while the cycle runs: not trusted
        (DONE_READ[0], rtu("04 0E 0006 0259 0096 0000 0000 0028 0001")),
        (RESULT_ID[0][0], rtu("04 10 " + ID_08)),
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu(INPUTS), rtu("02 01 00")),  # after UNLOAD: the inputs read (bath known)
    ]
    async with cleaner_on(pairs) as (cleaner, _):
        await clean(cleaner, "LOT42-07")
        cleaner.clock.advance(KNOWN_FOR_S + 1)
        await clean(cleaner, "LOT42-08")
        assert (await cleaner.status()).state is CleanerState.READY


async def test_a_poll_that_finds_the_cycle_running_waits_its_remaining_seconds() -> None:
    drying_1s = rtu("04 0E 0005 0259 0096 0001 0000 0032 0001")  # DRYING, REMAINING_S 1
    pairs = [
        *READY_STATUS, RECIPE_READ, *wafer_in(ID_07),
        (rtu(INPUTS), rtu("02 01 01")),
        (DONE_READ[0], drying_1s),
        DONE_READ, *RESULT_ID,
    ]
    async with cleaner_on(pairs) as (cleaner, wire):
        assert cleaner.poll_s == 2.0
        await clean(cleaner, "LOT42-07", unload=False)
    assert wire.times[-2] - wire.times[-3] == 1.0  # not poll_s


async def test_on_the_fc2_the_done_poll_carries_the_result_id() -> None:
    # FC-2: IR 7-9 (STRIP_TEMP_PV, RESULT_MASK_RESIDUE, MODE_ACTIVE) are listed, so the
    # poll reads IR 0-17 in one request; MODE (HR 6) is written before each LOAD.
    mode_clean = "06 0006 0001"
    done_0_17 = ("04 24 0006 0259 0096 0000 0000 0032 0001 0190 0000 0001 " + ID_07)
    pairs = [
        (rtu("04 0000 000A"), rtu("04 14 0001 0259 0096 0000 0000 0032 0001 0190 0000 0000")),
        (rtu("02 0000 0005"), rtu("02 01 00")),
        RECIPE_READ,
        (rtu(mode_clean), rtu(mode_clean)), *wafer_in(ID_07),
        (rtu("02 0000 0005"), rtu("02 01 01")),
        (rtu("04 0000 0012"), rtu(done_0_17)),  # DONE, its residue and id: one read
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu(mode_clean), rtu(mode_clean)), *wafer_in(ID_08),
    ]
    async with cleaner_on(pairs, model="fc-2") as (cleaner, _):
        await clean(cleaner, "LOT42-07")
        status = await wait_free(FLUX_CLEAN, cleaner, "LOT42-08", cleaner.clock, 60.0)
        seen = await FLUX_CLEAN.look(cleaner, STEP, "LOT42-08", status)
        assert FLUX_CLEAN.interlocks(STEP, seen, "LOT42-08") == []
        await cleaner.load("LOT42-08")
        await cleaner.start()

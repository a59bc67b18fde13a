"""The nickel bath's life weighed for a whole batch, on the simulated plater over its TCP
text protocol: a batch that would take the bath past 6.0 MTO is held at its interlock
with the reason, nothing reaches the tool; after REPLENISH the same wafers ride.

The tool itself checks the life only before START (740), so without the host's check
a batch started at 5.97 MTO plates on while the pH falls below 4.4 (720 mid-batch).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from drivers.types import PlaterState
from sequences.kinds.barrier import BARRIER, mto_after
from sequences.kinds.batch import Batch
from sequences.recipes.recipe import find_recipe
from sequences.wafer.journal import MemoryJournal
from sequences.wafer.machine import WaferEvent
from sequences.wafer.runner import WaferRun
from sim.line import SimulatedLine

SNCU = find_recipe("rebump-sncu-niau-snpb")
STEP = SNCU.step(4)  # the barrier: 3 µm Ni
WAFERS = ("BL-01", "BL-02", "BL-03")
AGED_MTO = 5.97  # + 0.004 x 3 wafers x 3 µm = 6.006: past the life, the pH ends < 4.4


async def _ride(driver: Any, runs: list[WaferRun], batch: Batch) -> list[str]:
    """Every member's step at once, meeting at the batch (as the scheduler runs them)."""
    async def member(run: WaferRun) -> str:
        try:
            return await run.run_step(driver, batch=batch)
        finally:
            batch.leave(run.wafer_id)

    return list(await asyncio.gather(*(member(r) for r in runs)))


async def test_a_bath_near_its_life_holds_the_batch_until_replenished() -> None:
    clock = ScaledClock(2000.0)
    async with SimulatedLine(clock=clock, seed=11, layout={"plater": 1}) as line:
        config = parse_line_config(line.config_text())
        plater = line.models["plater-1"]
        sent: list[str] = []

        def trace(tool: str, direction: str, data: Any) -> None:
            if direction == ">":
                sent.append(str(data).strip())

        async with open_line(config, clock, trace=trace) as tools:
            driver = tools["plater-1"]
            await BARRIER.prepare(driver, STEP, clock=clock, recipe_name="bumpline",
                                  note=lambda _: None)  # the baths at temperature
            plater.age_bath(AGED_MTO, clock.now())
            assert mto_after(AGED_MTO, len(WAFERS), STEP.ni_um) > 6.0
            events: list[WaferEvent] = []
            journal = MemoryJournal(listeners=[events.append])
            runs = [WaferRun(SNCU, w, clock, steps=(4, 4), journal=journal) for w in WAFERS]

            sent.clear()
            held = await _ride(driver, runs, Batch("BHELD", WAFERS, driver.name))
            assert held == ["held"] * 3
            why = ("interlock: nickel bath at 5.97 MTO: this batch (3 wafers x 3 µm Ni) would "
                   "end at 6.01 MTO, past its life of 6 (pH below 4.4 mid-batch): replenish "
                   "it first (REPLENISH)")
            holds = [e for e in events if e.trigger == "hold"]
            assert [(e.wafer_id, e.why, e.tool) for e in holds] == [
                (w, why, "plater-1") for w in WAFERS]
            assert all(r.machine.hold_reason == why for r in runs)
            # Nothing reached the tool but questions; nothing plated, the bath as it was.
            assert sent and all(line.split(" ")[0].endswith("?") for line in sent), sent
            assert plater._batches_started == 0 and plater.batch is None
            assert (plater.state.value, plater.mto) == ("IDLE", AGED_MTO)

            await driver.replenish()  # what the operator does (bumpline tool plater-1 ...)
            await driver.wait_for(PlaterState.IDLE, timeout_s=2 * 3600.0)
            assert (await driver.bath()).ni_mto == 0.0
            for run in runs:
                run.resume("nickel bath replenished")
            done = await _ride(driver, runs, Batch("BFRESH", WAFERS, driver.name))
            assert done == ["complete"] * 3, [r.machine.hold_reason for r in runs]
            assert plater._batches_started == 1
            result = await driver.result()
            assert (result.batch_id, result.status.name, result.wafers) == ("BFRESH", "OK", 3)
            assert plater.mto == pytest.approx(mto_after(0.0, 3, STEP.ni_um))  # 0.036

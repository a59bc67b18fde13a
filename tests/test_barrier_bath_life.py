"""The nickel bath's life weighed for a whole batch, on the simulated line (the plater
over its TCP text protocol): a batch that would take the bath past 6.0 MTO is held at
its interlock with the reason, nothing is plated; after REPLENISH and a person's
continue, the same wafers ride and complete.

The tool itself checks the life only before START (740), so without the host's check
a batch started at 5.97 MTO plates on while the pH falls below 4.4 (720 mid-batch),
and its wafers go to disposition instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.line.controller import LineController
from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from drivers.types import PlaterState
from sequences.kinds.barrier import mto_after
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import load_valid_recipe
from sim.line import SimulatedLine
from tests.test_lot_run import WAIT_S, Watch

SNCU = find_recipe("rebump-sncu-niau-snpb")
STEP = SNCU.step(4)  # the barrier: 3 µm Ni
LAYOUT = {"printer": 1, "placer": 0, "oven": 1, "cleaner": 1, "plater": 1}
AGED_MTO = 5.97  # + 0.004 x 3 wafers x 3 µm = 6.006: past the life, the pH ends < 4.4
WHY = ("interlock: nickel bath at 5.97 MTO: this batch (3 wafers x 3 µm Ni) would end at "
       "6.01 MTO, past its life of 6 (pH below 4.4 mid-batch): replenish it first (REPLENISH)")


async def test_a_bath_near_its_life_holds_the_batch_until_replenished(tmp_path: Path) -> None:
    clock = ScaledClock(2000.0)
    async with SimulatedLine(clock=clock, seed=11, layout=LAYOUT) as line:
        plater = line.models["plater-1"]
        plater.age_bath(AGED_MTO, clock.now())
        assert mto_after(AGED_MTO, 3, STEP.ni_um) > 6.0
        config = parse_line_config(line.config_text())
        with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
            store.create_lot("H1", recipe_name=SNCU.name, recipe_version=SNCU.version,
                             recipe_hash=SNCU.hash, slots=[1, 2, 3], user="t")
            wafers = [w.id for w in store.wafers("H1")]
            async with open_line(config, clock) as tools:
                watch = Watch()
                controller = LineController(store, tools, clock, recipes=load_valid_recipe,
                                            progress=watch.progress(),
                                            wait_for_dispositions=True)
                task = asyncio.create_task(controller.run(["H1"]))
                try:
                    assert sorted(await watch.waiting_for_people()) == wafers
                    # Held before LOAD, every member with the reason; nothing plated.
                    for wafer in wafers:
                        info, last = store.get_wafer(wafer), store.events(wafer)[-1]
                        assert (info.state, last.trigger, last.why) == ("held", "hold", WHY)
                        assert [s.kind for s in store.steps(wafer)] == ["print", "reflow",
                                                                        "clean"]
                    assert plater._batches_started == 0 and plater.batch is None
                    assert (plater.state.value, plater.mto) == ("IDLE", AGED_MTO)
                    assert not store.alarms(tool="plater-1")  # a held batch, no tool alarm

                    # The remedy the reason names, then a person continues each wafer.
                    driver = tools["plater-1"]
                    await driver.replenish()
                    await driver.wait_for(PlaterState.IDLE, timeout_s=2 * 3600.0)
                    for wafer in wafers:
                        store.disposition_wafer(wafer, "continue", user="operator",
                                                reason="nickel bath replenished")
                    (outcome,) = await asyncio.wait_for(task, WAIT_S)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            assert outcome.wafers == dict.fromkeys(wafers, "complete"), outcome.wafers
            for wafer in wafers:
                (barrier,) = [s for s in store.steps(wafer) if s.kind == "barrier"]
                assert barrier.status == "done"
            assert plater._batches_started >= 1 and plater.result.batch_id
            assert plater.mto == pytest.approx(mto_after(0.0, 3, STEP.ni_um))  # 0.036

"""bench_lot's account of what a run adds to the lower bound on a role: the first
cycle's start, each cycle beyond its nominal time, a tool standing free between two
cycles, the time after the last (benchmarks/losses.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from benchmarks.losses import Cycle, losses, role_losses
from sequences.recipes.recipe import find_recipe


def test_the_four_parts_add_up_to_the_run() -> None:
    cycles = [Cycle("cleaner-1", 1000.0, 1250.0, 240.0),  # +10
              Cycle("cleaner-1", 1262.0, 1522.0, 240.0),  # 12 free before, +20
              Cycle("cleaner-1", 1522.0, 1762.0, 240.0)]  # back to back, nominal
    lost = losses("cleaner", reversed(cycles), run_start=100.0, run_end=1800.0)
    assert lost is not None
    assert (lost.cycles, lost.first_start, lost.over_nominal, lost.over_median, lost.idle,
            lost.after_last) == (3, 900.0, 30.0, 10.0, 12.0, 38.0)
    # Every tool second of the run is the head, the nominal work, or one of the losses.
    nominal = sum(c.nominal for c in cycles)
    assert (lost.first_start + nominal + lost.over_nominal + lost.idle + lost.after_last
            == pytest.approx(1800.0 - 100.0))
    assert "+30 s over nominal" in lost.line() and "12 s free" in lost.line()


def test_each_tool_of_a_role_stands_free_on_its_own_and_a_belt_never() -> None:
    two = [Cycle("cleaner-1", 0.0, 100.0, 100.0), Cycle("cleaner-2", 50.0, 150.0, 100.0),
           Cycle("cleaner-1", 130.0, 230.0, 100.0), Cycle("cleaner-2", 150.0, 250.0, 100.0)]
    assert losses("cleaner", two, 0.0, 250.0).idle == 30.0  # only cleaner-1's gap
    # A pipelined tool's records overlap (wafers ride the belt together): no gap.
    belt = [Cycle("oven-1", 0.0, 400.0, 400.0), Cycle("oven-1", 45.0, 450.0, 400.0)]
    lost = losses("oven", belt, 0.0, 450.0)
    assert lost.idle == 0.0 and lost.over_nominal == 5.0
    assert losses("oven", [], 0.0, 1.0) is None


@dataclass
class Record:  # the fields of the store's StepInfo the account reads
    step_index: int
    tool: str
    tool_time_start: float | None
    tool_time_end: float | None


def test_step_records_are_grouped_by_role_with_their_steps_nominal_times() -> None:
    recipe = find_recipe("rebump-hipb-snpb")  # steps 1 print, 2 reflow, 3 clean, ...
    records = [Record(1, "printer-1", 0.0, 80.0), Record(2, "oven-1", 90.0, 500.0),
               Record(3, "cleaner-1", 510.0, 760.0), Record(6, "cleaner-1", 770.0, 1030.0),
               Record(4, "printer-1", 800.0, None)]  # not ended: left out
    found = role_losses(records, recipe.step, 0.0, 1040.0)
    assert set(found) == {"printer", "oven", "cleaner"}
    clean = found["cleaner"]
    assert (clean.cycles, clean.over_nominal, clean.idle, clean.after_last) == (
        2, (250.0 - 240.0) + (260.0 - 240.0), 10.0, 10.0)
    assert found["oven"].over_nominal == pytest.approx(410.0 - 400.0)  # 600 mm/min: 400 s
    assert found["printer"].cycles == 1


def test_a_batch_tools_records_are_left_out() -> None:
    """The plater's one cycle carries the records of every wafer in its batch: counted per
    record, its time over nominal would be counted once for each of them."""
    recipe = find_recipe("rebump-sncu-niau-snpb")  # step 4: barrier (the plater's batches)
    records = [Record(4, "plater-1", 0.0, 5000.0), Record(4, "plater-1", 0.0, 5000.0),
               Record(3, "cleaner-1", 10.0, 260.0)]
    assert set(role_losses(records, recipe.step, 0.0, 5000.0)) == {"cleaner"}

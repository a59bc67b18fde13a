"""A barrier lot on the simulated line: wafers gather in front of the plater, ride one
batch, are judged one by one, and the carrier goes out once (the batch tool)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.line.batch_records import BatchRecords
from controller.line.bound import lower_bound
from controller.line.controller import LineController
from controller.line.events import EventKind, LineEvent
from controller.report import render_lot_report
from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import load_valid_recipe
from sim.line import SimulatedLine

SNCU = find_recipe("rebump-sncu-niau-snpb")
LAYOUT = {"printer": 1, "placer": 0, "oven": 1, "cleaner": 1, "plater": 1}


async def _run_lot(tmp_path: Path, wafers: int, speed: float = 2000.0):
    clock = ScaledClock(speed)
    async with SimulatedLine(clock=clock, seed=11, layout=LAYOUT) as line:
        config = parse_line_config(line.config_text())
        with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
            store.create_lot("B1", recipe_name=SNCU.name, recipe_version=SNCU.version,
                             recipe_hash=SNCU.hash, slots=list(range(1, wafers + 1)), user="t")
            async with open_line(config, clock) as tools:
                plater = dict(tools.items())["plater-1"]
                subscribed = plater.subscribers
                LineController(store, tools, clock, recipes=load_valid_recipe)  # never run
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                assert plater.subscribers == subscribed  # only a running controller listens
                events = controller.events.subscribe("test")
                seen: list[LineEvent] = []

                async def read() -> None:
                    async for event in events:
                        seen.append(event)

                reader = asyncio.create_task(read())
                start = clock.now()
                (outcome,) = await controller.run(["B1"])
                makespan = clock.now() - start
                assert plater.subscribers == subscribed  # and stops when it ends
                events.close()
                await reader
                assert events.missed == 0
            steps = {w.id: store.steps(w.id) for w in store.wafers("B1")}
            records = BatchRecords(store)
            page = render_lot_report(store, "B1")
            assert '<h2 id="batches">' in page and "barrier nickel" in page
            for r in records.batches():
                assert r.id in page  # the batch table, and every wafer's batch id
            assert "ni_bath_c" in page
            return (outcome, steps, line.models, makespan, records.batches(), records.seqs(),
                    seen)


async def test_a_lot_rides_the_plater_in_batches_judged_per_wafer(tmp_path: Path) -> None:
    outcome, steps, models, makespan, records, seqs, seen = await _run_lot(tmp_path, wafers=4)
    barrier = {w: [s for s in ws if s.kind == "barrier"] for w, ws in steps.items()}
    done = {w: s[-1] for w, s in barrier.items() if s and s[-1].status == "done"}
    assert len(done) == len(barrier) == 4, {w: [x.status for x in s] for w, s in barrier.items()}
    batches: dict[str, list[str]] = {}
    for wafer, record in done.items():
        batches.setdefault(record.results["batch_id"], []).append(wafer)
        ni = record.results["ni_um"]
        assert SNCU.step(4).ni_measured_um[0] <= ni <= SNCU.step(4).ni_measured_um[1]
    # Fewer batches than wafers: they rode together, each judged on its own thickness.
    assert len(batches) < 4, batches
    for riders in batches.values():
        assert {done[w].results["batch_wafers"] for w in riders} == {len(riders)}
    # Each wafer's own XRF figure, as the plater measured it (the last batch's record).
    plater = models["plater-1"]
    last = plater.result
    assert sorted(last.wafers) == sorted(batches[last.batch_id])
    for wafer, (ni, au) in last.wafers.items():
        assert abs(done[wafer].results["ni_um"] - ni) < 1e-3  # as sent: 3-4 decimals
        assert abs(done[wafer].results["au_um"] - au) < 1e-3
    assert plater.batch is None  # the carrier went out
    # The record: every batch with its wafers in carrier order, its verdict and its baths;
    # the plater's last event number kept for the next start.
    assert {r.id: sorted(r.wafers) for r in records} == {k: sorted(v) for k, v in
                                                         batches.items()}
    for r in records:
        assert (r.state, r.status, r.tool) == ("done", "OK", "plater-1")
        assert abs(r.ni_bath_c - SNCU.step(4).ni_temp_c) <= 1.0
    assert seqs == {"plater-1": plater.seq}
    assert all(state == "complete" for state in outcome.wafers.values()), outcome.wafers
    bound = lower_bound(SNCU, 4, {"printer": 1, "oven": 1, "cleaner": 1, "plater": 1})
    assert makespan >= bound.seconds
    _batches_on_the_stream(seen, records)


def _batches_on_the_stream(seen: list[LineEvent], records: list) -> None:
    """Each batch starts and ends on the line event stream, in order with its wafers: its
    start after every rider's clean and before any rider's barrier step, its end after
    every rider's barrier step ended; with the wafers and the verdict of its record."""
    assert [e.seq for e in seen] == list(range(seen[0].seq, seen[0].seq + len(seen)))
    number = 4  # the barrier step
    for record in records:
        started = [e for e in seen if e.kind is EventKind.BATCH_STARTED
                   and e.data["batch_id"] == record.id]
        ended = [e for e in seen if e.kind is EventKind.BATCH_ENDED
                 and e.data["batch_id"] == record.id]
        assert len(started) == len(ended) == 1, record.id
        begin, end = started[0], ended[0]
        assert begin.tool == end.tool == "plater-1" and begin.lot_id == end.lot_id == "B1"
        assert begin.data["wafers"] == end.data["wafers"] == list(record.wafers)
        assert (begin.data["step"], begin.data["step_kind"]) == (number, "barrier")
        assert begin.data["parameters"]["ni_um"] == SNCU.step(number).ni_um
        assert (end.data["state"], end.data["status"]) == (record.state, record.status)
        assert end.data["riders"] == list(record.wafers)
        for wafer in record.wafers:
            mine = [e for e in seen if e.wafer_id == wafer and e.kind in (
                EventKind.STEP_STARTED, EventKind.STEP_ENDED)]
            clean_end = next(e for e in mine if e.kind is EventKind.STEP_ENDED
                             and e.data["step"] == number - 1)
            plate = [e for e in mine if e.data["step"] == number]
            assert [e.kind for e in plate] == [EventKind.STEP_STARTED, EventKind.STEP_ENDED]
            assert clean_end.seq < begin.seq < plate[0].seq < plate[1].seq < end.seq

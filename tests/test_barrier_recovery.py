"""A controller stopped dead while its batch plates resumes by asking the plater, and no
wafer is plated twice; a batch an alarm ends sends its wafers to disposition together."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from controller.line.batch_records import BatchRecords
from controller.line.controller import LineController
from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import load_valid_recipe
from sim.faults import parse_faults
from sim.line import SimulatedLine

SNCU = find_recipe("rebump-sncu-niau-snpb")
LAYOUT = {"printer": 1, "placer": 0, "oven": 1, "cleaner": 1, "plater": 1}


def _lot(store: Store, lot_id: str, wafers: int) -> None:
    store.create_lot(lot_id, recipe_name=SNCU.name, recipe_version=SNCU.version,
                     recipe_hash=SNCU.hash, slots=list(range(1, wafers + 1)), user="t")


async def test_a_controller_stopped_mid_batch_resumes_from_the_plater(tmp_path: Path) -> None:
    # 1000x, not 2000x: the second pass rides three wafers on the belt with the simulator
    # in this process; under a loaded machine a 65 ms stall at 2000x let the third reach
    # the exit before the second was taken (alarm 530), which is not what this tests.
    clock = ScaledClock(1000.0)
    async with SimulatedLine(clock=clock, seed=11, layout=LAYOUT) as line:
        config = parse_line_config(line.config_text())
        plater = line.models["plater-1"]
        with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
            _lot(store, "R1", 3)
            async with open_line(config, clock) as tools:
                running = asyncio.Event()
                tools["plater-1"].on_event(
                    lambda e: running.set() if e.name == "STATE" and e.fields[:1] == ("RUNNING",)
                    else None)
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                task = asyncio.create_task(controller.run(["R1"]))
                await asyncio.wait({task, asyncio.ensure_future(running.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                assert running.is_set(), "the lot ended before its batch ran"
                task.cancel()  # dead: no step is closed, nothing more is sent
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            mid = {w.id: w.state for w in store.wafers("R1")}
            assert set(mid.values()) == {"step4_running"}, mid
            seqs = BatchRecords(store).seqs()
            assert seqs["plater-1"] > 0
            # A new controller, a new connection, the event number handed back.
            async with open_line(config, clock, event_seqs=seqs) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                (outcome,) = await controller.run(["R1"])
            assert set(outcome.wafers.values()) == {"complete"}, outcome.wafers
            assert plater._batches_started == 1  # plated once, never START again
            (batch,) = BatchRecords(store).batches()
            assert (batch.state, batch.status, len(batch.wafers)) == ("done", "OK", 3)
            for wafer in store.wafers("R1"):
                barrier = [s for s in store.steps(wafer.id) if s.kind == "barrier"]
                assert [s.status for s in barrier] == ["done"]
                assert barrier[0].results["batch_wafers"] == 3
            notes = [a.detail for a in store.audit_log() if a.action == "wafer.recovery"]
            assert len(notes) == 3 and all("reports batch" in n for n in notes), notes


async def test_a_carrier_loaded_not_started_is_started_at_resume(tmp_path: Path) -> None:
    """Killed between LOAD and START (START's intent written, the command never sent): the
    plater shows the carrier LOADED, which no executed START leaves; the new controller
    starts it, and each wafer is plated once, with no engineer."""
    clock = ScaledClock(2000.0)
    async with SimulatedLine(clock=clock, seed=11, layout=LAYOUT) as line:
        config = parse_line_config(line.config_text())
        plater = line.models["plater-1"]
        with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
            _lot(store, "L1", 3)
            async with open_line(config, clock) as tools:
                driver = tools["plater-1"]
                at_start = asyncio.Event()

                async def start_never_sent() -> None:  # the controller dies right here
                    at_start.set()
                    await asyncio.Event().wait()

                driver.start = start_never_sent
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                task = asyncio.create_task(controller.run(["L1"]))
                await asyncio.wait({task, asyncio.ensure_future(at_start.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                assert at_start.is_set(), "the lot ended before its batch was loaded"
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert plater.state.value == "LOADED" and plater._batches_started == 0
            (batch,) = BatchRecords(store).batches()
            for wafer in store.wafers("L1"):
                assert wafer.state == "step4_running"
                (record,) = [s for s in store.steps(wafer.id) if s.kind == "barrier"]
                intents = {(i.command, i.outcome) for i in store.step_intents(record.id)}
                assert intents == {(f"LOAD {batch.id}", "done"), ("START", None)}, intents
            async with open_line(config, clock, event_seqs=BatchRecords(store).seqs()) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                (outcome,) = await controller.run(["L1"])
            assert set(outcome.wafers.values()) == {"complete"}, outcome.wafers
            assert plater._batches_started == 1 and plater.result.batch_id == batch.id
            for wafer in store.wafers("L1"):
                barrier = [s for s in store.steps(wafer.id) if s.kind == "barrier"]
                assert [s.status for s in barrier] == ["done"]
                assert barrier[0].results["batch_id"] == batch.id
            (closed,) = BatchRecords(store).batches()  # closed from the settled wafers
            assert (closed.state, closed.status) == ("done", "OK")
            notes = [a.detail for a in store.audit_log() if a.action == "wafer.recovery"]
            assert sum("not started (STATE? LOADED): started now" in n for n in notes) == 3
            assert not [n for n in notes if "engineer" in n], notes


async def test_a_batch_an_alarm_ends_sends_every_wafer_to_disposition(tmp_path: Path) -> None:
    clock = ScaledClock(2000.0)
    faults = parse_faults("plater-1:alarm=700@wafer1")
    async with SimulatedLine(clock=clock, seed=11, layout=LAYOUT, faults=faults) as line:
        config = parse_line_config(line.config_text())
        with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
            _lot(store, "A1", 3)
            async with open_line(config, clock) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                (outcome,) = await controller.run(["A1"])
            assert set(outcome.wafers.values()) == {"awaiting_disposition"}, outcome.wafers
            for wafer in store.wafers("A1"):
                barrier = [s for s in store.steps(wafer.id) if s.kind == "barrier"]
                assert barrier[-1].status == "failed"
                assert barrier[-1].results.get("alarm_code") == 700, barrier[-1].results
            (batch,) = BatchRecords(store).batches()
            assert (batch.state, batch.alarm_code) == ("failed", 700)
            assert len(batch.wafers) == 3
            assert any(a.code == 700 and a.tool == "plater-1" for a in store.alarms())

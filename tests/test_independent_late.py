"""The drivers, kinds and a lot against independent Modbus tools that carry each COMMAND out
on their next tick.

reflow-oven.md and flux-cleaner.md say what a COMMAND does and when it is refused (06);
they do not say its effect shows by the time the reply goes out. A tool built on a scan
cycle answers at once and carries the command out at its next tick
(``tests/independent/late.py``): until then it still shows the state before it, and with
one command slot (``pending="busy"``) it answers 06 to a second command meanwhile. The
tools here tick once a tool second and run at 20x, so a round trip (about 1 ms of wall
time, 0.02 tool s) falls inside a tick: the command straight after another always meets
it not yet carried out. The driver waits for a tick (``COMMAND_APPLY_S``) only when a read
or a refusal says so (docs/protocols.md, "A command's effect a tick late").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_tool
from drivers.types import CleanerState, CleanMode, CleanRecipe, CleanStatus, OvenState
from sequences.kinds import kind_of
from sequences.kinds.reflow import REFLOW
from sequences.recipes.recipe import ReflowStep, find_recipe
from tests.independent.fc1 import DONE, LOADED, Cleaner
from tests.independent.fc2 import HR_STRIP_SP, HR_STRIP_TIME, Stripper
from tests.independent.lot import run_lot
from tests.independent.rf10n import N2_ON, READY, Oven
from tests.independent.servers import line_tables, serve

SPEED = 20.0
TICK_S = 1.0
LOT_SPEED = 300.0
SHORT = CleanRecipe(wash_temp_c=60.0, wash_time_s=10, rinse_time_s=10, dry_time_s=10,
                    spray_pressure_bar=3.0)


@contextlib.asynccontextmanager
async def _late(role: str, *, oven: Oven | None = None, cleaner: Cleaner | None = None,
                **kw: Any) -> AsyncIterator[tuple[Any, Any]]:
    """The independent tools ticking every TICK_S, one command at a time; (served, the
    driver of ``role``) over their sockets."""
    async with serve(SPEED, tick_s=TICK_S, pending="busy", pace_rtu=False, oven=oven,
                     cleaner=cleaner, **kw) as served:
        config = parse_line_config("[line]\nname = 'late'\n" f"time_scale = {SPEED}\n"
                                   + line_tables(served))
        async with open_tool(config.tools[f"{role}-1"], ScaledClock(SPEED)) as driver:
            yield served, driver


async def _clean(cleaner: Any, wafer: str, mode: CleanMode = CleanMode.FLUX_CLEAN) -> None:
    await cleaner.load(wafer, mode)
    await cleaner.start()
    result = await cleaner.wait_result(timeout_s=600)
    assert (result.wafer_id, result.status) == (wafer, CleanStatus.OK)
    await cleaner.unload()


async def test_load_start_and_the_next_load_on_a_cleaner_a_tick_late() -> None:
    """START straight after LOAD's reply met the cleaner still READY (06: the step failed
    with the wafer LOADED); the next LOAD straight after UNLOAD (the status known from the
    DONE read asks nothing) met it still DONE."""
    async with _late("cleaner", cleaner_bath_c=60.0) as (served, cleaner):
        await cleaner.set_recipe(SHORT)
        await cleaner.wait_bath_ready(timeout_s=60)
        for wafer in ("W1", "W2"):
            assert (await cleaner.status()).state is CleanerState.READY
            await _clean(cleaner, wafer)
        assert (await cleaner.status()).state is CleanerState.READY
    assert served.cleaner.log == ["load W1", "start W1", "done W1 status 1", "unload",
                                  "load W2", "start W2", "done W2 status 1", "unload"]


async def test_mode_and_the_status_after_unload_on_an_fc2_a_tick_late() -> None:
    """The FC-2: MODE is refused outside IDLE/READY, so MODE straight after UNLOAD met the
    tool still DONE (06, the LOAD never sent); a strip's status after UNLOAD (read: no
    shortcut after a strip) still said DONE, and a wafer's interlock would hold it."""
    tool = Stripper(tank_c=50.0, bath_c=60.0)
    tool.hr |= {HR_STRIP_SP: 500, HR_STRIP_TIME: 60}
    async with _late("cleaner", cleaner=tool) as (served, cleaner):
        await cleaner.set_recipe(SHORT)
        await _clean(cleaner, "W1")
        await _clean(cleaner, "W2", CleanMode.RESIST_STRIP)
        assert (await cleaner.status()).state is CleanerState.READY
    assert [e.split(" residue")[0] for e in served.cleaner.log
            if not e.startswith("mode refused")] == [
        "load W1 clean", "start W1", "done W1 status 1", "unload",
        "load W2 strip", "strip W2", "done W2 status 1", "unload"]


@pytest.mark.parametrize(("interrupted_to", "sent"), [
    (DONE, ["unload"]),
    (LOADED, ["start W1", "done W1 status 2", "unload"]),
])
async def test_the_abort_after_clear_on_a_cleaner_a_tick_late(interrupted_to: int,
                                                               sent: list[str]) -> None:
    """After CLEAR's reply the cleaner still showed ALARM: the failed wafer's abort found
    nothing to do and left it in the chamber. With the wafer LOADED, ABORT straight after
    START met the tool still LOADED (06)."""
    step = next(s for s in find_recipe("rebump-hipb-snpb").steps if s.kind == "clean")
    async with _late("cleaner", cleaner_bath_c=60.0, cleaner_alarms={1: 620},
                     interrupted_to=interrupted_to) as (served, cleaner):
        await cleaner.set_recipe(step.tool_recipe())
        await cleaner.load("W1")
        await cleaner.start()
        await cleaner.wait_for(CleanerState.ALARM, timeout_s=600)
        await cleaner.clear_alarm()
        mark = len(served.cleaner.log)
        notes = await kind_of(step).abort(cleaner, step, "W1")
        assert notes[-1] == "wafer unloaded", notes
        assert (await cleaner.status()).state is CleanerState.READY
        assert served.cleaner.log[mark:] == ["clear 620", *sent], notes


async def test_a_profile_change_waits_for_ready_on_an_oven_a_tick_late() -> None:
    """A change to a profile with the zones already at its setpoints: right after APPLY's
    reply the oven still showed READY (the old profile's), and the setup ended with the
    oven HEATING on the new one."""
    step = next(s for s in find_recipe("rebump-hipb-snpb").steps if isinstance(s, ReflowStep))
    oven = Oven()
    oven.active_sp = list(step.zones_c)
    oven.pv = list(step.zones_c)
    oven.active_profile = step.profile_id + 1
    oven.base_state = READY
    oven.coils[N2_ON] = True
    oven.o2 = 20.0
    notes: list[str] = []
    async with _late("oven", oven=oven) as (served, driver):
        await REFLOW.prepare(driver, step, clock=driver.clock, recipe_name="r",
                             note=notes.append)
        ready = await driver.readiness()
    assert (ready.state, ready.active_profile_id) == (OvenState.READY, step.profile_id), notes
    assert served.oven.log == [f"apply {step.profile_id}", "ready"]


async def test_a_lot_on_tools_a_tick_late(tmp_path: Path) -> None:
    """A two-wafer rebump lot on the independent oven and cleaner, both carrying commands
    out a tick late with one command slot (the printer and mounter from our simulator)."""
    async with serve(LOT_SPEED, tick_s=TICK_S, pending="busy", pace_rtu=False) as served:
        code, text = await run_lot(tmp_path, line_tables(served), leave_out=("ovens", "cleaners"),
                                   speed=LOT_SPEED, lot="LATE", recipe="rebump-hipb-snpb",
                                   db=tmp_path / "late.db")
    assert code == 0, text
    assert "lot LATE: complete; 2/2 wafers complete" in text, text
    cleaner = served.cleaner  # the last UNLOAD may wait for a tick no request brought
    assert cleaner.log.count("unload") + cleaner.commands_waiting() == 4, cleaner.log
    assert not [e for e in served.oven.log + served.cleaner.log
                if e.startswith(("alarm", "dropped"))], (served.oven.log, served.cleaner.log)

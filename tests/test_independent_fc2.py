"""The FC-2 driver and the strip and clean kinds against an FC-2 written by someone else.

``tests/independent/fc2.py`` is an FC-2 cleaner/stripper written from flux-cleaner-fc2.md
and flux-cleaner.md alone, without reading ``sim/`` or our cleaner driver and kinds,
taking the strictest reasonable choice where they are silent (docs/protocols.md,
"Independent tools"): MODE kept from before power-up (RESIST_STRIP) and refused outside
IDLE/READY even with the value it holds, ABORT refused while STRIPPING, 660 when the tank
leaves the ±2 °C START needs, 650 only at a strip's START, READY following the tank the
MODE written selects. Lots run with our simulator's mounter and oven (``bumpline sim
--cleaners 0``); the kind-level cases drive our driver over the same RTU socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.clock import ScaledClock
from drivers.errors import DeviceBusy, ToolAlarm
from drivers.line_config import parse_line_config
from drivers.protocols import Cleaner
from drivers.tools import open_tool
from drivers.types import CleanerState, CleanMode
from sequences.errors import InterlockError
from sequences.kinds import kind_of
from sequences.kinds.base import StepContext
from sequences.recipes.recipe import CleanStep, StripStep, find_recipe
from sequences.wafer.journal import MemoryJournal
from sequences.wafer.runner import check_interlocks
from tests.independent import text_regs
from tests.independent.fc1 import LOAD
from tests.independent.fc2 import FLUX_CLEAN, HR_MODE, HR_STRIP_SP, STRIPPER_WAFERS, Stripper
from tests.independent.lot import run_lot
from tests.independent.servers import cleaner_table, serve

STRIP_RECIPE = "ballmount-mask-sac305"
CLEAN_RECIPE = "ballmount-sac305"
LOT_SPEED = 800.0
DRIVER_SPEED = 2000.0


def _step(recipe: str, kind: str) -> StripStep | CleanStep:
    step = next(s for s in find_recipe(recipe).steps if s.kind == kind)
    assert isinstance(step, StripStep | CleanStep)
    return step


STRIP = _step(STRIP_RECIPE, "strip")
CLEAN = _step(CLEAN_RECIPE, "clean")


def _ready_tool(**kw) -> Stripper:
    """Both tanks at the shipped recipes' temperatures, so a step need not wait for heat."""
    assert isinstance(STRIP, StripStep) and isinstance(CLEAN, CleanStep)
    tool = Stripper(tank_c=STRIP.strip_temp_c, bath_c=CLEAN.wash_temp_c, **kw)
    tool.hr[0] = round(CLEAN.wash_temp_c * 10)  # WASH_TEMP_SP
    tool.hr[HR_STRIP_SP] = round(STRIP.strip_temp_c * 10)
    return tool


@contextlib.asynccontextmanager
async def _driver(tool: Stripper) -> AsyncIterator[Cleaner]:
    async with serve(DRIVER_SPEED, cleaner=tool) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + cleaner_table(served))
        async with open_tool(config.tools["cleaner-1"], ScaledClock(DRIVER_SPEED)) as cleaner:
            assert isinstance(cleaner, Cleaner)
            yield cleaner


def _load_by_hand(tool: Stripper, wafer_id: str, mode: int) -> None:
    """Another host (or a person at the panel) loads a wafer: MODE, WAFER_ID, LOAD."""
    tool.write_registers(HR_MODE, [mode])
    tool.write_registers(10, text_regs.encode(wafer_id))
    tool.write_registers(5, [LOAD])


async def _lot(tmp_path: Path, served, name: str, recipe: str, db: Path
               ) -> tuple[int | None, str]:
    folder = tmp_path / name  # one folder per run: each writes its own sim-line.toml
    folder.mkdir()
    return await run_lot(folder, cleaner_table(served), leave_out=("cleaners",),
                         speed=LOT_SPEED, lot=name, recipe=recipe, db=db)


async def test_a_strip_lot_then_a_clean_lot_on_one_fc2(tmp_path: Path) -> None:
    """The tool powers up in RESIST_STRIP and its stripper has one wafer left (299 of 300
    used). STR-01 strips; the stripper is then spent, and flux-cleaner-fc2.md says 650
    "before the next START": STR-02 is held by our interlock before LOAD (a person must
    replenish), the tool never raises 650. The flux-clean lot on the same FC-2 after it
    is not stopped by the stripper (a clean uses none): every LOAD writes MODE, so the
    cleans run as FLUX_CLEAN although the tool was left in RESIST_STRIP."""
    tool = Stripper()
    tool.stripper_used = STRIPPER_WAFERS - 1
    db = tmp_path / "fc2.db"
    async with serve(LOT_SPEED, cleaner=tool) as served:
        code, text = await _lot(tmp_path, served, "STR", STRIP_RECIPE, db)
        assert code == 3, text
        assert "lot STR: running; 1/2 wafers complete" in text, text
        assert "STR-02           step 3 strip  hold" in text, text
        assert "interlock: stripper low" in text, text
        assert tool.hr[HR_MODE] == 2
        code, clean_text = await _lot(tmp_path, served, "CLN", CLEAN_RECIPE, db)
    assert code == 0, clean_text
    assert "lot CLN: complete; 2/2 wafers complete" in clean_text, clean_text
    log = tool.log
    assert [e for e in log if e.startswith("load")] == [
        "load STR-01 strip", "load CLN-01 clean", "load CLN-02 clean"], log
    assert "strip STR-01" in log and "start CLN-01" in log and "start CLN-02" in log, log
    assert not [e for e in log if e.startswith(("alarm", "mode refused"))], log


async def test_a_strip_tank_out_of_range_fails_only_its_wafer(tmp_path: Path) -> None:
    """660 STRIP TANK TEMPERATURE OUT OF RANGE: the tank's heater cut 30 s into the first
    strip, for 300 s. The strip ends (status 3), the wafer fails with the alarm, CLEAR is
    taken only once the tank is back in its band, the wafer is unloaded, and the second
    wafer strips on the reheated tank."""
    tool = Stripper(faults=["tank@strip1+30/300"])
    async with serve(LOT_SPEED, cleaner=tool) as served:
        code, text = await _lot(tmp_path, served, "TANK", STRIP_RECIPE, tmp_path / "tank.db")
    assert code == 3, text
    assert "TANK-01          step 3 strip  step_failed" in text, text
    assert "alarm 660 STRIP TANK TEMPERATURE OUT OF RANGE" in text, text
    assert "TANK-02          step 3 strip  judged_ok" in text, text
    log = tool.log
    assert log.index("alarm 660") < log.index("clear 660") < log.index("load TANK-02 strip"), log
    assert log.count("unload") == 2, log


@pytest.mark.parametrize("left", ["LOADED", "DONE", "ALARM"])
async def test_mode_is_not_written_outside_idle_or_ready(left: str) -> None:
    """MODE "may be written only in IDLE or READY (otherwise exception 06)". With another
    host's wafer LOADED or DONE, or the chamber empty in ALARM (the door open), the strip's
    interlock refuses before anything is written; the driver's LOAD, sent anyway, stops at
    the refused MODE, naming it and the state, and writes nothing after it."""
    tool = _ready_tool(faults=["door@t0/0"] if left == "ALARM" else [])
    async with _driver(tool) as cleaner:
        if left != "ALARM":
            _load_by_hand(tool, "OTHER", FLUX_CLEAN)
            if left == "DONE":
                await cleaner.start()
                await cleaner.wait_for(CleanerState.DONE, timeout_s=600)
        assert (await cleaner.status()).state.name == left
        with pytest.raises(InterlockError, match=f"cleaner is {left}|alarm 400"):
            await check_interlocks(cleaner, STRIP, "W2")
        held = list(tool.wafer_id)
        with pytest.raises(DeviceBusy, match=f"MODE=RESIST_STRIP \\(state {left}\\)"):
            await cleaner.load("W2", CleanMode.RESIST_STRIP)
        assert tool.wafer_id == held  # WAFER_ID untouched, no LOAD
        assert tool.log[-1].startswith("mode refused")


async def test_an_abort_while_stripping_waits_for_done_and_unloads() -> None:
    """ABORT is allowed in WASHING, RINSING, DRYING (flux-cleaner.md; the FC-2 page adds no
    state): this FC-2 refuses it while STRIPPING. The strip's abort waits for the cycle's
    DONE and unloads, so the chamber does not hold the wafer."""
    tool = _ready_tool()
    async with _driver(tool) as cleaner:
        await cleaner.load("W1", CleanMode.RESIST_STRIP)
        await cleaner.start()
        assert (await cleaner.status()).state is CleanerState.STRIPPING
        notes = await kind_of(STRIP).abort(cleaner, STRIP, "W1")
        assert notes[0] == "ABORT refused while STRIPPING: waiting for the cycle's end"
        assert notes[1].startswith("its result: OK, ionic residue "), notes
        assert notes[1].endswith(", mask residue 0 %") and notes[2:] == ["wafer unloaded"]
        assert tool.log[-2:] == ["done W1 status 1 residue 0.0%", "unload"], tool.log
        assert (await cleaner.status()).state is CleanerState.READY


async def test_stripper_low_holds_a_strip_not_a_clean() -> None:
    """STRIPPER_LOW (DI 4): 650 would come at a strip's START, so the strip is held at the
    interlock; a flux clean on the same FC-2 uses no stripper and is not."""
    tool = _ready_tool(faults=["stripper@t0/0"])
    async with _driver(tool) as cleaner:
        assert (await cleaner.status()).stripper_low
        with pytest.raises(InterlockError, match="stripper low"):
            await check_interlocks(cleaner, STRIP, "W1")
        await check_interlocks(cleaner, CLEAN, "W1")


async def test_a_strip_whose_start_met_650_stays_loaded_for_an_engineer() -> None:
    """The stripper running out between the interlock look and START: the tool raises 650
    at START ("650 before the next START"), the wafer stays LOADED, never stripped, and the
    step fails with the alarm. Once the stripper is replenished the alarm clears; a strip
    is not started again without an engineer (a second strip attacks the under-metal),
    so the abort leaves the wafer LOADED and sends nothing."""
    tool = _ready_tool(faults=["stripper@load1/100"])
    async with _driver(tool) as cleaner:
        kind = kind_of(STRIP)
        ctx = StepContext("W1", cleaner.clock, STRIP_RECIPE, MemoryJournal())
        seen = await kind.look(cleaner, STRIP, "W1", await cleaner.status())
        with pytest.raises(ToolAlarm) as alarm:
            await kind.execute(cleaner, STRIP, ctx, seen)
        assert alarm.value.code == 650
        assert "strip W1" not in tool.log, tool.log
        while (await cleaner.status()).stripper_low:  # the plan's 100 tool s: replenished
            await cleaner.clock.sleep(20)
        await cleaner.clear_alarm()
        mark = len(tool.log)
        notes = await kind.abort(cleaner, STRIP, "W1")
        assert "an engineer decides" in notes[-1], notes
        assert tool.log[mark:] == [], tool.log
        status = await cleaner.status()
        assert status.state is CleanerState.LOADED
        assert status.mode_active is CleanMode.RESIST_STRIP

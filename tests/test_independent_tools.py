"""The drivers against tools written by someone else from the specs alone.

``tests/independent/`` holds an RF-10N (Modbus TCP) and an FC-1 (Modbus RTU frames over
raw TCP, paced at 19200 baud) written from reflow-oven.md and flux-cleaner.md without
reading ``sim/``, taking the strictest reasonable choice where the specs are silent
(docs/protocols.md, "Independent tools"). A short lot runs on them on every test run,
so a driver that leans on a choice only our simulator made is found.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_tool
from drivers.types import CleanerState
from sequences.kinds import kind_of
from sequences.recipes.recipe import find_recipe
from tests.independent import text_regs
from tests.independent.fc1 import DONE, LOADED
from tests.independent.lot import BUMPLINE, run_lot
from tests.independent.rf10n import LOAD as OVEN_LOAD
from tests.independent.rf10n import Oven
from tests.independent.servers import line_tables, serve

RECIPE = "rebump-hipb-snpb"
LOT_SPEED = 300.0
DRIVER_SPEED = 1000.0


def _clean_step():
    recipe = find_recipe(RECIPE)
    return next(step for step in recipe.steps if step.kind == "clean")


@contextlib.asynccontextmanager
async def _alarm_cleared_on_w1(step: Any, interrupted_to: str) -> AsyncIterator[tuple[Any, Any]]:
    """The independent cleaner with W1 loaded and started, its wash ended by alarm 620
    and the alarm cleared (CLEAR leaving the wafer ``interrupted_to``): (served, driver)."""
    async with serve(DRIVER_SPEED, cleaner_bath_c=60.0, cleaner_alarms={1: 620},
                     interrupted_to=interrupted_to) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + line_tables(served))
        async with open_tool(config.tools["cleaner-1"], ScaledClock(DRIVER_SPEED)) as cleaner:
            await cleaner.set_recipe(step.tool_recipe())
            await cleaner.load("W1")
            await cleaner.start()
            await cleaner.wait_for(CleanerState.ALARM, timeout_s=600)
            await cleaner.clear_alarm()
            yield served, cleaner


async def test_a_short_lot_on_the_independent_oven_and_cleaner(tmp_path: Path) -> None:
    """Our simulator serves the printer and the mounter; the oven and the cleaner are
    the independent ones (a cold cleaner bath, reads across unlisted addresses refused,
    RESULT_WAFER_ID latched at LOAD, the RTU line paced)."""
    async with serve(LOT_SPEED) as served:
        code, text = await run_lot(tmp_path, line_tables(served), leave_out=("ovens", "cleaners"),
                                   speed=LOT_SPEED, lot="IND1", recipe=RECIPE,
                                   db=tmp_path / "ind.db")
    assert code == 0, text
    assert "lot IND1: complete; 2/2 wafers complete" in text, text
    oven, cleaner = served.oven.log, served.cleaner.log
    assert sorted(e for e in oven if e.startswith("load")) == [
        "load IND1-01", "load IND1-01", "load IND1-02", "load IND1-02"], oven
    assert not [e for e in oven + cleaner if e.startswith("alarm")], (oven, cleaner)
    assert cleaner.count("unload") == 4, cleaner


@pytest.mark.parametrize(("interrupted_to", "sent"), [
    (DONE, ["unload"]),
    (LOADED, ["start W1", "done W1 status 2", "unload"]),
])
async def test_a_wafer_an_alarm_left_loaded_is_taken_out(interrupted_to, sent) -> None:
    """flux-cleaner.md: CLEAR goes "back to LOADED / DONE / IDLE as fits the wafer". A
    cleaner may put a wafer whose cycle an alarm ended back to LOADED; UNLOAD is allowed
    in DONE only and ABORT while a cycle runs, so the failed wafer's abort STARTs and
    ABORTs it, then UNLOADs (before: it stayed LOADED and held every later wafer)."""
    step = _clean_step()
    async with _alarm_cleared_on_w1(step, interrupted_to) as (served, cleaner):
        assert (await cleaner.status()).state.value == interrupted_to
        mark = len(served.cleaner.log)
        notes = await kind_of(step).abort(cleaner, step, "W1")
        assert served.cleaner.log[mark:] == sent, notes
        assert notes[-1] == "wafer unloaded", notes
        assert (await cleaner.status()).state is CleanerState.READY


async def test_another_wafer_left_loaded_stays_for_an_engineer() -> None:
    step = _clean_step()
    async with _alarm_cleared_on_w1(step, LOADED) as (served, cleaner):
        mark = len(served.cleaner.log)
        notes = await kind_of(step).abort(cleaner, step, "W2")
        assert served.cleaner.log[mark:] == [], notes
        assert "holds W1 LOADED, not W2" in notes[0], notes


async def test_a_jam_while_wafers_ride_is_reported_and_cleared_before_their_deadline(
        tmp_path: Path) -> None:
    """reflow-oven.md: 520 CONVEYOR JAM; the independent oven stops the belt until CLEAR
    (docs/protocols.md). Both wafers ride when it jams for a minute. The exit watcher finds
    the alarm once the first is late; the controller reports it at once, naming both, and
    clears it (its cause gone), so the belt runs again and both come out before their
    deadlines, flagged and judged out for the stopped belt. Before, it was heard of only
    when their steps gave up on them (860 s after LOAD) and cleared after that; the wafers
    were taken off later still (then, the run had once ended with them on the belt: 530)."""
    db = tmp_path / "jam.db"
    async with serve(LOT_SPEED, oven_faults=["520@load2+20/60"]) as served:
        code, text = await run_lot(tmp_path, line_tables(served), leave_out=("ovens", "cleaners"),
                                   speed=LOT_SPEED, lot="JAM", recipe=RECIPE, db=db)
        oven = list(served.oven.log)
    assert code == 3, text
    assert "2 awaiting disposition" in text, text
    assert text.count("ALARM 520 CONVEYOR JAM (wafer JAM-01, JAM-02)") == 1, text
    assert "not at the exit" not in text, text
    assert "alarm 520" in oven and "alarm 530" not in oven, oven
    cleared = oven.index("clear 520")
    assert oven.index("unload JAM-01") > cleared and oven.index("unload JAM-02") > cleared, oven
    show = (await asyncio.to_thread(
        subprocess.run, [*BUMPLINE, "wafer", "show", "JAM-02", "--db", str(db)], cwd=tmp_path,
        capture_output=True, text=True, check=True)).stdout
    assert ("the belt stopped during its pass; alarm 520 CONVEYOR JAM during the pass"
            in show), show
    alarms = (await asyncio.to_thread(
        subprocess.run, [*BUMPLINE, "alarms", "--db", str(db)], cwd=tmp_path, capture_output=True,
        text=True, check=True)).stdout
    rows = [line for line in alarms.splitlines() if "CONVEYOR JAM" in line]
    assert len(rows) == 1 and "also hit: JAM-02" in rows[0], alarms
    assert rows[0].count("Z") == 2, alarms  # set and cleared


class AlarmAtTheSecondLoad(Oven):
    """An RF-10N that latches 550 N2 FLOW LOW (its cause gone at once) just as the second
    wafer's first LOAD comes: LOAD is refused in ALARM (06), the wafer never goes in."""

    latched = False

    def command(self, code: int) -> None:
        if (code == OVEN_LOAD and not self.latched
                and text_regs.decode(self.load_id).endswith("-02")):
            self.latched = True
            self.inject_alarm(550)
        super().command(code)


async def test_a_wafer_whose_load_meets_an_alarm_waits_held_not_for_an_engineer(
        tmp_path: Path) -> None:
    """The step found the alarm at the entrance, before anything of the wafer reached the
    oven: it failed, and a wafer that never went in waited for an engineer's disposition.
    Now it goes back to waiting, held at the oven's interlock; the scheduler's CLEAR is
    taken and the wafer goes on."""
    async with serve(LOT_SPEED, oven=AlarmAtTheSecondLoad()) as served:
        code, text = await run_lot(tmp_path, line_tables(served), leave_out=("ovens", "cleaners"),
                                   speed=LOT_SPEED, lot="IA1", recipe=RECIPE,
                                   db=tmp_path / "ia.db")
    assert code == 0, text
    assert "lot IA1: complete; 2/2 wafers complete" in text, text
    assert served.oven.latched and "clear 550" in served.oven.log, served.oven.log
    with Store(f"sqlite:///{tmp_path / 'ia.db'}", create=False) as store:
        events = store.events("IA1-02")
        (alarm,) = [a for a in store.alarms(tool="oven-1") if a.code == 550]
    (back,) = [e for e in events if e.trigger == "recover"]
    assert (back.from_state, back.to_state) == ("step2_running", "step2_waiting")
    assert "alarm 550" in back.why and "before the wafer went in" in back.why
    assert events[events.index(back) + 1].why.startswith("interlock: ")
    assert not any(e.to_state == "awaiting_disposition" for e in events), events
    assert alarm.cleared_at is not None


async def test_an_alarm_the_clear_leaves_latched_is_recorded(tmp_path: Path) -> None:
    """The independent RF-10N shows one alarm at a time: CLEAR takes it, and a cause still
    present latches its own at once (our simulator keeps both and one CLEAR takes them
    together). 560 as the last wafer reaches the exit, a jam (520) from a second later: the
    scheduler's CLEAR of 560 leaves 520 latched. Before, the oven went back in service on
    the CLEAR's reply and nobody read it again: the lot, needing the oven no more, ended
    with it in ALARM 520 and no row of ``bumpline alarms`` (the independent soak's seed 1
    plan 19)."""
    db = tmp_path / "again.db"
    async with serve(LOT_SPEED, oven_faults=["560@exit2/20", "520@exit2+1/300"]) as served:
        code, text = await run_lot(tmp_path, line_tables(served), leave_out=("ovens", "cleaners"),
                                   speed=LOT_SPEED, lot="AG1", recipe="ballmount-sac305",
                                   db=db)
        oven = list(served.oven.log)
    assert code in (0, 3), text
    assert oven.index("clear 560") < oven.index("alarm 520"), oven
    with Store(f"sqlite:///{db}", create=False) as store:
        codes = [a.code for a in store.alarms(tool="oven-1")]
    assert 560 in codes and 520 in codes, (codes, text)
    assert "ALARM 520 CONVEYOR JAM" in text, text

"""FluxCleaner with the FC-2 map against the simulated FC-2 over Modbus RTU (raw TCP):
the strip mode, MODE at LOAD, the added registers and alarms; and the same driver on an
FC-1 refusing a strip before anything is sent. The spec gives no FC-2 frames to hold
the bytes to; the request trace pins what goes on the wire."""

from __future__ import annotations

import dataclasses

import pytest
from modbus_fixtures import BusyArmed, sim_cleaner

from controller.console import CLEANER_COMMANDS, ConsoleUsageError, run_command
from drivers.cleaner import FluxCleaner
from drivers.errors import DeviceBusy, IllegalValue, NotSupported, ToolAlarm
from drivers.types import CleanerState, CleanMode, CleanRecipe, CleanStatus, StripRecipe
from sequences.kinds.resist_strip import RESIST_STRIP
from sequences.recipes.recipe import StripStep
from sim.cleaner import CleanerState as ToolState
from sim.cleaner import Command, ResultStatus
from sim.stripper import StripperModel

STRIP = StripRecipe(strip_temp_c=50.0, strip_time_s=600, rinse_time_s=30, dry_time_s=30,
                    spray_pressure_bar=2.5)
CLEAN = CleanRecipe(wash_temp_c=60.0, wash_time_s=120, rinse_time_s=30, dry_time_s=30,
                    spray_pressure_bar=2.5)


def requests_of(cleaner: FluxCleaner) -> list[str]:
    sent: list[str] = []
    cleaner.link.trace = lambda d, text: sent.append(text.split(" (")[0]) if d == ">" else None
    return sent


async def test_a_wafer_stripped_on_the_fc2() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        assert cleaner.map.model == "FC-2" and cleaner.supports(CleanMode.RESIST_STRIP)
        await cleaner.set_strip_recipe(STRIP)
        assert await cleaner.strip_recipe() == STRIP
        tank = await cleaner.wait_bath_ready(timeout_s=1800, mode=CleanMode.RESIST_STRIP)
        assert abs(tank - 50.0) <= 2.0

        sent = requests_of(cleaner)
        await cleaner.load("LOT42-07", CleanMode.RESIST_STRIP)
        assert sent == [
            "write_register 6 = 2 unit 2",  # MODE = RESIST_STRIP, before LOAD
            "write_registers 10..17 = [19535, 21556, 12845, 12343, 0, 0, 0, 0] unit 2",
            "write_register 5 = 1 unit 2",  # COMMAND = LOAD
        ]
        cleaner.link.trace = None
        loaded = await cleaner.status()
        assert loaded.state is CleanerState.LOADED
        assert loaded.mode_active is CleanMode.RESIST_STRIP and loaded.stripper_low is False
        await cleaner.start()
        assert await cleaner.state() is CleanerState.STRIPPING

        await cleaner.wait_done(timeout_s=1200)
        sent = requests_of(cleaner)
        result = await cleaner.wait_result(timeout_s=10)
        # IR 0-17 (state, residue, strip tank, mask, mode, the id) in one read: the FC-2's
        # map lists every register between (the FC-1's IR 7-9 are not).
        assert sent == ["read_input 0..17 unit 2"]
        cleaner.link.trace = None
        assert (result.wafer_id, result.status) == ("LOT42-07", CleanStatus.OK)
        assert result.mask_residue_pct == 0.0  # dry film, 50 °C, 600 s: none left (spec)
        assert 0.0 < result.ionic_ug_cm2 < 1.0  # a strip removes the flux too
        assert dataclasses.replace(await cleaner.result(), cycle_count=None) == result
        await cleaner.unload()
        assert (await cleaner.status()).mode_active is None


async def test_a_flux_clean_on_the_fc2_writes_mode_flux_clean() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        # left so by the wafer before
        await cleaner.regs.write("MODE", cleaner.map["MODE"].code("RESIST_STRIP"))
        await cleaner.set_recipe(CLEAN)
        await cleaner.wait_bath_ready(timeout_s=1800)
        await cleaner.load("LOT42-08")
        assert (await cleaner.status()).mode_active is CleanMode.FLUX_CLEAN
        await cleaner.start()
        assert await cleaner.state() is CleanerState.WASHING
        result = await cleaner.wait_result(timeout_s=1200)
        assert result.status is CleanStatus.OK and result.mask_residue_pct == 0.0


async def test_mode_is_refused_with_a_wafer_in_the_chamber() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        await cleaner.load("LOT42-09")
        with pytest.raises(DeviceBusy, match=r"cleaner-1: MODE=RESIST_STRIP \(state LOADED\)"):
            await cleaner.load("LOT42-10", CleanMode.RESIST_STRIP)
        with pytest.raises(IllegalValue, match="STRIP_TIME=30 s outside 60..1800 s"):
            await cleaner.set_strip_recipe(StripRecipe(50.0, 30, 30, 30, 2.5))


@pytest.mark.faults
async def test_mode_refused_once_while_busy_is_written_again() -> None:
    """Exception 06 to the MODE write before LOAD, the cleaner READY (its state allows it:
    a busy moment, as ``busy=`` faults make it): written again, one poll later, as a
    COMMAND is. It failed the strip with "tool error: MODE=RESIST_STRIP (state READY)"
    (the random soak, seed 10 plan 18)."""
    plan = BusyArmed()
    async with sim_cleaner(plan, model="FC-2") as (cleaner, _):
        await cleaner.set_strip_recipe(STRIP)
        await cleaner.wait_bath_ready(timeout_s=1800, mode=CleanMode.RESIST_STRIP)
        assert await cleaner.state() is CleanerState.READY
        sent = requests_of(cleaner)
        plan.armed = True
        await cleaner.load("LOT42-12", CleanMode.RESIST_STRIP)
        assert not plan.armed  # it was refused once
        assert sent.count("write_register 6 = 2 unit 2") == 2, sent  # MODE, again
        status = await cleaner.status()
        assert (status.state, status.mode_active) == (CleanerState.LOADED,
                                                      CleanMode.RESIST_STRIP)


async def test_start_refused_names_the_strip_tank() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        await cleaner.set_strip_recipe(StripRecipe(70.0, 600, 30, 30, 2.5))
        await cleaner.load("LOT42-11", CleanMode.RESIST_STRIP)
        with pytest.raises(DeviceBusy, match=r"strip tank [\d.]+ °C vs setpoint 70\.0 °C"):
            await cleaner.start()


@pytest.mark.faults
async def test_strip_tank_alarm_660_stops_the_wait() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, sim):
        await cleaner.set_strip_recipe(StripRecipe(50.0, 1800, 30, 30, 2.5))
        await cleaner.load("LOT42-12", CleanMode.RESIST_STRIP)
        await cleaner.start()
        sim.model.fail_strip_heater(sim.now())
        with pytest.raises(ToolAlarm) as info:
            await cleaner.wait_done(timeout_s=1200)
        assert (info.value.code, info.value.text) == (660, "STRIP TANK TEMPERATURE OUT OF RANGE")


async def test_the_fc1_refuses_a_strip_before_sending_anything() -> None:
    async with sim_cleaner() as (cleaner, _):
        assert cleaner.map.model == "FC-1" and not cleaner.supports(CleanMode.RESIST_STRIP)
        sent = requests_of(cleaner)
        with pytest.raises(NotSupported, match=r"cleaner-1: the FC-1 has no RESIST_STRIP mode; "
                           r"a resist strip needs .* FC-2"):
            await cleaner.load("LOT42-13", CleanMode.RESIST_STRIP)
        with pytest.raises(NotSupported):
            await cleaner.set_strip_recipe(STRIP)
        with pytest.raises(NotSupported):
            await cleaner.wait_bath_ready(timeout_s=10, mode=CleanMode.RESIST_STRIP)
        assert sent == []
        await cleaner.load("LOT42-13")  # a flux clean: no MODE register to write
        assert sent == [
            "write_registers 10..17 = [19535, 21556, 12845, 12595, 0, 0, 0, 0] unit 2",
            "write_register 5 = 1 unit 2",
        ]
        status = await cleaner.status()
        assert (status.strip_temp_c, status.mode_active, status.stripper_low) == (None,) * 3
        assert (await cleaner.result()).mask_residue_pct is None


async def test_console_strip_commands() -> None:
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        args = "50 600 30 30 2.5".split()
        assert await run_command(CLEANER_COMMANDS, cleaner, "strip-recipe", args) == STRIP
        out = await run_command(CLEANER_COMMANDS, cleaner, "load", ["W1", "strip"])
        assert out == "W1 is in the chamber (LOADED, RESIST_STRIP)"
        with pytest.raises(ConsoleUsageError, match="expected clean|strip"):
            await run_command(CLEANER_COMMANDS, cleaner, "load", ["W2", "etch"])


class LenientFc2(StripperModel):
    """An FC-2 that also takes ABORT while STRIPPING (DONE, RESULT_STATUS 2), as our
    simulator did before it kept to the FC-1's ABORT row: the driver copes with both."""

    def _command(self, code: int) -> None:
        if code == Command.ABORT and self._state() is ToolState.STRIPPING:
            self._end_cycle(ResultStatus.ABORTED)
            self._note_state()
            return
        super()._command(code)


STRIP_STEP = StripStep(mask="dry-film", strip_temp_c=50.0, strip_time_s=600, rinse_time_s=30,
                       dry_time_s=30, spray_pressure_bar=2.5, max_mask_residue_pct=0.5,
                       max_ionic_ug_cm2=1.0)


async def test_an_abort_refused_while_stripping_waits_for_done_and_unloads() -> None:
    """Our FC-2 keeps to the FC-1's ABORT row (WASHING, RINSING, DRYING): 06 while
    STRIPPING (the FC-2 page changes no COMMAND code)."""
    step = STRIP_STEP
    async with sim_cleaner(model="FC-2") as (cleaner, _):
        await cleaner.set_strip_recipe(step.tool_recipe())
        await cleaner.wait_bath_ready(timeout_s=1800, mode=CleanMode.RESIST_STRIP)
        await cleaner.load("LOT42-07", CleanMode.RESIST_STRIP)
        await cleaner.start()
        assert await cleaner.state() is CleanerState.STRIPPING
        sent = requests_of(cleaner)
        notes = await RESIST_STRIP.abort(cleaner, step, "LOT42-07")
        assert notes == ["ABORT refused while STRIPPING: waiting for the cycle's end",
                         notes[1], "wafer unloaded"]
        assert notes[1].startswith("its result: OK, ") and notes[1].endswith(
            "mask residue 0 %"), notes
        # refused for the state, as the spec's table says: not sent again
        assert sent.count("write_register 5 = 5 unit 2") == 1
        cleaner.link.trace = None
        status = await cleaner.status()
        assert not status.wafer_present
        assert status.state in (CleanerState.IDLE, CleanerState.READY)
        assert (await cleaner.result()).status is CleanStatus.OK  # the strip ran out


async def test_an_abort_taken_while_stripping_unloads_the_aborted_wafer() -> None:
    step = STRIP_STEP
    async with sim_cleaner(model="FC-2", tool=LenientFc2()) as (cleaner, _):
        await cleaner.set_strip_recipe(step.tool_recipe())
        await cleaner.wait_bath_ready(timeout_s=1800, mode=CleanMode.RESIST_STRIP)
        await cleaner.load("LOT42-08", CleanMode.RESIST_STRIP)
        await cleaner.start()
        assert await cleaner.state() is CleanerState.STRIPPING
        notes = await RESIST_STRIP.abort(cleaner, step, "LOT42-08")
        assert notes == ["ABORT sent", notes[1], "wafer unloaded"]
        assert notes[1].startswith("its result: ABORTED, ionic residue "), notes
        assert ", mask residue " in notes[1], notes  # what the aborted strip left
        status = await cleaner.status()
        assert not status.wafer_present
        assert (await cleaner.result()).status is CleanStatus.ABORTED

"""FluxCleaner against the simulated FC-1 over Modbus RTU - on raw TCP (a serial
device server, ``socket://``) and on a pty - or, with ``--line-config``, against the
real cleaner: conformance, a full cycle, abort, alarms, reconnection, console."""

from __future__ import annotations

import dataclasses

import pytest
from modbus_fixtures import (
    BusyArmed,
    DropArmedReply,
    DropReplies,
    cleaner_under_test,
    sim_cleaner,
)

from controller.console import CLEANER_COMMANDS as CONSOLE_COMMANDS
from controller.console import ConsoleUsageError, run_command
from drivers.cleaner import CYCLE_STATES, FluxCleaner
from drivers.errors import DeviceBusy, IllegalAddress, IllegalValue, ToolAlarm
from drivers.modbus_link import ModbusLink
from drivers.types import Alarm, CleanerState, CleanRecipe, CleanStatus
from sim.faults import FaultPlan

RECIPE = CleanRecipe(
    wash_temp_c=60.0, wash_time_s=120, rinse_time_s=30, dry_time_s=30, spray_pressure_bar=2.5
)


@pytest.fixture
async def cleaner_env(line_config_path: str | None):
    async with cleaner_under_test(line_config_path) as env:
        yield env


async def finish_any_wafer(cleaner: FluxCleaner) -> None:
    """Leave the chamber empty (a real cleaner may hold a wafer from before)."""
    state = await cleaner.state()
    if state in (CleanerState.WASHING, CleanerState.RINSING, CleanerState.DRYING):
        await cleaner.abort()
        state = (await cleaner.wait_for(CleanerState.DONE, timeout_s=60)).state
    if state is CleanerState.DONE:
        await cleaner.unload()


# --- recipe, encodings, refusals --------------------------------------------------------------


async def test_recipe_round_trip(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await cleaner.set_recipe(RECIPE)
    assert await cleaner.recipe() == RECIPE


async def test_out_of_range_recipe_is_illegal_value_naming_the_register(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await cleaner.set_recipe(RECIPE)
    too_hot = CleanRecipe(90.0, 120, 30, 30, 2.5)
    with pytest.raises(IllegalValue) as info:
        await cleaner.set_recipe(too_hot)
    assert info.value.tool == "cleaner-1" and info.value.code == 3
    assert "WASH_TEMP_SP=90.0 °C outside 30.0..80.0 °C" in str(info.value)
    assert await cleaner.recipe() == RECIPE  # nothing written


async def test_commands_not_allowed_now_are_device_busy(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await finish_any_wafer(cleaner)
    with pytest.raises(DeviceBusy, match=r"cleaner-1: COMMAND=START \(state (IDLE|READY)\)"):
        await cleaner.start()
    with pytest.raises(DeviceBusy, match="COMMAND=UNLOAD"):
        await cleaner.unload()
    with pytest.raises(DeviceBusy, match="COMMAND=ABORT"):
        await cleaner.abort()


async def test_unknown_command_code_and_unmapped_address(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    command = cleaner.map["COMMAND"].address
    with pytest.raises(IllegalValue, match="cleaner-1: COMMAND: Modbus exception 03"):
        await cleaner.link.write_register(command, 9, what="COMMAND")
    with pytest.raises(IllegalAddress, match="cleaner-1: IR 7: Modbus exception 02"):
        await cleaner.link.read_input(7, 1, what="IR 7")
    assert await cleaner.link.read_holding(command, 1, what="COMMAND") == [0]


async def test_wafer_id_is_ascii_high_byte_first(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await cleaner.regs.write("WAFER_ID", "LOT42-07")
    assert await cleaner.link.read_holding(10, 8, what="WAFER_ID") == [
        0x4C4F, 0x5434, 0x322D, 0x3037, 0, 0, 0, 0
    ]
    with pytest.raises(ValueError, match="cleaner-1: WAFER_ID: .* longer than 16"):
        await cleaner.load("W" * 17)


async def test_status_is_two_requests(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    requests: list[str] = []
    cleaner.link.trace = lambda d, text: requests.append(text) if d == ">" else None
    status = await cleaner.status()
    assert len(requests) == 2
    assert 20.0 < status.wash_temp_c < 90.0 and status.rinse_resistivity_mohm_cm > 0


# --- a wafer through the cleaner --------------------------------------------------------------


async def test_one_wafer_cycle(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await finish_any_wafer(cleaner)
    await cleaner.set_recipe(RECIPE)
    bath = await cleaner.wait_bath_ready(timeout_s=1800)
    assert abs(bath - 60.0) <= 2.0
    before = (await cleaner.result()).cycle_count

    await cleaner.load("LOT42-07")
    loaded = await cleaner.status()
    assert loaded.state is CleanerState.LOADED and loaded.wafer_present
    await cleaner.start()
    running = await cleaner.status()
    assert running.state is CleanerState.WASHING
    assert 0 < running.remaining_s <= 180

    await cleaner.wait_done(timeout_s=600)
    result = await cleaner.result()
    assert result.wafer_id == "LOT42-07"
    assert result.status is CleanStatus.OK
    assert 0.0 < result.ionic_ug_cm2 < 1.0  # 60 °C for 120 s: well under 1 µg/cm² (spec)
    assert result.cycle_count == before + 1

    await cleaner.unload()
    after = await cleaner.status()
    assert after.state in (CleanerState.READY, CleanerState.IDLE) and not after.wafer_present


async def test_wait_result_reads_the_result_with_the_poll_that_sees_done(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await finish_any_wafer(cleaner)
    await cleaner.set_recipe(RECIPE)
    await cleaner.wait_bath_ready(timeout_s=1800)
    await cleaner.load("LOT42-10")
    await cleaner.start()
    await cleaner.wait_done(timeout_s=600)
    requests: list[str] = []
    cleaner.link.trace = lambda d, text: requests.append(text) if d == ">" else None
    result = await cleaner.wait_result(timeout_s=10)
    cleaner.link.trace = None
    full = await cleaner.result()  # residue, status, id and the cycle counter
    assert result == dataclasses.replace(full, cycle_count=None)
    assert (result.wafer_id, result.status) == ("LOT42-10", CleanStatus.OK)
    # IR 0-6 (state and residue), then the id: two requests; not the cycle counter (IR
    # 20-21, a request of its own across the unlisted 18-19), which no step needs.
    assert [r.split(" (")[0] for r in requests] == [
        "read_input 0..6 unit 2", "read_input 10..17 unit 2"]
    await cleaner.unload()


async def test_abort_ends_the_wafer_aborted(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    await finish_any_wafer(cleaner)
    await cleaner.set_recipe(RECIPE)
    await cleaner.wait_bath_ready(timeout_s=1800)
    await cleaner.load("LOT42-08")
    await cleaner.start()
    await cleaner.abort()
    assert (await cleaner.wait_for(CleanerState.DONE, timeout_s=60)).state is CleanerState.DONE
    result = await cleaner.result()
    assert (result.wafer_id, result.status) == ("LOT42-08", CleanStatus.ABORTED)
    await cleaner.unload()


# --- simulator-only: alarms, 32-bit counter, lost replies, restarts, pty ----------------------


@pytest.mark.faults
async def test_door_open_alarm_stops_the_wait() -> None:
    async with sim_cleaner() as (cleaner, sim):
        await cleaner.set_recipe(RECIPE)
        await cleaner.load("LOT42-09")
        await cleaner.start()
        sim.model.open_door(sim.now())
        with pytest.raises(ToolAlarm) as info:
            await cleaner.wait_done(timeout_s=600)
        assert (info.value.code, info.value.text) == (400, "DOOR OPEN")
        with pytest.raises(ToolAlarm, match="400"):
            await cleaner.wait_result(timeout_s=600)
        assert await cleaner.alarm() == Alarm(400, "DOOR OPEN")
        assert (await cleaner.status()).door_open
        with pytest.raises(DeviceBusy, match="COMMAND=CLEAR"):
            await cleaner.clear_alarm()
        sim.model.close_door(sim.now())
        await cleaner.clear_alarm()
        assert (await cleaner.wait_for(CleanerState.DONE, timeout_s=10)).state is CleanerState.DONE
        assert (await cleaner.result()).status is CleanStatus.ALARM


@pytest.mark.faults
async def test_cycle_count_is_32_bit_high_word_first() -> None:
    async with sim_cleaner() as (cleaner, sim):
        sim.model._cycle_count = 0x0001_86A0  # 100000: the simulator has no public setter
        assert await cleaner.link.read_input(20, 2, what="CYCLE_COUNT") == [0x0001, 0x86A0]
        assert (await cleaner.result()).cycle_count == 100000


@pytest.mark.faults
async def test_a_command_refused_once_while_busy_is_sent_again() -> None:
    """Exception 06 to a LOAD the cleaner's state allows (a busy moment, as ``busy=`` faults
    make it): sent again, not reported refused (the fault campaign found wafers failed so)."""
    plan = BusyArmed()
    async with sim_cleaner(plan) as (cleaner, _):
        await cleaner.set_recipe(RECIPE)
        assert await cleaner.state() is CleanerState.READY
        plan.armed = True
        await cleaner.load("LOT42-11")
        assert not plan.armed  # it was refused once
        assert await cleaner.state() is CleanerState.LOADED


async def test_a_command_whose_reply_was_lost_is_not_reported_as_refused() -> None:
    plan = DropArmedReply()
    async with sim_cleaner(plan) as (cleaner, _):
        await cleaner.set_recipe(RECIPE)
        await cleaner.load("LOT42-10")
        before = (await cleaner.result()).cycle_count
        replies: list[str] = []
        starts: list[str] = []

        def arm_on_start(direction: str, text: str) -> None:
            if direction == ">" and text.startswith("write_register 5 = 2 "):  # COMMAND=START
                plan.armed = True
                replies.clear()  # from here on: the replies to this command
                starts.append(text)
            elif direction == "<":
                replies.append(text)

        cleaner.link.trace = arm_on_start
        await cleaner.start()  # START ran, its reply was lost: the cleaner's state says so
        assert replies[0] == "no reply within 0.25 s; asking the tool"
        assert replies[-1] == "reply lost; the tool says it was carried out"
        assert len(starts) == 1  # never sent again
        cleaner.link.trace = None
        assert await cleaner.state() in (*CYCLE_STATES, CleanerState.DONE)
        assert (await cleaner.result()).cycle_count == before + 1  # started once, not twice


@pytest.mark.faults
async def test_driver_reconnects_after_the_cleaner_restarts() -> None:
    async with sim_cleaner() as (cleaner, sim):
        await cleaner.set_recipe(RECIPE)
        url = sim.url
        await sim.restart()
        assert sim.url == url  # same serial device server address
        assert await cleaner.recipe() == RECIPE


@pytest.mark.faults
async def test_rtu_on_a_pty() -> None:
    async with sim_cleaner(transport="pty") as (cleaner, sim):
        assert sim.url.startswith("/dev/")
        await cleaner.set_recipe(RECIPE)
        assert await cleaner.recipe() == RECIPE
        assert (await cleaner.status()).state in (CleanerState.IDLE, CleanerState.READY)


@pytest.mark.faults
async def test_corrupted_and_lost_replies_are_absorbed() -> None:
    plan = FaultPlan(drop=0.15, corrupt=0.15)
    async with sim_cleaner(plan, retries=8, timeout_s=0.05) as (cleaner, _):
        for _ in range(10):
            await cleaner.set_recipe(RECIPE)
            assert await cleaner.recipe() == RECIPE


@pytest.mark.faults
async def test_an_unload_whose_every_reply_was_lost_is_done_when_the_cleaner_says_so() -> None:
    """UNLOAD ran; its reply and the next three (as many as the link's attempts) are lost.
    The link does not count attempts and give up: it asks the cleaner, which is READY."""
    plan = DropReplies()
    async with sim_cleaner(plan) as (cleaner, _):
        await cleaner.set_recipe(RECIPE)
        await cleaner.wait_bath_ready(timeout_s=1800)
        await cleaner.load("LOT42-40")
        await cleaner.start()
        await cleaner.wait_done(timeout_s=1800)
        unloads: list[str] = []

        def arm_on_unload(direction: str, text: str) -> None:
            if direction == ">" and text.startswith("write_register 5 = 3 "):  # UNLOAD
                unloads.append(text)
                plan.left = cleaner.link.retries + 1

        cleaner.link.trace = arm_on_unload
        await cleaner.unload()
        cleaner.link.trace = None
        assert unloads == ["write_register 5 = 3 unit 2 (COMMAND=UNLOAD)"]  # sent once
        assert (await cleaner.status()).state in (CleanerState.IDLE, CleanerState.READY)


@pytest.mark.faults
async def test_every_command_is_judged_on_the_cleaners_word_on_a_lossy_bus() -> None:
    """Issue 10 item 7: drop=0.1, corrupt=0.05 on RTU. A command whose every reply is lost
    is still done when the cleaner says so; each wafer is started once and comes out."""
    plan = FaultPlan(drop=0.1, corrupt=0.05)
    plan.seed(7)
    async with sim_cleaner(plan, retries=6) as (cleaner, _):
        await cleaner.set_recipe(RECIPE)
        for n in range(3):
            await cleaner.wait_bath_ready(timeout_s=1800)
            before = (await cleaner.result()).cycle_count
            await cleaner.load(f"LOT42-3{n}")
            await cleaner.start()
            result = await cleaner.wait_result(timeout_s=1800)
            assert (result.wafer_id, result.status) == (f"LOT42-3{n}", CleanStatus.OK)
            assert (await cleaner.result()).cycle_count == before + 1  # started once
            await cleaner.unload()
            assert (await cleaner.status()).state in (CleanerState.IDLE, CleanerState.READY)


async def test_wrong_unit_gets_no_answer_on_the_bus(cleaner_env) -> None:
    cleaner, sim = cleaner_env
    if sim is None:
        pytest.skip("needs the simulated cleaner's address")
    stranger = ModbusLink.rtu(sim.url, tool="cleaner-9", unit=9, timeout_s=0.1, retries=0)
    async with stranger:
        with pytest.raises(Exception) as info:
            await stranger.read_input(0, 1, what="STATE")
    assert "cleaner-9: STATE" in str(info.value)


# --- console ----------------------------------------------------------------------------------


async def test_console_commands(cleaner_env) -> None:
    cleaner, _ = cleaner_env
    names = {c.name for c in CONSOLE_COMMANDS}
    assert {"status", "recipe", "load", "start", "result", "unload", "clear", "abort", "alarm",
            "wait-done"} <= names
    recipe_args = "60 120 30 30 2.5".split()
    assert await run_command(CONSOLE_COMMANDS, cleaner, "recipe", recipe_args) == RECIPE
    assert (await run_command(CONSOLE_COMMANDS, cleaner, "status", [])).state in CleanerState
    with pytest.raises(ConsoleUsageError, match="wash time"):
        await run_command(CONSOLE_COMMANDS, cleaner, "recipe", "60 long 30 30 2.5".split())
    with pytest.raises(ConsoleUsageError, match="usage: load WAFER_ID"):
        await run_command(CONSOLE_COMMANDS, cleaner, "load", [])


async def test_a_tank_at_the_edge_of_starts_band_is_waited_for_one_reading_step_inside() -> None:
    """IR 1 shows 0.1 °C; the tool may check its own finer value, and "within ±2 °C" may
    leave out the edge. A bath cooling from 70 to a 60 °C setpoint read 62.0 (62.04 inside
    the tool): ready for the driver, START refused (06) for the next seconds, sent again
    twice, 2 s apart, then given up - the step failed with the wafer LOADED. Now ready is
    one reading step inside the band, and a START refused at the edge waits for that."""
    async with sim_cleaner(scale=50.0) as (cleaner, sim):
        await cleaner.set_recipe(CleanRecipe(60.0, 60, 10, 10, 2.5))
        sim.model._bath_c = 62.04  # cooling towards 60 °C, shown as 62.0
        assert (await cleaner.status()).wash_temp_c == 62.0
        assert await cleaner.wait_bath_ready(timeout_s=120.0) <= 61.9
        sim.model._bath_c = 62.04  # the interlock's look saw 62.0 (in the band): loaded
        await cleaner.load("W1")
        await cleaner.start()
        assert (await cleaner.status()).state in (CleanerState.WASHING, CleanerState.RINSING)

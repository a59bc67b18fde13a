"""The engineer's console (controller/console/) on simulated tools: what each command says.

Every rough edge the console had is pinned here: a refusal says the tool's state and
what the command needs, no ``ok`` for "no alarm", no raw sentinel words, no Python
``None`` or lists, ``started`` (not ``done``) for a cycle that has only begun, and a
wait that can never end fails at once.
"""

from __future__ import annotations

import pytest
from modbus_fixtures import sim_cleaner, sim_oven
from serial_fixtures import ToolRig

from controller.console import COMMANDS, run_tool_command
from controller.console.show import show, zone_table
from drivers.errors import StateUnreachable, WrongState
from drivers.hostlink import parse_request
from drivers.types import CleanRecipe

RECIPE = CleanRecipe(wash_temp_c=60.0, wash_time_s=120, rinse_time_s=60, dry_time_s=60,
                     spray_pressure_bar=2.5)


async def test_a_load_without_a_recipe_says_the_state_and_what_is_needed(
    placer: ToolRig,
) -> None:
    if not placer.simulated:  # RCP is kept until a CHG: a real mounter may still hold one
        pytest.skip("needs a tool without a stored recipe (the simulated one)")
    with pytest.raises(WrongState) as info:
        await run_tool_command("placer", placer.driver, "load", ["W-T2"])
    assert str(info.value) == (
        "placer-1: LOD refused: NAK 04 WRONG STATE (placer-1 is IDLE; LOD needs IDLE and a "
        "stored recipe (send 'recipe' first; a changeover clears it))"
    )
    assert info.value.text == "WRONG STATE"  # the tool's own words stay as they were


async def test_no_alarm_says_so_and_an_empty_wafer_id_is_a_dash(placer: ToolRig) -> None:
    assert await run_tool_command("placer", placer.driver, "alarm", []) == "no alarm"
    status = show(await run_tool_command("placer", placer.driver, "status", []))
    assert "wafer_id          -" in status.splitlines()
    assert "None" not in status


async def test_waiting_for_a_state_the_tool_cannot_reach_fails_at_once(placer: ToolRig) -> None:
    await placer.driver.status()  # past the link's opening IDN
    sent = len(placer.sent())
    with pytest.raises(StateUnreachable, match="placer-1: not DONE: IDLE does not lead there"):
        await run_tool_command("placer", placer.driver, "wait", ["DONE", "3600"])
    assert [parse_request(f).cmd for f in placer.sent()[sent:]] == ["STS"]  # one look


async def test_oven_status_zones_and_alarm_read_as_text() -> None:
    async with sim_oven() as (oven, _):
        assert await run_tool_command("oven", oven, "alarm", []) == "no alarm"
        # Without nitrogen the tunnel is air (~209,000 ppm): O2_PPM sits at its top word.
        text = show(await run_tool_command("oven", oven, "status", []))
        assert "o2_ppm             over range (>= 65535 ppm)" in text.splitlines()
        assert "[" not in text and "None" not in text
        zones_cmd = next(c for c in COMMANDS["oven"] if c.name == "zones")
        assert zones_cmd.show is zone_table
        table = zone_table(await run_tool_command("oven", oven, "zones", []))
        rows = table.splitlines()
        assert rows[0] == "zone  °C" and len(rows) == 11
        assert rows[1].split()[0] == "1" and float(rows[10].split()[1]) > 0
    assert zone_table((150.0, None)).splitlines()[2] == "   2  thermocouple failed"


async def test_cleaner_start_says_started_not_done() -> None:
    async with sim_cleaner() as (cleaner, _):
        await cleaner.set_recipe(RECIPE)
        await cleaner.wait_bath_ready(timeout_s=1800)
        assert await run_tool_command("cleaner", cleaner, "load", ["W-C1"]) == (
            "W-C1 is in the chamber (LOADED)"
        )
        said = await run_tool_command("cleaner", cleaner, "start", [])
        assert said.startswith("cycle started (WASHING)")
        assert "done" not in said.split(";")[0]
        assert await run_tool_command("cleaner", cleaner, "abort", []) == (
            "cycle aborted: the wafer waits DONE (result ABORTED)"
        )

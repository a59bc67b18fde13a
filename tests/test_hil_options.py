"""Hardware in the loop: `pytest tests -m conformance --line-config FILE` runs only the driver
conformance tests, refuses a bad file before any test, and puts back what the tests
change on the tools (here the in-process simulated line stands in for the real one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from modbus_fixtures import real_tool
from serial_fixtures import RigFactory, mounted_setup

from controller.store import Store
from drivers.types import CleanRecipe, ReflowProfile
from sim.line import SimulatedLine

ROOT = Path(__file__).resolve().parents[1]
PROFILE_42 = ReflowProfile(
    zone_setpoints_c=(150.0, 165.0, 175.0, 185.0, 200.0, 230.0, 245.0, 235.0, 120.0, 60.0),
    conveyor_mm_min=600, o2_limit_ppm=100, tal_threshold_c=183.0, profile_id=42)
QUICK_CLEAN = CleanRecipe(wash_temp_c=60.0, wash_time_s=120, rinse_time_s=30, dry_time_s=30,
                          spray_pressure_bar=2.5)


def pytest_run(*args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                          env=None if env is None else {**os.environ, **env})


def test_a_line_config_that_does_not_load_stops_pytest_first(tmp_path: Path) -> None:
    done = pytest_run("tests/test_oven_driver.py", "--line-config", str(tmp_path / "nope.toml"))
    assert done.returncode == 4, done.stdout + done.stderr  # usage error: nothing ran
    assert "--line-config:" in done.stderr and "nope.toml" in done.stderr
    assert " passed" not in done.stdout


def test_a_line_a_controller_runs_is_refused_before_any_test(tmp_path: Path) -> None:
    """The conformance tests drive the tools and change them: not under a controller that
    holds the line's lease ($BUMPLINE_DB), as `bumpline tool`'s changing commands are not.
    Once nobody holds it, the same command goes ahead."""
    config = tmp_path / "line.toml"
    config.write_text(
        '[line]\nname = "bench"\nid = "bench-line"\ntime_scale = 1.0\n\n'
        '[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\nhost = "127.0.0.1"\n'
        "port = 1502\nunit = 1\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'line.db'}"
    args = ("tests/test_oven_driver.py", "--collect-only", "--line-config", str(config))
    with Store(db) as store:
        lease = store.acquire_line_lock("bench-line")  # this process: alive, lease fresh
        held = pytest_run(*args, env={"BUMPLINE_DB": db})
        store.release_lock(lease)
    assert held.returncode == 4, held.stdout + held.stderr  # usage error: nothing ran
    assert "line bench-line is run by a controller" in held.stderr, held.stderr
    assert "::" not in held.stdout
    free = pytest_run(*args, env={"BUMPLINE_DB": db})
    assert free.returncode == 0, free.stdout + free.stderr
    assert "tests/test_oven_driver.py::" in free.stdout


def test_line_config_runs_only_the_conformance_tests(tmp_path: Path) -> None:
    config = tmp_path / "line.toml"
    config.write_text(
        '[line]\nname = "bench"\ntime_scale = 1.0\n\n'
        '[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\nhost = "127.0.0.1"\n'
        "port = 1502\nunit = 1\n", encoding="utf-8")
    done = pytest_run("tests/test_oven_driver.py", "tests/test_report.py", "--collect-only",
                      "--line-config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/test_oven_driver.py::") for line in collected)
    plain = pytest_run("tests/test_oven_driver.py", "--collect-only", "-m", "conformance")
    assert len([line for line in plain.stdout.splitlines() if "::" in line]) == len(collected)


async def test_what_a_test_changes_on_the_tools_is_put_back(tmp_path: Path) -> None:
    async with SimulatedLine(speed=1000.0, seed=1) as line:
        config = tmp_path / "line.toml"
        config.write_text(line.config_text(), encoding="utf-8")
        async with real_tool(str(config), "oven") as oven:
            before = (await oven.status()).active_profile_id
            await oven.stage_profile(PROFILE_42)
            await oven.apply()
            assert (await oven.status()).active_profile_id == 42 != before
        async with real_tool(str(config), "cleaner") as cleaner:
            original = await cleaner.recipe()
            await cleaner.set_recipe(QUICK_CLEAN)
            assert await cleaner.recipe() == QUICK_CLEAN != original
        async with real_tool(str(config), "oven") as oven:
            assert (await oven.status()).active_profile_id == before
        async with real_tool(str(config), "cleaner") as cleaner:
            assert await cleaner.recipe() == original


async def test_a_profile_staged_and_not_applied_is_put_back_for_the_next_test(
        tmp_path: Path) -> None:
    """A test that stages a profile without applying it left it staged: the next test that
    applied one could not put the oven back ("was on profile 0, whose setpoints could not
    be read back"), and the oven stayed hot on the test's profile. Nitrogen switched off by
    a test stayed off."""
    async with SimulatedLine(speed=1000.0, seed=1) as line:
        config = tmp_path / "line.toml"
        config.write_text(line.config_text(), encoding="utf-8")
        async with real_tool(str(config), "oven") as oven:
            staged, active = await oven.staged_profile(), (await oven.status()).active_profile_id
            coils = ((await oven.status()).nitrogen_on, (await oven.status()).conveyor_running)
            await oven.stage_profile(PROFILE_42)  # staged only
            await oven.set_nitrogen(not coils[0])  # and the coils switched, as tests do
            await oven.set_conveyor(not coils[1])
        async with real_tool(str(config), "oven") as oven:
            assert await oven.staged_profile() == staged
            status = await oven.status()
            assert (status.nitrogen_on, status.conveyor_running) == coils
            await oven.stage_profile(PROFILE_42)
            await oven.apply()
        async with real_tool(str(config), "oven") as oven:
            assert (await oven.status()).active_profile_id == active
            assert await oven.staged_profile() == staged


# Another setup than the one mounted, whichever that is (CHG's arguments).
OTHER_SETUP = {"printer": (("ST-300-080", "Sn63Pb37"), ("ST-300-100", "Pb95Sn5")),
               "placer": (("SnAg3.5", 300), ("SAC305", 250))}


@pytest.mark.parametrize("role", ["printer", "placer"])
async def test_a_changeover_by_a_test_is_changed_back_for_the_next(tmp_path: Path,
                                                                    role: str) -> None:
    """A conformance test that changed the printer's stencil and paste (or the mounter's
    balls) left the real tool so: the line's next lot found another setup mounted."""
    async with SimulatedLine(speed=1000.0, seed=1) as line:
        config = tmp_path / "line.toml"
        config.write_text(line.config_text(), encoding="utf-8")
        tool = RigFactory(role, "pty", str(config))
        async with tool() as rig:
            before = await mounted_setup(rig.driver)
            first, second = OTHER_SETUP[role]
            other = first if before != first else second
            await rig.driver.changeover(*other)
            await rig.driver.wait_for("IDLE", timeout_s=3600)
            assert await mounted_setup(rig.driver) == other != before
        async with tool() as rig:
            assert await mounted_setup(rig.driver) == before

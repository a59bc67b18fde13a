"""`bumpline sim --platers 1` and `bumpline tool plater-1 ...`: the simulated barrier
plater as a process, its line configuration, the console with --trace, and its event
numbering across a simulator restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim_process import stop, wait_for_line_config

BUMPLINE = [sys.executable, "-m", "controller.cli"]


def _bumpline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BUMPLINE, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def _start_sim(where: Path, config: Path) -> subprocess.Popen:
    config.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*BUMPLINE, "sim", "--speed", "1000", "--platers", "1", "--printers", "0",
         "--placers", "0", "--ovens", "0", "--cleaners", "0", "--config-out", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=where,
    )
    try:
        wait_for_line_config(config, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def test_the_plater_is_served_driven_and_keeps_its_numbering_across_a_restart(
    tmp_path: Path,
) -> None:
    from drivers.line_config import load_line_config

    config = tmp_path / "line.toml"
    proc = _start_sim(tmp_path, config)
    try:
        tool = load_line_config(config).tool("plater-1")
        assert (tool.role, tool.transport, tool.host) == ("plater", "text-tcp", "127.0.0.1")
        assert tool.state_file == str(tmp_path / "plater-1.state.json")

        out = _bumpline("tool", "plater-1", "identity", "--line", str(config), "--trace",
                        cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "BARRIERTEK" in out.stdout and "EP-25" in out.stdout
        sent = [ln for ln in out.stderr.splitlines() if " plater-1 > " in ln]
        assert sent[0].split()[0].replace(".", "").isdigit() and sent[0].endswith("> *IDN?")

        out = _bumpline("tool", "plater-1", "load", "B1", "W01,W02", "--line", str(config),
                        cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "loaded B1 (2 wafers)"

        out = _bumpline("tool", "plater-1", "recipe", "9", "0.08", "85", "80", "--line",
                        str(config), cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.strip() == (
            "bumpline: plater-1: RECIPE 9 0.08 85 80 refused: ERR 03 RANGE")

        out = _bumpline("tool", "plater-1", "load", "B1", "--line", str(config), cwd=tmp_path)
        assert out.returncode == 2 and "usage: load BATCH_ID" in out.stderr
    finally:
        stop(proc)

    proc = _start_sim(tmp_path, config)  # the same state file: the tool "powered back up"
    try:
        out = _bumpline("tool", "plater-1", "status", "--json", "--line", str(config),
                        cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        assert (status["state"], status["batch_id"]) == ("LOADED", "B1")
        out = _bumpline("tool", "plater-1", "events", "--line", str(config), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        numbers = [int(ln.split(" ")[0][1:]) for ln in out.stdout.splitlines()]
        assert numbers == list(range(1, len(numbers) + 1))
        # LOAD's, then the power-up announcement (the carrier is still in the port)
        assert out.stdout.count("STATE LOADED") == 2
    finally:
        stop(proc)

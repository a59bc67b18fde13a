"""`bumpline sim` and `bumpline tool`: the simulated line as a process, and the engineer's console.

The simulator runs as its own process (as it does for an engineer), writes its line
configuration, and stops cleanly on SIGTERM; `bumpline tool` talks to each of the
four tools through it, and every failure is one line and a non-zero exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sim_process import stop, wait_for_line_config

BUMPLINE = [sys.executable, "-m", "controller.cli"]


def _bumpline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BUMPLINE, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.fixture(scope="module")
def sim_process(tmp_path_factory: pytest.TempPathFactory):
    """`bumpline sim` with a scheduled printer alarm, serving the serial tools over TCP, and
    one cleaner of each model."""
    where = tmp_path_factory.mktemp("sim")
    config = where / "line.toml"
    proc = subprocess.Popen(
        [
            *BUMPLINE,
            "sim",
            "--speed",
            "1000",
            "--seed",
            "1",
            "--serial",
            "tcp",
            "--faults",
            "placer-1:alarm=240@1",
            "--cleaners",
            "fc-1,fc-2",
            "--config-out",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=where,
    )
    try:
        wait_for_line_config(config, proc)
        yield proc, config, where
    finally:
        stop(proc)
        proc.stdout.close()
        proc.stderr.close()


def test_sim_writes_every_tool_into_the_line_configuration(sim_process) -> None:
    from drivers.line_config import load_line_config

    _, config, _ = sim_process
    line = load_line_config(config)
    assert line.time_scale == 1000.0
    roles = {t.name: (t.role, t.transport) for t in line.tools.values()}
    assert roles == {
        "printer-1": ("printer", "serial"),
        "placer-1": ("placer", "serial"),
        "oven-1": ("oven", "modbus-tcp"),
        "cleaner-1": ("cleaner", "modbus-rtu"),
        "cleaner-2": ("cleaner", "modbus-rtu"),
    }
    assert str(line.tool("printer-1").port).startswith("socket://127.0.0.1:")
    assert line.tool("cleaner-1").parity == "E"
    assert [line.tool(f"cleaner-{n}").model for n in (1, 2)] == ["FC-1", "FC-2"]
    assert 'model = "FC-2"' in config.read_text(encoding="utf-8")  # named, not defaulted


def test_tool_runs_commands_on_every_tool(sim_process) -> None:
    _, config, where = sim_process
    out = _bumpline("tool", "printer-1", "identify", "--line", str(config), cwd=where)
    assert out.returncode == 0, out.stderr
    assert "ACME-PRINT" in out.stdout and "WP-300" in out.stdout

    out = _bumpline("tool", "oven-1", "status", "--line", str(config), "--json", cwd=where)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["state"] == "OFF" and len(status["zone_pv_c"]) == 10

    out = _bumpline("tool", "cleaner-1", "status", "--line", str(config), "--json", cwd=where)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] in ("READY", "IDLE")
    assert json.loads(out.stdout)["strip_temp_c"] is None  # an FC-1 has no strip tank

    out = _bumpline("tool", "cleaner-2", "status", "--line", str(config), "--json", cwd=where)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["strip_temp_c"] == 50.0  # the FC-2's, read through its map


def test_trace_shows_every_frame_with_a_timestamp(sim_process) -> None:
    _, config, where = sim_process
    out = _bumpline("tool", "printer-1", "status", "--line", str(config), "--trace", cwd=where)
    assert out.returncode == 0, out.stderr
    sent = [line for line in out.stderr.splitlines() if " printer-1 > " in line]
    got = [line for line in out.stderr.splitlines() if " printer-1 < " in line]
    assert sent and got
    assert sent[0].split()[0].replace(".", "").isdigit()  # a timestamp first
    # the link's opening IDN (hostlink.md rule 3: a new process is never a retransmission)
    assert ",IDN*" in sent[0] and ",ACK,IDN," in got[0]
    assert ",STS*" in sent[1] and ",ACK,STS," in got[1]

    out = _bumpline("tool", "oven-1", "zones", "--line", str(config), "--trace", cwd=where)
    assert out.returncode == 0, out.stderr
    assert " oven-1 > " in out.stderr and " oven-1 < " in out.stderr
    assert out.stdout.splitlines()[0] == "zone  °C" and len(out.stdout.splitlines()) == 11


def test_a_refused_command_is_one_line_and_non_zero(sim_process) -> None:
    _, config, where = sim_process
    out = _bumpline("tool", "printer-1", "print", "--line", str(config), cwd=where)
    assert out.returncode == 1
    # the tool's NAK, then what the console found out: the state it is in and what PRT needs
    assert out.stderr.strip() == (
        "bumpline: printer-1: PRT refused: NAK 04 WRONG STATE "
        "(printer-1 is IDLE; PRT needs READY (a loaded wafer))"
    )
    assert "Traceback" not in out.stderr

    out = _bumpline("tool", "cleaner-1", "load", "W1", "strip", "--line", str(config), cwd=where)
    assert out.returncode == 1
    assert out.stderr.strip().startswith(
        "bumpline: cleaner-1: the FC-1 has no RESIST_STRIP mode; a resist strip needs")
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_scheduled_alarm_shows_on_the_tool(sim_process) -> None:
    _, config, where = sim_process
    # The fault plan raised alarm 240 at tool time 1 s: the mounter refuses work (NAK 05)
    # and reports the alarm; it is not hidden.
    out = _bumpline("tool", "placer-1", "alarm", "--line", str(config), "--json", cwd=where)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["code"] == 240
    out = _bumpline("tool", "placer-1", "load", "W1", "--line", str(config), cwd=where)
    assert out.returncode == 1
    assert "NAK 05 ALARM ACTIVE" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tool", "printer-9", "status"], "no tool named 'printer-9'"),
        (["tool", "printer-1", "explode"], "printer-1 (printer) has no command 'explode'"),
        (["tool", "printer-1", "load"], "usage:"),
        (["tool", "oven-1", "n2", "maybe"], "usage:"),
    ],
)
def test_console_mistakes_are_clear(sim_process, args: list[str], message: str) -> None:
    _, config, where = sim_process
    out = _bumpline(*args, "--line", str(config), cwd=where)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unreachable_tool_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "line.toml"
    config.write_text(
        '[line]\nname = "x"\n[tools.printer-1]\nrole = "printer"\n'
        f'port = "{tmp_path / "no-such-port"}"\n'
        '[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\nhost = "127.0.0.1"\n'
        "port = 9\ntimeout_s = 0.2\nretries = 0\n"
    )
    for tool in ("printer-1", "oven-1"):
        out = _bumpline("tool", tool, "status", "--line", str(config), cwd=tmp_path)
        assert out.returncode == 1, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bumpline: {tool}:"), out.stderr


def test_sim_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "line.toml"
    proc = subprocess.Popen(
        [*BUMPLINE, "sim", "--config-out", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        wait_for_line_config(config, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert "stopping simulated line" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "--speed", "0"], "must be > 0"),
        (["sim", "--faults", "printer-1:explode=1"], "unknown key 'explode'"),
        (["sim", "--faults", "printer-7:drop=0.1"], "unknown tool(s): printer-7"),
        (["sim", "--cleaners", "fc-1,fc-3"], "cleaner models from fc-1, fc-2"),
        (["sim", "--oven-belt-count", "wafers"], "invalid choice: 'wafers'"),
    ],
)
def test_sim_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    out = _bumpline(*args, "--config-out", str(tmp_path / "x.toml"), cwd=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_help_needs_no_line_file(tmp_path: Path) -> None:
    """Issue 11: `bumpline tool oven-1 help` refused without --line. A tool named after its
    role lists that role's commands; `bumpline tool help` lists every role's."""
    oven = _bumpline("tool", "oven-1", "help", cwd=tmp_path)
    assert oven.returncode == 0, oven.stderr
    assert oven.stdout.startswith("oven-1 (oven) commands:\n") and "wait-exit" in oven.stdout
    assert _bumpline("tool", "oven-1", cwd=tmp_path).stdout == oven.stdout  # help by default
    every = _bumpline("tool", "help", cwd=tmp_path)
    assert every.returncode == 0 and every.stdout.count(" commands:") == 5
    for role in ("printer", "placer", "oven", "cleaner", "plater"):
        assert f"{role} ({role}) commands:" in every.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tool", "reflow-a", "help"], "no tool role in the name 'reflow-a'"),
        (["tool", "oven-1", "status"], "bumpline tool oven-1 status needs --line FILE"),
    ],
)
def test_without_a_line_file_other_commands_say_what_is_missing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = _bumpline(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert message in out.stderr and "Traceback" not in out.stderr

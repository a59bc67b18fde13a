"""A controller killed with SIGKILL mid-lot, again and again, and restarted.

The simulated line runs in its own process (`bumpline sim`), as real tools would,
so it keeps working while the controller is dead. The lot must complete, no
wafer or step record may be lost, and no wafer may be reflowed twice — which we
check on the oven's own log of every LOAD it accepted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sim_process import stop, wait_for_line_config

from controller.store import Store

BUMPLINE = [sys.executable, "-m", "controller.cli"]
WAFERS = 3
SPEED = 400


@pytest.fixture
def sim_line(tmp_path: Path):
    config = tmp_path / "line.toml"
    log = open(tmp_path / "sim.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*BUMPLINE, "sim", "--speed", str(SPEED), "--seed", "3", "--config-out", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=tmp_path,
    )
    try:
        wait_for_line_config(config, proc)
        yield config, tmp_path / "sim.log"
    finally:
        stop(proc, timeout_s=10)
        log.close()


def _run_until(args: list[str], cwd: Path, kill_after_steps: int | None) -> tuple[int, str]:
    """Run the controller; SIGKILL it once it has finished that many more steps."""
    proc = subprocess.Popen(
        [*BUMPLINE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, text=True
    )
    seen, out = 0, []
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if "judged_ok" in line or "step_failed" in line:
            seen += 1
            if kill_after_steps is not None and seen >= kill_after_steps:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.stdout.close()
    return proc.wait(timeout=120), "".join(out)


def _retry_misprints(db: str, cwd: Path) -> None:
    """A print out of its SPI window is the paste's doing: the engineer retries it. Anything
    else awaiting disposition (e.g. recovery that could not tell) fails the test."""
    with Store(db, create=False) as store:
        for wafer in store.wafers("K1"):
            if wafer.state != "awaiting_disposition":
                continue
            last = store.events(wafer.id)[-1]
            assert last.step_kind == "print" and not last.why.startswith("recovery"), last
            subprocess.run(
                [
                    *BUMPLINE,
                    "wafer",
                    "disposition",
                    wafer.id,
                    "--retry",
                    "--reason",
                    "reprint after clean",
                    "--db",
                    db,
                ],
                cwd=cwd,
                check=True,
            )


@pytest.mark.slow
def test_sigkill_at_several_points_then_the_lot_completes(
    sim_line, tmp_path: Path, db_url: str
) -> None:
    config, sim_log = sim_line
    db = db_url  # SQLite, then PostgreSQL
    common = ["--line", str(config), "--db", db, "--plain", "--report-dir", str(tmp_path)]
    code, out = _run_until(
        ["run", "--lot", "K1", "--recipe", "rebump-hipb-snpb", "--wafers", str(WAFERS), *common],
        tmp_path,
        kill_after_steps=2,
    )
    assert code == -signal.SIGKILL, out
    # Kill again at later points: during the first pass, around the changeovers, the cap pass.
    for kill_after in (3, 4, 5):
        code, out = _run_until(["run", "--resume", "K1", *common], tmp_path, kill_after)
        assert code == -signal.SIGKILL, out
    for _ in range(5):
        code, out = _run_until(["run", "--resume", "K1", *common], tmp_path, None)
        if code != 3:
            break
        _retry_misprints(db, tmp_path)  # the process, not recovery, failed a wafer
    assert code == 0, out
    assert "lot K1: complete" in out

    with Store(db, create=False) as store:
        assert store.get_lot("K1").state == "complete"
        for wafer in store.wafers("K1"):
            assert wafer.state == "complete", wafer
            steps = store.steps(wafer.id)
            done = Counter(s.step_index for s in steps if s.status == "done")
            # Every step recorded exactly once as done, with its results.
            assert done == Counter(range(1, 7)), (
                wafer.id,
                [(s.step_index, s.status) for s in steps],
            )
            for s in steps:
                if s.status == "done":
                    assert s.results, (wafer.id, s.step_index)
            # The event log has no gap: each event starts where the previous one ended.
            events = store.events(wafer.id)
            for before, after in zip(events, events[1:], strict=False):
                assert after.from_state == before.to_state, (wafer.id, before, after)
            assert events[-1].to_state == "complete"
        # The kills really caught wafers mid-step, and recovery asked the tools about them.
        recovered = [a.detail for a in store.audit_log(lot_id="K1") if a.action == "wafer.recovery"]
        assert recovered, "no kill landed mid-step: the test did not exercise recovery"

    # The oven's own record: every wafer entered the tunnel exactly twice (two reflows).
    loads = Counter(re.findall(r"oven-1 t=\S+ s: LOAD '(K1-\d\d)'", sim_log.read_text()))
    assert loads == Counter({f"K1-{slot:02d}": 2 for slot in range(1, WAFERS + 1)}), loads

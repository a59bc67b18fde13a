"""`bumpline serve`: the line as a service takes queued lots, most urgent first."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.store import Store

BUMPLINE = [sys.executable, "-m", "controller.cli"]


def test_serve_once_runs_every_queued_lot(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    for lot, priority in (("LATER", "9"), ("FIRST", "1")):
        subprocess.run(
            [
                *BUMPLINE,
                "lot",
                "start",
                "--lot",
                lot,
                "--recipe",
                "ballmount-sac305",
                "--wafers",
                "1",
                "--priority",
                priority,
                "--db",
                db,
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
    out = subprocess.run(
        [
            *BUMPLINE,
            "serve",
            "--once",
            "--speed",
            "2000",
            "--seed",
            "1",
            "--db",
            db,
            "--report-dir",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    with Store(db, create=False) as store:
        lots = {lot.id: lot for lot in store.list_lots()}
        assert {lot_id: lot.state for lot_id, lot in lots.items()} == {
            "FIRST": "complete",
            "LATER": "complete",
        }
        assert lots["FIRST"].started_at < lots["LATER"].started_at  # priority 1 went first
    assert (tmp_path / "reports" / "FIRST" / "report.html").exists()
    assert (tmp_path / "reports" / "LATER" / "report.html").exists()


def _start(db: str, lot: str, recipe: str, wafers: str, priority: str, cwd: Path) -> None:
    subprocess.run([*BUMPLINE, "lot", "start", "--lot", lot, "--recipe", recipe, "--wafers",
                    wafers, "--priority", priority, "--db", db], check=True,
                   capture_output=True, cwd=cwd)


def test_serve_once_goes_on_past_a_lot_that_waits_for_a_person(tmp_path: Path) -> None:
    from controller.report import duration, lot_timeline

    db = f"sqlite:///{tmp_path / 'line.db'}"
    # HOLD goes first (priority 1) and its only wafer is held by an operator: it stops
    # there for a person; NEXT is still queued and must run.
    _start(db, "HOLD", "rebump-hipb-snpb", "1", "1", tmp_path)
    _start(db, "NEXT", "ballmount-sac305", "1", "9", tmp_path)
    subprocess.run([*BUMPLINE, "wafer", "hold", "HOLD-01", "--reason", "inspect", "--db", db],
                   check=True, capture_output=True, cwd=tmp_path)
    out = subprocess.run(
        [*BUMPLINE, "serve", "--once", "--speed", "2000", "--seed", "1", "--db", db,
         "--report-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 3, out.stdout + out.stderr  # a lot is left for a person
    assert "Traceback" not in out.stderr
    with Store(db, create=False) as store:
        assert {lot.id: lot.state for lot in store.list_lots()} == {
            "HOLD": "running", "NEXT": "complete"}
        assert store.get_wafer("HOLD-01").state == "held"
        tool_s = {lot: lot_timeline([store.wafer_history(w.id) for w in store.wafers(lot)]).span
                  for lot in ("HOLD", "NEXT")}
    # Each lot's own tool time, not the session's.
    assert f"lot tool time {duration(tool_s['HOLD'])};" in out.stdout
    assert f"lot tool time {duration(tool_s['NEXT'])};" in out.stdout
    assert duration(tool_s["HOLD"]) != duration(tool_s["NEXT"])
    hint = out.stdout[out.stdout.index("lot HOLD is running and not finished."):]
    assert "1 wafer waits for an engineer (HOLD-01)" in hint
    # A held wafer resumes (--continue) or is scrapped: it refuses --retry.
    assert "--continue (it resumes) or --scrap, e.g." in hint
    assert "  bumpline wafer disposition HOLD-01 --continue --reason TEXT --db " in hint
    assert f"  bumpline run --resume HOLD --db {tmp_path / 'line.db'}" in hint
    assert all(len(line) <= 80 for line in hint.splitlines()[:5] if "--db" not in line)
    assert "lot NEXT is" not in out.stdout  # nothing to say about a lot that completed
    listed = subprocess.run([*BUMPLINE, "lot", "list", "--db", db], capture_output=True,
                            text=True, cwd=tmp_path, check=True).stdout
    assert re.search(r"^HOLD\s+stopped\s", listed, re.MULTILINE), listed
    assert re.search(r"^NEXT\s+complete\s", listed, re.MULTILINE), listed


def test_sigterm_stops_an_idle_serve_cleanly(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    proc = subprocess.Popen([*BUMPLINE, "serve", "--db", db], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout.readline().startswith("bumpline serve: no lot to run; waiting")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == "bumpline serve: stopped\n"


def test_second_ctrl_c_leaves_at_once_with_a_resume_hint(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    proc = subprocess.Popen(
        [*BUMPLINE, "run", "--lot", "CC", "--recipe", "rebump-hipb-snpb", "--wafers", "2",
         "--speed", "40", "--seed", "1", "--db", db, "--report-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout.readline().startswith("bumpline: CC on the simulated line")
        # The first finished step (after any setup notes: tools are set up ahead of their
        # wafers): the next wafer's print and this one's reflow now run for several wall
        # seconds at 40x.
        lines = [proc.stdout.readline()]
        while "judged_ok" not in lines[-1] and lines[-1] and len(lines) < 30:
            lines.append(proc.stdout.readline())
        assert "judged_ok" in lines[-1], lines
        with Store(db, create=False) as store:  # until a step runs (bounded)
            for _ in range(500):
                if any(s.status == "running" for w in ("CC-01", "CC-02")
                       for s in store.steps(w)):
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("no step started")
        proc.send_signal(signal.SIGINT)
        assert proc.stderr.readline() == "\n"
        assert proc.stderr.readline().startswith("stopping: no new steps start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "left at once" in err
    assert "lot CC is running and not finished.\ncontinue it with\n" in out
    assert f"  bumpline run --resume CC --db {tmp_path / 'line.db'}\n" in out
    with Store(db, create=False) as store:
        assert store.get_lot("CC").state == "running"

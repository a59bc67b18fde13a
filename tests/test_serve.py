"""`bumpline serve`: the line as a service takes queued lots, most urgent first."""

from __future__ import annotations

import subprocess
import sys
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

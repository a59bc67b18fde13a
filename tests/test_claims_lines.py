"""Three simulated lines, their ``bumpline serve`` controllers, one PostgreSQL: nine lots
each run exactly once on a line that can run them, and a controller killed mid-lot leaves
its lot to its own line (skipped in one line without PostgreSQL).

Line A has every tool, line B no printer (no rebump), line C no placer (no ball mount).
Nothing waits on a clock: each wait is for a line of a process's output or its exit,
with a limit that only guards against a hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from controller.store import Store
from sequences.recipes.validate import load_valid_recipe

BUMPLINE = [sys.executable, "-m", "controller.cli"]
BALLMOUNT = "ballmount-sac305"  # place, reflow, clean
REBUMP = "rebump-hipb-snpb"  # print, reflow, clean
HANG_S = 240.0
LAYOUTS = {"bay-A": [], "bay-B": ["--printers", "0"], "bay-C": ["--placers", "0"]}
SPEEDS = {"bay-A": "1000", "bay-B": "300", "bay-C": "1000"}  # B slower: killed mid-lot
LOTS = {  # lot: (recipe, line it is queued for or None)
    "BM1": (BALLMOUNT, None), "BM2": (BALLMOUNT, None), "BM3": (BALLMOUNT, None),
    "BM4": (BALLMOUNT, None), "BMB": (BALLMOUNT, "bay-B"),
    "RB1": (REBUMP, None), "RB2": (REBUMP, None), "RB3": (REBUMP, None),
    "RBC": (REBUMP, "bay-C"),
}
CAN_RUN = {BALLMOUNT: {"bay-A", "bay-B"}, REBUMP: {"bay-A", "bay-C"}}


def _sim(line: str, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp / f"{line}.sim.toml"
    proc = subprocess.Popen(
        [*BUMPLINE, "sim", "--speed", SPEEDS[line], "--seed", "1", "--config-out", str(out),
         *LAYOUTS[line]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp)
    assert proc.stderr is not None
    for text in proc.stderr:  # the configuration is written before this line
        if text.startswith("simulated line"):
            break
    else:
        raise AssertionError(f"bumpline sim for {line} ended: {proc.wait()}")
    config = tmp / f"{line}.toml"
    config.write_text(out.read_text().replace("[line]\n", f'[line]\nid = "{line}"\n', 1))
    return proc, config


def _serve(config: Path, db: str, tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BUMPLINE, "serve", "--once", "--line", str(config), "--db", db,
         "--report-dir", str(tmp / "reports"), "--user", "tester"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_three_lines_run_nine_lots_each_once(pg_url: str, tmp_path: Path) -> None:
    with Store(pg_url) as store:
        for lot_id, (recipe_name, line) in LOTS.items():
            recipe = load_valid_recipe(recipe_name)
            store.create_lot(lot_id, recipe_name=recipe_name, recipe_version=recipe.version,
                             recipe_hash=recipe.hash, slots=[1], user="tester", line_id=line)
    sims: list[subprocess.Popen[str]] = []
    serves: dict[str, subprocess.Popen[str]] = {}
    try:
        configs = {}
        for line in LAYOUTS:
            proc, configs[line] = _sim(line, tmp_path)
            sims.append(proc)
        for line in LAYOUTS:
            serves[line] = _serve(configs[line], pg_url, tmp_path)
        # Kill line B's controller mid-lot: once a wafer of its lot has moved.
        b = serves["bay-B"]
        assert b.stdout is not None
        killed_lots: list[str] = []
        for text in b.stdout:
            if text.startswith("bumpline: ") and " on the line " in text:
                killed_lots = text.removeprefix("bumpline: ").split(" on the ")[0].split(", ")
            elif killed_lots and text.startswith(tuple(f"{lot}-" for lot in killed_lots)):
                break
        else:
            raise AssertionError(f"serve on bay-B ended without a lot: {b.communicate()}")
        b.send_signal(signal.SIGKILL)
        b.communicate(timeout=HANG_S)  # and its pipes closed
        for line in ("bay-A", "bay-C"):
            out, err = serves[line].communicate(timeout=HANG_S)
            assert serves[line].returncode == 0, out + err
            assert "Traceback" not in err
        with Store(pg_url) as store:
            for lot_id in killed_lots:  # half-done, and nobody else took it
                lot = store.get_lot(lot_id)
                assert (lot.state, lot.line_id) == ("running", "bay-B"), lot
        # Line B's controller comes back and finishes what it left.
        serves["bay-B"] = again = _serve(configs["bay-B"], pg_url, tmp_path)
        out, err = again.communicate(timeout=HANG_S)
        assert again.returncode == 0, out + err
        for lot_id in killed_lots:
            assert f"lot {lot_id}: " in out
    finally:
        for proc in [*serves.values(), *sims]:
            _stop(proc)
    with Store(pg_url) as store:
        for lot_id, (recipe_name, queued_for) in LOTS.items():
            lot = store.get_lot(lot_id)
            assert lot.state == "complete", lot
            assert lot.line_id in CAN_RUN[recipe_name], lot
            assert queued_for in (None, lot.line_id), lot
            starts = [a.detail for a in store.audit_log(lot_id=lot_id)
                      if a.action == "controller.start"]
            # Once per controller run, every run on the lot's own line.
            assert starts and all(f"{lot.line_id}.toml" in d for d in starts), starts
            if lot_id not in killed_lots:
                assert len(starts) == 1, starts

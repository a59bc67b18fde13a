"""Bad input and operator requests with no controller (issue 10, items 10 and 12): each
bad input is one clear error line and a non-zero exit, refused before any line opens; a
lot request is carried out where that is safe or said to be queued, never both."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from controller.store import Store

RECIPE = "rebump-hipb-snpb"

LINE = """\
[line]
name = "bad-input"
time_scale = 100.0

[tools.printer-1]
role = "printer"
transport = "serial"
port = "/dev/null"
"""


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    monkeypatch.setenv("BUMPLINE_USER", "ann")
    return f"sqlite:///{tmp_path / 'line.db'}"


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refusals
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 or code == 2, err  # argparse prints its usage line first
    return code, lines[-1]


def run_args(db: str, *extra: str) -> list[str]:
    return ["run", "--lot", "BAD1", "--recipe", RECIPE, "--wafers", "1", "--speed", "2000",
            "--plain", "--db", db, *extra]


def lot_ids(db: str) -> list[str]:
    with Store(db) as store:
        return [lot.id for lot in store.list_lots()]


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ("oven-9:drop=0.1", "unknown tool(s): oven-9"),
        ("oven:alarm=550@1200", "unknown tool(s): oven "),
        ("oven-1:door=5-10", "the oven has no door alarm"),
        ("printer-1:delay=0.5,delay_s=-3", "delay_s=SECONDS >= 0"),
        ("cleaner-1:door=10-5", "the door closes before it opens"),
        ("printer-1:di=10-50", "only the cleaner has DI rinse water"),
    ],
)
@pytest.mark.parametrize("command", ["run", "sim"])
def test_fault_plans_are_refused_alike_in_run_and_sim(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db: str, command: str, faults: str,
    message: str,
) -> None:
    if command == "run":
        argv = run_args(db, "--faults", faults)
    else:
        argv = ["sim", "--faults", faults, "--config-out", str(tmp_path / "line.toml")]
    _, line = one_line_error(capsys, *argv)
    assert message in line
    assert not (tmp_path / "line.toml").exists()
    if command == "run":
        assert "BAD1" not in lot_ids(db)  # nothing ran: no lot reported clean


def test_priority_out_of_range_is_refused(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, line = one_line_error(capsys, *run_args(db, "--priority", "0"))
    # As `lot start --priority 12` (test_cli_lots): a value the line's rules refuse is 1.
    assert code == 1 and "--priority must be 1-9" in line and "got 0" in line
    assert "BAD1" not in lot_ids(db)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (LINE.replace('port = "/dev/null"', 'port = "/dev/null"\ntimeout_s = nan').encode(),
         "timeout_s: expected a reply timeout in seconds > 0"),
        (LINE.replace("time_scale = 100.0", "time_scale = inf").encode(),
         "time_scale: expected a number > 0"),
        ((LINE + LINE.split("\n\n", 1)[1].replace("printer-1", "PRINTER-1")).encode(),
         "tools.PRINTER-1: the same tool as tools.printer-1"),
    ],
    ids=["binary", "timeout-nan", "scale-inf", "same-name-other-case"],
)
def test_bad_line_files_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: bytes, message: str
) -> None:
    path = tmp_path / "line.toml"
    path.write_bytes(edit)
    _, line = one_line_error(capsys, "sim", "--line", str(path), "--config-out",
                             str(tmp_path / "out.toml"))
    assert message in line


def test_lot_hold_needs_a_reason(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert main(["lot", "start", "--lot", "L1", "--recipe", RECIPE, "--wafers", "2",
                 "--db", db]) == 0
    code, _ = one_line_error(capsys, "lot", "hold", "L1", "--db", db)
    assert code == 2
    with Store(db) as store:
        assert store.get_lot("L1").state == "queued"


# --- operator requests with no controller ------------------------------------------------------


def started_lot(capsys: pytest.CaptureFixture[str], db: str) -> None:
    """A lot whose controller stopped with one wafer at the printer, one never started."""
    assert main(["lot", "start", "--lot", "L2", "--recipe", RECIPE, "--wafers", "2",
                 "--db", db]) == 0
    with Store(db) as store:
        store.set_lot_state("L2", "running")
        store.record_transition("L2-01", "queued", "step1_waiting", "start", location="printer-1")
        store.audit("controller", "controller.start", "run", lot_id="L2")
        store.audit("controller", "controller.stop", "run", lot_id="L2")
    capsys.readouterr()


def show(capsys: pytest.CaptureFixture[str], db: str, lot: str) -> dict:
    assert main(["lot", "show", lot, "--db", db, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_abort_with_no_controller_and_a_wafer_in_process_changes_nothing(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    started_lot(capsys, db)
    _, line = one_line_error(capsys, "lot", "abort", "L2", "--db", db)
    assert "1 wafer(s) in process (L2-01" in line and "bumpline run --resume L2" in line
    shown = show(capsys, db, "L2")
    assert shown["lot"]["state"] == "running"
    assert shown["pending_requests"] == []


def test_requests_with_no_controller_are_carried_out_here(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    started_lot(capsys, db)
    assert main(["lot", "hold", "L2", "--reason", "stencil check", "--db", db]) == 0
    assert capsys.readouterr().out == "lot L2 is now held\n"
    assert main(["lot", "resume", "L2", "--db", db]) == 0
    assert capsys.readouterr().out == "lot L2 is now running\n"
    assert show(capsys, db, "L2")["pending_requests"] == []


_LOT_HOLDER = """
import sys
from controller.store import Holder, Store
with Store(sys.argv[1]) as store:
    store.acquire_lot_lock("L2", holder=Holder("bumpline run by ann"))
    print("held", flush=True)
    sys.stdin.read()  # a controller running the lot, until it is killed
"""


def test_requests_to_a_running_controller_say_queued(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    """"Running" is the lot's lease, held here by a live process; the audit log's last word
    (a stop) does not count. Once that process is SIGKILLed its lease is stale: no
    controller runs the lot, and the request is judged here (an abort with a wafer in
    process is refused, not queued for nobody)."""
    started_lot(capsys, db)  # its audit log ends with controller.stop
    holder = subprocess.Popen([sys.executable, "-c", _LOT_HOLDER, db], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert main(["lot", "abort", "L2", "--db", db]) == 0
        out = capsys.readouterr().out
        assert "abort queued for the controller running it" in out and "now" not in out
        assert f"pid {holder.pid}" in out
        shown = show(capsys, db, "L2")
        assert [r["action"] for r in shown["pending_requests"]] == ["abort_lot"]
        assert shown["lot"]["controller_running"] is True
        holder.kill()
        assert holder.wait(timeout=60) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=60)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
    assert show(capsys, db, "L2")["lot"]["controller_running"] is False
    _, line = one_line_error(capsys, "lot", "abort", "L2", "--db", db)
    assert "no controller runs the lot" in line  # not queued for a dead one

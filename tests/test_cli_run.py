"""``bumpline run``: a lot on the in-process simulated line, and every kind of bad input.

In-process through ``controller.cli.main`` (output captured), and as the real
``bumpline`` executable in a subprocess: what an operator types and sees. Bad
input must give one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from controller.store import Store
from sequences.recipes.validate import load_valid_recipe

RECIPE = "rebump-hipb-snpb"
SPEED = "500"  # at 2000x, and at 1000x beside a browser test and another suite, a busy
# machine held the controller up past a wafer's exit margin now and then ("came out after
# its step gave up on it"): a wall stall is tool time multiplied by the speed
BUMPLINE = Path(sys.executable).with_name("bumpline")  # the venv's console script
SUBPROCESS_TIMEOUT_S = 120.0  # wall bound on a whole subprocess run (a hang fails)
SUMMARY = re.compile(r"^lot (\S+): (\w+); (\d+)/(\d+) wafers complete", re.MULTILINE)
REPORT = re.compile(r"^report: (.+)$", re.MULTILINE)


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'line.db'}"


def run_args(tmp_path: Path, *args: str) -> list[str]:
    """``bumpline run ARGS`` on a database and report folder of this test's own."""
    return ["run", *args, "--db", db_url(tmp_path), "--report-dir", str(tmp_path / "reports"),
            "--user", "tester"]


def cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_clear_line(code: int, err: str) -> str:
    """The error: a non-zero exit, one line on stderr naming bumpline, no traceback."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bumpline: ")
    return lines[0]


def queue_lot(tmp_path: Path, lot_id: str, wafers: int = 2) -> None:
    recipe = load_valid_recipe(RECIPE)
    with Store(db_url(tmp_path)) as store:
        store.create_lot(lot_id, recipe_name=RECIPE, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=list(range(1, wafers + 1)), user="tester")


def lots(tmp_path: Path) -> dict[str, str]:
    with Store(db_url(tmp_path)) as store:
        return {lot.id: lot.state for lot in store.list_lots()}


def free_port() -> int:
    """A TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_line(tmp_path: Path, printer_port: str) -> Path:
    """A line configuration whose tools nobody serves."""
    port = free_port()
    path = tmp_path / "dead-line.toml"
    path.write_text(
        "[line]\nname = \"dead\"\ntime_scale = 2000.0\n\n"
        "[tools.printer-1]\nrole = \"printer\"\ntransport = \"serial\"\n"
        f"port = \"{printer_port}\"\ntimeout_s = 0.2\nretries = 0\n\n"
        f"[tools.oven-1]\nrole = \"oven\"\ntransport = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n"
        f"port = {port}\nunit = 1\ntimeout_s = 0.2\nretries = 0\n\n"
        f"[tools.cleaner-1]\nrole = \"cleaner\"\ntransport = \"modbus-rtu\"\n"
        f"port = \"socket://127.0.0.1:{port}\"\nunit = 2\ntimeout_s = 0.2\nretries = 0\n",
        encoding="utf-8")
    return path


def assert_lot_complete(tmp_path: Path, out: str, lot_id: str, wafers: int) -> Path:
    """The printed summary and report, checked against the database."""
    summary = SUMMARY.search(out)
    assert summary, out
    assert summary.groups() == (lot_id, "complete", str(wafers), str(wafers))
    report = REPORT.search(out)
    assert report, out
    path = Path(report.group(1).strip())
    if not path.is_absolute():
        path = tmp_path / path
    assert path.is_file() and path.stat().st_size > 0
    assert lot_id in path.read_text(encoding="utf-8")
    with Store(db_url(tmp_path)) as store:
        assert store.get_lot(lot_id).state == "complete"
        assert [w.state for w in store.wafers(lot_id)] == ["complete"] * wafers
    return path


# --- a lot that runs ------------------------------------------------------------------------


def test_run_a_lot_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, run_args(tmp_path, "--lot", "CLI1", "--recipe", RECIPE,
                                          "--wafers", "2", "--speed", SPEED, "--seed", "1"))
    assert code == 0, err
    assert "Traceback" not in err
    assert out.startswith(f"bumpline: CLI1 on the simulated line in-process at {SPEED}x")
    # One line per finished step (output is not a terminal): 2 wafers x 6 steps.
    assert len(re.findall(r"^CLI1-0[12] +step \d .* judged_ok ", out, re.MULTILINE)) == 12
    report = assert_lot_complete(tmp_path, out, "CLI1", 2)
    # One self-contained file: 2 wafers x 2 reflows, 2 overlays, inline.
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]
    page = report.read_text(encoding="utf-8")
    assert page.count('class="curve"') == 4 and page.count("<img") == 0
    # The lot was this line's from its creation: no serve could have claimed it meanwhile.
    with Store(db_url(tmp_path)) as store:
        (start,) = [a for a in store.audit_log(lot_id="CLI1") if a.action == "lot.start"]
        assert start.detail.endswith("line sim"), start.detail
        assert not [a for a in store.audit_log(lot_id="CLI1") if a.action == "lot.claim"]


def test_resume_a_queued_lot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_lot(tmp_path, "QUEUED1", wafers=1)
    code, out, err = cli(capsys, run_args(tmp_path, "--resume", "QUEUED1", "--speed", SPEED))
    assert code == 0, err
    assert_lot_complete(tmp_path, out, "QUEUED1", 1)
    # A finished lot is not run again.
    code, _, err = cli(capsys, run_args(tmp_path, "--resume", "QUEUED1", "--speed", SPEED))
    assert "QUEUED1" in one_clear_line(code, err)


def test_run_a_lot_as_a_subprocess(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BUMPLINE), *run_args(tmp_path, "--lot", "SUB1", "--recipe", RECIPE, "--wafers", "2",
                                  "--speed", SPEED)],
        cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert_lot_complete(tmp_path, result.stdout, "SUB1", 2)


@pytest.mark.slow
async def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    """SIGINT: no new step starts, running ones finish and are recorded; --resume goes on."""
    args = [*run_args(tmp_path, "--lot", "SIG1", "--recipe", RECIPE, "--wafers", "2",
                      "--speed", SPEED)]
    proc = await asyncio.create_subprocess_exec(
        str(BUMPLINE), *args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while True:  # the first finished print is the moment to press Ctrl-C
            line = (await asyncio.wait_for(proc.stdout.readline(), SUBPROCESS_TIMEOUT_S)).decode()
            assert line, "bumpline ended before the first print: " + "".join(seen)
            seen.append(line)
            if re.match(r"SIG1-01 +step 1 print +judged_ok", line):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), SUBPROCESS_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(seen) + rest.decode()
    assert proc.returncode == 3, err.decode()
    assert "Traceback" not in err.decode()
    assert "stopping" in err.decode()
    assert "bumpline run --resume SIG1" in out
    with Store(db_url(tmp_path)) as store:
        assert store.get_lot("SIG1").state == "running"
        states = [w.state for w in store.wafers("SIG1")]
        # Stopped between steps: nothing was left half done in a tool.
        assert not any(s.endswith(("_running", "_judging")) for s in states), states
        assert all(s.status != "running" for w in store.wafers("SIG1")
                   for s in store.steps(w.id))

    resumed = await asyncio.create_subprocess_exec(
        str(BUMPLINE), *run_args(tmp_path, "--resume", "SIG1", "--speed", SPEED), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out_b, err_b = await asyncio.wait_for(resumed.communicate(), SUBPROCESS_TIMEOUT_S)
    finally:
        if resumed.returncode is None:
            resumed.kill()
            await resumed.wait()
    assert resumed.returncode == 0, err_b.decode()
    assert_lot_complete(tmp_path, out_b.decode(), "SIG1", 2)


# --- bad input: one clear line, non-zero exit ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--recipe", "no-such-recipe", "--wafers", "2"], "no recipe named 'no-such-recipe'"),
        (["--recipe", RECIPE, "--wafers", "0"], "1-25"),
        (["--recipe", RECIPE, "--wafers", "26"], "1-25"),
        (["--recipe", RECIPE, "--slots", "1-3,2"], "slot 2 appears twice"),
        (["--recipe", RECIPE, "--slots", "5-1"], "backwards"),
        (["--recipe", RECIPE, "--slots", "0,1"], "'0,1'"),
        (["--recipe", RECIPE, "--slots", "1-30"], "'1-30'"),
        (["--recipe", RECIPE, "--slots", "two"], "'two'"),
        (["--recipe", RECIPE], "--wafers or --slots"),
    ],
    ids=["unknown-recipe", "0-wafers", "26-wafers", "slot-twice", "backwards-range",
         "slot-0", "slot-30", "slot-word", "no-wafers"],
)
def test_bad_lot_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out, err = cli(capsys, run_args(tmp_path, "--lot", "BAD1", *args, "--speed", SPEED))
    assert expected in one_clear_line(code, err)
    assert "BAD1" not in lots(tmp_path)  # refused before the lot was queued
    assert "simulated line" not in out  # and before any line was started


def test_duplicate_lot_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_lot(tmp_path, "DUP1")
    code, _, err = cli(capsys, run_args(tmp_path, "--lot", "DUP1", "--recipe", RECIPE,
                                        "--wafers", "2", "--speed", SPEED))
    assert "lot DUP1 already exists" in one_clear_line(code, err)
    assert lots(tmp_path) == {"DUP1": "queued"}  # untouched


def test_resume_of_an_unknown_lot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, run_args(tmp_path, "--resume", "NOPE1", "--speed", SPEED))
    assert "no lot NOPE1" in one_clear_line(code, err)


def test_resume_of_a_lot_with_nothing_left_is_refused_before_the_line_opens(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_lot(tmp_path, "GONE1")
    with Store(db_url(tmp_path)) as store:
        store.abort_lot("GONE1", user="ann", reason="wrong carrier")  # all still at home
    code, out, err = cli(capsys, run_args(tmp_path, "--resume", "GONE1", "--speed", SPEED))
    assert "lot GONE1 is aborted: nothing to run" in one_clear_line(code, err)
    assert "simulated line" not in out  # refused before any line was opened


def test_resume_with_new_lot_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_lot(tmp_path, "RES1")
    code, _, err = cli(capsys, run_args(tmp_path, "--resume", "RES1", "--wafers", "3"))
    assert "--resume" in one_clear_line(code, err)


@pytest.mark.parametrize("speed", ["0", "-5", "fast", "100000"])
def test_bad_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str], speed: str) -> None:
    code, _, err = cli(capsys, run_args(tmp_path, "--lot", "SPD1", "--recipe", RECIPE,
                                        "--wafers", "2", "--speed", speed))
    line = one_clear_line(code, err)
    assert code == 2 and "--speed" in line and speed in line


@pytest.mark.parametrize("where", ["missing-pty", "closed-port"])
def test_unreachable_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    printer = (str(tmp_path / "no-such-pty") if where == "missing-pty"
               else f"socket://127.0.0.1:{free_port()}")
    line_file = dead_line(tmp_path, printer)
    code, _, err = cli(capsys, run_args(tmp_path, "--lot", "DEAD1", "--recipe", RECIPE,
                                        "--wafers", "2", "--line", str(line_file)))
    line = one_clear_line(code, err)
    assert "printer-1" in line and printer in line


def test_unreachable_tool_then_the_same_command_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator fixes the cable and types the same command again: that must work, or
    the first error must have said how to go on (the lot it already queued)."""
    line_file = dead_line(tmp_path, str(tmp_path / "no-such-pty"))
    argv = run_args(tmp_path, "--lot", "AGAIN1", "--recipe", RECIPE, "--wafers", "2",
                    "--line", str(line_file))
    code, _, err = cli(capsys, argv)
    first = one_clear_line(code, err)
    if "AGAIN1" in lots(tmp_path) and "--resume AGAIN1" not in first:
        code, _, err = cli(capsys, argv)
        pytest.fail(f"lot AGAIN1 was queued although its line could not be reached, and the "
                    f"error does not say so: {first!r}; the same command again: "
                    f"{one_clear_line(code, err)!r}")


@pytest.mark.parametrize("kind", ["missing-directory", "not-a-database", "unknown-backend"])
def test_database_that_cannot_be_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "missing-directory":
        url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'line.db'}"
    elif kind == "not-a-database":
        bad = tmp_path / "notes.db"
        bad.write_text("these are not the tables you are looking for\n" * 100)
        url = f"sqlite:///{bad}"
    else:
        url = "nosuchdb://somewhere/line"
    code, out, err = cli(capsys, ["run", "--lot", "DB1", "--recipe", RECIPE, "--wafers", "2",
                                  "--speed", SPEED, "--db", url,
                                  "--report-dir", str(tmp_path / "reports")])
    assert "database" in one_clear_line(code, err)
    assert "simulated line" not in out


def test_bad_input_as_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "BUMPLINE_DB": db_url(tmp_path)}
    result = subprocess.run(
        [str(BUMPLINE), "run", "--lot", "SUB2", "--recipe", RECIPE, "--slots", "3-1",
         "--report-dir", str(tmp_path / "reports")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert "backwards" in one_clear_line(result.returncode, result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize(("recipe", "said"), [
    ("rebump-hipb-niau-snbi", "step 4 (barrier) needs a plater, and the line has none"),
    ("ballmount-mask-sac305", "step 3 (strip) needs a cleaner whose model can take it, and "
                              "the line's (cleaner-1) cannot"),
])
def test_a_recipe_the_line_cannot_run_is_refused_before_its_lot_is_made(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], recipe: str, said: str) -> None:
    """A barrier recipe on the in-process line without --platers ran three steps and stopped
    with no reason given; a strip recipe (the FC-1 has no strip mode) waited at its strip
    step for good. Refused, naming the step and what is missing, and no lot is left."""
    code, out, err = cli(capsys, run_args(tmp_path, "--lot", "CANT", "--recipe", recipe,
                                          "--wafers", "2", "--speed", "1000"))
    assert code == 2, (out, err)
    assert f"bumpline: this line cannot run recipe {recipe}: {said}" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with Store(db_url(tmp_path)) as store:
        assert store.list_lots() == []

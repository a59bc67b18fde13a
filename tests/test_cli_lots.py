"""Operator commands: `bumpline lot|wafer|alarms|tools`, through the real command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from controller.domain import RuleError, parse_slots
from controller.line.e10 import E10State
from controller.store import Store
from sequences.recipes.recipe import find_recipe

RECIPE = "rebump-hipb-snpb"
BUMPLINE = Path(sys.executable).with_name("bumpline")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    monkeypatch.setenv("BUMPLINE_USER", "ann")
    return f"sqlite:///{tmp_path / 'line.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str):  # noqa: ANN201
    code, out, err = run(capsys, *argv, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def start(capsys, db: str, lot: str = "LOT42", *extra: str) -> tuple[int, str, str]:  # noqa: ANN001
    args = extra or ("--wafers", "3")
    return run(capsys, "lot", "start", "--lot", lot, "--recipe", RECIPE, *args, "--db", db)


# --- lot start ----------------------------------------------------------------------------------


def test_lot_start_queues_the_lot_with_recipe_version_and_hash(capsys, db: str) -> None:
    code, out, err = start(capsys, db, "LOT42", "--slots", "1-3,8", "--priority", "2")
    recipe = find_recipe(RECIPE)
    assert (code, err) == (0, "")
    assert out.startswith("lot LOT42 queued: 4 wafers (slots 1-3,8), recipe rebump-hipb-snpb v1")
    [lot] = run_json(capsys, "lot", "list", "--db", db)
    assert (lot["id"], lot["state"], lot["priority"], lot["wafer_count"]) == (
        "LOT42",
        "queued",
        2,
        4,
    )
    assert (lot["recipe_version"], lot["recipe_hash"]) == (str(recipe.version), recipe.hash)
    assert lot["created_by"] == "ann"
    shown = run_json(capsys, "lot", "show", "LOT42", "--db", db)
    assert [w["id"] for w in shown["wafers"]] == ["LOT42-01", "LOT42-02", "LOT42-03", "LOT42-08"]


def test_db_defaults_to_env_then_current_directory(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["lot", "start", "--lot", "A1", "--recipe", RECIPE, "--wafers", "1"]) == 0
    assert (tmp_path / "bumpline.db").exists()
    monkeypatch.setenv("BUMPLINE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["lot", "start", "--lot", "B1", "--recipe", RECIPE, "--wafers", "1"]) == 0
    capsys.readouterr()
    assert [lot["id"] for lot in run_json(capsys, "lot", "list")] == ["B1"]
    explicit = f"sqlite:///{tmp_path / 'bumpline.db'}"
    assert [lot["id"] for lot in run_json(capsys, "lot", "list", "--db", explicit)] == ["A1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--wafers", "0"), "wafer count must be 1-25 (one carrier), got 0"),
        (("--wafers", "26"), "wafer count must be 1-25 (one carrier), got 26"),
        (("--slots", "1-5,x"), "bad slot list '1-5,x': 'x' is not a slot or a range"),
        (("--slots", "1-5,3"), "bad slot list '1-5,3': slot 3 appears twice"),
        (("--slots", "20-26"), "slot 26 is outside 1-25"),
        (("--wafers", "2", "--priority", "12"), "priority must be 1-9"),
    ],
)
def test_bad_lot_specs_are_one_line(capsys, db: str, args: tuple[str, ...], message: str) -> None:
    code, out, err = start(capsys, db, "LOT42", *args)
    assert (code, out) == (1, "")
    assert err.startswith("bumpline: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
    with Store(db) as store:
        assert store.list_lots() == []


def test_duplicate_lot_and_unknown_recipe(capsys, db: str) -> None:
    assert start(capsys, db)[0] == 0
    code, _, err = start(capsys, db, "LOT42", "--wafers", "5")
    assert (code, err) == (1, "bumpline: lot LOT42 already exists (lot ids are never reused)\n")
    code, _, err = run(
        capsys,
        "lot",
        "start",
        "--lot",
        "LOT43",
        "--recipe",
        "no-such-recipe",
        "--wafers",
        "2",
        "--db",
        db,
    )
    assert code == 1 and err.startswith("bumpline: no recipe named 'no-such-recipe'")
    assert err.count("\n") == 1
    assert [lot["id"] for lot in run_json(capsys, "lot", "list", "--db", db)] == ["LOT42"]


def test_missing_recipe_library_is_a_clear_error(
    capsys, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sequences.recipes.recipe", None)  # the import now fails
    code, _, err = start(capsys, db)
    assert code == 1
    assert err.startswith(
        "bumpline: cannot look up recipe 'rebump-hipb-snpb': the recipe "
        "library (sequences.recipes.recipe) does not import"
    )


def test_unopenable_database_is_one_line(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "lot", "list", "--db", f"sqlite:///{tmp_path / 'none' / 'x.db'}")
    assert code == 1 and err.startswith("bumpline: no database at ") and err.count("\n") == 1
    code, _, err = start(capsys, f"sqlite:///{tmp_path / 'none' / 'x.db'}")
    assert code == 1 and "directory" in err and "does not exist" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 512)
    code, _, err = run(capsys, "alarms", "--db", f"sqlite:///{junk}")
    assert (code, err) == (1, f"bumpline: cannot open database {junk}: file is not a database\n")


def test_argument_errors_exit_2(capsys, db: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lot", "start", "--lot", "L", "--recipe", RECIPE, "--db", db])
    assert exc.value.code == 2
    assert "one of the arguments --wafers --slots is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["wafer", "disposition", "L-01", "--scrap", "--db", db])
    assert exc.value.code == 2
    assert "--reason" in capsys.readouterr().err


# --- lot and wafer commands ---------------------------------------------------------------------


def test_hold_resume_abort(capsys, db: str) -> None:
    start(capsys, db)
    assert run(capsys, "lot", "hold", "LOT42", "--reason", "stencil check", "--db", db)[1] == (
        "lot LOT42 is now held\n"
    )
    assert run(capsys, "lot", "resume", "LOT42", "--db", db)[1] == "lot LOT42 is now queued\n"
    code, _, err = run(capsys, "lot", "resume", "LOT42", "--db", db)
    assert (code, err) == (1, "bumpline: lot LOT42 is queued, not held: nothing to resume\n")
    assert run(capsys, "lot", "abort", "LOT42", "--user", "bob", "--db", db)[1] == (
        "lot LOT42 is now aborted\n"
    )
    shown = run_json(capsys, "lot", "show", "LOT42", "--db", db)
    assert shown["lot"]["state"] == "aborted"
    assert {w["outcome"] for w in shown["wafers"]} == {"aborted"}
    # No controller ran the lot: each request was carried out here, none left pending.
    assert shown["pending_requests"] == []
    code, out, _ = run(capsys, "lot", "show", "LOT42", "--db", db)
    assert "lot LOT42: aborted" in out and "LOT42-03" in out
    code, _, err = run(capsys, "lot", "show", "LOT99", "--db", db)
    assert (code, err) == (1, "bumpline: no lot LOT99\n")


def test_wafer_hold_show_and_disposition(capsys, db: str) -> None:
    start(capsys, db)
    code, out, _ = run(capsys, "wafer", "hold", "LOT42-02", "--reason", "edge chip", "--db", db)
    assert code == 0 and out.startswith("hold of LOT42-02 requested")
    code, _, err = run(
        capsys, "wafer", "disposition", "LOT42-02", "--continue", "--reason", "fine", "--db", db
    )
    assert code == 1 and "is queued: only a held wafer" in err
    # The scheduler (phase 2) holds it and records a step that went wrong.
    with Store(db) as store:
        store.record_transition("LOT42-01", "queued", "step1_waiting", "start")
        step = store.start_step(
            "LOT42-01", 1, "print", "printer-1", {"passes": 1}, windows={"bridges": (None, 0)},
            tool_time=120.0,
        )
        store.end_step(step, results={"bridges": 4}, disposition="fail", tool_time=185.5)
        store.record_transition(
            "LOT42-01",
            "step1_judging",
            "awaiting_disposition",
            "step_failed",
            "4 bridges",
            step_index=1,
            step_kind="print",
            tool_time=185.5,
        )
    code, out, err = run(
        capsys,
        "wafer",
        "disposition",
        "LOT42-01",
        "--retry",
        "--reason",
        "strip and reprint",
        "--user",
        "eve",
        "--db",
        db,
    )
    assert (code, err) == (0, "")
    assert out.startswith("retry of LOT42-01 recorded")
    history = run_json(capsys, "wafer", "show", "LOT42-01", "--db", db)
    assert history["wafer"]["state"] == "awaiting_disposition"
    assert [e["to_state"] for e in history["events"]] == ["step1_waiting", "awaiting_disposition"]
    assert history["steps"][0]["results"] == {"bridges": 4}
    assert [(r["action"], r["requested_by"], r["reason"]) for r in history["requests"]] == [
        ("retry", "eve", "strip and reprint")
    ]
    code, out, _ = run(capsys, "wafer", "show", "LOT42-01", "--db", db)
    assert "bridges=4 [..0] OUT" in out and "awaiting_disposition" in out
    # Steps and transitions in the tool time they were recorded with (wall time runs
    # hundreds of times faster under simulation), else the wall clock; the header says so.
    lines = out.splitlines()
    assert lines[1].startswith("times: t = tool seconds since the controller run's clock")
    assert "  1 print on printer-1: done, fail  t 120.0 s → t 185.5 s (65.5 s)" in lines
    [started] = [line for line in lines if "queued → step1_waiting" in line]
    assert re.match(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  queued", started), started
    assert any(line.startswith("  t 185.5 s     step1_judging → awaiting_disposition")
               for line in lines), out
    assert "#" in out and "retry by eve" in out
    code, _, err = run(capsys, "wafer", "show", "LOT42-77", "--db", db)
    assert (code, err) == (1, "bumpline: no wafer LOT42-77\n")


def test_alarms_and_ack(capsys, db: str) -> None:
    start(capsys, db)
    with Store(db) as store:
        oven = store.alarm_set("oven-1", 540, "O2 HIGH", wafer_id="LOT42-01")
        door = store.alarm_set("printer-1", 400, "DOOR OPEN")
        store.alarm_cleared("printer-1")
    alarms = run_json(capsys, "alarms", "--db", db)
    assert [(a["id"], a["active"]) for a in alarms] == [(door, False), (oven, True)]
    [active] = run_json(capsys, "alarms", "--active", "--db", db)
    assert (active["code"], active["wafer_id"], active["lot_id"]) == (540, "LOT42-01", "LOT42")
    code, out, _ = run(capsys, "alarms", "ack", str(oven), "--user", "bob", "--db", db)
    assert code == 0 and out == f"alarm {oven} (oven-1 540 O2 HIGH) acknowledged by bob\n"
    code, _, err = run(capsys, "alarms", "ack", str(oven), "--db", db)
    assert (code, err) == (1, f"bumpline: alarm {oven} was already acknowledged by bob\n")
    code, out, _ = run(capsys, "alarms", "--db", db)
    assert "ACTIVE" in out and "DOOR OPEN" in out


def test_tools_shows_latest_e10_state(capsys, db: str) -> None:
    start(capsys, db)
    assert run(capsys, "tools", "--db", db)[1] == "no tool states recorded yet\n"
    with Store(db) as store:
        store.record_tool_state("oven-1", E10State.SCHEDULED_DOWN, tool_state="HEATING")
        store.record_tool_state("oven-1", E10State.STANDBY, tool_state="READY")
        store.record_tool_state("printer-1", E10State.PRODUCTIVE, tool_state="PRINTING")
    tools = run_json(capsys, "tools", "--db", db)
    assert [(t["tool"], t["e10_state"], t["tool_state"]) for t in tools] == [
        ("oven-1", "standby", "READY"),
        ("printer-1", "productive", "PRINTING"),
    ]
    out = run(capsys, "tools", "--db", db)[1]
    assert out.splitlines()[0].split() == [
        "line",
        "tool",
        "E10",
        "state",
        "tool",
        "state",
        "mode",
        "since",
        "reason",
    ]
    assert out.splitlines()[1].split()[:3] == ["-", "oven-1", "standby"]  # no line named


def test_alarms_tools_and_wafers_name_their_line_and_filter_by_it(capsys, db: str) -> None:
    """Two lines on one database, tools named alike: each alarm and tool state is its
    line's, shown in every row and in --json; --line keeps one line's."""
    start(capsys, db, "LOTA", "--wafers", "1", "--line-id", "bay-A")
    with Store(db, line_id="bay-A") as a, Store(db, line_id="bay-B") as b:
        on_a = a.alarm_set("printer-1", 400, "DOOR OPEN", wafer_id="LOTA-01")
        on_b = b.alarm_set("printer-1", 400, "DOOR OPEN")  # same tool name, other line
        a.record_tool_state("printer-1", E10State.PRODUCTIVE, tool_state="PRINTING")
        b.record_tool_state("printer-1", E10State.UNSCHEDULED_DOWN, tool_state="ALARM")
    alarms = run_json(capsys, "alarms", "--db", db)
    assert [(x["id"], x["line_id"], x["tool"]) for x in alarms] == [
        (on_b, "bay-B", "printer-1"), (on_a, "bay-A", "printer-1")]
    [only_a] = run_json(capsys, "alarms", "--line", "bay-A", "--db", db)
    assert (only_a["id"], only_a["lot_id"]) == (on_a, "LOTA")
    out = run(capsys, "alarms", "--line", "bay-B", "--db", db)[1].splitlines()
    assert out[0].split()[:3] == ["#", "line", "tool"]
    assert out[1].split()[:3] == [str(on_b), "bay-B", "printer-1"] and len(out) == 2
    assert run(capsys, "alarms", "--line", "bay-C", "--db", db)[1] == "no alarms on line bay-C\n"
    code, out, _ = run(capsys, "alarms", "ack", str(on_a), "--user", "bob", "--db", db)
    assert out == f"alarm {on_a} (printer-1 on line bay-A 400 DOOR OPEN) acknowledged by bob\n"
    tools = run_json(capsys, "tools", "--db", db)
    assert [(t["line_id"], t["tool"], t["e10_state"]) for t in tools] == [
        ("bay-A", "printer-1", "productive"), ("bay-B", "printer-1", "unscheduled down")]
    [only_b] = run_json(capsys, "tools", "--line", "bay-B", "--db", db)
    assert (only_b["line_id"], only_b["tool_state"]) == ("bay-B", "ALARM")
    rows = run(capsys, "tools", "--line", "bay-A", "--db", db)[1].splitlines()[1:]
    assert [r.split()[:3] for r in rows] == [["bay-A", "printer-1", "productive"]]
    assert run(capsys, "tools", "--line", "bay-C", "--db", db)[1] == (
        "no tool states recorded yet on line bay-C\n")
    history = run_json(capsys, "wafer", "show", "LOTA-01", "--db", db)
    assert history["line_id"] == "bay-A" and history["alarms"][0]["line_id"] == "bay-A"
    out = run(capsys, "wafer", "show", "LOTA-01", "--db", db)[1]
    assert out.startswith("wafer LOTA-01 (lot LOTA, slot 1, line bay-A): ")
    assert run_json(capsys, "lot", "show", "LOTA", "--db", db)["lot"]["line_id"] == "bay-A"


def test_lot_report_command(capsys, db: str, tmp_path: Path) -> None:
    start(capsys, db)
    code, out, _ = run(capsys, "lot", "report", "LOT42", "--out", str(tmp_path / "r"), "--db", db)
    assert code == 0 and out == f"report written to {tmp_path / 'r' / 'LOT42' / 'report.html'}\n"
    assert "LOT42-03" in (tmp_path / "r" / "LOT42" / "report.html").read_text(encoding="utf-8")


# --- a real process -----------------------------------------------------------------------------


def test_real_bumpline_process(db: str, tmp_path: Path) -> None:
    env = {**os.environ, "BUMPLINE_DB": db, "BUMPLINE_USER": "ann"}

    def bumpline(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BUMPLINE), *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    bad = bumpline("lot", "start", "--lot", "LOT9", "--recipe", RECIPE, "--wafers", "26")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr == "bumpline: wafer count must be 1-25 (one carrier), got 26\n"
    good = bumpline("lot", "start", "--lot", "LOT9", "--recipe", RECIPE, "--slots", "1-2")
    assert good.returncode == 0, good.stderr
    listed = bumpline("lot", "list", "--json")
    assert [lot["id"] for lot in json.loads(listed.stdout)] == ["LOT9"]
    missing = bumpline("lot", "list", "--db", f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}")
    assert missing.returncode == 1 and missing.stderr.startswith("bumpline: no database at")
    assert "Traceback" not in missing.stderr


def test_tools_shows_an_idle_tool_in_standby_after_its_last_step(capsys, db: str) -> None:
    # As the controller records it: PRODUCTIVE with no tool state when a step starts, and
    # nothing when it ends.
    start(capsys, db, "LOT42", "--wafers", "1")
    with Store(db) as store:
        store.set_lot_state("LOT42", "running")
        store.record_tool_state("printer-1", E10State.PRODUCTIVE, reason="print LOT42-01")
        step = store.start_step("LOT42-01", 1, "print", "printer-1", {})
        store.record_tool_state("oven-1", E10State.PRODUCTIVE, reason="reflow LOT42-01")
        store.start_step("LOT42-01", 2, "reflow", "oven-1", {})
        ended = store.end_step(step, results={"bridges": 0})
    tools = {t["tool"]: t for t in run_json(capsys, "tools", "--db", db)}
    assert (tools["printer-1"]["e10_state"], tools["printer-1"]["tool_state"]) == (
        "standby", "idle")
    assert tools["printer-1"]["at"] == ended.ended_at.isoformat()
    assert tools["printer-1"]["reason"] == "print LOT42-01 ended; no step since"
    assert (tools["oven-1"]["e10_state"], tools["oven-1"]["tool_state"]) == (
        "productive", "busy: reflow LOT42-01")
    assert tools["oven-1"]["derived"] is True
    out = run(capsys, "tools", "--db", db)[1]
    assert "printer-1  standby     idle" in out


# --- the operator's slot lists (pure) -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("1-5,8,10", [1, 2, 3, 4, 5, 8, 10]),
        ("25", [25]),
        (" 3 , 1 ", [1, 3]),
        ("1-25", list(range(1, 26))),
    ],
)
def test_slot_lists(text: str, slots: list[int]) -> None:
    assert parse_slots(text) == slots


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty slot list"),
        ("1-5,x", "'x' is not a slot or a range"),
        ("1-5,3", "slot 3 appears twice"),
        ("5-1", "runs backwards"),
        ("0", "slot 0 is outside 1-25"),
        ("24-26", "slot 26 is outside 1-25"),
        ("1,,2", "'' is not a slot"),
    ],
)
def test_bad_slot_lists_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_slots(text)

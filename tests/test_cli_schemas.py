"""The command line as an integrator who writes a parser from docs/cli.md alone meets it.

Three things are read from docs/cli.md itself, so the doc and the code cannot drift
apart without a test failing here:

* the JSON object table ("JSON schemas"): every ``--json`` output of the installed
  ``bumpline`` (a real process, on a database a real ``bumpline run`` filled) has
  exactly the fields the table lists, each of the type it says (null only where it
  says "or null"), and every object the table lists is met at least once;
* the option reference ("Every command and option"): each command there has exactly
  the options its parser has, and every command the parser has is there;
* the exit-status table: hostile input (huge numbers, empty strings, unicode, a
  folder for a file, a bad database URL, a locked database) ends in one ``bumpline:``
  line on stderr and the documented status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.cli import build_parser, main
from controller.store import Store

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
BUMPLINE = Path(sys.executable).with_name("bumpline")
RECIPE = "rebump-hipb-snpb"


def bumpline(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BUMPLINE_DB"}
    env["BUMPLINE_USER"] = "ann"
    return subprocess.run([str(BUMPLINE), *argv], capture_output=True, text=True, env=env,
                          input=stdin, timeout=120, check=False)


# --- what docs/cli.md says -----------------------------------------------------------------


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


FIELD = re.compile(r"`(\w+)`: ([a-z_ ]+?)(?= \(|, `|, and |$)")


def doc_objects() -> dict[str, tuple[dict[str, str], bool]]:
    """object name -> ({field: type}, open: may it carry fields the table does not name)."""
    objects = {}
    for row in _section("JSON schemas").splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 2 or not re.fullmatch(r"`\w+`", cells[0]):
            continue
        fields = dict(FIELD.findall(cells[1]))
        if fields:  # (the command rows above name objects, they are none)
            objects[cells[0].strip("`")] = (fields, "every key of the step" in cells[1])
    return objects


def doc_outputs() -> dict[str, tuple[bool, str]]:
    """command (e.g. 'lot list') -> (an array?, object name)."""
    outputs = {}
    for row in _section("JSON schemas").splitlines():
        found = re.match(r"\| `([a-z ]+?)(?: [A-Z].*?)?` \| (array of )?`(\w+)`(?!:)", row)
        if found:
            outputs[found[1]] = (bool(found[2]), found[3])
    return outputs


OBJECTS = doc_objects()
OUTPUTS = doc_outputs()


def test_the_doc_tables_are_read() -> None:
    """The parsing above finds what the doc has (else every check below would be empty)."""
    assert {"lot", "wafer", "alarm", "tool", "user", "recipe", "step", "event"} <= set(OBJECTS)
    assert OBJECTS["lot"][0]["controller_running"] == "boolean or null"
    assert OBJECTS["tool"][0]["mode"] == "text"
    assert OBJECTS["recipe_step"][1] and not OBJECTS["lot"][1]
    assert OUTPUTS["lot list"] == (True, "lot") and OUTPUTS["wafer show"] == (False,
                                                                            "wafer_history")
    assert set(OUTPUTS) == {"recipe list", "recipe validate", "recipe show", "lot list",
                            "lot show", "wafer show", "alarms", "tools", "user list"}


class Checker:
    """Checks values against the doc's types; remembers which objects it met."""

    def __init__(self) -> None:
        self.met: set[str] = set()

    def check(self, value: Any, kind: str, where: str) -> None:
        if kind.endswith(" or null"):
            if value is not None:
                self.check(value, kind.removesuffix(" or null"), where)
            return
        assert value is not None, f"{where}: null, but the doc says {kind}"
        if kind.startswith("array of "):
            assert isinstance(value, list), f"{where}: {value!r} is not an array"
            for i, item in enumerate(value):
                self.check(item, kind.removeprefix("array of "), f"{where}[{i}]")
        elif kind in OBJECTS:
            self.check_object(value, kind, where)
        else:
            assert SCALARS[kind](value), f"{where}: {value!r} is not {kind}"

    def check_object(self, value: Any, name: str, where: str) -> None:
        fields, open_ = OBJECTS[name]
        assert isinstance(value, dict), f"{where}: {value!r} is not an object ({name})"
        missing = set(fields) - set(value)
        extra = set(value) - set(fields)
        assert not missing, f"{where} ({name}): fields missing: {sorted(missing)}"
        assert open_ or not extra, f"{where} ({name}): fields the doc does not list: " \
                                   f"{sorted(extra)}"
        for field, kind in fields.items():
            self.check(value[field], kind, f"{where}.{field}")
        self.met.add(name)


def _time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


SCALARS = {
    "text": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _number,
    "boolean": lambda v: isinstance(v, bool),
    "time": _time,
    "object": lambda v: isinstance(v, dict),
    "window": lambda v: isinstance(v, list) and len(v) == 2 and all(
        x is None or _number(x) for x in v),
}


# --- a database as a real run leaves it ---------------------------------------------------


@pytest.fixture(scope="module")
def line_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A lot run to its end by the real ``bumpline run`` (an oven alarm on the way), a lot
    queued with a wafer hold pending, an alarm on a wafer, a screen user. The oven's alarm
    comes at 300 tool s, while it heats for the first pass: no wafer can ride then (at 1200
    s a wafer loaded late on a loaded machine still rode, failed its reflow, and the lot
    did not complete)."""
    folder = tmp_path_factory.mktemp("schemas")
    db = f"sqlite:///{folder / 'line.db'}"
    done = bumpline("run", "--lot", "S1", "--recipe", RECIPE, "--wafers", "2", "--speed",
                    "1000", "--faults", "oven-1:alarm=550@300", "--plain", "--db", db,
                    "--report-dir", str(folder / "reports"))
    assert done.returncode == 0, done.stdout + done.stderr
    for argv in (["lot", "start", "--lot", "Q1", "--recipe", RECIPE, "--wafers", "1"],
                 ["wafer", "hold", "Q1-01", "--reason", "check the paste"]):
        done = bumpline(*argv, "--db", db)
        assert done.returncode == 0, done.stderr
    done = bumpline("user", "add", "ann", "--role", "engineer", "--password-stdin", "--db", db,
                    stdin="a long enough password\n")
    assert done.returncode == 0, done.stderr
    with Store(db, line_id="sim") as store:  # an alarm on a wafer, as the controller records
        store.alarm_set("printer-1", 210, "PASTE LOW", wafer_id="S1-02", tool_time=12.5)
    return db


def json_of(db: str, *argv: str) -> Any:
    done = bumpline(*argv, "--json", *(["--db", db] if db else []))
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def test_every_json_output_is_what_the_doc_says(line_db: str) -> None:
    checker = Checker()
    outputs = {
        "recipe list": json_of("", "recipe", "list"),
        "recipe validate": json_of("", "recipe", "validate", RECIPE, str(ROOT / "README.md")),
        "recipe show": json_of("", "recipe", "show", RECIPE),
        "lot list": json_of(line_db, "lot", "list"),
        "lot show": json_of(line_db, "lot", "show", "Q1"),
        "wafer show": json_of(line_db, "wafer", "show", "S1-02"),
        "alarms": json_of(line_db, "alarms"),
        "tools": json_of(line_db, "tools"),
        "user list": json_of(line_db, "user", "list"),
    }
    assert set(outputs) == set(OUTPUTS)
    for command, value in outputs.items():
        array, name = OUTPUTS[command]
        assert value, f"{command}: nothing to check"
        checker.check(value, f"array of {name}" if array else name, command)
    # Every object the doc lists was met, with something in it (a test that checked
    # empty arrays only would pass whatever the fields were).
    assert checker.met == set(OBJECTS), set(OBJECTS) - checker.met
    history = outputs["wafer show"]
    assert [a["active"] for a in history["alarms"]] == [True]  # as `alarms` gives it
    assert history["steps"][0]["windows"] and all(
        SCALARS["window"](w) for s in history["steps"] for w in s["windows"].values())
    assert any(s["curve"] for s in history["steps"])  # the reflow's
    assert outputs["lot show"]["pending_requests"][0]["action"] == "hold_wafer"
    valid = [v["valid"] for v in outputs["recipe validate"]]
    assert valid == [True, False]


def test_a_field_the_doc_does_not_list_fails_the_check() -> None:
    """The checker is strict both ways (else the test above would pass on any output)."""
    checker = Checker()
    user = {"name": "ann", "role": "admin", "disabled": False,
            "created_at": "2026-12-02T19:15:49.637673+00:00",
            "changed_at": "2026-12-02T19:15:49.637673+00:00"}
    checker.check(user, "user", "user")
    with pytest.raises(AssertionError, match="does not list"):
        checker.check({**user, "password_hash": "x"}, "user", "user")
    with pytest.raises(AssertionError, match="missing"):
        checker.check({k: v for k, v in user.items() if k != "role"}, "user", "user")
    with pytest.raises(AssertionError, match="is not time"):
        checker.check({**user, "created_at": "2026-12-02T19:15:49"}, "user", "user")
    with pytest.raises(AssertionError, match="null"):
        checker.check({**user, "disabled": None}, "user", "user")


# --- every command and option ---------------------------------------------------------------


def doc_synopses() -> dict[tuple[str, ...], set[str]]:
    block = re.search(r"```text\n(.*?)```", _section("Every command and option"), re.DOTALL)
    assert block is not None
    synopses = {}
    for line in block[1].splitlines():
        words = line.split()
        assert words[0] == "bumpline", line
        path = tuple(w for w in words[1:][:2] if re.fullmatch(r"[a-z][a-z-]*", w))
        if path and path[0] in ("alarms", "tools") and path[1:] not in (("ack",), ("mode",)):
            path = path[:1]
        synopses[path] = set(re.findall(r"--[a-z][a-z0-9-]*", line))
    return synopses


def parser_commands() -> dict[tuple[str, ...], set[str]]:
    commands = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        required = any(a.required for a in subs)
        if not required:  # a command of its own (`alarms`, `tools` have subcommands too)
            commands[path] = {o for a in parser._actions for o in a.option_strings
                              if o.startswith("--") and o != "--help"}
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, (*path, name))

    walk(build_parser(), ())
    commands[()] = {"--verbose", "--version"}
    return commands


def test_every_command_and_option_is_documented_and_nothing_else() -> None:
    documented, real = doc_synopses(), parser_commands()
    assert set(documented) == set(real), (set(real) - set(documented),
                                          set(documented) - set(real))
    for path, options in real.items():
        assert documented[path] == options, (path, options - documented[path],
                                             documented[path] - options)


# --- errors: one line, the documented status --------------------------------------------------


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("bumpline: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["alarms", "ack", "99999999999999999999999"], 2, "expected a record number"),
        (["alarms", "ack", "-1"], 2, "expected a record number"),
        (["alarms", "ack", "999999"], 1, "no alarm 999999"),
        (["lot", "show", "NOPE", "--json"], 1, "no lot NOPE"),
        (["lot", "show", ""], 1, "no lot"),
        (["wafer", "show", "NOPE", "--json"], 1, "no wafer NOPE"),
        (["lot", "start", "--lot", "Lötö✓", "--recipe", RECIPE, "--wafers", "1"], 1,
         "bad lot id"),
        (["lot", "start", "--lot", "X1", "--recipe", RECIPE, "--wafers", "-3"], 1,
         "wafer count must be 1-25"),
        (["lot", "start", "--lot", "X1", "--recipe", RECIPE, "--wafers",
          "99999999999999999999"], 1, "wafer count must be 1-25"),
        (["lot", "start", "--lot", "X1", "--recipe", "/", "--wafers", "1"], 1,
         "cannot read recipe: Is a directory"),
        (["lot", "start", "--lot", "X1", "--recipe", "nope", "--wafers", "1"], 1,
         "no recipe named 'nope'"),
        (["wafer", "hold", "S1-01", "--reason", "x"], 1, "finished (good): nothing to hold"),
        (["lot", "list", "--db", "foo://bar"], 1, "cannot open database foo://bar"),
        (["lot", "list", "--db", "/"], 1, "cannot open database /"),
        (["lot", "list", "--db", ""], 2, "empty database path"),
        (["run", "--lot", "Z1", "--recipe", RECIPE, "--wafers", "1", "--priority", "-5"], 1,
         "--priority must be 1-9"),
        (["run", "--lot", "Z1", "--recipe", RECIPE, "--wafers", "1", "--speed", "nan"], 2,
         "--speed"),
        (["run", "--lot", "Z1", "--recipe", RECIPE, "--wafers", "1", "--line", "/"], 1,
         "cannot read line configuration: Is a directory"),
        (["run", "--resume", "NOPE"], 1, "no lot NOPE"),
        (["serve", "--once", "--mqtt", "ftp://broker"], 1, "--mqtt: expected mqtt[s]://"),
        (["sim", "--speed", "inf"], 2, "must be > 0 and finite"),
        (["sim", "--config-out", "/"], 2, "is a folder"),
        (["recipe", "diagram", "--out", "/"], 1, "cannot write"),
        (["nonsense"], 2, "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_the_documented_status(
        line_db: str, argv: list[str], status: int, says: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``main``, the console script's entry point, in this process (a traceback
    would be an exception here; the real process is checked below for a few)."""
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    needs_db = argv[0] in ("alarms", "lot", "wafer", "run", "serve") and "--db" not in argv
    try:
        code = main([*argv, *(["--db", line_db] if needs_db else [])])
    except SystemExit as exc:  # argparse's own exits
        code = exc.code
    out, err = capsys.readouterr()
    done = subprocess.CompletedProcess(argv, code, out, err)
    assert done.returncode == status, done.stderr
    assert says in one_line(done)
    assert not done.stdout.strip()


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["alarms", "ack", "99999999999999999999999"], 2, "expected a record number"),
        (["wafer", "show", "NOPE", "--json"], 1, "no wafer NOPE"),
        (["lot", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"], 1,
         "cannot open database postgresql://nobody@127.0.0.1:1/x: connection failed"),
    ],
)
def test_bad_input_in_the_real_process(line_db: str, argv: list[str], status: int,
                                       says: str) -> None:
    needs_db = "--db" not in argv
    done = bumpline(*argv, *(["--db", line_db] if needs_db else []))
    assert done.returncode == status, done.stderr
    assert says in one_line(done) and done.stdout == ""


def test_a_locked_database_is_one_line_and_exit_1(line_db: str, tmp_path: Path) -> None:
    copy = tmp_path / "locked.db"
    copy.write_bytes(Path(line_db.removeprefix("sqlite:///")).read_bytes())
    holder = sqlite3.connect(copy, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
        done = bumpline("lot", "hold", "Q1", "--reason", "check", "--db", str(copy))
        reading = bumpline("lot", "list", "--json", "--db", str(copy))
    finally:
        holder.close()
    assert done.returncode == 1
    assert "database is locked" in one_line(done)
    assert done.stdout == ""
    # A read needs no write lock (WAL): the list comes, while the other process writes.
    assert reading.returncode == 0, reading.stderr
    assert {lot["id"] for lot in json.loads(reading.stdout)} >= {"S1", "Q1"}


def test_a_recipe_that_fails_validation_exits_1_and_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n", encoding="utf-8")
    done = bumpline("recipe", "validate", str(bad), "--json")
    assert done.returncode == 1
    [entry] = json.loads(done.stdout)
    assert entry["valid"] is False and "not valid TOML" in entry["problems"][0]
    assert one_line(done) == "bumpline: 1 of 1 recipe file(s) refused"
    done = bumpline("lot", "start", "--lot", "B1", "--recipe", str(bad), "--wafers", "1",
                    "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    first, *problems = done.stderr.splitlines()  # the line, then each problem indented
    assert first.startswith("bumpline: ") and problems and all(
        p.startswith("  ") for p in problems)

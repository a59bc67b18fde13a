"""The command line in pipes and files: nothing cut, --json everywhere, a quiet broken
pipe, --db as a plain path, --version; through the real `bumpline` process where the
difference between a terminal and a pipe matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from controller.cli.output import db_url
from sequences.recipes.recipe import find_recipe, shipped_recipe_paths

BUMPLINE = Path(sys.executable).with_name("bumpline")
LONGEST = "ballmount-sac305-rebump-snbi"


def bumpline(*argv: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("BUMPLINE_DB", None)
    return subprocess.run([str(BUMPLINE), *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60, check=False, **kw)


def test_recipe_list_to_a_pipe_is_never_cut() -> None:
    done = bumpline("recipe", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "…" not in done.stdout
    assert [line for line in lines if "rebump" in line][0].startswith(LONGEST + " ")
    # One line per recipe (and the header), each with its whole description.
    assert len(lines) == 1 + len(shipped_recipe_paths())
    description = find_recipe(LONGEST).description
    assert any(line.endswith(description) for line in lines)


def test_recipe_show_to_a_file_keeps_every_zone(tmp_path: Path) -> None:
    out = tmp_path / "show.txt"
    with out.open("w") as f:
        done = subprocess.run([str(BUMPLINE), "recipe", "show", LONGEST], stdout=f,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False,
                              env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert "…" not in text
    recipe = find_recipe(LONGEST)
    for step in recipe.steps:
        if step.kind == "reflow":
            assert "zones " + "/".join(f"{z:g}" for z in step.zones_c) + " °C" in text


def test_recipe_list_and_show_take_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(shipped_recipe_paths())
    recipe = find_recipe(LONGEST)
    [entry] = [e for e in entries if e["name"] == LONGEST]
    assert entry == {"name": LONGEST, "version": recipe.version,
                     "steps": [s.kind for s in recipe.steps], "hash": recipe.hash,
                     "valid": True, "problems": [], "description": recipe.description}
    assert main(["recipe", "show", LONGEST, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["hash"], shown["valid"]) == (LONGEST, recipe.hash, True)
    assert [s["number"] for s in shown["steps"]] == list(range(1, len(recipe.steps) + 1))
    reflow = shown["steps"][1]
    assert reflow["kind"] == "reflow" and reflow["zones_c"] == list(recipe.steps[1].zones_c)
    assert reflow["profile_id"] == recipe.steps[1].profile_id
    assert reflow["accepted_when"].startswith("peak ")
    assert {a["id"] for a in shown["alloys"]} == {"SAC305", "Sn42Bi58"}
    assert next(a for a in shown["alloys"] if a["id"] == "Sn42Bi58")["solidus_c"] == 138.0


def test_every_query_command_takes_json() -> None:
    from controller.cli import build_parser

    parser = build_parser()
    for argv in (["recipe", "list"], ["recipe", "show", "X"], ["lot", "list"],
                 ["lot", "show", "X"], ["wafer", "show", "X"], ["alarms"], ["tools"],
                 ["recipe", "validate", "X"], ["user", "list"]):
        assert parser.parse_args([*argv, "--json"]).json is True, argv


def test_every_database_command_takes_a_plain_path() -> None:
    """`user`, `gem` and `web` refused `--db demo.db` ('not a SQLAlchemy URL')."""
    from controller.cli import build_parser

    parser = build_parser()
    for argv in (["lot", "list"], ["user", "list"], ["gem", "status"], ["web"], ["tools"],
                 ["serve"], ["run", "--resume", "X"]):
        assert parser.parse_args([*argv, "--db", "demo.db"]).db == "sqlite:///demo.db", argv


def test_recipe_validate_and_user_list_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("x = 1\n", encoding="utf-8")
    assert main(["recipe", "validate", "rebump-hipb-snpb", str(bad), "--json"]) == 1
    checked = json.loads(capsys.readouterr().out)
    assert [(c["valid"], bool(c["problems"])) for c in checked] == [(True, False), (False, True)]
    assert checked[1]["file"] == str(bad) and "unknown key: 'x'" in checked[1]["problems"][0]
    from controller.store import Store

    Store(f"sqlite:///{tmp_path / 'u.db'}").close()  # a database with no user yet
    assert main(["user", "list", "--db", str(tmp_path / "u.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_reader_that_stops_early_gets_no_error(tmp_path: Path) -> None:
    # `bumpline lot list --json | head -c 1` with more JSON than a pipe buffers (64 KiB).
    from controller.store import Store

    db = f"sqlite:///{tmp_path / 'many.db'}"
    with Store(db, create=True) as store:
        for n in range(300):
            store.create_lot(f"L{n:03d}", recipe_name="rebump-hipb-snpb", recipe_version=1,
                             recipe_hash="0" * 64, slots=[1], user="ann")
    proc = subprocess.Popen([str(BUMPLINE), "lot", "list", "--json", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(1) == b"["
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert (proc.wait(timeout=60), err) == (141, "")


def test_broken_pipe_in_process_exits_141(monkeypatch: pytest.MonkeyPatch) -> None:
    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self) -> bool:
            return False

        def fileno(self) -> int:
            raise ValueError("no descriptor")

    errors: list[str] = []
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    monkeypatch.setattr(sys, "stderr", type("E", (), {"write": errors.append,
                                                      "flush": lambda self: None})())
    assert main(["recipe", "list"]) == 141
    assert errors == []


@pytest.mark.parametrize(
    ("given", "url"),
    [("demo.db", "sqlite:///demo.db"), ("/tmp/x/line.db", "sqlite:////tmp/x/line.db"),
     ("sqlite:///demo.db", "sqlite:///demo.db"), ("postgresql://u@h/db", "postgresql://u@h/db")],
)
def test_db_takes_a_plain_path(given: str, url: str) -> None:
    assert db_url(given) == url


def test_db_path_and_env_path_work(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    assert main(["lot", "start", "--lot", "P1", "--recipe", "rebump-hipb-snpb", "--wafers",
                 "1", "--db", "demo.db"]) == 0
    assert (tmp_path / "demo.db").is_file()
    capsys.readouterr()
    assert main(["lot", "list", "--db", "demo.db", "--json"]) == 0
    assert [lot["id"] for lot in json.loads(capsys.readouterr().out)] == ["P1"]
    monkeypatch.setenv("BUMPLINE_DB", "demo.db")
    assert main(["lot", "show", "P1"]) == 0
    assert "lot P1: queued" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"bumpline {metadata.version('bumpline')}\n"

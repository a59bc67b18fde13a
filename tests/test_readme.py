"""The README's commands after `make demo` work as written (on a smaller lot of the same
name, database and recipe: the demo's 25 wafers take a minute)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from controller.cli import main

ROOT = Path(__file__).resolve().parents[1]


def demo_args() -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^DEMO_ARGS := (.+)$", text, re.MULTILINE)
    assert match, "Makefile has no DEMO_ARGS"
    return shlex.split(match.group(1))


def readme_after_demo() -> list[list[str]]:
    """The commands of the README's first code block after `make demo`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index("After `make demo`"):]
    block = after[after.index("```sh") + 5:]
    block = block[:block.index("```")]
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert commands and all(c[0] == ".venv/bin/bumpline" for c in commands)
    return [c[1:] for c in commands]


def test_readme_commands_after_make_demo_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUMPLINE_DB", raising=False)
    args = demo_args()
    assert args[args.index("--lot") + 1] == "DEMO" and args[args.index("--db") + 1] == "demo.db"
    # The demo, smaller and faster: 7 wafers (the README shows DEMO-07) at 2000x.
    args[args.index("--wafers") + 1] = "7"
    args[args.index("--speed") + 1] = "2000"
    assert main(["run", *args, "--plain"]) in (0, 3)  # 3: a wafer waits for an engineer
    assert (tmp_path / "reports" / "DEMO" / "report.html").is_file()
    capsys.readouterr()
    for command in readme_after_demo():
        code = main(command)
        out, err = capsys.readouterr()
        assert (code, err) == (0, ""), command
        assert out.strip(), command
    assert "DEMO" in (main(["lot", "list", "--db", "demo.db"]), capsys.readouterr().out)[1]

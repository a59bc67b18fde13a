"""Every `bumpline` command shown in the README, docs/cli.md and docs/operators.md is one
the command line takes: each parses with the real parser, so a renamed command or
option, a dropped choice or a missing required argument fails here, not in front of a
reader (issue 11). What the commands then do is tested where they are built
(test_readme runs the README's sequence after `make demo` for real)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from controller.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/cli.md", "docs/operators.md")
# A fenced block from its opening line to its closing one (so the text between two blocks
# is never taken for one); only shell blocks: a ```text synopsis is not a command to run.
BLOCK = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.DOTALL | re.MULTILINE)
SHELL = ("", "sh", "bash", "console")


def shown_commands(doc: str) -> list[list[str]]:
    """Each `bumpline ...` in the file's code blocks, as argv: comments dropped, pipes and
    `;` cut, optional parts (`[--json]`) taken as given."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    commands = []
    for language, block in BLOCK.findall(text):
        if language not in SHELL:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
            argv: list[str] = []
            for word in [*words, ";"]:
                if word in ("|", ";"):
                    first = argv[0].rsplit("/", 1)[-1] if argv else ""
                    if first == "bumpline" and len(argv) > 1 and (
                            argv[1] in names or argv[1].startswith("-")):
                        commands.append(argv[1:])
                    argv = []
                else:
                    argv.append(word)
    return commands


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_the_docs_show_parses(doc: str) -> None:
    commands = shown_commands(doc)
    assert len(commands) >= 10, f"{doc}: too few commands found; is the extraction broken?"
    for argv in commands:
        if argv in (["--help"], ["--version"]):
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse said why on stderr
            pytest.fail(f"{doc}: 'bumpline {shlex.join(argv)}' is refused (exit {exc.code})")


def test_a_wrong_command_in_a_doc_would_be_caught() -> None:
    """The check itself can fail: a renamed option is refused by the same parser."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lot", "list", "--status", "queued"])

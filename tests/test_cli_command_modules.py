"""`bumpline X` imports only the modules of command X (controller/cli/__init__.py's
COMMAND_MODULES): the table must name every module a command needs, and a command that
needs no database, controller or web screen must not pay for them at each start (the
simulator's process, `recipe`)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from controller.cli import COMMAND_MODULES, build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def _shape(parser: argparse.ArgumentParser) -> object:
    """A parser's options and subcommands, all the way down (the help texts left out)."""
    options = sorted(tuple(a.option_strings) or (a.dest,) for a in parser._actions
                     if not isinstance(a, argparse._SubParsersAction))
    subs = {name: _shape(p) for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, p in action.choices.items()}
    return options, subs


def test_each_command_alone_parses_as_in_the_whole_parser() -> None:
    whole = _commands(build_parser())
    assert set(whole) == {c for commands in COMMAND_MODULES.values() for c in commands}
    for command, full in whole.items():
        alone = _commands(build_parser([command, "--help"]))
        assert command in alone, command
        assert _shape(alone[command]) == _shape(full), command  # 'tools mode' included


@pytest.mark.parametrize("argv", [["-v", "--help"], ["no-such-command"], []])
def test_a_line_naming_no_known_command_gets_every_command(argv: list[str]) -> None:
    assert set(_commands(build_parser(argv))) == set(_commands(build_parser()))


@pytest.mark.parametrize("command", ["sim", "recipe"])
def test_a_command_without_a_database_starts_without_one(command: str) -> None:
    code = ("import sys; from controller.cli import build_parser; "
            f"build_parser([{command!r}]); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('sqlalchemy', 'starlette', 'controller')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    loaded = done.stdout
    assert "sqlalchemy" not in loaded and "starlette" not in loaded, loaded
    assert "controller.line" not in loaded and "controller.store" not in loaded, loaded

"""The ``bumpline`` command line.

Each command group lives in its own module exposing ``register(subparsers)``,
which adds its parsers and sets ``handler`` (a function taking the parsed
arguments; it may be ``async``). ``main`` runs the handler and turns every
expected failure into one clear line on stderr and a non-zero exit: a user
never sees a traceback for bad input, an unreachable tool or a refused command.

Output cut short by its reader (``bumpline lot list | head``) ends quietly with
exit status 141, as a tool killed by SIGPIPE does: the reader has what it asked
for, and a message would only land in the middle of the pipeline's output.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from controller.cli.output import db_from_env
from controller.errors import EXIT_USAGE, UserError, user_message

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a reader gone away

# Command-group modules, in the order `bumpline --help` lists them, with the commands each
# adds. A command line naming one imports only its modules: the others bring the controller,
# the web screen, GEM and the database with them, and every command paid ~0.5 s of CPU for
# them (the simulator's process ~1 s, it needs no database at all).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "controller.cli.run": ("run", "serve"),
    "controller.cli.lots": ("lot", "wafer"),
    "controller.cli.alarms": ("alarms", "tools"),
    "controller.cli.toolmode": ("tools",),  # adds 'tools mode' to the alarms module's 'tools'
    "controller.cli.sequences": ("recipe", "sequence"),
    "controller.cli.tool": ("tool",),
    "controller.cli.sim": ("sim",),
    "controller.cli.gem": ("gem",),
    "controller.cli.web": ("user", "web"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"bumpline: error: {message} (see '{self.prog} --help')\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the modules of the command it names, or every
    module when it names none we know (none given, ``--help``, a typo: argparse then lists
    every choice). The top-level options take no value: the first other word is the command."""
    command = next((word for word in argv if not word.startswith("-")), None)
    named = [m for m, commands in COMMAND_MODULES.items() if command in commands]
    parser = _Parser(
        prog="bumpline",
        description="Line controller for a wafer bump-and-rebump line.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action="version", version=f"bumpline {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in named or COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # this command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("bumpline")
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test's captured stdout)
        pass


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    db_from_env(args)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose < 2:
        # The links report a failed connection or request themselves, in one line naming
        # the tool; pymodbus's own warnings would say it twice. -vv shows them.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    handler = args.handler
    try:
        if inspect.iscoroutinefunction(handler):
            result = asyncio.run(handler(args))
        else:
            result = handler(args)
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C before a lot runs
        print("bumpline: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # main() ends it quietly
    except UserError as exc:
        print(f"bumpline: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last line of defence: known errors get one line
        message = user_message(exc)
        if message is None:
            raise
        print(f"bumpline: {message}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

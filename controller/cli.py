"""The ``bumpline`` command line.

Each command group lives in its own module exposing ``register(subparsers)``,
which adds its parsers and sets ``handler`` (a function taking the parsed
arguments; it may be ``async``). ``main`` runs the handler and turns every
expected failure into one clear line on stderr and a non-zero exit: a user
never sees a traceback for bad input, an unreachable tool or a refused command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence

from controller.errors import EXIT_USAGE, UserError, user_message

# Command-group modules, in the order `bumpline --help` lists them.
COMMAND_MODULES = (
    "controller.cli_run",
    "controller.cli_lots",
    "controller.cli_sequences",
    "controller.cli_tool",
    "controller.cli_sim",
    "controller.cli_gem",
    "controller.cli_web",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"bumpline: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bumpline",
        description="Line controller for a wafer bump-and-rebump line.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # this command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except KeyboardInterrupt:
        print("bumpline: interrupted", file=sys.stderr)
        return 130
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

"""What every command's output shares: JSON, tables, the terminal, the ``--db`` argument.

Output to a pipe or a file is never cut to a terminal's width (``recipe list |
grep rebump`` must find every recipe); on a terminal, long cells wrap instead of
being cut. ``--json`` prints the documented schema of docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

DB_ENV = "BUMPLINE_DB"
PIPE_WIDTH = 100_000  # rich's "width" for a pipe: wide enough that nothing wraps


def is_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Any:
    """rich Console for standard output: the terminal's width, or unbounded for a pipe."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=None if is_terminal() else PIPE_WIDTH)


def print_json(value: Any) -> int:
    from controller.store import jsonable  # the database layer, only for what prints JSON

    json.dump(jsonable(value), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Plain columns, two spaces apart, never cut."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON (schema in docs/cli.md) instead of a table")


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def add_db(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--db`` (``db_url``), left out of ``args`` when not given (``db_from_env`` then)."""
    parser.add_argument(
        "--db", metavar="URL|FILE", type=db_url, default=argparse.SUPPRESS,
        help=f"database{what}: a SQLAlchemy URL or a SQLite file (default $BUMPLINE_DB, else "
        "bumpline.db)")


MAX_RECORD_ID = 2**63 - 1  # the largest number a database row id takes (SQLite, PostgreSQL)


def record_id(text: str) -> int:
    """argparse type: a record number (``alarms ack ID``), 1 to ``MAX_RECORD_ID``; a number no
    database can hold is refused here, as a mistyped argument, before the database is asked."""
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_RECORD_ID:
        raise argparse.ArgumentTypeError(f"expected a record number 1-{MAX_RECORD_ID}, "
                                         f"got {text!r}")
    return int(value)


def db_url(text: str) -> str:
    """``--db``: a SQLAlchemy URL, or a plain path to a SQLite file (``--db demo.db``)."""
    if "://" in text:
        return text
    if not text.strip():
        raise argparse.ArgumentTypeError("empty database path")
    return "sqlite:///" + text


def db_from_env(args: argparse.Namespace) -> None:
    """$BUMPLINE_DB takes a plain path too; ``--db`` wins when both are given."""
    value = os.environ.get(DB_ENV)
    if value and getattr(args, "db", None) is None:
        args.db = db_url(value)

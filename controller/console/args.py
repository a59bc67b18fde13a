"""The console's command type and argument parsing (``bumpline tool NAME COMMAND ARGS``).

A ``ConsoleCommand`` turns the CLI's string arguments into a typed driver call;
a bad argument is a ``ConsoleUsageError`` that says what was expected, never a
traceback. The drivers know nothing of this: they offer typed verbs only.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

E = TypeVar("E", bound=Enum)


class ConsoleUsageError(ValueError):
    """Arguments a console command cannot use, and the command's usage."""


class Access(Enum):
    """What a console command does to its tool, judged by what it sends (the driver verbs it
    calls). ``bumpline tool`` refuses a command that changes a tool in production on a line
    a controller runs (controller/cli/toolguard.py); a read is never refused."""

    CHANGES = "changes the tool"  # a write, a command, a switch: anything but a read
    READS = "reads"  # only reads: queries, status registers, polls
    READS_WITHOUT_ARGS = "reads without arguments"  # shows without arguments, writes with them


@dataclass(frozen=True)
class ConsoleCommand:
    name: str
    usage: str  # e.g. "load WAFER_ID"
    help: str
    run: Callable[[Any, list[str]], Awaitable[object]]  # (driver, args) -> result or None
    # How the result reads as text, when the generic rendering (controller/console/show.py)
    # would not do; --json always prints the typed value itself.
    show: Callable[[Any], str] | None = None
    # Changes the tool unless marked otherwise: a new command is guarded until someone has
    # read what it sends and marked it a read.
    access: Access = Access.CHANGES

    def changes_tool(self, args: Sequence[str]) -> bool:
        """Whether running the command with ``args`` may change the tool."""
        if self.access is Access.READS:
            return False
        if self.access is Access.READS_WITHOUT_ARGS:
            return bool(args)
        return True


def find_command(commands: Iterable[ConsoleCommand], name: str) -> ConsoleCommand:
    table = {c.name: c for c in commands}
    if name not in table:
        raise ConsoleUsageError(f"unknown command '{name}' (commands: {', '.join(table)})")
    return table[name]


async def run_command(
    commands: Iterable[ConsoleCommand], driver: Any, name: str, args: Sequence[str]
) -> object:
    """Find ``name`` and run it on ``driver``; usage errors name the command."""
    return await find_command(commands, name).run(driver, list(args))


# --- argument helpers for command implementations -----------------------------------------------


def expect_args(usage: str, args: Sequence[str], least: int, most: int | None = None) -> None:
    most = least if most is None else most
    if not least <= len(args) <= most:
        want = str(least) if least == most else f"{least}-{most}"
        raise ConsoleUsageError(f"usage: {usage} (expected {want} arguments, got {len(args)})")


def int_arg(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConsoleUsageError(f"{what}: expected a whole number, got '{text}'") from None


def float_arg(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConsoleUsageError(f"{what}: expected a number, got '{text}'")
    return value


def timeout_arg(usage: str, args: Sequence[str], default: float) -> float:
    """An optional single argument: a timeout in tool seconds."""
    expect_args(usage, args, 0, 1)
    return float_arg(args[0], "timeout (tool seconds)") if args else default


async def done_text(call: Awaitable[object], text: str) -> str:
    """Run a command that returns nothing; say ``text`` when it is done."""
    await call
    return text


async def alarm_or_none(driver: Any) -> object:
    """The driver's latched alarm, or "no alarm" (never a bare ``ok``)."""
    return await driver.alarm() or "no alarm"


def enum_arg(text: str, enum: type[E], what: str) -> E:
    try:
        return enum(text.strip().upper())
    except ValueError:
        names = ", ".join(str(m.value) for m in enum)
        raise ConsoleUsageError(f"{what}: expected one of {names}, got '{text}'") from None


def simple(
    name: str,
    help: str,
    call: Callable[[Any], Awaitable[object]],
    show: Callable[[Any], str] | None = None,
    *,
    access: Access = Access.CHANGES,
) -> ConsoleCommand:
    """A command that takes no arguments."""

    async def run(driver: Any, args: list[str]) -> object:
        expect_args(name, args, 0)
        return await call(driver)

    return ConsoleCommand(name, name, help, run, show, access)


def reads(name: str, help: str, call: Callable[[Any], Awaitable[object]],
          show: Callable[[Any], str] | None = None) -> ConsoleCommand:
    """A command that takes no arguments and only reads the tool."""
    return simple(name, help, call, show, access=Access.READS)

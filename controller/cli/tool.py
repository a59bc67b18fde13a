"""``bumpline tool NAME COMMAND [ARGS...]``: the engineer's console to any tool.

Works the same against the simulator and a real tool: the line configuration
says where the tool is. ``--trace`` shows every frame or Modbus request with a
timestamp; ``--json`` prints the typed result as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from controller.console import COMMANDS, ConsoleCommand, ConsoleUsageError, run_tool_command
from controller.console.show import plain, show
from controller.errors import EXIT_USAGE, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tool",
        help="run one command on one tool of a line",
        description="Run any command of any tool named in a line configuration. "
        "'bumpline tool NAME help' lists the tool's commands (with --line, of the tool the "
        "file names; without, of the role in its name: printer-1 is a printer); "
        "'bumpline tool help' lists every role's.",
    )
    p.add_argument("name", help="tool name from the line configuration, e.g. printer-1")
    p.add_argument("tool_command", metavar="COMMAND", nargs="?", default="help",
                   help="command, or 'help' (the default)")
    p.add_argument("args", nargs="*", metavar="ARGS", help="the command's arguments")
    p.add_argument("--line", metavar="FILE",
                   help="line configuration (TOML); needed for every command but help")
    p.add_argument("--trace", action="store_true", help="print every frame sent and received")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run_tool)


def console_commands(role: str) -> dict[str, ConsoleCommand]:
    return {c.name: c for c in COMMANDS[role]}


def _print_help(what: str, commands: Iterable[ConsoleCommand]) -> None:
    print(f"{what} commands:")
    for c in commands:
        print(f"  {c.usage:<44} {c.help}")


def _help_without_line(name: str) -> int:
    """The commands of the role a tool's name says (``oven-1``: an oven), or of every role
    for ``bumpline tool help``; a line file may name tools otherwise, hence the hint."""
    role = name.rstrip("0123456789").rstrip("-_")
    roles = [role] if role in COMMANDS else list(COMMANDS) if name == "help" else []
    if not roles:
        raise UserError(f"no tool role in the name {name!r} (roles: {', '.join(COMMANDS)}); "
                        "give --line FILE to look it up", exit_code=EXIT_USAGE)
    for i, role in enumerate(roles):
        if i:
            print()
        _print_help(f"{name if name != 'help' else role} ({role})", console_commands(role)
                    .values())
    return 0


def _tracer(start: float):
    def trace(tool: str, direction: str, data: Any) -> None:
        if isinstance(data, bytes | bytearray):
            data = bytes(data).decode("ascii", "backslashreplace").replace("\r\n", "\\r\\n")
        print(f"{time.monotonic() - start:9.4f} {tool} {direction} {data}", file=sys.stderr)

    return trace


async def run_tool(args: argparse.Namespace) -> int:
    from drivers.clock import ScaledClock
    from drivers.line_config import load_line_config
    from drivers.tools import open_tool

    if args.line is None:
        if args.tool_command == "help" or args.name == "help":
            return _help_without_line(args.name)
        raise UserError(f"bumpline tool {args.name} {args.tool_command} needs --line FILE "
                        "(the line configuration says where the tool is; 'bumpline sim "
                        "--config-out FILE' writes one)", exit_code=EXIT_USAGE)
    config = load_line_config(args.line)
    tool = config.tool(args.name)
    commands = console_commands(tool.role)
    if args.tool_command == "help":
        _print_help(f"{tool.name} ({tool.role})", commands.values())
        return 0
    command = commands.get(args.tool_command)
    if command is None:
        raise UserError(
            f"{tool.name} ({tool.role}) has no command '{args.tool_command}' "
            f"(commands: {', '.join(commands)})",
            exit_code=EXIT_USAGE,
        )
    trace = _tracer(time.monotonic()) if args.trace else None
    async with open_tool(tool, ScaledClock(config.time_scale), trace=trace) as driver:
        try:
            result = await run_tool_command(tool.role, driver, command.name, args.args)
        except ConsoleUsageError as exc:
            raise UserError(
                f"{tool.name} {command.name}: {exc} (usage: {command.usage})", exit_code=EXIT_USAGE
            ) from None
    if args.json:
        print(json.dumps(plain(result), indent=2))
    else:
        print((command.show or show)(result))
    return 0

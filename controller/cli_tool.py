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
from typing import Any

from controller.console import COMMANDS, ConsoleCommand, ConsoleUsageError, run_tool_command
from controller.console.show import plain, show
from controller.errors import EXIT_USAGE, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tool",
        help="run one command on one tool of a line",
        description="Run any command of any tool named in a line configuration. "
        "'bumpline tool NAME help --line FILE' lists the tool's commands.",
    )
    p.add_argument("name", help="tool name from the line configuration, e.g. printer-1")
    p.add_argument("tool_command", metavar="COMMAND", help="command, or 'help'")
    p.add_argument("args", nargs="*", metavar="ARGS", help="the command's arguments")
    p.add_argument("--line", required=True, metavar="FILE", help="line configuration (TOML)")
    p.add_argument("--trace", action="store_true", help="print every frame sent and received")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run_tool)


def console_commands(role: str) -> dict[str, ConsoleCommand]:
    return {c.name: c for c in COMMANDS[role]}


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

    config = load_line_config(args.line)
    tool = config.tool(args.name)
    commands = console_commands(tool.role)
    if args.tool_command == "help":
        print(f"{tool.name} ({tool.role}) commands:")
        for c in commands.values():
            print(f"  {c.usage:<44} {c.help}")
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

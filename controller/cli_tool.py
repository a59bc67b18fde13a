"""``bumpline tool NAME COMMAND [ARGS...]``: the engineer's console to any tool.

Works the same against the simulator and a real tool: the line configuration
says where the tool is. ``--trace`` shows every frame or Modbus request with a
timestamp; ``--json`` prints the typed result as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import json
import sys
import time
from typing import Any

from controller.errors import EXIT_USAGE, UserError

DRIVER_MODULES = {
    "printer": "drivers.printer",
    "placer": "drivers.placer",
    "oven": "drivers.oven",
    "cleaner": "drivers.cleaner",
    "plater": "drivers.plater",
}


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


def console_commands(role: str) -> dict[str, Any]:
    module = importlib.import_module(DRIVER_MODULES[role])
    return {c.name: c for c in module.CONSOLE_COMMANDS}


def _plain(value: Any) -> Any:
    """Typed results as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _show(value: Any) -> str:
    if value is None:
        return "ok"
    plain = _plain(value)
    if isinstance(plain, dict):
        width = max(len(k) for k in plain) if plain else 0
        lines = []
        for key, item in plain.items():
            if isinstance(item, list) and len(item) > 12:
                item = f"[{len(item)} values: {', '.join(map(str, item[:6]))}, ...]"
            lines.append(f"{key:<{width}}  {item}")
        return "\n".join(lines)
    return str(plain)


def _tracer(start: float):
    def trace(tool: str, direction: str, data: Any) -> None:
        if isinstance(data, bytes | bytearray):
            data = bytes(data).decode("ascii", "backslashreplace").replace("\r\n", "\\r\\n")
        print(f"{time.monotonic() - start:9.4f} {tool} {direction} {data}", file=sys.stderr)

    return trace


async def run_tool(args: argparse.Namespace) -> int:
    from drivers.clock import ScaledClock
    from drivers.console import ConsoleUsageError
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
            result = await command.run(driver, list(args.args))
        except ConsoleUsageError as exc:
            raise UserError(
                f"{tool.name} {command.name}: {exc} (usage: {command.usage})", exit_code=EXIT_USAGE
            ) from None
    if args.json:
        print(json.dumps(_plain(result), indent=2))
    else:
        print(_show(result))
    return 0

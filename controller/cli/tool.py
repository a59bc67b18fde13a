"""``bumpline tool NAME COMMAND [ARGS...]``: the engineer's console to any tool.

Works the same against the simulator and a real tool: the line configuration
says where the tool is. ``--trace`` shows every frame or Modbus request with a
timestamp; ``--json`` prints the typed result as JSON.

A command that changes the tool is refused while a controller runs the line and the
tool is in production there, unless ``--force`` (controller/cli/toolguard.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from controller.cli.leases import line_id
from controller.cli.lots import USER_ENV, _user
from controller.cli.output import add_db
from controller.console import COMMANDS, ConsoleCommand, ConsoleUsageError, run_tool_command
from controller.console.args import Access
from controller.console.show import plain, show
from controller.errors import EXIT_USAGE, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tool",
        help="run one command on one tool of a line",
        description="Run any command of any tool named in a line configuration. "
        "'bumpline tool NAME help' lists the tool's commands (with --line, of the tool the "
        "file names; without, of the role in its name: printer-1 is a printer); "
        "'bumpline tool help' lists every role's. A command that changes the tool (marked * "
        "in help) is refused while a controller runs the line (its lease in --db) and the "
        "tool is in production there: take the tool out of production first ('bumpline "
        "tools mode'), or give --force.",
    )
    p.add_argument("name", help="tool name from the line configuration, e.g. printer-1")
    p.add_argument("tool_command", metavar="COMMAND", nargs="?", default="help",
                   help="command, or 'help' (the default)")
    p.add_argument("args", nargs="*", metavar="ARGS", help="the command's arguments")
    p.add_argument("--line", metavar="FILE",
                   help="line configuration (TOML); needed for every command but help")
    p.add_argument("--trace", action="store_true", help="print every frame sent and received")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_db(p, " where a running controller holds the line's lease")
    p.add_argument("--force", action="store_true",
                   help="send a command that changes the tool even while a controller runs "
                   "the line and the tool is in production (audited)")
    p.add_argument("--user", metavar="NAME", default=argparse.SUPPRESS,
                   help=f"who sends it, for the audit log (default ${USER_ENV}, else your "
                   "login name)")
    p.set_defaults(handler=run_tool)


def console_commands(role: str) -> dict[str, ConsoleCommand]:
    return {c.name: c for c in COMMANDS[role]}


LEGEND = ("* changes the tool (a command with optional arguments: given them): refused on a "
          "tool in production of a line a controller runs, unless --force")


def _print_help(what: str, commands: Iterable[ConsoleCommand]) -> None:
    print(f"{what} commands:")
    for c in commands:
        mark = " " if c.access is Access.READS else "*"
        print(f"{mark} {c.usage:<44} {c.help}")


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
    print(f"\n{LEGEND}")
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
        print(f"\n{LEGEND}")
        return 0
    command = commands.get(args.tool_command)
    if command is None:
        raise UserError(
            f"{tool.name} ({tool.role}) has no command '{args.tool_command}' "
            f"(commands: {', '.join(commands)})",
            exit_code=EXIT_USAGE,
        )
    if command.changes_tool(args.args):
        _guard(args, tool.name, command.name, line_id(args))
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


def _guard(args: argparse.Namespace, tool: str, command: str, line: str) -> None:
    """Refuse a command that changes ``tool`` while a controller runs ``line`` and the tool
    is in production there (``UserError``, nothing sent), unless --force; audit what is
    sent under a running controller before it is sent (controller/cli/toolguard.py)."""
    from controller.cli.toolguard import judge, look

    typed = " ".join([command, *args.args])
    found = look(getattr(args, "db", None), line, tool)
    if found.store is None:
        if getattr(args, "db", None) is not None:  # --db or $BUMPLINE_DB: a typo, maybe
            print(f"bumpline: note: no database at {found.missing}: no controller holds line "
                  f"{line} there; not checked", file=sys.stderr)
        return
    with found.store as store:
        verdict = judge(tool=tool, command=typed, line=line, changes=True,
                        holder=found.holder, mode=found.mode, force=args.force,
                        working=found.working)
        if verdict.refusal is not None:
            raise UserError(verdict.refusal)
        if verdict.audit is not None:
            action, detail = verdict.audit
            store.audit(_user(args), action, detail)
    if verdict.warning is not None:
        print(f"bumpline: {verdict.warning}", file=sys.stderr, flush=True)

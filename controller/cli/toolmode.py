"""``bumpline tools mode TOOL MODE [--line ID] --reason TEXT``: take a tool out of
production, or back.

The same change as the screen's Tool mode form (engineers): kept in the store,
audited under ``--user``, and applied by the controller that runs the line
within about a second (controller/line/modes.py): the tool takes no new wafer,
a wafer on it finishes first, and its E10 state follows.

A mode is a line's tool's: ``printer-1`` of one line is not another line's.
Without ``--line`` the line is the one that has recorded a state for the tool;
a tool name that several lines have, or that no line has recorded yet, is
refused with the lines named (a mode set for no line would be applied by none).
"""

from __future__ import annotations

import argparse

from controller.cli.lots import USER_ENV, _user
from controller.cli.output import db_url
from controller.line.e10 import ToolMode
from controller.store import Store, StoreError


def register(sub: argparse._SubParsersAction) -> None:
    tools = sub.choices["tools"]  # made by controller.cli.alarms, listed before this module
    modes = tools.add_subparsers(dest="tools_command", metavar="[mode TOOL MODE]",
                                 parser_class=type(tools))
    p = modes.add_parser("mode", help="take a tool out of production, or back",
                         description="Put a tool in a mode: production, or out of it "
                         "(engineering, maintenance, offline: no new wafer; a wafer on it "
                         "finishes first).")
    p.add_argument("tool", help="tool name, e.g. oven-1")
    p.add_argument("mode", choices=[m.value for m in ToolMode], help="the mode")
    p.add_argument("--line", metavar="ID",
                   help="the line whose tool it is (default: the one line that has it)")
    p.add_argument("--reason", default="", help="why (required out of production)")
    p.add_argument("--db", metavar="URL|FILE", type=db_url, default=argparse.SUPPRESS,
                   help="database (default $BUMPLINE_DB, else bumpline.db)")
    p.add_argument("--user", metavar="NAME", default=argparse.SUPPRESS,
                   help=f"who does this (default ${USER_ENV}, else your login name)")
    p.set_defaults(handler=cmd_tool_mode)


def _lines_of(store: Store, tool: str) -> set[str | None]:
    """The lines that know ``tool``: recorded a state for it, or have a mode set for it."""
    return ({s.line_id for s in store.tool_states_latest() if s.tool == tool}
            | {m.line_id for m in store.every_tool_mode() if m.tool == tool})


def cmd_tool_mode(args: argparse.Namespace) -> int:
    with Store(getattr(args, "db", None), create=False) as store:
        lines = _lines_of(store, args.tool)
    line = args.line
    if line is None:
        if len(lines) > 1:
            named = ", ".join(sorted(n or "(none)" for n in lines))
            raise StoreError(f"{args.tool} is a tool of lines {named}: say which with --line")
        if not lines:
            raise StoreError(f"no line has recorded a tool {args.tool} yet: check the name, "
                             "or give its line with --line ID")
        (line,) = lines
    with Store(getattr(args, "db", None), create=False, line_id=line) as store:
        previous, mode = store.set_tool_mode(args.tool, args.mode, user=_user(args),
                                             reason=args.reason)
    on = f" on line {line}" if line else ""
    print(f"{args.tool}{on}: {previous.value} -> {mode.value}"
          + ("" if mode is ToolMode.PRODUCTION else "; a wafer on it finishes first")
          + ("" if line in lines else
             f" (no state recorded yet for {args.tool} on line {line}: check the name)"))
    return 0

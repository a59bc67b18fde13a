"""``bumpline tools mode TOOL MODE --reason TEXT``: take a tool out of production, or back.

The same change as the screen's Tool mode form (engineers): kept in the store,
audited under ``--user``, and applied by the controller that runs the line
within about a second (controller/line/modes.py): the tool takes no new wafer,
a wafer on it finishes first, and its E10 state follows.
"""

from __future__ import annotations

import argparse

from controller.cli.lots import USER_ENV, _store, _user
from controller.cli.output import db_url
from controller.line.e10 import ToolMode


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
    p.add_argument("--reason", default="", help="why (required out of production)")
    p.add_argument("--db", metavar="URL|FILE", type=db_url, default=argparse.SUPPRESS,
                   help="database (default $BUMPLINE_DB, else bumpline.db)")
    p.add_argument("--user", metavar="NAME", default=argparse.SUPPRESS,
                   help=f"who does this (default ${USER_ENV}, else your login name)")
    p.set_defaults(handler=cmd_tool_mode)


def cmd_tool_mode(args: argparse.Namespace) -> int:
    with _store(args) as store:
        known = {s.tool for s in store.tool_states_latest()} | set(store.tool_modes())
        previous, mode = store.set_tool_mode(args.tool, args.mode, user=_user(args),
                                             reason=args.reason)
    print(f"{args.tool}: {previous.value} -> {mode.value}"
          + ("" if mode is ToolMode.PRODUCTION else "; a wafer on it finishes first")
          + ("" if args.tool in known else
             f" (no state recorded yet for {args.tool}: check the name)"))
    return 0

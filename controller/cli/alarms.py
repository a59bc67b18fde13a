"""Operator queries of the line's tools: their alarms and their SEMI E10 state now.

    bumpline alarms [--active] [--line ID] | alarms ack ID
    bumpline tools [--line ID]

Several lines may share one database (docs/deployment.md) and name their tools
alike (``printer-1`` on every line): each alarm and tool state names the line
whose tool it is, shown in every row and in ``--json``; ``--line`` keeps one
line's. Rows recorded by a controller that named no line show ``-``. Each tool's
mode (people's: production unless ``bumpline tools mode`` or the screen set
another) is its line's.
"""

from __future__ import annotations

import argparse

from controller.cli.lots import _store, _t, _user, parents
from controller.cli.output import print_json, print_table, record_id, wants_json
from controller.cli.toolstate import ToolNow, tools_now
from controller.line.e10 import ToolMode
from controller.store import jsonable


def register(sub: argparse._SubParsersAction) -> None:
    db, as_json, user = parents()
    p = sub.add_parser(
        "alarms",
        parents=[db, as_json],
        help="tool alarms (newest first)",
        description="List tool alarms; 'alarms ack ID' acknowledges one.",
    )
    p.add_argument("--active", action="store_true", help="only alarms not cleared yet")
    p.add_argument("--line", metavar="ID", help="only alarms of this line's tools")
    p.set_defaults(handler=cmd_alarms)
    alarm_sub = p.add_subparsers(dest="alarms_command", metavar="[ack ID]", parser_class=type(p))
    ack = alarm_sub.add_parser("ack", parents=[db, user], help="acknowledge an alarm")
    ack.add_argument("alarm_id", type=record_id, metavar="ID",
                     help="alarm number from 'bumpline alarms'")
    ack.set_defaults(handler=cmd_alarm_ack)

    p = sub.add_parser(
        "tools", parents=[db, as_json], help="latest SEMI E10 state and mode of every tool seen"
    )
    p.add_argument("--line", metavar="ID", help="only this line's tools")
    p.set_defaults(handler=cmd_tools)


def _line(line_id: str | None) -> str:
    return line_id or "-"


def cmd_alarms(args: argparse.Namespace) -> int:
    with _store(args) as store:
        alarms = store.alarms(active_only=args.active, line_id=args.line)
    if wants_json(args):
        return print_json([{**jsonable(a), "active": a.active} for a in alarms])
    if not alarms:
        which = "no active alarms" if args.active else "no alarms"
        print(which + (f" on line {args.line}" if args.line else ""))
        return 0
    print_table(
        ["#", "line", "tool", "code", "text", "wafer", "set", "cleared", "acknowledged"],
        [
            [
                a.id,
                _line(a.line_id),
                a.tool,
                a.code,
                a.text,
                a.wafer_id or "",
                _t(a.set_at),
                _t(a.cleared_at) if a.cleared_at else "ACTIVE",
                f"{a.acknowledged_by} {_t(a.acknowledged_at)}" if a.acknowledged_at else "",
            ]
            for a in alarms
        ],
    )
    return 0


def cmd_alarm_ack(args: argparse.Namespace) -> int:
    with _store(args) as store:
        alarm = store.acknowledge_alarm(args.alarm_id, user=_user(args))
    on = f" on line {alarm.line_id}" if alarm.line_id else ""
    print(
        f"alarm {alarm.id} ({alarm.tool}{on} {alarm.code} {alarm.text}) acknowledged by "
        f"{alarm.acknowledged_by}"
    )
    return 0


def cmd_tools(args: argparse.Namespace) -> int:
    with _store(args) as store:
        tools = tools_now(store, args.line)
        modes = {(m.line_id, m.tool): m.mode.value for m in store.every_tool_mode()}

    def mode(n: ToolNow) -> str:  # people's mode for the line's tool; none set: production
        return modes.get((n.state.line_id, n.state.tool), ToolMode.PRODUCTION.value)

    if wants_json(args):
        return print_json([{**jsonable(n.state), "mode": mode(n), "derived": n.derived}
                           for n in tools])
    if not tools:
        print("no tool states recorded yet" + (f" on line {args.line}" if args.line else ""))
        return 0
    print_table(
        ["line", "tool", "E10 state", "tool state", "mode", "since", "reason"],
        [[_line(n.state.line_id), n.state.tool, n.state.e10_state, n.state.tool_state,
          mode(n), _t(n.state.at), n.state.reason] for n in tools],
    )
    return 0

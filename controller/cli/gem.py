"""The factory host interface from the command line.

    bumpline gem status [--db URL] [--line ID]
    bumpline gem control (online | offline | local | remote) [--db URL] [--line ID]
                         [--user NAME]
    bumpline gem tables [--out docs/gem.md]

``control`` is the operator's switch (E30 control state): it is recorded in the
database and the running ``bumpline serve --gem`` carries it out within a second
(going online asks the host with S1F1 first). Each line has its own host link:
``--line`` names it (the ``[line] id`` of its configuration, ``sim`` for the
in-process simulated line); without it, the one line of the database whose
equipment has started. ``tables`` writes the SVID, DVID, ECID, CEID, ALID and RCMD
tables of docs/gem.md from the code.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from controller.cli.output import add_db
from controller.errors import EXIT_USAGE, UserError


def register(sub: argparse._SubParsersAction) -> None:
    gem = sub.add_parser("gem", help="the factory host interface (SECS/GEM)",
                         description="SECS/GEM: control state, status, the id tables.")
    gem_sub = gem.add_subparsers(dest="gem_command", metavar="COMMAND", parser_class=type(gem))
    gem_sub.required = True
    db = argparse.ArgumentParser(add_help=False)
    add_db(db)
    db.add_argument("--line", metavar="ID", default=None,
                    help="the line whose equipment (default: the database's one GEM line)")

    p = gem_sub.add_parser("status", parents=[db], help="control state, spool, host setup")
    p.set_defaults(handler=cmd_gem_status)

    p = gem_sub.add_parser("control", parents=[db], help="switch the E30 control state",
                           description="online: attempt online (the host must answer S1F1); "
                           "offline: equipment-offline; local/remote: the online substate.")
    p.add_argument("action", choices=("online", "offline", "local", "remote"))
    p.add_argument("--user", metavar="NAME", default=argparse.SUPPRESS,
                   help="who switches (default $BUMPLINE_USER, else your login name)")
    p.set_defaults(handler=cmd_gem_control)

    p = gem_sub.add_parser("tables", help="write the id tables of docs/gem.md from the code")
    p.add_argument("--out", metavar="FILE",
                   help="rewrite the tables section of this file (e.g. docs/gem.md); "
                   "without it, print them")
    p.set_defaults(handler=cmd_gem_tables)


def _gem_db(args: argparse.Namespace):  # noqa: ANN202 - (Store, GemDatabase)
    from controller.gem.spool import GemDatabase, gem_lines
    from controller.store import Store

    store = Store(getattr(args, "db", None), create=False)
    line = args.line
    if line is None:
        lines = gem_lines(store.engine)
        if len(lines) != 1:
            store.close()
            known = (f"the lines with GEM records here: {', '.join(map(repr, lines))}" if lines
                     else "no line's equipment has started on this database yet")
            raise UserError(f"name the line with --line ID ({known})", exit_code=EXIT_USAGE)
        line = lines[0]
    return store, GemDatabase(store.engine, line_id=line)


def cmd_gem_status(args: argparse.Namespace) -> int:
    from controller.gem.service import OPERATOR_REQUEST
    from controller.gem.states import ControlState

    store, db = _gem_db(args)
    try:
        control = db.load("control") or {}
        print(f"line            {db.line_id or '(a store that names no line)'}")
        state = ControlState(control.get("state", ControlState.EQUIPMENT_OFFLINE))
        print(f"control state   {state.label} (switch: "
              f"{'remote' if control.get('remote', True) else 'local'})")
        pending = db.load(OPERATOR_REQUEST)
        if pending:
            print(f"pending switch  {pending['action']} by {pending['by']} at {pending['at']}")
        spool = db.spool_state()
        print(f"spool           {db.spool_count()} message(s)"
              + (f", full, {spool['lost']} lost" if spool["full"] else ""))
        print(f"reports         {len(db.load('reports') or {})} defined, "
              f"{len(db.load('links') or {})} events linked, "
              f"{len(db.load('enabled_events') or [])} events enabled")
        print(f"PP-SELECT       {db.load('pp_selected') or '-'}")
    finally:
        store.close()
    return 0


def cmd_gem_control(args: argparse.Namespace) -> int:
    from controller.cli.lots import _user
    from controller.gem.service import OPERATOR_REQUEST

    store, db = _gem_db(args)
    try:
        db.save(OPERATOR_REQUEST, {"action": args.action, "by": _user(args),
                                   "at": datetime.now(UTC).isoformat(timespec="seconds")})
    finally:
        store.close()
    print(f"control {args.action} requested for line {db.line_id or '(none named)'}: its "
          "running 'bumpline serve --gem' carries it out within a second ('bumpline gem "
          "status' shows the result)")
    return 0


def cmd_gem_tables(args: argparse.Namespace) -> int:
    from controller.gem.doc_tables import replace_tables, tables_markdown

    tables = tables_markdown()
    if not args.out:
        print(tables)
        return 0
    path = Path(args.out)
    try:
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_tables(text, tables), encoding="utf-8")
    except ValueError as exc:
        raise UserError(f"{path}: {exc}", exit_code=EXIT_USAGE) from None
    print(f"{path}: id tables written")
    return 0

"""``bumpline user`` (who may use the operator screen) and ``bumpline web`` (the screen alone).

    bumpline user add NAME --role (operator|engineer|admin) [--password-stdin] [--db URL]
    bumpline user list | passwd NAME [--password-stdin] | disable NAME [--enable]
    bumpline web [--web HOST:PORT] [--db URL] [--report-dir DIR]

``bumpline web`` serves the screen read-only from a database when no controller
runs (every page says so); ``bumpline serve --web`` serves it from the running
controller, where it can act on the line. There is no default account: make the
first admin here, on the controller host. Passwords are asked for twice without
echo, or read from one line of standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from controller.cli.output import add_db, add_json, print_json, wants_json
from controller.errors import EXIT_USAGE, UserError
from controller.store import Store
from controller.web.app import DEFAULT_ADDRESS, WebContext, web_server
from controller.web.users import Role, UserBook


def register(sub: argparse._SubParsersAction) -> None:
    db = argparse.ArgumentParser(add_help=False)
    add_db(db)
    stdin = argparse.ArgumentParser(add_help=False)
    stdin.add_argument("--password-stdin", action="store_true",
                       help="read the password from one line of standard input")

    user = sub.add_parser("user", help="operator screen users: add, list, passwd, disable",
                          description="Who may log in to the operator screen, with which role.")
    user_sub = user.add_subparsers(dest="user_command", metavar="COMMAND",
                                   parser_class=type(user))
    user_sub.required = True
    p = user_sub.add_parser("add", parents=[db, stdin], help="add a user")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.label for r in Role])
    p.set_defaults(handler=cmd_user_add)
    p = user_sub.add_parser("list", parents=[db], help="every user and role")
    add_json(p)
    p.set_defaults(handler=cmd_user_list)
    p = user_sub.add_parser("passwd", parents=[db, stdin], help="set a user's password")
    p.add_argument("name")
    p.set_defaults(handler=cmd_user_passwd)
    p = user_sub.add_parser("disable", parents=[db], help="stop a user logging in")
    p.add_argument("name")
    p.add_argument("--enable", action="store_true", help="let a disabled user log in again")
    p.set_defaults(handler=cmd_user_disable)

    p = sub.add_parser("web", parents=[db], help="the operator screen, read-only, no controller",
                       description="Serve the operator screen read-only from the database "
                       "(no controller runs); 'bumpline serve --web' serves it live.")
    p.add_argument("--web", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"where to listen (default {DEFAULT_ADDRESS})")
    p.add_argument("--report-dir", default="reports", metavar="DIR",
                   help="where lot reports are (default ./reports)")
    p.set_defaults(handler=cmd_web)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line.strip():
            raise UserError("--password-stdin: no password on standard input",
                            exit_code=EXIT_USAGE)
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password: use --password-stdin",
                        exit_code=EXIT_USAGE)
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def _book(args: argparse.Namespace, *, create: bool = False) -> tuple[Store, UserBook]:
    """Only ``user add`` may make a new database (the first admin before the first lot);
    the others refuse a path that names none, as the query commands do (a typo)."""
    store = Store(getattr(args, "db", None), create=create)
    return store, UserBook(store)


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _password(args)
    store, book = _book(args, create=True)
    with store:
        user = book.add(args.name.lower(), Role.parse(args.role), password)
        store.audit("cli", "user.add", f"{user.name} as {user.role.label}")
    print(f"user {user.name} added as {user.role.label}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    store, book = _book(args)
    with store:
        users = book.list()
    if wants_json(args):  # never a password hash: UserInfo has none
        return print_json([{"name": u.name, "role": u.role.label, "disabled": u.disabled,
                            "created_at": u.created_at, "changed_at": u.changed_at}
                           for u in users])
    if not users:
        print("no users: add the first admin with 'bumpline user add NAME --role admin'")
    for user in users:
        state = "disabled" if user.disabled else "active"
        print(f"{user.name:<24} {user.role.label:<9} {state:<9} "
              f"changed {user.changed_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    store, book = _book(args)
    with store:
        book.set_password(args.name, password)
        store.audit("cli", "user.passwd", args.name)
    print(f"password of {args.name} changed")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    store, book = _book(args)
    with store:
        book.set_disabled(args.name, not args.enable)
        store.audit("cli", "user.enable" if args.enable else "user.disable", args.name)
    print(f"user {args.name} {'enabled' if args.enable else 'disabled'}")
    return 0


async def cmd_web(args: argparse.Namespace) -> int:
    store = Store(getattr(args, "db", None), create=False)
    try:
        context = WebContext(store, None, Path(args.report_dir))
        async with web_server(context, args.web) as url:
            print(f"web: the operator screen, READ-ONLY (no controller runs), at {url}",
                  flush=True)
            await asyncio.Event().wait()  # until Ctrl-C
    finally:
        store.close()
    return 0

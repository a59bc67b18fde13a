"""``bumpline tool``'s guard: no command that changes a tool in production on a line a
controller runs, unless ``--force``.

A controller (``run``, ``serve``, ``sequence run --line``) holds its line's lease in the
database (controller/cli/leases.py). An engineer's UNLOAD, profile or conveyor switch
under it fights it and can scrap wafers, so before a command that changes the tool
(``ConsoleCommand.changes_tool``) the console looks in the database: a live lease on
the line, and the tool in production mode there, refuse the command. Two ways on: take
the tool out of production first (``bumpline tools mode``; the controller gives it no new
wafer, and a wafer on it finishes first), or ``--force``, which sends it all the same,
audited and with a warning. A command that only reads is never refused.

``judge`` is the rule, pure; ``look`` reads what it needs from the database, and never
creates one: where the SQLite file does not exist no controller can hold a lease, and
the command goes ahead.

What is audited (``tool.command``, before the command is sent, persist-before-acting):
every command that changes a tool of a line a live controller holds, whether forced
(the tool in production) or not (the tool out of production). The mode change says who
took the tool out and why, not what was then done to it under the running controller,
which its own records cannot explain; with no live controller nothing is audited (there
is nothing to fight, and the console must not need a database to work on an idle line).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller.line.e10 import ToolMode

if TYPE_CHECKING:
    from controller.store import LockInfo, Store

FORCED = "tool.command.forced"  # audit action: sent with --force to a tool in production
SENT = "tool.command"  # audit action: sent to a tool out of production under a controller


@dataclass(frozen=True)
class Verdict:
    """What to do with one console command: refuse it (``refusal``, the one line to print),
    or send it, first auditing ``audit`` (action, detail) when given and printing
    ``warning`` on stderr when given."""

    refusal: str | None = None
    audit: tuple[str, str] | None = None
    warning: str | None = None


SEND = Verdict()


def judge(*, tool: str, command: str, line: str, changes: bool, holder: LockInfo | None,
          mode: ToolMode, force: bool, working: str | None = None) -> Verdict:
    """The rule. ``command``: the command as typed (``n2 off``); ``line``: the line's lock
    id; ``holder``: the live lease on it, None when nobody runs it (no lease, or a stale
    one); ``mode``: the tool's mode on that line; ``working``: what the tool's last
    recorded E10 state says it is doing when that is a wafer's work (productive), else
    None. Out of production a tool finishes the wafer it has (the oven: every wafer on its
    belt): until its state leaves productive, a change would still hit that wafer."""
    if not changes or holder is None:
        return SEND
    who = f"{holder.what} is run by a controller ({holder.describe()})"
    if mode is not ToolMode.PRODUCTION and working is None:
        return Verdict(audit=(SENT, f"{tool} {command}: console command to {tool} in "
                              f"{mode.value} while {who}"))
    # Guarded: in production, or out of it and still working its last wafer.
    state, busy = ("in production", "in production") if mode is ToolMode.PRODUCTION else (
        f"in {mode.value}, still working ({working}),", f"still working ({working})")
    if force:
        return Verdict(
            audit=(FORCED, f"{tool} {command}: console command with --force to {tool} "
                   f"{state} while {who}"),
            warning=f"warning: {tool} {command}: sending it with --force to a tool {busy} "
                    f"while {who}; audited",
        )
    if mode is not ToolMode.PRODUCTION:
        return Verdict(refusal=(
            f"{tool} {command}: refused: {tool} is in {mode.value} but still working "
            f"({working}) while {who}: a wafer on it finishes first; wait until 'bumpline "
            f"tools' shows it {mode.value}, or send it anyway with --force (audited)"))
    return Verdict(refusal=(
        f"{tool} {command}: refused: {who}, and {tool} is in production there. Take it "
        f"out of production first (bumpline tools mode {tool} engineering --line "
        f"{shlex.quote(line)} --reason TEXT: the controller gives it no new wafer, and a wafer "
        "on it finishes first), or send it anyway with --force (audited)"))


@dataclass(frozen=True)
class Found:
    """What the database says of a line and its tool; ``store`` open (the caller closes it)
    or None when there is no database to look in (``missing``: the file it would be)."""

    store: Store | None
    holder: LockInfo | None = None
    mode: ToolMode = ToolMode.PRODUCTION
    missing: Path | None = None
    working: str | None = None  # the tool's last recorded state, when productive


def look(db: str | None, line: str, tool: str) -> Found:
    """The live lease on ``line`` and ``tool``'s mode there, from the database ``db`` (None:
    $BUMPLINE_DB, else ./bumpline.db). A SQLite file that does not exist is not created:
    no controller holds anything there. A database that cannot be opened or read raises
    ``StoreError`` (one line); an older schema is brought to head first, as every command
    that opens the database does (docs/database.md)."""
    from controller import db as _db
    from controller.persistence.lots import check_line_id
    from controller.store import Store, StoreError

    url = _db.resolve_db_url(db)
    try:
        path = _db.sqlite_file(_db.parse_db_url(url))
    except _db.DatabaseUrlError as exc:
        raise StoreError(str(exc)) from None
    if path is not None and not path.exists():
        return Found(None, missing=path)
    try:
        check_line_id(line)
    except StoreError:  # a path no controller could run (its store would refuse the id)
        line_id = None
    else:
        line_id = line
    store = Store(db, create=False, line_id=line_id)
    try:
        holder = store.line_lock_holder(line, live_only=True)
        info = store.tool_modes().get(tool) if line_id is not None else None
        working = _working(store, line_id, tool) if info is not None else None
    except BaseException:
        store.close()
        raise
    return Found(store, holder, info.mode if info is not None else ToolMode.PRODUCTION,
                 working=working)


def _working(store: Store, line_id: str | None, tool: str) -> str | None:
    """The tool's last recorded E10 state on the line, said, when it is a wafer's work."""
    from controller.line.e10 import E10State

    latest = [s for s in store.tool_states_latest(line_id) if s.tool == tool]
    if not latest or latest[-1].e10_state != E10State.PRODUCTIVE.value:
        return None
    state = latest[-1]
    return f"{state.e10_state} since {state.at:%Y-%m-%d %H:%M:%S}Z" + (
        f": {state.reason}" if state.reason else "")

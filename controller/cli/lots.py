"""Operator commands on the controller's database: lots and wafers (alarms and tools:
``controller.cli.alarms``).

    bumpline lot start --lot ID --recipe NAME (--wafers N | --slots LIST) [--priority P]
    bumpline lot list [--line ID] | show ID | hold ID | resume ID | abort ID | report ID
    bumpline wafer show ID | hold ID --reason TEXT
    bumpline wafer disposition ID (--continue | --retry | --scrap) --reason TEXT

Every command takes ``--db URL`` (default ``$BUMPLINE_DB``, else
``sqlite:///bumpline.db`` in the current directory); query commands take
``--json``. These commands only record: the running controller (scheduler)
carries out holds, aborts and dispositions.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.cli.output import add_db, add_json, print_json, print_table, wants_json
from controller.domain import (
    DEFAULT_PRIORITY,
    MAX_WAFERS,
    PRIORITY_RANGE,
    Disposition,
    LotState,
    parse_slots,
    slot_text,
    slots_for_count,
)
from controller.errors import UserError
from controller.store import AlarmInfo, Store, jsonable

USER_ENV = "BUMPLINE_USER"


# --- parsers ------------------------------------------------------------------------------------


def parents() -> tuple[argparse.ArgumentParser, ...]:
    """The options the query and action commands share: ``--db``, ``--json``, ``--user``."""
    db = argparse.ArgumentParser(add_help=False)
    add_db(db)
    as_json = argparse.ArgumentParser(add_help=False)
    add_json(as_json)
    user = argparse.ArgumentParser(add_help=False)
    user.add_argument(
        "--user",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help=f"who does this (default ${USER_ENV}, else your login name)",
    )
    return db, as_json, user


def register(sub: argparse._SubParsersAction) -> None:
    db, as_json, user = parents()
    _register_lot(sub, db, as_json, user)
    _register_wafer(sub, db, as_json, user)


def _register_lot(sub: argparse._SubParsersAction, db, as_json, user) -> None:  # noqa: ANN001
    lot = sub.add_parser(
        "lot",
        help="queue, list, show, hold, resume or abort lots",
        description="Lots: queue one, see them, hold/resume/abort one.",
    )
    lot_sub = lot.add_subparsers(dest="lot_command", metavar="COMMAND", parser_class=type(lot))
    lot_sub.required = True

    low, high = PRIORITY_RANGE
    p = lot_sub.add_parser(
        "start",
        parents=[db, user],
        help="queue a new lot",
        description="Queue a lot of wafers on a recipe. Wafer ids are <LOT>-<slot>, e.g. LOT42-07.",
    )
    p.add_argument("--lot", required=True, metavar="ID", help="lot id (at most 13 characters)")
    p.add_argument(
        "--recipe",
        required=True,
        metavar="NAME",
        help="recipe name (see 'bumpline recipe list') or a recipe file",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--wafers", type=int, metavar="N", help=f"wafers in slots 1..N (1-{MAX_WAFERS})"
    )
    which.add_argument("--slots", metavar="LIST", help="carrier slots, e.g. 1-5,8,10")
    p.add_argument(
        "--priority",
        type=int,
        default=DEFAULT_PRIORITY,
        metavar="P",
        help=f"{low}-{high}, {low} most urgent (default {DEFAULT_PRIORITY})",
    )
    p.add_argument(
        "--line-id",
        metavar="ID",
        help="queue it for this line ([line] id of its configuration); default: the first "
        "line that has the tools its recipe needs claims it",
    )
    p.set_defaults(handler=cmd_lot_start)

    p = lot_sub.add_parser("list", parents=[db, as_json], help="lots, newest first")
    p.add_argument(
        "--state",
        choices=[s.value for s in LotState],
        action="append",
        help="only lots in this state (repeatable)",
    )
    p.add_argument("--line", metavar="ID", help="only lots queued for or run by this line")
    p.set_defaults(handler=cmd_lot_list)

    p = lot_sub.add_parser("show", parents=[db, as_json], help="a lot and its wafers")
    p.add_argument("lot_id", metavar="ID")
    p.set_defaults(handler=cmd_lot_show)

    for name, text in (
        ("hold", "hold a lot: no new wafer of it starts"),
        ("resume", "resume a held lot"),
        ("abort", "abort a lot: no more wafers start; wafers in the carrier are aborted"),
    ):
        p = lot_sub.add_parser(name, parents=[db, user], help=text)
        p.add_argument("lot_id", metavar="ID")
        # A held lot waits for a person, who must know why (as for a wafer hold).
        p.add_argument("--reason", required=name == "hold", default="",
                       help="why (kept in the audit log)")
        p.set_defaults(handler=cmd_lot_action, action=name)

    p = lot_sub.add_parser("report", parents=[db], help="write the HTML lot report")
    p.add_argument("lot_id", metavar="ID")
    p.add_argument(
        "--out",
        default="reports",
        metavar="DIR",
        help="folder for <lot>/report.html, one self-contained file (default ./reports)",
    )
    p.set_defaults(handler=cmd_lot_report)


def _register_wafer(sub: argparse._SubParsersAction, db, as_json, user) -> None:  # noqa: ANN001
    wafer = sub.add_parser(
        "wafer",
        help="a wafer's history, holds and dispositions",
        description="One wafer: its full history, a hold, a disposition.",
    )
    wafer_sub = wafer.add_subparsers(
        dest="wafer_command", metavar="COMMAND", parser_class=type(wafer)
    )
    wafer_sub.required = True

    p = wafer_sub.add_parser("show", parents=[db, as_json], help="a wafer's full history")
    p.add_argument("wafer_id", metavar="ID", help="e.g. LOT42-07")
    p.set_defaults(handler=cmd_wafer_show)

    p = wafer_sub.add_parser("hold", parents=[db, user], help="hold a wafer at its next safe point")
    p.add_argument("wafer_id", metavar="ID")
    p.add_argument("--reason", required=True, help="why (kept in the audit log)")
    p.set_defaults(handler=cmd_wafer_hold)

    p = wafer_sub.add_parser(
        "disposition", parents=[db, user], help="an engineer's decision for a held wafer"
    )
    p.add_argument("wafer_id", metavar="ID")
    decision = p.add_mutually_exclusive_group(required=True)
    for d in Disposition:
        decision.add_argument(
            f"--{d.value}",
            dest="decision",
            action="store_const",
            const=d.value,
            help=_DISPOSITION_HELP[d],
        )
    p.add_argument("--reason", required=True, help="why (kept in the audit log)")
    p.set_defaults(handler=cmd_wafer_disposition)


_DISPOSITION_HELP = {
    Disposition.CONTINUE: "carry on with the wafer as it is (or resume a held wafer)",
    Disposition.RETRY: "repeat the failed step where a repeat cannot harm the wafer",
    Disposition.SCRAP: "scrap the wafer",
}


# --- handlers -----------------------------------------------------------------------------------


@contextmanager
def _store(args: argparse.Namespace, *, create: bool = False):
    store = Store(getattr(args, "db", None), create=create)
    try:
        yield store
    finally:
        store.close()


def _user(args: argparse.Namespace) -> str:
    name = getattr(args, "user", None) or os.environ.get(USER_ENV)
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no login name in a bare container
            name = "unknown"
    return name


def lookup_recipe(name: str) -> tuple[str, str, str]:
    """(name, version, hash) of a recipe from the recipe library."""
    try:
        recipes = importlib.import_module("sequences.recipes.recipe")
    except ImportError as exc:
        raise UserError(
            f"cannot look up recipe '{name}': the recipe library (sequences.recipes.recipe) "
            "does not "
            f"import ({exc})"
        ) from None
    get = getattr(recipes, "get_recipe", None) or getattr(recipes, "find_recipe", None)
    if get is None:
        raise UserError(f"cannot look up recipe '{name}': sequences.recipes.recipe has no "
                        "get_recipe()")
    recipe = get(name)  # RecipeError (unknown or malformed) is printed as one line by main
    return recipe.name, str(recipe.version), recipe.hash


def cmd_lot_start(args: argparse.Namespace) -> int:
    slots = slots_for_count(args.wafers) if args.wafers is not None else parse_slots(args.slots)
    recipe_name, version, digest = lookup_recipe(args.recipe)
    with _store(args, create=True) as store:
        lot = store.create_lot(
            args.lot,
            recipe_name=recipe_name,
            recipe_version=version,
            recipe_hash=digest,
            slots=slots,
            priority=args.priority,
            user=_user(args),
            line_id=args.line_id,
        )
    print(
        f"lot {lot.id} queued: {lot.wafer_count} wafer{'s' if lot.wafer_count != 1 else ''} "
        f"(slots {slot_text(slots)}), recipe {lot.recipe_name} v{lot.recipe_version} "
        f"({lot.recipe_hash[:12]}), priority {lot.priority}, for {_line_shown(lot.line_id)}"
    )
    return 0


CONTROLLER_ACTIONS = ("controller.start", "controller.stop")  # written by `run` and `serve`


def controller_running(store: Store, lot_id: str) -> bool | None:
    """Does a controller run this lot now? The lot's lease says (a controller killed outright
    leaves a stale one: it runs nothing). Not running: False once a controller ran it, None
    when none ever did (a lot not started)."""
    if store.lot_lock_holder(lot_id, live_only=True) is not None:
        return True
    marks = [a for a in store.audit_log(lot_id=lot_id) if a.action in CONTROLLER_ACTIONS]
    return None if not marks else False


def _state_shown(state: str, running: bool | None) -> str:
    if state == LotState.RUNNING.value and running is False:
        return "stopped"  # running in the database, but no controller runs it
    return state


def _line_shown(line_id: str | None) -> str:
    return f"line {line_id}" if line_id else "any line"


def cmd_lot_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        lots = store.list_lots(args.state, line_id=args.line)
        running = {lot.id: controller_running(store, lot.id) for lot in lots}
    if wants_json(args):
        return print_json([{**jsonable(lot), "controller_running": running[lot.id]}
                           for lot in lots])
    if not lots:
        print("no lots")
        return 0
    print_table(
        ["lot", "state", "line", "recipe", "wafers", "priority", "queued", "by"],
        [
            [
                lot.id,
                _state_shown(lot.state, running[lot.id]),
                lot.line_id or "any",
                f"{lot.recipe_name} v{lot.recipe_version}",
                lot.wafer_count,
                lot.priority,
                _t(lot.created_at),
                lot.created_by,
            ]
            for lot in lots
        ],
    )
    return 0


def cmd_lot_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        lot = store.get_lot(args.lot_id)
        wafers = store.wafers(lot.id)
        pending = store.pending_requests(lot.id)
        running = controller_running(store, lot.id)
    if wants_json(args):
        return print_json({"lot": {**jsonable(lot), "controller_running": running},
                           "wafers": wafers, "pending_requests": pending})
    print(f"lot {lot.id}: {_state_shown(lot.state, running)}, priority {lot.priority}")
    if _state_shown(lot.state, running) == "stopped":
        print(f"  no controller runs it: continue it with 'bumpline run --resume {lot.id}'")
    print(f"  line     {lot.line_id or 'any (not claimed yet)'}")
    print(f"  recipe   {lot.recipe_name} v{lot.recipe_version} ({lot.recipe_hash})")
    print(f"  queued   {_t(lot.created_at)} by {lot.created_by}")
    print(f"  started  {_t(lot.started_at)}   ended {_t(lot.ended_at)}")
    outcomes = [w.outcome for w in wafers]
    print(
        f"  wafers   {len(wafers)}: {outcomes.count('good')} good, "
        f"{outcomes.count('scrapped')} scrapped, {outcomes.count('aborted')} aborted, "
        f"{outcomes.count(None)} unfinished"
    )
    print()
    print_table(
        ["slot", "wafer", "state", "location", "outcome"],
        [[w.slot, w.id, w.state, w.location, w.outcome or ""] for w in wafers],
    )
    if pending:
        print("\npending requests:")
        for r in pending:
            target = r.wafer_id or r.lot_id
            print(
                f"  #{r.id} {r.action} {target} by {r.requested_by} {_t(r.requested_at)}"
                + (f": {r.reason}" if r.reason else "")
            )
    return 0


def cmd_lot_action(args: argparse.Namespace) -> int:
    """With a controller running the lot, the request is queued for it (it alone knows which
    wafers are in a tool); with none, it is carried out here where that is safe
    (``Store.act_on_lot``, as the screen and the factory host do)."""
    user = _user(args)
    with _store(args) as store:
        lot, holder = store.act_on_lot(args.lot_id, args.action, user=user,
                                       reason=args.reason)
        if holder is not None:
            print(f"lot {lot.id}: {args.action} queued for the controller running it "
                  f"(host {holder.host}, pid {holder.pid}; bumpline lot show to see it "
                  "handled)")
            return 0
    print(f"lot {lot.id} is now {lot.state}")
    return 0


def cmd_lot_report(args: argparse.Namespace) -> int:
    from controller.report import write_lot_report

    with _store(args) as store:
        path = write_lot_report(store, args.lot_id, Path(args.out))
    print(f"report written to {path}")
    return 0


def cmd_wafer_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        history = store.wafer_history(args.wafer_id)
        line_id = store.get_lot(history.wafer.lot_id).line_id  # the line of the wafer's lot
    if wants_json(args):
        # Each alarm as `alarms --json` gives it (docs/cli.md: "alarms as below"), with `active`.
        return print_json({**jsonable(history), "line_id": line_id,
                           "alarms": [{**jsonable(a), "active": a.active}
                                      for a in history.alarms]})
    w = history.wafer
    print(
        f"wafer {w.id} (lot {w.lot_id}, slot {w.slot}, {_line_shown(line_id)}): {w.state} at "
        f"{w.location}" + (f", outcome {w.outcome}" if w.outcome else "")
    )
    print(TIMES_SHOWN)
    if history.steps:
        print("\nsteps:")
        for s in history.steps:
            attempt = f" attempt {s.attempt}" if s.attempt > 1 else ""
            print(
                f"  {s.step_index} {s.kind}{attempt} on {s.tool}: {s.status}"
                + (f", {s.disposition}" if s.disposition else "")
                + f"  {_span(s.started_at, s.tool_time_start, s.ended_at, s.tool_time_end)}"
            )
            if s.parameters:
                print("      sent:     " + _pairs(s.parameters))
            if s.results:
                print("      measured: " + _judged(s.results, s.windows))
            if s.curve is not None:
                peak = max(s.curve.samples_c) if s.curve.samples_c else float("nan")
                print(
                    f"      curve:    {len(s.curve.samples_c)} samples every "
                    f"{s.curve.interval_s:g} s, peak {peak:.1f} °C"
                )
    if history.intents:
        print("\ncommands with intent records:")
        for i in history.intents:
            state = i.outcome or "OPEN (may have reached the tool)"
            print(f"  step {i.step_index} {i.command} to {i.tool} {_t(i.written_at)}: {state}")
    print("\ntransitions:")
    for e in history.events:
        where = f" [{e.tool}]" if e.tool else ""
        print(
            f"  {_when(e.at, e.tool_time):<12}  {e.from_state} → {e.to_state} ({e.trigger}){where}"
            + (f": {e.why}" if e.why else "")
        )
    if not history.events:
        print("  none yet")
    if history.alarms:
        print("\nalarms:")
        for a in history.alarms:
            print("  " + _alarm_line(a))
    if history.requests:
        print("\nholds and dispositions:")
        for r in history.requests:
            handled = f"handled {_t(r.handled_at)}" if r.handled_at else "pending"
            print(
                f"  #{r.id} {r.action} by {r.requested_by} {_t(r.requested_at)}: {r.reason} "
                f"({handled})"
            )
    return 0


def cmd_wafer_hold(args: argparse.Namespace) -> int:
    with _store(args) as store:
        request = store.hold_wafer(args.wafer_id, user=_user(args), reason=args.reason)
    print(
        f"hold of {request.wafer_id} requested (#{request.id}); the controller holds it at "
        "its next safe point"
    )
    return 0


def cmd_wafer_disposition(args: argparse.Namespace) -> int:
    with _store(args) as store:
        request = store.disposition_wafer(
            args.wafer_id, args.decision, user=_user(args), reason=args.reason
        )
    print(
        f"{request.action} of {request.wafer_id} recorded (#{request.id}); the controller "
        "carries it out"
    )
    return 0


# --- output -------------------------------------------------------------------------------------


def _t(moment: datetime | None) -> str:
    """UTC, to the second: every operator sees the same clock."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# Under simulation wall time runs hundreds of times faster than the tools' clock: a
# wafer's steps and transitions are shown in the tool time they were recorded with.
TIMES_SHOWN = "times: t = tool seconds since the controller run's clock started; dates: UTC"


def _when(moment: datetime | None, tool_time: float | None) -> str:
    """Tool time where it was recorded, else the wall clock."""
    return _t(moment) if tool_time is None else f"t {tool_time:.1f} s"


def _span(started: datetime, tool_start: float | None, ended: datetime | None,
          tool_end: float | None) -> str:
    """A step's start → end, and how long it took in tool time when both ends have one (one
    controller run opens and closes a step record: one clock)."""
    took = ""
    if tool_start is not None and tool_end is not None:
        took = f" ({tool_end - tool_start:.1f} s)"
    return f"{_when(started, tool_start)} → {_when(ended, tool_end)}{took}"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _judged(results: dict[str, Any], windows: dict[str, Any]) -> str:
    parts = []
    for name, value in results.items():
        window = windows.get(name)
        if window is None or not isinstance(value, int | float):
            parts.append(f"{name}={value}")
            continue
        low, high = window
        ok = (low is None or value >= low) and (high is None or value <= high)
        bounds = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
        parts.append(f"{name}={value} [{bounds}]{'' if ok else ' OUT'}")
    return ", ".join(parts)


def _alarm_line(a: AlarmInfo) -> str:
    cleared = f"cleared {_t(a.cleared_at)}" if a.cleared_at else "ACTIVE"
    acked = f", acknowledged by {a.acknowledged_by}" if a.acknowledged_by else ""
    return f"#{a.id} {a.tool} {a.code} {a.text}  set {_t(a.set_at)}, {cleared}{acked}"

"""``bumpline run`` (the operator's main job) and ``bumpline serve`` (the line as a service).

    bumpline run --lot ID --recipe NAME (--wafers N | --slots LIST) [--line FILE] [--db URL]
    bumpline run --resume LOT [--line FILE] [--db URL]
    bumpline serve --line FILE [--db URL] [--gem] [--web [HOST:PORT]]

Without ``--line`` both start the simulated line in the same process (the
embedded default) at ``--speed`` times real time. Ctrl-C (or SIGTERM) stops
cleanly: no new step starts, running steps finish and are recorded, and the lot
can be continued with ``--resume``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from controller.errors import EXIT_USAGE, UserError
from controller.events import LineEventStream

DEFAULT_SPEED = 200.0


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--line",
        metavar="FILE",
        help="line configuration; without it a simulated line runs in-process",
    )
    common.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database URL (default $BUMPLINE_DB, else sqlite:///bumpline.db)",
    )
    common.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        help=f"time scale of the in-process simulated line (default "
        f"{DEFAULT_SPEED:g}); a --line file sets its own",
    )
    common.add_argument("--seed", type=int, default=0, help="simulated line's random seed")
    common.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="fault plan for the in-process simulated line (docs/simulator.md)",
    )
    common.add_argument(
        "--report-dir",
        default="reports",
        metavar="DIR",
        help="where lot reports are written (default ./reports)",
    )
    common.add_argument("--user", help="who is running it (default $BUMPLINE_USER or login)")
    common.add_argument(
        "--wait-for-disposition",
        action="store_true",
        help="when only held wafers are left, wait for 'bumpline wafer "
        "disposition' instead of ending",
    )

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a lot to the end (the main job)",
        description="Start a lot and run it to the end in the foreground, with "
        "live progress per wafer; then print the lot summary and the report.",
    )
    p.add_argument("--lot", metavar="ID", help="lot id (new lot)")
    p.add_argument("--recipe", metavar="NAME", help="recipe name or file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--wafers", type=int, metavar="N", help="number of wafers 1-25")
    which.add_argument("--slots", metavar="LIST", help="carrier slots, e.g. 1-5,8,10")
    p.add_argument("--priority", type=int, default=None, help="1 (most urgent) .. 9")
    p.add_argument("--resume", metavar="LOT", help="continue an unfinished lot")
    p.add_argument("--plain", action="store_true", help="one line per event, no live table")
    p.set_defaults(handler=cmd_run)

    s = sub.add_parser(
        "serve",
        parents=[common],
        help="run the line as a service",
        description="Continue unfinished lots, then pick up queued lots "
        "('bumpline lot start') until Ctrl-C or SIGTERM.",
    )
    s.add_argument(
        "--once",
        action="store_true",
        help="stop when no lot is left instead of waiting for new ones",
    )
    s.add_argument(
        "--gem",
        action="store_true",
        help="also serve the factory host over SECS/GEM (HSMS-SS passive; settings in the "
        "line file's [gem] section, docs/gem.md)",
    )
    s.add_argument(
        "--web",
        nargs="?",
        const="127.0.0.1:8080",
        default=None,
        metavar="HOST:PORT",
        help="also serve the operator screen (default 127.0.0.1:8080; docs/operators.md, "
        "docs/security.md)",
    )
    s.set_defaults(handler=cmd_serve, plain=True)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value <= 5000:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most 5000, got {text}")
    return value


# --- the line: simulated in-process, or a configuration file ----------------------------------


@contextlib.asynccontextmanager
async def line_tools(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Any, str]]:
    """(open drivers, clock, description) for --line FILE or an in-process simulated line."""
    from drivers.clock import ScaledClock
    from drivers.line_config import load_line_config, parse_line_config
    from drivers.tools import open_line

    if args.line:
        if args.faults:
            raise UserError(
                "--faults applies to the in-process simulated line; with --line, "
                "start 'bumpline sim --faults ...' instead",
                exit_code=EXIT_USAGE,
            )
        config = load_line_config(args.line)
        clock = ScaledClock(config.time_scale)
        async with open_line(config, clock) as tools:
            yield tools, clock, f"line {config.name} ({args.line}, {config.time_scale:g}x)"
        return
    from controller.cli_sim import fault_plans
    from sim.line import SimulatedLine

    clock = ScaledClock(args.speed)
    async with SimulatedLine(
        clock=clock, seed=args.seed, faults=fault_plans(args.faults, None)
    ) as line:
        config = parse_line_config(line.config_text(), source="simulated line")
        async with open_line(config, clock) as tools:
            yield tools, clock, f"simulated line in-process at {args.speed:g}x"


def _install_stop(controller: Any) -> Any:
    loop = asyncio.get_running_loop()
    stops = {"count": 0}

    def stop() -> None:
        stops["count"] += 1
        if stops["count"] == 1:
            print(
                "\nstopping: no new steps start; running steps finish and are recorded "
                "(Ctrl-C again to leave at once)",
                file=sys.stderr,
            )
            controller.stop()
        else:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove


# --- run --------------------------------------------------------------------------------------


def _lot_to_run(args: argparse.Namespace, store: Any) -> Callable[[], str]:
    """Check the lot arguments now; return what creates (or names) the lot once the line
    is open, so an unreachable tool leaves no half-started lot behind."""
    from controller.cli_lots import _user
    from controller.store import DEFAULT_PRIORITY, StoreError, parse_slots, slots_for_count
    from sequences.validate import load_valid_recipe

    if args.resume:
        if args.lot or args.recipe or args.wafers is not None or args.slots:
            raise UserError(
                "--resume continues a stored lot: give no --lot, --recipe, --wafers or "
                "--slots with it",
                exit_code=EXIT_USAGE,
            )
        store.get_lot(args.resume)  # a clear error when there is no such lot
        return lambda: args.resume
    given = (("--lot", args.lot), ("--recipe", args.recipe))
    missing = [flag for flag, value in given if not value]
    if args.wafers is None and not args.slots:
        missing.append("--wafers or --slots")
    if missing:
        raise UserError(f"run needs {', '.join(missing)} (or --resume LOT)", exit_code=EXIT_USAGE)
    slots = slots_for_count(args.wafers) if args.wafers is not None else parse_slots(args.slots)
    recipe = load_valid_recipe(args.recipe)
    try:
        store.get_lot(args.lot)
    except StoreError:
        pass  # no such lot yet: good
    else:
        raise StoreError(f"lot {args.lot} already exists (lot ids are never reused)")

    def create() -> str:
        lot = store.create_lot(
            args.lot,
            recipe_name=args.recipe,
            recipe_version=recipe.version,
            recipe_hash=recipe.hash,
            slots=slots,
            priority=args.priority or DEFAULT_PRIORITY,
            user=_user(args),
        )
        return lot.id

    return create


async def cmd_run(args: argparse.Namespace) -> int:
    from controller.store import Store

    store = Store(getattr(args, "db", None))
    try:
        lot = _lot_to_run(args, store)
        status, _stopped = await _run_lots(args, store, lambda: [lot()])
        return status
    finally:
        store.close()


async def _run_lots(
    args: argparse.Namespace, store: Any, lots: Callable[[], list[str]],
    events: LineEventStream | None = None,
) -> tuple[int, bool]:
    """Open the line, then run the lots; (exit status, whether an operator stopped it)."""
    from controller.cli_lots import _user
    from controller.lots import LineController
    from controller.progress import LiveProgress
    from controller.report import write_lot_report
    from sequences.validate import load_valid_recipe

    started = time.monotonic()
    cpu_started = time.process_time()
    async with line_tools(args) as (tools, clock, where):
        lot_ids = lots()
        live = LiveProgress(store, lot_ids, plain=args.plain or not sys.stdout.isatty())
        controller = LineController(
            store,
            tools,
            clock,
            recipes=load_valid_recipe,
            user=_user(args),
            progress=live.progress,
            wait_for_dispositions=args.wait_for_disposition,
            events=events,
        )
        print(f"bumpline: {', '.join(lot_ids)} on the {where}", flush=True)
        remove = _install_stop(controller)
        tool_start = clock.now()
        try:
            with live:
                outcomes = await controller.run(lot_ids)
        finally:
            remove()
        stopped = controller.stopped
        tool_s = clock.now() - tool_start
    wall_s = time.monotonic() - started
    cpu_s = time.process_time() - cpu_started
    status = 0
    for outcome in outcomes:
        path = write_lot_report(store, outcome.lot_id, args.report_dir)
        live.summary(outcome, tool_s=tool_s, wall_s=wall_s, cpu_s=cpu_s)
        print(f"report: {path}")
        if outcome.state != "complete":
            status = 3
            print(
                f"lot {outcome.lot_id} is {outcome.state}: continue it with "
                f"'bumpline run --resume {outcome.lot_id}"
                + (f" --line {args.line}" if args.line else "")
                + (f" --db {args.db}" if getattr(args, "db", None) else "")
                + "' (after 'bumpline wafer disposition' for held wafers)"
            )
    return status, stopped


async def _serve_web(args: argparse.Namespace, store: Any, events: LineEventStream,
                     services: contextlib.AsyncExitStack) -> None:
    from controller.web.app import WebContext, web_server

    context = WebContext(store, events, Path(args.report_dir))
    url = await services.enter_async_context(web_server(context, args.web))
    print(f"web: the operator screen at {url}", flush=True)


async def cmd_serve(args: argparse.Namespace) -> int:
    """Continue unfinished lots, then take queued ones, until stopped (or, with --once,
    until none is left). Held wafers wait for their disposition."""
    from controller.gem.service import gem_service
    from controller.store import LotState, Store

    args.wait_for_disposition = not args.once
    store = Store(getattr(args, "db", None))
    services = contextlib.AsyncExitStack()  # --gem: the factory host link, for the whole run
    try:
        events = await services.enter_async_context(gem_service(args, store))
        if args.web:  # one stream for GEM and the screen, the controller publishes into it
            events = events or LineEventStream("line", asyncio.get_running_loop().time)
            await _serve_web(args, store, events, services)
        while True:
            unfinished = [lot.id for lot in store.list_lots([LotState.RUNNING, LotState.HELD])]
            queued = store.next_queued_lot()
            lots = unfinished + ([queued.id] if queued and queued.id not in unfinished else [])
            if not lots:
                if args.once:
                    return 0
                await asyncio.sleep(1.0)  # a person queues lots; look once a second
                continue
            status, stopped = await _run_lots(args, store, lambda ids=lots: ids, events)
            if stopped or (args.once and status):
                return status
    finally:
        await services.aclose()
        store.close()

"""``bumpline run`` (the operator's main job) and ``bumpline serve`` (the line as a service).

    bumpline run --lot ID --recipe NAME (--wafers N | --slots LIST) [--line FILE] [--db URL]
                 [--mqtt URL]
    bumpline run --resume LOT [--line FILE] [--db URL] [--mqtt URL]
    bumpline serve --line FILE [--db URL] [--gem] [--web [HOST:PORT]] [--mqtt URL]

Without ``--line`` both start the simulated line in the same process (the
embedded default) at ``--speed`` times real time. Ctrl-C (or SIGTERM) stops
cleanly: no new step starts, running steps finish and are recorded, and the lot
can be continued with ``--resume``.

One controller per line and per lot: both commands lock the line (``[line] id``
of the configuration, else the file's resolved path, else ``sim`` for the
in-process simulated line) and every lot they run in the database, renew the
leases while they run and release them at the end; a second controller is
refused with the holder named (``docs/database.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from controller.cli.feed import feed_settings, start_feed
from controller.cli.leases import Leases, line_id
from controller.cli.lot_summary import print_lot_summaries
from controller.cli.output import add_db
from controller.errors import EXIT_USAGE, UserError
from controller.line.events import LineEventStream

DEFAULT_SPEED = 200.0


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--line",
        metavar="FILE",
        help="line configuration; without it a simulated line runs in-process",
    )
    add_db(common)
    common.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        help=f"time scale of the in-process simulated line (default "
        f"{DEFAULT_SPEED:g}); a --line file sets its own",
    )
    common.add_argument("--seed", type=int, default=0, help="simulated line's random seed")
    common.add_argument(
        "--platers",
        type=int,
        default=0,
        choices=range(0, 3),
        metavar="N",
        help="EP-25 barrier platers on the in-process simulated line (default 0; a barrier "
        "recipe needs one)",
    )
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
        "--mqtt",
        metavar="URL",
        help="also publish the line's events and state to an MQTT broker, "
        "mqtt[s]://[user[:password]@]host[:port] (overrides the line file's [mqtt] url; "
        "docs/events.md)",
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
    # run's alone: serve always waits for dispositions (unless --once), so it has no such flag.
    p.add_argument(
        "--wait-for-disposition",
        action="store_true",
        help="when only held wafers are left, wait for 'bumpline wafer "
        "disposition' instead of ending",
    )
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
    s.add_argument(
        "--gem-port",
        type=_port,
        metavar="PORT",
        help="HSMS port for --gem, overriding [gem] port (0: any free port, printed)",
    )
    s.set_defaults(handler=cmd_serve, plain=True)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}")
    return int(text)


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
async def line_tools(args: argparse.Namespace, event_seqs: dict[str, int] | None = None
                     ) -> AsyncIterator[tuple[Any, Any, str]]:
    """(open drivers, clock, description) for --line FILE or an in-process simulated line.

    ``event_seqs``: the last pushed-event number persisted per tool (the plater's driver
    fetches what it missed from there)."""
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
        async with open_line(config, clock, event_seqs=event_seqs) as tools:
            yield tools, clock, f"line {config.name} ({args.line}, {config.time_scale:g}x)"
        return
    from controller.cli.claims import in_process_layout
    from controller.cli.sim import fault_plans
    from sim.line import SimulatedLine

    clock = ScaledClock(args.speed)
    layout = in_process_layout(args)
    async with SimulatedLine(
        clock=clock, seed=args.seed, faults=fault_plans(args.faults, None), layout=layout
    ) as line:
        config = parse_line_config(line.config_text(), source="simulated line")
        async with open_line(config, clock, event_seqs=event_seqs) as tools:
            yield tools, clock, f"simulated line in-process at {args.speed:g}x"


class Stopper:
    """Ctrl-C and SIGTERM for a whole command: the first stops cleanly (no new step starts;
    running steps finish and are recorded; an idle ``serve`` simply ends), the second
    leaves at once (steps still running are left to ``--resume``, which asks the tools)."""

    def __init__(self) -> None:
        self.count = 0
        self.left_at_once = False
        self.controller: Any = None  # the LineController running now, if any
        self.stopped = asyncio.Event()
        self._task = asyncio.current_task()

    def __enter__(self) -> Stopper:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signal)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def _signal(self) -> None:
        self.count += 1
        self.stopped.set()
        if self.count == 1:
            # Without a controller: an idle serve ends; a run whose line is still opening
            # stops as soon as its controller exists.
            if self.controller is not None:
                print("\nstopping: no new steps start; running steps finish and are "
                      "recorded (Ctrl-C again to leave at once)", file=sys.stderr)
                self.controller.stop()
        elif self._task is not None:
            # At once; with no controller (the line still opening) main() says "interrupted".
            self.left_at_once = self.controller is not None
            self._task.cancel()


# --- run --------------------------------------------------------------------------------------


def _lot_to_run(args: argparse.Namespace, store: Any) -> Callable[[], str]:
    """Check the lot arguments now; return what creates (or names) the lot once the line
    is open, so an unreachable tool leaves no half-started lot behind."""
    from controller.cli.lots import _user
    from controller.domain import DEFAULT_PRIORITY, PRIORITY_RANGE, parse_slots, slots_for_count
    from controller.store import StoreError
    from sequences.recipes.validate import load_valid_recipe

    if args.resume:
        if args.lot or args.recipe or args.wafers is not None or args.slots:
            raise UserError(
                "--resume continues a stored lot: give no --lot, --recipe, --wafers or "
                "--slots with it",
                exit_code=EXIT_USAGE,
            )
        lot = store.get_lot(args.resume)  # a clear error when there is no such lot
        finished = all(w.outcome is not None for w in store.wafers(lot.id))
        if lot.state in ("complete", "aborted") and finished:
            # Before the line opens: nothing of it is left to run or to bring out.
            raise StoreError(f"lot {lot.id} is {lot.state}: nothing to run")
        return lambda: args.resume
    given = (("--lot", args.lot), ("--recipe", args.recipe))
    missing = [flag for flag, value in given if not value]
    if args.wafers is None and not args.slots:
        missing.append("--wafers or --slots")
    if missing:
        raise UserError(f"run needs {', '.join(missing)} (or --resume LOT)", exit_code=EXIT_USAGE)
    low, high = PRIORITY_RANGE
    if args.priority is not None and not low <= args.priority <= high:
        # Refused before the line is taken, as `lot start` refuses it: a rule, exit 1.
        raise UserError(f"--priority must be {low}-{high} ({low} most urgent), got "
                        f"{args.priority}")
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
            priority=DEFAULT_PRIORITY if args.priority is None else args.priority,
            user=_user(args),
            line_id=line_id(args),  # this line's from the start: no serve may claim it
        )
        return lot.id

    return create


async def cmd_run(args: argparse.Namespace) -> int:
    from controller.cli.lots import _user
    from controller.store import Store

    feed = feed_settings(args)  # bad settings: one line, before anything is taken
    store = Store(getattr(args, "db", None), line_id=line_id(args))  # its alarms name the line
    leases = Leases(store, f"bumpline run by {_user(args)}")
    services = contextlib.AsyncExitStack()  # the MQTT feed, for the whole run
    try:
        lot = _lot_to_run(args, store)
        line = line_id(args)
        leases.take_line(line)
        events = None
        if feed is not None:  # the fab's feed hears the controller's event stream
            events = LineEventStream(line, asyncio.get_running_loop().time)
            await start_feed(args, feed, events, services)
        async with leases.kept():
            if args.resume:
                leases.take_lot(args.resume)  # before the line opens: refused at once
                store.take_lot_for_line(args.resume, line)  # another line's: refused

            def lots() -> list[str]:
                lot_id = lot()
                leases.take_lot(lot_id)
                store.take_lot_for_line(lot_id, line)
                return [lot_id]

            recipe_name = args.recipe or store.get_lot(args.resume).recipe_name
            with Stopper() as stopper:
                status, _ = await _run_lots(args, store, lots, stopper, leases, events,
                                            recipe_name=recipe_name)
            return status
    finally:
        await services.aclose()  # the feed sends what is left (the lot's end) first
        leases.release_all()
        store.close()


async def _run_lots(
    args: argparse.Namespace, store: Any, lots: Callable[[], list[str]], stopper: Stopper,
    leases: Leases, events: LineEventStream | None = None, *, recipe_name: str | None = None,
) -> tuple[int, list[Any]]:
    """Open the line, then run the lots; (exit status, the lots' outcomes). ``recipe_name``
    (`run`): refused before its lot is made when the line's tools cannot take every step."""
    from controller.cli.lots import _user
    from controller.cli.progress import LiveProgress
    from controller.line.batch_records import BatchRecords
    from controller.line.controller import LineController
    from controller.programs import StoredRecipes
    from controller.store import StoreError

    started = time.monotonic()
    cpu_started = time.process_time()
    async with line_tools(args, BatchRecords(store).seqs()) as (tools, clock, where):
        if leases.lost is not None:  # lost while the line was opening: start nothing
            raise StoreError(leases.lost)
        if recipe_name is not None:
            _refuse_what_the_line_cannot_run(args, store, recipe_name, tools)
        lot_ids = lots()
        live = LiveProgress(store, lot_ids, plain=args.plain or not sys.stdout.isatty(),
                            clock=clock,
                            line_tools={name: tools.role_of(name) for name, _ in tools.items()})
        controller = LineController(
            store,
            tools,
            clock,
            recipes=StoredRecipes(store.engine),  # shipped, or downloaded by the host
            user=_user(args),
            progress=live.progress,
            wait_for_dispositions=args.wait_for_disposition,
            events=events,
        )
        print(f"bumpline: {', '.join(lot_ids)} on the {where}", flush=True)
        _mark_controller(store, lot_ids, "controller.start", f"run on the {where}")
        stopper.controller = controller
        leases.stop = controller.stop
        if stopper.count:  # Ctrl-C while the line was opening
            controller.stop()
        try:
            with live:
                await controller.run(lot_ids)
        except asyncio.CancelledError:
            if not stopper.left_at_once:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            stopper.controller = None
            leases.stop = None
            _mark_controller(store, lot_ids, "controller.stop", "no controller runs the lot")
    return print_lot_summaries(args, store, lot_ids, live, started=started,
                               cpu_started=cpu_started,
                               left_at_once=stopper.left_at_once)


def _refuse_what_the_line_cannot_run(args: argparse.Namespace, store: Any, recipe_name: str,
                                     tools: Any) -> None:
    """A recipe with a step no tool of the line can take ran until that step and then
    waited for good (a strip on a line without an FC-2), or stopped with no reason given (a
    barrier without a plater): refused before its lot is made, saying what is missing."""
    from controller.programs import StoredRecipes
    from sequences.kinds import steps_no_tool_takes

    recipe = StoredRecipes(store.engine)(recipe_name)
    problems = steps_no_tool_takes(recipe, [(tools.role_of(name), driver)
                                            for name, driver in tools.items()])
    if not problems:
        return
    hint = ("" if args.line else "; the in-process simulated line has one tool of each role "
            "but the plater (--platers N adds them) and an FC-1 cleaner: for a strip, run "
            "against a line with an FC-2 ('bumpline sim --cleaners fc-1,fc-2 --config-out "
            "FILE', then --line FILE)")
    raise UserError(f"this line cannot run recipe {recipe_name}: {'; '.join(problems)}{hint}",
                    exit_code=EXIT_USAGE)


def _mark_controller(store: Any, lot_ids: list[str], action: str, detail: str) -> None:
    """Record that a controller starts or stops running these lots (``lot list`` says
    whether a running lot has one)."""
    for lot_id in lot_ids:
        store.audit("controller", action, detail, lot_id=lot_id)


def line_tool_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The line's tools by name (its file's, or the in-process line's: one of each role,
    ``--platers`` platers): the screen lists every one before it has reported."""
    from controller.cli.claims import line_tool_configs

    return tuple(tool.name for tool in line_tool_configs(args))


async def _serve_web(args: argparse.Namespace, store: Any, events: LineEventStream,
                     services: contextlib.AsyncExitStack) -> None:
    from controller.cli.claims import line_drivers
    from controller.web.app import WebContext, web_server

    context = WebContext(store, events, Path(args.report_dir), line_tools=line_tool_names(args),
                         line_drivers=line_drivers(args))
    url = await services.enter_async_context(web_server(context, args.web))
    print(f"web: the operator screen at {url}", flush=True)


async def cmd_serve(args: argparse.Namespace) -> int:
    """Continue unfinished lots, then take queued ones, until stopped (or, with --once,
    until none is left). Held wafers wait for their disposition; with --once a lot that
    stops on them is left for a person, and serve goes on with the others (exit 3)."""
    from controller.cli.lots import _user
    from controller.gem.service import gem_service
    from controller.store import Store

    args.wait_for_disposition = not args.once
    feed = feed_settings(args)  # bad settings: one line, before anything is taken
    store = Store(getattr(args, "db", None), line_id=line_id(args))  # its alarms name the line
    leases = Leases(store, f"bumpline serve by {_user(args)}")
    services = contextlib.AsyncExitStack()  # --gem: the factory host link, for the whole run
    try:
        leases.take_line(line_id(args))
        await services.enter_async_context(leases.kept())
        # One stream for GEM, the screen and the feed, the controller publishes into it;
        # its events name the line as the leases and the feed's topics do (its id).
        events = None
        if args.gem or args.web or feed is not None:
            events = LineEventStream(line_id(args), asyncio.get_running_loop().time)
        await services.enter_async_context(gem_service(args, store, events))
        if events is not None and args.web:
            await _serve_web(args, store, events, services)
        if events is not None and feed is not None:
            await start_feed(args, feed, events, services)
        return await _serve(args, store, leases, events)
    finally:
        await services.aclose()
        leases.release_all()
        store.close()


async def _serve(args: argparse.Namespace, store: Any, leases: Leases,
                 events: LineEventStream | None) -> int:
    from controller.cli.claims import LotClaims, line_drivers
    from controller.cli.lots import _user
    from controller.programs import StoredRecipes
    from controller.store import LockHeldError, StoreError

    left: set[str] = set()  # --once: lots that stopped for a person, not taken again
    elsewhere: set[str] = set()  # lots another controller runs: said once, then left alone
    claims = LotClaims(store, line_id(args), line_drivers(args), StoredRecipes(store.engine),
                       user=_user(args))
    from controller.line.modes import IdleModes

    status = 0
    idle_said = False
    modes = IdleModes(store, events)
    with Stopper() as stopper:
        while not stopper.count:
            if leases.lost is not None:
                raise StoreError(leases.lost)
            unfinished = claims.unfinished(left)
            queued = claims.claim()  # bound to this line from now on
            candidates = unfinished + ([queued] if queued and queued not in unfinished
                                       else [])
            lots = []
            for lot_id in candidates:
                try:
                    leases.take_lot(lot_id)
                    store.take_lot_for_line(lot_id, claims.line)  # a lot from before lines
                except LockHeldError as exc:
                    if lot_id not in elsewhere:
                        elsewhere.add(lot_id)
                        print(f"bumpline: leaving {exc}", file=sys.stderr, flush=True)
                    continue
                except StoreError as exc:  # bound to another line meanwhile
                    if lot_id not in elsewhere:
                        elsewhere.add(lot_id)
                        print(f"bumpline: leaving {exc}", file=sys.stderr, flush=True)
                    continue
                elsewhere.discard(lot_id)
                lots.append(lot_id)
            if not lots:
                if args.once:
                    break
                if not idle_said:
                    print("bumpline serve: no lot to run; waiting for 'bumpline lot start' "
                          "(Ctrl-C or SIGTERM stops)", flush=True)
                    idle_said = True
                modes.look()  # a tool taken out of production shows it with no lot
                with contextlib.suppress(TimeoutError):  # a person queues lots
                    await asyncio.wait_for(stopper.stopped.wait(), 1.0)
                continue
            idle_said = False
            modes.forget()  # the controller applies the modes while lots run

            def claimed(ids: list[str] = lots) -> list[str]:  # the lots claimed just now
                return ids

            try:
                run_status, outcomes = await _run_lots(args, store, claimed, stopper, leases,
                                                       events)
            finally:
                leases.release_lots()
            # What the lots left in reference cycles (their controller, scheduler, wafer
            # runs) goes now, between lots: the next run's start freezes the heap, and
            # frozen garbage is collected only after that run (one lot's worth at the peak).
            gc.collect()
            if stopper.count:
                return run_status
            if args.once:  # a lot that stopped for a person is left to them
                left.update(o.lot_id for o in outcomes if o.state != "complete")
            status = status or run_status
    if stopper.count:
        print("bumpline serve: stopped", file=sys.stderr)
    return status

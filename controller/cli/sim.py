"""``bumpline sim``: run the simulated line until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from pathlib import Path

from controller.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="start the simulated line (every tool behind its real protocol)",
        description="Serve a simulated printer, ball mounter, reflow oven and flux cleaner on "
        "ptys / TCP / Modbus (and, with --platers, barrier platers on text lines over TCP), "
        "write the line configuration that reaches them, and run until Ctrl-C or SIGTERM.",
    )
    p.add_argument(
        "--speed",
        type=positive_float,
        default=100.0,
        help="tool seconds per wall second (the line's time_scale; default 100)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="fault plan, e.g. 'printer-1:drop=0.2;oven-1:alarm=550@1200' (see docs/simulator.md)",
    )
    p.add_argument(
        "--line",
        metavar="FILE",
        help="take each tool's faults (and a plater's state_file) from this line configuration",
    )
    p.add_argument(
        "--config-out",
        metavar="FILE",
        default="sim-line.toml",
        help="where to write the line configuration (default sim-line.toml)",
    )
    p.add_argument(
        "--serial",
        choices=("pty", "tcp"),
        default="pty",
        help="serve the serial tools on ptys (default) or raw TCP (socket://)",
    )
    p.add_argument(
        "--cleaner",
        choices=("pty", "tcp"),
        default="tcp",
        help="serve the cleaner's Modbus RTU on raw TCP (default) or a pty",
    )
    for role in ("printers", "placers", "ovens"):
        p.add_argument(
            f"--{role}",
            type=int,
            default=1,
            metavar="N",
            help=f"number of simulated {role} (default 1)",
        )
    p.add_argument(
        "--cleaners",
        type=cleaner_layout,
        default=(1, ()),
        metavar="N|MODEL,...",
        help="number of simulated cleaners (FC-1s; default 1), or their models in order, "
        "e.g. 'fc-2' or 'fc-1,fc-2'",
    )
    p.add_argument(
        "--platers",
        type=int,
        default=0,
        metavar="N",
        help="number of simulated EP-25 barrier platers (default 0: only barrier recipes need one)",
    )
    p.add_argument(
        "--oven-belt-count",
        choices=("exit", "tunnel"),
        default="exit",
        help="what the ovens' WAFERS_ON_BELT counts: the wafers in the tunnel and the one "
        "waiting at the exit (default), or the tunnel only (the spec allows both)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where each plater keeps what survives a restart (its event log and numbering) as "
        "NAME.state.json (default: beside --config-out)",
    )
    p.set_defaults(handler=run_sim)


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (time scales, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < math.inf:  # nan and inf too: no clock runs at either
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def cleaner_layout(text: str) -> tuple[int, tuple[str, ...]]:
    """argparse type for --cleaners: (count, models of cleaner-1, cleaner-2, ...)."""
    from sim.stripper import CLEANER_MODELS

    if text.strip().isdigit():
        return int(text), ()
    models = tuple(m.strip().upper() for m in text.split(","))
    unknown = [m for m in models if m not in CLEANER_MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"'{text}': expected a number or cleaner models from "
            f"{', '.join(m.lower() for m in CLEANER_MODELS)}, comma-separated")
    return len(models), models


def fault_plans(spec: str, line_file: str | None) -> dict:
    """Fault plans from a line configuration's ``faults`` keys, overridden by --faults."""
    from sim.faults import parse_faults, parse_tool_faults

    plans = {}
    if line_file:
        from drivers.line_config import load_line_config

        for tool in load_line_config(line_file).tools.values():
            if tool.faults:
                plans[tool.name] = parse_tool_faults(tool.faults, tool=tool.name)
    plans.update(parse_faults(spec))
    return plans


def _check_config_out(out: Path) -> None:
    """--config-out names a file in a folder that exists: said now, in one line naming it,
    not once the whole line is up (and not as the aside file's name)."""
    if out.is_dir():
        raise UserError(f"--config-out {out}: is a folder; give a file name, e.g. "
                        f"{out / 'sim-line.toml'}", exit_code=2)
    if not out.parent.is_dir():
        raise UserError(f"--config-out {out}: no folder {out.parent}", exit_code=2)


def plater_state_files(line_file: str | None) -> dict[str, str]:
    """The ``state_file`` keys of a line configuration's platers."""
    if not line_file:
        return {}
    from drivers.line_config import load_line_config

    return {t.name: t.state_file for t in load_line_config(line_file).tools.values()
            if t.state_file}


async def run_sim(args: argparse.Namespace) -> int:
    from sim.line import SimulatedLine

    layout = {
        "printer": args.printers,
        "placer": args.placers,
        "oven": args.ovens,
        "cleaner": args.cleaners[0],
        "plater": args.platers,
    }
    if any(n < 0 or n > 8 for n in layout.values()):
        raise UserError("tool counts must be 0-8 per role", exit_code=2)
    plans = fault_plans(args.faults, args.line)
    _check_config_out(Path(args.config_out))
    state_dir = Path(args.state_dir) if args.state_dir else Path(args.config_out).parent
    state_files: dict[str, str | Path] = {f"plater-{i}": state_dir / f"plater-{i}.state.json"
                                          for i in range(1, args.platers + 1)}
    state_files.update(plater_state_files(args.line))
    if args.verbose == 0:  # a running simulator shows tool activity by default
        logging.getLogger("sim").setLevel(logging.INFO)
    line = SimulatedLine(
        speed=args.speed,
        seed=args.seed,
        faults=plans,
        layout=layout,
        serial_transport=args.serial,
        cleaner_transport=args.cleaner,
        cleaner_models=args.cleaners[1],
        state_files=state_files,
        oven_counts_exit=args.oven_belt_count == "exit",
    )
    from sim.faults import check_tools

    check_tools(plans, line.roles())  # one line, before anything is served
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from sim.plater_server import PlaterStateError

    try:
        async with line:
            out = Path(args.config_out)
            # Written aside and renamed into place, so whoever waits for the file to appear
            # never reads half of it.
            partial = out.with_name(out.name + ".partial")
            partial.write_text(line.config_text(), encoding="utf-8")  # noqa: ASYNC240 - tiny
            os.replace(partial, out)
            print(
                f"simulated line '{line.name}' at {line.speed:g}x; configuration in {out}",
                file=sys.stderr,
            )
            for tool in line.tools.values():
                where = (
                    tool.config.get("port")
                    if "host" not in tool.config
                    else f"{tool.config['host']}:{tool.config['port']}"
                )
                model = tool.config.get("model", "")
                print(
                    f"  {tool.name:<10} {tool.role:<8} {tool.config['transport']:<11} {where}"
                    + (f"  ({model})" if model else ""),
                    file=sys.stderr,
                )
            sys.stderr.flush()
            await stop.wait()
            print("stopping simulated line", file=sys.stderr)
    except PlaterStateError as exc:
        raise UserError(str(exc)) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0

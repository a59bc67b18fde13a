"""``bumpline recipe ...`` and ``bumpline sequence run``: recipes and one wafer through them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypedDict

from controller.cli.leases import Leases, line_id
from controller.cli.output import (
    add_db,
    add_json,
    console,
    is_terminal,
    print_json,
    print_table,
    wants_json,
)
from controller.cli.sim import positive_float
from controller.errors import UserError

DEFAULT_DIAGRAM_RECIPE = "rebump-hipb-snpb"


def register(sub: argparse._SubParsersAction) -> None:
    recipe = sub.add_parser("recipe", help="list, show, validate and draw recipes",
                            description="Recipes: the ordered steps a wafer goes through.")
    rsub = recipe.add_subparsers(dest="recipe_command", metavar="COMMAND",
                                 parser_class=type(recipe))
    rsub.required = True
    p = rsub.add_parser("list", help="the shipped recipes")
    add_json(p)
    p.set_defaults(handler=recipe_list)
    p = rsub.add_parser("show", help="one recipe's steps, windows and derived settings")
    p.add_argument("name", metavar="NAME", help="a shipped recipe name or a .toml file")
    add_json(p)
    p.set_defaults(handler=recipe_show)
    p = rsub.add_parser("validate", help="check recipe files against every rule",
                        description="Check recipe files (or shipped names); lists every "
                        "problem and exits non-zero when there is one.")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_json(p)
    p.set_defaults(handler=recipe_validate)
    p = rsub.add_parser("diagram", help="the wafer state machine as a Mermaid diagram")
    p.add_argument("name", nargs="?", default=DEFAULT_DIAGRAM_RECIPE, metavar="NAME",
                   help=f"recipe whose steps to draw (default {DEFAULT_DIAGRAM_RECIPE})")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(handler=recipe_diagram)

    seq = sub.add_parser("sequence", help="run one wafer through a recipe",
                         description="Run wafers through recipes on the line.")
    ssub = seq.add_subparsers(dest="sequence_command", metavar="COMMAND",
                              parser_class=type(seq))
    ssub.required = True
    p = ssub.add_parser(
        "run", help="run one wafer through a recipe",
        description="Run one wafer through a recipe (or a range of its steps): each tool is "
        "prepared, each step's interlocks checked, the step run and its results judged. "
        "Without --line an in-process simulated line is started.")
    p.add_argument("recipe", metavar="RECIPE", help="a shipped recipe name or a .toml file")
    p.add_argument("--wafer", required=True, metavar="ID", help="wafer id (1-16 characters)")
    p.add_argument("--line", metavar="FILE", help="line configuration of the tools to use "
                   "(refused while a controller holds that line)")
    add_db(p, " holding the line leases")
    p.add_argument("--steps", metavar="N-M", help="run only these steps, e.g. 2-4")
    p.add_argument("--speed", type=positive_float, default=400.0,
                   help="simulated line: tool seconds per wall second (default 400)")
    p.add_argument("--seed", type=int, default=0, help="simulated line: random seed")
    p.set_defaults(handler=sequence_run)


def _console():
    return console()


def _e(text: object) -> str:
    """Text shown through rich, with its square brackets kept literal."""
    from rich.markup import escape

    return escape(str(text))


# --- recipe ----------------------------------------------------------------------------------


class _Listed(TypedDict):
    """A shipped recipe as ``recipe list`` shows it (one JSON object of ``--json``)."""

    name: str
    version: int | None  # None: the file does not load
    steps: list[str]
    hash: str | None
    valid: bool
    problems: list[str]
    description: str


def recipe_list(args: argparse.Namespace) -> int:
    from sequences.errors import RecipeError
    from sequences.recipes.recipe import load_recipe, shipped_recipe_paths
    from sequences.recipes.validate import validate

    entries: list[_Listed] = []
    for name, path in shipped_recipe_paths().items():
        try:
            r = load_recipe(path)
            problems = [str(p) for p in validate(r)]
        except RecipeError as exc:
            entries.append({"name": name, "version": None, "steps": [], "hash": None,
                            "valid": False, "problems": [str(exc)], "description": ""})
            continue
        entries.append({"name": name, "version": r.version, "steps": [s.kind for s in r.steps],
                        "hash": r.hash, "valid": not problems, "problems": problems,
                        "description": r.description})
    if wants_json(args):
        return print_json(entries)
    rows = []
    for e in entries:
        if e["hash"] is None:
            valid = "no: " + e["problems"][0].splitlines()[0]
        else:
            valid = "yes" if e["valid"] else f"{len(e['problems'])} problems"
        rows.append([e["name"], e["version"] or "", " ".join(e["steps"]),
                     (e["hash"] or "")[:12], valid, e["description"]])
    headers = ["recipe", "v", "steps", "hash", "valid", "description"]
    if not is_terminal():
        print_table(headers, rows)  # a pipe or a file: one line per recipe, never cut
        return 0
    from rich.table import Table

    table = Table(box=None)
    for h in headers:
        # Names and hashes are never cut; the description wraps.
        table.add_column(h, no_wrap=h in ("recipe", "hash"), overflow="fold")
    for row in rows:
        table.add_row(*(_e(c) for c in row))
    _console().print(table)
    return 0


def recipe_show(args: argparse.Namespace) -> int:
    from sequences.recipes.alloys import default_alloys
    from sequences.recipes.recipe import find_recipe
    from sequences.recipes.validate import validate

    r = find_recipe(args.name)
    alloys = default_alloys()
    used = _named(r.steps, "alloy")
    problems = [str(p) for p in validate(r)]
    if wants_json(args):
        print_json(recipe_json(r, [alloys[a] for a in used], problems))
        return 1 if problems else 0
    con = _console()
    con.print(f"[bold]{_e(r.name)}[/] v{r.version}  sha256 {r.hash}")
    if r.description:
        con.print(_e(r.description))
    rows = []
    for number, step in enumerate(r.steps, start=1):
        settings, windows = describe_step(step)
        rows.append([str(number), step.kind, settings, windows])
    headers = ["#", "kind", "settings", "accepted when"]
    if is_terminal():
        from rich.table import Table

        table = Table(*headers, box=None)
        for row in rows:
            table.add_row(*(_e(c) for c in row))
        con.print(table)
    else:
        print_table(headers, rows)
    for alloy_id in used:
        a = alloys[alloy_id]
        con.print(_e(f"  {a.id}: {a.composition_text()}; solidus {a.figure('solidus_c')}, "
                     f"liquidus {a.figure('liquidus_c')}") + f"  [dim]({_e(a.source)})[/]")
    for mask_id in _named(r.steps, "mask"):
        m = alloys.masks[mask_id]
        con.print(_e(f"  {m.id} mask: reflow peak <= {m.figure('max_reflow_peak_c')}; stripped "
                     f"at {m.figure('strip_temp_c')} for {m.figure('strip_time_s')}")
                  + f"  [dim]({_e(m.source)})[/]")
    for p in problems:
        con.print(f"[red]{_e(p)}[/]")
    return 1 if problems else 0


def _named(steps: Iterable[object], what: str) -> list[str]:
    """The ids the steps name as ``what`` (their alloy, their mask), each once, sorted."""
    return sorted({name for s in steps if (name := getattr(s, what, None)) is not None})


def recipe_json(r: Any, alloys: list[Any], problems: list[str]) -> dict[str, Any]:
    """``recipe show --json``: the recipe as its file says it, what bumpline derives from it
    (profile id, TAL threshold, the one-line summaries), the alloys it uses, its problems."""
    steps = []
    for number, step in enumerate(r.steps, start=1):
        settings, accepted = describe_step(step)
        steps.append({"number": number, "kind": step.kind, **asdict(step),
                      "settings": settings, "accepted_when": accepted})
    return {
        "name": r.name,
        "version": r.version,
        "hash": r.hash,
        "description": r.description,
        "steps": steps,
        "alloys": [{"id": a.id, "composition": a.composition_text(), "solidus_c": a.solidus_c,
                    "liquidus_c": a.liquidus_c, "source": a.source} for a in alloys],
        "valid": not problems,
        "problems": problems,
    }


def describe_step(step: Any) -> tuple[str, str]:
    """(settings, acceptance) of a step, in one line each, for people."""
    k = step.kind
    if k == "print":
        aperture = ""
        if step.aperture_um is not None:  # the stencil's geometry, when the recipe gives it
            slot = (f" x {step.aperture_length_um}" if step.aperture_length_um is not None
                    else "")
            aperture = f" ({step.aperture_um}{slot} µm apertures, {step.stencil_thickness_um} µm)"
        return (f"{step.paste_alloy} on {step.stencil_id}{aperture}, {step.squeegee_kgf:g} kgf, "
                f"{step.speed_mm_s:g} mm/s, sep {step.separation_mm_s:g} mm/s, "
                f"{step.passes} pass(es), wipe every {step.wipe_every}",
                f"mean vol {_w(step.vol_mean_pct)} %, min vol >= {step.vol_min_pct_min:g} %, "
                f"bridges <= {step.max_bridges}, insufficient <= {step.max_insufficient}")
    if k == "place":
        into = f", into {step.mask} mask" if step.mask else ""
        if step.post_diameter_um is not None:
            into += f", on {step.post_diameter_um} µm Cu posts at {step.post_pitch_um} µm"
        return (f"{step.ball_diameter_um} µm {step.ball_alloy}, flux {step.flux_um} µm, "
                f"pitch {step.pitch_um} µm, {step.sites} sites{into}",
                f"repair if <= {step.max_defects} defects; <= "
                f"{step.max_defects_after_repair} left")
    if k == "reflow":
        return (f"zones {'/'.join(f'{z:g}' for z in step.zones_c)} °C, "
                f"{step.conveyor_mm_min} mm/min, O2 <= {step.o2_limit_ppm} ppm, "
                f"profile {step.profile_id}, TAL above {step.tal_threshold_c:g} °C",
                f"peak {_w(step.peak_c)} °C, TAL {_w(step.tal_s)} s, ramp <= "
                f"{step.max_ramp_c_s:g} °C/s, cool <= {step.max_cool_c_s:g} °C/s")
    if k == "strip":
        return (f"strip {step.mask} {step.strip_temp_c:g} °C {step.strip_time_s} s, rinse "
                f"{step.rinse_time_s} s, dry {step.dry_time_s} s, {step.spray_pressure_bar:g} bar",
                f"mask left <= {step.max_mask_residue_pct:g} %, ionic <= "
                f"{step.max_ionic_ug_cm2:g} µg/cm²")
    if k == "barrier":
        batch = f", batches of {step.batch_size}" if step.batch_size else ""
        return (f"Ni {step.ni_um:g} µm at {step.ni_temp_c:g} °C, Au {step.au_um:g} µm at "
                f"{step.au_temp_c:g} °C{batch}",
                f"Ni {_w(step.ni_measured_um)} µm, Au {_w(step.au_measured_um)} µm per wafer")
    return (f"wash {step.wash_temp_c:g} °C {step.wash_time_s} s, rinse {step.rinse_time_s} s, "
            f"dry {step.dry_time_s} s, {step.spray_pressure_bar:g} bar",
            f"ionic <= {step.max_ionic_ug_cm2:g} µg/cm²")


def _w(window: tuple[float, float]) -> str:
    return f"{window[0]:g}-{window[1]:g}"


def recipe_validate(args: argparse.Namespace) -> int:
    from sequences.errors import RecipeError
    from sequences.recipes.recipe import shipped_recipe_paths
    from sequences.recipes.validate import validate_file

    shipped = shipped_recipe_paths()
    failed = 0
    checked = []
    for name in args.files:
        path = shipped.get(name, Path(name))
        try:
            problems = [str(p) for p in validate_file(path)]
        except RecipeError as exc:
            problems = [str(exc)]
        checked.append({"file": str(path), "valid": not problems,
                        "problems": problems})
        if wants_json(args):
            failed += bool(problems)
        elif problems:
            failed += 1
            print(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{path}: ok")
    if wants_json(args):
        print_json(checked)
    if failed:
        print(f"bumpline: {failed} of {len(args.files)} recipe file(s) refused", file=sys.stderr)
        return 1
    return 0


def recipe_diagram(args: argparse.Namespace) -> int:
    from sequences.recipes.validate import load_valid_recipe
    from sequences.wafer.machine import mermaid_diagram

    r = load_valid_recipe(args.name)
    text = mermaid_diagram([s.kind for s in r.steps], r.name)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{args.out}: cannot write: {exc.strerror}") from None
        print(f"wafer state machine of {r.name} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --- sequence run ------------------------------------------------------------------------------


class ExchangeLog:
    """Counts each tool's requests so a step's traffic prints as one line per tool."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)

    def trace(self, tool: str, direction: str, data: Any) -> None:
        if direction != ">":
            return
        if isinstance(data, bytes | bytearray):  # HostLink: $SEQ,CMD,...*CK
            fields = bytes(data).split(b"*")[0].split(b",")
            key = fields[1].decode("ascii", "replace") if len(fields) > 1 else "?"
        else:  # Modbus: "op span unit N (what)"
            text = str(data)
            key = text[text.find("(") + 1:text.rfind(")")] if "(" in text else text
        self.counts[tool][key] += 1

    def take(self) -> list[str]:
        lines = []
        for tool, counter in sorted(self.counts.items()):
            parts = [f"{k}x{n}" if n > 1 else k for k, n in counter.most_common()]
            lines.append(f"{tool}: {sum(counter.values())} requests ({', '.join(parts)})")
        self.counts.clear()
        return lines


async def sequence_run(args: argparse.Namespace) -> int:
    from drivers.clock import ScaledClock
    from drivers.line_config import load_line_config, parse_line_config
    from drivers.tools import open_line
    from sequences.recipes.validate import load_valid_recipe
    from sequences.wafer.runner import parse_step_range

    recipe = load_valid_recipe(args.recipe)
    steps = parse_step_range(args.steps, len(recipe.steps))
    con = _console()
    exchanges = ExchangeLog()
    con.print(f"[bold]{_e(recipe.name)}[/] v{recipe.version} ({recipe.hash[:12]}), wafer "
              f"[bold]{_e(args.wafer)}[/], steps {steps[0]}-{steps[1]}")
    if args.line:
        config = load_line_config(args.line)
        clock = ScaledClock(config.time_scale)
        async with _line_lease(args), open_line(config, clock, trace=exchanges.trace) as tools:
            run = await _run(recipe, args.wafer, tools, clock, steps, con, exchanges)
    else:
        from sim.line import SimulatedLine

        clock = ScaledClock(args.speed)
        async with SimulatedLine(speed=args.speed, seed=args.seed, clock=clock) as line:
            config = parse_line_config(line.config_text(), source="simulated line")
            con.print(f"[dim]simulated line at {args.speed:g}x, seed {args.seed}[/]")
            async with open_line(config, clock, trace=exchanges.trace) as tools:
                run = await _run(recipe, args.wafer, tools, clock, steps, con, exchanges)
    if run.state != "complete":
        last = run.events[-1] if run.events else None
        why = f": {last.why}" if last and last.why else ""
        raise UserError(f"wafer {args.wafer} is {run.state}{why}")
    con.print(f"[green]wafer {_e(args.wafer)} complete[/]")
    return 0


@contextlib.asynccontextmanager
async def _line_lease(args: argparse.Namespace) -> AsyncIterator[None]:
    """The line's lease, as ``run`` and ``serve`` take it (docs/database.md): a line a
    controller holds is refused with the holder named, and no controller starts on the line
    while this wafer runs on it. A lease lost meanwhile stops the wafer's run."""
    from controller.cli.lots import _user
    from controller.store import LockHeldError, Store

    store = Store(getattr(args, "db", None))
    leases = Leases(store, f"bumpline sequence run by {_user(args)}")
    try:
        try:
            leases.take_line(line_id(args))
        except LockHeldError as exc:
            raise UserError(f"{exc}; sequence run drives no line a controller holds") from None
        task = asyncio.current_task()
        leases.stop = task.cancel if task is not None else None
        async with leases.kept():
            yield
    finally:
        leases.release_all()
        store.close()


async def _run(recipe, wafer_id, tools, clock, steps, con, exchanges) -> Any:
    from sequences.wafer.journal import MemoryJournal
    from sequences.wafer.runner import run_wafer

    escape = _e

    def on_event(e) -> None:
        colour = {"step_failed": "red", "hold": "yellow", "abort": "red",
                  "judged_ok": "green"}.get(e.trigger, "")
        step = f"step {e.step} ({e.step_kind})" if e.step else ""
        text = f"{e.tool_time:8.0f} s  {step:<16} {e.from_state} -> {e.to_state} [{e.trigger}]"
        text = escape(text)
        con.print(f"[{colour}]{text}[/]" if colour else text, end="")
        con.print(f"  {escape(e.why)}" if e.why else "")
        if e.trigger in ("step_done",) and e.measurements:
            shown = ", ".join(f"{k} {v}" for k, v in e.measurements.items())
            con.print(f"{'':12}measured: {escape(shown)}")
        if e.trigger in ("judged_ok", "step_failed", "hold"):
            for line in exchanges.take():
                con.print(f"[dim]{'':12}{escape(line)}[/]")
            if e.trigger == "judged_ok" and e.step:
                _, windows = describe_step(recipe.step(e.step))
                con.print(f"[dim]{'':12}windows: {escape(windows)}[/]")

    def on_prepare(text: str) -> None:
        con.print(f"[cyan]{clock.now():8.0f} s  prepare {escape(text)}[/]")

    return await run_wafer(recipe, wafer_id, tools, clock, steps=steps,
                           journal=MemoryJournal(listeners=[on_event]), on_prepare=on_prepare)



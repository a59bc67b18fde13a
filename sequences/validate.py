"""The recipe validator: refuses recipes that would damage wafers.

Each rule comes from /work/shared/specs/process-data.md (see docs/recipes.md for
the reasons and sources). ``validate`` returns every problem in a recipe; it
never stops at the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sequences.alloys import Alloy, AlloyLibrary, default_alloys
from sequences.errors import Problem, RecipeInvalid
from sequences.recipe import (
    DEPOSIT_KINDS,
    CleanStep,
    Recipe,
    ReflowStep,
    Step,
    find_recipe,
    parse_recipe_problems,
    read_recipe_text,
)


@dataclass(frozen=True)
class ValidationOptions:
    # A reflow's peak window minimum must be at least this far above the liquidus
    # of everything it melts ("a margin of about 20 °C is usual").
    full_melt_margin_c: float = 20.0
    # A later reflow's peak window maximum must stay at least this far below the
    # solidus of every bump already reflowed (20-30 °C; assumed, not a standard).
    rebump_margin_c: float = 20.0
    # J-STD-020 package limits.
    max_ramp_c_s: float = 3.0
    max_cool_c_s: float = 6.0


DEFAULT_OPTIONS = ValidationOptions()


@dataclass(frozen=True)
class Bump:
    """Solder already reflowed on the wafer: which alloy, deposited and reflowed where."""

    alloy: Alloy
    deposit_step: int  # 1-based
    reflow_step: int  # 1-based


def validate(
    recipe: Recipe,
    *,
    alloys: AlloyLibrary | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
) -> list[Problem]:
    """Every rule broken by this (well-formed) recipe."""
    alloys = alloys or default_alloys()
    problems: list[Problem] = []
    src = recipe.source

    def add(number: int | None, step: Step | None, rule: str, message: str) -> None:
        problems.append(Problem(src, number, step.kind if step else None, rule, message))

    bumps: list[Bump] = []
    pending: list[tuple[int, Alloy]] = []  # deposited since the last reflow: (step, alloy)
    dirty_since: int | None = None  # step number of a reflow not yet followed by a clean

    for number, step in enumerate(recipe.steps, start=1):
        if step.kind in DEPOSIT_KINDS:
            alloy = alloys[step.alloy]  # type: ignore[union-attr]
            if dirty_since is not None:
                add(number, step, "clean after reflow",
                    f"{step.kind} of {alloy.id} onto a wafer not cleaned since the reflow at "
                    f"step {dirty_since} (flux residue under the new deposit)")
            pending.append((number, alloy))
        elif isinstance(step, ReflowStep):
            _check_reflow(number, step, pending, bumps, options, add)
            bumps.extend(Bump(a, d, number) for d, a in pending)
            pending = []
            dirty_since = number
        elif isinstance(step, CleanStep):
            if pending:
                what = ", ".join(f"{a.id} from step {d}" for d, a in pending)
                add(number, step, "clean before reflow",
                    f"the wash would strip the unreflowed {what}")
            dirty_since = None

    last = len(recipe.steps)
    if pending:
        what = ", ".join(f"{a.id} from step {d}" for d, a in pending)
        add(None, None, "ends clean", f"the recipe ends with {what} never reflowed")
    elif dirty_since is not None:
        add(None, None, "ends clean",
            f"the recipe ends after the reflow at step {dirty_since} without a clean "
            f"(last step {last} is {recipe.steps[-1].kind})")
    return problems


def _check_reflow(number, step: ReflowStep, pending, bumps, options, add) -> None:
    low, high = step.peak_c
    if not pending:
        add(number, step, "reflow without deposit",
            "nothing was deposited since the previous reflow (or the start)")
    for deposit, alloy in pending:
        needed = alloy.liquidus_c + options.full_melt_margin_c
        if low < needed:
            add(number, step, "full melt",
                f"peak window starts at {low:g} °C, but the {alloy.id} from step {deposit} "
                f"is fully molten only at {alloy.figure('liquidus_c')}; with the "
                f"{options.full_melt_margin_c:g} °C margin the window must start at "
                f">= {needed:g} °C")
    for bump in bumps:
        ceiling = bump.alloy.solidus_c - options.rebump_margin_c
        if high > ceiling:
            add(number, step, "rebump rule",
                f"peak window reaches {high:g} °C while the {bump.alloy.id} bump from step "
                f"{bump.reflow_step} begins to melt at {bump.alloy.figure('solidus_c')}, "
                f"within the {options.rebump_margin_c:g} °C margin (keep the peak <= "
                f"{ceiling:g} °C)")
    melting = [a for _, a in pending]
    lead = [(f"bump from step {b.reflow_step}", b.alloy) for b in bumps if b.alloy.contains_lead]
    lead += [(f"deposit from step {d}", a) for d, a in pending if a.contains_lead]
    for alloy in melting:
        if not alloy.contains_bismuth:
            continue
        for where, lead_alloy in lead:
            if lead_alloy is alloy:
                continue
            add(number, step, "no Sn-Bi over lead",
                f"reflowing bismuth-bearing {alloy.id} onto the lead-bearing {lead_alloy.id} "
                f"{where}: Sn-Bi-Pb forms a ternary eutectic near 95 °C")
    if step.max_ramp_c_s > options.max_ramp_c_s:
        add(number, step, "ramp limit",
            f"max_ramp_c_s = {step.max_ramp_c_s:g} °C/s exceeds the {options.max_ramp_c_s:g} "
            "°C/s heating limit (J-STD-020)")
    if step.max_cool_c_s > options.max_cool_c_s:
        add(number, step, "cooling limit",
            f"max_cool_c_s = {step.max_cool_c_s:g} °C/s exceeds the {options.max_cool_c_s:g} "
            "°C/s cooling limit (J-STD-020)")
    if low >= step.hottest_zone_c:
        add(number, step, "unreachable peak",
            f"peak window starts at {low:g} °C but the hottest zone is set to "
            f"{step.hottest_zone_c:g} °C (the wafer never gets hotter than the air)")


def check(
    recipe: Recipe,
    *,
    alloys: AlloyLibrary | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
) -> Recipe:
    """The recipe itself if it is valid; RecipeInvalid with every problem if not."""
    problems = validate(recipe, alloys=alloys, options=options)
    if problems:
        raise RecipeInvalid(recipe.source, problems)
    return recipe


def validate_file(
    path: str | Path,
    *,
    alloys: AlloyLibrary | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
) -> list[Problem]:
    """Every problem in a recipe file: malformations first; the rules if it is well formed."""
    path = Path(path)
    recipe, problems = parse_recipe_problems(read_recipe_text(path), source=path.name,
                                             alloys=alloys)
    if recipe is not None:
        problems += validate(recipe, alloys=alloys, options=options)
    return problems


def load_valid_recipe(
    name_or_path: str,
    *,
    alloys: AlloyLibrary | None = None,
    options: ValidationOptions = DEFAULT_OPTIONS,
) -> Recipe:
    """A shipped recipe by name or a file by path, refused unless it passes every rule."""
    return check(find_recipe(name_or_path, alloys=alloys), alloys=alloys, options=options)

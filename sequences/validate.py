"""The recipe validator: refuses recipes that would damage wafers.

Each rule comes from /work/shared/specs/process-data.md (see docs/recipes.md for
the reasons and sources); the barrier rules from ../shared/specs/barrier-plater.md.
``validate`` returns every problem in a recipe; it never stops at the first.

The barrier: an intact Ni/Au barrier (>= 2 µm nickel) between a bump and the
solder reflowed onto it means the new solder wets the gold and nickel, not the
bump (seed 003, claim 10). Across one, "no Sn-Bi over lead" and "no lead over
lead-free tin" do not apply (an *assumption*, and each message says so); the
rebump rule (do not remelt the first bump) applies in full, barrier or not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sequences.alloys import Alloy, AlloyLibrary, default_alloys
from sequences.errors import Problem, RecipeInvalid
from sequences.recipe import (
    DEPOSIT_KINDS,
    BarrierStep,
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
    # Barrier: below about 2 µm, tin consumes the nickel through repeated reflows
    # (electroless Ni / immersion Au practice; assumed as the minimum).
    min_barrier_ni_um: float = 2.0
    # Immersion gold above this risks AuSn4 embrittlement in the second bump's joint.
    max_barrier_au_um: float = 0.15
    # A lead-free alloy with at least this much tin is "tin-rich" for the lead rule.
    tin_rich_pct: float = 90.0


# Where the barrier's relaxations come from, for the messages that use them.
BARRIER_ASSUMPTION = (
    "an intact Ni/Au barrier of >= 2 µm nickel between them would allow it: an assumption "
    "of barrier-plater.md, not a standard"
)


DEFAULT_OPTIONS = ValidationOptions()


@dataclass(frozen=True)
class Bump:
    """Solder already reflowed on the wafer: which alloy, deposited and reflowed where."""

    alloy: Alloy
    deposit_step: int  # 1-based
    reflow_step: int  # 1-based
    barrier_step: int | None = None  # 1-based: an intact barrier plated over it


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
    uncovered: int | None = None  # a barrier no deposit has covered yet

    for number, step in enumerate(recipe.steps, start=1):
        if step.kind in DEPOSIT_KINDS:
            alloy = alloys[step.alloy]  # type: ignore[union-attr]
            if dirty_since is not None:
                add(number, step, "clean after reflow",
                    f"{step.kind} of {alloy.id} onto a wafer not cleaned since the reflow at "
                    f"step {dirty_since} (flux residue under the new deposit)")
            pending.append((number, alloy))
            uncovered = None
        elif isinstance(step, BarrierStep):
            if uncovered is not None:
                _uncovered_barrier(uncovered, f"step {number} plates another", add, recipe)
            intact = _check_barrier(number, step, pending, bumps, dirty_since, options, add)
            if intact:
                bumps = [b if b.barrier_step else replace(b, barrier_step=number) for b in bumps]
            uncovered = number
            dirty_since = None  # the plater ends with a DI rinse and dry
        elif isinstance(step, ReflowStep):
            if uncovered is not None:
                _uncovered_barrier(uncovered, f"the reflow at step {number} comes first",
                                   add, recipe)
                uncovered = None
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
    if uncovered is not None:
        _uncovered_barrier(uncovered, "the recipe ends", add, recipe)
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
    # bumps under an intact barrier do not meet the new solder (assumed; see the docstring)
    bare = [b for b in bumps if b.barrier_step is None]
    lead = [(f"bump from step {b.reflow_step}", b.alloy) for b in bare if b.alloy.contains_lead]
    lead += [(f"deposit from step {d}", a) for d, a in pending if a.contains_lead]
    for alloy in melting:
        if not alloy.contains_bismuth:
            continue
        for where, lead_alloy in lead:
            if lead_alloy is alloy:
                continue
            add(number, step, "no Sn-Bi over lead",
                f"reflowing bismuth-bearing {alloy.id} onto the lead-bearing {lead_alloy.id} "
                f"{where}: Sn-Bi-Pb forms a ternary eutectic near 95 °C"
                + (f" ({BARRIER_ASSUMPTION})" if where.startswith("bump") else ""))
    tin = [b for b in bare if _tin_rich_lead_free(b.alloy, options)]
    for alloy in melting:
        if not alloy.contains_lead:
            continue
        for bump in tin:
            add(number, step, "no lead over lead-free tin",
                f"reflowing lead-bearing {alloy.id} onto the lead-free {bump.alloy.id} bump from "
                f"step {bump.reflow_step}: lead dissolving into the tin forms Sn-Pb eutectic, "
                f"which melts at 183 °C where they meet, so the first bump remelts there "
                f"(assumed rule, seed 003 claim 11; {BARRIER_ASSUMPTION})")
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


def _tin_rich_lead_free(alloy: Alloy, options: ValidationOptions) -> bool:
    tin = sum(pct for element, pct in alloy.composition if element == "Sn")
    return not alloy.contains_lead and tin >= options.tin_rich_pct


def _check_barrier(number, step: BarrierStep, pending, bumps, dirty_since, options,
                   add) -> bool:
    """The barrier's own rules; True if it is an intact barrier over the bumps so far."""
    placed = True
    if pending:
        what = ", ".join(f"{a.id} from step {d}" for d, a in pending)
        add(number, step, "barrier after reflow",
            f"the barrier plates reflowed bumps, but the {what} is not reflowed "
            "(the plater's acid preclean would strip it)")
        placed = False
    elif not bumps:
        add(number, step, "barrier after reflow",
            "no bump has been deposited and reflowed yet: the barrier goes on the first bump, "
            "after its reflow and clean")
        placed = False
    if dirty_since is not None:
        add(number, step, "clean before barrier",
            f"the wafer is not cleaned since the reflow at step {dirty_since} (flux residue "
            "under the nickel)")
        placed = False
    minimum = options.min_barrier_ni_um
    thin = [f"{what} = {value:g} µm" for what, value in (
        ("ni_um", step.ni_um), ("lowest accepted ni_measured_um", step.ni_measured_um[0]))
        if value < minimum]
    if thin:
        add(number, step, "barrier nickel",
            f"{' and '.join(thin)}: below {minimum:g} µm tin consumes the nickel through "
            f"repeated reflows (assumed minimum, barrier-plater.md)")
        placed = False
    if step.au_measured_um[1] > options.max_barrier_au_um:
        add(number, step, "barrier gold",
            f"au_measured_um accepts up to {step.au_measured_um[1]:g} µm: keep immersion gold "
            f"<= {options.max_barrier_au_um:g} µm (AuSn4 embrittlement in the second bump)")
    return placed


def _uncovered_barrier(barrier: int, why: str, add, recipe: Recipe) -> None:
    add(barrier, recipe.steps[barrier - 1], "barrier before deposit",
        f"nothing is deposited on the barrier before {why}: the second bump must cover it "
        "(seed 003, claim 10)")


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

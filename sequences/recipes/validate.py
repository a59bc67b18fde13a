"""The recipe validator: refuses recipes that would damage wafers.

Each rule comes from ../shared/specs/process-data.md, the mask-strip rules from
../shared/specs/flux-cleaner-fc2.md, the barrier rules from
../shared/specs/barrier-plater.md (see docs/recipes.md for the reasons and
sources). ``validate`` returns every problem in a recipe; it never stops at the
first.

The barrier: an intact Ni/Au barrier (>= 2 µm nickel) between a bump and the
solder reflowed onto it means the new solder wets the gold and nickel, not the
bump (seed 003, claim 10). Across one, "no Sn-Bi over lead" and "no lead over
lead-free tin" do not apply (an *assumption*, and each message says so); the
rebump rule (do not remelt the first bump) applies in full, barrier or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sequences.errors import Problem, RecipeInvalid
from sequences.recipes.alloys import Alloy, AlloyLibrary, Mask, default_alloys
from sequences.recipes.recipe import (
    DEPOSIT_KINDS,
    BarrierStep,
    CleanStep,
    PlaceStep,
    PrintStep,
    Recipe,
    ReflowStep,
    Step,
    StripStep,
    find_recipe,
    parse_recipe_problems,
    read_recipe_text,
)


@dataclass(frozen=True)
class ValidationOptions:
    # A reflow's peak must exceed the liquidus of everything it melts (the window's minimum,
    # the worst peak the judgment accepts); "a margin of about 20 °C is usual": the window
    # must reach at least this far above it (its maximum: the spec's own typical peaks,
    # SAC305 235-245 °C over a 220 °C liquidus, start less than 20 °C above it).
    full_melt_margin_c: float = 20.0
    # A later reflow's peak window maximum must stay at least this far below the
    # solidus of every bump already reflowed (20-30 °C; assumed, not a standard).
    rebump_margin_c: float = 20.0
    # J-STD-020 package limits.
    max_ramp_c_s: float = 3.0
    max_cool_c_s: float = 6.0
    # Production nitrogen reflow runs at 100-500 ppm O2 (process-data.md, "Atmosphere"):
    # an oven limit above the band lets a wafer reflow in air the line does not qualify.
    max_o2_ppm: float = 500.0
    # Paste releases from the stencil at area ratio >= 0.66 and aspect ratio >= 1.5
    # (IPC-7525, process-data.md "Stencil printing").
    min_area_ratio: float = 0.66
    min_aspect_ratio: float = 1.5
    # A ball on a Cu post at most this many post diameters wide (assumed: a wider ball
    # is not held by the post top and rolls off onto the resin).
    max_ball_per_post: float = 2.0
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
        elif isinstance(step, StripStep):
            dirty_since = None  # the stripper removes the flux too (flux-cleaner-fc2.md)

    _check_masks(recipe, alloys, add)
    _check_posts(recipe, options, add)
    _check_stencils(recipe, options, add)
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
        if low <= alloy.liquidus_c:
            add(number, step, "full melt",
                f"peak window starts at {low:g} °C, but the {alloy.id} from step {deposit} "
                f"is fully molten only above {alloy.figure('liquidus_c')}: the window must "
                f"start above it")
        elif high < needed:
            add(number, step, "full melt",
                f"peak window ends at {high:g} °C, but the {alloy.id} from step {deposit} "
                f"is fully molten only at {alloy.figure('liquidus_c')}; with the usual "
                f"{options.full_melt_margin_c:g} °C margin the window must reach "
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
    if step.o2_limit_ppm > options.max_o2_ppm:
        add(number, step, "atmosphere",
            f"o2_limit_ppm = {step.o2_limit_ppm} is above the {options.max_o2_ppm:g} ppm top of "
            "production nitrogen reflow (100-500 ppm O2; wafer bump reflow runs lower)")
    if low >= step.hottest_zone_c:
        add(number, step, "unreachable peak",
            f"peak window starts at {low:g} °C but the hottest zone is set to "
            f"{step.hottest_zone_c:g} °C (the wafer never gets hotter than the air)")


Add = Callable[[int | None, Step | None, str, str], None]


def _check_masks(recipe: Recipe, alloys: AlloyLibrary, add: Add) -> None:
    """Balls placed into a polymer mask (seed 004): the reflow that bonds them stays under
    the mask's limit, and a strip of that mask follows it before anything else is
    deposited (flux-cleaner-fc2.md, "Process figures for the mask strip")."""
    on: tuple[int, Mask] | None = None  # the mask on the wafer and the step that placed into it
    bonded_at: int | None = None  # the reflow that bonded its balls
    for number, step in enumerate(recipe.steps, start=1):
        if step.kind in DEPOSIT_KINDS:
            if on is not None and bonded_at is not None:
                add(number, step, "strip the mask",
                    f"{step.kind} onto a wafer still carrying the {on[1].id} mask from step "
                    f"{on[0]}: strip it after the reflow at step {bonded_at}, before anything "
                    "else is deposited")
            if isinstance(step, PlaceStep) and step.mask is not None:
                if on is not None and bonded_at is None and on[1].id != step.mask:
                    add(number, step, "strip the mask",
                        f"balls into a {step.mask} mask while the {on[1].id} mask from step "
                        f"{on[0]} is on the wafer (one mask at a time)")
                on, bonded_at = (number, alloys.masks[step.mask]), None
        elif isinstance(step, ReflowStep) and on is not None:
            mask, high = on[1], step.peak_c[1]
            if high > mask.max_reflow_peak_c:
                add(number, step, "mask limit",
                    f"peak window reaches {high:g} °C with the {mask.id} mask from step {on[0]} "
                    f"on the wafer; above {mask.figure('max_reflow_peak_c')} it hardens and no "
                    f"longer strips (keep the peak <= {mask.max_reflow_peak_c:g} °C)")
            bonded_at = bonded_at or number
        elif isinstance(step, StripStep):
            if on is None:
                add(number, step, "strip without mask",
                    "no ball mount into a mask before it: there is no mask to strip")
                continue
            if bonded_at is None:
                add(number, step, "strip before reflow",
                    f"stripping the {on[1].id} mask from step {on[0]} before a reflow bonds "
                    "its balls would wash them off")
            if step.mask != on[1].id:
                add(number, step, "strip the mask",
                    f"strips {step.mask}, but the mask from step {on[0]} is {on[1].id}")
            _check_strip_window(number, step, on[1], add)
            on, bonded_at = None, None
    if on is not None:
        add(None, None, "strip the mask",
            f"the recipe ends with the {on[1].id} mask from step {on[0]} still on the wafer")


def _check_strip_window(number: int, step: StripStep, mask: Mask, add: Add) -> None:
    for key, value in (("strip_temp_c", step.strip_temp_c), ("strip_time_s", step.strip_time_s)):
        low, high = getattr(mask, key)
        if not low <= value <= high:
            add(number, step, "strip window",
                f"{key} = {value:g} outside the {mask.figure(key)} the {mask.id} mask is "
                "stripped in (residue left, or the bumps attacked)")


# A ball must carry enough solder to cap the post top with at least a hemisphere:
# pi d^3 / 6 >= pi D^3 / 12, so d >= D / 2^(1/3).
_MIN_BALL_PER_POST = 1 / 2 ** (1 / 3)


def _check_posts(recipe: Recipe, options: ValidationOptions, add: Add) -> None:
    """Balls onto Cu posts (seed 001, terminals on the posts of a sealed, polished wafer):
    the posts' pitch and diameter against the ball."""
    for number, step in enumerate(recipe.steps, start=1):
        if not isinstance(step, PlaceStep) or step.post_diameter_um is None:
            continue
        post, pitch, ball = step.post_diameter_um, step.post_pitch_um, step.ball_diameter_um
        if pitch != step.pitch_um:
            add(number, step, "cu post",
                f"pitch_um = {step.pitch_um} but the posts sit at {pitch} µm: one ball on "
                "every post needs the same pitch")
        if pitch is not None and post >= pitch:
            add(number, step, "cu post",
                f"post_diameter_um = {post} is not under the post pitch {pitch} µm "
                "(the posts would touch)")
        least = math.ceil(post * _MIN_BALL_PER_POST)
        if ball < least:
            add(number, step, "cu post",
                f"a {ball} µm ball holds too little solder to cap a {post} µm post with a "
                f"hemisphere (needs >= {least} µm)")
        most = post * options.max_ball_per_post
        if ball > most:
            add(number, step, "cu post",
                f"a {ball} µm ball is over {options.max_ball_per_post:g} times the {post} µm "
                f"post (assumed limit {most:g} µm): the post top no longer holds it")
def _check_stencils(recipe: Recipe, options: ValidationOptions, add: Add) -> None:
    """Paste release (IPC-7525) for print steps that give their stencil's geometry."""
    for number, step in enumerate(recipe.steps, start=1):
        if not isinstance(step, PrintStep) or step.aperture_um is None:
            continue
        width, thick = step.aperture_um, step.stencil_thickness_um or 0
        length = step.aperture_length_um or width
        # opening area over wall area; a round aperture gives the square's D / 4t
        area = width * length / (2 * (width + length) * thick)
        aspect = min(width, length) / thick
        what = (f"a {width} x {length} µm aperture" if length != width else
                f"a {width} µm aperture") + f" in a {thick} µm stencil"
        # rounded so a ratio exactly at the limit (132 µm in 50 µm: 0.66) is not refused
        if round(area, 9) < options.min_area_ratio:
            add(number, step, "stencil release",
                f"area ratio {area:.2f} ({what}) is under {options.min_area_ratio:g}: the paste "
                "stays in the aperture (IPC-7525; transfer falls steeply below 0.5)")
        if round(aspect, 9) < options.min_aspect_ratio:
            add(number, step, "stencil release",
                f"aspect ratio {aspect:.2f} ({what}) is under {options.min_aspect_ratio:g} "
                "(IPC-7525)")


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

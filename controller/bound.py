"""A lower bound on a lot's makespan, in tool seconds (docs/scheduling.md derives it).

For every role r the line has ``n_r`` tools of:

    bound_r = head_r + (work_r + changeovers_r) / n_r + tail_r

* ``work_r``: what the tools of role r must do for the lot, from the specs'
  nominal durations (for the oven, the belt's entrance spacing per wafer: the
  belt is a pipeline, its throughput is one wafer per 450 mm of travel);
* ``changeovers_r``: setup changes no schedule can avoid (every setup the lot
  needs beyond the one mounted at the start, once);
* ``head_r``: the shortest time before any wafer can reach role r (the steps
  before its first step there, without waiting);
* ``tail_r``: the shortest time a wafer still needs after its last step on r.

The bound is the largest ``bound_r``, and never less than one wafer's own
critical path (all its steps back to back, plus the changeovers it needs).
Pure: no I/O, tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sequences.recipe import CleanStep, PlaceStep, PrintStep, Recipe, ReflowStep, Step

# Nominal durations from the tool specs (tool seconds).
PRINT_LOAD_S, PRINT_PASS_S, SPI_S, PRINT_UNLOAD_S, WIPE_S = 20.0, 30.0, 10.0, 10.0, 15.0
PLACE_LOAD_S, PLACE_S, PLACE_UNLOAD_S = 20.0, 25.0 + 40.0 + 15.0, 10.0
PRINTER_CHANGEOVER_S, PLACER_CHANGEOVER_S = 600.0, 900.0
OVEN_CHANGEOVER_MIN_S = 15 * 60.0  # reflow-oven.md: a profile change takes 15-25 min
TUNNEL_MM, ENTRANCE_SPACING_MM = 4000.0, 450.0
ROLE = {"print": "printer", "place": "placer", "reflow": "oven", "clean": "cleaner"}


def step_seconds(step: Step) -> float:
    """How long one wafer's step keeps it busy (the oven: LOAD to exit)."""
    if isinstance(step, PrintStep):
        wipe = WIPE_S / step.wipe_every if step.wipe_every else 0.0
        return PRINT_LOAD_S + PRINT_PASS_S * step.passes + SPI_S + PRINT_UNLOAD_S + wipe
    if isinstance(step, PlaceStep):
        return PLACE_LOAD_S + PLACE_S + PLACE_UNLOAD_S
    if isinstance(step, ReflowStep):
        return TUNNEL_MM / step.conveyor_mm_min * 60.0
    assert isinstance(step, CleanStep)
    return float(step.wash_time_s + step.rinse_time_s + step.dry_time_s)


def tool_occupancy(step: Step) -> float:
    """How long a step keeps its tool from taking the next wafer."""
    if isinstance(step, ReflowStep):
        return ENTRANCE_SPACING_MM / step.conveyor_mm_min * 60.0
    return step_seconds(step)


def _setup(step: Step) -> tuple[object, ...]:
    if isinstance(step, PrintStep):
        return (step.stencil_id, step.paste_alloy)
    if isinstance(step, PlaceStep):
        return (step.ball_alloy, step.ball_diameter_um)
    if isinstance(step, ReflowStep):
        return (step.profile_id,)
    return ()


CHANGEOVER_S = {
    "printer": PRINTER_CHANGEOVER_S,
    "placer": PLACER_CHANGEOVER_S,
    "oven": OVEN_CHANGEOVER_MIN_S,
    "cleaner": 0.0,
}


@dataclass
class MakespanBound:
    seconds: float
    limiting: str  # the role (or "critical path") that sets the bound
    per_role: dict[str, float] = field(default_factory=dict)
    critical_path_s: float = 0.0


def lower_bound(
    recipe: Recipe,
    wafers: int,
    tools: dict[str, int],
    mounted: dict[str, tuple[object, ...]] | None = None,
) -> MakespanBound:
    """The bound for ``wafers`` wafers of ``recipe`` on a line with ``tools[role]`` tools.

    ``mounted`` is each role's setup at the start (e.g. the printer's stencil and
    paste); a setup already mounted costs no changeover.
    """
    mounted = mounted or {}
    steps = recipe.steps
    durations = [step_seconds(s) for s in steps]
    setups: dict[str, list[tuple[object, ...]]] = {}
    for step in steps:
        role = ROLE[step.kind]
        if step.kind != "clean" and _setup(step) not in setups.setdefault(role, []):
            setups[role].append(_setup(step))
    changeovers = {
        role: CHANGEOVER_S[role] * sum(1 for s in needed if s != mounted.get(role))
        for role, needed in setups.items()
    }
    critical = sum(durations) + sum(changeovers.values())
    per_role: dict[str, float] = {}
    for role in {ROLE[s.kind] for s in steps}:
        count = tools.get(role, 0)
        if count <= 0:
            raise ValueError(f"the recipe needs a {role} and the line has none")
        indices = [i for i, s in enumerate(steps) if ROLE[s.kind] == role]
        work = wafers * sum(tool_occupancy(steps[i]) for i in indices)
        head = sum(durations[: indices[0]])
        tail = sum(durations[indices[-1] + 1 :])
        if role == "oven":  # the last wafer still rides the whole tunnel after it enters
            tail += durations[indices[-1]] - tool_occupancy(steps[indices[-1]])
        per_role[role] = head + (work + changeovers.get(role, 0.0)) / count + tail
    limiting = max(per_role, key=per_role.__getitem__)
    if critical >= per_role[limiting]:
        return MakespanBound(critical, "critical path", per_role, critical)
    return MakespanBound(per_role[limiting], limiting, per_role, critical)

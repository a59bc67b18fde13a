"""A lower bound on a lot's makespan, in tool seconds (docs/scheduling.md derives it).

For every role r the line has ``n_r`` tools of:

    bound_r = head_r + (work_r + changeovers_r) / n_r + tail_r

* ``work_r``: what the tools of role r must do for the lot, from the specs'
  nominal durations (for the oven, the belt's entrance spacing per wafer: the
  belt is a pipeline, its throughput is one wafer per 450 mm of travel);
* ``changeovers_r``: setup changes no schedule can avoid (every setup the lot
  needs beyond the one mounted at the start, once; a tool that starts cold, the
  oven, reaches its first setup by its start-up, not by a changeover);
* ``head_r``: the shortest time before any wafer can reach role r (the steps
  before its first step there, without waiting, none of them before its tool has
  started up; nor role r's own first step before its start-up);
* ``tail_r``: the shortest time a wafer still needs after its last step on r.

The bound is the largest ``bound_r``, and never less than one wafer's own
critical path (all its steps back to back after the start-ups, plus the
changeovers it needs).

A batch tool (the plater: ``kind.batch``, up to ``batch_capacity`` wafers in one
cycle of ``nominal_s`` whatever their number) works ``k = ceil(wafers / cap)``
cycles at least, not one per wafer. It also cuts the flow: a wafer leaves it
only when its whole batch is done. The scheduler may split a lot into more
batches than k, so the bound assumes nothing about their sizes, only that

* the last batch starts after every wafer is through the steps before it, and
  at least one wafer then still needs the steps after it;
* no wafer starts the steps after it before the first batch has ended;
* the batches follow each other on the tools of the role:

    bound_batch = max(before(n) + cycle + after(1), before(1) + cycle + after(n),
                      before(1) + ceil(k / n_batch) x cycle + after(1))

where before(m) and after(m) bound m wafers through the steps before and after
the batch step (this same function; the steps after start from the setups the
steps before left mounted).
Pure: no I/O, tested directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from sequences.kinds import kind_of
from sequences.recipes.recipe import Recipe, Step


def step_seconds(step: Step) -> float:
    """How long one wafer's step keeps it busy (the oven: LOAD to exit)."""
    return kind_of(step).nominal_s(step)


def tool_occupancy(step: Step) -> float:
    """How long a step keeps its tool from taking the next wafer."""
    return kind_of(step).occupancy_s(step)


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
    if not steps or wafers <= 0:
        return MakespanBound(0.0, "critical path")
    durations = [step_seconds(s) for s in steps]
    roles = [kind_of(s).role for s in steps]
    setups: dict[str, list[tuple[object, ...]]] = {}
    for step in steps:
        kind = kind_of(step)
        setup = kind.bound_setup(step)
        if setup is not None and setup not in setups.setdefault(kind.role, []):
            setups[kind.role].append(setup)
    # A tool with a start-up (the oven's warm-up) reaches its first setup by starting, not
    # by a changeover; every other setup beyond the mounted one is a changeover, once.
    startup = {role: 0.0 for role in roles}
    for step in steps:
        kind = kind_of(step)
        if kind.role not in mounted and not startup[kind.role]:
            startup[kind.role] = kind.startup_s(step)
    changeovers = {
        role: _changeover_s(role, steps) * sum(
            1 for i, s in enumerate(needed)
            if s != mounted.get(role) and not (i == 0 and startup.get(role)))
        for role, needed in setups.items()
    }
    # The earliest a wafer can start each step: its earlier steps back to back, none
    # before its tool has started up.
    starts: list[float] = []
    t = 0.0
    for role, duration in zip(roles, durations, strict=True):
        t = max(t, startup[role])
        starts.append(t)
        t += duration
    critical = t + sum(changeovers.values())
    per_role: dict[str, float] = {}
    for role in set(roles):
        count = tools.get(role, 0)
        if count <= 0:
            raise ValueError(f"the recipe needs a {role} and the line has none")
        indices = [i for i, r in enumerate(roles) if r == role]
        work = sum(_work(steps[i], wafers) for i in indices)
        head = starts[indices[0]]
        tail = sum(durations[indices[-1] + 1 :])
        if kind_of(steps[indices[-1]]).pipelined:  # the last wafer still rides it out
            tail += durations[indices[-1]] - tool_occupancy(steps[indices[-1]])
        per_role[role] = head + (work + changeovers.get(role, 0.0)) / count + tail
    for i, step in enumerate(steps):
        if kind_of(step).batch:
            per_role[f"{kind_of(step).role} batches at step {i + 1}"] = _batch_bound(
                recipe, i, wafers, tools, mounted)
    limiting = max(per_role, key=per_role.__getitem__)
    if critical >= per_role[limiting]:
        return MakespanBound(critical, "critical path", per_role, critical)
    return MakespanBound(per_role[limiting], limiting, per_role, critical)


def _work(step: Step, wafers: int) -> float:
    """What ``wafers`` wafers of a step ask of its tools (a batch tool: whole cycles)."""
    kind = kind_of(step)
    if kind.batch:
        return math.ceil(wafers / kind.batch_capacity(step)) * kind.nominal_s(step)
    return wafers * tool_occupancy(step)


def _batch_bound(recipe: Recipe, index: int, wafers: int, tools: dict[str, int],
                 mounted: dict[str, tuple[object, ...]]) -> float:
    """The flow cut at a batch step (see the module's docstring)."""
    step = recipe.steps[index]
    kind = kind_of(step)
    cap = kind.batch_capacity(step)
    k = math.ceil(wafers / cap)
    before = recipe.steps[:index]
    after = recipe.steps[index + 1:]
    left = dict(mounted)
    for s in before:
        setup = kind_of(s).bound_setup(s)
        if setup is not None:
            left[kind_of(s).role] = setup
    for s in after:  # a tool that starts up (the oven) did so while the batch ran
        if kind_of(s).startup_s(s) and kind_of(s).role not in left:
            left[kind_of(s).role] = kind_of(s).bound_setup(s) or ()
    cycle = kind.nominal_s(step)
    rounds = math.ceil(k / max(1, tools.get(kind.role, 1)))

    def up(m: int) -> float:
        return lower_bound(replace(recipe, steps=before), m, tools, mounted).seconds

    def down(m: int) -> float:
        return lower_bound(replace(recipe, steps=after), m, tools, left).seconds

    return max(up(wafers) + cycle + down(1), up(1) + cycle + down(wafers),
               up(1) + rounds * cycle + down(1))


def _changeover_s(role: str, steps: tuple[Step, ...]) -> float:
    return next(kind_of(s).changeover_s for s in steps if kind_of(s).role == role)

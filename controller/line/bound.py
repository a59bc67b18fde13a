"""A lower bound on a lot's makespan, in tool seconds (docs/scheduling.md derives it).

For every role r the line has ``n_r`` tools of:

    bound_r = head_r + (work_r + changeovers_r) / n_r + tail_r

* ``work_r``: what the tools of role r must do for the lot, from the specs'
  nominal durations (for the oven, the belt's entrance spacing per wafer: the
  belt is a pipeline, its throughput is one wafer per 450 mm of travel);
* ``changeovers_r``: setup changes no schedule can avoid (every setup the lot
  needs beyond the one mounted at the start, once; a role whose starting setup
  is not given in ``mounted`` may already hold the first one it needs, and a tool
  that starts cold, the oven, reaches its first setup by its start-up, not by a
  changeover);
* ``head_r``: the shortest time before any wafer can reach role r (the steps
  before its first step there, without waiting, except for a tool whose mounted
  setup must be changed first, or that starts cold: no wafer gets past it before
  its changeover or start-up, which starts at once, beside the other tools');
* ``tail_r``: the shortest time a wafer still needs after its last step on r.

The bound is the largest ``bound_r``, and never less than one wafer's own
critical path (its steps back to back, each waiting for the changeover or
start-up its tool needs; a changeover runs while the wafer is on other tools).

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
the batch step (this same function; the tools of the steps after may change over
while the batch runs, so after(m) assumes no setup).
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
    changeovers = {role: _changeover_s(role, steps) * _changes(needed, role, mounted)
                   for role, needed in setups.items()}
    arrive = _first_wafer(steps, durations, mounted)
    critical = _critical_path(steps, durations, mounted)
    per_role: dict[str, float] = {}
    for role in set(roles):
        count = tools.get(role, 0)
        if count <= 0:
            raise ValueError(f"the recipe needs a {role} and the line has none")
        indices = [i for i, r in enumerate(roles) if r == role]
        work = sum(_work(steps[i], wafers) for i in indices)
        first = steps[indices[0]]
        # A tool that starts cold (the oven) takes no wafer before its start-up is over.
        warm_up = kind_of(first).startup_s(first) if role not in mounted else 0.0
        head = max(arrive[indices[0]], warm_up)
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


def _changes(needed: list[tuple[object, ...]], role: str,
             mounted: dict[str, tuple[object, ...]]) -> int:
    """Setup changes a role cannot avoid: every needed setup but the mounted one; a role
    whose starting setup is not known may already hold the first one it needs."""
    if role in mounted:
        return sum(1 for s in needed if s != mounted[role])
    return max(0, len(needed) - 1)


def _first_change_s(steps: tuple[Step, ...], mounted: dict[str, tuple[object, ...]]
                    ) -> dict[str, float]:
    """Per role, the changeover that must precede its first step: its mounted setup is
    known and another is needed (e.g. the printer's CHG, 600 s in the spec). Changeovers
    on different tools run side by side from the start, so each counts on its own."""
    ready: dict[str, float] = {}
    for step in steps:
        kind = kind_of(step)
        if kind.role in ready:
            continue
        if kind.role not in mounted:  # a tool that starts cold (the oven) warms up first
            ready[kind.role] = kind.startup_s(step)
            continue
        setup = kind.bound_setup(step)
        changes = setup is not None and setup != mounted[kind.role]
        ready[kind.role] = kind.changeover_s if changes else 0.0
    return ready


def _first_wafer(steps: tuple[Step, ...], durations: list[float],
                 mounted: dict[str, tuple[object, ...]]) -> list[float]:
    """The earliest tool time the first wafer can reach each step: the steps before it back
    to back, each no earlier than its tool's first changeover is over."""
    ready = _first_change_s(steps, mounted)
    seen: set[str] = set()
    at, arrive = 0.0, []
    for step, duration in zip(steps, durations, strict=True):
        role = kind_of(step).role
        arrive.append(at)
        start = at if role in seen else max(at, ready[role])
        seen.add(role)
        at = start + duration
    return arrive


def _critical_path(steps: tuple[Step, ...], durations: list[float],
                   mounted: dict[str, tuple[object, ...]]) -> float:
    """One wafer's own path: its steps back to back, each waiting for the changeover its
    tool needs. A changeover starts once the wafer's previous step on that tool is over
    (the oven applies a profile on an empty belt) and runs while the wafer is elsewhere."""
    held = dict(mounted)
    free: dict[str, float] = {}
    at = 0.0
    for step, duration in zip(steps, durations, strict=True):
        kind = kind_of(step)
        setup = kind.bound_setup(step)
        ready = free.get(kind.role, 0.0)
        if kind.role not in held and kind.role not in free:
            ready = kind.startup_s(step)  # a tool that starts cold (the oven)
        if setup is not None:
            if kind.role in held and held[kind.role] != setup:
                ready += kind.changeover_s
            held[kind.role] = setup
        start = max(at, ready)
        at = start + duration
        free[kind.role] = at
    return at


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
    cycle = kind.nominal_s(step)
    rounds = math.ceil(k / max(1, tools.get(kind.role, 1)))

    def up(m: int) -> float:
        return lower_bound(replace(recipe, steps=before), m, tools, mounted).seconds

    # A tool that starts cold (the oven) has started while the batch ran, set up for its
    # first step after it; the others may change over while the batch plates.
    started: dict[str, tuple[object, ...]] = {}
    for s in after:
        later = kind_of(s)
        if later.startup_s(s) and later.role not in started:
            started[later.role] = later.bound_setup(s) or ()

    def down(m: int) -> float:
        return lower_bound(replace(recipe, steps=after), m, tools, started).seconds

    return max(up(wafers) + cycle + down(1), up(1) + cycle + down(wafers),
               up(1) + rounds * cycle + down(1))


def _changeover_s(role: str, steps: tuple[Step, ...]) -> float:
    return next(kind_of(s).changeover_s for s in steps if kind_of(s).role == role)

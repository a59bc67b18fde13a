"""Step kinds: one module per kind of recipe step, found by the step's ``kind``.

``kind_of(step)`` is the only way the runner, scheduler, recovery, the makespan
bound and the record learn what a step needs; nothing asks which class a step
is. A new kind is one module here (a ``StepKind``), one driver, one simulator
model and its command table or register map (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sequences.errors import SequenceError
from sequences.kinds.ball_place import BALL_PLACE
from sequences.kinds.barrier import BARRIER
from sequences.kinds.base import AnyKind, StepKind, _a
from sequences.kinds.flux_clean import FLUX_CLEAN
from sequences.kinds.paste_print import PASTE_PRINT
from sequences.kinds.reflow import REFLOW
from sequences.kinds.resist_strip import RESIST_STRIP
from sequences.recipes.recipe import Recipe, Step

KINDS: dict[str, AnyKind] = {k.name: k for k in (PASTE_PRINT, BALL_PLACE, REFLOW, FLUX_CLEAN,
                                                 RESIST_STRIP, BARRIER)}
ROLE_OF_KIND: dict[str, str] = {name: kind.role for name, kind in KINDS.items()}
ROLES: tuple[str, ...] = tuple(dict.fromkeys(ROLE_OF_KIND.values()))


def kind_of(step: Step | str) -> AnyKind:
    """The kind of a recipe step (or of a kind name)."""
    name = step if isinstance(step, str) else step.kind
    try:
        return KINDS[name]
    except KeyError:
        raise SequenceError(f"no step kind '{name}' (known: {', '.join(KINDS)})") from None


def forget_tool(driver: Any) -> None:
    """Every kind forgets what it wrote to this tool (a tool back in production: people may
    have changed its recipe while it was out)."""
    for kind in KINDS.values():
        kind.forget(driver)


def recipe_roles(recipe: Recipe) -> frozenset[str]:
    """The tool roles a recipe's steps need (a line runs it only with a tool of each)."""
    return frozenset(kind_of(step).role for step in recipe.steps)


def steps_no_tool_takes(recipe: Recipe, tools: Iterable[tuple[str, Any]]) -> list[str]:
    """The recipe's steps no tool of a line can take, each said for a person: no tool of
    the step's role, or none whose model has the step's mode (a strip needs an FC-2).
    ``tools``: (role, driver) of every tool of the line."""
    tools = list(tools)
    problems = []
    for number, step in enumerate(recipe.steps, start=1):
        kind = kind_of(step)
        of_role = [driver for role, driver in tools if role == kind.role]
        if not of_role:
            problems.append(f"step {number} ({step.kind}) needs {_a(kind.role)}, and the line "
                            "has none")
        elif not any(kind.can_run(driver) for driver in of_role):
            names = ", ".join(getattr(d, "name", str(d)) for d in of_role)
            problems.append(f"step {number} ({step.kind}) needs {_a(kind.role)} whose model "
                            f"can take it, and the line's ({names}) cannot")
    return problems


__all__ = ["KINDS", "ROLES", "ROLE_OF_KIND", "AnyKind", "StepKind", "forget_tool", "kind_of",
           "recipe_roles",
           "steps_no_tool_takes"]

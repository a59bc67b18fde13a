"""What sequences/ can refuse, each as one exception the command line prints as one line.

``RecipeError``  a recipe (or the alloy library) that cannot be used: malformed
                 or breaking a metallurgical rule. ``RecipeInvalid`` carries
                 every problem found, not just the first.
``SequenceError`` a request the wafer's state machine cannot honour
                 (an event not allowed in the wafer's current state, a
                 driver for the wrong kind of step...).
``InterlockError`` a step refused before any command reached the tool.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, located in its file and step."""

    source: str  # file name (or "<memory>")
    step: int | None  # 1-based step number; None for the recipe as a whole
    kind: str | None  # step kind, when known
    rule: str  # short rule name: "rebump rule", "range", "unknown key"...
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.step is not None:
            where += f": step {self.step}" + (f" ({self.kind})" if self.kind else "")
        return f"{where}: {self.rule}: {self.message}"


class RecipeError(Exception):
    """A recipe or alloy library that cannot be used."""


class RecipeInvalid(RecipeError):
    """Every problem found in one recipe."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


class SequenceError(Exception):
    """A request the wafer's sequence cannot honour in its current state."""


class InterlockError(Exception):
    """A step refused before any command reached the tool; says exactly why."""

    def __init__(self, tool: str, reasons: list[str]) -> None:
        self.tool = tool
        self.reasons = list(reasons)
        super().__init__(f"{tool}: interlock: " + "; ".join(self.reasons))

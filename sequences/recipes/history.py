"""The wafer's own history, and the rules it must satisfy before each step.

The recipe's rules (``sequences.recipes.validate``) are checked against what the recipe
says; these are checked before every step against what was really done to this
wafer: the measured peaks of its reflows, the alloys deposited, whether it was
cleaned since its last reflow. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sequences.errors import RecipeError
from sequences.recipes.alloys import Alloy, AlloyLibrary
from sequences.recipes.recipe import DEPOSIT_KINDS, Recipe, ReflowStep, Step
from sequences.recipes.validate import ValidationOptions


@dataclass(frozen=True)
class HistoryEntry:
    step: int  # recipe step number
    kind: str
    alloy: str | None = None  # deposits
    peak_c: float | None = None  # reflows: the measured peak (None when not measured here)
    accepted_as_is: str = ""  # an engineer's reason for continuing out of window
    ni_um: float | None = None  # barriers: this wafer's measured nickel


@dataclass
class WaferHistory:
    """What has been done to the wafer, in order; the runner appends as steps pass."""

    entries: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def assumed(cls, recipe: Recipe, before: int) -> WaferHistory:
        """Steps 1..before-1 taken as done to the recipe (a run of a later range)."""
        return cls([_nominal(n, s) for n, s in enumerate(recipe.steps[: before - 1], start=1)])

    def record(self, entry: HistoryEntry) -> None:
        self.entries.append(entry)

    def forget_from(self, step: int) -> None:
        """A retry restarts at ``step``: what was done from there on is stripped."""
        self.entries = [e for e in self.entries if e.step < step]


def _nominal(number: int, step: Step) -> HistoryEntry:
    return HistoryEntry(number, step.kind, getattr(step, "alloy", None),
                        ni_um=getattr(step, "ni_um", None))


def _deposited(deposit: HistoryEntry, alloys: AlloyLibrary) -> Alloy:
    """The alloy a print or place left on the wafer (both always record theirs)."""
    if deposit.alloy is None:
        raise RecipeError(f"step {deposit.step}: the {deposit.kind} recorded no alloy")
    return alloys[deposit.alloy]


def history_interlocks(
    number: int, step: Step, history: WaferHistory, alloys: AlloyLibrary,
    options: ValidationOptions,
) -> list[str]:
    """Whether what was really done to this wafer allows the step."""
    reasons: list[str] = []
    bumps: list[tuple[HistoryEntry, HistoryEntry]] = []  # (deposit, reflow)
    covered: set[int] = set()  # bumps (their deposit's step) under an intact barrier
    pending: list[HistoryEntry] = []
    dirty: HistoryEntry | None = None
    for entry in history.entries:
        if entry.kind in DEPOSIT_KINDS:
            pending.append(entry)
        elif entry.kind == "reflow":
            if entry.peak_c is not None and not entry.accepted_as_is:
                for deposit, reflow in bumps:
                    alloy = _deposited(deposit, alloys)
                    if entry.peak_c >= alloy.solidus_c:
                        # figure(): an assumed solidus (Pb95Sn5) says so (process-data.md)
                        reasons.append(
                            f"the reflow at step {entry.step} reached {entry.peak_c:g} °C, "
                            f"remelting the {deposit.alloy} bump from step {reflow.step} "
                            f"(solidus {alloy.figure('solidus_c')})")
            bumps += [(d, entry) for d in pending]
            pending = []
            dirty = entry
        elif entry.kind in ("clean", "strip"):  # a resist strip removes the flux too
            dirty = None
        elif entry.kind == "barrier" and entry.ni_um is not None and \
                entry.ni_um >= options.min_barrier_ni_um:
            covered |= {d.step for d, _ in bumps}
    if step.kind in DEPOSIT_KINDS and dirty is not None:
        reasons.append(f"not cleaned since the reflow at step {dirty.step}")
    if isinstance(step, ReflowStep):
        if not pending:
            reasons.append("nothing deposited on the wafer since its last reflow")
        high = step.peak_c[1]
        for deposit, reflow in bumps:
            alloy = _deposited(deposit, alloys)
            if high > alloy.solidus_c - options.rebump_margin_c:
                reasons.append(
                    f"peak window reaches {high:g} °C while the {alloy.id} bump from step "
                    f"{reflow.step} begins to melt at {alloy.figure('solidus_c')}")
        for new in pending:
            if not _deposited(new, alloys).contains_bismuth:
                continue
            for deposit, _ in bumps:
                # Across an intact barrier the new solder wets the Ni/Au, not the lead
                # (an assumption of barrier-plater.md, as the validator says).
                if _deposited(deposit, alloys).contains_lead and deposit.step not in covered:
                    reasons.append(f"{new.alloy} would be reflowed onto a lead-bearing "
                                   f"{deposit.alloy} bump")
    return reasons

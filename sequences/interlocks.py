"""Interlocks checked before every step: pure functions over what the tools report.

A non-empty list of reasons means the step must not start: the wafer is held
with those reasons and nothing is sent to the tool. Nothing here changes a tool;
changing a tool's setup is ``sequences.steps.prepare_tool``, which the caller
invokes and logs on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanRecipe,
    OvenState,
    OvenStatus,
    PlacerState,
    PlacerStatus,
    PrinterState,
    PrinterStatus,
)
from sequences.alloys import AlloyLibrary
from sequences.recipe import (
    DEPOSIT_KINDS,
    CleanStep,
    PlaceStep,
    PrintStep,
    Recipe,
    ReflowStep,
    Step,
)
from sequences.validate import ValidationOptions

PASTE_PER_PRINT_PCT = 0.4
FLUX_PER_WAFER_PCT = 0.5


# --- tool setup -------------------------------------------------------------------------------


def printer_setup(step: PrintStep, st: PrinterStatus) -> list[str]:
    """Mounted stencil and paste against the step (what prepare_tool would change)."""
    reasons = []
    if st.stencil_id != step.stencil_id:
        reasons.append(f"stencil {st.stencil_id} mounted, the step needs {step.stencil_id}")
    if st.paste_alloy != step.paste_alloy:
        reasons.append(f"{st.paste_alloy} paste loaded, the step needs {step.paste_alloy}")
    return reasons


def printer_interlocks(step: PrintStep, st: PrinterStatus, wafer_id: str) -> list[str]:
    reasons = _alarm(st.alarm_code, st.state is PrinterState.ALARM)
    if st.state is not PrinterState.IDLE and not (
        st.state is PrinterState.DONE and st.wafer_id == wafer_id
    ):
        reasons.append(f"printer is {st.state.value}"
                       + (f" with wafer {st.wafer_id}" if st.wafer_id else ""))
    reasons += printer_setup(step, st)
    if st.paste_level_pct < PASTE_PER_PRINT_PCT:
        reasons.append(f"paste level {st.paste_level_pct:g} % is below one print "
                       f"({PASTE_PER_PRINT_PCT:g} %)")
    return reasons


def placer_setup(step: PlaceStep, st: PlacerStatus) -> list[str]:
    reasons = []
    if st.ball_alloy != step.ball_alloy or st.ball_diameter_um != step.ball_diameter_um:
        reasons.append(f"{st.ball_diameter_um} µm {st.ball_alloy} balls loaded, the step needs "
                       f"{step.ball_diameter_um} µm {step.ball_alloy}")
    return reasons


def placer_interlocks(step: PlaceStep, st: PlacerStatus, wafer_id: str) -> list[str]:
    reasons = _alarm(st.alarm_code, st.state is PlacerState.ALARM)
    if st.state is not PlacerState.IDLE and not (
        st.state is PlacerState.DONE and st.wafer_id == wafer_id
    ):
        reasons.append(f"ball mounter is {st.state.value}"
                       + (f" with wafer {st.wafer_id}" if st.wafer_id else ""))
    reasons += placer_setup(step, st)
    if st.flux_level_pct < FLUX_PER_WAFER_PCT:
        reasons.append(f"flux level {st.flux_level_pct:g} % is below one wafer "
                       f"({FLUX_PER_WAFER_PCT:g} %)")
    if st.ball_level_pct <= 0:
        reasons.append("ball supply empty")
    return reasons


def oven_setup(step: ReflowStep, st: OvenStatus) -> list[str]:
    reasons = []
    if st.active_profile_id != step.profile_id:
        reasons.append(f"oven runs profile {st.active_profile_id}, the step needs profile "
                       f"{step.profile_id}")
    if st.state not in (OvenState.READY, OvenState.PROCESSING):
        reasons.append(f"oven is {st.state.name}, not READY or PROCESSING")
    if not st.nitrogen_on:
        reasons.append("nitrogen is off")
    return reasons


def oven_interlocks(step: ReflowStep, st: OvenStatus) -> list[str]:
    reasons = _alarm(st.alarm_code, st.alarm_active or st.state is OvenState.ALARM)
    reasons += oven_setup(step, st)
    if st.nitrogen_on and st.o2_ppm > step.o2_limit_ppm:
        reasons.append(f"O2 {st.o2_ppm} ppm above the step's limit {step.o2_limit_ppm} ppm")
    if not st.conveyor_running:
        reasons.append("conveyor stopped")
    return reasons


def cleaner_setup(step: CleanStep, st: CleanerStatus, recipe: CleanRecipe) -> list[str]:
    reasons = []
    if abs(recipe.wash_temp_c - step.wash_temp_c) > 0.05:
        reasons.append(f"cleaner set to wash at {recipe.wash_temp_c:g} °C, the step needs "
                       f"{step.wash_temp_c:g} °C")
    if abs(st.wash_temp_c - step.wash_temp_c) > BATH_TOLERANCE_C:
        reasons.append(f"bath at {st.wash_temp_c:g} °C, not within ±{BATH_TOLERANCE_C:g} °C "
                       f"of {step.wash_temp_c:g} °C")
    return reasons


def cleaner_interlocks(
    step: CleanStep, st: CleanerStatus, recipe: CleanRecipe, *, own_wafer_done: bool = False
) -> list[str]:
    reasons = _alarm(st.alarm_code, st.state is CleanerState.ALARM)
    if st.state not in (CleanerState.IDLE, CleanerState.READY) and not (
        st.state is CleanerState.DONE and own_wafer_done
    ):
        reasons.append(f"cleaner is {st.state.name}")
    reasons += cleaner_setup(step, st, recipe)
    for flag, text in ((st.chemistry_low, "chemistry low"),
                       (st.di_resistivity_low, "DI rinse resistivity low"),
                       (st.door_open, "door open")):
        if flag:
            reasons.append(text)
    return reasons


def _alarm(code: int, latched: bool) -> list[str]:
    if code:
        return [f"alarm {code} active"]
    return ["alarm latched"] if latched else []


# --- the wafer's own history ------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    step: int  # recipe step number
    kind: str
    alloy: str | None = None  # deposits
    peak_c: float | None = None  # reflows: the measured peak (None when not measured here)
    accepted_as_is: str = ""  # an engineer's reason for continuing out of window


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
    return HistoryEntry(number, step.kind, getattr(step, "alloy", None))


def history_interlocks(
    number: int, step: Step, history: WaferHistory, alloys: AlloyLibrary,
    options: ValidationOptions,
) -> list[str]:
    """Whether what was really done to this wafer allows the step."""
    reasons: list[str] = []
    bumps: list[tuple[HistoryEntry, HistoryEntry]] = []  # (deposit, reflow)
    pending: list[HistoryEntry] = []
    dirty: HistoryEntry | None = None
    for entry in history.entries:
        if entry.kind in DEPOSIT_KINDS:
            pending.append(entry)
        elif entry.kind == "reflow":
            if entry.peak_c is not None and not entry.accepted_as_is:
                for deposit, reflow in bumps:
                    solidus = alloys[deposit.alloy].solidus_c
                    if entry.peak_c >= solidus:
                        reasons.append(
                            f"the reflow at step {entry.step} reached {entry.peak_c:g} °C, "
                            f"remelting the {deposit.alloy} bump from step {reflow.step} "
                            f"(solidus {solidus:g} °C)")
            bumps += [(d, entry) for d in pending]
            pending = []
            dirty = entry
        elif entry.kind == "clean":
            dirty = None
    if step.kind in DEPOSIT_KINDS and dirty is not None:
        reasons.append(f"not cleaned since the reflow at step {dirty.step}")
    if isinstance(step, ReflowStep):
        if not pending:
            reasons.append("nothing deposited on the wafer since its last reflow")
        high = step.peak_c[1]
        for deposit, reflow in bumps:
            alloy = alloys[deposit.alloy]
            if high > alloy.solidus_c - options.rebump_margin_c:
                reasons.append(
                    f"peak window reaches {high:g} °C while the {alloy.id} bump from step "
                    f"{reflow.step} begins to melt at {alloy.solidus_c:g} °C")
        for new in pending:
            if not alloys[new.alloy].contains_bismuth:
                continue
            for deposit, _ in bumps:
                if alloys[deposit.alloy].contains_lead:
                    reasons.append(f"{new.alloy} would be reflowed onto a lead-bearing "
                                   f"{deposit.alloy} bump")
    return reasons

"""Judging a step's measured results against the recipe's acceptance windows.

Pure functions: a step and the tool's result in, a ``Judgment`` out. Each
finding names the measurement, its value and the window it missed, so a held
wafer's event says exactly what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.types import (
    CleanResult,
    CleanStatus,
    ExitFlag,
    PlacementResult,
    PrintResult,
    ReflowResult,
    RunStatus,
)
from sequences.recipe import CleanStep, PlaceStep, PrintStep, ReflowStep


@dataclass(frozen=True)
class Judgment:
    ok: bool
    findings: tuple[str, ...] = ()  # what was out of window
    measurements: dict[str, Any] = field(default_factory=dict)
    repair: bool = False  # place only: try the mounter's repair, then judge again

    @property
    def why(self) -> str:
        return "; ".join(self.findings) if self.findings else "within every window"


def _window(name: str, value: float, window: tuple[float, float], unit: str) -> list[str]:
    low, high = window
    if low <= value <= high:
        return []
    return [f"{name} {value:g}{unit} outside {low:g}-{high:g}{unit}"]


def _at_most(name: str, value: float, limit: float, unit: str = "") -> list[str]:
    return [] if value <= limit else [f"{name} {value:g}{unit} above the limit {limit:g}{unit}"]


def _at_least(name: str, value: float, limit: float, unit: str = "") -> list[str]:
    return [] if value >= limit else [f"{name} {value:g}{unit} below the minimum {limit:g}{unit}"]


def _wafer(expected: str, got: str) -> list[str]:
    return [] if got == expected else [f"the tool reported wafer '{got}', expected '{expected}'"]


def judge_print(step: PrintStep, r: PrintResult, wafer_id: str) -> Judgment:
    measurements = {
        "status": r.status.value, "vol_mean_pct": r.vol_mean_pct, "vol_min_pct": r.vol_min_pct,
        "vol_max_pct": r.vol_max_pct, "bridges": r.bridges, "insufficient": r.insufficient,
    }
    findings = _wafer(wafer_id, r.wafer_id)
    if r.status is not RunStatus.OK:
        findings.append(f"print status {r.status.value}")
    findings += _window("SPI mean volume", r.vol_mean_pct, step.vol_mean_pct, " %")
    findings += _at_least("SPI smallest volume", r.vol_min_pct, step.vol_min_pct_min, " %")
    findings += _at_most("bridges", r.bridges, step.max_bridges)
    findings += _at_most("insufficient sites", r.insufficient, step.max_insufficient)
    return Judgment(not findings, tuple(findings), measurements)


def judge_place(
    step: PlaceStep, r: PlacementResult, wafer_id: str, *, repaired: bool
) -> Judgment:
    """Defects up to max_defects get one automatic repair; after it (or when none was
    needed) at most max_defects_after_repair may remain. More than max_defects is not
    worth repairing (a mask or supply problem): the wafer waits for an engineer."""
    measurements = {
        "status": r.status.value, "sites": r.sites, "placed": r.placed, "missing": r.missing,
        "extra": r.extra, "defects": r.defects, "offset_max_um": r.offset_max_um,
        "repaired": repaired,
    }
    findings = _wafer(wafer_id, r.wafer_id)
    if r.status is not RunStatus.OK:
        findings.append(f"placement status {r.status.value}")
    if r.sites != step.sites:
        findings.append(f"the mounter inspected {r.sites} sites, the recipe has {step.sites}")
    if findings:
        return Judgment(False, tuple(findings), measurements)
    if r.defects <= step.max_defects_after_repair:
        return Judgment(True, (), measurements)
    if repaired:
        return Judgment(False, (
            f"{r.defects} ball defects ({r.missing} missing, {r.extra} extra) after repair, "
            f"above the limit {step.max_defects_after_repair}",), measurements)
    if r.defects > step.max_defects:
        return Judgment(False, (
            f"{r.defects} ball defects ({r.missing} missing, {r.extra} extra), above the "
            f"{step.max_defects} worth repairing",), measurements)
    return Judgment(False, (
        f"{r.defects} ball defects ({r.missing} missing, {r.extra} extra): repairing",),
        measurements, repair=True)


def judge_reflow(step: ReflowStep, r: ReflowResult, wafer_id: str) -> Judgment:
    measurements = {
        "peak_c": r.peak_c, "tal_s": r.tal_s, "tal_threshold_c": step.tal_threshold_c,
        "ramp_max_c_s": r.ramp_max_c_s, "cool_max_c_s": r.cool_max_c_s,
        "profile_id": r.profile_id, "o2_max_ppm": r.o2_max_ppm, "flags": r.flags,
    }
    findings = _wafer(wafer_id, r.wafer_id)
    findings += _window("peak", r.peak_c, step.peak_c, " °C")
    findings += _window(f"time above {step.tal_threshold_c:g} °C", r.tal_s, step.tal_s, " s")
    findings += _at_most("heating ramp", r.ramp_max_c_s, step.max_ramp_c_s, " °C/s")
    findings += _at_most("cooling rate", r.cool_max_c_s, step.max_cool_c_s, " °C/s")
    findings += _at_most("O2", r.o2_max_ppm, step.o2_limit_ppm, " ppm")
    if r.profile_id != step.profile_id:
        findings.append(f"reflowed with profile {r.profile_id}, the step's is {step.profile_id}")
    for flag, text in ((ExitFlag.BELT_STOPPED, "the belt stopped during its pass"),
                       (ExitFlag.O2_HIGH, "O2 went above the limit during its pass"),
                       (ExitFlag.ZONE_ALARM, "a zone alarm during its pass")):
        if r.has_flag(flag):
            findings.append(text)
    return Judgment(not findings, tuple(findings), measurements)


def judge_clean(step: CleanStep, r: CleanResult, wafer_id: str) -> Judgment:
    measurements = {"status": r.status.name, "ionic_ug_cm2": r.ionic_ug_cm2,
                    "cycle_count": r.cycle_count}
    findings = _wafer(wafer_id, r.wafer_id)
    if r.status is not CleanStatus.OK:
        findings.append(f"clean status {r.status.name}")
    findings += _at_most("ionic residue", r.ionic_ug_cm2, step.max_ionic_ug_cm2, " µg/cm²")
    return Judgment(not findings, tuple(findings), measurements)

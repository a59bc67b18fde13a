"""What the report does differently per step kind, one function per concern.

The report reads steps from the store, where a step's kind is a string. Every
place that depends on the kind asks here, so moving to a step-kind registry
means changing this module only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sequences.recipes.alloys import default_alloys

# Results followed across the lot, per kind, in the order shown.
_TRENDS: dict[str, tuple[str, ...]] = {
    "print": ("vol_mean_pct",),
    "place": ("defects",),
    "reflow": ("peak_c", "tal_s", "ramp_max_c_s"),
    "clean": ("ionic_ug_cm2",),
    "strip": ("mask_residue_pct", "ionic_ug_cm2"),
    "barrier": ("ni_um", "au_um"),
}

_LABELS = {
    "vol_mean_pct": "SPI volume mean (%)",
    "defects": "defects after repair",
    "peak_c": "peak (°C)",
    "tal_s": "time above liquidus (s)",
    "ramp_max_c_s": "max ramp (°C/s)",
    "cool_max_c_s": "max cool (°C/s)",
    "ionic_ug_cm2": "ionic residue (µg/cm²)",
    "mask_residue_pct": "mask left (%)",
    "ni_um": "barrier nickel (µm, XRF per wafer)",
    "au_um": "barrier gold (µm, XRF per wafer)",
    "ni_bath_c": "nickel bath (°C)",
    "au_bath_c": "gold bath (°C)",
}


def trend_results(kind: str) -> tuple[str, ...]:
    """The results of a step of ``kind`` whose lot trend the report draws."""
    return _TRENDS.get(kind, ())


def result_label(name: str) -> str:
    return _LABELS.get(name, name)


def has_profile(kind: str) -> bool:
    """Does a step of ``kind`` record a temperature curve to plot?"""
    return kind == "reflow"


def deposit_alloy(kind: str, parameters: Mapping[str, Any]) -> str | None:
    """The alloy a print or place step puts on the wafer (None for other kinds)."""
    key = {"print": "paste_alloy", "place": "ball_alloy"}.get(kind)
    value = parameters.get(key) if key else None
    return value if isinstance(value, str) else None


def solidus_c(alloy: str) -> float | None:
    """The alloy's solidus from the alloy library (None if the library does not know it)."""
    library = default_alloys()
    return library[alloy].solidus_c if alloy in library else None


def solidus_assumed(alloy: str) -> bool:
    """Whether no source confirmed the alloy's solidus (../shared/specs/process-data.md asks
    that an assumed figure say so wherever it is used)."""
    library = default_alloys()
    return alloy in library and "solidus_c" in library[alloy].assumed


def short_result(kind: str | None, m: Mapping[str, Any]) -> str:
    """One short phrase for a step's main result (the live view and the summary table)."""
    if kind == "print" and "vol_mean_pct" in m:
        return f"SPI mean {m['vol_mean_pct']:.1f} %, bridges {m.get('bridges', 0)}"
    if kind == "place" and "missing" in m:
        return f"{m.get('missing', 0)} missing, {m.get('extra', 0)} extra balls"
    if kind == "reflow" and "peak_c" in m:
        return f"peak {m['peak_c']:.1f} °C, TAL {m.get('tal_s', 0):.0f} s"
    if kind == "clean" and "ionic_ug_cm2" in m:
        return f"residue {m['ionic_ug_cm2']:.2f} µg/cm²"
    if kind == "strip" and "mask_residue_pct" in m:
        residue = m.get("ionic_ug_cm2", 0)
        return f"mask left {m['mask_residue_pct']:.1f} %, residue {residue:.2f} µg/cm²"
    if kind == "barrier" and "ni_um" in m:
        return f"Ni {m['ni_um']:.2f} µm, Au {m.get('au_um', 0):.3f} µm ({m.get('batch_id', '')})"
    return ""

"""A judgment of a step's measured results, and the window checks the kinds judge with.

Each step kind (``sequences.kinds``) judges its tool's result with these pure
helpers: each finding names the measurement, its value and the window it
missed, so a held wafer's event says exactly what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Judgment:
    ok: bool
    findings: tuple[str, ...] = ()  # what was out of window
    measurements: dict[str, Any] = field(default_factory=dict)
    repair: bool = False  # place only: try the mounter's repair, then judge again

    @property
    def why(self) -> str:
        return "; ".join(self.findings) if self.findings else "within every window"


def window(name: str, value: float, limits: tuple[float, float], unit: str) -> list[str]:
    low, high = limits
    if low <= value <= high:
        return []
    return [f"{name} {value:g}{unit} outside {low:g}-{high:g}{unit}"]


def at_most(name: str, value: float, limit: float, unit: str = "") -> list[str]:
    return [] if value <= limit else [f"{name} {value:g}{unit} above the limit {limit:g}{unit}"]


def at_least(name: str, value: float, limit: float, unit: str = "") -> list[str]:
    return [] if value >= limit else [f"{name} {value:g}{unit} below the minimum {limit:g}{unit}"]


def same_wafer(expected: str, got: str) -> list[str]:
    return [] if got == expected else [f"the tool reported wafer '{got}', expected '{expected}'"]

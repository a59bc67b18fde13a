"""The EP-25 plater's process figures and records, for the simulated tool (sim/plater.py).

Figures from ../shared/specs/barrier-plater.md; the ones it leaves open are
chosen in sim/plater.py's docstring and docs/simulator.md ("Barrier plater").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

STEP_S = 1.0
AMBIENT_C = 25.0
MODEL_ID = "BARRIERTEK,EP-25"
FIRMWARE = "1.3.0"
EVENT_LOG_SIZE = 1000
BATCH_MAX = 25
ID_MAX = 16
LINE_MAX = 512

NI_RATE_UM_H = 15.0  # at 85 °C, fresh bath
NI_RATE_PER_C = 1.08
NI_RATE_PER_MTO = 0.95
MTO_PER_WAFER_UM = 0.004
MTO_WARN, MTO_LIFE = 5.5, 6.0
PH_FRESH, PH_LOW = 4.8, 4.4
HEAT_C_S = {"ni": 0.03, "au": 0.05}
COOL_C_S = {"ni": 0.01, "au": 0.02}
READY_BAND_C = 1.0  # START and the BATH event
RUN_BAND_C = 3.0  # 700 / 710 while RUNNING
LEVEL_PER_WAFER_PCT = 0.1
LEVEL_LOW_PCT = 20.0
REPLENISH_S = 3600.0
NI_SPREAD, AU_SPREAD = 0.05, 0.10

RANGES = {"ni_um": (1.0, 8.0), "au_um": (0.02, 0.15), "ni_temp_c": (80.0, 90.0),
          "au_temp_c": (75.0, 88.0)}

ALARM_TEXT = {
    400: "DOOR OPEN",
    700: "NI BATH TEMP OUT",
    710: "AU BATH TEMP OUT",
    720: "NI PH OUT OF RANGE",
    730: "TANK LEVEL LOW",
    740: "NI BATH LIFE",
    741: "NI MTO HIGH",
    900: "EMERGENCY STOP",
}
ERROR_TEXT = {1: "SYNTAX", 2: "UNKNOWN", 3: "RANGE", 4: "WRONG STATE", 5: "NOT READY",
              6: "ALARM ACTIVE", 9: "BUSY LINK"}


class State(StrEnum):
    IDLE = "IDLE"
    LOADED = "LOADED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ALARM = "ALARM"
    MAINT = "MAINT"


STEPS = ("PRECLEAN", "ACTIVATE", "NI_PLATE", "RINSE_1", "AU_IMMERSION", "RINSE_2", "DRY")
FIXED_S = {"PRECLEAN": 120.0, "ACTIVATE": 90.0, "RINSE_1": 60.0, "RINSE_2": 60.0, "DRY": 300.0}


def gold_time_s(au_um: float) -> float:
    return 600.0 if au_um <= 0.05 + 1e-9 else 900.0 if au_um <= 0.10 + 1e-9 else 1200.0


def nickel_rate_um_s(bath_c: float, mto: float) -> float:
    return NI_RATE_UM_H / 3600.0 * NI_RATE_PER_C ** (bath_c - 85.0) * NI_RATE_PER_MTO ** mto


class Refused(Exception):
    """``ERR <code> <text>``: nothing was changed."""

    def __init__(self, code: int, why: str = "") -> None:
        super().__init__(why)
        self.code = code
        self.why = why

    @property
    def line(self) -> str:
        return f"ERR {self.code:02d} {ERROR_TEXT[self.code]}"


@dataclass
class Recipe:
    ni_um: float = 3.0
    au_um: float = 0.08
    ni_temp_c: float = 85.0
    au_temp_c: float = 80.0


@dataclass
class Batch:
    batch_id: str
    wafers: list[str]
    step: int = -1  # index into STEPS while running
    step_elapsed_s: float = 0.0
    ni_um: float = 0.0
    au_um: float = 0.0
    pending_alarms: list[int] = field(default_factory=list)  # fault plan: half way through


@dataclass
class Result:
    batch_id: str
    status: str
    wafers: dict[str, tuple[float, float]]  # wafer id -> (ni µm, au µm)

    def line(self) -> str:
        ni = [v[0] for v in self.wafers.values()]
        au = [v[1] for v in self.wafers.values()]
        return (f"OK {self.batch_id} {self.status} {sum(ni) / len(ni):.3f} {min(ni):.3f} "
                f"{max(ni):.3f} {sum(au) / len(au):.3f} {len(ni)}")


def spread_factors(rng: random.Random, n: int, spread: float) -> list[float]:
    """n factors around 1, mean exactly 1, each within ±spread of it."""
    draws = [rng.uniform(-spread / 2, spread / 2) for _ in range(n)]
    mean = sum(draws) / n
    return [1.0 + d - mean for d in draws]


def arity(args: list[str], count: int) -> None:
    if len(args) != count:
        raise Refused(1, f"expected {count} field(s), got {len(args)}")


def within(value: float, setpoint: float, band: float) -> bool:
    return abs(value - setpoint) <= band + 1e-6  # the integration's rounding is no excursion


def good_id(text: str) -> bool:
    return 0 < len(text) <= ID_MAX and text.isprintable() and "," not in text

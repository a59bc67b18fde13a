"""How long until a tool in setup is ready: the live view's estimate, in tool seconds.

The oven's spec (../shared/specs/reflow-oven.md) says READY comes once every
enabled zone has stayed within ±2.0 °C of its setpoint for 60 s, that zones heat
quickly and cool slowly, and that a high-lead (~345 °C) to eutectic (~225 °C)
change typically takes 15–25 minutes. It gives no rate. So, written down here and
in docs/operators.md:

* each zone is taken to approach its setpoint as a first-order lag;
* cooling's time constant is fitted to the spec's one example: 120 °C down to
  within 2 °C plus the 60 s hold in 15–25 min gives 205–352 s;
* heating's is *assumed* 60–120 s ("quickly"; the spec gives no figure).

An estimate is therefore a range (soonest, latest), from the zones last read and
counted down since; without a reading it is the changeover's nominal time
(15–25 min for a profile change) counted from its start. Either way it is an
estimate with its basis named, never a promise: the oven says READY, not this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

STABLE_BAND_C = 2.0  # spec: every enabled zone within ±2.0 °C ...
STABLE_HOLD_S = 60.0  # ... for 60 s
SPEC_EXAMPLE_GAP_C = 345.0 - 225.0  # spec: high-lead to eutectic ...
SPEC_EXAMPLE_S = (15 * 60.0, 25 * 60.0)  # ... typically takes 15-25 minutes
HEAT_TAU_S = (60.0, 120.0)  # assumed: the spec says only that zones heat quickly


def _fitted_tau(total_s: float) -> float:
    return (total_s - STABLE_HOLD_S) / math.log(SPEC_EXAMPLE_GAP_C / STABLE_BAND_C)


COOL_TAU_S = (_fitted_tau(SPEC_EXAMPLE_S[0]), _fitted_tau(SPEC_EXAMPLE_S[1]))  # ~205-352 s


@dataclass(frozen=True)
class ReadyIn:
    """Tool seconds until ready, as a range, and what the figure rests on."""

    soonest_s: float
    latest_s: float
    basis: str  # "zones" (measured zones and the heating model) or "nominal" (time only)

    def text(self) -> str:
        """``ready in 6–11 min`` (``under 1 min`` at the end: the oven decides)."""
        low, high = (_minutes(self.soonest_s), _minutes(self.latest_s))
        if high <= 0:
            return "ready within 1 min"
        return f"ready in {low}–{high} min" if low != high else f"ready in ~{high} min"


def _minutes(seconds: float) -> int:
    return math.ceil(seconds / 60.0 - 1e-9) if seconds > 0 else 0


def zone_ready_s(pv_c: float, sp_c: float, tau_s: tuple[float, float]) -> tuple[float, float]:
    """Seconds for one zone to come within the band of its setpoint (first-order lag)."""
    gap = abs(pv_c - sp_c)
    if gap <= STABLE_BAND_C:
        return 0.0, 0.0
    factor = math.log(gap / STABLE_BAND_C)
    return tau_s[0] * factor, tau_s[1] * factor


def oven_ready_in(zones_c: Sequence[float | None], setpoints_c: Sequence[float],
                  read_ago_s: float) -> ReadyIn | None:
    """From the zones read ``read_ago_s`` tool seconds ago and the profile's setpoints;
    None when a zone's reading is missing (a failed thermocouple: the oven will not be
    ready on its own, its alarm says so)."""
    soonest = latest = 0.0
    settled = True
    for pv, sp in zip(zones_c, setpoints_c, strict=False):
        if sp <= 0:  # a zone that is off takes no part in READY
            continue
        if pv is None:
            return None
        tau = HEAT_TAU_S if sp > pv else COOL_TAU_S
        low, high = zone_ready_s(pv, sp, tau)
        settled = settled and high == 0.0
        soonest, latest = max(soonest, low), max(latest, high)
    # The 60 s hold follows; zones already in the band may have held it for a while.
    hold_low = 0.0 if settled else STABLE_HOLD_S
    return ReadyIn(max(0.0, soonest + hold_low - read_ago_s),
                   max(0.0, latest + STABLE_HOLD_S - read_ago_s), "zones")


def nominal_ready_in(nominal_s: tuple[float, float], elapsed_s: float) -> ReadyIn:
    """From the changeover's nominal time alone, counted from its start."""
    return ReadyIn(max(0.0, nominal_s[0] - elapsed_s), max(0.0, nominal_s[1] - elapsed_s),
                   "nominal")

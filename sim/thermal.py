"""Reflow oven physics: zone air, the atmosphere, and a wafer's thermal lag.

All updates are exact first-order steps (``x = target + (x - target) * a`` with
``a = exp(-dt / tau)``), so a fixed 1 s step is stable and cheap. Figures chosen
for the RF-10N simulator (documented in docs/simulator.md, "Modbus tools"):

* zone air heats with tau 90 s and cools with tau 250 s: a high-lead (~345 C) to
  eutectic (~225 C) changeover then takes about 18 minutes to READY;
* cooling zones 9-10 are actively cooled, tau 60 s both ways;
* the air a wafer sees is interpolated between zone centres (convection mixes
  the air at zone boundaries); the entrance is half way between room and zone 1;
* the wafer follows that air with tau 30 s, so its peak lags and stays below the
  hottest setpoint and its heating rate stays near 2-3 C/s for usual profiles;
* O2 falls toward 20 ppm with tau 8 s while purging (20.06 ppm, read as 20,
  120 s after switching on from air: the spec's "about 20 ppm within 120 s")
  and climbs back toward air (209,000 ppm) with tau 120 s without N2.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

STEP_S = 1.0
AMBIENT_C = 25.0
ZONES = 10
HEATING_ZONES = 8  # zones 1-8 heat, 9-10 cool
ZONE_LENGTH_MM = 400.0
TUNNEL_MM = ZONES * ZONE_LENGTH_MM

TAU_HEAT_S = 90.0
TAU_COOL_S = 250.0
TAU_COOLING_ZONE_S = 60.0
TAU_WAFER_S = 30.0
STUCK_HEATER_EXCESS_C = 40.0  # where a zone with a welded heater relay settles above setpoint

O2_AIR_PPM = 209_000.0
O2_PURGED_PPM = 20.0
TAU_PURGE_S = 8.0  # reflow-oven.md: "about 20 ppm within 120 s" (20.06 ppm then)
TAU_INGRESS_S = 120.0

A_HEAT = math.exp(-STEP_S / TAU_HEAT_S)
A_COOL = math.exp(-STEP_S / TAU_COOL_S)
A_COOLING_ZONE = math.exp(-STEP_S / TAU_COOLING_ZONE_S)
A_WAFER = math.exp(-STEP_S / TAU_WAFER_S)
A_PURGE = math.exp(-STEP_S / TAU_PURGE_S)
A_INGRESS = math.exp(-STEP_S / TAU_INGRESS_S)

# Closer than this to its target, air (or O2) is put exactly on it: the state stops changing,
# which lets the oven skip quiet time in one go with the same result as stepping through it.
SETTLED_C = 0.001
SETTLED_O2_PPM = 0.01

CURVE_INTERVAL_S = 5
CURVE_MAX_SAMPLES = 250

_CENTRE_0 = ZONE_LENGTH_MM / 2  # centre of zone 1
_LAST_CENTRE = TUNNEL_MM - ZONE_LENGTH_MM / 2


def zone_of(position_mm: float) -> int:
    """0-based zone index of a belt position (zone i spans 400(i-1)..400i mm)."""
    return min(ZONES - 1, max(0, int(position_mm // ZONE_LENGTH_MM)))


class ZoneSettings:
    """For one setting of the zones (setpoints, heaters cut, failed thermocouples, stuck
    heaters): (zone, air target, cooling zone?) of every zone; the zones with a setpoint
    (READY watches them; ``never_stable`` when one cannot be read or the heaters are cut),
    and (zone, limit) for over-temperature: ``over_c`` above setpoint, where it reads."""

    __slots__ = ("heating", "never_stable", "over_limits", "watched")

    def __init__(self, setpoints: list[float], heaters_off: bool, tc_failed: set[int],
                 stuck_heaters: set[int], over_c: float) -> None:
        self.heating: list[tuple[int, float, bool]] = []
        for i, sp in enumerate(setpoints):
            if sp <= 0 or heaters_off or i in tc_failed:
                self.heating.append((i, AMBIENT_C, False))
            else:
                target = sp + STUCK_HEATER_EXCESS_C if i in stuck_heaters else sp
                self.heating.append((i, target, i >= HEATING_ZONES))
        self.watched = [(i, sp) for i, sp in enumerate(setpoints) if sp > 0]
        self.never_stable = heaters_off or any(i in tc_failed for i, _ in self.watched)
        self.over_limits = [(i, sp + over_c) for i, sp in self.watched if i not in tc_failed]


def zone_air_step(air_c: float, target_c: float, cooling_zone: bool) -> float:
    """One step of a zone's air toward ``target_c``: fast up, slow down."""
    air = [air_c]
    zones_air_step(air, [(0, target_c, cooling_zone)])
    return air[0]


def zones_air_step(air_c: list[float], zones: Iterable[tuple[int, float, bool]]) -> None:
    """One step of each zone's air in ``air_c``: zones are (index, target, cooling zone?).
    One call for all of them: the oven steps every second of tool time."""
    for i, target_c, cooling_zone in zones:
        air = air_c[i]
        if air == target_c:
            continue  # on its target a zone stays there: the sum below would give it exactly
        if cooling_zone:
            a = A_COOLING_ZONE
        else:
            a = A_HEAT if target_c > air else A_COOL
        air = target_c + (air - target_c) * a
        air_c[i] = target_c if abs(air - target_c) < SETTLED_C else air


def air_at(position_mm: float, zone_air_c: list[float]) -> float:
    """Air temperature a wafer sees at a belt position (linear between zone centres)."""
    if position_mm < _CENTRE_0:
        entrance = 0.5 * (AMBIENT_C + zone_air_c[0])
        return entrance + (zone_air_c[0] - entrance) * max(0.0, position_mm) / _CENTRE_0
    if position_mm >= _LAST_CENTRE:
        return zone_air_c[-1]
    i = int((position_mm - _CENTRE_0) // ZONE_LENGTH_MM)
    frac = (position_mm - _CENTRE_0 - i * ZONE_LENGTH_MM) / ZONE_LENGTH_MM
    return zone_air_c[i] + (zone_air_c[i + 1] - zone_air_c[i]) * frac


def o2_step(o2_ppm: float, purging: bool) -> float:
    target = O2_PURGED_PPM if purging else O2_AIR_PPM
    o2_ppm = target + (o2_ppm - target) * (A_PURGE if purging else A_INGRESS)
    return target if abs(o2_ppm - target) < SETTLED_O2_PPM else o2_ppm


def time_above(t0: float, t1: float, threshold: float, dt: float = STEP_S) -> float:
    """Time above ``threshold`` within a step whose temperature runs linearly t0 -> t1."""
    above0, above1 = t0 > threshold, t1 > threshold
    if above0 and above1:
        return dt
    if above0 == above1:
        return 0.0
    hot, cold = (t0, t1) if above0 else (t1, t0)
    return dt * (hot - threshold) / (hot - cold)


@dataclass
class WaferPass:
    """One wafer on the belt and what the profiler measures of it."""

    wafer_id: str
    number: int  # 1-based count of wafers this oven has taken in
    profile_id: int
    tal_threshold_c: float
    temp_c: float = AMBIENT_C
    position_mm: float = 0.0
    elapsed_s: int = 0
    peak_c: float = AMBIENT_C
    tal_s: float = 0.0
    ramp_max_c_s: float = 0.0
    cool_max_c_s: float = 0.0
    o2_max_ppm: float = 0.0
    flags: int = 0
    curve_c: list[float] = field(default_factory=list)
    pending_alarms: list[int] = field(default_factory=list)  # fault plan: raise mid-tunnel

    def __post_init__(self) -> None:
        self.peak_c = self.temp_c
        self.curve_c.append(self.temp_c)

    def step(self, air_c: float, o2_ppm: float) -> None:
        """The wafer spends one step in air at ``air_c``; the profiler records it."""
        before = self.temp_c
        after = air_c + (before - air_c) * A_WAFER
        self.temp_c = after
        self.elapsed_s += 1
        rate = (after - before) / STEP_S
        if rate > self.ramp_max_c_s:
            self.ramp_max_c_s = rate
        elif -rate > self.cool_max_c_s:
            self.cool_max_c_s = -rate
        if after > self.peak_c:
            self.peak_c = after
        threshold = self.tal_threshold_c
        if before > threshold or after > threshold:  # else nothing above it: adds 0
            self.tal_s += time_above(before, after, threshold)
        if o2_ppm > self.o2_max_ppm:
            self.o2_max_ppm = o2_ppm
        if self.elapsed_s % CURVE_INTERVAL_S == 0 and len(self.curve_c) < CURVE_MAX_SAMPLES:
            self.curve_c.append(after)

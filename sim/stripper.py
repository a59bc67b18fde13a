"""FC-2 cleaner/stripper: the FC-1 with a second chemistry that strips the polymer
mask of a ball-mount-into-mask flow (spec: flux-cleaner-fc2.md).

It is the FC-1 model (``sim/cleaner.py``) with what the FC-2 page adds: MODE
(read at LOAD, writable only in IDLE or READY), STRIP_TEMP_SP and STRIP_TIME, the
STRIPPING phase, a strip tank heating and cooling on its own, the mask residue,
stripper life and alarms 650/660. Figures chosen where the spec gives none
(documented in docs/simulator.md, "The FC-2"):

* the strip tank starts at the power-up 50.0 C setpoint, heats at 0.05 C/s and
  cools at 0.01 C/s (the spec's figures) toward its setpoint;
* mask left = 100 % * exp(-D / 70 s), D = integral of 2 ** ((T_tank - 50 C) / 10 C)
  dt over the strip (seconds at 50 C): 600 s at 50 C leaves 0.02 %, which the
  0.1 % register shows as 0; 300 s at 50 C, or 600 s at 40 C, leaves 1.4 %;
* the stripper removes flux too, at the wash's rate for the strip tank's
  temperature, so RESULT_IONIC after a strip is the same kind of figure;
* a strip uses stripper, not saponifier: 650 is checked before a strip START,
  640 before a flux-clean START; 660 is the strip tank more than 5 C off its
  setpoint while stripping (as 610 is for the bath while washing);
* READY means the tank the current MODE would use is within 2 C of its setpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.cleaner import (
    ALARM_TEXT,
    AMBIENT_C,
    DI_LOW_MOHM_CM,
    MEASUREMENT_NOISE,
    START_BAND_C,
    STEP_S,
    CleanerModel,
    CleanerState,
    Cycle,
    approach,
    wash_rate,
)
from sim.modbus_map import Table, addresses, busy_unless, to_u16

FLUX_CLEAN, RESIST_STRIP = 1, 2
HR_MODE, HR_STRIP_TEMP_SP, HR_STRIP_TIME = 6, 7, 8

STRIPPER_LIFE_WAFERS = 300
STRIP_BAND_C = 5.0  # 660 when the strip tank strays further while stripping
MASK_TAU_S = 70.0  # strip dose (s at 50 C) that leaves 1/e of the mask
STRIP_REFERENCE_C = 50.0

FC2_ALARM_TEXT = {**ALARM_TEXT, 650: "STRIPPER LOW", 660: "STRIP TANK TEMPERATURE OUT OF RANGE"}


def strip_rate(tank_c: float) -> float:
    """Strip dose per second: 1 at 50 C, doubling every 10 C."""
    return 2.0 ** ((tank_c - STRIP_REFERENCE_C) / 10.0)


def mask_left_pct(dose_s: float) -> float:
    """Wafer area (%) with mask left after a strip of this dose (seconds at 50 C)."""
    return 100.0 * math.exp(-dose_s / MASK_TAU_S)


@dataclass
class _StripCycle(Cycle):
    strip_dose_s: float = 0.0


class StripperModel(CleanerModel):
    """The FC-2: ``read``/``write`` are the FC-1's register map plus its own."""

    MODEL = "FC-2"
    ALARM_TEXT = FC2_ALARM_TEXT
    HOLDING_MAP = addresses(range(0, 9), range(10, 18))
    INPUT_MAP = addresses(range(0, 10), range(10, 18), range(20, 22))
    DISCRETE_MAP = addresses(range(5))
    LIMITS = {**CleanerModel.LIMITS, HR_MODE: (1, 2), HR_STRIP_TEMP_SP: (300, 800),
              HR_STRIP_TIME: (60, 1800)}
    NAMES = {**CleanerModel.NAMES, HR_MODE: "MODE", HR_STRIP_TEMP_SP: "STRIP_TEMP_SP",
             HR_STRIP_TIME: "STRIP_TIME"}
    # Power-up: FLUX_CLEAN, strip 50.0 C for 600 s (the spec's dry-film figures).
    POWER_UP_RECIPE = {**CleanerModel.POWER_UP_RECIPE, HR_MODE: FLUX_CLEAN, HR_STRIP_TEMP_SP: 500,
                       HR_STRIP_TIME: 600}

    register_span = {Table.COILS: 0, Table.DISCRETE_INPUTS: 5, Table.HOLDING: 18, Table.INPUT: 22}

    def __init__(self, seed: int = 0, *, start: float = 0.0,
                 chemistry_alarm_at: str = "start") -> None:
        super().__init__(seed, start=start, chemistry_alarm_at=chemistry_alarm_at)
        self._strip_c = self._recipe[HR_STRIP_TEMP_SP] / 10.0
        self._strip_heater_ok = True
        self._stripper_wafers = 0
        self._mode_active = 0  # the mode the wafer in the chamber was loaded with
        self._result_mask = 0.0

    # --- tanks and modes -------------------------------------------------------------------------

    def _strip_sp(self) -> float:
        return self._recipe[HR_STRIP_TEMP_SP] / 10.0

    def _strip_ready(self) -> bool:
        return abs(self._strip_c - self._strip_sp()) <= START_BAND_C

    def _stripper_low(self) -> bool:
        return self._stripper_wafers >= STRIPPER_LIFE_WAFERS

    def _ready(self) -> bool:
        if self._recipe[HR_MODE] == RESIST_STRIP:
            return self._strip_ready()
        return self._bath_ready()

    def _strip_target(self) -> float:
        return self._strip_sp() if self._strip_heater_ok else AMBIENT_C

    def _heat_tanks(self) -> None:
        super()._heat_tanks()
        self._strip_c = approach(self._strip_c, self._strip_target())

    def _tanks_settled(self) -> bool:
        return super()._tanks_settled() and self._strip_c == self._strip_target()

    # --- the cycle -------------------------------------------------------------------------------

    def _expose(self, cycle: Cycle, phase: CleanerState, steps: int = 1) -> None:
        if phase is CleanerState.STRIPPING:
            assert isinstance(cycle, _StripCycle)
            strip = strip_rate(self._strip_c) * STEP_S
            wash = wash_rate(self._strip_c, cycle.pressure_bar) * STEP_S
            for _ in range(steps):
                cycle.strip_dose_s += strip
                cycle.exposure += wash
        else:
            super()._expose(cycle, phase, steps)

    def _running_alarm(self, cycle: Cycle, phase: CleanerState) -> tuple[int, str] | None:
        if phase is CleanerState.STRIPPING and abs(self._strip_c - cycle.wash_sp_c) > STRIP_BAND_C:
            return 660, f"strip tank {self._strip_c:.1f} C"
        return super()._running_alarm(cycle, phase)

    def _measure(self, cycle: Cycle) -> None:
        super()._measure(cycle)
        if isinstance(cycle, _StripCycle):
            noise = 1.0 + (2.0 * self._rng.random() - 1.0) * MEASUREMENT_NOISE
            self._result_mask = min(100.0, mask_left_pct(cycle.strip_dose_s) * noise)
        else:
            self._result_mask = 0.0

    def _start_tank_ready(self) -> tuple[bool, str]:
        if self._mode_active == RESIST_STRIP:  # the wash bath is not checked
            return self._strip_ready(), (
                f"strip tank {self._strip_c:.1f} C, not within {START_BAND_C} C of "
                f"{self._strip_sp():.1f} C")
        return super()._start_tank_ready()

    def _pre_start_checks(self) -> None:
        if self._mode_active != RESIST_STRIP:
            super()._pre_start_checks()
            return
        if self._di_mohm < DI_LOW_MOHM_CM:
            self._latch(630, f"{self._di_mohm:.1f} MOhm.cm")
        if self._stripper_low():
            self._latch(650, f"{self._stripper_wafers} wafers since replenished")

    def _new_cycle(self, pending: tuple[int, ...]) -> Cycle:
        if self._mode_active != RESIST_STRIP:
            return super()._new_cycle(pending)
        assert self._wafer is not None
        r = self._recipe
        self._stripper_wafers += 1
        self._event(f"START {self._wafer!r}: strip {r[HR_STRIP_TIME]} s at "
                    f"{r[HR_STRIP_TEMP_SP] / 10:.1f} C, rinse {r[2]} s, dry {r[3]} s")
        return _StripCycle(wafer_id=self._wafer, started=self._t, wash_s=r[HR_STRIP_TIME],
                           rinse_s=r[2], dry_s=r[3], wash_sp_c=r[HR_STRIP_TEMP_SP] / 10.0,
                           pressure_bar=r[4] / 10.0, pending_alarms=pending,
                           first_phase=CleanerState.STRIPPING)

    def _check_write(self, span: range, state: CleanerState) -> None:
        if HR_MODE in span:
            busy_unless(state in (CleanerState.IDLE, CleanerState.READY),
                        f"MODE: state {state.name} (MODE is read at LOAD)")

    def _loaded(self) -> None:
        self._mode_active = self._recipe[HR_MODE]

    def _unloaded(self) -> None:
        self._mode_active = 0

    def _cause_present(self, code: int) -> bool:
        if code == 650:
            return self._stripper_low()
        if code == 660:
            return (not self._strip_heater_ok
                    or abs(self._strip_c - self._strip_sp()) > STRIP_BAND_C)
        return super()._cause_present(code)

    # --- registers -------------------------------------------------------------------------------

    def _status_words(self) -> list[int]:
        return [*super()._status_words(), to_u16(self._strip_c, 10),
                to_u16(self._result_mask, 10), self._mode_active]

    def _discrete_bits(self) -> list[bool]:
        return [*super()._discrete_bits(), self._stripper_low()]

    # --- faults ----------------------------------------------------------------------------------

    def fail_strip_heater(self, now: float) -> None:
        """The strip tank heater fails: the tank cools; 660 if it strays while stripping."""
        self.advance(now)
        self._strip_heater_ok = False

    def repair_strip_heater(self, now: float) -> None:
        self.advance(now)
        self._strip_heater_ok = True

    def replenish_stripper(self, now: float) -> None:
        self.advance(now)
        self._stripper_wafers = 0
        self._event("stripper replenished")

    # --- for tests: a read-only look inside ------------------------------------------------------

    def strip_tank_c(self, now: float) -> float:
        self.advance(now)
        return self._strip_c


CLEANER_MODELS: dict[str, type[CleanerModel]] = {"FC-1": CleanerModel, "FC-2": StripperModel}


def cleaner_model(name: str) -> type[CleanerModel]:
    """The simulated cleaner of a model name (any case)."""
    try:
        return CLEANER_MODELS[name.upper()]
    except KeyError:
        raise ValueError(f"no simulated cleaner model {name!r} "
                         f"(known: {', '.join(CLEANER_MODELS)})") from None

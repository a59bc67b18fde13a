"""An FC-2 cleaner/stripper written from flux-cleaner-fc2.md and flux-cleaner.md alone
(the FC-1 of ``fc1.py`` with a resist strip). Pure: no I/O, no clock.

What the FC-2 page says, kept to the letter:

* MODE (HR 6) may be written only in IDLE or READY, else exception 06; it is read at
  LOAD and the wafer keeps it (MODE_ACTIVE, IR 9; 0 with the chamber empty);
* a strip runs STRIPPING (8) -> RINSING -> DRYING -> DONE; START needs the strip tank
  within ±2 °C of STRIP_TEMP_SP and does not look at the wash bath;
* the strip tank heats at 0.05 °C/s and cools at 0.01 °C/s, apart from the wash bath;
* mask residue falls with strip temperature and time: none at 50 °C for 600 s, some
  below half that time or 10 °C colder; a strip measures RESULT_IONIC too, a flux
  clean leaves RESULT_MASK_RESIDUE 0;
* the stripper lasts 300 wafers, then 650 at the next START.

Strict choices where the pages are silent (docs/protocols.md, "Independent tools"):

* MODE is kept from before power-up, RESIST_STRIP by default: a host must write it for
  every LOAD, never lean on a power-up value;
* a write of MODE outside IDLE and READY is 06 even with the value it holds, and it
  refuses its whole FC 16 block (nothing written); ALARM is neither IDLE nor READY;
* ABORT is allowed in WASHING, RINSING and DRYING only, as the FC-1's table lists:
  while STRIPPING it is 06 (the page adds no state to ABORT's row);
* READY (with the chamber empty) follows the tank of the MODE written: the strip tank
  in RESIST_STRIP, the wash bath in FLUX_CLEAN; UNLOAD goes to READY or IDLE the same way;
* both tanks power up cold (25 °C); the strip tank heats toward STRIP_TEMP_SP (50 °C by
  default) at once;
* a strip START refused for the tank's temperature is 06, as the FC-1's bath (no 660);
  660 is raised while STRIPPING when the tank leaves ±2 °C of STRIP_TEMP_SP: the cycle
  ends (status 3), CLEAR is refused until the tank is back in its band;
* 650 only at a strip START (a flux clean needs no stripper), the wafer stays LOADED,
  CLEAR refused while STRIPPER_LOW; the saponifier's 640 latches in any state as on the
  FC-1, and a strip under way (which needs none) finishes before it latches;
* a strip ended early (ABORT is refused, so by an alarm) reports the residue and ionic
  measured after the strip time it had; the stripper counts every strip reaching DONE.

Fault plans (``tests/independent/faults.py``) added to the FC-1's ``door``, ``di``,
``chem``: ``stripper`` (STRIPPER_LOW = 1 for the plan's duration) and ``tank`` (the
strip tank's heater cut for the duration: it cools at 0.01 °C/s, then heats again);
their own event ``strip`` counts strip STARTs (``tank@strip1+30/300``).
"""

from __future__ import annotations

from tests.independent import fc1
from tests.independent.faults import Fault
from tests.independent.fc1 import (
    AMBIENT_C,
    BAND_C,
    COOL_C_S,
    DONE,
    DRYING,
    HEAT_C_S,
    IDLE,
    LOAD,
    LOADED,
    READY,
    RINSING,
    START,
    WASHING,
    ionic_residue,
)
from tests.independent.modbus_codec import SERVER_DEVICE_BUSY, ModbusError

STRIPPING = 8
FLUX_CLEAN, RESIST_STRIP = 1, 2
MODE_NAMES = {FLUX_CLEAN: "clean", RESIST_STRIP: "strip"}
HR_MODE, HR_STRIP_SP, HR_STRIP_TIME = 6, 7, 8
STRIPPER_WAFERS = 300
FAULTS = fc1.FAULTS | {"stripper", "tank"}


def mask_residue_pct(strip_c: float, strip_s: float) -> float:
    """% of the wafer area with mask left: none at 50 °C for 600 s (or the same dose); it
    appears below about half the time, or 10 °C colder (the dose halves per 10 °C)."""
    dose = strip_s * 2.0 ** ((strip_c - 50.0) / 10.0)
    return 100.0 * max(0.0, 1.0 - dose / 300.0)


class Stripper(fc1.Cleaner):
    model = "FC-2"
    hr_ranges = fc1.HR_RANGES | {HR_MODE: (1, 2), HR_STRIP_SP: (300, 800),
                                  HR_STRIP_TIME: (60, 1800)}
    hr_addresses = fc1.HR_ADDRESSES | {HR_MODE, HR_STRIP_SP, HR_STRIP_TIME}
    ir_addresses = fc1.IR_ADDRESSES | {7, 8, 9}
    di_addresses = fc1.DI_ADDRESSES | {4}
    running = (STRIPPING, WASHING, RINSING, DRYING)
    fault_names = FAULTS

    def __init__(self, *, mode: int = RESIST_STRIP, tank_c: float = AMBIENT_C,
                 alarm_at_wafer: dict[int, int] | None = None, bath_c: float = AMBIENT_C,
                 interrupted_to: int = DONE, faults: list[str | Fault] | None = None,
                 tick_s: float = 0.0, pending: str = "busy") -> None:
        super().__init__(bath_c=bath_c, alarm_at_wafer=alarm_at_wafer,
                         interrupted_to=interrupted_to, faults=faults, tick_s=tick_s,
                         pending=pending)
        self.hr |= {HR_MODE: mode, HR_STRIP_SP: 500, HR_STRIP_TIME: 600}
        self.tank = tank_c
        self.mode_active = 0
        self.strip_c = tank_c
        self.stripper_used = 0
        self.result_residue = 0

    # --- inputs -------------------------------------------------------------------
    def stripper_low(self) -> bool:
        return (self.stripper_used >= STRIPPER_WAFERS
                or bool(self.events.active("stripper", self.now)))

    def tank_ok(self) -> bool:
        return abs(self.tank - self.hr[HR_STRIP_SP] / 10.0) <= BAND_C

    def cause_present(self, code: int) -> bool:
        if code == 650:
            return self.stripper_low()
        if code == 660:
            return not self.tank_ok()
        return super().cause_present(code)

    def bath_ok(self) -> bool:
        """The tank the chamber's wafer needs, or (empty) the one MODE selects."""
        mode = self.mode_active or self.hr[HR_MODE]
        return self.tank_ok() if mode == RESIST_STRIP else super().bath_ok()

    def discrete_inputs(self) -> list[bool]:
        return [*super().discrete_inputs(), self.stripper_low()]

    def _input(self, a: int) -> int:
        if a == 7:
            return int(round(self.tank * 10))
        if a == 8:
            return self.result_residue
        if a == 9:
            return self.mode_active
        return super()._input(a)

    # --- time ---------------------------------------------------------------------
    def _step(self, dt: float) -> None:
        sp = self.hr[HR_STRIP_SP] / 10.0
        heater_on = not self.events.active("tank", self.now + dt)
        if heater_on and self.tank < sp:
            self.tank = min(sp, self.tank + HEAT_C_S * dt)
        elif self.tank > (sp if heater_on else AMBIENT_C):
            self.tank = max(sp if heater_on else AMBIENT_C, self.tank - COOL_C_S * dt)
        if self.base_state == STRIPPING and not self.alarm and not self.tank_ok():
            self.now += dt
            self._finish(3)
            self._raise(660, self.interrupted_to)
            return
        super()._step(dt)

    def _finish(self, status: int) -> None:
        if self.mode_active != RESIST_STRIP:
            super()._finish(status)
            self.result_residue = 0
            return
        strip_s = self.phases[0][1]
        done_s = min(strip_s, sum(t for _, t in self.phases) - self.remaining)
        self.base_state = DONE
        self.remaining = 0.0
        self.result_status = status
        self.result_ionic = min(65535, int(round(ionic_residue(self.strip_c, done_s) * 100)))
        self.result_residue = min(1000, int(round(mask_residue_pct(self.strip_c, done_s) * 10)))
        self.cycles += 1
        self.stripper_used += 1
        self.log.append(f"done {fc1.text_regs.decode(self.result_id)} status {status} "
                        f"residue {self.result_residue / 10:.1f}%")

    def _interrupt(self, code: int, *, whole_cycle: bool) -> None:
        if not whole_cycle and self.base_state == STRIPPING:
            return  # the saponifier running out does not stop a strip: 640 at its DONE
        super()._interrupt(code, whole_cycle=whole_cycle)

    # --- commands -----------------------------------------------------------------
    def check_writable(self, span: range) -> None:
        if HR_MODE in span and self.state() not in (IDLE, READY):
            self.log.append(f"mode refused in state {self.state()}")
            raise ModbusError(SERVER_DEVICE_BUSY)

    def command(self, code: int) -> None:
        if code == LOAD:
            super().command(code)  # refuses (06) outside IDLE and READY
            self.mode_active = self.hr[HR_MODE]
            self.log[-1] += f" {MODE_NAMES[self.mode_active]}"
        elif code == START and self.mode_active == RESIST_STRIP:
            self._start_strip()
        elif code == fc1.UNLOAD:
            if self.state() != DONE:
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.mode_active = 0  # before the READY/IDLE look: the MODE written decides it
            super().command(code)
        else:
            super().command(code)

    def _start_strip(self) -> None:
        if self.state() != LOADED or not self.tank_ok():
            raise ModbusError(SERVER_DEVICE_BUSY)
        for code, low in ((630, self.resistivity() < 100), (640, self.chemistry_low()),
                          (650, self.stripper_low())):
            if low:
                self._raise(code, LOADED)
                return
        self.phases = [(STRIPPING, float(self.hr[HR_STRIP_TIME])),
                       (RINSING, float(self.hr[2])), (DRYING, float(self.hr[3]))]
        self.strip_c = self.tank
        self.started += 1
        self.remaining = sum(t for _, t in self.phases)
        self.base_state = STRIPPING
        self.log.append(f"strip {fc1.text_regs.decode(self.result_id)}")
        self.events.happened("start", self.now)
        self.events.happened("strip", self.now)


"""FC-1 single-wafer spray flux cleaner: the tool behind its Modbus register map.

The FC-2 (``sim/stripper.py``) is this tool with a second chemistry; it builds on
the hooks marked "FC-2 hook" rather than repeating the cycle, the alarm latch or
the register plumbing.

Pure and lazy like the oven: every entry point takes ``now`` (tool seconds) and
first integrates in fixed 1 s steps. Figures chosen where the spec gives none
(documented in docs/simulator.md, "Modbus tools"):

* the bath heats at 0.05 C/s and cools at 0.01 C/s toward its setpoint (toward
  room temperature with a failed heater); at power-up it is already at the
  default 60.0 C setpoint, so the line can start at once;
* residue left = 0.05 + 25 * exp(-E) ug NaCl-eq/cm2, where 25 ug/cm2 is the flux
  residue of a normal reflow and E = integral of k dt over the wash with
  k = 0.0384/s * 2 ** ((T_bath - 60 C) / 10 C) * sqrt(pressure / 2.5 bar):
  60 C for 120 s leaves about 0.3, 40 C for 120 s about 8;
* rinse water below 10 MOhm.cm adds 0.1 ug/cm2 per MOhm.cm it is short;
* the measurement carries +-5 % noise from ``random.Random(seed)``.

Its injected faults (a fault plan's door and DI water, and what a test or a person does
to the tool) are ``sim/cleaner_faults.py``'s.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from sim.cleaner_faults import DI_NOMINAL_MOHM_CM, CleanerFaults
from sim.modbus_map import (
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    Refusal,
    Table,
    addresses,
    busy_unless,
    check_span,
    check_text_words,
    registers_to_text,
    text_to_registers,
    to_u16,
    u32_words,
)

STEP_S = 1.0
AMBIENT_C = 25.0


class CleanerState(IntEnum):
    IDLE = 0
    READY = 1
    LOADED = 2
    WASHING = 3
    RINSING = 4
    DRYING = 5
    DONE = 6
    ALARM = 7
    STRIPPING = 8  # FC-2 only


class Command(IntEnum):
    LOAD = 1
    START = 2
    UNLOAD = 3
    CLEAR = 4
    ABORT = 5


class ResultStatus(IntEnum):
    NONE = 0
    OK = 1
    ABORTED = 2
    ALARM = 3


ALARM_TEXT = {
    400: "DOOR OPEN",
    610: "BATH TEMPERATURE OUT OF RANGE",
    620: "SPRAY PRESSURE LOW",
    630: "DI RESISTIVITY LOW",
    640: "CHEMISTRY LOW",
}

HR_WASH_TEMP_SP = 0
HR_COMMAND = 5
HR_WAFER_ID = 10
ID_REGISTERS = 8
HOLDING_MAP = addresses(range(0, 6), range(10, 18))
INPUT_MAP = addresses(range(0, 7), range(10, 18), range(20, 22))
DISCRETE_MAP = addresses(range(4))

_LIMITS = {0: (300, 800), 1: (10, 900), 2: (10, 900), 3: (10, 900), 4: (5, 60)}
_NAMES = {0: "WASH_TEMP_SP", 1: "WASH_TIME", 2: "RINSE_TIME", 3: "DRY_TIME",
          4: "SPRAY_PRESSURE"}
# Power-up recipe by holding address: 60.0 C, wash 120 s, rinse 60 s, dry 60 s, 2.5 bar.
_POWER_UP_RECIPE = {0: 600, 1: 120, 2: 60, 3: 60, 4: 25}

BATH_HEAT_C_S = 0.05
BATH_COOL_C_S = 0.01
START_BAND_C = 2.0  # START needs the bath this close to WASH_TEMP_SP
WASH_BAND_C = 5.0  # 610 when the bath strays further while washing
DI_LOW_MOHM_CM = 10.0
DI_NOISE_MOHM_CM = 0.2
CHEMISTRY_LIFE_CYCLES = 500
# When 640 latches once the chemistry is spent (flux-cleaner.md: "Chemistry lasts 500
# cycles; then 640 until replenished"): at the next START (refused; the default), or as
# soon as the cycle that spent it ends (docs/simulator.md).
CHEMISTRY_ALARM_AT = ("start", "end")
RESIDUE_AFTER_REFLOW = 25.0  # ug NaCl-eq/cm2 before cleaning (assumed)
RESIDUE_FLOOR = 0.05
K_WASH_60C = 0.0384  # 1/s at 60 C and 2.5 bar
RINSE_CONTAMINATION_PER_MOHM = 0.1
MEASUREMENT_NOISE = 0.05


def wash_rate(bath_c: float, pressure_bar: float) -> float:
    """Residue removal rate (1/s): doubles every 10 C, grows with the root of spray pressure."""
    return K_WASH_60C * 2.0 ** ((bath_c - 60.0) / 10.0) * math.sqrt(pressure_bar / 2.5)


def approach(value: float, target: float) -> float:
    """One second of a tank heating (0.05 C/s) or cooling (0.01 C/s) toward ``target``."""
    if value < target:
        return min(target, value + BATH_HEAT_C_S * STEP_S)
    return max(target, value - BATH_COOL_C_S * STEP_S)


def residue_left(exposure: float, rinse_short_mohm: float = 0.0) -> float:
    """Ionic residue (ug NaCl-eq/cm2) after a wash of the given exposure (integral of k dt)."""
    return (RESIDUE_FLOOR + RESIDUE_AFTER_REFLOW * math.exp(-exposure)
            + RINSE_CONTAMINATION_PER_MOHM * rinse_short_mohm)


@dataclass
class Cycle:
    """One wafer's cycle. ``wash_s`` / ``wash_sp_c`` are its first phase's: the wash, or
    on the FC-2 the strip (``first_phase`` STRIPPING)."""

    wafer_id: str
    started: float
    wash_s: int
    rinse_s: int
    dry_s: int
    wash_sp_c: float
    pressure_bar: float
    elapsed_s: int = 0
    exposure: float = 0.0
    rinse_short_mohm: float = 0.0
    pending_alarms: tuple[int, ...] = ()
    first_phase: CleanerState = CleanerState.WASHING

    @property
    def total_s(self) -> int:
        return self.wash_s + self.rinse_s + self.dry_s

    def phase(self) -> CleanerState:
        if self.elapsed_s < self.wash_s:
            return self.first_phase
        if self.elapsed_s < self.wash_s + self.rinse_s:
            return CleanerState.RINSING
        return CleanerState.DRYING

    def phase_end(self) -> int:
        """Elapsed seconds at the end of the current phase."""
        ends = (self.wash_s, self.wash_s + self.rinse_s)
        return next((end for end in ends if self.elapsed_s < end), self.total_s)


class CleanerModel(CleanerFaults):
    """The cleaner's state and physics; ``read``/``write`` are its register map."""

    TOOL = "cleaner"
    MODEL = "FC-1"
    ALARM_TEXT: ClassVar[Mapping[int, str]] = ALARM_TEXT
    HOLDING_MAP = HOLDING_MAP
    INPUT_MAP = INPUT_MAP
    DISCRETE_MAP = DISCRETE_MAP
    LIMITS: ClassVar[Mapping[int, tuple[int, int]]] = _LIMITS
    NAMES: ClassVar[Mapping[int, str]] = _NAMES
    POWER_UP_RECIPE: ClassVar[Mapping[int, int]] = _POWER_UP_RECIPE

    function_codes = frozenset({2, 3, 4, 6, 16})
    register_span = {Table.COILS: 0, Table.DISCRETE_INPUTS: 4, Table.HOLDING: 18, Table.INPUT: 22}

    def __init__(self, seed: int = 0, *, start: float = 0.0,
                 chemistry_alarm_at: str = "start") -> None:
        if chemistry_alarm_at not in CHEMISTRY_ALARM_AT:
            raise ValueError(f"chemistry_alarm_at must be one of {CHEMISTRY_ALARM_AT}, "
                             f"got {chemistry_alarm_at!r}")
        self.chemistry_alarm_at = chemistry_alarm_at
        self._rng = random.Random(seed)
        self._t = float(start)
        self._recipe = dict(self.POWER_UP_RECIPE)  # holding address -> word
        self._wafer_id_regs = [0] * ID_REGISTERS
        self._bath_c = self._recipe[HR_WASH_TEMP_SP] / 10.0
        self._heater_ok = True
        self._spray_ok = True
        self._di_mohm = DI_NOMINAL_MOHM_CM
        self._di_noise = 0.0
        self._door_open = False
        self._wafer: str | None = None  # wafer in the chamber
        self._wafer_number = 0
        self._cycle: Cycle | None = None  # running cycle
        self._done = False  # the wafer in the chamber has finished (or ended) its cycle
        # flux-cleaner.md: CLEAR goes "back to LOADED / DONE / IDLE as fits the wafer": an
        # empty chamber reads IDLE after it, whatever the bath, until the next LOAD
        self._idle_after_clear = False
        self._result_ionic = 0.0
        self._result_status = ResultStatus.NONE
        self._result_wafer = ""
        self._cycle_count = 0
        self._chemistry_cycles = 0
        self._init_alarms()
        self._wafers_loaded = 0
        self._init_faults()
        self._events: deque[tuple[float, str]] = deque(maxlen=1000)
        self._last_state = self._state()

    # --- time ----------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        return self._t

    def advance(self, now: float) -> None:
        while self._t + STEP_S <= now + 1e-9:
            steps = int((now - self._t) / STEP_S + 1e-9)
            if steps > 1:
                self._quiet_steps(steps - 1)  # the last step runs in full
            self._step()

    def _quiet_steps(self, limit: int) -> None:
        """Up to ``limit`` steps where only time, the DI noise and the cycle's sums change (tanks
        on target, nothing due, phase and state as they are): ``_step``'s draws and sums
        without its checks. In full steps a 240 s cycle cost the next request about 1 ms."""
        if not self._tanks_settled() or self._state() != self._last_state:
            return
        steps = limit
        t = self._t
        steps = self._quiet_before_faults(steps)
        cycle = self._cycle
        if cycle is not None:
            phase = cycle.phase()
            if self._running_alarm(cycle, phase) is not None:
                return
            steps = min(steps, cycle.phase_end() - cycle.elapsed_s - 1)
            if cycle.pending_alarms:
                steps = min(steps, cycle.wash_s // 2 - cycle.elapsed_s - 1)
        if steps < 1:
            return
        draw = self._rng.random
        for _ in range(steps - 1):
            draw()  # only the last step's noise is ever read
        self._di_noise = (2.0 * draw() - 1.0) * DI_NOISE_MOHM_CM
        if cycle is not None:
            self._expose(cycle, phase, steps)
            cycle.elapsed_s += steps
        for _ in range(steps):
            t += STEP_S
        self._t = t

    def _step(self) -> None:
        self._heat_tanks()
        self._di_noise = (2.0 * self._rng.random() - 1.0) * DI_NOISE_MOHM_CM

        cycle = self._cycle
        if cycle is not None:
            self._expose(cycle, cycle.phase())
            cycle.elapsed_s += 1
        self._t += STEP_S

        self._fire_due_faults()
        cycle = self._cycle
        if cycle is not None:
            phase = cycle.phase()
            if cycle.pending_alarms and cycle.elapsed_s >= cycle.wash_s // 2:
                codes, cycle.pending_alarms = cycle.pending_alarms, ()
                for code in codes:
                    self._latch(code, "fault plan")
            else:
                self._check_running(cycle, phase)
        cycle = self._cycle
        if cycle is not None and cycle.elapsed_s >= cycle.total_s:
            self._end_cycle(ResultStatus.OK)
        self._note_state()

    # --- FC-2 hooks: the tanks, the cycle's physics and alarms --------------------------------

    def _bath_target(self) -> float:
        return self._wash_sp() if self._heater_ok else AMBIENT_C

    def _heat_tanks(self) -> None:
        self._bath_c = approach(self._bath_c, self._bath_target())

    def _tanks_settled(self) -> bool:
        """Every tank on its target: ``_heat_tanks`` leaves them as they are."""
        return self._bath_c == self._bath_target()

    def _expose(self, cycle: Cycle, phase: CleanerState, steps: int = 1) -> None:
        """``steps`` seconds of the cycle's physics, the tanks and the DI water as they are."""
        if phase is CleanerState.WASHING:
            dose = wash_rate(self._bath_c, cycle.pressure_bar) * STEP_S
            for _ in range(steps):  # a sum per second, as stepping one by one adds it up
                cycle.exposure += dose
        elif phase is CleanerState.RINSING:
            short = max(0.0, DI_LOW_MOHM_CM - self._di_mohm)
            cycle.rinse_short_mohm = max(cycle.rinse_short_mohm, short)

    def _running_alarm(self, cycle: Cycle, phase: CleanerState) -> tuple[int, str] | None:
        """The alarm a running cycle raises now (610 bath astray, 620 no spray), if any."""
        if phase is CleanerState.WASHING and abs(self._bath_c - cycle.wash_sp_c) > WASH_BAND_C:
            return 610, f"bath {self._bath_c:.1f} C"
        if phase in (CleanerState.WASHING, CleanerState.STRIPPING,
                     CleanerState.RINSING) and not self._spray_ok:
            return 620, ""
        return None

    def _check_running(self, cycle: Cycle, phase: CleanerState) -> None:
        alarm = self._running_alarm(cycle, phase)
        if alarm is not None:
            self._latch(*alarm)

    def _measure(self, cycle: Cycle) -> None:
        """The result of a finished (or stopped) cycle."""
        noise = 1.0 + (2.0 * self._rng.random() - 1.0) * MEASUREMENT_NOISE
        self._result_ionic = residue_left(cycle.exposure, cycle.rinse_short_mohm) * noise

    def _start_tank_ready(self) -> tuple[bool, str]:
        """Whether START may run the loaded wafer's cycle, and why not."""
        return self._bath_ready(), (f"bath {self._bath_c:.1f} C, not within {START_BAND_C} C "
                                    f"of {self._wash_sp():.1f} C")

    def _pre_start_checks(self) -> None:
        """Checks before START: a failed one latches its alarm (and the START is refused)."""
        if self._di_mohm < DI_LOW_MOHM_CM:
            self._latch(630, f"{self._di_mohm:.1f} MOhm.cm")
        if self._chemistry_cycles >= CHEMISTRY_LIFE_CYCLES:
            self._latch(640, f"{self._chemistry_cycles} cycles since replenished")

    def _new_cycle(self, pending: tuple[int, ...]) -> Cycle:
        """The loaded wafer's cycle from the recipe registers; uses up its chemistry."""
        assert self._wafer is not None
        r = self._recipe
        self._chemistry_cycles += 1
        self._event(f"START {self._wafer!r}: wash {r[1]} s at {r[0] / 10:.1f} C, "
                    f"rinse {r[2]} s, dry {r[3]} s")
        return Cycle(wafer_id=self._wafer, started=self._t, wash_s=r[1], rinse_s=r[2],
                      dry_s=r[3], wash_sp_c=r[0] / 10.0, pressure_bar=r[4] / 10.0,
                      pending_alarms=pending)

    def _check_write(self, span: range, state: CleanerState) -> None:
        """Refuse (06) a write the state does not allow; the FC-1 allows all."""

    def _loaded(self) -> None:
        """A wafer was just loaded."""

    def _unloaded(self) -> None:
        """The wafer was just taken out."""

    def _discrete_bits(self) -> list[bool]:
        return [self._wafer is not None, self._chemistry_cycles >= CHEMISTRY_LIFE_CYCLES,
                self._di_mohm < DI_LOW_MOHM_CM, self._door_open]

    def _end_cycle(self, status: ResultStatus) -> None:
        cycle = self._cycle
        assert cycle is not None
        self._measure(cycle)
        self._result_status = status
        self._result_wafer = cycle.wafer_id
        self._cycle = None
        self._done = True
        self._event(f"cycle of {cycle.wafer_id!r} ended {status.name}, "
                    f"residue {self._result_ionic:.2f} ug/cm2")
        if self.chemistry_alarm_at == "end" and self._chemistry_cycles >= CHEMISTRY_LIFE_CYCLES:
            # the cycle that spent the chemistry has ended (its result kept): 640 until
            # replenished, the wafer DONE in the chamber once CLEARed
            self._latch(640, f"{self._chemistry_cycles} cycles since replenished")

    # --- derived state ---------------------------------------------------------------------------

    def _wash_sp(self) -> float:
        return self._recipe[HR_WASH_TEMP_SP] / 10.0

    def _bath_ready(self) -> bool:
        return abs(self._bath_c - self._wash_sp()) <= START_BAND_C

    def _ready(self) -> bool:
        """READY rather than IDLE with the chamber empty (FC-2 hook: the tank of MODE)."""
        return self._bath_ready()

    def _state(self) -> CleanerState:
        if self._alarms:
            return CleanerState.ALARM
        if self._cycle is not None:
            return self._cycle.phase()
        if self._wafer is not None:
            return CleanerState.DONE if self._done else CleanerState.LOADED
        if self._idle_after_clear:
            return CleanerState.IDLE
        return CleanerState.READY if self._ready() else CleanerState.IDLE

    def _cause_present(self, code: int) -> bool:
        if code == 400:
            return self._door_open
        if code == 610:
            return not self._heater_ok or abs(self._bath_c - self._wash_sp()) > WASH_BAND_C
        if code == 620:
            return not self._spray_ok
        if code == 630:
            return self._di_mohm < DI_LOW_MOHM_CM
        if code == 640:
            return self._chemistry_cycles >= CHEMISTRY_LIFE_CYCLES
        return False  # fault-plan alarms are momentary

    def _latched(self, code: int) -> None:
        if self._cycle is not None:  # any alarm stops the spray: the wafer's cycle ends here
            self._end_cycle(ResultStatus.ALARM)

    def _set_door(self, opened: bool, why: str = "") -> None:
        if opened == self._door_open:
            return
        self._door_open = opened
        self._event(f"door {'opened' if opened else 'closed'}" + (f" ({why})" if why else ""))
        if opened:
            self._latch(400)

    # --- register map ----------------------------------------------------------------------------

    def read(self, table: Table, address: int, count: int, now: float) -> list[Any]:
        self.advance(now)
        if table is Table.HOLDING:
            check_span(self.HOLDING_MAP, table, address, count)
            return [self._holding(a) for a in range(address, address + count)]
        if table is Table.INPUT:
            check_span(self.INPUT_MAP, table, address, count)
            return self._inputs(address, address + count)
        if table is Table.DISCRETE_INPUTS:
            check_span(self.DISCRETE_MAP, table, address, count)
            return self._discrete_bits()[address:address + count]
        raise Refusal(ILLEGAL_FUNCTION, f"the {self.MODEL} has no coils")

    def _holding(self, a: int) -> int:
        if a in self._recipe:
            return self._recipe[a]
        if a == HR_COMMAND:
            return 0
        return self._wafer_id_regs[a - HR_WAFER_ID]

    def _inputs(self, address: int, end: int) -> list[int]:
        """IR ``address`` .. ``end - 1``, a span check_span allowed: each block it touches
        worked out once (per register, the status block cost itself 7 times)."""
        words: list[int] = []
        if address < 10:
            words += self._status_words()[address:min(end, 10)]
        if address < 20 and end > 10:
            ids = text_to_registers(self._result_wafer, ID_REGISTERS)
            words += ids[max(address, 10) - 10:min(end, 20) - 10]
        if end > 20:
            words += u32_words(self._cycle_count)[max(address, 20) - 20:end - 20]
        return words

    def _status_words(self) -> list[int]:
        """IR 0 onwards (FC-2 hook: it has three more)."""
        cycle = self._cycle
        remaining = cycle.total_s - cycle.elapsed_s if cycle else 0
        return [int(self._state()), to_u16(self._bath_c, 10),
                to_u16(self._di_mohm + self._di_noise, 10), remaining,
                self._alarms[0] if self._alarms else 0,
                to_u16(self._result_ionic, 100), int(self._result_status)]

    def write(self, table: Table, address: int, values: Sequence[Any], now: float) -> None:
        self.advance(now)
        if table is not Table.HOLDING:
            raise Refusal(ILLEGAL_FUNCTION, f"{table.value} cannot be written on the {self.MODEL}")
        check_span(self.HOLDING_MAP, table, address, len(values))
        words = [int(v) for v in values]
        span = range(address, address + len(words))
        for a, w in zip(span, words, strict=True):
            if a in self.LIMITS:
                lo, hi = self.LIMITS[a]
                if not lo <= w <= hi:
                    raise Refusal(ILLEGAL_VALUE, f"{self.NAMES[a]} = {w}: expected {lo}..{hi}")
        check_text_words([w for a, w in zip(span, words, strict=True) if a >= HR_WAFER_ID],
                         "WAFER_ID")
        command = words[HR_COMMAND - address] if HR_COMMAND in span else None
        if command is not None and command not in {c.value for c in Command}:
            raise Refusal(ILLEGAL_VALUE, f"COMMAND {command}: unknown code (1-5)")
        self._check_write(span, self._state())
        before = dict(self._recipe)
        for a, w in zip(span, words, strict=True):
            if a in self._recipe:
                self._recipe[a] = w
            elif a >= HR_WAFER_ID:
                self._wafer_id_regs[a - HR_WAFER_ID] = w
        if command is not None:
            # One request writing recipe values and COMMAND: values first, then the command;
            # a refused command leaves the recipe as it was (nothing of the request is kept).
            try:
                self._command(command)
            except Refusal:
                self._recipe = before
                raise
        self._note_state()

    # --- commands --------------------------------------------------------------------------------

    def _command(self, code: int) -> None:
        try:
            command = Command(code)
        except ValueError:
            raise Refusal(ILLEGAL_VALUE, f"COMMAND {code}: unknown code (1-5)") from None
        state = self._state()
        if command is Command.LOAD:
            busy_unless(state in (CleanerState.IDLE, CleanerState.READY),
                         f"LOAD: state {state.name}")
            wafer_id = registers_to_text(self._wafer_id_regs)
            if not wafer_id:
                raise Refusal(ILLEGAL_VALUE, "LOAD: WAFER_ID is empty")
            self._wafer, self._done = wafer_id, False
            self._idle_after_clear = False
            self._wafers_loaded += 1
            self._wafer_number = self._wafers_loaded
            self._loaded()
            self._event(f"LOAD {wafer_id!r} (wafer {self._wafer_number})")
        elif command is Command.START:
            busy_unless(state is CleanerState.LOADED, f"START: state {state.name}")
            ready, why = self._start_tank_ready()
            busy_unless(ready, f"START: {why}")
            self._pre_start_checks()
            busy_unless(not self._alarms, f"START: alarm {self._alarms[:1]} latched")
            self._cycle = self._new_cycle(tuple(self._wafer_alarms.pop(self._wafer_number, [])))
            self._cycle_count += 1
        elif command is Command.UNLOAD:
            busy_unless(state is CleanerState.DONE, f"UNLOAD: state {state.name}")
            self._event(f"UNLOAD {self._wafer!r}")
            self._wafer, self._done = None, False
            self._unloaded()
        elif command is Command.CLEAR:
            self._clear_alarms()
            self._idle_after_clear = self._wafer is None
        else:
            # flux-cleaner.md's ABORT row: WASHING, RINSING, DRYING. The FC-2 page keeps the
            # FC-1's COMMAND codes and adds no state to it: ABORT while STRIPPING is 06.
            busy_unless(state in (CleanerState.WASHING, CleanerState.RINSING,
                                   CleanerState.DRYING),
                        f"ABORT: state {state.name}")
            self._end_cycle(ResultStatus.ABORTED)
        self._note_state()

    # --- for tests: a read-only look inside ------------------------------------------------------

    def state(self, now: float) -> CleanerState:
        self.advance(now)
        return self._state()

    def bath_c(self, now: float) -> float:
        self.advance(now)
        return self._bath_c

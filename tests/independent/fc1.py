"""An FC-1 flux cleaner written from flux-cleaner.md alone. Pure: no I/O, no clock.

Strict choices where the spec is silent (docs/protocols.md, "Independent tools"):

* exceptions as the oven's: 02 for any unlisted address in a range, 03 for an
  out-of-range value anywhere in a block (nothing written), 06 for a command not
  allowed now; COMMAND 0 (or 6+) is out of range: 03; FC 01/05 (no coils): 01;
* a COMMAND in an FC 16 block runs after the block's other values are stored; a
  refused command refuses the whole block;
* RESULT_WAFER_ID is latched from WAFER_ID at LOAD (the wafer in the chamber);
  RESULT_IONIC and RESULT_STATUS change only when a cycle ends (at DONE);
* CYCLE_COUNT counts every cycle that reaches DONE, an aborted one too;
* the cycle's times are taken at START; the bath powers up cold (25 °C) and heats
  toward WASH_TEMP_SP at 0.05 °C/s, so a fresh tool is IDLE for minutes;
* IDLE <-> READY follow the bath (within ±2 °C of WASH_TEMP_SP) while the chamber is
  empty.

Inputs and their alarms (``faults``: plans of ``tests/independent/faults.py``):

* ``door``: DOOR_OPEN = 1 and 400 at once, in any state; a running cycle ends (status
  3) and CLEAR (refused while the door is open) goes to DONE (or LOADED, as
  ``interrupted_to``); a LOADED or DONE wafer stays so; an empty chamber: IDLE/READY;
* ``di``: RINSE_RESISTIVITY 8.0 MOhm cm and DI_RESISTIVITY_LOW = 1; as the spec says,
  630 is raised by the next START (the wafer stays LOADED); a cycle already running
  finishes; CLEAR refused while the water is still low;
* ``chem``: CHEMISTRY_LOW = 1 and 640 at once ("then 640 until replenished"): a cycle
  still washing ends (status 3) as for the door, one rinsing or drying finishes first
  and 640 latches at its DONE; START refused into 640 as when the 500 cycles are
  used up; CLEAR refused until replenished (the plan's duration).
"""

from __future__ import annotations

import math

from tests.independent import text_regs
from tests.independent.faults import Events, Fault, parse
from tests.independent.late import Ticking
from tests.independent.modbus_codec import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    SERVER_DEVICE_BUSY,
    ModbusError,
)

IDLE, READY, LOADED, WASHING, RINSING, DRYING, DONE, ALARM = range(8)
LOAD, START, UNLOAD, CLEAR, ABORT = 1, 2, 3, 4, 5
AMBIENT_C = 25.0
HEAT_C_S = 0.05
COOL_C_S = 0.01
BAND_C = 2.0
RESISTIVITY = 150  # 0.1 MOhm cm
CHEMISTRY_CYCLES = 500
STEP_S = 0.5
LOW_RESISTIVITY = 80  # 0.1 MOhm cm: the DI water gone bad
FAULTS = {"door", "di", "chem"}

HR_RANGES = {0: (300, 800), 1: (10, 900), 2: (10, 900), 3: (10, 900), 4: (5, 60)}
HR_COMMAND = 5
HR_TEXT = range(10, 18)
HR_ADDRESSES = set(HR_RANGES) | {HR_COMMAND} | set(HR_TEXT)
IR_ADDRESSES = set(range(7)) | set(range(10, 18)) | {20, 21}
DI_ADDRESSES = set(range(4))


def ionic_residue(wash_c: float, wash_s: float) -> float:
    """µg NaCl-eq/cm² left after a wash: falls with temperature and time."""
    effect = max(0.05, (wash_c - 20.0) / 40.0) * wash_s / 40.0
    return 3.0 * math.exp(-effect)


class Cleaner(Ticking):
    model = "FC-1"
    function_codes = frozenset({2, 3, 4, 6, 16})
    # The tables and the running states, as data an FC-2 extends (tests/independent/fc2.py).
    hr_ranges = HR_RANGES
    hr_addresses = HR_ADDRESSES
    ir_addresses = IR_ADDRESSES
    di_addresses = DI_ADDRESSES
    running = (WASHING, RINSING, DRYING)
    fault_names = FAULTS

    def __init__(self, *, bath_c: float = AMBIENT_C, alarm_at_wafer: dict[int, int] | None = None,
                 interrupted_to: int = DONE, faults: list[str | Fault] | None = None,
                 tick_s: float = 0.0, pending: str = "busy") -> None:
        self.now = 0.0
        self.late_commands(tick_s, pending)  # tests/independent/late.py
        self.faults = [parse(f, self.fault_names) if isinstance(f, str) else f
                       for f in faults or []]
        self.events = Events(self.faults)
        # A test's plan: {n: code} latches code half way through the n-th wafer's wash
        # (momentary: its cause is gone at once). The spec's CLEAR goes "back to LOADED /
        # DONE / IDLE as fits the wafer": an interrupted wafer is DONE (status 3) by one
        # reading, LOADED (not cleaned: START again) by the other.
        self.alarm_at_wafer = dict(alarm_at_wafer or {})
        self.interrupted_to = interrupted_to
        self.started = 0
        self.hr = {0: 600, 1: 120, 2: 60, 3: 60, 4: 30}
        self.wafer_id = [0] * 8
        self.bath = bath_c
        self.base_state = IDLE
        self.wafer = False
        self.alarm = 0
        self.alarm_return = IDLE
        self.remaining = 0.0
        self.phases: list[tuple[int, float]] = []
        self.result_ionic = 0
        self.result_status = 0
        self.result_id = [0] * 8
        self.cycles = 0
        self.chemistry_used = 0
        self.door_open = False
        self.wash_c = bath_c
        self.log: list[str] = []

    # --- inputs -------------------------------------------------------------------
    def resistivity(self) -> int:
        return LOW_RESISTIVITY if self.events.active("di", self.now) else RESISTIVITY

    def chemistry_low(self) -> bool:
        return (self.chemistry_used >= CHEMISTRY_CYCLES
                or bool(self.events.active("chem", self.now)))

    def cause_present(self, code: int) -> bool:
        return {400: self.door_open, 630: self.resistivity() < 100,
                640: self.chemistry_low()}.get(code, False)

    def _inputs(self) -> None:
        """The door and the chemistry raise their alarms the moment they change."""
        door = bool(self.events.active("door", self.now))
        if door and not self.door_open:
            self.door_open = True
            self.log.append("door open")
            self._interrupt(400, whole_cycle=True)
        elif not door and self.door_open:
            self.door_open = False
            self.log.append("door closed")
        if self.chemistry_low() and not self.alarm:
            self._interrupt(640, whole_cycle=False)

    def _interrupt(self, code: int, *, whole_cycle: bool) -> None:
        if self.alarm:
            return  # one ALARM_CODE: the cause latches again after the CLEAR if still there
        if self.base_state in self.running:
            if not whole_cycle and self.base_state != WASHING:
                return  # rinsing or drying needs no chemistry: 640 at DONE
            self._finish(3)
            self._raise(code, self.interrupted_to)
        elif self.base_state in (LOADED, DONE):
            self._raise(code, self.base_state)
        else:
            self._raise(code, IDLE)

    def bath_ok(self) -> bool:
        return abs(self.bath - self.hr[0] / 10.0) <= BAND_C

    def state(self) -> int:
        return ALARM if self.alarm else self.base_state

    def advance(self, dt: float) -> None:
        self.advance_with_ticks(dt, STEP_S)

    def _step(self, dt: float) -> None:
        self.now += dt
        self._inputs()
        sp = self.hr[0] / 10.0
        if self.bath < sp:
            self.bath = min(sp, self.bath + HEAT_C_S * dt)
        else:
            self.bath = max(sp, self.bath - COOL_C_S * dt)
        if self.base_state in (IDLE, READY) and not self.alarm:
            self.base_state = READY if self.bath_ok() else IDLE
        if self.base_state in self.running and not self.alarm:
            self.remaining = max(0.0, self.remaining - dt)
            code = self.alarm_at_wafer.get(self.started)
            wash_s = self.phases[0][1]
            if code and sum(t for _, t in self.phases) - self.remaining >= wash_s / 2:
                del self.alarm_at_wafer[self.started]
                self._finish(3)
                self._raise(code, self.interrupted_to)
                return
            elapsed_total = sum(t for _, t in self.phases) - self.remaining
            for state, end in self._phase_ends():
                if elapsed_total < end:
                    self.base_state = state
                    break
            else:
                self._finish(1)

    def _phase_ends(self) -> list[tuple[int, float]]:
        ends, total = [], 0.0
        for state, length in self.phases:
            total += length
            ends.append((state, total))
        return ends

    def _finish(self, status: int) -> None:
        self.base_state = DONE
        self.remaining = 0.0
        self.result_status = status
        wash_s = self.phases[0][1]
        ionic = ionic_residue(self.wash_c, wash_s) if status == 1 else 0.0
        self.result_ionic = min(65535, int(round(ionic * 100)))
        self.cycles += 1
        self.chemistry_used += 1
        self.log.append(f"done {text_regs.decode(self.result_id)} status {status}")

    # --- Modbus tables -------------------------------------------------------------
    def read_bits(self, table: str, address: int, count: int) -> list[bool]:
        span = range(address, address + count)
        if table != "inputs" or any(a not in self.di_addresses for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        bits = self.discrete_inputs()
        return [bits[a] for a in span]

    def discrete_inputs(self) -> list[bool]:
        return [self.wafer, self.chemistry_low(), self.resistivity() < 100, self.door_open]

    def read_registers(self, table: str, address: int, count: int) -> list[int]:
        valid = self.hr_addresses if table == "holding" else self.ir_addresses
        span = range(address, address + count)
        if any(a not in valid for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        return [self._holding(a) if table == "holding" else self._input(a) for a in span]

    def _holding(self, a: int) -> int:
        if a == HR_COMMAND:
            return 0
        if a in HR_TEXT:
            return self.wafer_id[a - 10]
        return self.hr[a]

    def _input(self, a: int) -> int:
        if a in range(10, 18):
            return self.result_id[a - 10]
        return {0: self.state(), 1: int(round(self.bath * 10)), 2: self.resistivity(),
                3: math.ceil(self.remaining - 1e-9), 4: self.alarm, 5: self.result_ionic,
                6: self.result_status, 20: self.cycles >> 16, 21: self.cycles & 0xFFFF}[a]

    def write_coil(self, address: int, value: bool) -> None:
        raise ModbusError(ILLEGAL_DATA_ADDRESS)

    def write_registers(self, address: int, values: list[int]) -> None:
        span = range(address, address + len(values))
        if any(a not in self.hr_addresses for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        command = None
        for a, value in zip(span, values, strict=True):
            if a == HR_COMMAND:
                if value not in (LOAD, START, UNLOAD, CLEAR, ABORT):
                    raise ModbusError(ILLEGAL_DATA_VALUE)
                command = value
            elif a in HR_TEXT:
                text_regs.check_text_register(value)
            elif not self.hr_ranges[a][0] <= value <= self.hr_ranges[a][1]:
                raise ModbusError(ILLEGAL_DATA_VALUE)
        self.check_writable(span)
        saved = (dict(self.hr), list(self.wafer_id))
        for a, value in zip(span, values, strict=True):
            if a in HR_TEXT:
                self.wafer_id[a - 10] = value
            elif a != HR_COMMAND:
                self.hr[a] = value
        if command is not None:
            try:
                self.order(command)  # now, or at the next tick (``tick_s``)
            except ModbusError:
                self.hr, self.wafer_id = dict(saved[0]), list(saved[1])
                raise

    def check_writable(self, span: range) -> None:
        """Exception 06 for a block that writes a register the state forbids (none here)."""

    def command(self, code: int) -> None:
        state = self.state()
        if code == LOAD:
            if state not in (IDLE, READY):
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.wafer = True
            self.result_id = list(self.wafer_id)
            self.base_state = LOADED
            self.log.append(f"load {text_regs.decode(self.wafer_id)}")
            self.events.happened("load", self.now)
        elif code == START:
            if state != LOADED or not self.bath_ok():
                raise ModbusError(SERVER_DEVICE_BUSY)
            if self.resistivity() < 100:
                self._raise(630, LOADED)
                return
            if self.chemistry_low():
                self._raise(640, LOADED)
                return
            self.phases = [(WASHING, float(self.hr[1])), (RINSING, float(self.hr[2])),
                           (DRYING, float(self.hr[3]))]
            self.wash_c = self.bath
            self.started += 1
            self.remaining = sum(t for _, t in self.phases)
            self.base_state = WASHING
            self.log.append(f"start {text_regs.decode(self.result_id)}")
            self.events.happened("start", self.now)
        elif code == UNLOAD:
            if state != DONE:
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.wafer = False
            self.base_state = READY if self.bath_ok() else IDLE
            self.log.append("unload")
        elif code == CLEAR:
            if state != ALARM or self.cause_present(self.alarm) or self.door_open:
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.log.append(f"clear {self.alarm}")
            self.alarm = 0
            self.base_state = self.alarm_return
            self._inputs()  # a cause still present (chemistry) latches at once
        elif code == ABORT:
            if state not in (WASHING, RINSING, DRYING):  # the spec's three, not an FC-2's own
                raise ModbusError(SERVER_DEVICE_BUSY)
            self._finish(2)

    def _raise(self, code: int, back_to: int) -> None:
        self.alarm = code
        self.alarm_return = back_to
        self.log.append(f"alarm {code}")

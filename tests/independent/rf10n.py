"""An RF-10N reflow oven written from reflow-oven.md alone. Pure: no I/O, no clock.

``advance(dt)`` moves the tool forward by ``dt`` tool seconds; the Modbus server calls
it before each request. Strict choices where the spec is silent (docs/protocols.md):

* a read or write whose range covers any unlisted address: exception 02, nothing done;
* an out-of-range value anywhere in an FC 16 block: exception 03, nothing written;
* a COMMAND in an FC 16 block runs only after the block's other values are stored, and
  a refused command (03/06) refuses the whole block;
* COMMAND 0 is "any other code": exception 03;
* text registers take NUL or printable ASCII only (else 03);
* APPLY always restarts the 60 s settling (state HEATING), even with unchanged values;
* STANDBY writes 100.0 °C into the staging registers HR 0-9 as well and sets
  ACTIVE_PROFILE_ID to 0 (the applied setpoints are no profile's);
* WAFERS_ON_BELT counts the wafer waiting at the exit (``count_exit``; the other
  reading, tunnel only, is ``count_exit=False``);
* the exit results (IR 20-37, 99-349) are latched when a wafer reaches the exit and
  stay until the next one does; EXIT_CURVE beyond EXIT_CURVE_LEN reads 0;
* the unit powers up OFF, zones at 25 °C, N2 off (O2 at air), conveyor on.

Alarms (``faults``: plans of ``tests/independent/faults.py``; docs/protocols.md). One
ALARM_CODE: the first cause latches, and CLEAR is refused (06) while the latched alarm's
cause is present; a cause still present after another alarm's CLEAR latches at once.

* 510: an enabled zone more than 15 °C above its setpoint, once that zone has been within
  ±2 °C of it since the last APPLY (a zone cooling down to a lower profile is not over
  temperature: a changeover would alarm). The belt runs on; the riders get bit 2.
* 560: a thermocouple open: its zone reads 0x7FFF and its heater is cut (the zone's air
  cools); the belt runs on, riders get bit 2.
* after a 510, 560 or 900 CLEAR the oven settles again: HEATING, 60 s stable, READY.
* 520: the belt stops (riders get bit 0) until CLEAR; the jam must be gone first.
* 540: O2 above O2_LIMIT while a wafer is in the tunnel; the belt runs on (bit 1).
* 550: N2_ON = 1 with the supply lost: O2 rises toward air; the belt runs on.
* 900: belt stopped (bit 0), heaters cut; N2_ON kept as the host set it; CLEAR once
  the stop is released, then the belt runs and the zones settle again.
* LOAD and APPLY are refused in ALARM; UNLOAD is allowed (its only condition is a
  wafer at the exit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tests.independent import text_regs
from tests.independent.faults import Events, Fault, parse
from tests.independent.late import Ticking
from tests.independent.modbus_codec import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    SERVER_DEVICE_BUSY,
    ModbusError,
)

OFF, HEATING, READY, PROCESSING, ALARM, STANDBY = range(6)
APPLY, LOAD, UNLOAD, CLEAR, CMD_STANDBY = 1, 2, 3, 4, 5
TUNNEL_MM = 4000.0
ZONE_MM = 400.0
ENTRANCE_MM = 450.0
AMBIENT_C = 25.0
AIR_O2_PPM = 209000.0  # air; the register saturates at 65535
N2_O2_PPM = 20.0
O2_TAU_S = 12.0  # about 20 ppm within 120 s of N2 on
ZONE_TAU_S = 15.0
HEAT_MAX_C_S = 3.0  # zones heat quickly ...
COOL_MAX_C_S = 0.1  # ... and cool slowly: 345 -> 225 °C in 20 min
WAFER_TAU_S = 33.0  # the wafer lags the air
STABLE_BAND_C = 2.0
SETTLE_S = 60.0
SAMPLE_S = 5.0
MAX_SAMPLES = 250
STEP_S = 0.25

# Holding registers: address -> (low, high); COMMAND and text handled apart.
HR_RANGES = {**{i: (0, 4000) for i in range(10)}, 10: (200, 1500), 11: (10, 1000),
             12: (500, 4000), 13: (0, 65535)}
HR_COMMAND = 20
HR_TEXT = range(30, 38)
HR_ADDRESSES = set(HR_RANGES) | {HR_COMMAND} | set(HR_TEXT)
IR_ADDRESSES = set(range(0, 15)) | set(range(20, 27)) | set(range(30, 38)) | set(range(99, 350))
DI_ADDRESSES = set(range(4))
COIL_ADDRESSES = {0, 1}
N2_ON, CONVEYOR_RUN = 0, 1
FAULTS = {"510", "520", "540", "550", "560", "900"}
OVER_TEMP_C = 15.0
RUNAWAY_C = 30.0  # a runaway heater drives its zone this far above the setpoint
LEAK_O2_PPM = 5000.0  # an air leak with the purge on
TC_OPEN = 0x7FFF
RESETTLE = (510, 560, 900)  # alarms after whose CLEAR the zones settle again
ORDER = (900, 520, 530, 560, 510, 550, 540)  # which cause latches first


@dataclass
class Wafer:
    wafer_id: list[int]
    profile_id: int
    tal_threshold_c: float
    o2_limit: float
    pos_mm: float = 0.0
    elapsed_s: float = 0.0
    temp_c: float = AMBIENT_C
    peak_c: float = AMBIENT_C
    tal_s: float = 0.0
    ramp_max: float = 0.0
    cool_max: float = 0.0
    o2_max: float = 0.0
    flags: int = 0
    curve: list[float] = field(default_factory=list)
    next_sample_s: float = 0.0


def _c10(value: float) -> int:
    """°C (or any 0.1 unit) as a signed 16-bit register."""
    return int(round(value * 10)) & 0xFFFF


class Oven(Ticking):
    function_codes = frozenset({1, 2, 3, 4, 5, 6, 16})

    def __init__(self, *, count_exit: bool = True, faults: list[str | Fault] | None = None,
                 tick_s: float = 0.0, pending: str = "busy") -> None:
        self.count_exit = count_exit
        self.now = 0.0
        self.late_commands(tick_s, pending)  # tests/independent/late.py
        self.faults = [parse(f, FAULTS) if isinstance(f, str) else f for f in faults or []]
        self.events = Events(self.faults)
        self.armed = [False] * 10  # a zone has been within ±2 °C of its setpoint since APPLY
        self.jammed = False  # a jam seen: the belt waits for CLEAR
        self.staging = {0: 0, **{i: 0 for i in range(1, 10)}, 10: 600, 11: 100, 12: 1830, 13: 0}
        self.load_id = [0] * 8
        self.active_sp = [0.0] * 10
        self.active_speed = 600.0
        self.active_o2_limit = 100.0
        self.active_tal_c = 183.0
        self.active_profile = 0
        self.base_state = OFF
        self.pv = [AMBIENT_C] * 10
        self.stable_for = 0.0
        self.coils = {N2_ON: False, CONVEYOR_RUN: True}
        self.o2 = AIR_O2_PPM
        self.alarm = 0
        self.belt: list[Wafer] = []  # the tunnel, in load order (first = nearest the exit)
        self.exit_wafer: Wafer | None = None
        self.exit_regs = {a: 0 for a in list(range(20, 27)) + list(range(30, 38)) + [99]}
        self.exit_curve = [0] * MAX_SAMPLES
        self.exit_blocked = False
        self.log: list[str] = []  # what happened, for tests

    # --- derived state -------------------------------------------------------------
    def wafers_on_belt(self) -> int:
        return len(self.belt) + (1 if self.count_exit and self.exit_wafer else 0)

    def zones_stable(self) -> bool:
        enabled = [i for i in range(10) if self.active_sp[i] > 0]
        return all(abs(self.pv[i] - self.active_sp[i]) <= STABLE_BAND_C
                   and not self._tc_open(i) for i in enabled)

    def state(self) -> int:
        if self.alarm:
            return ALARM
        if self.base_state == READY and (self.belt or self.exit_wafer):
            return PROCESSING
        return self.base_state

    def entrance_clear(self) -> bool:
        return not self.belt or self.belt[-1].pos_mm >= ENTRANCE_MM

    def air_c(self, pos_mm: float) -> float:
        """The gas temperature at a point of the tunnel: between zone centres it blends."""
        x = pos_mm / ZONE_MM - 0.5  # in zone-centre units
        if x <= 0:  # the entrance vestibule: room air blends into zone 1
            return AMBIENT_C + (self.pv[0] - AMBIENT_C) * min(1.0, 2 * (x + 0.5))
        if x >= 9:
            return self.pv[9]
        i = int(x)
        return self.pv[i] + (self.pv[i + 1] - self.pv[i]) * (x - i)

    def belt_moving(self) -> bool:
        return (self.coils[CONVEYOR_RUN] and not self.exit_blocked and not self.jammed
                and self.alarm != 900 and not self._cause("900"))

    # --- causes ----------------------------------------------------------------------
    def _cause(self, what: str) -> list[Fault]:
        if not self.faults:  # the plain tool: no per-step cost (the exit's timing is tight)
            return []
        return self.events.active(what, self.now)

    def _tc_open(self, zone: int) -> bool:
        return bool(self.faults) and any(f.zone - 1 == zone for f in self._cause("560"))

    def _over(self) -> bool:
        return any(self.armed[i] and self.active_sp[i] > 0
                   and self.pv[i] > self.active_sp[i] + OVER_TEMP_C and not self._tc_open(i)
                   for i in range(10))

    def causes(self) -> set[int]:
        """The alarms whose cause is present now."""
        present: set[int] = set()
        if not self.faults:  # the plain tool's two causes only
            if self.exit_blocked and self.exit_wafer is not None:
                present.add(530)
            if self.belt and self.o2 > self.active_o2_limit:
                present.add(540)
            return present
        if self._cause("900"):
            present.add(900)
        if self._cause("520"):
            present.add(520)
        if self.exit_blocked and self.exit_wafer is not None:
            present.add(530)
        if self._cause("560"):
            present.add(560)
        if self._over():
            present.add(510)
        if self._cause("550") and self.coils[N2_ON]:
            present.add(550)
        if self.belt and self.o2 > self.active_o2_limit:
            present.add(540)
        return present

    def _happened(self, event: str) -> None:
        self.events.happened(event, self.now)

    # --- time ----------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        self.advance_with_ticks(dt, STEP_S)

    def _step(self, dt: float) -> None:
        self.now += dt
        faulty = bool(self.faults)
        runaway = {f.zone - 1 for f in self._cause("510")} if faulty else set()
        estop = self.alarm == 900 or (faulty and bool(self._cause("900")))
        for i in range(10):
            target = self.active_sp[i] if self.active_sp[i] > 0 else AMBIENT_C
            if estop or (faulty and self._tc_open(i)):
                target = AMBIENT_C  # the heater is cut
            elif i in runaway:
                target = max(target, self.active_sp[i]) + RUNAWAY_C
            rate = (target - self.pv[i]) / ZONE_TAU_S
            rate = max(-COOL_MAX_C_S, min(HEAT_MAX_C_S, rate))
            self.pv[i] += rate * dt
        if faulty:
            for i in range(10):
                if self.active_sp[i] > 0 and abs(self.pv[i] - self.active_sp[i]) <= STABLE_BAND_C:
                    self.armed[i] = True
        o2_target = N2_O2_PPM if self.coils[N2_ON] and not self._cause("550") else AIR_O2_PPM
        if o2_target == N2_O2_PPM and self._cause("540"):
            o2_target = LEAK_O2_PPM
        self.o2 += (o2_target - self.o2) * (1 - math.exp(-dt / O2_TAU_S))
        if self.base_state == HEATING and not self.alarm:
            self.stable_for = self.stable_for + dt if self.zones_stable() else 0.0
            if self.stable_for >= SETTLE_S:
                self.base_state = READY
                self.log.append("ready")
        if self._cause("520") and not self.jammed:
            self.jammed = True
            for wafer in self.belt:
                wafer.flags |= 1
        if self._cause("900"):
            for wafer in self.belt:
                wafer.flags |= 1
        if not self.alarm:
            present = self.causes()
            for code in ORDER:
                if code in present:
                    self._raise(code)
                    break
        moving = self.belt_moving()
        for wafer in self.belt:
            self._wafer_step(wafer, dt, moving)
        if moving and self.belt and self.belt[0].pos_mm >= TUNNEL_MM:
            first = self.belt[0]
            if self.exit_wafer is None:
                self.belt.pop(0)
                self._latch_exit(first)
            else:
                first.pos_mm = TUNNEL_MM
                self.exit_blocked = True
                for wafer in self.belt:
                    wafer.flags |= 1
                self._raise(530)

    def _wafer_step(self, wafer: Wafer, dt: float, moving: bool) -> None:
        if moving:
            wafer.pos_mm = min(TUNNEL_MM, wafer.pos_mm + self.active_speed / 60.0 * dt)
        before = wafer.temp_c
        air = self.air_c(wafer.pos_mm)
        wafer.temp_c += (air - wafer.temp_c) * (1 - math.exp(-dt / WAFER_TAU_S))
        rate = (wafer.temp_c - before) / dt
        wafer.ramp_max = max(wafer.ramp_max, rate)
        wafer.cool_max = max(wafer.cool_max, -rate)
        wafer.peak_c = max(wafer.peak_c, wafer.temp_c)
        if wafer.temp_c > wafer.tal_threshold_c:
            wafer.tal_s += dt
        wafer.o2_max = max(wafer.o2_max, self.o2)
        if self.o2 > wafer.o2_limit:
            wafer.flags |= 2
        if self.alarm in (510, 560):
            wafer.flags |= 4
        if not moving:
            wafer.flags |= 1
        wafer.elapsed_s += dt
        while wafer.elapsed_s >= wafer.next_sample_s - 1e-9 and len(wafer.curve) < MAX_SAMPLES:
            wafer.curve.append(wafer.temp_c)
            wafer.next_sample_s += SAMPLE_S

    def _latch_exit(self, wafer: Wafer) -> None:
        self.exit_wafer = wafer
        regs = self.exit_regs
        regs[20] = _c10(wafer.peak_c)
        regs[21] = min(65535, int(round(wafer.tal_s * 10)))
        regs[22] = min(65535, int(round(wafer.ramp_max * 100)))
        regs[23] = min(65535, int(round(wafer.cool_max * 100)))
        regs[24] = wafer.profile_id
        regs[25] = min(65535, int(round(wafer.o2_max)))
        regs[26] = wafer.flags
        for i, value in enumerate(wafer.wafer_id):
            regs[30 + i] = value
        regs[99] = len(wafer.curve)
        self.exit_curve = [_c10(t) for t in wafer.curve] + [0] * (MAX_SAMPLES - len(wafer.curve))
        self.log.append(f"exit {text_regs.decode(wafer.wafer_id)}")
        self._happened("exit")

    def _raise(self, code: int) -> None:
        if not self.alarm:
            self.alarm = code
            self.log.append(f"alarm {code}")

    def alarm_cause_gone(self) -> bool:
        if self.alarm == 530:
            return self.exit_wafer is None
        if self.alarm == 540:
            return self.o2 <= self.active_o2_limit
        return self.alarm not in self.causes()

    # --- Modbus tables -------------------------------------------------------------
    def read_bits(self, table: str, address: int, count: int) -> list[bool]:
        valid = COIL_ADDRESSES if table == "coils" else DI_ADDRESSES
        span = range(address, address + count)
        if any(a not in valid for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        if table == "coils":
            return [self.coils[a] for a in span]
        inputs = [self.entrance_clear(), self.exit_wafer is not None, self.zones_stable(),
                  bool(self.alarm)]
        return [inputs[a] for a in span]

    def read_registers(self, table: str, address: int, count: int) -> list[int]:
        valid = HR_ADDRESSES if table == "holding" else IR_ADDRESSES
        span = range(address, address + count)
        if any(a not in valid for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        return [self._holding(a) if table == "holding" else self._input(a) for a in span]

    def _holding(self, a: int) -> int:
        if a == HR_COMMAND:
            return 0
        if a in HR_TEXT:
            return self.load_id[a - 30]
        return self.staging[a]

    def _input(self, a: int) -> int:
        if a < 10:
            return TC_OPEN if self._tc_open(a) else _c10(self.pv[a])
        if a < 15:
            return {10: self.state(), 11: self.wafers_on_belt(), 12: self.alarm,
                    13: min(65535, int(round(self.o2))), 14: self.active_profile}[a]
        if a >= 100:
            return self.exit_curve[a - 100]
        return self.exit_regs[a]

    def write_coil(self, address: int, value: bool) -> None:
        if address not in COIL_ADDRESSES:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        self.coils[address] = value
        if address == CONVEYOR_RUN and not value:
            for wafer in self.belt:
                wafer.flags |= 1

    def write_registers(self, address: int, values: list[int]) -> None:
        span = range(address, address + len(values))
        if any(a not in HR_ADDRESSES for a in span):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        command = None
        for a, value in zip(span, values, strict=True):
            if a == HR_COMMAND:
                if value not in (APPLY, LOAD, UNLOAD, CLEAR, CMD_STANDBY):
                    raise ModbusError(ILLEGAL_DATA_VALUE)
                command = value
            elif a in HR_TEXT:
                text_regs.check_text_register(value)
            else:
                low, high = HR_RANGES[a]
                if not low <= value <= high:
                    raise ModbusError(ILLEGAL_DATA_VALUE)
        saved = (dict(self.staging), list(self.load_id))
        for a, value in zip(span, values, strict=True):
            if a in HR_TEXT:
                self.load_id[a - 30] = value
            elif a != HR_COMMAND:
                self.staging[a] = value
        if command is not None:
            try:
                self.order(command)  # now, or at the next tick (``tick_s``)
            except ModbusError:
                self.staging, self.load_id = dict(saved[0]), list(saved[1])
                raise

    def command(self, code: int) -> None:
        if code == APPLY:
            if self.wafers_on_belt() or self.alarm:
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.active_sp = [self.staging[i] / 10.0 for i in range(10)]
            self.active_speed = float(self.staging[10])
            self.active_o2_limit = float(self.staging[11])
            self.active_tal_c = self.staging[12] / 10.0
            self.active_profile = self.staging[13]
            self.base_state = HEATING
            self.stable_for = 0.0
            self.armed = [False] * 10
            self.log.append(f"apply {self.active_profile}")
            self._happened("apply")
        elif code == LOAD:
            if (self.state() not in (READY, PROCESSING) or not self.entrance_clear()
                    or not self.coils[N2_ON]):
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.belt.append(Wafer(list(self.load_id), self.active_profile, self.active_tal_c,
                                   self.active_o2_limit, o2_max=self.o2))
            self.log.append(f"load {text_regs.decode(self.load_id)}")
            self._happened("load")
        elif code == UNLOAD:
            if self.exit_wafer is None:
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.log.append(f"unload {text_regs.decode(self.exit_wafer.wafer_id)}")
            self.exit_wafer = None
        elif code == CLEAR:
            if not self.alarm or not self.alarm_cause_gone():
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.log.append(f"clear {self.alarm}")
            cleared, self.alarm = self.alarm, 0
            if self.exit_wafer is None:  # an exit block some other alarm hid is gone too
                self.exit_blocked = False
            self.jammed = bool(self._cause("520"))
            if cleared in RESETTLE and self.base_state in (HEATING, READY):
                self.base_state = HEATING
                self.stable_for = 0.0
                self.log.append("heating")
            for code in ORDER:  # another cause still present latches at once
                if code in self.causes():
                    self._raise(code)
                    break
        elif code == CMD_STANDBY:
            if self.wafers_on_belt():
                raise ModbusError(SERVER_DEVICE_BUSY)
            self.active_sp = [100.0] * 10
            for i in range(10):
                self.staging[i] = 1000
            self.active_profile = 0
            self.base_state = STANDBY
            self.armed = [False] * 10
            self.log.append("standby")

    def inject_alarm(self, code: int) -> None:
        """A test's hook: latch an alarm whose cause is gone at once (like an E-stop reset)."""
        self._raise(code)

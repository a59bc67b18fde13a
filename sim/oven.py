"""RF-10N 10-zone nitrogen reflow oven: the tool behind its Modbus register map.

Pure and lazy: every entry point takes ``now`` (tool seconds) and first
integrates the physics (``sim.thermal``) in fixed 1 s steps from the last time
it was asked, so the state never depends on how often anyone looks. A request
at ``now`` acts on the state of the last whole step (like a PLC scan).

Choices the spec leaves open are listed in docs/simulator.md ("Modbus tools").
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from sim.modbus_map import (
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    LatchedAlarms,
    Refusal,
    Table,
    addresses,
    busy_unless,
    check_span,
    check_text_words,
    registers_to_text,
    text_to_registers,
    to_s16,
    to_u16,
)
from sim.thermal import (
    AMBIENT_C,
    O2_AIR_PPM,
    O2_PURGED_PPM,
    STEP_S,
    TUNNEL_MM,
    ZONES,
    WaferPass,
    ZoneSettings,
    air_at,
    o2_step,
    zones_air_step,
)


class OvenState(IntEnum):
    OFF = 0
    HEATING = 1
    READY = 2
    PROCESSING = 3
    ALARM = 4
    STANDBY = 5


class Command(IntEnum):
    APPLY = 1
    LOAD = 2
    UNLOAD = 3
    CLEAR = 4
    STANDBY = 5


ALARM_TEXT = {
    510: "ZONE OVER TEMPERATURE",
    520: "CONVEYOR JAM",
    530: "EXIT BLOCKED",
    540: "O2 HIGH",
    550: "N2 FLOW LOW",
    560: "THERMOCOUPLE FAULT",
    900: "EMERGENCY STOP",
}
ZONE_ALARMS = frozenset({510, 560})
BELT_STOPPING_ALARMS = frozenset({520, 530, 900})

FLAG_BELT_STOPPED = 1
FLAG_O2_HIGH = 2
FLAG_ZONE_ALARM = 4

# Register addresses (protocol, 0-based).
HR_ZONE_SP = 0
HR_CONVEYOR_SPEED = 10
HR_O2_LIMIT = 11
HR_TAL_THRESHOLD = 12
HR_PROFILE_ID = 13
HR_COMMAND = 20
HR_LOAD_WAFER_ID = 30
IR_STATE = 10
IR_EXIT = 20
IR_EXIT_WAFER_ID = 30
IR_CURVE_LEN = 99
IR_CURVE = 100
CURVE_REGISTERS = 250
ID_REGISTERS = 8
TC_FAILED = 0x7FFF

HOLDING_MAP = addresses(range(0, 14), [HR_COMMAND], range(30, 38))
INPUT_MAP = addresses(range(0, 15), range(20, 27), range(30, 38), [IR_CURVE_LEN],
                      range(IR_CURVE, IR_CURVE + CURVE_REGISTERS))
# The exit block's unlisted IR 27-29 read 0 inside a read that spans them, as the spec's
# worked example reads IR 20-37 in one request; a read that starts or ends in them is 02.
EXIT_GAP = range(27, 30)
INPUT_MAP_ACROSS = INPUT_MAP | addresses(EXIT_GAP)
DISCRETE_MAP = addresses(range(4))
COIL_MAP = addresses(range(2))

# Staging limits (raw register values), per holding register 0-12; 13 takes any value.
_LIMITS = {**{a: (0, 4000) for a in range(10)}, 10: (200, 1500), 11: (10, 1000), 12: (500, 4000)}
_NAMES = {**{a: f"ZONE_SP[{a + 1}]" for a in range(10)}, 10: "CONVEYOR_SPEED", 11: "O2_LIMIT",
          12: "TAL_THRESHOLD", 13: "PROFILE_ID"}

# Power-up staging: zones off; 600 mm/min, 100 ppm, Sn63Pb37 liquidus 183.0 C, profile 0.
_POWER_UP_STAGING = [0] * 10 + [600, 100, 1830, 0]

READY_HOLD_S = 60.0
STABLE_BAND_C = 2.0
OVER_TEMPERATURE_C = 15.0
ENTRANCE_CLEAR_MM = 450.0
NOISE_C = 0.15  # thermocouple reading noise, uniform +-
_NOISE_TABLE = 4099  # prime: the pattern does not line up with the 10 zones
STANDBY_SETPOINT_C = 100.0


class OvenModel(LatchedAlarms):
    """The oven's state and physics; ``read``/``write`` are its register map."""

    TOOL = "oven"
    ALARM_TEXT = ALARM_TEXT

    function_codes = frozenset({1, 2, 3, 4, 5, 6, 16})
    register_span = {Table.COILS: 2, Table.DISCRETE_INPUTS: 4, Table.HOLDING: 38,
                     Table.INPUT: IR_CURVE + CURVE_REGISTERS}

    def __init__(self, seed: int = 0, *, start: float = 0.0,
                 belt_counts_exit: bool = True, curve_kept_after_unload: bool = True) -> None:
        rng = random.Random(seed)
        # WAFERS_ON_BELT with the wafer waiting at the exit (falls at UNLOAD), or the
        # tunnel's wafers only (falls at the exit): the spec says neither (docs/simulator.md).
        self.belt_counts_exit = belt_counts_exit
        # The exit curve (IR 99-349) after UNLOAD: kept with the values until the next wafer
        # arrives, or gone (EXIT_CURVE_LEN 0): the spec says neither (docs/simulator.md).
        self.curve_kept_after_unload = curve_kept_after_unload
        self._curve_gone = False
        # Thermocouple noise by step number (not drawn in sequence), so idle time can be skipped
        # in one go and the readings still do not depend on how often anyone polls.
        self._noise_table = [(2.0 * rng.random() - 1.0) * NOISE_C for _ in range(_NOISE_TABLE)]
        self._t = float(start)  # model time: advances in whole steps
        self._steps = 0
        self._staged = list(_POWER_UP_STAGING)
        self._load_id = [0] * ID_REGISTERS
        self._setpoints = [0.0] * ZONES
        self._zones_now: ZoneSettings | None = None  # see _zones()
        self._speed_mm_min = 600
        self._o2_limit = 100
        self._tal_threshold_c = 183.0
        self._profile_id = 0
        self._applied = False
        self._standby = False
        self._air = [AMBIENT_C] * ZONES
        self._o2 = O2_AIR_PPM
        self._n2_coil = False
        self._belt_coil = True
        self._n2_supply_ok = True
        self._tunnel: list[WaferPass] = []  # in load order: [0] is nearest the exit
        self._exit_waiting: WaferPass | None = None
        self._exit_result: WaferPass | None = None
        self._init_alarms()
        self._tc_failed: set[int] = set()
        self._stuck_heaters: set[int] = set()
        self._jammed = False
        self._estop = False
        self._stable_since: float | None = None
        self._armed = False  # over-temperature watch starts once READY was reached
        self._wafers_taken = 0
        self._events: deque[tuple[float, str]] = deque(maxlen=1000)
        self._last_state = self._state()

    # --- time ----------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        """Tool time of the last integrated step."""
        return self._t

    def advance(self, now: float) -> None:
        """Integrate the physics up to ``now`` in whole steps."""
        while self._t + STEP_S <= now + 1e-9:
            steps = int((now - self._t) / STEP_S + 1e-9)
            if steps > 2 and self._settled():
                self._coast(steps - 1)  # the last step runs in full: events, state
            self._step()

    def _settled(self) -> bool:
        """Nothing will change but time: empty tunnel, no faults acting, air and O2 converged."""
        if (self._tunnel or self._estop or self._stuck_heaters or self._tc_failed
                or (self._n2_coil and not self._n2_supply_ok)):
            return False
        # thermal.py puts air and O2 exactly on target once they are within a hair of it
        if self._o2 != (O2_PURGED_PPM if self._n2_coil else O2_AIR_PPM):
            return False
        return all(air == (sp if sp > 0 else AMBIENT_C)
                   for air, sp in zip(self._air, self._setpoints, strict=True))

    def _coast(self, steps: int) -> None:
        """Skip ``steps`` quiet steps at once (only scheduled alarms could interrupt them)."""
        if self._time_alarms:
            due = int((self._time_alarms[0][0] - self._t) / STEP_S + 1e-9) - 1
            steps = min(steps, due)
        stable_from = self._t + STEP_S if self._stable_since is None else self._stable_since
        if self._applied and not self._standby and not self._armed:
            # READY (and its event) must come in a full step, at its exact time
            steps = min(steps, round((stable_from + READY_HOLD_S - self._t) / STEP_S) - 1)
        if steps < 1:
            return
        self._t += steps * STEP_S
        self._steps += steps
        self._stable_since = stable_from  # settled air is within the band

    def _zones(self) -> ZoneSettings:
        """Worked out once for each setting of the zones (``_heating_changed`` says when),
        not in every step, where it cost more than the physics."""
        if self._zones_now is None:
            self._zones_now = ZoneSettings(self._setpoints, self._estop, self._tc_failed,
                                           self._stuck_heaters, OVER_TEMPERATURE_C)
        return self._zones_now

    def _heating_changed(self) -> None:  # setpoints, e-stop, a thermocouple or a heater
        self._zones_now = None

    def _step(self) -> None:
        air = self._air
        zones_air_step(air, self._zones().heating)
        self._steps += 1
        purging = self._n2_coil and self._n2_supply_ok
        if self._o2 != (O2_PURGED_PPM if purging else O2_AIR_PPM):  # on target it stays
            self._o2 = o2_step(self._o2, purging)

        o2 = self._o2
        o2_high = o2 > self._o2_limit
        mid_tunnel_alarms: list[int] = []
        if self._tunnel:
            running = self._belt_running()
            travel = self._speed_mm_min / 60.0 * STEP_S if running else 0.0
            flags = (0 if running else FLAG_BELT_STOPPED) | (FLAG_O2_HIGH if o2_high else 0)
            if not ZONE_ALARMS.isdisjoint(self._alarms):
                flags |= FLAG_ZONE_ALARM
            for wafer in self._tunnel:
                start = wafer.position_mm
                wafer.position_mm = min(TUNNEL_MM, start + travel)
                wafer.step(air_at(0.5 * (start + wafer.position_mm), air), o2)
                wafer.flags |= flags
                if wafer.pending_alarms and wafer.position_mm >= TUNNEL_MM / 2:
                    mid_tunnel_alarms.extend(wafer.pending_alarms)
                    wafer.pending_alarms = []
        self._t += STEP_S

        for code in mid_tunnel_alarms:
            self._latch(code, "fault plan")
        if self._time_alarms:
            self._fire_due_alarms()
        if self._tunnel:
            self._arrive_at_exit()
        if self._armed and self._over_temperature():
            self._latch(510)
        if self._tunnel and o2_high:
            self._latch(540)
        if self._n2_coil and not self._n2_supply_ok:
            self._latch(550)

        if self._zones_stable():
            if self._stable_since is None:
                self._stable_since = self._t
        else:
            self._stable_since = None
        if not self._armed and self._applied and not self._standby and self._ready():
            self._armed = True
        self._note_state()

    def _arrive_at_exit(self) -> None:
        if not self._tunnel or self._tunnel[0].position_mm < TUNNEL_MM:
            return
        if 530 in self._alarms:
            # The blocked wafer stays where the belt stopped until CLEAR starts it again:
            # once the host has unloaded the one waiting, the cause is gone and CLEAR works.
            return
        if self._exit_waiting is None:
            wafer = self._tunnel.pop(0)
            self._exit_waiting = self._exit_result = wafer
            self._curve_gone = False
            self._event(f"wafer {wafer.wafer_id!r} at the exit, peak {wafer.peak_c:.1f} C")
        elif 530 not in self._alarms:
            self._latch(530, f"wafer {self._tunnel[0].wafer_id!r} behind "
                             f"{self._exit_waiting.wafer_id!r}")
            for wafer in self._tunnel:
                wafer.flags |= FLAG_BELT_STOPPED

    # --- derived state ---------------------------------------------------------------------------

    def _belt_running(self) -> bool:
        return (self._belt_coil and not self._jammed and not self._estop
                and BELT_STOPPING_ALARMS.isdisjoint(self._alarms))

    def _zones_stable(self) -> bool:
        zones = self._zones()
        if zones.never_stable:
            return False
        air = self._air
        for i, sp in zones.watched:
            off = air[i] - sp
            if off > STABLE_BAND_C or off < -STABLE_BAND_C:  # abs(off) > band, without a call
                return False
        return True

    def _ready(self) -> bool:
        return self._stable_since is not None and self._t - self._stable_since >= READY_HOLD_S

    def _over_temperature(self) -> bool:
        air = self._air
        for i, limit in self._zones().over_limits:
            if air[i] > limit:
                return True
        return False

    def _wafers_on_belt(self) -> int:
        """IR 11 WAFERS_ON_BELT, which APPLY and STANDBY need at 0 (as the spec says)."""
        waiting = self._exit_waiting is not None and self.belt_counts_exit
        return len(self._tunnel) + waiting

    def _entrance_clear(self) -> bool:
        return not self._tunnel or self._tunnel[-1].position_mm >= ENTRANCE_CLEAR_MM

    def _state(self) -> OvenState:
        if self._alarms:
            return OvenState.ALARM
        if self._standby:
            return OvenState.STANDBY
        if not self._applied:
            return OvenState.OFF
        # PROCESSING while WAFERS_ON_BELT > 0: APPLY needs it 0 and moves the oven to
        # "state HEATING, then READY" (reflow-oven.md), so on an oven counting the tunnel
        # only, a wafer waiting at the exit leaves it HEATING / READY (LOAD refused
        # until READY), as an empty exit does.
        if self._wafers_on_belt():
            return OvenState.PROCESSING
        return OvenState.READY if self._ready() else OvenState.HEATING

    def _cause_present(self, code: int) -> bool:
        if code == 510:
            return self._over_temperature()
        if code == 520:
            return self._jammed
        if code == 530:
            return self._exit_waiting is not None
        if code == 540:
            return bool(self._tunnel) and self._o2 > self._o2_limit
        if code == 550:
            return self._n2_coil and not self._n2_supply_ok
        if code == 560:
            return bool(self._tc_failed)
        if code == 900:
            return self._estop
        return False  # fault-plan alarms are momentary: only the latch remains

    # --- events (the server logs them) -----------------------------------------------------------

    def _latched(self, code: int) -> None:
        if code in ZONE_ALARMS:
            for wafer in self._tunnel:
                wafer.flags |= FLAG_ZONE_ALARM

    # --- register map ----------------------------------------------------------------------------

    def read(self, table: Table, address: int, count: int, now: float) -> list[Any]:
        self.advance(now)
        if table is Table.HOLDING:
            check_span(HOLDING_MAP, table, address, count)
            return [self._holding(a) for a in range(address, address + count)]
        if table is Table.INPUT:
            end = address + count
            across = address < EXIT_GAP.start and end > EXIT_GAP.stop
            check_span(INPUT_MAP_ACROSS if across else INPUT_MAP, table, address, count)
            blocks: dict[int, list[int]] = {}
            return [0 if a in EXIT_GAP else self._input(a, blocks) for a in range(address, end)]
        if table is Table.DISCRETE_INPUTS:
            check_span(DISCRETE_MAP, table, address, count)
            bits = [self._entrance_clear(), self._exit_waiting is not None,
                    self._zones_stable(), bool(self._alarms)]
            return bits[address:address + count]
        check_span(COIL_MAP, table, address, count)
        return [self._n2_coil, self._belt_coil][address:address + count]

    def _holding(self, a: int) -> int:
        if a < 14:
            return self._staged[a]
        if a == HR_COMMAND:
            return 0
        return self._load_id[a - HR_LOAD_WAFER_ID]

    def _input(self, a: int, blocks: dict[int, list[int]]) -> int:
        """IR ``a``; ``blocks``: the status and exit blocks already worked out in this read
        (once per register, reading the exit block cost seven of them)."""
        if a < ZONES:
            if a in self._tc_failed:
                return TC_FAILED
            noise = self._noise_table[(self._steps * ZONES + a) % _NOISE_TABLE]
            return to_s16(self._air[a] + noise)
        if a < IR_EXIT:
            if IR_STATE not in blocks:
                blocks[IR_STATE] = [int(self._state()), self._wafers_on_belt(),
                                    self._alarms[0] if self._alarms else 0,
                                    to_u16(self._o2), self._profile_id]
            return blocks[IR_STATE][a - IR_STATE]
        w = self._exit_result
        if a < IR_EXIT_WAFER_ID:
            if w is None:
                return 0
            if IR_EXIT not in blocks:
                blocks[IR_EXIT] = [to_s16(w.peak_c), to_u16(w.tal_s, 10),
                                   to_u16(w.ramp_max_c_s, 100), to_u16(w.cool_max_c_s, 100),
                                   w.profile_id, to_u16(w.o2_max_ppm), w.flags]
            return blocks[IR_EXIT][a - IR_EXIT]
        if a < IR_CURVE_LEN:
            if IR_EXIT_WAFER_ID not in blocks:
                blocks[IR_EXIT_WAFER_ID] = text_to_registers(w.wafer_id if w else "",
                                                             ID_REGISTERS)
            return blocks[IR_EXIT_WAFER_ID][a - IR_EXIT_WAFER_ID]
        curve = w.curve_c if w and not self._curve_gone else []
        if a == IR_CURVE_LEN:
            return len(curve)
        k = a - IR_CURVE
        return to_s16(curve[k]) if k < len(curve) else 0

    def write(self, table: Table, address: int, values: Sequence[Any], now: float) -> None:
        self.advance(now)
        count = len(values)
        if table is Table.COILS:
            check_span(COIL_MAP, table, address, count)
            for a, value in zip(range(address, address + count), values, strict=True):
                self._set_coil(a, bool(value))
        elif table is Table.HOLDING:
            check_span(HOLDING_MAP, table, address, count)
            self._write_holding(address, [int(v) for v in values])
        else:
            raise Refusal(ILLEGAL_FUNCTION, f"{table.value} are read only")
        self._note_state()

    def _set_coil(self, a: int, on: bool) -> None:
        if a == 0 and on != self._n2_coil:
            self._n2_coil = on
            self._event(f"N2 purge {'on' if on else 'off'}")
            if on and not self._n2_supply_ok:
                self._latch(550)
        elif a == 1 and on != self._belt_coil:
            self._belt_coil = on
            self._event(f"conveyor {'run' if on else 'stop'}")
            if not on:
                # reflow-oven.md: switching it off "stops the belt (and flags every wafer on
                # it)": at once, also when it runs again before the next whole step
                for wafer in self._tunnel:
                    wafer.flags |= FLAG_BELT_STOPPED

    def _write_holding(self, address: int, words: list[int]) -> None:
        span = range(address, address + len(words))
        for a, w in zip(span, words, strict=True):  # check everything before writing anything
            if a in _LIMITS:
                lo, hi = _LIMITS[a]
                if not lo <= w <= hi:
                    raise Refusal(ILLEGAL_VALUE, f"{_NAMES[a]} = {w}: expected {lo}..{hi}")
        if address <= HR_LOAD_WAFER_ID + ID_REGISTERS - 1 and address + len(words) > 30:
            check_text_words([w for a, w in zip(span, words, strict=True) if a >= 30],
                             "LOAD_WAFER_ID")
        if address == HR_COMMAND:
            self._command(words[0])
            return
        for a, w in zip(span, words, strict=True):
            if a < 14:
                self._staged[a] = w
            else:
                self._load_id[a - HR_LOAD_WAFER_ID] = w

    # --- commands --------------------------------------------------------------------------------

    def _command(self, code: int) -> None:
        try:
            command = Command(code)
        except ValueError:
            raise Refusal(ILLEGAL_VALUE, f"COMMAND {code}: unknown code (1-5)") from None
        if command is Command.APPLY:
            busy_unless(self._wafers_on_belt() == 0, "APPLY: wafers on the belt")
            busy_unless(not self._alarms, f"APPLY: alarm {self._alarm_code()} latched")
            s = self._staged
            self._setpoints = [w / 10.0 for w in s[:ZONES]]
            self._heating_changed()
            self._speed_mm_min, self._o2_limit = s[HR_CONVEYOR_SPEED], s[HR_O2_LIMIT]
            self._tal_threshold_c, self._profile_id = s[HR_TAL_THRESHOLD] / 10.0, s[HR_PROFILE_ID]
            self._applied, self._standby, self._armed = True, False, False
            self._stable_since = None  # READY again only after 60 s stable at these setpoints
            self._event(f"APPLY profile {self._profile_id}: setpoints "
                        f"{', '.join(f'{sp:g}' for sp in self._setpoints)} C, "
                        f"{self._speed_mm_min} mm/min")
        elif command is Command.LOAD:
            state = self._state()
            busy_unless(state in (OvenState.READY, OvenState.PROCESSING),
                              f"LOAD: state {state.name}")
            busy_unless(self._entrance_clear(), "LOAD: entrance not clear")
            busy_unless(self._n2_coil, "LOAD: N2 purge off")
            wafer_id = registers_to_text(self._load_id)
            if not wafer_id:
                raise Refusal(ILLEGAL_VALUE, "LOAD: LOAD_WAFER_ID is empty")
            self._wafers_taken += 1
            self._tunnel.append(WaferPass(
                wafer_id=wafer_id, number=self._wafers_taken, profile_id=self._profile_id,
                tal_threshold_c=self._tal_threshold_c, o2_max_ppm=self._o2,
                pending_alarms=self._wafer_alarms.pop(self._wafers_taken, [])))
            self._event(f"LOAD {wafer_id!r} (wafer {self._wafers_taken})")
        elif command is Command.UNLOAD:
            busy_unless(self._exit_waiting is not None, "UNLOAD: no wafer at the exit")
            assert self._exit_waiting is not None
            self._event(f"UNLOAD {self._exit_waiting.wafer_id!r}")
            self._exit_waiting = None
            self._curve_gone = not self.curve_kept_after_unload
        elif command is Command.CLEAR:
            self._clear_alarms()
        else:
            busy_unless(self._wafers_on_belt() == 0, "STANDBY: wafers on the belt")
            self._setpoints = [STANDBY_SETPOINT_C] * ZONES
            self._heating_changed()
            # reflow-oven.md: "all zone setpoints to 100.0 C", and HR 0-9 are ZONE_SP: they
            # read 1000 too. The host stages its profile again before the next APPLY.
            self._staged[:ZONES] = [round(STANDBY_SETPOINT_C * 10)] * ZONES
            self._standby, self._armed = True, False
            self._stable_since = None
            self._event("STANDBY: all zones to 100.0 C")
        self._note_state()

    def _alarm_code(self) -> int:
        return self._alarms[0] if self._alarms else 0

    # --- faults (fault plan, tests, the operator's hands) ----------------------------------------

    def apply_fault_plan(self, plan: Any, tool: str = "oven") -> None:
        """Take the scheduled parts of a ``sim.faults.FaultPlan`` (alarms)."""
        if getattr(plan, "door_open_at", None) is not None:
            raise ValueError(f"{tool}: door= faults apply to the cleaner; the RF-10N spec "
                             "has no door alarm")
        for alarm in plan.alarms:
            self.schedule_alarm(alarm.code, at_time=alarm.at_time, at_wafer=alarm.at_wafer)

    def _zone_index(self, zone: int) -> int:
        if not 1 <= zone <= ZONES:
            raise ValueError(f"oven zone must be 1-{ZONES}, got {zone}")
        return zone - 1

    def fail_thermocouple(self, zone: int, now: float) -> None:
        """The zone's thermocouple opens: it reads 0x7FFF, its heater is cut, alarm 560."""
        self.advance(now)
        self._tc_failed.add(self._zone_index(zone))
        self._heating_changed()
        self._latch(560, f"zone {zone}")

    def repair_thermocouple(self, zone: int, now: float) -> None:
        self.advance(now)
        self._tc_failed.discard(self._zone_index(zone))
        self._heating_changed()

    def stick_heater(self, zone: int, now: float) -> None:
        """A welded heater relay: the zone runs away above setpoint (510 once READY)."""
        self.advance(now)
        self._stuck_heaters.add(self._zone_index(zone))
        self._heating_changed()

    def repair_heater(self, zone: int, now: float) -> None:
        self.advance(now)
        self._stuck_heaters.discard(self._zone_index(zone))
        self._heating_changed()

    def lose_nitrogen(self, now: float) -> None:
        """N2 supply fails: O2 climbs toward air; alarm 550 while the purge is switched on."""
        self.advance(now)
        self._n2_supply_ok = False
        if self._n2_coil:
            self._latch(550)

    def restore_nitrogen(self, now: float) -> None:
        self.advance(now)
        self._n2_supply_ok = True

    def jam_conveyor(self, now: float) -> None:
        self.advance(now)
        self._jammed = True
        self._latch(520)

    def clear_jam(self, now: float) -> None:
        self.advance(now)
        self._jammed = False

    def press_estop(self, now: float) -> None:
        """Emergency stop: belt stops, every heater is cut, alarm 900."""
        self.advance(now)
        self._estop = True
        self._heating_changed()
        self._latch(900)

    def release_estop(self, now: float) -> None:
        self.advance(now)
        self._estop = False
        self._heating_changed()

    # --- for tests and the benchmark: a read-only look inside ------------------------------------

    def state(self, now: float) -> OvenState:
        self.advance(now)
        return self._state()

    def zone_air(self, now: float) -> list[float]:
        """True zone air temperatures (no thermocouple noise)."""
        self.advance(now)
        return list(self._air)

    def wafer_positions(self, now: float) -> list[tuple[str, float]]:
        """(wafer id, mm from the entrance) of every wafer in the tunnel, nearest the exit first."""
        self.advance(now)
        return [(w.wafer_id, w.position_mm) for w in self._tunnel]

    def exit_wafer(self, now: float) -> str | None:
        """The wafer waiting at the exit (not yet UNLOADed), if any."""
        self.advance(now)
        return self._exit_waiting.wafer_id if self._exit_waiting is not None else None


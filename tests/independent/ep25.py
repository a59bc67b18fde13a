"""An EP-25 barrier plater written from barrier-plater.md alone. Pure: no I/O, no clock.

``advance(dt)`` moves the tool forward by ``dt`` tool seconds; ``handle(line)`` answers one
host line (the replayed event lines of ``EVENTS?`` first, then the reply). Events go to
``events`` (``(seq, text)``, the tool's last 1,000) as they happen; the server pushes the
new ones to the host. Strict choices where the spec is silent (docs/protocols.md,
"Independent tools"):

* a line is a command only as the table writes it: capitals, single spaces, no leading
  or trailing blank, plain decimals (no sign, exponent or ``nan``); anything else is
  ``ERR 01``. Checks in this order: 01, 06 (in ALARM, for all but the queries, CLEAR and
  REPLENISH), 04, 03, 05;
* a factory recipe that is not ours (``2 0.05 82 78``) and both baths at 25 °C at
  power-up, so a host must send RECIPE and wait for the baths (2,000 s for nickel);
* ``BATH?`` prints temperatures to 0.1 °C while START judges ±1 °C on the tool's own
  reading (a printed 84.0 may be 83.96: ``ERR 05``);
* ``STATE?``'s ``remaining_s`` is a whole number: the batch's (or the replenish's)
  remaining seconds, ``0`` when nothing runs (the spec gives no ``-`` for it);
* a DONE is pushed after its ``STATE DONE``; a batch an alarm ended pushes its ``DONE
  <batch> ALARM`` only at CLEAR (``done_at="alarm"``: at once);
* any blocking alarm raised while RUNNING ends the batch with status ALARM (the spec's
  CLEAR: "a batch that was RUNNING ... has already ended");
* the door: opened while RUNNING it raises 400; otherwise it raises nothing, and LOAD,
  START and UNLOAD (the carrier moving) are refused ``ERR 05`` while it is open;
* a bath out of ±3 °C raises 700/710 only while RUNNING; elsewhere START is ``05``;
* ``ABORT``: 60 s in the rinse tank (``STATE?`` step ``RINSE``, no STEP event), then
  DONE with status ABORTED; a second ABORT meanwhile is ``OK`` and changes nothing;
* ``EVENTS? n`` beyond the tool's last number: ``ERR 03``;
* a power loss keeps the recipe, bath age, last result and the numbering, **not** the
  held events (the spec lists the numbering only): a host catching up afterwards meets
  a gap. A running batch ends ABORTED and its carrier is taken out by hand (IDLE, no
  DONE event); a LOADED or DONE carrier stays; the baths are at 25 °C again;
* two wafers of one carrier with the same id: ``ERR 03`` (``RESULT? <wafer>`` could not
  tell them apart);
* CLEAR while the cause is present: ``ERR 06``; 720 (pH) and 740 (bath life) go only
  with REPLENISH, which is allowed in ALARM 720 as well (its remedy says so);
* ``ALARM?`` names only a latched alarm (``OK 0 NONE`` otherwise). The spec also allows a
  tool that names its standing warning there (``OK <code> <text>``, and 741 is in its
  alarm table): ``warning_in_alarm=True`` answers ``OK 741 NI MTO HIGH`` from 5.5 MTO
  on while no alarm is latched (the state stays what it was: the warning does not block).

Causes (``faults``: plans of ``tests/independent/faults.py``; ``WHEN`` one of ``t``,
``load``, ``start``, ``plate`` (NI_PLATE starts), ``gold`` (AU_IMMERSION starts),
``done``): ``400`` the door open, ``700``/``710`` the nickel/gold heater off (the bath
cools at its rate), ``730`` the tank level low, ``900`` the emergency stop, ``power``
the power lost for the plan's duration.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass, field

from tests.independent.faults import Events, Fault, parse

IDLE, LOADED, RUNNING, DONE, ALARM, MAINT = "IDLE", "LOADED", "RUNNING", "DONE", "ALARM", "MAINT"
AMBIENT_C = 25.0
HELD = 1000
NI_UM_H = 15.0  # at 85 °C, fresh bath
MTO_PER_WAFER_UM = 0.004
WARN_MTO, LIFE_MTO = 5.5, 6.0
PH_FRESH, PH_LOW = 4.8, 4.4
REPLENISH_S = 3600.0
ABORT_RINSE_S = 60.0
TICK_S = 1.0
LEVEL_PCT, LOW_LEVEL_PCT = 92.0, 15.0
FAULTS = {"400", "700", "710", "730", "900", "power"}
ERRORS = {1: "SYNTAX", 2: "UNKNOWN", 3: "RANGE", 4: "WRONG STATE", 5: "NOT READY",
          6: "ALARM ACTIVE", 9: "BUSY LINK"}
ALARMS = {400: "DOOR OPEN", 700: "NI BATH TEMP OUT", 710: "AU BATH TEMP OUT",
          720: "NI PH OUT OF RANGE", 730: "TANK LEVEL LOW", 740: "NI BATH LIFE",
          741: "NI MTO HIGH", 900: "EMERGENCY STOP"}
FIXED_STEPS = {"PRECLEAN": 120.0, "ACTIVATE": 90.0, "RINSE_1": 60.0, "RINSE_2": 60.0,
               "DRY": 300.0}
STEPS = ("PRECLEAN", "ACTIVATE", "NI_PLATE", "RINSE_1", "AU_IMMERSION", "RINSE_2", "DRY")
QUERIES = {"*IDN?", "STATE?", "RECIPE?", "RESULT?", "BATH?", "EVENTS?", "ALARM?"}
_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
_ID = re.compile(r"^[\x21-\x7e]{1,16}$")
_FIELD = re.compile(r"^[\x21-\x7e]+$")
_WHOLE = re.compile(r"^\d+$")
# command -> (method, fewest and most fields, the form of each field)
COMMANDS = {
    "*IDN?": ("cmd_idn", 0, 0, _FIELD), "STATE?": ("cmd_state", 0, 0, _FIELD),
    "RECIPE": ("cmd_recipe", 4, 4, _DECIMAL), "RECIPE?": ("cmd_recipe_q", 0, 0, _FIELD),
    "LOAD": ("cmd_load", 2, 2, _FIELD), "START": ("cmd_start", 0, 0, _FIELD),
    "ABORT": ("cmd_abort", 0, 0, _FIELD), "UNLOAD": ("cmd_unload", 0, 0, _FIELD),
    "CLEAR": ("cmd_clear", 0, 0, _FIELD), "RESULT?": ("cmd_result", 0, 1, _FIELD),
    "BATH?": ("cmd_bath", 0, 0, _FIELD), "REPLENISH": ("cmd_replenish", 0, 0, _FIELD),
    "EVENTS?": ("cmd_events", 1, 1, _WHOLE), "ALARM?": ("cmd_alarm", 0, 0, _FIELD),
}


class Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def gold_time_s(au_um: float) -> float:
    return 600.0 if au_um <= 0.05 else 900.0 if au_um <= 0.10 else 1200.0


@dataclass
class Recipe:
    ni_um: float = 2.0
    au_um: float = 0.05
    ni_c: float = 82.0
    au_c: float = 78.0


@dataclass
class Bath:
    temp: float
    heat: float  # °C/s
    cool: float
    heater_on: bool = True

    def step(self, setpoint: float, dt: float) -> None:
        if self.heater_on and self.temp < setpoint:
            self.temp = min(setpoint, self.temp + self.heat * dt)
        elif self.temp > setpoint or not self.heater_on:
            self.temp = max(setpoint if self.heater_on else AMBIENT_C, self.temp - self.cool * dt)


@dataclass
class Batch:
    batch_id: str
    wafers: list[str]
    recipe: Recipe
    step: int = 0
    in_step_s: float = 0.0
    ni_um: float = 0.0  # the in-situ gauge
    au_s: float = 0.0  # seconds of gold immersion done
    aborting_s: float | None = None  # in the rinse tank after ABORT


@dataclass
class Result:
    batch_id: str
    status: str
    wafers: dict[str, tuple[float, float]] = field(default_factory=dict)

    def line(self) -> str:
        ni = [n for n, _ in self.wafers.values()]
        au = [a for _, a in self.wafers.values()]
        return (f"OK {self.batch_id} {self.status} {sum(ni) / len(ni):.2f} {min(ni):.2f} "
                f"{max(ni):.2f} {sum(au) / len(au):.3f} {len(ni)}")


class Plater:
    def __init__(self, *, first_seq: int = 1000, mto: float = 0.0,
                 faults: list[str | Fault] | None = None, done_at: str = "clear",
                 serial: str = "IND-0025", warning_in_alarm: bool = False) -> None:
        self.now = 0.0
        self.warning_in_alarm = warning_in_alarm
        self.faults = [parse(f, FAULTS) if isinstance(f, str) else f for f in faults or []]
        self.happenings = Events(self.faults)
        self.done_at = done_at
        self.serial = serial
        # What survives a power loss:
        self.seq = first_seq
        self.recipe = Recipe()
        self.mto = mto
        self.result: Result | None = None
        # What does not:
        self.events: deque[tuple[int, str]] = deque(maxlen=HELD)
        self.log: list[str] = []
        self.powered = True
        self.power_cuts = 0
        self._pending_state = IDLE  # the state the tool powers up in
        self._power_up(state=IDLE)

    def _power_up(self, state: str) -> None:
        self.ni = Bath(AMBIENT_C, 0.03, 0.01)
        self.au = Bath(AMBIENT_C, 0.05, 0.02)
        self.in_band = {"ni": False, "au": False}
        self.base = state
        self.batch: Batch | None = None
        self.carrier: tuple[str, list[str]] | None = None
        self.alarm = 0
        self.ended_by_alarm: str | None = None  # batch id whose DONE waits for CLEAR
        self.maint_s = 0.0
        self.maint_return = IDLE
        self.door_open = False
        self.warned = self.mto >= WARN_MTO

    # --- time -----------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        while dt > 1e-9:
            step = min(TICK_S, dt)
            self._tick(step)
            dt -= step

    def _tick(self, dt: float) -> None:
        self.now += dt
        if self._power(dt):
            return
        self.ni.heater_on = not self.happenings.active("700", self.now)
        self.au.heater_on = not self.happenings.active("710", self.now)
        self.ni.step(self.recipe.ni_c, dt)
        self.au.step(self.recipe.au_c, dt)
        self._bath_events()
        self._door()
        if self.state() == RUNNING and self.batch is not None:
            self._run(dt)
        elif self.base == MAINT and not self.alarm:
            self.maint_s -= dt
            if self.maint_s <= 0:
                self.mto = 0.0
                self.warned = False
                self.log.append("replenished")
                self._set(self.maint_return)
        self._causes()

    def _power(self, dt: float) -> bool:
        """True while the power is off."""
        off = bool(self.happenings.active("power", self.now))
        if off and self.powered:
            self.powered = False
            self.power_cuts += 1
            self.log.append("power off")
            state = self.base
            if self.batch is not None:  # ends ABORTED; its carrier is rinsed by hand
                self._finish("ABORTED")
                self.carrier = None
                state = IDLE
            elif state == MAINT:
                state = self.maint_return  # the replenish did not finish: the bath is as it was
            self._pending_state = state
            self.events.clear()  # the numbering survives, the held events do not
        elif not off and not self.powered:
            self.powered = True
            carrier = self.carrier
            self._power_up(self._pending_state)
            self.carrier = carrier
            self.log.append("power on")
            self._event(f"STATE {self.state()}")
            self._causes()
        return not self.powered

    def _bath_events(self) -> None:
        for name, bath, sp in (("ni", self.ni, self.recipe.ni_c),
                               ("au", self.au, self.recipe.au_c)):
            inside = abs(bath.temp - sp) <= 1.0
            if inside and not self.in_band[name]:
                self._event(f"BATH {self.ni.temp:.1f} {self.au.temp:.1f}")
            self.in_band[name] = inside

    def _door(self) -> None:
        door = bool(self.happenings.active("400", self.now))
        if door != self.door_open:
            self.door_open = door
            self.log.append("door open" if door else "door closed")

    def _causes(self) -> None:
        """Raise the first cause present (one alarm at a time; the others latch after)."""
        if self.alarm or not self.powered:
            return
        running = self.base == RUNNING
        for code, present in (
            (900, self.happenings.active("900", self.now)),
            (400, running and self.door_open),
            (700, running and abs(self.ni.temp - self.recipe.ni_c) > 3.0),
            (710, running and abs(self.au.temp - self.recipe.au_c) > 3.0),
            (730, self.happenings.active("730", self.now)),
            (720, self.ph() < PH_LOW),
        ):
            if present:
                self._raise(code)
                return

    def _cause_present(self, code: int) -> bool:
        return {
            900: bool(self.happenings.active("900", self.now)),
            400: self.door_open,
            700: abs(self.ni.temp - self.recipe.ni_c) > 3.0,
            710: abs(self.au.temp - self.recipe.au_c) > 3.0,
            730: bool(self.happenings.active("730", self.now)),
            720: True,  # REPLENISH only
            740: True,
        }[code]

    def _run(self, dt: float) -> None:
        batch = self.batch
        assert batch is not None
        while dt > 1e-9 and self.batch is not None:
            if batch.aborting_s is not None:
                used = min(dt, batch.aborting_s)
                batch.aborting_s -= used
                dt -= used
                if batch.aborting_s <= 1e-9:
                    self._end("ABORTED")
                continue
            name = STEPS[batch.step]
            if name == "NI_PLATE":
                rate = self.ni_rate_um_s()
                need = (batch.recipe.ni_um - batch.ni_um) / rate
                used = min(dt, need)
                plated = rate * used
                batch.ni_um = min(batch.recipe.ni_um, batch.ni_um + plated)
                self.mto += MTO_PER_WAFER_UM * len(batch.wafers) * plated
                if self.mto >= WARN_MTO and not self.warned:
                    self.warned = True
                    self._event(f"ALARM 741 {ALARMS[741]}")  # a warning: no state change
                over = used >= need - 1e-9
            else:
                length = (gold_time_s(batch.recipe.au_um) if name == "AU_IMMERSION"
                          else FIXED_STEPS[name])
                used = min(dt, length - batch.in_step_s)
                if name == "AU_IMMERSION":
                    batch.au_s += used
                batch.in_step_s += used
                over = batch.in_step_s >= length - 1e-9
            dt -= used
            if over:
                if batch.step + 1 == len(STEPS):
                    self._end("OK")
                else:
                    batch.step += 1
                    batch.in_step_s = 0.0
                    self._step_starts()

    def _step_starts(self) -> None:
        assert self.batch is not None
        name = STEPS[self.batch.step]
        self._event(f"STEP {name} {self.batch.batch_id}")
        self.happenings.happened({"NI_PLATE": "plate", "AU_IMMERSION": "gold"}.get(name, "step"),
                                 self.now)

    def ni_rate_um_s(self) -> float:
        rate = NI_UM_H / 3600.0 * 1.08 ** (self.ni.temp - 85.0) * 0.95 ** self.mto
        return max(rate, 1e-6)

    def ph(self) -> float:
        return PH_FRESH - (PH_FRESH - PH_LOW) * self.mto / LIFE_MTO

    def remaining_s(self) -> int:
        if self.base == MAINT:
            return math.ceil(max(0.0, self.maint_s) - 1e-9)
        batch = self.batch
        if batch is None or self.base != RUNNING:
            return 0
        if batch.aborting_s is not None:
            return math.ceil(batch.aborting_s - 1e-9)
        left = 0.0
        for i in range(batch.step, len(STEPS)):
            name = STEPS[i]
            if name == "NI_PLATE":
                left += (batch.recipe.ni_um - batch.ni_um) / self.ni_rate_um_s()
            else:
                length = (gold_time_s(batch.recipe.au_um) if name == "AU_IMMERSION"
                          else FIXED_STEPS[name])
                left += length - (batch.in_step_s if i == batch.step else 0.0)
        return math.ceil(left - 1e-9)

    # --- states, events, results -------------------------------------------------------
    def state(self) -> str:
        return ALARM if self.alarm else self.base

    def _event(self, text: str) -> None:
        self.seq += 1
        self.events.append((self.seq, text))

    def _set(self, state: str) -> None:
        before = self.state()
        self.base = state
        if self.state() != before:
            self._event(f"STATE {self.state()}")

    def _finish(self, status: str) -> None:
        """The batch's result: what was plated before its end, as the XRF head reads it."""
        batch = self.batch
        assert batch is not None
        gold = batch.recipe.au_um * min(1.0, batch.au_s / gold_time_s(batch.recipe.au_um))
        spread = random.Random(batch.batch_id)
        ni_dev = [spread.uniform(-0.03, 0.03) for _ in batch.wafers]
        au_dev = [spread.uniform(-0.06, 0.06) for _ in batch.wafers]
        ni_mean = sum(ni_dev) / len(ni_dev)
        au_mean = sum(au_dev) / len(au_dev)
        # each wafer within ±5 % (nickel) and ±10 % (gold) of the batch mean
        self.result = Result(batch.batch_id, status, {
            w: (batch.ni_um * (1 + n - ni_mean), gold * (1 + a - au_mean))
            for w, n, a in zip(batch.wafers, ni_dev, au_dev, strict=True)})
        self.log.append(f"done {batch.batch_id} {status} ni {batch.ni_um:.3f} au {gold:.4f}")
        self.batch = None
        self.happenings.happened("done", self.now)

    def _end(self, status: str) -> None:
        assert self.batch is not None
        batch_id = self.batch.batch_id
        self._finish(status)
        self._set(DONE)
        self._event(f"DONE {batch_id} {status}")

    def _raise(self, code: int) -> None:
        before = self.state()
        self.alarm = code
        self.log.append(f"alarm {code}")
        self._event(f"ALARM {code} {ALARMS[code]}")
        if before != ALARM:
            self._event(f"STATE {ALARM}")
        if self.base == RUNNING and self.batch is not None:
            batch_id = self.batch.batch_id
            self._finish("ALARM")
            self.base = DONE  # the batch does not resume: CLEAR leads to DONE
            if self.done_at == "alarm":
                self._event(f"DONE {batch_id} ALARM")
            else:
                self.ended_by_alarm = batch_id

    def _clear(self) -> None:
        code = self.alarm
        self.alarm = 0
        self.log.append(f"clear {code}")
        self._event(f"CLEARED {code}")
        self._event(f"STATE {self.base}")
        if self.ended_by_alarm is not None:
            self._event(f"DONE {self.ended_by_alarm} ALARM")
            self.ended_by_alarm = None
        self._causes()  # a cause still present latches at once

    # --- host lines ------------------------------------------------------------------
    def handle(self, line: str) -> list[str]:
        """The lines the tool writes for one host line: replayed events, then the reply."""
        try:
            return self._command(line)
        except Refused as refused:
            return [f"ERR {refused.code:02d} {ERRORS[refused.code]}"]

    def _command(self, line: str) -> list[str]:
        if not line or line != line.strip(" ") or "  " in line or not line.isascii():
            raise Refused(1)
        word, *args = line.split(" ")
        if word not in COMMANDS:
            raise Refused(1)
        method, fewest, most, form = COMMANDS[word]
        if not fewest <= len(args) <= most or not all(form.match(a) for a in args):
            raise Refused(1)
        if word not in QUERIES and self.state() == ALARM and word not in ("CLEAR", "REPLENISH"):
            raise Refused(6)
        reply: list[str] = getattr(self, method)(*args)
        if word not in QUERIES:
            self.log.append(" ".join([word.lower(), *args]))
        return reply

    def cmd_idn(self) -> list[str]:
        return [f"OK BARRIERTEK,EP-25,{self.serial},2.04"]

    def cmd_state(self) -> list[str]:
        batch = self.batch.batch_id if self.batch else self.carrier[0] if self.carrier else "-"
        step = "-"
        if self.batch is not None and self.base == RUNNING:
            step = "RINSE" if self.batch.aborting_s is not None else STEPS[self.batch.step]
        return [f"OK {self.state()} {batch} {step} {self.remaining_s()}"]

    def cmd_recipe(self, ni: str, au: str, ni_c: str, au_c: str) -> list[str]:
        values = [float(v) for v in (ni, au, ni_c, au_c)]
        if self.state() not in (IDLE, DONE):
            raise Refused(4)
        for value, (low, high) in zip(values, ((1.0, 8.0), (0.02, 0.15), (80.0, 90.0),
                                                (75.0, 88.0)), strict=True):
            if not low <= value <= high:
                raise Refused(3)
        self.recipe = Recipe(*values)
        return ["OK"]

    def cmd_recipe_q(self) -> list[str]:
        r = self.recipe
        return [f"OK {r.ni_um:g} {r.au_um:g} {r.ni_c:g} {r.au_c:g}"]

    def cmd_load(self, batch_id: str, wafers: str) -> list[str]:
        if self.state() != IDLE:
            raise Refused(4)
        ids = wafers.split(",")
        if (not _ID.match(batch_id) or "," in batch_id or not 1 <= len(ids) <= 25
                or any(not _ID.match(w) for w in ids) or len(set(ids)) != len(ids)):
            raise Refused(3)
        if self.door_open:
            raise Refused(5)
        self.carrier = (batch_id, ids)
        self._set(LOADED)
        self.happenings.happened("load", self.now)
        return ["OK"]

    def cmd_start(self) -> list[str]:
        if self.state() != LOADED:
            raise Refused(4)
        if self.mto >= LIFE_MTO:
            self._raise(740)
            raise Refused(6)
        if (abs(self.ni.temp - self.recipe.ni_c) > 1.0 or abs(self.au.temp - self.recipe.au_c) > 1.0
                or self.door_open):
            raise Refused(5)
        assert self.carrier is not None
        self.batch = Batch(self.carrier[0], list(self.carrier[1]), Recipe(**vars(self.recipe)))
        self._set(RUNNING)
        self.happenings.happened("start", self.now)
        self._step_starts()
        return ["OK"]

    def cmd_abort(self) -> list[str]:
        if self.state() != RUNNING:
            raise Refused(4)
        assert self.batch is not None
        if self.batch.aborting_s is None:
            self.batch.aborting_s = ABORT_RINSE_S
        return ["OK"]

    def cmd_unload(self) -> list[str]:
        if self.state() != DONE:
            raise Refused(4)
        if self.door_open:
            raise Refused(5)
        self.carrier = None
        self._set(IDLE)
        return ["OK"]

    def cmd_clear(self) -> list[str]:
        if self.state() != ALARM:
            raise Refused(4)
        if self._cause_present(self.alarm):
            raise Refused(6)
        self._clear()
        return ["OK"]

    def cmd_replenish(self) -> list[str]:
        if not (self.state() == IDLE or self.alarm in (720, 740)):
            raise Refused(4)
        if self.alarm:
            code = self.alarm
            self.alarm = 0
            self._event(f"CLEARED {code}")
        self.maint_s = REPLENISH_S
        self.maint_return = self.base  # IDLE, or a carrier LOADED or DONE when 740/720 came
        self._set(MAINT)
        return ["OK"]

    def cmd_result(self, wafer_id: str | None = None) -> list[str]:
        if self.result is None:
            raise Refused(2)
        if wafer_id is None:
            return [self.result.line()]
        if wafer_id not in self.result.wafers:
            raise Refused(2)
        ni, au = self.result.wafers[wafer_id]
        return [f"OK {wafer_id} {ni:.2f} {au:.3f}"]

    def cmd_bath(self) -> list[str]:
        level = LOW_LEVEL_PCT if self.happenings.active("730", self.now) else LEVEL_PCT
        return [f"OK {self.ni.temp:.1f} {self.au.temp:.1f} {self.ph():.2f} {self.mto:.2f} "
                f"{level:.0f}"]

    def cmd_events(self, after: str) -> list[str]:
        n = int(after)
        if n > self.seq:
            raise Refused(3)
        replay = [f"!{seq} {text}" for seq, text in self.events if seq > n]
        return [*replay, f"OK {len(replay)}"]

    def cmd_alarm(self) -> list[str]:
        if self.alarm:
            return [f"OK {self.alarm} {ALARMS[self.alarm]}"]
        if self.warning_in_alarm and self.warned:
            return [f"OK 741 {ALARMS[741]}"]
        return ["OK 0 NONE"]



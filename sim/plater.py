"""EP-25 batch electroless Ni / immersion Au barrier plater: the tool behind its text lines.

Pure and lazy like the oven and the cleaner: ``handle(line, now)`` and
``advance(now)`` first integrate the tool in fixed 1 s steps up to ``now``
(tool seconds); nothing ticks on its own. The server asks ``next_change`` when
to look again, so pushed events leave on time while the host is silent.

Figures from ../shared/specs/barrier-plater.md; choices where it is silent
(documented in docs/simulator.md, "Barrier plater"):

* power-up recipe 3.0 µm Ni, 0.08 µm Au, 85 °C / 80 °C (the baths heat toward
  it from 25 °C at once);
* nickel rate 15 µm/h x 1.08 ** (T - 85 °C) x 0.95 ** MTO, integrated over the
  bath's actual temperature; the batch consumes 0.004 MTO per wafer per µm as
  it plates; pH = 4.8 - 0.4 x MTO / 6 (4.4 at the end of the bath's life, so
  720 needs a batch that pushes the bath past 6 MTO);
* immersion gold grows in proportion to its step's time to the recipe's value;
* per wafer, the batch mean x (1 + u), u uniform, re-centred so the batch mean
  is what the gauge stopped at: nickel within ±5 %, gold within ±10 %;
* the tank level falls 0.1 % per wafer plated; below 20 % START raises 730.

The figures, the state and step names and the batch records live in
``sim/plater_process.py``; this module is the tool's behaviour.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from sim.plater_events import EventLog
from sim.plater_process import (
    ALARM_TEXT,
    AMBIENT_C,
    AU_SPREAD,
    BATCH_MAX,
    COOL_C_S,
    FIRMWARE,
    FIXED_S,
    HEAT_C_S,
    LEVEL_LOW_PCT,
    LEVEL_PER_WAFER_PCT,
    LINE_MAX,
    MODEL_ID,
    MTO_LIFE,
    MTO_PER_WAFER_UM,
    MTO_WARN,
    NI_SPREAD,
    PH_FRESH,
    PH_LOW,
    RANGES,
    READY_BAND_C,
    REPLENISH_S,
    RUN_BAND_C,
    STEP_S,
    STEPS,
    Batch,
    Recipe,
    Refused,
    Result,
    State,
    arity,
    gold_time_s,
    good_id,
    nickel_rate_um_s,
    spread_factors,
    within,
)


class PlaterModel:
    """The plater's state and chemistry; ``handle`` is its command table."""

    TOOL = "plater"

    def __init__(self, seed: int = 0, *, start: float = 0.0, serial: str = "EP25-0117",
                 saved: dict[str, Any] | None = None) -> None:
        self._rng = random.Random(seed)
        self._t = float(start)
        self.serial = serial
        self.recipe = Recipe()
        self.bath_c = {"ni": AMBIENT_C, "au": AMBIENT_C}
        self._at_setpoint = {"ni": False, "au": False}
        self.heater_ok = {"ni": True, "au": True}
        self.mto = 0.0
        self.level_pct = 100.0
        self.door_open = False
        self._base = State.IDLE  # the state under any alarm
        self.alarms: list[int] = []
        self.batch: Batch | None = None  # loaded, running or done carrier
        self.result: Result | None = None
        self._maint_until: float | None = None
        self._after_maint = State.IDLE  # a carrier loaded (or done) before REPLENISH stays
        self._warned_mto = False
        self.events = EventLog()  # numbered, kept through restarts (sim/plater_events.py)
        self._notes: list[str] = []  # for the server's log
        self._time_alarms: list[tuple[float, int]] = []
        self._batch_alarms: dict[int, list[int]] = {}
        self._batches_started = 0
        self._door_events: list[tuple[float, bool]] = []
        self.dirty = True  # something the state file holds has changed
        if saved:
            self._restore(saved)
        for code in (720, 730):  # an alarm with a lasting cause is detected afresh
            if self._cause_present(code):
                self._latch(code, "at power-up")
        self._push("STATE", self.state.value)

    # --- time ----------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        return self._t

    def advance(self, now: float) -> None:
        while self._t + STEP_S <= now + 1e-9:
            self._step()

    def _step(self) -> None:
        for bath, setpoint in (("ni", self.recipe.ni_temp_c), ("au", self.recipe.au_temp_c)):
            t = self.bath_c[bath]
            target = setpoint if self.heater_ok[bath] else AMBIENT_C
            if t < target:
                t = min(target, t + HEAT_C_S[bath] * STEP_S)
            else:
                t = max(target, t - COOL_C_S[bath] * STEP_S)
            self.bath_c[bath] = t
        self._t += STEP_S
        self._note_baths()
        batch = self.batch
        if batch is not None and self._base is State.RUNNING:
            self._plate(batch)
        if self._maint_until is not None and self._t >= self._maint_until - 1e-9:
            self._maint_until = None
            self._set_base(self._after_maint)
            self._note("bath replenished; MAINT over")
        while self._door_events and self._door_events[0][0] <= self._t + 1e-9:
            self.set_door(self._door_events.pop(0)[1], self._t)
        while self._time_alarms and self._time_alarms[0][0] <= self._t + 1e-9:
            self._latch(self._time_alarms.pop(0)[1], "fault plan")

    def _plate(self, batch: Batch) -> None:
        name = STEPS[batch.step]
        batch.step_elapsed_s += STEP_S
        if name == "NI_PLATE":
            grown = min(nickel_rate_um_s(self.bath_c["ni"], self.mto) * STEP_S,
                        self.recipe.ni_um - batch.ni_um)
            batch.ni_um += grown
            self.mto += MTO_PER_WAFER_UM * len(batch.wafers) * grown
            self.dirty = True
            if self.mto >= MTO_WARN and not self._warned_mto:
                self._warned_mto = True
                self._push("ALARM", "741", ALARM_TEXT[741])  # a warning: no state change
            if self._cause_present(720):
                self._latch(720, f"pH {self.ph:.2f}")
                return
            done = batch.ni_um >= self.recipe.ni_um - 1e-9
        elif name == "AU_IMMERSION":
            duration = gold_time_s(self.recipe.au_um)
            batch.au_um = self.recipe.au_um * min(1.0, batch.step_elapsed_s / duration)
            done = batch.step_elapsed_s >= duration - 1e-9
        else:
            done = batch.step_elapsed_s >= FIXED_S[name] - 1e-9
        if batch.pending_alarms and name == "NI_PLATE" and batch.ni_um >= self.recipe.ni_um / 2:
            codes, batch.pending_alarms = batch.pending_alarms, []
            for code in codes:
                self._latch(code, "fault plan")
            return
        for bath, code, setpoint in (("ni", 700, self.recipe.ni_temp_c),
                                     ("au", 710, self.recipe.au_temp_c)):
            if not within(self.bath_c[bath], setpoint, RUN_BAND_C):
                self._latch(code, f"{bath} bath {self.bath_c[bath]:.1f} C")
                return
        if done:
            if batch.step + 1 < len(STEPS):
                self._begin_step(batch, batch.step + 1)
            else:
                self._end_batch("OK")

    def _begin_step(self, batch: Batch, index: int) -> None:
        batch.step, batch.step_elapsed_s = index, 0.0
        self._push("STEP", STEPS[index], batch.batch_id)

    def _end_batch(self, status: str) -> None:
        batch = self.batch
        assert batch is not None
        n = len(batch.wafers)
        ni = spread_factors(self._rng, n, NI_SPREAD)
        au = spread_factors(self._rng, n, AU_SPREAD)
        self.result = Result(batch.batch_id, status, {
            w: (round(batch.ni_um * ni[i], 3), round(batch.au_um * au[i], 4))
            for i, w in enumerate(batch.wafers)})
        self.level_pct = max(0.0, self.level_pct - LEVEL_PER_WAFER_PCT * n)
        batch.step = -1
        self._base = State.DONE
        self._push("DONE", batch.batch_id, status)
        self._note_state_change()

    # --- derived ---------------------------------------------------------------------------------

    @property
    def ph(self) -> float:
        return PH_FRESH - (PH_FRESH - PH_LOW) * self.mto / MTO_LIFE

    @property
    def state(self) -> State:
        return State.ALARM if self.alarms else self._base

    def _baths_ready(self) -> bool:
        return (within(self.bath_c["ni"], self.recipe.ni_temp_c, READY_BAND_C)
                and within(self.bath_c["au"], self.recipe.au_temp_c, READY_BAND_C))

    def _cause_present(self, code: int) -> bool:
        if code == 400:
            return self.door_open
        if code == 720:
            return self.ph < PH_LOW - 1e-9
        if code == 730:
            return self.level_pct < LEVEL_LOW_PCT
        if code == 740:
            return self.mto >= MTO_LIFE
        if code in (700, 710):
            bath = "ni" if code == 700 else "au"
            return not self.heater_ok[bath]
        return False  # 900 and fault-plan alarms: released at once

    def remaining_s(self) -> int:
        batch = self.batch
        if self._base is State.MAINT and self._maint_until is not None:
            return max(0, round(self._maint_until - self._t))
        if batch is None or self._base is not State.RUNNING:
            return 0
        left = 0.0
        for i in range(batch.step, len(STEPS)):
            name = STEPS[i]
            if name == "NI_PLATE":
                todo = self.recipe.ni_um - (batch.ni_um if i == batch.step else 0.0)
                duration = todo / nickel_rate_um_s(self.recipe.ni_temp_c, self.mto)
            elif name == "AU_IMMERSION":
                duration = gold_time_s(self.recipe.au_um)
            else:
                duration = FIXED_S[name]
            left += duration - (batch.step_elapsed_s if i == batch.step and
                                name != "NI_PLATE" else 0.0)
        return max(0, round(left))

    def next_change(self) -> float | None:
        """Tool time at which something may happen unasked (a step, a bath, an alarm):
        the server looks again then. None: nothing moves until a command."""
        times = [t for t, _ in self._time_alarms[:1]] + [t for t, _ in self._door_events[:1]]
        if self._maint_until is not None:
            times.append(self._maint_until)
        if self._base is State.RUNNING and not self.alarms:
            times.append(self._t + min(60.0, max(STEP_S, float(self.remaining_s()))))
        for bath, setpoint in (("ni", self.recipe.ni_temp_c), ("au", self.recipe.au_temp_c)):
            gap = abs(self.bath_c[bath] - setpoint)
            if gap > 0:
                rate = HEAT_C_S[bath] if self.bath_c[bath] < setpoint else COOL_C_S[bath]
                ahead = (gap - READY_BAND_C) / rate if gap > READY_BAND_C else gap / rate
                times.append(self._t + max(STEP_S, min(600.0, ahead)))
        return min(times) if times else None

    # --- events ----------------------------------------------------------------------------------

    def _push(self, name: str, *fields: str) -> None:
        self.events.push(name, *fields)
        self.dirty = True

    def drain_events(self) -> list[str]:
        """Event lines raised since the last call, oldest first (the server pushes them)."""
        return self.events.drain()

    def drain_notes(self) -> list[str]:
        out, self._notes = self._notes, []
        return out

    def events_after(self, seq: int) -> list[str]:
        return self.events.after(seq)

    @property
    def seq(self) -> int:
        return self.events.seq

    def _note(self, text: str) -> None:
        self._notes.append(f"t={self._t:.0f}s {text}")

    def _set_base(self, state: State) -> None:
        before = self.state
        self._base = state
        if self.state is not before:
            self._push("STATE", self.state.value)

    def _note_state_change(self) -> None:
        self._push("STATE", self.state.value)

    def _note_baths(self) -> None:
        reached = False
        for bath, setpoint in (("ni", self.recipe.ni_temp_c), ("au", self.recipe.au_temp_c)):
            there = within(self.bath_c[bath], setpoint, READY_BAND_C)
            reached |= there and not self._at_setpoint[bath]
            self._at_setpoint[bath] = there
        if reached:
            self._push("BATH", f"{self.bath_c['ni']:.1f}", f"{self.bath_c['au']:.1f}")

    def _latch(self, code: int, why: str = "") -> None:
        if code in self.alarms:
            return
        before = self.state
        self.alarms.append(code)
        self._note(f"alarm {code} {ALARM_TEXT.get(code, 'ALARM')}" + (f" ({why})" if why else ""))
        self._push("ALARM", str(code), ALARM_TEXT.get(code, "ALARM"))
        if self._base is State.RUNNING:  # any alarm ends the batch where it stands
            self._end_batch("ALARM")
        elif before is not State.ALARM:
            self._push("STATE", State.ALARM.value)

    # --- the command table -----------------------------------------------------------------------

    def handle(self, line: str, now: float) -> str:
        """One host line -> its reply line (events it raises go to the outbox first)."""
        self.advance(now)
        try:
            return self._command(line)
        except Refused as refused:
            if refused.why:
                self._note(f"{line!r} refused: {refused.why}")
            return refused.line

    def _command(self, line: str) -> str:
        if len(line) > LINE_MAX or not line.isascii() or not line or "  " in line:
            raise Refused(1, "not one command line")
        word, *args = line.split(" ")
        handler = _COMMANDS.get(word)
        if handler is None:
            raise Refused(1, f"unknown command {word!r}")
        return handler(self, args)

    def _idn(self, args: list[str]) -> str:
        arity(args, 0)
        return f"OK {MODEL_ID},{self.serial},{FIRMWARE}"

    def _state_q(self, args: list[str]) -> str:
        arity(args, 0)
        batch = self.batch
        step = STEPS[batch.step] if batch and self._base is State.RUNNING else "-"
        return f"OK {self.state.value} {batch.batch_id if batch else '-'} {step} " \
               f"{self.remaining_s()}"

    def _recipe_set(self, args: list[str]) -> str:
        arity(args, 4)
        try:
            values = [float(a) for a in args]
        except ValueError:
            raise Refused(1, "RECIPE takes four numbers") from None
        for (key, (lo, hi)), value in zip(RANGES.items(), values, strict=True):
            if not lo <= value <= hi:
                raise Refused(3, f"{key} {value} outside {lo}-{hi}")
        self._allowed("RECIPE", State.IDLE, State.DONE)
        self.recipe = Recipe(*values)
        self._at_setpoint = {  # a bath already there pushes no BATH event
            "ni": within(self.bath_c["ni"], values[2], READY_BAND_C),
            "au": within(self.bath_c["au"], values[3], READY_BAND_C)}
        self.dirty = True
        return "OK"

    def _recipe_q(self, args: list[str]) -> str:
        arity(args, 0)
        r = self.recipe
        return f"OK {r.ni_um:g} {r.au_um:g} {r.ni_temp_c:g} {r.au_temp_c:g}"

    def _load(self, args: list[str]) -> str:
        arity(args, 2)
        batch_id, wafers = args[0], args[1].split(",")
        if not good_id(batch_id) or not all(good_id(w) for w in wafers):
            raise Refused(3, "ids must be 1-16 printable characters")
        if len(wafers) > BATCH_MAX or len(set(wafers)) != len(wafers):
            raise Refused(3, f"{len(wafers)} wafers (1-{BATCH_MAX}, each once)")
        self._allowed("LOAD", State.IDLE)
        self.batch = Batch(batch_id, wafers)
        self._set_base(State.LOADED)
        self._note(f"LOAD {batch_id} ({len(wafers)} wafers)")
        return "OK"

    def _start(self, args: list[str]) -> str:
        arity(args, 0)
        self._allowed("START", State.LOADED)
        if self.door_open:
            raise Refused(5, "door open")
        if not self._baths_ready():
            raise Refused(5, f"baths {self.bath_c['ni']:.1f} / {self.bath_c['au']:.1f} C")
        for code in (740, 720, 730):
            if self._cause_present(code):
                self._latch(code, "checked at START")
                raise Refused(6, f"alarm {code} raised at START")
        batch = self.batch
        assert batch is not None
        self._batches_started += 1
        batch.pending_alarms = self._batch_alarms.pop(self._batches_started, [])
        self._set_base(State.RUNNING)
        self._begin_step(batch, 0)
        self._note(f"START {batch.batch_id}: Ni {self.recipe.ni_um:g} um at "
                   f"{self.recipe.ni_temp_c:g} C, Au {self.recipe.au_um:g} um")
        return "OK"

    def _abort(self, args: list[str]) -> str:
        arity(args, 0)
        self._allowed("ABORT", State.RUNNING)
        self._end_batch("ABORTED")
        return "OK"

    def _unload(self, args: list[str]) -> str:
        arity(args, 0)
        self._allowed("UNLOAD", State.DONE)
        self.batch = None
        self._set_base(State.IDLE)
        return "OK"

    def _clear(self, args: list[str]) -> str:
        arity(args, 0)
        if not self.alarms:
            raise Refused(4, "no alarm to clear")
        for code in self.alarms:
            if self._cause_present(code):
                raise Refused(6, f"cause of alarm {code} still present")
        for code in self.alarms:
            self._push("CLEARED", str(code))
        self.alarms = []
        self._push("STATE", self.state.value)
        return "OK"

    def _result_q(self, args: list[str]) -> str:
        if len(args) > 1:
            raise Refused(1, "RESULT? takes at most a wafer id")
        if self.result is None:
            raise Refused(2, "no batch has finished")
        if not args:
            return self.result.line()
        values = self.result.wafers.get(args[0])
        if values is None:
            raise Refused(2, f"wafer {args[0]!r} not in the last batch")
        return f"OK {args[0]} {values[0]:.3f} {values[1]:.4f}"

    def _bath_q(self, args: list[str]) -> str:
        arity(args, 0)
        return (f"OK {self.bath_c['ni']:.1f} {self.bath_c['au']:.1f} {self.ph:.2f} "
                f"{self.mto:.2f} {self.level_pct:.1f}")

    def _replenish(self, args: list[str]) -> str:
        arity(args, 0)
        state = self.state
        replenishable = [c for c in self.alarms if c in (720, 740)]
        if state is State.ALARM and self.alarms != replenishable:
            raise Refused(6, f"alarms {self.alarms}")
        if state is not State.ALARM:
            self._allowed("REPLENISH", State.IDLE)
        self.mto, self.level_pct, self._warned_mto = 0.0, 100.0, False
        self._maint_until = self._t + REPLENISH_S
        for code in self.alarms:
            self._push("CLEARED", str(code))
        self.alarms = []
        self._after_maint = self._base if self._base in (State.LOADED, State.DONE) else State.IDLE
        self._base = State.MAINT
        self._push("STATE", State.MAINT.value)
        return "OK"

    def _events_q(self, args: list[str]) -> str:
        arity(args, 1)
        if not args[0].isdigit():
            raise Refused(1, "EVENTS? takes an event number")
        # replayed lines go out before the reply, after anything already pushed
        return f"OK {self.events.replay(int(args[0]))}"

    def _alarm_q(self, args: list[str]) -> str:
        arity(args, 0)
        if not self.alarms:
            return "OK 0 NONE"
        return f"OK {self.alarms[0]} {ALARM_TEXT.get(self.alarms[0], 'ALARM')}"

    def _allowed(self, command: str, *states: State) -> None:
        state = self.state
        if state in states:
            return
        if state is State.ALARM:
            raise Refused(6, f"{command}: alarm {self.alarms[0]}")
        raise Refused(4, f"{command} in {state.value}")

    # --- physical world and faults ---------------------------------------------------------------

    def set_door(self, opened: bool, now: float) -> None:
        self.advance(now)
        if opened != self.door_open:
            self.door_open = opened
            self._note(f"door {'opened' if opened else 'closed'}")
            # barrier-plater.md has both "400 DOOR OPEN" and START's "ERR 05 NOT READY ...
            # door open": the alarm is for a door opened over a running batch (the wet
            # process); otherwise the open door only keeps START refused until it closes.
            if opened and self.state is State.RUNNING:
                self._latch(400)

    def fail_heater(self, bath: str, now: float) -> None:
        """The ``ni`` or ``au`` heater fails: that bath cools toward room temperature."""
        self.advance(now)
        self.heater_ok[bath] = False

    def repair_heater(self, bath: str, now: float) -> None:
        self.advance(now)
        self.heater_ok[bath] = True

    def set_level(self, pct: float, now: float) -> None:
        """The tank level (a person tops it up; a leak drains it)."""
        self.advance(now)
        self.level_pct = pct

    def latch_alarm(self, code: int, now: float, why: str = "test") -> None:
        """Latch ``code`` now, in whatever state the tool is (a test's fault at a moment
        of its own choosing: between a batch's DONE and its UNLOAD, say). CLEAR takes it
        once its cause is gone (730: the tank level back; 900 and codes without a cause
        of their own: at once)."""
        self.advance(now)
        self._latch(code, why)

    def age_bath(self, mto: float, now: float) -> None:
        """Set the nickel bath's age, as if that many turnovers had been plated."""
        self.advance(now)
        self.mto = mto
        self._warned_mto = mto >= MTO_WARN

    def schedule_alarm(self, code: int, *, at_time: float | None = None,
                       at_wafer: int | None = None) -> None:
        """Raise ``code`` at a tool time, or half way through the nickel of the N-th batch
        (``at_wafer`` counts batches here: the carrier is the plater's unit of work)."""
        if (at_time is None) == (at_wafer is None):
            raise ValueError("plater alarm: give exactly one of at_time or at_wafer")
        if at_time is not None:
            self._time_alarms.append((at_time, code))
            self._time_alarms.sort()
        else:
            assert at_wafer is not None
            self._batch_alarms.setdefault(at_wafer, []).append(code)

    def apply_fault_plan(self, plan: Any) -> None:
        for alarm in plan.alarms:
            self.schedule_alarm(alarm.code, at_time=alarm.at_time, at_wafer=alarm.at_wafer)
        if plan.door_open_at is not None:
            self._door_events.append((plan.door_open_at, True))
            if plan.door_close_at is not None:
                self._door_events.append((plan.door_close_at, False))
            self._door_events.sort()

    # --- power loss: what survives ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What the tool keeps through a power loss (JSON-ready)."""
        batch = self.batch
        return {
            **self.events.snapshot(),
            "recipe": asdict(self.recipe),
            "mto": self.mto,
            "level_pct": self.level_pct,
            "base": self._base.value,
            "batch": asdict(batch) if batch else None,
            "result": asdict(self.result) if self.result else None,
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self.events.restore(saved)
        self.recipe = Recipe(**saved["recipe"])
        self.mto, self.level_pct = float(saved["mto"]), float(saved["level_pct"])
        self._warned_mto = self.mto >= MTO_WARN
        if saved["result"]:
            r = saved["result"]
            self.result = Result(r["batch_id"], r["status"],
                                 {w: (v[0], v[1]) for w, v in r["wafers"].items()})
        base = State(saved["base"])
        if saved["batch"]:
            self.batch = Batch(**saved["batch"])
        if base is State.RUNNING and self.batch is not None:
            self._base = State.RUNNING
            self._end_batch("ABORTED")  # its carrier is rinsed by hand; logged for EVENTS?
        elif base in (State.LOADED, State.DONE):
            self._base = base
        elif self.batch is not None:  # MAINT ends with the power; the carrier is still there
            done = self.result is not None and self.result.batch_id == self.batch.batch_id
            self._base = State.DONE if done else State.LOADED
        self.events.drain()  # nobody was connected through the power loss


_COMMANDS = {
    "*IDN?": PlaterModel._idn,
    "STATE?": PlaterModel._state_q,
    "RECIPE": PlaterModel._recipe_set,
    "RECIPE?": PlaterModel._recipe_q,
    "LOAD": PlaterModel._load,
    "START": PlaterModel._start,
    "ABORT": PlaterModel._abort,
    "UNLOAD": PlaterModel._unload,
    "CLEAR": PlaterModel._clear,
    "RESULT?": PlaterModel._result_q,
    "BATH?": PlaterModel._bath_q,
    "REPLENISH": PlaterModel._replenish,
    "EVENTS?": PlaterModel._events_q,
    "ALARM?": PlaterModel._alarm_q,
}

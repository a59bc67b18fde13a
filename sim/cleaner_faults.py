"""The FC-1's injected faults: what a fault plan schedules on the cleaner and what a test
or a person does to it.

Beside the alarms every Modbus tool model takes from a fault plan (``LatchedAlarms`` in
``sim/modbus_map.py``), the cleaner's plan (``sim.faults``: ``door=T[-U]``, ``di=T[-U]``)
opens and closes its door and spoils and restores its DI rinse water at tool times; they
are armed here and fired in the model's time steps, each at its own time. The rest are
methods taking the tool time they happen at: the door, the bath heater, the spray pump,
the DI water, the chemistry. What the tool makes of each (400 for the door, 610, 620,
630, 640) is the model's (``sim/cleaner.py``); the FC-2's own faults are in
``sim/stripper.py``.
"""

from __future__ import annotations

from typing import Any

from sim.modbus_map import LatchedAlarms

# The DI rinse water as the plant supplies it, and as a fault plan spoils it (``di=T-U``).
DI_NOMINAL_MOHM_CM = 15.0
DI_BAD_MOHM_CM = 8.0


class CleanerFaults(LatchedAlarms):
    """The cleaner model's fault schedule and faults (``CleanerModel`` inherits them).

    The model calls ``_init_faults()``, ``_fire_due_faults()`` in each time step and
    ``_quiet_before_faults`` before it skips ahead, and provides ``advance`` and
    ``_set_door``."""

    # A fault plan's inputs: (tool time, "door" or "di", open / low?)
    _input_events: list[tuple[float, str, bool]]
    # The model's state the faults change.
    _heater_ok: bool
    _spray_ok: bool
    _di_mohm: float
    _chemistry_cycles: int

    def advance(self, now: float) -> None:
        raise NotImplementedError

    def _set_door(self, opened: bool, why: str = "") -> None:
        raise NotImplementedError

    def _init_faults(self) -> None:
        self._input_events = []

    def _quiet_before_faults(self, steps: int) -> int:
        """At most ``steps``, so that a scheduled door event or alarm comes in a full step,
        at its time."""
        t = self._t
        if self._input_events:
            steps = min(steps, int(self._input_events[0][0] - t) - 2)
        if self._time_alarms:
            steps = min(steps, int(self._time_alarms[0][0] - t) - 2)
        return steps

    def _fire_due_faults(self) -> None:
        """The door and DI water events and the alarms due by now."""
        while self._input_events and self._input_events[0][0] <= self._t + 1e-9:
            _, what, on = self._input_events.pop(0)
            if what == "door":
                self._set_door(on, "fault plan")
            else:
                self._di_mohm = DI_BAD_MOHM_CM if on else DI_NOMINAL_MOHM_CM
                self._event(f"DI water {'low' if on else 'restored'} (fault plan)")
        self._fire_due_alarms()

    # --- a fault plan ----------------------------------------------------------------------------

    def schedule_door(self, open_at: float, close_at: float | None = None) -> None:
        """Open the door (alarm 400) at a tool time; close it again at ``close_at``."""
        self._schedule_input("door", open_at, close_at)

    def _schedule_input(self, what: str, on_at: float, off_at: float | None) -> None:
        key = (what, on_at, off_at)
        if key in self._scheduled:
            return
        self._scheduled.add(key)
        self._input_events.append((on_at, what, True))
        if off_at is not None:
            if off_at < on_at:
                raise ValueError(f"cleaner {what}: ends at {off_at} before it begins at {on_at}")
            self._input_events.append((off_at, what, False))
        self._input_events.sort()

    def apply_fault_plan(self, plan: Any, tool: str = "cleaner") -> None:
        """Take the scheduled parts of a ``sim.faults.FaultPlan`` (alarms, door, DI water:
        bad from ``di_low_at``, restored at ``di_restored_at``)."""
        for alarm in plan.alarms:
            self.schedule_alarm(alarm.code, at_time=alarm.at_time, at_wafer=alarm.at_wafer)
        if plan.door_open_at is not None:
            self.schedule_door(plan.door_open_at, plan.door_close_at)
        if plan.di_low_at is not None:
            self._schedule_input("di", plan.di_low_at, plan.di_restored_at)

    # --- a test's or a person's hands ------------------------------------------------------------

    def open_door(self, now: float) -> None:
        self.advance(now)
        self._set_door(True)
        self._note_state()

    def close_door(self, now: float) -> None:
        self.advance(now)
        self._set_door(False)
        self._note_state()

    def fail_bath_heater(self, now: float) -> None:
        """The bath heater fails: the bath cools toward room; 610 if it strays while washing."""
        self.advance(now)
        self._heater_ok = False

    def repair_bath_heater(self, now: float) -> None:
        self.advance(now)
        self._heater_ok = True

    def lose_spray_pressure(self, now: float) -> None:
        """The spray pump fails: 620 as soon as the tool sprays (wash or rinse)."""
        self.advance(now)
        self._spray_ok = False

    def restore_spray_pressure(self, now: float) -> None:
        self.advance(now)
        self._spray_ok = True

    def contaminate_di(self, now: float, mohm_cm: float = DI_BAD_MOHM_CM) -> None:
        """The DI water degrades to ``mohm_cm`` (below 10: 630 before the next START)."""
        self.advance(now)
        self._di_mohm = float(mohm_cm)

    def restore_di(self, now: float) -> None:
        self.advance(now)
        self._di_mohm = DI_NOMINAL_MOHM_CM

    def replenish_chemistry(self, now: float) -> None:
        self.advance(now)
        self._chemistry_cycles = 0
        self._event("chemistry replenished")

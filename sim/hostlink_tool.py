"""What the two HostLink/1 tools have in common, as a pure clock-driven model.

Both serial tools share the common commands (IDN STS ALR CLR ABT), the alarm
latch with its door (400) and e-stop (900) interlocks, the NAK order and the
way an alarm or an abort leaves a wafer in the tool. A subclass adds its own
commands and timed operations.

Time is lazy: nothing ticks. Every entry point takes ``now`` (tool seconds) and
first plays forward, in time order, whatever happened since the last call:
operation steps ending, scheduled fault alarms, the door opening. So state is
exact at any ``now`` however rarely the host polls, and the same commands at
the same tool times always give the same answers.

NAK order (the spec is silent; see docs/simulator.md): 02 unknown command,
03 wrong argument count for the common commands, 06 interlock (door open or
e-stop pressed), 05 alarm latched, 04 wrong state, 03 bad parameter.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sim.faults import FaultPlan
from sim.hostlink import Nak

ALWAYS_ALLOWED = frozenset({"IDN", "STS", "ALR", "CLR", "ABT"})
DOOR_OPEN = 400
EMERGENCY_STOP = 900
_INTERLOCK_RANK = {EMERGENCY_STOP: 2, DOOR_OPEN: 1}  # which latched alarm a new one replaces

_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # no edge blanks
_INT = re.compile(r"\d{1,9}")
_DECIMAL = re.compile(r"\d{1,6}(?:\.\d{1,3})?")


# --- argument parsing: bad input is NAK 03, never an exception ------------------------------


def want_args(args: list[str], n: int, cmd: str) -> None:
    if len(args) != n:
        raise Nak(3, f"{cmd} takes {n} argument(s), got {len(args)}")


def parse_id(text: str, what: str, max_len: int = 16) -> str:
    if not (1 <= len(text) <= max_len and _ID.fullmatch(text)):
        raise Nak(3, f"{what} must be 1-{max_len} characters, got {text!r}")
    return text


def parse_int(text: str, what: str, lo: int, hi: int) -> int:
    if not _INT.fullmatch(text):
        raise Nak(3, f"{what} must be a whole number, got {text!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise Nak(3, f"{what} {value} outside {lo}-{hi}")
    return value


def parse_decimal(text: str, what: str, lo: float, hi: float) -> float:
    if not _DECIMAL.fullmatch(text):
        raise Nak(3, f"{what} must be a decimal number, got {text!r}")
    value = float(text)
    if not lo <= value <= hi:
        raise Nak(3, f"{what} {value} outside {lo}-{hi}")
    return value


# --- random draws the models need, from their own seeded generator ---------------------------


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation is plenty for defect counts this large
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 200:
        return sum(rng.random() < p for _ in range(n))
    sd = math.sqrt(n * p * (1 - p))
    return min(n, max(0, round(rng.gauss(n * p, sd))))


# --- timed operations ------------------------------------------------------------------------


@dataclass
class Step:
    """One timed state (LOADING, PRINTING...) and what happens when it ends."""

    state: str
    start: float
    end: float
    then: Callable[[float], None]
    alarm_at: float | None = None  # a fault alarm armed for this wafer fires mid-step
    alarm_code: int = 0


@dataclass(order=True)
class _Event:
    at: float
    order: int
    action: Callable[[float], None] = field(compare=False)


class HostLinkTool:
    """Base of a HostLink/1 tool model. Subclasses fill in the class attributes."""

    IDENTITY: tuple[str, str, str, str] = ("", "", "", "")
    ALARM_TEXT: dict[int, str] = {}
    #: state in which an alarm armed for the N-th wafer fires (mid-step), by code
    WAFER_ALARM_STEP: dict[int, str] = {}
    WAFER_ALARM_DEFAULT_STEP = ""

    def __init__(self, *, seed: int = 0, faults: FaultPlan | None = None) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0  # tool time the model has been played forward to
        self.rest = "IDLE"  # the state when no step runs and no alarm is latched
        self.step: Step | None = None
        self.alarm = 0
        self.alarm_since = 0.0
        # An alarm an interlock (door, e-stop) was shown over, whose own remedy is still
        # due (102 needs FIL, 111 needs CHG): CLR of the interlock shows it again.
        self._beneath: tuple[int, float] | None = None
        self.door_open = False
        self.estop_pressed = False
        self.wafer_id: str | None = None
        # The wafer's RES (a frozen dataclass with ``status`` and ``fields()``); final once
        # its processing is over, so an abort after that keeps it.
        self.result: Any = None
        self.result_final = False
        self.wafers_loaded = 0
        self.wafers_unloaded = 0
        self._events: list[_Event] = []
        self._order = itertools.count()
        self._armed: list[int] = []  # fault alarms waiting for a step of the current wafer
        self._log: list[str] = []
        self._shown = self.state
        self._commands: dict[str, Callable[[list[str], float], list[str]]] = {
            "IDN": self._idn,
            "STS": self._sts,
            "ALR": self._alr,
            "CLR": self._clr,
            "ABT": self._abt,
        }
        self.fault_plan: FaultPlan | None = None
        if faults is not None:
            self.use_faults(faults)

    # --- what a subclass provides ------------------------------------------------------------

    def status_fields(self) -> list[str]:
        raise NotImplementedError

    def alarm_cause_gone(self, code: int, now: float) -> bool:
        """True when CLR may clear ``code`` (the interlocks are checked separately)."""
        return True

    def allowed_in_alarm(self, cmd: str) -> bool:
        """Commands besides the common five that the latched alarm lets through."""
        return False

    def unmeasured_result(self, status: str) -> Any:
        """The RES of a wafer stopped (ALARM, ABORTED) before it was inspected."""
        raise NotImplementedError

    def on_alarm(self, code: int, t: float) -> None:
        """An alarm stopped the tool at ``t``: give an unfinished wafer its result."""
        self._stop_wafer("ALARM")

    def alarm_raised(self, code: int, t: float) -> None:
        """Alarm ``code`` was latched at ``t`` (start what clears it, e.g. a refill)."""

    def on_abort(self, t: float) -> None:
        """ABT stopped the running step, or a READY wafer, at ``t``."""
        self._stop_wafer("ABORTED")

    def _stop_wafer(self, status: str) -> None:
        # The specs say it without exception: a wafer in the tool when an alarm or ABT stops
        # it is in DONE afterwards with RES status ALARM or ABORTED, also one whose result
        # was final (stopped on its way out, or a door opened over it in DONE).
        if self.wafer_id is None:
            return
        if self.result is not None:  # measured: its figures stand, the status says it stopped
            self.result = replace(self.result, status=status)
        else:
            self.result = self.unmeasured_result(status)
        self.result_final = True

    # --- the host's entry point --------------------------------------------------------------

    def handle(self, cmd: str, args: list[str], now: float) -> list[str]:
        now = self.advance(now)
        command = self._commands.get(cmd)
        if command is None:
            raise Nak(2, f"{self.IDENTITY[1]} has no command {cmd}")
        if cmd not in ALWAYS_ALLOWED:
            if self.door_open or self.estop_pressed:
                raise Nak(6, "door open" if self.door_open else "emergency stop pressed")
            if self.alarm and not self.allowed_in_alarm(cmd):
                raise Nak(5, f"alarm {self.alarm} latched")
        fields = command(args, now)
        self._note(now)
        return fields

    # --- operator and physical events (each takes the tool time it happens at) ----------------

    def open_door(self, now: float) -> None:
        self._door(True, self.advance(now))

    def close_door(self, now: float) -> None:
        self._door(False, self.advance(now))

    def press_estop(self, now: float) -> None:
        now = self.advance(now)
        self.estop_pressed = True
        self.latch(EMERGENCY_STOP, now)

    def release_estop(self, now: float) -> None:
        now = self.advance(now)
        self.estop_pressed = False
        self._note(now)

    def reset_at_panel(self, now: float) -> None:
        """A person presses the tool's own alarm reset: the alarm clears as a CLR would
        clear it (nothing happens while its cause persists). The host is not told: it
        finds no alarm on its next look, and its own CLR is refused (NAK 04)."""
        with contextlib.suppress(Nak):
            self._clr([], self.advance(now))

    def raise_alarm(self, code: int, now: float) -> None:
        """A fault the tool detects by itself (pressure, vacuum, head...)."""
        self.latch(code, self.advance(now))

    def use_faults(self, plan: FaultPlan) -> None:
        """Apply a fault plan's scheduled alarms and door times lazily from tool time."""
        for alarm in plan.alarms:
            if alarm.code <= 0:
                raise ValueError(f"{self.IDENTITY[1]} fault plan: alarm code must be > 0, "
                                 f"got {alarm.code}")
        self.fault_plan = plan
        for alarm in plan.alarms:
            if alarm.at_time is not None:
                self.schedule(alarm.at_time, functools.partial(self.latch, alarm.code))
        if plan.door_open_at is not None:
            self.schedule(plan.door_open_at, lambda t: self._door(True, t))
        if plan.door_close_at is not None:
            self.schedule(plan.door_close_at, lambda t: self._door(False, t))

    # --- reading the model -------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.step is not None:
            return self.step.state
        return "ALARM" if self.alarm else self.rest

    def state_at(self, now: float) -> str:
        self.advance(now)
        return self.state

    def drain_log(self) -> list[str]:
        """State changes and alarms since the last call (for the server's INFO log)."""
        log, self._log = self._log, []
        return log

    def alarm_text(self, code: int) -> str:
        return self.ALARM_TEXT.get(code, f"ALARM {code}")

    # --- time --------------------------------------------------------------------------------

    def advance(self, now: float) -> float:
        """Play forward to ``now``: step ends, mid-step alarms and scheduled events, in order.

        Returns the model's time afterwards (``now``, or later if the clock read behind).
        """
        if now < self.now:
            now = self.now  # a clock read a hair late never rewinds the tool
        while True:
            step = self.step
            t_step = math.inf
            if step is not None:
                t_step = step.alarm_at if step.alarm_at is not None else step.end
            t_event = self._events[0].at if self._events else math.inf
            t = min(t_step, t_event)
            if t > now:
                break
            t = max(t, self.now)  # an event scheduled in the past happens now
            self.now = t
            if t_event < t_step or step is None:
                heapq.heappop(self._events).action(t)
            elif step.alarm_at is not None:
                self.latch(step.alarm_code, t)
            else:
                self.step = None
                step.then(t)
            self._note(t)
        self.now = now
        return now

    def schedule(self, at: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._events, _Event(at, next(self._order), action))

    def start(self, state: str, t: float, duration: float, then: Callable[[float], None]) -> None:
        """Begin a timed step; an alarm armed for this wafer and step fires halfway."""
        step = Step(state, t, t + duration, then)
        for code in list(self._armed):
            if self.WAFER_ALARM_STEP.get(code, self.WAFER_ALARM_DEFAULT_STEP) == state:
                self._armed.remove(code)
                step.alarm_at, step.alarm_code = t + duration / 2, code
                break
        self.step = step
        self._note(t)

    def settle(self, rest: str, t: float) -> None:
        self.rest = rest
        self._note(t)

    # --- wafers ------------------------------------------------------------------------------

    def take_wafer(self, wafer_id: str) -> None:
        self.wafer_id = wafer_id
        self.wafers_loaded += 1
        plan = self.fault_plan
        if plan is not None:
            self._armed = [a.code for a in plan.alarms if a.at_wafer == self.wafers_loaded]

    def hand_out_wafer(self, t: float) -> None:
        self.result, self.result_final = None, False
        self.wafer_id = None
        self.wafers_unloaded += 1
        self._armed = []
        self.settle("IDLE", t)

    # --- alarms ------------------------------------------------------------------------------

    def latch(self, code: int, t: float) -> None:
        """Latch alarm ``code`` at ``t``: the running step stops, the tool is in ALARM."""
        self.on_alarm(code, t)  # the tool stops whatever it was doing
        self.step = None
        self.rest = "DONE" if self.wafer_id is not None else "IDLE"
        if self.alarm and _INTERLOCK_RANK.get(code, 0) <= _INTERLOCK_RANK.get(self.alarm, 0):
            # already stopped: only a more serious interlock replaces the alarm shown
            self._log.append(f"t={t:.1f}s alarm {code} while {self.alarm} latched (not shown)")
            self._note(t)
            return
        if self.alarm and not self.alarm_cause_gone(self.alarm, t):
            self._beneath = (self.alarm, self.alarm_since)
        self.alarm, self.alarm_since = code, t
        self.alarm_raised(code, t)
        self._log.append(f"t={t:.1f}s alarm {code} {self.alarm_text(code)}")
        self._note(t)

    def _door(self, is_open: bool, t: float) -> None:
        self.door_open = is_open
        if is_open:
            self.latch(DOOR_OPEN, t)
        else:
            self._log.append(f"t={t:.1f}s door closed")

    def _note(self, t: float) -> None:
        state = self.state
        if state != self._shown:
            # The wafer is named, so a tool's own log counts its passes per wafer (the fault
            # campaign finds a double print from it).
            wafer = f" wafer {self.wafer_id!r}" if self.wafer_id is not None else ""
            self._log.append(f"t={t:.1f}s {self._shown} -> {state}{wafer}")
            self._shown = state

    # --- the common commands -----------------------------------------------------------------

    def need(self, *states: str) -> None:
        """NAK 04 unless the tool is in one of ``states``."""
        if self.state not in states:
            raise Nak(4, f"not allowed in {self.state}")

    def _res(self, args: list[str], now: float) -> list[str]:
        """RES (both tools: the result of the wafer in DONE); subclasses register it."""
        self.need("DONE")
        want_args(args, 0, "RES")
        assert self.result is not None
        return self.result.fields()

    def _idn(self, args: list[str], now: float) -> list[str]:
        want_args(args, 0, "IDN")
        return list(self.IDENTITY)

    def _sts(self, args: list[str], now: float) -> list[str]:
        want_args(args, 0, "STS")
        return self.status_fields()

    def _alr(self, args: list[str], now: float) -> list[str]:
        want_args(args, 0, "ALR")
        if not self.alarm:
            return ["0", ""]
        return [str(self.alarm), self.alarm_text(self.alarm)]

    def _clr(self, args: list[str], now: float) -> list[str]:
        want_args(args, 0, "CLR")
        if not self.alarm:
            raise Nak(4, "no alarm latched")
        if self.door_open or self.estop_pressed:
            raise Nak(4, "door still open" if self.door_open else "e-stop still pressed")
        if not self.alarm_cause_gone(self.alarm, now):
            raise Nak(4, f"cause of alarm {self.alarm} persists")
        self._log.append(f"t={now:.1f}s alarm {self.alarm} cleared")
        self.alarm = 0
        beneath, self._beneath = self._beneath, None
        if beneath is not None and not self.alarm_cause_gone(beneath[0], now):
            self.alarm, self.alarm_since = beneath
            self._log.append(f"t={now:.1f}s alarm {self.alarm} shown again (cause persists)")
        return []

    def _abt(self, args: list[str], now: float) -> list[str]:
        want_args(args, 0, "ABT")
        if self.step is not None:
            self.on_abort(now)
            self.step = None
            self.rest = "DONE" if self.wafer_id is not None else "IDLE"
        elif self.rest == "READY" and not self.alarm:
            self.on_abort(now)
            self.rest = "DONE"
        self._log.append(f"t={now:.1f}s abort")
        return []

"""What the WP-300 and the WBM-300 share, written from hostlink.md: the common commands,
NAK order, timed phases and latched alarms. Pure: no I/O; ``advance(s)`` moves tool time.

Strict choices where the specs are silent (docs/protocols.md, "Independent tools"):

* checks in this order: unknown CMD 02; alarm latched 05; wrong number of arguments
  03; wrong state 04; a value's format or range 03; interlock 06;
* ABT with a wafer in the tool ends in DONE with RES status ABORTED whatever was
  running, even from DONE (the result is replaced); ABT in ALARM is ACKed and changes
  nothing (the alarm stays latched until CLR);
* CLR with a wafer inside goes to DONE with RES status ALARM (both tools), else IDLE;
* an alarm plan ``{n: code}`` latches ``code`` half way through the n-th wafer's main
  phase (LOADING for 210); 400 and 900 keep their cause for ``cause_s`` tool seconds;
* a door opened (``open_door``) while nothing moves latches nothing: motion commands
  are NAK 06 until it closes; opened while something moves, it latches 400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.independent.hostlink import Nak

IDLE, ALARM, DONE, READY, LOADING, UNLOADING, CHANGEOVER = (
    "IDLE", "ALARM", "DONE", "READY", "LOADING", "UNLOADING", "CHANGEOVER")
ALARM_OK = frozenset({"IDN", "STS", "ALR", "CLR", "ABT"})
QUERIES = frozenset({"IDN", "STS", "ALR", "RES"})


@dataclass
class Phase:
    state: str
    seconds: float
    then: Callable[[], None] | None = None
    alarm: int = 0  # latched half way through, when the plan says so


class HostLinkTool:
    idn: tuple[str, str, str, str] = ("", "", "", "")
    alarm_texts: dict[int, str] = {}
    # cmd -> (number of args, states allowed in or None for any, method name)
    commands: dict[str, tuple[int, frozenset[str] | None, str]] = {}

    def __init__(self, *, alarm_at_wafer: dict[int, int] | None = None,
                 cause_s: float = 30.0) -> None:
        self.alarm_at_wafer = dict(alarm_at_wafer or {})
        self.cause_s = cause_s
        self.now = 0.0
        self.state = IDLE
        self.wafer = ""
        self.wafers = 0  # wafers loaded so far (the alarm plan counts them)
        self.alarm = 0
        self.cause_until = 0.0
        self.door_until = 0.0
        self.phases: list[Phase] = []
        self.elapsed = 0.0  # in the current phase
        self.result: list[str] | None = None
        self.log: list[str] = []

    # --- time -----------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.phases and self.state != ALARM:
            phase = self.phases[0]
            left = phase.seconds - self.elapsed
            if phase.alarm and self.elapsed < phase.seconds / 2 <= self.elapsed + (end - self.now):
                self.now += phase.seconds / 2 - self.elapsed
                self.latch(phase.alarm)
                break
            if self.now + left > end:
                self.elapsed += end - self.now
                break
            self.now += left
            self.phases.pop(0)
            self.elapsed = 0.0
            if self.phases:
                self.state = self.phases[0].state
            if phase.then is not None:
                phase.then()
        self.now = max(self.now, end)

    def run(self, *phases: Phase) -> None:
        self.phases = [p for p in phases]
        self.elapsed = 0.0
        self.state = self.phases[0].state

    def planned_alarm(self, code_filter: Callable[[int], bool]) -> int:
        code = self.alarm_at_wafer.get(self.wafers, 0)
        return code if code and code_filter(code) else 0

    def latch(self, code: int, cause_s: float | None = None) -> None:
        self.phases = []
        self.elapsed = 0.0
        self.state = ALARM
        self.alarm = code
        if cause_s is None:
            cause_s = self.cause_s if code in (400, 900) else 0.0
        self.cause_until = self.now + cause_s
        self.log.append(f"alarm {code} {self.wafer}".rstrip())
        if self.wafer:
            self.result = self.failed_result("ALARM")

    def open_door(self, seconds: float) -> None:
        self.door_until = self.now + seconds
        if self.phases:
            self.latch(400, seconds)

    def cause_gone(self) -> bool:
        return self.now >= self.cause_until

    # --- requests -------------------------------------------------------------
    def handle(self, cmd: str, args: list[str]) -> list[str]:
        if cmd not in self.commands:
            raise Nak(2)
        nargs, allowed, method = self.commands[cmd]
        if self.state == ALARM and cmd not in ALARM_OK and not self.allowed_in_alarm(cmd):
            raise Nak(5)
        if len(args) != nargs:
            raise Nak(3)
        if allowed is not None and self.state not in allowed and not (
                self.state == ALARM and self.allowed_in_alarm(cmd)):
            raise Nak(4)
        reply: list[str] = getattr(self, method)(*args)
        if cmd not in QUERIES:
            self.log.append(" ".join([cmd.lower(), *args]))
        return reply

    def motion(self) -> None:
        """Called by a command that moves something, after its checks, before it runs."""
        if self.now < self.door_until:
            raise Nak(6)

    def allowed_in_alarm(self, cmd: str) -> bool:
        return False

    def failed_result(self, status: str) -> list[str]:
        raise NotImplementedError

    def status_fields(self) -> list[str]:
        raise NotImplementedError

    def cmd_idn(self) -> list[str]:
        return list(self.idn)

    def cmd_sts(self) -> list[str]:
        return self.status_fields()

    def cmd_alr(self) -> list[str]:
        return [str(self.alarm), self.alarm_texts.get(self.alarm, "")]

    def cmd_clr(self) -> list[str]:
        if self.state != ALARM or not self.cause_gone():
            raise Nak(4)
        self.alarm = 0
        self.state = DONE if self.wafer else IDLE
        return []

    def cmd_abt(self) -> list[str]:
        if self.state == ALARM:
            return []
        self.abort_phases()
        self.phases = []
        self.elapsed = 0.0
        if self.wafer:
            self.state = DONE
            self.result = self.failed_result("ABORTED")
        else:
            self.state = IDLE
        return []

    def abort_phases(self) -> None:
        """A tool undoes what an interrupted phase leaves half done."""

    def cmd_res(self) -> list[str]:
        assert self.result is not None
        return list(self.result)

    def cmd_uld(self) -> list[str]:
        self.motion()
        self.run(Phase(UNLOADING, 10, self._unloaded))
        return []

    def _unloaded(self) -> None:
        self.log.append(f"out {self.wafer}")
        self.wafer = ""
        self.state = IDLE

    def load(self, wafer_id: str, seconds: float = 20) -> None:
        if not 1 <= len(wafer_id) <= 16:
            raise Nak(3)
        self.motion()
        self.wafers += 1
        self.wafer = wafer_id
        self.result = None
        alarm = self.planned_alarm(lambda c: c == 210)
        self.run(Phase(LOADING, seconds, self._loaded, alarm))

    def _loaded(self) -> None:
        self.state = READY


def number(text: str, low: float, high: float, *, integer: bool = False) -> float:
    """A plain decimal (``6``, ``6.0``; no sign, exponent or spaces) within [low, high]."""
    digits = text.replace(".", "", 1)
    if not digits.isdigit() or not digits.isascii() or text.startswith(".") or text.endswith("."):
        raise Nak(3)
    if integer and "." in text:
        raise Nak(3)
    value = float(text)
    if not low <= value <= high:
        raise Nak(3)
    return value


def name(text: str, longest: int = 32) -> str:
    if not 1 <= len(text) <= longest:
        raise Nak(3)
    return text

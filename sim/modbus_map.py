"""Register-level plumbing shared by the simulated Modbus tools (oven, cleaner).

A tool model exposes its register map through ``read``/``write`` on one of the
four Modbus tables and refuses a request by raising :class:`Refusal` with the
Modbus exception code the real tool would answer. The server (the only module
that touches pymodbus) turns a refusal into an exception response on the wire.
Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import ClassVar, Protocol

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_BUSY = 6


class Table(Enum):
    COILS = "coils"
    DISCRETE_INPUTS = "discrete inputs"
    HOLDING = "holding registers"
    INPUT = "input registers"


# Which table each supported function code reads or writes.
FUNCTION_TABLES: dict[int, Table] = {
    1: Table.COILS,
    5: Table.COILS,
    15: Table.COILS,
    2: Table.DISCRETE_INPUTS,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    4: Table.INPUT,
}


class Refusal(Exception):
    """The tool answers this request with a Modbus exception ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"exception {code:02d}: {reason}")
        self.code = code
        self.reason = reason


class RegisterModel(Protocol):
    """What a Modbus server needs of a tool model."""

    function_codes: frozenset[int]
    register_span: dict[Table, int]  # highest address + 1 per table

    def read(self, table: Table, address: int, count: int, now: float) -> list[int] | list[bool]:
        """Values of ``count`` addresses from ``address``; raises Refusal."""
        ...

    def write(self, table: Table, address: int, values: Sequence[int] | Sequence[bool],
              now: float) -> None:
        """Write ``values`` from ``address``; raises Refusal and then writes nothing."""
        ...

    def drain_events(self) -> list[tuple[float, str]]:
        """State changes and alarms since the last call, as (tool time, text)."""
        ...


def check_span(valid: frozenset[int], table: Table, address: int, count: int) -> None:
    """Exception 02 unless every address in the span exists."""
    if count < 1:
        raise Refusal(ILLEGAL_VALUE, f"{table.value}: count {count} < 1")
    for a in range(address, address + count):
        if a not in valid:
            raise Refusal(ILLEGAL_ADDRESS, f"{table.value} address {a} is not in the map")


def addresses(*spans: Iterable[int]) -> frozenset[int]:
    return frozenset(a for span in spans for a in span)


def to_s16(value: float, scale: float = 10.0) -> int:
    """A reading in engineering units as a signed 16-bit register (two's complement)."""
    raw = max(-32768, min(32767, round(value * scale)))
    return raw & 0xFFFF


def to_u16(value: float, scale: float = 1.0) -> int:
    return max(0, min(0xFFFF, round(value * scale)))


def u32_words(value: int) -> list[int]:
    """Unsigned 32-bit as two registers, high word first."""
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def text_to_registers(text: str, registers: int) -> list[int]:
    """ASCII, two characters per register, high byte first, NUL padded."""
    raw = text.encode("ascii")[: registers * 2].ljust(registers * 2, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def registers_to_text(words: Sequence[int]) -> str:
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return raw.split(b"\0", 1)[0].decode("ascii")


def busy_unless(condition: bool, reason: str) -> None:
    """Exception 06 (SERVER DEVICE BUSY: not allowed now) unless ``condition``."""
    if not condition:
        raise Refusal(DEVICE_BUSY, reason)


def check_text_words(words: Sequence[int], what: str) -> None:
    """Exception 03 for a byte that is neither printable ASCII nor NUL padding."""
    for w in words:
        for byte in (w >> 8, w & 0xFF):
            if byte != 0 and not 0x20 <= byte <= 0x7E:
                raise Refusal(ILLEGAL_VALUE, f"{what}: byte 0x{byte:02X} is not printable ASCII")


class EventLog:
    """What a model reports for the server to log: state changes and alarms, with tool time.

    A model sets ``_events``, ``_t`` (its current tool time) and ``_last_state``, and
    provides ``_state()``.
    """

    _events: deque[tuple[float, str]]
    _t: float
    _last_state: Enum

    def _state(self) -> Enum:
        raise NotImplementedError

    def _event(self, text: str) -> None:
        self._events.append((self._t, text))

    def _note_state(self) -> None:
        state = self._state()
        if state != self._last_state:
            self._event(f"state {self._last_state.name} -> {state.name}")
            self._last_state = state

    def drain_events(self) -> list[tuple[float, str]]:
        events = list(self._events)
        self._events.clear()
        return events


class LatchedAlarms(EventLog):
    """The alarm latch of a Modbus tool model, as both specs have it: alarms latch
    (oldest first), COMMAND = CLEAR clears them all once every cause is gone, and the
    fault plan schedules alarms at a tool time or for the N-th wafer.

    A model calls ``_init_alarms()``, calls ``_fire_due_alarms()`` in each time step,
    and provides ``ALARM_TEXT``, ``TOOL``, ``_cause_present(code)`` and, for what an
    alarm does to the work in progress, ``_latched(code)``.
    """

    TOOL: ClassVar[str]
    ALARM_TEXT: ClassVar[Mapping[int, str]]
    _alarms: list[int]
    _time_alarms: list[tuple[float, int]]  # (tool time, code), sorted
    _wafer_alarms: dict[int, list[int]]  # wafer number -> codes
    _scheduled: set[tuple[object, ...]]  # what a plan asked for (two servers, one plan)

    def _init_alarms(self) -> None:
        self._alarms = []
        self._time_alarms = []
        self._wafer_alarms = {}
        self._scheduled = set()

    def _cause_present(self, code: int) -> bool:
        raise NotImplementedError

    def _latched(self, code: int) -> None:
        """Alarm ``code`` was just latched: stop what it stops."""

    def _latch(self, code: int, why: str = "") -> None:
        if code in self._alarms:
            return
        self._alarms.append(code)
        text = self.ALARM_TEXT.get(code, "ALARM")
        self._event(f"alarm {code} {text}" + (f" ({why})" if why else ""))
        self._latched(code)
        self._note_state()

    def _fire_due_alarms(self) -> None:
        while self._time_alarms and self._time_alarms[0][0] <= self._t + 1e-9:
            self._latch(self._time_alarms.pop(0)[1], "fault plan")

    def _clear_alarms(self) -> None:
        """COMMAND = CLEAR (06 while none is latched or a cause persists)."""
        busy_unless(bool(self._alarms), "CLEAR: no alarm latched")
        for code in self._alarms:
            busy_unless(not self._cause_present(code),
                        f"CLEAR: cause of alarm {code} still present")
        self._event(f"CLEAR alarms {self._alarms}")
        self._alarms = []

    def schedule_alarm(self, code: int, *, at_time: float | None = None,
                       at_wafer: int | None = None) -> None:
        """Raise ``code`` at a tool time, or half way through the N-th wafer's processing
        (the oven: its pass through the tunnel; the cleaner: its wash).

        Momentary: its cause is gone at once, so CLEAR works."""
        if (at_time is None) == (at_wafer is None):
            raise ValueError(f"{self.TOOL} alarm: give exactly one of at_time or at_wafer")
        key = ("alarm", code, at_time, at_wafer)
        if key in self._scheduled:  # two servers with one plan schedule it once
            return
        self._scheduled.add(key)
        if at_time is not None:
            self._time_alarms.append((at_time, code))
            self._time_alarms.sort()
        else:
            assert at_wafer is not None
            self._wafer_alarms.setdefault(at_wafer, []).append(code)

"""What the two HostLink/1 tools share: IDN/ALR/CLR/ABT, reading reply fields, waiting on STS.

``PastePrinter`` and ``BallPlacer`` build on ``HostLinkTool``; each adds its own
status layout and commands. Reply fields are read through ``Fields`` so a
field the tool should not have sent becomes a ``LinkError`` that names the
tool, the command and the field — never an IndexError or a raw string.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from drivers.clock import Clock
from drivers.errors import LinkError, StateUnreachable, ToolAlarm, ToolTimeout
from drivers.serial_link import HostLinkPort
from drivers.types import Alarm, Identity

E = TypeVar("E", bound=Enum)


class _Status(Protocol):
    @property
    def state(self) -> Enum: ...

    @property
    def alarm_code(self) -> int: ...


S = TypeVar("S", bound=_Status)  # the tool's status dataclass


class Fields:
    """The ACK fields of one reply, read by position with the expected type."""

    __slots__ = ("tool", "cmd", "names", "raw", "_values")

    def __init__(self, tool: str, cmd: str, fields: Sequence[str], names: Sequence[str]) -> None:
        if len(fields) != len(names):
            raise LinkError(
                tool,
                f"{cmd} reply has {len(fields)} fields, expected {len(names)} "
                f"({', '.join(names) or 'none'}): {list(fields)}",
            )
        self.tool, self.cmd, self.names = tool, cmd, names
        self.raw = tuple(fields)
        self._values: dict[str, str] | None = None

    @property
    def values(self) -> dict[str, str]:
        """Field name -> text (made on first use: a reply decoded before needs none)."""
        if self._values is None:
            self._values = dict(zip(self.names, self.raw, strict=True))
        return self._values

    def _bad(self, name: str, expected: str) -> LinkError:
        return LinkError(
            self.tool,
            f"{self.cmd} reply field {name}: expected {expected}, got {self.values[name]!r}",
        )

    def text(self, name: str) -> str:
        """The field, trailing blanks dropped: padding a tool may add (docs/protocols.md)."""
        return self.values[name].rstrip(" ")

    def optional_text(self, name: str) -> str | None:
        return self.values[name].rstrip(" ") or None

    def whole(self, name: str) -> int:
        value = self.values[name]
        if not value.isdigit():
            raise self._bad(name, "a whole number")
        return int(value)

    def measured(self, name: str) -> float:
        """A measured value: a whole number stays an int (``11``), a decimal (``11.3``) is
        taken as the tool wrote it; the spec gives no format for these."""
        value = self.values[name]
        return int(value) if value.isdigit() else self.decimal(name)

    def decimal(self, name: str) -> float:
        try:
            value = float(self.values[name])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self._bad(name, "a number")
        return value

    def choice(self, name: str, enum: type[E]) -> E:
        member = _members(enum).get(self.values[name])
        if member is None:
            known = "|".join(str(m.value) for m in enum)
            raise self._bad(name, known)
        return member


@functools.cache
def _members(enum: type[E]) -> dict[str, E]:
    """Value -> member of an enum: a dict look-up costs a fifth of calling the enum."""
    return {str(m.value): m for m in enum}


def number_text(value: float, min_places: int = 0) -> str:
    """A number as the tools write it: ``6.0``, ``40``, ``0.25`` — no exponent, no noise."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(min_places, "0")
    return f"{whole}.{frac}" if frac else whole


# Requests that change nothing on the tool (every other command voids a known status).
READS = frozenset({"STS", "ALR", "IDN", "RES"})
KNOWN_FOR_S = 10.0  # tool s: how long a status read at rest stands for the next look
DECODED_KEPT = 64  # distinct replies whose decoded fields are kept (see _decoded)


class HostLinkTool(Generic[S]):
    """Base of the HostLink/1 drivers: one tool behind one ``HostLinkPort``."""

    STATE: type[Enum]  # the tool's STS states
    ALARM_STATE: Enum
    # What each state becomes by itself, with no host command (the spec's command table);
    # ALARM may follow any state. ``wait_for`` fails at once for a state that cannot come.
    NEXT: ClassVar[Mapping[Enum, tuple[Enum, ...]]] = {}
    # The states a command leads to, told apart from where it may start: when every reply
    # to it was lost, STS says whether it was carried out. Commands not here (RCP, ABT, a
    # wipe or refill that may already be over) cannot be judged, and their LinkError stands.
    LEADS_TO: ClassVar[Mapping[str, frozenset[Enum]]] = {}

    def __init__(self, port: HostLinkPort, clock: Clock, *, poll_s: float = 1.0) -> None:
        if not poll_s > 0:
            raise ValueError(f"{port.tool}: poll interval must be > 0 s, got {poll_s!r}")
        self.port = port
        self.clock = clock
        self.poll_s = float(poll_s)
        # The status ``wait_for`` found the tool at rest with (its IDLE state), the tool
        # time then and the commands sent before it: the next ``status`` within
        # KNOWN_FOR_S, with no command between, is that read (``_known``), once.
        self._commands = 0
        self._at_rest: tuple[S, float, int] | None = None
        self._replies: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}

    @property
    def name(self) -> str:
        return self.port.tool

    async def _call(self, cmd: str, *args: str, fields: Sequence[str] = ()) -> Fields:
        if cmd not in READS:
            self._commands += 1
        try:
            reply = await self.port.request(cmd, *args)
        except LinkError:
            # The port has retransmitted the identical frame as often as it may; the tool
            # would have answered from memory. Before calling it failed, ask the tool.
            if fields or not await self._carried_out(cmd, args):
                raise
            return Fields(self.name, cmd, [], fields)
        return Fields(self.name, cmd, reply, fields)

    def _decoded(self, f: Fields, decode: Callable[[Fields], dict[str, Any]]) -> dict[str, Any]:
        """``decode(f)``: a reply's fields read with their types, kept for the same reply
        text (a tool polled at rest answers the same STS again and again). A reply that
        does not decode raises each time and is not kept."""
        key = (f.cmd, f.raw)
        values = self._replies.get(key)
        if values is None:
            values = decode(f)
            if len(self._replies) >= DECODED_KEPT:
                self._replies.clear()
            self._replies[key] = values
        return values

    async def _carried_out(self, cmd: str, args: Sequence[str]) -> bool:
        after = self.LEADS_TO.get(cmd)
        if after is None:
            return False
        try:
            status = await self.status()
        except LinkError:
            return False  # the tool cannot be asked either: the first LinkError stands
        if cmd == "LOD" and status.wafer_id != args[0]:  # type: ignore[attr-defined]
            return False
        return status.state in after

    async def identify(self) -> Identity:
        f = await self._call("IDN", fields=("vendor", "model", "serial", "firmware"))
        return Identity(f.text("vendor"), f.text("model"), f.text("serial"), f.text("firmware"))

    async def alarm(self) -> Alarm | None:
        """The latched alarm, or None when there is none (ALR ``0,``)."""
        f = await self._call("ALR", fields=("code", "text"))
        code = f.whole("code")
        return Alarm(code, f.text("text")) if code else None

    async def clear_alarm(self) -> None:
        await self._call("CLR")

    async def abort(self) -> None:
        await self._call("ABT")

    async def status(self) -> S:
        raise NotImplementedError

    async def wait_for(self, *states: Enum | str, timeout_s: float) -> S:
        """Poll STS every ``poll_s`` tool seconds until the tool is in one of ``states``.

        An alarm the caller did not wait for raises ``ToolAlarm`` (with ALR's
        text); not arriving within ``timeout_s`` tool seconds raises ``ToolTimeout``.
        """
        if not states:
            raise ValueError(f"{self.name}: wait_for needs at least one state")
        wanted = {self._state(s) for s in states}
        deadline = self.clock.now() + timeout_s
        while True:
            at_rest = self._at_rest
            read_at = self.clock.now()
            status = await self.status()
            state = status.state
            if state in wanted:
                if getattr(state, "name", "") == "IDLE":
                    if at_rest is not None and at_rest[0] is status:  # the same read again
                        read_at = at_rest[1]
                    self._at_rest = (status, read_at, self._commands)
                return status
            if state is self.ALARM_STATE:
                alarm = await self.alarm()  # STS has the code; ALR adds the text
                code = alarm.code if alarm else status.alarm_code
                raise ToolAlarm(self.name, code, alarm.text if alarm else "")
            if not wanted & self.reachable(state):
                names = " or ".join(sorted(s.value for s in wanted))
                raise StateUnreachable(
                    self.name, f"not {names}: {state.value} does not lead there without a "
                    "host command"
                )
            left = deadline - self.clock.now()
            if not left > 0:  # a NaN deadline too (a timeout sized from a NaN): never passed
                names = " or ".join(sorted(s.value for s in wanted))
                raise ToolTimeout(
                    self.name, f"not {names} after {timeout_s:g} s (tool time); still {state.value}"
                )
            await self.clock.sleep(min(self.poll_s, left))

    def _known(self) -> S | None:
        """The status ``wait_for`` just found the tool at rest with, if nothing was sent to
        it since and it is at most KNOWN_FOR_S tool seconds old (the next wafer's
        interlock check straight after our ULD and the wait for IDLE); used once."""
        known, self._at_rest = self._at_rest, None
        if (known is None or known[2] != self._commands
                or self.clock.now() - known[1] > KNOWN_FOR_S):
            return None
        return known[0]

    def reachable(self, state: Enum) -> set[Enum]:
        """The states the tool can reach from ``state`` on its own (``state`` included)."""
        seen, todo = {state, self.ALARM_STATE}, [state]
        while todo:
            for nxt in self.NEXT.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def _state(self, state: Enum | str) -> Enum:
        try:
            return self.STATE(state.value if isinstance(state, Enum) else state)
        except ValueError:
            known = ", ".join(str(m.value) for m in self.STATE)
            raise ValueError(f"{self.name}: no state {state!r} (states: {known})") from None

"""What the Modbus drivers (oven, cleaner) share: one tool behind a ``ModbusLink``,
read and written by name through its register map.

Both specs work alike here ("exceptions as for the oven", flux-cleaner.md): a STATE
register whose codes the map names, an ALARM_CODE register with the map's alarm
texts, waits in tool seconds on the injected clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from drivers.clock import Clock
from drivers.errors import ToolAlarm, ToolError, ToolTimeout
from drivers.mapped_registers import MappedRegisters
from drivers.modbus_link import ModbusLink
from drivers.register_map import Block, RegisterMap, load_register_map
from drivers.types import Alarm

St = TypeVar("St", bound=Enum)
S = TypeVar("S")  # the tool's status dataclass

# A command refused (exception 06) though the tool's own state allows it is sent again this
# many times, one poll apart: a busy moment passes; a refusal for the state is reported.
REFUSED_AGAIN = 2
# A tool may answer a COMMAND before it shows the command's effect: one that runs its logic
# once a tick (a PLC's scan) carries it out on its next tick. The specs do not say the state
# has changed by the time the reply goes out, so a state read this soon (tool seconds) after
# our command that still shows a state the command leads away from is read again once this
# long has passed, and a command refused (06) in that time is sent again once the state
# shows the earlier one carried out (docs/protocols.md, "A command's effect a tick late").
COMMAND_APPLY_S = 1.0


class ModbusTool(Generic[St, S]):
    """Base of the Modbus drivers. A subclass names its map and its state enum, and the
    block ``_watch`` that ``wait_for`` polls (it starts with STATE and holds ALARM_CODE)."""

    DEFAULT_MODEL: ClassVar[str]
    STATE: ClassVar[type[Enum]]

    def __init__(
        self,
        link: ModbusLink,
        clock: Clock,
        *,
        register_map: RegisterMap | str | None = None,
        poll_s: float = 2.0,
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"{link.tool}: poll interval must be > 0 tool seconds, got {poll_s}")
        self.link = link
        self.clock = clock
        self.poll_s = poll_s
        if not isinstance(register_map, RegisterMap):
            register_map = load_register_map(register_map or self.DEFAULT_MODEL)
        self.map = register_map
        self.regs = MappedRegisters(link, register_map)
        self._watch: Block = register_map.block("STATE", "ALARM_CODE")
        self._state_only: Block = register_map.block("STATE")
        # Our last command: the state names it leads away from and the tool time its reply
        # came, until a state read shows another state or COMMAND_APPLY_S has passed.
        self._applying: tuple[frozenset[str], float] | None = None

    @property
    def name(self) -> str:
        return self.link.tool

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.map.model})"

    async def state(self) -> St:
        return self._state_of((await self._read_states(self._state_only))["STATE"])

    def _commanded(self, leaves: Iterable[str]) -> None:
        """Our command was answered just now: until a read shows otherwise (or
        COMMAND_APPLY_S has passed), a state in ``leaves`` may be the one before it. Counted
        from the reply, which the tool sent after it took the command in."""
        self._applying = (frozenset(leaves), self.clock.now())

    def _still_applying(self) -> bool:
        """Our last command may not show yet (answered less than COMMAND_APPLY_S ago, and
        no read since has shown its effect)."""
        applying = self._applying
        return applying is not None and self.clock.now() < applying[1] + COMMAND_APPLY_S

    async def _read_states(self, block: Block) -> dict[str, Any]:
        """``block`` (it holds STATE), read again once COMMAND_APPLY_S after our last
        command if it still shows a state that command leads away from: the tool may carry
        it out on its next tick. No request more when the first read shows it carried out."""
        v = await self.regs.read_block(block)
        applying, self._applying = self._applying, None
        if applying is not None and self._state_of(v["STATE"]).name in applying[0]:
            wait = applying[1] + COMMAND_APPLY_S - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
                v = await self.regs.read_block(block)
        return v

    async def status(self) -> S:
        raise NotImplementedError

    async def wait_for(self, *states: St, timeout_s: float) -> S:
        """Until the tool is in one of ``states`` (tool seconds), then its status; ToolAlarm
        on an alarm unless ALARM is one of the states asked for."""
        if not states:
            raise ValueError(f"{self.name}: wait_for needs at least one state")
        await self._poll_until(states, timeout_s, self._watch)
        return await self.status()

    async def _poll_until(
        self, states: tuple[St, ...], timeout_s: float, block: Block
    ) -> dict[str, Any]:
        """Read ``block`` (it starts with STATE and holds ALARM_CODE) every ``poll_s`` until
        the state is one of ``states``; its values then."""
        deadline = self.clock.now() + timeout_s
        wanted = ", ".join(s.name for s in states)
        while True:
            v = await self._read_states(block)
            state = self._state_of(v["STATE"])
            if state in states:
                return v
            if state.name == "ALARM":
                raise self._tool_alarm(v["ALARM_CODE"])
            why = f"not {wanted} within {timeout_s:g} s (state {state.name})"
            await self._pause_until(deadline, why, self._poll_pause_s(v))

    def _poll_pause_s(self, v: dict[str, Any]) -> float | None:
        """How long to wait before the next poll, from this one's values (None: poll_s)."""
        return None

    async def alarm(self) -> Alarm | None:
        """The latched alarm, or None."""
        code = await self.regs.read("ALARM_CODE")
        return Alarm(code, self.map.alarm_text(code)) if code else None

    async def _pause_until(
        self, deadline: float, timeout_message: str, poll_s: float | None = None
    ) -> None:
        """Sleep one poll interval (or what is left of it); ToolTimeout past the deadline."""
        remaining = deadline - self.clock.now()
        if not remaining > 0:  # a NaN deadline too (a timeout sized from a NaN): never passed
            raise ToolTimeout(self.name, timeout_message)
        await self.clock.sleep(min(poll_s or self.poll_s, remaining))

    def _state_of(self, code: int) -> St:
        name = self.map["STATE"].code_name(code)
        try:
            return self.STATE[name]  # type: ignore[return-value]
        except KeyError:
            raise ToolError(self.name, f"STATE = {code}: not a state of {self.map.model}") from None

    def _tool_alarm(self, code: int) -> ToolAlarm:
        return ToolAlarm(self.name, code, self.map.alarm_text(code))

    def _wafer_id_words(self, register: str, wafer_id: str) -> list[int]:
        """The register words of a wafer id (ValueError, naming the tool, if it cannot be)."""
        if not wafer_id:
            raise ValueError(f"{self.name}: a wafer id is needed to load a wafer")
        try:
            return self.map[register].encode(wafer_id)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

"""Named access to a Modbus tool through its register map: what the Modbus drivers use.

``MappedRegisters`` reads and writes entries of a ``drivers/register_map.py`` map
by name, in engineering units, over a ``ModbusLink``. It also holds the one
check the link cannot make: Modbus TCP carries no checksum of its own, so a
reading the tool cannot have sent (a STATE code its map does not list, an
alarm code its alarm table does not list, text that is not printable ASCII)
is taken for a damaged reply and read again.

A map may say its tool answers reads across unmapped addresses (``read_across_gaps``,
the oven's worked example). A tool that answers such a read with exception 02 (the
spec's rule for addresses outside the map) is read in mapped runs only, from then on:
logged once, and ``in_one_read`` tells the driver a block now takes several requests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from drivers.errors import IllegalAddress, ModbusToolError
from drivers.modbus_link import ModbusLink, Probe
from drivers.register_map import Block, Register, RegisterMap

log = logging.getLogger("drivers.mapped_registers")


class MappedRegisters:
    """Named access to a tool through its register map: what the drivers use."""

    def __init__(self, link: ModbusLink, register_map: RegisterMap) -> None:
        self.link = link
        self.map = register_map
        # The entries a reading can be implausible for, found once: every other read (the
        # zone temperatures, the belt count) skips the check.
        self._checked = frozenset(
            reg.name for reg in register_map.registers.values()
            if reg.table == "input" and _can_be_implausible(reg, register_map)
        )
        # Whether the tool answers reads across unmapped addresses: the map's word until
        # the tool refuses one (exception 02); then each block's mapped runs, found once.
        self.across_gaps = register_map.read_across_gaps
        self._gap_free: dict[tuple[str, int, int], Block] = {}

    async def read_block(self, block: Block) -> dict[str, Any]:
        """Every entry of a block (one request per 125 registers), decoded."""
        checked = not self._checked.isdisjoint(r.name for r in block.entries)
        for attempt in range(self.link.retries + 1):
            values = block.decode(await self._block_words(block))
            if not checked or not self._implausible(block.entries, values, attempt):
                break
        return values

    def in_one_read(self, block: Block) -> bool:
        """Whether ``read_block`` reads the block in one request (it may take a gap)."""
        return len(self._as_read(block).runs) == 1

    def _as_read(self, block: Block) -> Block:
        """The block with the runs this tool answers: its mapped runs once it has refused a
        read across unmapped addresses."""
        if self.across_gaps or len(block.runs) != 1:
            return block
        key = (block.table, block.address, block.count)
        if key not in self._gap_free:
            self._gap_free[key] = self.map.gap_free(block)
        return self._gap_free[key]

    async def _block_words(self, block: Block) -> list[int]:
        read = self._as_read(block)
        try:
            return await self._run_words(read)
        except IllegalAddress:
            if not self.across_gaps or self.map.gap_free(block).runs == read.runs:
                raise  # a read of mapped addresses only: the tool's 02 is its word
        # A different oven, as conforming: it keeps to "02 outside the map" over the
        # worked example's one read across the gap (docs/protocols.md).
        self.across_gaps = False
        log.warning("%s: %s across unmapped addresses refused (exception 02): reading "
                    "mapped runs only from now on", self.link.tool, block.label)
        return await self._run_words(self._as_read(block))

    async def _run_words(self, block: Block) -> list[int]:
        if len(block.runs) == 1:
            return await self.link.read(block.table, block.address, block.count, what=block.label)
        words = [0] * block.count
        for address, count in block.runs:
            run = await self.link.read(block.table, address, count, what=block.label)
            words[address - block.address : address - block.address + count] = run
        return words

    async def read(self, name: str) -> Any:
        """One entry, decoded (a tuple for array entries such as ZONE_PV)."""
        reg = self.map[name]
        checked = name in self._checked
        for attempt in range(self.link.retries + 1):
            values = reg.decode_all(await self.link.read(reg.table, reg.address, reg.count,
                                                         what=name))
            value = values if reg.values > 1 else values[0]
            if not checked or not self._implausible((reg,), {name: value}, attempt):
                break
        return value

    def _implausible(self, entries: Sequence[Any], values: Mapping[str, Any], attempt: int) -> bool:
        """A code the tool cannot report (a STATE the map does not list) is a damaged reply:
        Modbus TCP carries no checksum of its own. True (read again) while attempts are left;
        the last reading goes up as it is and the driver names the odd value."""
        odd = [
            f"{reg.name} = {values[reg.name]!r}"
            for reg in entries
            if reg.table == "input" and _implausible(reg, values[reg.name], self.map)
        ]
        if not odd or attempt == self.link.retries:
            return False
        self.link.garbled_replies += 1
        if self.link.trace:
            self.link.trace("<", f"implausible {', '.join(odd)}: reading again")
        return True

    async def write(self, name: str, value: Any) -> None:
        reg = self.map[name]
        if reg.table == "coil":
            await self.link.write_coil(reg.address, bool(value), what=name)
            return
        if reg.table != "holding":
            raise ValueError(
                f"{self.link.tool}: {name} is in the {reg.table} table and cannot be written"
            )
        words = reg.encode_all(value) if reg.values > 1 else reg.encode(value)
        await self._write_words(reg.address, words, name)

    async def write_block(self, block: Block, values: Mapping[str, Any]) -> None:
        """Several contiguous holding entries in one write; the tool refuses all or none."""
        words: list[int] = []
        for reg in block.entries:
            value = values[reg.name]
            words.extend(reg.encode_all(value) if reg.values > 1 else reg.encode(value))
        if not block.contiguous:
            raise ValueError(
                f"{self.link.tool}: {block.label} is not one contiguous run of registers"
            )
        try:
            await self._write_words(block.address, words, block.label)
        except ModbusToolError as exc:
            if exc.code != 3:
                raise
            # Name the values the vendor's ranges reject, not just the block.
            problems = [
                p for reg in block.entries for p in reg.out_of_range(block.words_of(reg, words))
            ]
            if not problems:
                raise
            raise type(exc)(self.link.tool, f"{block.label} ({'; '.join(problems)})") from None

    async def command(self, register: str, code_name: str, *, done: Probe) -> None:
        """Write a named code (``COMMAND`` = ``APPLY``); the error names both. ``done`` tells,
        from the tool's state, whether the command was carried out (a command register
        reads back 0, so only the driver knows what to look at)."""
        reg = self.map[register]
        what = f"{register}={code_name}"
        await self.link.write_register(reg.address, reg.code(code_name), what=what, done=done)

    async def _write_words(self, address: int, words: list[int], what: str) -> None:
        if len(words) == 1:
            await self.link.write_register(address, words[0], what=what)
        else:
            await self.link.write_registers(address, words, what=what)


def _can_be_implausible(reg: Register, register_map: RegisterMap) -> bool:
    """Whether ``_implausible`` can say True for some reading of ``reg``."""
    return bool(
        (reg.name == "ALARM_CODE" and register_map.alarms) or reg.codes or reg.type == "ascii"
    )


def _implausible(reg: Any, value: Any, register_map: RegisterMap) -> bool:
    """A value the tool cannot report: a code its map does not list, an alarm code its
    alarm table does not list, or text that is not printable ASCII ("Text is ASCII").
    An unlisted alarm that reads the same again is taken as it is (UNKNOWN ALARM)."""
    if reg.name == "ALARM_CODE" and register_map.alarms:
        return bool(value) and value not in register_map.alarms
    if reg.codes:
        return value not in reg.codes.values()
    if reg.type == "ascii":
        return not all(" " <= ch <= "~" for ch in value)
    return False

"""A wafer's interlocks and a damaged reply: on the simulated line in-process with real
drivers and a fresh store (the rig of test_lot_run). Modbus TCP has no checksum: a damaged
byte in a reply's data is a wrong value, not an error (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_lot_run import assert_line_empty, rig, run_lots

from sim.modbus_map import Table

IR_ACTIVE_PROFILE_ID = 14  # reflow-oven.md, input registers


@pytest.mark.faults
async def test_a_damaged_profile_read_at_the_oven_interlock_does_not_hold_the_wafer(
        tmp_path: Path) -> None:
    """Once the wafer is printed, the oven's replies to IR 0-14 come back with
    ACTIVE_PROFILE_ID damaged until the wafer's interlocks have read one (IR 0-14 then the
    coils; the setup's and the live view's reads before it are damaged too, and mind only
    the zones, state, alarm and O2). The wafer was held for an engineer, "interlock: oven
    runs profile 64939, the step needs profile 64683", with the oven running the right
    profile all along (the random fault soak, seed 3 plan 7: oven-1 corrupt=0.04). Now a
    refusal the tool does not repeat when read again holds nothing: the lot completes."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        [wafer] = r.new_lot("DMG", 1)  # rebump-hipb-snpb: print, then reflow
        printer, oven = r.model("printer-1"), r.model("oven-1")
        handle, read = printer.handle, oven.read
        armed: list[bool] = []
        damaged: list[bool] = []  # the last read was one we damaged
        interlocks: list[int] = []  # the profile the interlocks' read was given

        def printed(cmd: str, args: list[str], now: float) -> list[str]:
            ack: list[str] = handle(cmd, args, now)
            if cmd == "ULD" and not armed:
                armed.append(True)  # the wafer goes to the oven now
            return ack

        def damaging(table: Table, address: int, count: int, now: float) -> list[Any]:
            values: list[Any] = read(table, address, count, now)
            if damaged and damaged.pop() and table is Table.COILS and not interlocks:
                interlocks.append(oven._profile_id ^ 0x0100)  # the coils: a readiness read
            if (armed and not interlocks and table is Table.INPUT
                    and address <= IR_ACTIVE_PROFILE_ID < address + count):
                values[IR_ACTIVE_PROFILE_ID - address] ^= 0x0100  # one bit flipped
                damaged.append(True)
            return values

        printer.handle, oven.read = printed, damaging
        await run_lots(r.controller(), ["DMG"])
        assert len(interlocks) == 1, "no readiness read was damaged"
        events = r.store.events(wafer)
        assert r.store.get_wafer(wafer).state == "complete", [(e.trigger, e.why)
                                                              for e in events]
        assert not [e for e in events if e.trigger == "hold"]
        assert oven._wafers_taken == 2  # reflowed once per reflow step
        await assert_line_empty(r)


IR_EXIT_PROFILE_ID = 24  # reflow-oven.md: the profile the exit wafer was reflowed with


@pytest.mark.faults
@pytest.mark.parametrize("damaged", ["once", "always"])
async def test_a_damaged_exit_read_fails_no_wafer_the_oven_reflowed_right(
        tmp_path: Path, damaged: str) -> None:
    """The exit watcher's read of the wafer's values at the exit comes back with
    EXIT_PROFILE_ID damaged: the wafer went to an engineer, "reflowed with profile 27486,
    the step's is 27553", the oven having run the right profile (the random fault soak,
    seed 6 plan 13: oven-1 corrupt=0.049). Now a failed judgment is read again (the EXIT_
    registers keep the wafer's values until the next arrives): damaged once, the readings
    after it agree and the wafer goes on; the oven saying it every time, it fails."""
    async with rig(f"sqlite:///{tmp_path / 'line.db'}") as r:
        [wafer] = r.new_lot("DMG", 1)  # rebump-hipb-snpb: two reflows
        oven = r.model("oven-1")
        read = oven.read
        hits: list[int] = []

        def damaging(table: Table, address: int, count: int, now: float) -> list[Any]:
            values: list[Any] = read(table, address, count, now)
            if (table is Table.INPUT and address <= IR_EXIT_PROFILE_ID < address + count
                    and (damaged == "always" or (not hits and oven._exit_waiting))):
                values[IR_EXIT_PROFILE_ID - address] ^= 0x0100  # one bit flipped
                hits.append(now)
            return values

        oven.read = damaging
        await run_lots(r.controller(), ["DMG"])
        assert hits, "no exit read was damaged"
        state = r.store.get_wafer(wafer).state
        last = r.store.events(wafer)[-1]
        if damaged == "once":
            assert state == "complete", (last.trigger, last.why)
            assert oven._wafers_taken == 2  # reflowed once per reflow step
        else:
            assert state == "awaiting_disposition", (last.trigger, last.why)
            assert "reflowed with profile" in last.why, last.why
            assert oven._wafers_taken == 1
        await assert_line_empty(r)

"""The oven and cleaner drivers byte for byte: scripted request/reply ADUs, no socket or pty.

In the style of PyMeasure's ``expected_protocol``: a test lists every request the
driver must send and the reply the tool gives (``None``: the reply is lost), runs the
driver verb, and the script must be used up exactly. The real ``ModbusLink`` and the
real pymodbus client frame and parse the bytes; only the wire is in memory
(``ModbusLink.in_memory``). Addresses and encodings are those of
``../shared/specs/reflow-oven.md`` and ``../shared/specs/flux-cleaner.md`` (neither
prints golden frames, so every ADU here is written out from their tables).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from modbus_frames import rtu, tcp

from drivers.cleaner import KNOWN_FOR_S, FluxCleaner
from drivers.errors import DeviceBusy, LinkError, ToolError
from drivers.modbus_link import ModbusLink
from drivers.oven import ReflowOven
from drivers.types import CleanerState, OvenState
from sequences.kinds.base import wait_free
from sequences.kinds.reflow import REFLOW
from sim.clock import ManualClock

Pair = tuple[bytes, bytes | None]


class ExpectedExchanges:
    """The tool side of a scripted exchange: each request must be the next one listed."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self.pairs = list(pairs)
        self.used = 0

    def __call__(self, request: bytes) -> bytes | None:
        n = self.used + 1
        assert self.used < len(self.pairs), f"request {n} not in the script: {request.hex(' ')}"
        want, reply = self.pairs[self.used]
        assert request == want, f"request {n}: sent {request.hex(' ')}, expected {want.hex(' ')}"
        self.used = n
        return reply

    def assert_used_up(self) -> None:
        left = [want.hex(" ") for want, _ in self.pairs[self.used :]]
        assert not left, f"requests the driver never sent: {left}"


@contextlib.asynccontextmanager
async def expected_exchanges(
    driver_cls: type[Any], pairs: Sequence[Pair], *, framer: str, unit: int, tool: str
) -> AsyncIterator[Any]:
    script = ExpectedExchanges(pairs)
    link = ModbusLink.in_memory(script, tool=tool, unit=unit, framer=framer, timeout_s=0.05)
    await link.open()
    try:
        yield driver_cls(link, ManualClock())
    finally:
        await link.close()
    script.assert_used_up()


# --- framing -------------------------------------------------------------------------------------


def test_the_frame_helpers_agree_with_the_modbus_references() -> None:
    # "01 03 0000 000A C5CD": the classic RTU example, also used in test_modbus_link.py
    assert rtu("03 0000 000A", unit=1) == bytes.fromhex("01 03 0000 000A C5 CD")
    assert tcp(1, "04 000A 0003") == bytes.fromhex("0001 0000 0006 01 04 000A 0003")


# --- oven (Modbus TCP, unit 1) -------------------------------------------------------------------

WAFERS_ON_BELT = "04 000B 0001"  # IR 11
LOAD_ID = "10 001E 0008 10 4C4F 5434 322D 3037 0000 0000 0000 0000"  # HR 30-37 = "LOT42-07"
LOAD_ID_OK = "10 001E 0008"
COMMAND_LOAD = "06 0014 0002"  # HR 20 = 2
COMMAND_UNLOAD = "06 0014 0003"  # HR 20 = 3
FLAGS = "02 0000 0004"  # DI 0-3: ENTRANCE_CLEAR, WAFER_AT_EXIT, ZONES_STABLE, ALARM_ACTIVE
CLEAR_NONE_AT_EXIT = "02 01 05"  # entrance clear, no wafer at the exit, zones stable
# The spec does not say whether WAFERS_ON_BELT counts a wafer waiting at the exit: until
# the driver has learned it, a count it judges a LOAD by comes with the inputs read after
# it (an empty exit then was empty while the count was read: both models agree).


async def test_oven_status_is_three_requests_decoded_in_engineering_units() -> None:
    pairs = [
        (tcp(1, "04 0000 000F"),
         tcp(1, "04 1E" + " 0901" * 9 + " 7FFF" + " 0002 0000 0000 0014 002A")),
        (tcp(2, FLAGS), tcp(2, "02 01 05")),  # entrance clear, zones stable
        (tcp(3, "01 0000 0002"), tcp(3, "01 01 03")),  # N2 on, belt running
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        status = await oven.status()
    assert status.state is OvenState.READY and status.active_profile_id == 42
    assert status.zone_pv_c == (230.5,) * 9 + (None,)  # 0x7FFF: thermocouple failed
    assert (status.o2_ppm, status.wafers_on_belt, status.alarm_code) == (20, 0, 0)
    assert status.entrance_clear and status.zones_stable and not status.wafer_at_exit
    assert status.nitrogen_on and status.conveyor_running


async def test_an_oven_reading_it_cannot_have_sent_is_read_again() -> None:
    # Modbus TCP has no checksum of its own: an alarm code the oven does not have (a
    # damaged byte) is read again; one that reads the same twice is taken as it is.
    pairs = [
        (tcp(1, "04 000C 0001"), tcp(1, "04 02 FF00")),  # ALARM_CODE 65280: no such alarm
        (tcp(2, "04 000C 0001"), tcp(2, "04 02 0000")),  # read again: none
        (tcp(3, "04 000C 0001"), tcp(3, "04 02 0208")),  # 520 CONVEYOR JAM: taken at once
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        assert await oven.alarm() is None
        alarm = await oven.alarm()
        assert alarm is not None and (alarm.code, alarm.text) == (520, "CONVEYOR JAM")
        assert oven.link.garbled_replies == 1


async def test_oven_load_is_count_and_exit_then_id_then_command() -> None:
    pairs = [
        (tcp(1, WAFERS_ON_BELT), tcp(1, "04 02 0000")),
        (tcp(2, FLAGS), tcp(2, CLEAR_NONE_AT_EXIT)),
        (tcp(3, LOAD_ID), tcp(3, LOAD_ID_OK)),
        (tcp(4, COMMAND_LOAD), tcp(4, COMMAND_LOAD)),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.load("LOT42-07")


async def test_oven_load_whose_reply_is_lost_is_judged_by_the_belt_count() -> None:
    pairs = [
        (tcp(1, WAFERS_ON_BELT), tcp(1, "04 02 0000")),
        (tcp(2, FLAGS), tcp(2, CLEAR_NONE_AT_EXIT)),
        (tcp(3, LOAD_ID), tcp(3, LOAD_ID_OK)),
        (tcp(4, COMMAND_LOAD), None),  # carried out; the reply is lost
        (tcp(5, WAFERS_ON_BELT), tcp(5, "04 02 0001")),  # one on the belt: it went on
        (tcp(6, FLAGS), tcp(6, "02 01 04")),  # (none at the exit)
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.load("LOT42-07")  # not sent again, not reported as failed


async def test_oven_load_that_did_not_arrive_is_sent_once_more() -> None:
    pairs = [
        (tcp(1, WAFERS_ON_BELT), tcp(1, "04 02 0000")),
        (tcp(2, FLAGS), tcp(2, CLEAR_NONE_AT_EXIT)),
        (tcp(3, LOAD_ID), tcp(3, LOAD_ID_OK)),
        (tcp(4, COMMAND_LOAD), None),  # lost on the way to the oven
        (tcp(5, WAFERS_ON_BELT), tcp(5, "04 02 0000")),  # nothing went on
        (tcp(6, FLAGS), tcp(6, CLEAR_NONE_AT_EXIT)),
        (tcp(7, COMMAND_LOAD), tcp(7, COMMAND_LOAD)),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.load("LOT42-07")


async def test_oven_load_refused_after_a_lost_reply_is_explained() -> None:
    pairs = [
        (tcp(1, WAFERS_ON_BELT), tcp(1, "04 02 0000")),
        (tcp(2, FLAGS), tcp(2, CLEAR_NONE_AT_EXIT)),
        (tcp(3, LOAD_ID), tcp(3, LOAD_ID_OK)),
        (tcp(4, COMMAND_LOAD), None),
        (tcp(5, WAFERS_ON_BELT), tcp(5, "04 02 0000")),  # not on the belt
        (tcp(6, FLAGS), tcp(6, CLEAR_NONE_AT_EXIT)),
        (tcp(7, COMMAND_LOAD), tcp(7, "86 06")),  # refused now
        (tcp(8, WAFERS_ON_BELT), tcp(8, "04 02 0000")),  # and still not on: a real refusal
        (tcp(9, FLAGS), tcp(9, "02 01 04")),
        # _why_refused: the full status
        (tcp(10, "04 0000 000F"),
         tcp(10, "04 1E" + " 0901" * 10 + " 0002 0000 0000 0014 002A")),
        (tcp(11, FLAGS), tcp(11, "02 01 04")),  # entrance NOT clear
        (tcp(12, "01 0000 0002"), tcp(12, "01 01 03")),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        with pytest.raises(DeviceBusy, match=r"oven-1: COMMAND=LOAD \(ENTRANCE_CLEAR = 0\)"):
            await oven.load("LOT42-07")


async def test_oven_unload_whose_reply_is_lost_is_judged_by_the_exit() -> None:
    pairs = [
        (tcp(1, COMMAND_UNLOAD), None),
        (tcp(2, FLAGS), tcp(2, "02 01 05")),  # nothing at the exit: ours was taken
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.unload("LOT42-07")


async def test_oven_unload_still_at_the_exit_after_every_lost_reply_is_a_link_error() -> None:
    at_exit = "04 10 4C4F 5434 322D 3037 0000 0000 0000 0000"  # IR 30-37 = "LOT42-07"
    pairs: list[Pair] = []
    tid = 0
    for _ in range(4):  # retries=3: four attempts, each judged on the oven's word first
        if tid:
            pairs += [(tcp(tid + 1, FLAGS), tcp(tid + 1, "02 01 07")),
                      (tcp(tid + 2, "04 001E 0008"), tcp(tid + 2, at_exit))]
            tid += 2
        pairs.append((tcp(tid + 1, COMMAND_UNLOAD), None))
        tid += 1
    pairs += [(tcp(tid + 1, FLAGS), tcp(tid + 1, "02 01 07")),
              (tcp(tid + 2, "04 001E 0008"), tcp(tid + 2, at_exit))]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        with pytest.raises(LinkError, match="COMMAND=UNLOAD: no reply .* 4 attempts, and the "
                           "tool says it was not done"):
            await oven.unload("LOT42-07")


STATUS_READY_EMPTY = [  # the full status: READY, nothing on the belt, entrance clear
    (tcp(1, "04 0000 000F"), tcp(1, "04 1E" + " 0901" * 10 + " 0002 0000 0000 0014 002A")),
    (tcp(2, FLAGS), tcp(2, "02 01 05")),
    (tcp(3, "01 0000 0002"), tcp(3, "01 01 03")),
]
# IR 20-37 in one read, as the spec's worked example (step 4): peak 240.0 °C, TAL 60.0 s,
# ramp 1.50 °C/s, cooling 2.00 °C/s, profile 42, O2 20 ppm, no flags, IR 27-29 (unlisted)
# 0, then the id "LOT42-07".
EXIT_BLOCK = "04 0014 0012"
EXIT_BLOCK_REPLY = ("04 24 0960 0258 0096 00C8 002A 0014 0000 0000 0000 0000"
                    " 4C4F 5434 322D 3037 0000 0000 0000 0000")


async def test_oven_exit_values_and_id_are_one_read_of_ir_20_to_37() -> None:
    pairs = [(tcp(1, EXIT_BLOCK), tcp(1, EXIT_BLOCK_REPLY))]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        result = await oven.exit_values_of({"LOT42-07"}, left="LOT42-06")
    assert result is not None and result.wafer_id == "LOT42-07"
    assert (result.peak_c, result.tal_s, result.ramp_max_c_s, result.cool_max_c_s) == (
        240.0, 60.0, 1.5, 2.0)
    assert (result.profile_id, result.o2_max_ppm, result.flags) == (42, 20, 0)


EXIT_VALUES = "04 0014 0007"  # IR 20-26, the mapped run before the gap
EXIT_VALUES_REPLY = "04 0E 0960 0258 0096 00C8 002A 0014 0000"
EXIT_ID = "04 001E 0008"  # IR 30-37, the mapped run after it
EXIT_ID_REPLY = "04 10 4C4F 5434 322D 3037 0000 0000 0000 0000"  # "LOT42-07"


async def test_an_oven_refusing_the_read_across_ir_27_to_29_is_read_in_mapped_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    # A conforming oven may keep to "02 outside the map" over the worked example: the
    # driver falls back to the two reads, id first, for good, and says so once.
    pairs = [
        (tcp(1, EXIT_BLOCK), tcp(1, "84 02")),
        (tcp(2, EXIT_VALUES), tcp(2, EXIT_VALUES_REPLY)),  # the fallback, as mapped
        (tcp(3, EXIT_ID), tcp(3, EXIT_ID_REPLY)),
        (tcp(4, EXIT_VALUES), tcp(4, EXIT_VALUES_REPLY)),  # read after the id said so
        (tcp(5, EXIT_ID), tcp(5, EXIT_ID_REPLY)),  # the next wafer: two reads at once
        (tcp(6, EXIT_VALUES), tcp(6, EXIT_VALUES_REPLY)),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        for _ in range(2):
            result = await oven.exit_values_of({"LOT42-07"}, left="LOT42-06")
            assert result is not None and result.wafer_id == "LOT42-07"
            assert (result.peak_c, result.profile_id, result.o2_max_ppm) == (240.0, 42, 20)
    refusals = [r for r in caplog.records if "unmapped addresses refused" in r.getMessage()]
    assert len(refusals) == 1


async def test_oven_exit_result_falls_back_to_mapped_runs_on_exception_02() -> None:
    pairs = [
        (tcp(1, EXIT_BLOCK), tcp(1, "84 02")),
        (tcp(2, EXIT_VALUES), tcp(2, EXIT_VALUES_REPLY)),
        (tcp(3, EXIT_ID), tcp(3, EXIT_ID_REPLY)),
        (tcp(4, "04 0063 007D"), tcp(4, "04 FA 0000" + " 0000" * 124)),  # no curve
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        result = await oven.exit_result()
    assert result.wafer_id == "LOT42-07" and result.peak_c == 240.0 and result.curve_c == ()


async def test_oven_exit_showing_the_wafer_taken_off_last_asks_wafer_at_exit() -> None:
    pairs = [
        (tcp(1, EXIT_BLOCK), tcp(1, EXIT_BLOCK_REPLY)),  # the id of the wafer left last
        (tcp(2, FLAGS), tcp(2, "02 01 05")),  # WAFER_AT_EXIT = 0: not there again
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        assert await oven.exit_values_of({"LOT42-07"}, left="LOT42-07") is None


async def test_oven_load_after_a_status_uses_its_belt_count_and_carries_it() -> None:
    # The status just read says 0 on the belt (with the exit empty after it: the count is
    # the same in either counting model) and nothing moved since: LOAD is id then command;
    # the next LOAD knows 1, then after our UNLOAD 1 again, with no read.
    pairs = [
        *STATUS_READY_EMPTY,
        (tcp(4, LOAD_ID), tcp(4, LOAD_ID_OK)),
        (tcp(5, COMMAND_LOAD), tcp(5, COMMAND_LOAD)),
        (tcp(6, LOAD_ID), tcp(6, LOAD_ID_OK)),
        (tcp(7, COMMAND_LOAD), None),  # reply lost: judged by the count carried, 1 + 1
        (tcp(8, WAFERS_ON_BELT), tcp(8, "04 02 0002")),
        (tcp(9, FLAGS), tcp(9, "02 01 04")),
        (tcp(10, COMMAND_UNLOAD), tcp(10, COMMAND_UNLOAD)),
        (tcp(11, LOAD_ID), tcp(11, LOAD_ID_OK)),
        (tcp(12, COMMAND_LOAD), None),  # lost again: 2 - 1 + 1 means it went on
        (tcp(13, WAFERS_ON_BELT), tcp(13, "04 02 0002")),
        (tcp(14, FLAGS), tcp(14, "02 01 04")),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        assert (await oven.status()).wafers_on_belt == 0
        await oven.load("LOT42-07")
        await oven.load("LOT42-07")
        await oven.unload("LOT42-06")
        await oven.load("LOT42-07")


async def test_oven_load_named_first_sends_the_command_alone() -> None:
    # The step names the wafer before journalling the LOAD's intent; LOAD is then the
    # command alone (the count and the exit read, as none is known).
    pairs = [
        (tcp(1, LOAD_ID), tcp(1, LOAD_ID_OK)),
        (tcp(2, WAFERS_ON_BELT), tcp(2, "04 02 0000")),
        (tcp(3, FLAGS), tcp(3, CLEAR_NONE_AT_EXIT)),
        (tcp(4, COMMAND_LOAD), tcp(4, COMMAND_LOAD)),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.name_load("LOT42-07")
        await oven.load("LOT42-07", named=True)


async def test_oven_belt_count_is_read_again_after_a_failed_unload() -> None:
    pairs = [
        *STATUS_READY_EMPTY,
        (tcp(4, COMMAND_UNLOAD), tcp(4, "86 03")),  # refused for good: count not known
        (tcp(5, WAFERS_ON_BELT), tcp(5, "04 02 0001")),
        (tcp(6, FLAGS), tcp(6, CLEAR_NONE_AT_EXIT)),
        (tcp(7, LOAD_ID), tcp(7, LOAD_ID_OK)),
        (tcp(8, COMMAND_LOAD), tcp(8, COMMAND_LOAD)),
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        await oven.status()
        with pytest.raises(ToolError):
            await oven.unload("LOT42-06")
        await oven.load("LOT42-07")


# --- cleaner (Modbus RTU, unit 2) ----------------------------------------------------------------

COMMAND_START = "06 0005 0002"  # HR 5 = 2
STATE = "04 0000 0001"  # IR 0


async def test_cleaner_start_whose_reply_is_lost_is_judged_by_its_state() -> None:
    pairs = [
        (rtu(COMMAND_START), None),  # carried out; the reply is lost
        (rtu(STATE), rtu("04 02 0003")),  # WASHING: it started
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.start()


async def test_cleaner_start_that_did_not_arrive_is_sent_once_more() -> None:
    pairs = [
        (rtu(COMMAND_START), None),
        (rtu(STATE), rtu("04 02 0002")),  # still LOADED: it never arrived
        (rtu(COMMAND_START), rtu(COMMAND_START)),
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.start()


async def test_cleaner_start_refused_is_explained_with_the_bath() -> None:
    pairs = [
        # 06 to a command: the cleaner's refusal, not a busy tool: reported at once, not
        # sent again (nothing was lost, nothing to probe), and explained
        (rtu(COMMAND_START), rtu("86 06")),
        (rtu(STATE), rtu("04 02 0002")),  # LOADED
        # status(): process values (IR 0-4), then the inputs (DI 0-3)
        (rtu("04 0000 0005"), rtu("04 0A 0002 01F4 0096 0000 0000")),  # bath 50.0 °C
        (rtu("02 0000 0004"), rtu("02 01 01")),
        (rtu("03 0000 0001"), rtu("03 02 0258")),  # WASH_TEMP_SP 60.0 °C
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        with pytest.raises(DeviceBusy, match=r"COMMAND=START \(state LOADED, bath 50.0 °C vs "
                           r"setpoint 60.0 °C\)"):
            await cleaner.start()


async def test_cleaner_wait_for_returns_the_status() -> None:
    pairs = [
        (rtu("04 0000 0005"), rtu("04 0A 0006 0258 0096 0000 0000")),  # DONE
        (rtu("04 0000 0005"), rtu("04 0A 0006 0258 0096 0000 0000")),  # status(): values
        (rtu("02 0000 0004"), rtu("02 01 01")),  # ... and inputs: wafer present
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        status = await cleaner.wait_for(CleanerState.DONE, timeout_s=60)
    assert status.state is CleanerState.DONE and status.wafer_present and status.wash_temp_c == 60.0


async def test_a_script_the_driver_leaves_unfinished_fails_the_test() -> None:
    script = ExpectedExchanges([(rtu(STATE), rtu("04 02 0000")), (rtu(STATE), None)])
    assert script(rtu(STATE)) == rtu("04 02 0000")
    with pytest.raises(AssertionError, match="never sent"):
        script.assert_used_up()
    with pytest.raises(AssertionError, match="request 2: sent"):
        script(rtu(COMMAND_START))


# The handover after a clean: its DONE read, the result, our UNLOAD; the next status.
RECIPE_READ = (rtu("03 0000 0005"), rtu("03 0A 0258 0078 003C 003C 001E"))  # 60.0 °C, ...
DONE_READ = (rtu("04 0000 0007"),  # DONE, bath 60.1 °C, 15.0 MΩ·cm, 0 s, no alarm, 0.50, OK
             rtu("04 0E 0006 0259 0096 0000 0000 0032 0001"))
RESULT_ID = [  # RESULT_WAFER_ID alone: a step needs no CYCLE_COUNT (IR 20-21)
    (rtu("04 000A 0008"), rtu("04 10 4C4F 5434 322D 3037 0000 0000 0000 0000")),
]
COMMAND_UNLOAD_FC = "06 0005 0003"  # HR 5 = 3
INPUTS = "02 0000 0004"  # DI 0-3


async def test_a_cleaner_result_id_padded_with_blanks_is_the_wafer_id() -> None:
    # flux-cleaner.md gives RESULT_WAFER_ID as "16 chars" and no padding: a tool may fill
    # the field with spaces where we write NULs.
    pairs = [
        (rtu("04 0005 0002"), rtu("04 04 0032 0001")),  # 0.50 µg/cm², OK
        (rtu("04 000A 0008"), rtu("04 10 4C4F 5434 322D 3037 2020 2020 2020 2020")),
        (rtu("04 0014 0002"), rtu("04 04 0000 0007")),  # CYCLE_COUNT 7
    ]
    async with expected_exchanges(FluxCleaner, pairs, framer="rtu", unit=2,
                                  tool="cleaner-1") as cleaner:
        result = await cleaner.result()
    assert (result.wafer_id, result.cycle_count) == ("LOT42-07", 7)


async def test_cleaner_status_after_our_unload_of_a_clean_reads_only_the_inputs() -> None:
    pairs = [
        RECIPE_READ, DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu(INPUTS), rtu("02 01 00")),  # no wafer, chemistry and DI water fine, door shut
        # the next status reads everything again: the known state stands for one
        (rtu("04 0000 0005"), rtu("04 0A 0001 0259 0096 0000 0000")),
        (rtu(INPUTS), rtu("02 01 00")),
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.recipe()
        result = await cleaner.wait_result(timeout_s=60)
        assert (result.wafer_id, result.cycle_count) == ("LOT42-07", None)
        await cleaner.unload()
        status = await cleaner.status()  # READY: the spec's UNLOAD with the bath in band
        assert status.state is CleanerState.READY and status.wash_temp_c == 60.1
        assert not status.wafer_present and not status.door_open and status.alarm_code == 0
        assert (await cleaner.status()).state is CleanerState.READY


async def test_cleaner_status_after_unload_reads_all_when_not_known_or_the_door_says_more() -> None:
    pairs = [
        # no setpoint known (no recipe read or written): UNLOAD says nothing of READY
        DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu("04 0000 0005"), rtu("04 0A 0001 0259 0096 0000 0000")),
        (rtu(INPUTS), rtu("02 01 00")),
        # known, but a wafer shows in the chamber: not as UNLOAD leaves it, read it all
        RECIPE_READ, DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu(INPUTS), rtu("02 01 09")),  # wafer present, door open
        (rtu("04 0000 0005"), rtu("04 0A 0007 0259 0096 0000 0190")),  # ALARM 400
        (rtu(INPUTS), rtu("02 01 09")),
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.wait_result(timeout_s=60)
        await cleaner.unload()
        assert (await cleaner.status()).state is CleanerState.READY
        await cleaner.recipe()
        await cleaner.wait_result(timeout_s=60)
        await cleaner.unload()
        status = await cleaner.status()
        assert status.state is CleanerState.ALARM and status.alarm_code == 400
        assert status.door_open


async def test_cleaner_status_long_after_our_unload_reads_all() -> None:
    pairs = [
        RECIPE_READ, DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu("04 0000 0005"), rtu("04 0A 0000 0230 0096 0000 0000")),  # IDLE: bath 56.0 °C
        (rtu(INPUTS), rtu("02 01 00")),
    ]
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.recipe()
        await cleaner.wait_result(timeout_s=60)
        await cleaner.unload()
        cleaner.clock.advance(KNOWN_FOR_S + 1)  # the DONE read is too old to stand for now
        assert (await cleaner.status()).state is CleanerState.IDLE


async def test_a_reflow_interlock_check_reads_process_values_and_coils_not_the_inputs() -> None:
    # A LOAD's interlocks: IR 0-14 (state, belt, alarm, O2, profile) and the coils (N2_ON,
    # CONVEYOR_RUN). No DI 0-3: ENTRANCE_CLEAR is the entrance timing's, the oven refuses a
    # LOAD it cannot take, and ALARM_ACTIVE repeats ALARM_CODE and STATE.
    pairs = [
        (tcp(1, "04 0000 000F"),
         tcp(1, "04 1E" + " 0901" * 10 + " 0003 0001 0000 0014 002A")),  # PROCESSING, 1 on belt
        (tcp(2, "01 0000 0002"), tcp(2, "01 01 03")),  # N2 on, belt running
    ]
    async with expected_exchanges(ReflowOven, pairs, framer="tcp", unit=1, tool="oven-1") as oven:
        status = await wait_free(REFLOW, oven, "LOT42-07", oven.clock, 60.0)
    assert status.state is OvenState.PROCESSING and status.wafers_on_belt == 1
    assert status.nitrogen_on and status.conveyor_running and status.active_profile_id == 42
    assert not hasattr(status, "entrance_clear")


async def test_cleaner_status_within_the_baths_drift_bound_after_our_unload_reads_the_inputs(
) -> None:
    # 40 tool s after the DONE read: the bath, 0.1 °C off, cannot have cooled out of START's
    # ±2 °C band (KNOWN_FOR_S, 50 s at twice the spec's cooling rate): the inputs alone.
    pairs = [
        RECIPE_READ, DONE_READ, *RESULT_ID,
        (rtu(COMMAND_UNLOAD_FC), rtu(COMMAND_UNLOAD_FC)),
        (rtu(INPUTS), rtu("02 01 00")),
    ]
    assert KNOWN_FOR_S >= 40
    async with expected_exchanges(
        FluxCleaner, pairs, framer="rtu", unit=2, tool="cleaner-1"
    ) as cleaner:
        await cleaner.recipe()
        await cleaner.wait_result(timeout_s=60)
        await cleaner.unload()
        cleaner.clock.advance(40)
        assert (await cleaner.status()).state is CleanerState.READY

"""PastePrinter: byte-exact against the spec's golden frames, then every command, NAK and
alarm path against the simulated WP-300 over a pty and over TCP (or the real printer
with --line-config). The link rules under faults: test_printer_link.py."""

from __future__ import annotations

import pytest
from serial_fixtures import HeldClock, RigFactory, ToolRig, scripted_tool

from controller.console import PRINTER_COMMANDS as CONSOLE_COMMANDS
from controller.console import ConsoleUsageError, run_command
from drivers.errors import (
    AlarmActive,
    BadParameter,
    InterlockActive,
    LinkError,
    ToolAlarm,
    ToolTimeout,
    UnknownCommand,
    WrongState,
)
from drivers.hostlink import encode_reply, encode_request, parse_request
from drivers.hostlink_tool import KNOWN_FOR_S
from drivers.printer import PastePrinter
from drivers.serial_link import HostLinkPort
from drivers.types import (
    Alarm,
    Identity,
    PrinterState,
    PrinterStatus,
    PrintRecipe,
    PrintResult,
    RunStatus,
)
from sim.clock import ManualClock

# a printer driver on a simulated WP-300 over pty and TCP (or the real one)

S = PrinterState
PATIENCE_S = 36_000.0  # tool seconds: bounds the fault-injection waits without ever biting
GOLDEN_RECIPE = PrintRecipe("HIPB-1", 6.0, 40, 1.0, "ST-300-100", 1, 20)

# --- byte for byte against the golden frames of hostlink.md and paste-printer.md ----------------

# host frame -> tool frame, exactly as printed in the specs
GOLDEN = {
    b"$07,IDN*68": b"$07,ACK,IDN,ACME-PRINT,WP-300,SN1042,2.4.1*4F",
    b"$08,STS*70": b"$08,ACK,STS,IDLE,,0,12,87.5,ST-300-100,Pb95Sn5*29",
    b"$09,RCP,HIPB-1,6.0,40,1.0,ST-300-100,1,20*72": b"$09,ACK,RCP*01",
    b"$10,LOD,LOT42-07*3D": b"$10,ACK,LOD*0F",
    b"$11,PRT*7A": b"$11,ACK,PRT*1F",
    encode_request(12, "RES").rstrip(): b"$12,ACK,RES,LOT42-07,OK,98.6,81.2,117.9,0,0*71",
    b"$13,PRT*78": b"$13,NAK,PRT,04,WRONG STATE*20",
    b"$14,FOO*6F": b"$14,NAK,FOO,02,UNKNOWN COMMAND*2A",
    b"$15,RCP,HIPB-1,12.0,40,1.0,ST-300-100,1,20*4A": b"$15,NAK,RCP,03,BAD PARAMETER*2C",
    b"$16,CHG,ST-300-080,Sn63Pb37*65": b"$16,ACK,CHG*02",
    b"$17,ALR*75": b"$17,ACK,ALR,102,PASTE EMPTY*05",
    b"$18,ALR*7A": b"$18,ACK,ALR,0,*2F",
}


def golden_tool(frame: bytes) -> bytes | None:
    if frame.rstrip() in GOLDEN:
        return GOLDEN[frame.rstrip()] + b"\r\n"
    req = parse_request(frame)
    if req.seq < 7 and req.cmd == "STS":  # lead-in up to the first golden SEQ
        return encode_reply(req.seq, "STS", ["IDLE", "", "0", "0", "100.0", "ST-1", "Pb95Sn5"])
    return None  # anything else: silence, so the test fails with a LinkError


async def test_printer_speaks_the_golden_frames_byte_for_byte() -> None:
    async with scripted_tool(golden_tool) as (tool, url):
        async with HostLinkPort(
            url, tool="printer-1", timeout_s=0.1, retries=0, sync=False,
        ) as port:
            p = PastePrinter(port, ManualClock())  # type: ignore[arg-type]
            for _ in range(7):
                await p.status()
            assert await p.identify() == Identity("ACME-PRINT", "WP-300", "SN1042", "2.4.1")
            assert await p.status() == PrinterStatus(
                S.IDLE, None, 0, 12, 87.5, "ST-300-100", "Pb95Sn5"
            )
            await p.set_recipe(GOLDEN_RECIPE)
            await p.load("LOT42-07")
            await p.start_print()
            assert await p.result() == PrintResult(
                "LOT42-07", RunStatus.OK, 98.6, 81.2, 117.9, 0, 0
            )
            with pytest.raises(WrongState) as wrong_state:
                await p.start_print()
            with pytest.raises(UnknownCommand):
                await port.request("FOO")
            with pytest.raises(BadParameter) as bad:
                await p.set_recipe(PrintRecipe("HIPB-1", 12.0, 40.0, 1.0, "ST-300-100", 1, 20))
            await p.changeover("ST-300-080", "Sn63Pb37")
            assert await p.alarm() == Alarm(102, "PASTE EMPTY")
            assert await p.alarm() is None
    assert [f.rstrip() for f in tool.requests[7:]] == list(GOLDEN)
    assert str(wrong_state.value) == "printer-1: PRT refused: NAK 04 WRONG STATE"
    assert (bad.value.code, bad.value.command) == (3, "RCP")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["IDLE", "", "0", "12", "87.5"], r"STS reply has 5 fields, expected 7 \(state, wafer_id"),
        (["SLEEPING", "", "0", "1", "8", "S", "P"], r"field state: expected IDLE\|.*'SLEEPING'"),
        (["IDLE", "", "x", "12", "87.5", "ST", "Pb"], r"field alarm_code: expected a whole number"),
        (["IDLE", "", "0", "-1", "87.5", "ST", "Pb"], r"field prints_since_wipe: expected a whole"),
        (["IDLE", "", "0", "12", "nan", "ST", "Pb"], r"field paste_level_pct: expected a number"),
    ],
)
async def test_unexpected_status_fields_are_a_clear_link_error(
    fields: list[str], message: str
) -> None:
    def reply(frame: bytes) -> bytes:
        return encode_reply(parse_request(frame).seq, "STS", fields)

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=0.1) as port:
            printer = PastePrinter(port, ManualClock())  # type: ignore[arg-type]
            with pytest.raises(LinkError, match=message) as info:
                await printer.status()
            with pytest.raises(LinkError, match=message):  # not kept as decoded: again
                await printer.status()
    assert str(info.value).startswith("printer-1: STS reply ")


async def test_a_status_repeated_or_changed_reads_as_the_tool_says() -> None:
    # Decoded fields are kept per reply text (a tool at rest repeats its STS): the same
    # text gives an equal status, a changed one its own values.
    answers = [["IDLE", "", "0", "12", "87.5", "ST", "Pb"]] * 2 + [
        ["ALARM", "", "400", "12", "87.5", "ST", "Pb"]]

    def reply(frame: bytes) -> bytes:
        return encode_reply(parse_request(frame).seq, "STS", answers.pop(0))

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=0.1) as port:
            printer = PastePrinter(port, ManualClock())  # type: ignore[arg-type]
            first, second, third = [await printer.status() for _ in range(3)]
    assert first == second and first.state is PrinterState.IDLE and first.alarm_code == 0
    assert (third.state, third.alarm_code) == (PrinterState.ALARM, 400)


async def test_unexpected_result_status_is_a_clear_link_error() -> None:
    fields = ["W1", "MAYBE", "98.6", "81.2", "117.9", "0", "0"]
    def reply(frame: bytes) -> bytes:
        return encode_reply(parse_request(frame).seq, "RES", fields)

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=0.1) as port:
            with pytest.raises(LinkError, match=r"RES reply field status: expected OK\|ABORTED"):
                await PastePrinter(port, ManualClock()).result()  # type: ignore[arg-type]


def ack_anything(frame: bytes) -> bytes:
    req = parse_request(frame)
    return encode_reply(req.seq, req.cmd)


async def test_console_commands_parse_arguments_into_the_right_frames() -> None:
    async with scripted_tool(ack_anything) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="printer-1", timeout_s=0.1) as port:
            p = PastePrinter(port, ManualClock())  # type: ignore[arg-type]
            args = ["HIPB-1", "6", "40", "1", "ST-300-100", "1", "20"]
            assert await run_command(CONSOLE_COMMANDS, p, "recipe", args) is None
            await run_command(CONSOLE_COMMANDS, p, "changeover", ["ST-300-080", "Sn63Pb37"])
            await run_command(CONSOLE_COMMANDS, p, "load", ["LOT42-07"])
            for name in ("print", "unload", "wipe", "fill", "clear", "abort"):
                await run_command(CONSOLE_COMMANDS, p, name, [])
            with pytest.raises(ConsoleUsageError, match="PASSES: expected a whole number, got 'a'"):
                await run_command(CONSOLE_COMMANDS, p, "recipe", [*args[:5], "a", "20"])
            with pytest.raises(ConsoleUsageError, match="SQUEEGEE_KGF: expected a number, got 'x'"):
                await run_command(CONSOLE_COMMANDS, p, "recipe", [args[0], "x", *args[2:]])
            with pytest.raises(ConsoleUsageError, match=r"usage: load WAFER_ID \(expected 1"):
                await run_command(CONSOLE_COMMANDS, p, "load", [])
            with pytest.raises(ConsoleUsageError, match="usage: print"):
                await run_command(CONSOLE_COMMANDS, p, "print", ["now"])
            with pytest.raises(ConsoleUsageError, match="STATE: expected one of IDLE, CHANGEOVER"):
                await run_command(CONSOLE_COMMANDS, p, "wait", ["SLEEPING"])
            with pytest.raises(ConsoleUsageError, match="unknown command 'place'.*: status"):
                await run_command(CONSOLE_COMMANDS, p, "place", [])
    assert [parse_request(f).cmd for f in tool.requests] == [
        "RCP", "CHG", "LOD", "PRT", "ULD", "WPE", "FIL", "CLR", "ABT",
    ]
    assert tool.requests[0] == encode_request(0, "RCP", ["HIPB-1", "6.0", "40", "1.0",
                                                         "ST-300-100", "1", "20"])


def test_console_has_a_command_for_every_tool_command() -> None:
    names = {c.name for c in CONSOLE_COMMANDS}
    assert names == {
        "status", "identify", "alarm", "clear", "abort", "recipe", "changeover", "load", "print",
        "result", "unload", "wipe", "fill", "wait",
    }
    assert all(c.usage.startswith(c.name) and c.help for c in CONSOLE_COMMANDS)


# --- against the simulated WP-300 (or the real one) ---------------------------------------------


async def recipe_for(p: PastePrinter, *, passes: int = 1, wipe_every: int = 20) -> PrintRecipe:
    status = await p.status()
    return PrintRecipe("HIPB-1", 6.0, 40, 1.0, status.stencil_id, passes, wipe_every)


async def print_one_wafer(p: PastePrinter, wafer_id: str, *, wipe_every: int = 20) -> PrintResult:
    # generous tool-time limits: a lost reply costs a wall-clock timeout, which is
    # hundreds of tool seconds at the simulator's time scale
    await p.set_recipe(await recipe_for(p, wipe_every=wipe_every))
    await p.load(wafer_id)
    assert (await p.wait_for(S.READY, timeout_s=PATIENCE_S)).wafer_id == wafer_id
    await p.start_print()
    await p.wait_for(S.DONE, timeout_s=PATIENCE_S)
    result = await p.result()
    await p.unload()
    assert (await p.wait_for(S.IDLE, timeout_s=PATIENCE_S)).wafer_id is None
    return result


async def test_identify_and_idle_status(printer: ToolRig) -> None:
    p = printer.driver
    assert p.name == printer.port.tool
    ident = await p.identify()
    assert (ident.vendor, ident.model) == ("ACME-PRINT", "WP-300")
    status = await p.status()
    assert status.state is S.IDLE and status.wafer_id is None and status.alarm_code == 0
    assert 0.0 <= status.paste_level_pct <= 100.0
    assert await p.alarm() is None


async def test_full_print_cycle(printer: ToolRig) -> None:
    before = await printer.driver.status()
    result = await print_one_wafer(printer.driver, "LOT42-07", wipe_every=0)
    assert result.wafer_id == "LOT42-07" and result.status is RunStatus.OK
    assert result.vol_min_pct <= result.vol_mean_pct <= result.vol_max_pct
    if printer.simulated:  # the tool's own count: printed exactly once
        assert printer.model.prints_executed == 1
    after = await printer.driver.status()
    assert after.prints_since_wipe == before.prints_since_wipe + 1
    assert after.paste_level_pct == pytest.approx(before.paste_level_pct - 0.4)


async def test_the_status_straight_after_our_uld_and_idle_is_that_read_once(
    printer: ToolRig,
) -> None:
    """The next wafer's interlock check right after our ULD and the wait for IDLE asks
    no STS of its own; a second look, or one after any other command, does."""
    p = printer.driver
    p.clock = clock = HeldClock(p.clock)  # the driver's time stands still: "straight after"

    def sts() -> int:
        return sum(b",STS*" in f for f in printer.sent())

    await print_one_wafer(p, "W-REST", wipe_every=0)  # ends with ULD, wait_for IDLE
    before = sts()
    status = await p.status()
    assert status.state is S.IDLE and status.wafer_id is None and sts() == before
    assert (await p.status()).state is S.IDLE and sts() == before + 1
    # a read at rest older than KNOWN_FOR_S stands for nothing: the next look is an STS
    await p.wait_for(S.IDLE, timeout_s=PATIENCE_S)
    clock.advance(KNOWN_FOR_S + 1)
    assert (await p.status()).state is S.IDLE and sts() == before + 3
    await p.wait_for(S.IDLE, timeout_s=PATIENCE_S)
    await p.wipe()  # a command between: the tool is not as that read left it
    assert (await p.status()).state is S.WIPING and sts() == before + 5


async def test_changeover_then_a_new_recipe_is_needed(printer: ToolRig) -> None:
    p = printer.driver
    old = await recipe_for(p)
    await p.set_recipe(old)
    # always a real change, whichever stencil the tool has now
    stencil, alloy = ("ST-300-080", "Sn63Pb37")
    if old.stencil_id == stencil:
        stencil, alloy = ("ST-300-100", "Pb95Sn5")
    await p.changeover(stencil, alloy)
    assert (await p.status()).state is S.CHANGEOVER
    status = await p.wait_for(S.IDLE, timeout_s=PATIENCE_S)
    assert (status.stencil_id, status.paste_alloy, status.prints_since_wipe) == (stencil, alloy, 0)
    with pytest.raises(WrongState):
        await p.load("W1")  # CHG cleared the recipe
    with pytest.raises(BadParameter):  # the old stencil is no longer mounted
        await p.set_recipe(old)
    await p.set_recipe(await recipe_for(p))
    await p.load("W1")
    await p.wait_for(S.READY, timeout_s=120)
    await p.abort()
    await p.unload()
    await p.wait_for(S.IDLE, timeout_s=120)


async def test_wipe_and_fill(printer: ToolRig) -> None:
    p = printer.driver
    await print_one_wafer(p, "W1")
    await p.wipe()
    assert (await p.status()).state is S.WIPING
    assert (await p.wait_for(S.IDLE, timeout_s=60)).prints_since_wipe == 0
    await p.fill()
    assert (await p.status()).state is S.FILLING
    assert (await p.wait_for(S.IDLE, timeout_s=300)).paste_level_pct == 100.0


async def test_a_refill_over_a_wafer_ends_in_done(printer: ToolRig) -> None:
    """paste-printer.md: FIL clears alarm 102; with a wafer inside the tool then is in DONE
    (RES status ALARM), so a wait for DONE during FILLING waits rather than giving up."""
    p = printer.driver
    printer.model.paste_tenths = 0  # an empty cartridge
    await p.set_recipe(await recipe_for(p))
    await p.load("W1")
    await p.wait_for(S.READY, timeout_s=PATIENCE_S)
    await p.start_print()  # taken, then alarm 102: the wafer stays unprinted
    assert (await p.alarm()).code == 102
    await p.fill()
    assert (await p.status()).state is S.FILLING
    assert (await p.wait_for(S.DONE, timeout_s=300)).wafer_id == "W1"
    assert (await p.result()).status == "ALARM"


async def test_unload_wipes_first_when_due(printer: ToolRig) -> None:
    p = printer.driver
    await p.set_recipe(await recipe_for(p, wipe_every=1))
    await p.load("W1")
    await p.wait_for(S.READY, timeout_s=120)
    await p.start_print()
    await p.wait_for(S.DONE, timeout_s=300)
    await p.unload()
    assert (await p.wait_for(S.WIPING, S.IDLE, timeout_s=60)).state is S.WIPING
    assert (await p.wait_for(S.IDLE, timeout_s=120)).prints_since_wipe == 0


async def test_abort_while_printing_leaves_the_wafer_done_and_aborted(printer: ToolRig) -> None:
    p = printer.driver
    await p.set_recipe(await recipe_for(p, passes=3))
    await p.load("W-ABT")
    await p.wait_for(S.READY, timeout_s=120)
    await p.start_print()
    await p.abort()
    status = await p.status()
    assert (status.state, status.wafer_id) == (S.DONE, "W-ABT")
    result = await p.result()
    assert (result.wafer_id, result.status) == ("W-ABT", RunStatus.ABORTED)
    await p.unload()
    await p.wait_for(S.IDLE, timeout_s=60)


async def test_abort_without_a_wafer_is_idle(printer: ToolRig) -> None:
    await printer.driver.abort()
    assert (await printer.driver.status()).state is S.IDLE


async def test_nak_02_unknown_command(printer: ToolRig) -> None:
    with pytest.raises(UnknownCommand) as info:
        await printer.port.request("FOO")
    assert (info.value.code, info.value.text) == (2, "UNKNOWN COMMAND")


async def test_nak_03_bad_parameter(printer: ToolRig) -> None:
    p = printer.driver
    stencil = (await p.status()).stencil_id
    with pytest.raises(BadParameter) as info:
        await p.set_recipe(PrintRecipe("HIPB-1", 12.0, 40, 1.0, stencil, 1, 20))
    assert (info.value.code, info.value.text) == (3, "BAD PARAMETER")
    with pytest.raises(BadParameter):
        await p.set_recipe(PrintRecipe("HIPB-1", 6.0, 40, 1.0, stencil, 4, 20))


async def test_nak_04_wrong_state(printer: ToolRig) -> None:
    p = printer.driver
    for call in (p.start_print, p.result, p.unload, p.clear_alarm):
        with pytest.raises(WrongState) as info:
            await call()
        assert info.value.text == "WRONG STATE"


@pytest.mark.faults
async def test_nak_05_alarm_active_and_clear(printer: ToolRig) -> None:
    p = printer.driver
    printer.model.raise_alarm(300, printer.now())
    with pytest.raises(AlarmActive) as info:
        await p.set_recipe(await recipe_for(p))
    assert (info.value.code, info.value.command) == (5, "RCP")
    assert await p.alarm() == Alarm(300, "SQUEEGEE PRESSURE FAULT")
    assert (await p.wait_for(S.ALARM, timeout_s=1)).alarm_code == 300
    await p.clear_alarm()
    assert (await p.status()).state is S.IDLE and await p.alarm() is None


@pytest.mark.faults
async def test_nak_06_interlock_door_open(printer: ToolRig) -> None:
    p = printer.driver
    printer.model.open_door(printer.now())
    with pytest.raises(InterlockActive) as info:
        await p.wipe()
    assert info.value.code == 6
    assert await p.alarm() == Alarm(400, "DOOR OPEN")
    with pytest.raises(WrongState):
        await p.clear_alarm()  # the door is still open
    printer.model.close_door(printer.now())
    await p.clear_alarm()
    await p.wipe()


@pytest.mark.faults
async def test_nak_01_damaged_request_is_retransmitted(line_config_path: str | None) -> None:
    printer_line = RigFactory("printer", "pty", line_config_path)  # the relay sits on a pty
    damaged: list[bytes] = []

    def damage_first_prt(frame: bytes) -> bytes:
        if b",PRT*" in frame and not damaged:
            damaged.append(frame)
            last = b"0" if frame[-3:-2] != b"0" else b"1"
            return frame[:-3] + last + b"\r\n"  # one damaged checksum digit
        return frame

    async with printer_line(noise=damage_first_prt) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p))
        await p.load("W1")
        await p.wait_for(S.READY, timeout_s=120)
        await p.start_print()
        assert (await p.status()).state is S.PRINTING
        assert rig.model.prints_executed == 1
    assert damaged
    prt = [f for f in rig.sent() if b",PRT*" in f]
    assert prt == [damaged[0], damaged[0]]  # the identical frame, same SEQ
    assert any(b",NAK,PRT,01,CHECKSUM*" in f for f in rig.received())
    assert rig.port.retransmissions == 1


@pytest.mark.faults
async def test_alarm_while_printing_raises_tool_alarm_then_result_is_alarm(
    printer_line: RigFactory,
) -> None:
    from sim.faults import FaultPlan, ScheduledAlarm

    plan = FaultPlan(alarms=[ScheduledAlarm(300, at_wafer=1)])
    async with printer_line(faults=plan) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p))
        await p.load("W-ALM")
        await p.wait_for(S.READY, timeout_s=120)
        await p.start_print()
        with pytest.raises(ToolAlarm) as info:
            await p.wait_for(S.DONE, timeout_s=300)
        assert (info.value.code, info.value.text) == (300, "SQUEEGEE PRESSURE FAULT")
        assert info.value.tool == "printer-1"
        await p.clear_alarm()
        status = await p.status()
        assert (status.state, status.wafer_id) == (S.DONE, "W-ALM")
        assert (await p.result()).status is RunStatus.ALARM
        await p.unload()
        await p.wait_for(S.IDLE, timeout_s=60)


@pytest.mark.faults
async def test_alignment_failure_during_load(printer_line: RigFactory) -> None:
    from sim.faults import FaultPlan, ScheduledAlarm

    async with printer_line(faults=FaultPlan(alarms=[ScheduledAlarm(210, at_wafer=1)])) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p))
        await p.load("W-210")
        with pytest.raises(ToolAlarm, match="alarm 210 ALIGNMENT FAILED"):
            await p.wait_for(S.READY, timeout_s=120)
        with pytest.raises(AlarmActive):
            await p.start_print()
        await p.clear_alarm()
        status = await p.status()
        assert (status.state, status.wafer_id) == (S.DONE, "W-210")  # the host decides
        await p.unload()
        await p.wait_for(S.IDLE, timeout_s=60)


@pytest.mark.faults
async def test_emergency_stop_while_loading(printer: ToolRig) -> None:
    p = printer.driver
    await p.set_recipe(await recipe_for(p))
    await p.load("W-900")
    printer.model.press_estop(printer.now())
    with pytest.raises(ToolAlarm) as info:
        await p.wait_for(S.READY, timeout_s=120)
    assert (info.value.code, info.value.text) == (900, "EMERGENCY STOP")
    with pytest.raises(WrongState):
        await p.clear_alarm()  # still pressed
    with pytest.raises(InterlockActive):
        await p.unload()
    printer.model.release_estop(printer.now())
    await p.clear_alarm()
    assert (await p.status()).state is S.DONE


@pytest.mark.faults
async def test_paste_empty_is_cleared_by_fill(printer_line: RigFactory) -> None:
    async with printer_line(model_args={"paste_level_pct": 0.0}) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p))
        await p.load("W-102")
        await p.wait_for(S.READY, timeout_s=120)
        await p.start_print()  # ACKed, then the tool refuses to print: alarm 102
        with pytest.raises(ToolAlarm, match="alarm 102 PASTE EMPTY"):
            await p.wait_for(S.DONE, timeout_s=300)
        with pytest.raises(WrongState):
            await p.clear_alarm()  # only FIL clears an empty cartridge
        await p.fill()
        status = await p.wait_for(S.DONE, S.IDLE, timeout_s=300)
        assert status.paste_level_pct == 100.0 and rig.model.prints_executed == 0


@pytest.mark.faults
async def test_stencil_clogged_after_too_many_prints(printer_line: RigFactory) -> None:
    async with printer_line(model_args={"prints_since_wipe": 61}) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p, wipe_every=0))
        await p.load("W-220")
        await p.wait_for(S.READY, timeout_s=120)
        await p.start_print()
        with pytest.raises(ToolAlarm, match="alarm 220 STENCIL CLOGGED"):
            await p.wait_for(S.DONE, timeout_s=300)
        await p.clear_alarm()
        await p.unload()
        await p.wait_for(S.IDLE, timeout_s=60)
        await p.wipe()
        assert (await p.wait_for(S.IDLE, timeout_s=60)).prints_since_wipe == 0


async def test_wait_for_times_out_in_tool_time(printer: ToolRig) -> None:
    await printer.driver.fill()  # FILLING 120 s, then IDLE
    with pytest.raises(ToolTimeout, match=r"not IDLE after 10 s \(tool time\); still FILLING"):
        await printer.driver.wait_for(S.IDLE, timeout_s=10)


async def test_wait_for_returns_at_once_when_already_there(printer: ToolRig) -> None:
    assert (await printer.driver.wait_for("IDLE", timeout_s=0)).state is S.IDLE
    with pytest.raises(ValueError, match=r"no state 'FLUXING' \(states: IDLE, CHANGEOVER"):
        await printer.driver.wait_for("FLUXING", timeout_s=1)  # a mounter state


async def test_console_on_the_tool(printer: ToolRig) -> None:
    p = printer.driver
    status = await run_command(CONSOLE_COMMANDS, p, "status", [])
    assert isinstance(status, PrinterStatus) and status.state is S.IDLE
    assert (await run_command(CONSOLE_COMMANDS, p, "identify", [])).model == "WP-300"
    assert await run_command(CONSOLE_COMMANDS, p, "alarm", []) == "no alarm"
    waited = await run_command(CONSOLE_COMMANDS, p, "wait", ["idle,ready", "5"])
    assert waited.state is S.IDLE
    with pytest.raises(WrongState):
        await run_command(CONSOLE_COMMANDS, p, "result", [])

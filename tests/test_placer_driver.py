"""BallPlacer: byte-exact against the spec's golden frames, then every command, NAK and
alarm path against the simulated WBM-300 over a pty and over TCP (or the real mounter
with --line-config)."""

from __future__ import annotations

import pytest
from serial_fixtures import HeldClock, RigFactory, ToolRig, scripted_tool

from controller.console import PLACER_COMMANDS as CONSOLE_COMMANDS
from controller.console import ConsoleUsageError, run_command
from drivers.errors import (
    AlarmActive,
    BadParameter,
    InterlockActive,
    LinkError,
    StateUnreachable,
    ToolAlarm,
    ToolTimeout,
    UnknownCommand,
    WrongState,
)
from drivers.hostlink import encode_reply, encode_request, parse_request
from drivers.hostlink_tool import KNOWN_FOR_S
from drivers.placer import BallPlacer
from drivers.serial_link import HostLinkPort
from drivers.types import (
    Alarm,
    Identity,
    PlacementRecipe,
    PlacementResult,
    PlacerState,
    PlacerStatus,
    RunStatus,
)
from sim.clock import ManualClock

# a placer driver on a simulated WBM-300 over pty and TCP (or the real one)

S = PlacerState
PATIENCE_S = 36_000.0  # tool seconds: bounds the waits without biting under fault injection
GOLDEN_RECIPE = PlacementRecipe("SAC305-250", 250, "SAC305", 25, 400, 120000)

# --- byte for byte against the golden frames of ball-placer.md ----------------------------------

GOLDEN = {
    b"$20,IDN*6D": b"$20,ACK,IDN,ACME-BALL,WBM-300,SN0077,1.9.0*4F",
    b"$21,RCP,SAC305-250,250,SAC305,25,400,120000*73": b"$21,ACK,RCP*0B",
    b"$22,STS*78": b"$22,ACK,STS,DONE,LOT42-07,0,SAC305,250,64.0,71.5*2B",
    b"$23,RES*69": b"$23,ACK,RES,LOT42-07,OK,120000,119996,4,0,11*57",
    b"$24,RPR*7A": b"$24,ACK,RPR*1F",
    b"$25,ALR*74": b"$25,ACK,ALR,111,BALL SUPPLY EMPTY*65",
}


def golden_tool(frame: bytes) -> bytes | None:
    if frame.rstrip() in GOLDEN:
        return GOLDEN[frame.rstrip()] + b"\r\n"
    req = parse_request(frame)
    if req.seq < 20 and req.cmd == "STS":  # lead-in up to the first golden SEQ
        return encode_reply(req.seq, "STS", ["IDLE", "", "0", "SAC305", "250", "99.0", "98.5"])
    return None  # anything else: silence, so the test fails with a LinkError


async def test_placer_speaks_the_golden_frames_byte_for_byte() -> None:
    async with scripted_tool(golden_tool) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.1, retries=0) as port:
            b = BallPlacer(port, ManualClock())  # type: ignore[arg-type]
            for _ in range(20):
                assert (await b.status()).ball_level_pct == 99.0
            assert await b.identify() == Identity("ACME-BALL", "WBM-300", "SN0077", "1.9.0")
            await b.set_recipe(GOLDEN_RECIPE)
            assert await b.status() == PlacerStatus(
                S.DONE, "LOT42-07", 0, "SAC305", 250, 64.0, 71.5
            )
            result = await b.result()
            assert result == PlacementResult("LOT42-07", RunStatus.OK, 120000, 119996, 4, 0, 11)
            assert result.defects == 4
            await b.repair()
            assert await b.alarm() == Alarm(111, "BALL SUPPLY EMPTY")
    assert [f.rstrip() for f in tool.requests[20:]] == list(GOLDEN)


async def test_unexpected_result_fields_are_a_clear_link_error() -> None:
    def reply(frame: bytes) -> bytes:
        fields = ["W1", "OK", "120000", "119996", "4.0", "0", "11"]
        return encode_reply(parse_request(frame).seq, "RES", fields)

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.1) as port:
            with pytest.raises(LinkError) as info:
                await BallPlacer(port, ManualClock()).result()  # type: ignore[arg-type]
    assert str(info.value) == (
        "placer-1: RES reply field missing: expected a whole number, got '4.0'"
    )


async def test_measured_offsets_and_diameters_may_carry_decimals() -> None:
    # ball-placer.md gives no format for offset_max_um or ball_diameter_um (its examples
    # are whole): a tool writing the measured values with a decimal is taken at its word.
    def reply(frame: bytes) -> bytes:
        req = parse_request(frame)
        if req.cmd == "STS":
            return encode_reply(req.seq, "STS", ["IDLE", "", "0", "SAC305", "250.0", "99.0",
                                                 "98.5"])
        return encode_reply(req.seq, "RES", ["W1", "OK", "120000", "119996", "4", "0", "11.3"])

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.1) as port:
            b = BallPlacer(port, ManualClock())  # type: ignore[arg-type]
            assert (await b.result()).offset_max_um == 11.3
            assert (await b.status()).ball_diameter_um == 250


async def test_ids_padded_with_blanks_read_as_the_id() -> None:
    def reply(frame: bytes) -> bytes:
        req = parse_request(frame)
        if req.cmd == "STS":
            return encode_reply(req.seq, "STS", ["DONE", "LOT42-07   ", "0", "SAC305 ", "250",
                                                 "99.0", "98.5"])
        return encode_reply(req.seq, "RES", ["LOT42-07   ", "OK", "120000", "120000", "0",
                                             "0", "11"])

    async with scripted_tool(reply) as (_, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.1) as port:
            b = BallPlacer(port, ManualClock())  # type: ignore[arg-type]
            assert (await b.result()).wafer_id == "LOT42-07"
            status = await b.status()
            assert (status.wafer_id, status.ball_alloy) == ("LOT42-07", "SAC305")


def ack_anything(frame: bytes) -> bytes:
    req = parse_request(frame)
    return encode_reply(req.seq, req.cmd)


async def test_console_commands_parse_arguments_into_the_right_frames() -> None:
    async with scripted_tool(ack_anything) as (tool, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.1) as port:
            b = BallPlacer(port, ManualClock())  # type: ignore[arg-type]
            args = ["SAC305-250", "250", "SAC305", "25", "400", "120000"]
            await run_command(CONSOLE_COMMANDS, b, "recipe", args)
            await run_command(CONSOLE_COMMANDS, b, "changeover", ["SnAg", "300"])
            await run_command(CONSOLE_COMMANDS, b, "load", ["W1"])
            for name in ("place", "repair", "unload", "clear", "abort"):
                await run_command(CONSOLE_COMMANDS, b, name, [])
            with pytest.raises(ConsoleUsageError, match="SITES: expected a whole number"):
                await run_command(CONSOLE_COMMANDS, b, "recipe", [*args[:5], "1.5e5"])
            with pytest.raises(ConsoleUsageError, match="BALL_DIAMETER_UM: expected a whole"):
                await run_command(CONSOLE_COMMANDS, b, "changeover", ["SnAg", "big"])
            with pytest.raises(ConsoleUsageError, match=r"usage: recipe NAME .* \(expected 6"):
                await run_command(CONSOLE_COMMANDS, b, "recipe", args[:3])
            with pytest.raises(ConsoleUsageError, match="unknown command 'print'"):
                await run_command(CONSOLE_COMMANDS, b, "print", [])
    assert tool.requests[0] == encode_request(0, "RCP", args)
    assert tool.requests[1] == encode_request(1, "CHG", ["SnAg", "300"])
    assert [parse_request(f).cmd for f in tool.requests[2:]] == [
        "LOD", "PLC", "RPR", "ULD", "CLR", "ABT",
    ]


def test_console_has_a_command_for_every_tool_command() -> None:
    assert {c.name for c in CONSOLE_COMMANDS} == {
        "status", "identify", "alarm", "clear", "abort", "recipe", "changeover", "load", "place",
        "result", "repair", "unload", "wait",
    }


# --- against the simulated WBM-300 (or the real one) --------------------------------------------


async def recipe_for(b: BallPlacer, *, sites: int = 120_000, flux_um: int | None = None) -> (
    PlacementRecipe
):
    status = await b.status()
    d = status.ball_diameter_um
    return PlacementRecipe(
        f"{status.ball_alloy}-{d}", d, status.ball_alloy, flux_um or max(5, d // 10), 400, sites
    )


async def place_one_wafer(b: BallPlacer, wafer_id: str, *, repair: bool = False) -> (
    list[PlacementResult]
):
    await b.set_recipe(await recipe_for(b))
    await b.load(wafer_id)
    assert (await b.wait_for(S.READY, timeout_s=PATIENCE_S)).wafer_id == wafer_id
    await b.start_placement()
    await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
    results = [await b.result()]
    if repair:
        await b.repair()
        await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
        results.append(await b.result())
    await b.unload()
    assert (await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)).wafer_id is None
    return results


async def test_identify_and_idle_status(placer: ToolRig) -> None:
    b = placer.driver
    ident = await b.identify()
    assert (ident.vendor, ident.model) == ("ACME-BALL", "WBM-300")
    status = await b.status()
    assert status.state is S.IDLE and status.wafer_id is None and status.alarm_code == 0
    assert await b.alarm() is None


async def test_full_placement_cycle_with_repair(placer: ToolRig) -> None:
    b = placer.driver
    first, repaired = await place_one_wafer(b, "LOT42-07", repair=True)
    for r in (first, repaired):
        assert r.wafer_id == "LOT42-07" and r.status is RunStatus.OK
        assert r.sites == 120_000 and r.placed + r.missing + r.extra == r.sites
    assert repaired.defects <= first.defects
    if placer.simulated:  # the tool's own counts
        assert (placer.model.placements_executed, placer.model.repairs) == (1, 1)
    assert (await b.status()).ball_level_pct < 100.0


async def test_the_status_straight_after_our_uld_and_idle_is_that_read_once(
    placer: ToolRig,
) -> None:
    """As the printer's: the next look right after ULD and the wait for IDLE is no STS."""
    b = placer.driver
    b.clock = clock = HeldClock(b.clock)  # the driver's time stands still: "straight after"

    def sts() -> int:
        return sum(b",STS*" in f for f in placer.sent())

    await place_one_wafer(b, "W-REST")  # ends with ULD, wait_for IDLE
    before = sts()
    assert (await b.status()).state is S.IDLE and sts() == before
    assert (await b.status()).state is S.IDLE and sts() == before + 1
    # a read at rest older than KNOWN_FOR_S stands for nothing: the next look is an STS
    await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)
    clock.advance(KNOWN_FOR_S + 1)
    assert (await b.status()).state is S.IDLE and sts() == before + 3


async def test_changeover_then_a_new_recipe_is_needed(placer: ToolRig) -> None:
    b = placer.driver
    old = await recipe_for(b)
    await b.set_recipe(old)
    # always a real change, whichever balls the tool has now
    alloy, diameter = ("SnAg3.5", 300) if old.ball_alloy != "SnAg3.5" else ("SAC305", 250)
    await b.changeover(alloy, diameter)
    assert (await b.status()).state is S.CHANGEOVER
    status = await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)
    assert (status.ball_alloy, status.ball_diameter_um, status.ball_level_pct) == (
        alloy, diameter, 100.0,
    )
    with pytest.raises(WrongState):
        await b.load("W1")  # CHG cleared the recipe
    with pytest.raises(BadParameter):
        await b.set_recipe(old)  # those balls are no longer loaded
    await b.set_recipe(await recipe_for(b))


async def test_abort_while_placing_leaves_the_wafer_done_and_aborted(placer: ToolRig) -> None:
    b = placer.driver
    # Few sites: a wafer aborted before its balls were placed may report every site
    # missing, and RPR takes 0.5 s per missing ball (ball-placer.md).
    await b.set_recipe(await recipe_for(b, sites=1000))
    await b.load("W-ABT")
    await b.wait_for(S.READY, timeout_s=PATIENCE_S)
    await b.start_placement()
    await b.abort()
    assert (await b.status()).state is S.DONE
    result = await b.result()
    assert (result.wafer_id, result.status) == ("W-ABT", RunStatus.ABORTED)
    await b.repair()  # ball-placer.md: allowed in DONE; it looks the wafer over
    done = await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
    assert done.wafer_id == "W-ABT"
    assert (await b.result()).status is RunStatus.OK
    await b.unload()
    await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)


async def test_nak_02_to_04(placer: ToolRig) -> None:
    b = placer.driver
    with pytest.raises(UnknownCommand):
        await placer.port.request("PRT")  # the printer's command, not the mounter's
    good = await recipe_for(b)
    with pytest.raises(BadParameter):
        await b.set_recipe(PlacementRecipe(good.name, good.ball_diameter_um, good.ball_alloy,
                                           60, 400, 1000))  # flux 5-50 um
    with pytest.raises(BadParameter):
        await b.set_recipe(PlacementRecipe(good.name, 760, good.ball_alloy, 25, 400, 1000))
    for call in (b.start_placement, b.result, b.repair, b.unload):
        with pytest.raises(WrongState):
            await call()


@pytest.mark.faults
async def test_nak_05_and_06(placer: ToolRig) -> None:
    b = placer.driver
    placer.model.raise_alarm(230, placer.now())
    with pytest.raises(AlarmActive):
        await b.set_recipe(await recipe_for(b))
    assert await b.alarm() == Alarm(230, "VACUUM FAULT")
    await b.clear_alarm()
    placer.model.open_door(placer.now())
    with pytest.raises(InterlockActive):
        await b.set_recipe(await recipe_for(b))
    placer.model.close_door(placer.now())
    await b.clear_alarm()
    await b.set_recipe(await recipe_for(b))


@pytest.mark.faults
async def test_emergency_stop_while_loading(placer: ToolRig) -> None:
    b = placer.driver
    await b.set_recipe(await recipe_for(b))
    await b.load("W-900")
    placer.model.press_estop(placer.now())
    with pytest.raises(ToolAlarm) as info:
        await b.wait_for(S.READY, timeout_s=PATIENCE_S)
    assert (info.value.code, info.value.text) == (900, "EMERGENCY STOP")
    with pytest.raises(InterlockActive):
        await b.unload()
    with pytest.raises(WrongState):
        await b.clear_alarm()  # still pressed
    placer.model.release_estop(placer.now())
    await b.clear_alarm()
    assert (await b.status()).state is S.DONE
    assert (await b.result()).status is RunStatus.ALARM
    await b.unload()
    await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)


@pytest.mark.faults
async def test_head_fault_while_placing(placer_line: RigFactory) -> None:
    from sim.faults import FaultPlan, ScheduledAlarm

    async with placer_line(faults=FaultPlan(alarms=[ScheduledAlarm(240, at_wafer=1)])) as rig:
        b = rig.driver
        await b.set_recipe(await recipe_for(b))
        await b.load("W-240")
        await b.wait_for(S.READY, timeout_s=PATIENCE_S)
        await b.start_placement()
        with pytest.raises(ToolAlarm) as info:
            await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
        assert (info.value.code, info.value.text) == (240, "PLACEMENT HEAD FAULT")
        assert (await b.wait_for(S.ALARM, timeout_s=1)).alarm_code == 240
        await b.clear_alarm()
        assert (await b.result()).status is RunStatus.ALARM
        await b.unload()
        await b.wait_for(S.IDLE, timeout_s=PATIENCE_S)


@pytest.mark.faults
async def test_ball_supply_empty_needs_a_changeover(placer_line: RigFactory) -> None:
    async with placer_line(model_args={"ball_level_pct": 1.0}) as rig:  # 50,000 balls
        b = rig.driver
        await b.set_recipe(await recipe_for(b, sites=120_000))
        await b.load("W-111")
        await b.wait_for(S.READY, timeout_s=PATIENCE_S)
        await b.start_placement()
        with pytest.raises(ToolAlarm, match="alarm 111 BALL SUPPLY EMPTY"):
            await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
        with pytest.raises(WrongState):
            await b.clear_alarm()  # no fresh supply yet
        status = await b.status()
        await b.changeover(status.ball_alloy, status.ball_diameter_um)
        assert (await b.wait_for(S.ALARM, timeout_s=PATIENCE_S)).ball_level_pct == 100.0
        await b.clear_alarm()
        assert (await b.status()).state is S.DONE
        assert rig.model.placements_executed == 0


@pytest.mark.faults
async def test_flux_empty_clears_after_the_refill(placer_line: RigFactory) -> None:
    async with placer_line(model_args={"flux_level_pct": 0.0}) as rig:
        b = rig.driver
        await b.set_recipe(await recipe_for(b))
        await b.load("W-121")
        await b.wait_for(S.READY, timeout_s=PATIENCE_S)
        await b.start_placement()
        with pytest.raises(ToolAlarm, match="alarm 121 FLUX EMPTY"):
            await b.wait_for(S.DONE, timeout_s=PATIENCE_S)
        # CLR is refused until the refill is done: poll it, bounded in tool time
        deadline = rig.now() + 600
        while True:
            try:
                await b.clear_alarm()
                break
            except WrongState:
                assert rig.now() < deadline, "flux refill never finished"
                await rig.clock.sleep(5)
        assert (await b.status()).flux_level_pct == 100.0


async def test_wait_for_times_out_in_tool_time(placer: ToolRig) -> None:
    status = await placer.driver.status()
    await placer.driver.changeover(status.ball_alloy, status.ball_diameter_um)  # 900 s
    with pytest.raises(ToolTimeout, match=r"placer-1: not IDLE or READY after 5 s"):
        await placer.driver.wait_for(S.READY, S.IDLE, timeout_s=5)


async def test_waiting_for_a_state_an_idle_tool_cannot_reach_fails_at_once(
    placer: ToolRig,
) -> None:
    # IDLE becomes DONE only through LOD and PLC: an hour of polling would change nothing.
    await placer.driver.status()  # past the link's opening IDN
    sent = len(placer.sent())
    with pytest.raises(StateUnreachable) as info:
        await placer.driver.wait_for(S.DONE, timeout_s=3600)
    assert str(info.value) == (
        "placer-1: not DONE: IDLE does not lead there without a host command"
    )
    assert [parse_request(f).cmd for f in placer.sent()[sent:]] == ["STS"]


@pytest.mark.faults
async def test_lossy_line_places_each_wafer_once(placer_line: RigFactory) -> None:
    from sim.faults import FaultPlan

    plan = FaultPlan(drop=0.1, corrupt=0.1)
    plan.seed(11)
    async with placer_line(faults=plan, timeout_s=0.15, retries=6) as rig:
        first, repaired = await place_one_wafer(rig.driver, "W-LOSSY", repair=True)
        assert first.status is RunStatus.OK and repaired.status is RunStatus.OK
        assert (rig.model.placements_executed, rig.model.repairs) == (1, 1)
        assert rig.port.retransmissions > 0

"""Console commands of the Modbus tools: the RF-10N reflow oven and the FC-1 flux cleaner.

Each command is one typed driver verb; the console parses the engineer's
strings and says what actually happened (``started``, not ``done``, for a
cycle that has only begun).
"""

from __future__ import annotations

from controller.console.args import (
    Access,
    ConsoleCommand,
    ConsoleUsageError,
    alarm_or_none,
    done_text,
    expect_args,
    float_arg,
    int_arg,
    reads,
    simple,
    timeout_arg,
)
from controller.console.show import zone_table
from drivers.protocols import Cleaner, Oven
from drivers.types import ZONES, CleanMode, CleanRecipe, ReflowProfile, StripRecipe

# --- oven ---------------------------------------------------------------------------------------


def _switch(usage: str, args: list[str], on: str, off: str) -> bool:
    expect_args(usage, args, 1)
    word = args[0].lower()
    if word not in (on, off):
        raise ConsoleUsageError(f"usage: {usage} (got '{args[0]}')")
    return word == on


_PROFILE_USAGE = "profile [Z1 .. Z10 SPEED_MM_MIN O2_LIMIT_PPM TAL_C PROFILE_ID]"


async def _profile(oven: Oven, args: list[str]) -> object:
    if args:
        expect_args(_PROFILE_USAGE, args, ZONES + 4)
        zones = tuple(
            float_arg(a, f"zone {i + 1} setpoint (°C)") for i, a in enumerate(args[:ZONES])
        )
        speed, o2, tal, pid = args[ZONES:]
        await oven.stage_profile(
            ReflowProfile(
                zone_setpoints_c=zones,
                conveyor_mm_min=int_arg(speed, "conveyor speed (mm/min)"),
                o2_limit_ppm=int_arg(o2, "O2 limit (ppm)"),
                tal_threshold_c=float_arg(tal, "TAL threshold (°C)"),
                profile_id=int_arg(pid, "profile id"),
            )
        )
    return await oven.staged_profile()


async def _n2(oven: Oven, args: list[str]) -> object:
    on = _switch("n2 on|off", args, "on", "off")
    await oven.set_nitrogen(on)
    return f"nitrogen {'on' if on else 'off'}"


async def _conveyor(oven: Oven, args: list[str]) -> object:
    run = _switch("conveyor run|stop", args, "run", "stop")
    await oven.set_conveyor(run)
    return f"conveyor {'running' if run else 'stopped'}"


async def _oven_load(oven: Oven, args: list[str]) -> object:
    expect_args("load WAFER_ID", args, 1)
    await oven.load(args[0])
    return f"{args[0]} is on the belt"


async def _wait_ready(oven: Oven, args: list[str]) -> object:
    await oven.wait_ready(timeout_arg("wait-ready [TIMEOUT_S]", args, 1800.0))
    return "ready"


async def _wait_exit(oven: Oven, args: list[str]) -> object:
    return await oven.wait_exit(timeout_arg("wait-exit [TIMEOUT_S]", args, 900.0))


OVEN_COMMANDS: tuple[ConsoleCommand, ...] = (
    reads("status", "state, zone temperatures, O2, belt and exit", lambda o: o.status()),
    reads("zones", "zone 1..10 temperatures (°C)", lambda o: o.zone_temperatures(),
          show=zone_table),
    ConsoleCommand("profile", _PROFILE_USAGE, "show the staged profile, or stage one", _profile,
                   access=Access.READS_WITHOUT_ARGS),
    simple("apply", "make the staged profile active (belt empty)",
           lambda o: done_text(o.apply(), "applied: the zones move to the new setpoints")),
    ConsoleCommand("n2", "n2 on|off", "switch the nitrogen purge", _n2),
    ConsoleCommand("conveyor", "conveyor run|stop", "run or stop the belt (stopping flags wafers)",
                   _conveyor),
    ConsoleCommand("load", "load WAFER_ID", "put a wafer on the belt", _oven_load),
    reads("result", "the exit wafer's measured profile", lambda o: o.exit_result()),
    simple("unload", "the exit wafer has been taken",
           lambda o: done_text(o.unload(), "exit wafer taken")),
    simple("clear", "clear a latched alarm whose cause is gone",
           lambda o: done_text(o.clear_alarm(), "alarm cleared")),
    simple("standby", "all zones to 100 °C (belt empty)",
           lambda o: done_text(o.standby(), "standby: all zones going to 100 °C")),
    reads("alarm", "the latched alarm, if any", alarm_or_none),
    ConsoleCommand("wait-ready", "wait-ready [TIMEOUT_S]", "wait until READY (tool seconds)",
                   _wait_ready, access=Access.READS),
    ConsoleCommand("wait-exit", "wait-exit [TIMEOUT_S]",
                   "wait for a wafer at the exit and show its result", _wait_exit,
                   access=Access.READS),  # the wafer stays at the exit until 'unload'

)


# --- cleaner ------------------------------------------------------------------------------------

_CLEAN_RECIPE_USAGE = "recipe [WASH_C WASH_S RINSE_S DRY_S PRESSURE_BAR]"


async def _clean_recipe(cleaner: Cleaner, args: list[str]) -> object:
    if args:
        expect_args(_CLEAN_RECIPE_USAGE, args, 5)
        await cleaner.set_recipe(
            CleanRecipe(
                wash_temp_c=float_arg(args[0], "wash temperature (°C)"),
                wash_time_s=int_arg(args[1], "wash time (s)"),
                rinse_time_s=int_arg(args[2], "rinse time (s)"),
                dry_time_s=int_arg(args[3], "dry time (s)"),
                spray_pressure_bar=float_arg(args[4], "spray pressure (bar)"),
            )
        )
    return await cleaner.recipe()


_STRIP_USAGE = "strip-recipe [STRIP_C STRIP_S RINSE_S DRY_S PRESSURE_BAR]"
_LOAD_USAGE = "load WAFER_ID [clean|strip]"
_MODES = {"clean": CleanMode.FLUX_CLEAN, "strip": CleanMode.RESIST_STRIP}


async def _strip_recipe(cleaner: Cleaner, args: list[str]) -> object:
    if args:
        expect_args(_STRIP_USAGE, args, 5)
        await cleaner.set_strip_recipe(
            StripRecipe(
                strip_temp_c=float_arg(args[0], "strip temperature (°C)"),
                strip_time_s=int_arg(args[1], "strip time (s)"),
                rinse_time_s=int_arg(args[2], "rinse time (s)"),
                dry_time_s=int_arg(args[3], "dry time (s)"),
                spray_pressure_bar=float_arg(args[4], "spray pressure (bar)"),
            )
        )
    return await cleaner.strip_recipe()


async def _clean_load(cleaner: Cleaner, args: list[str]) -> object:
    expect_args(_LOAD_USAGE, args, 1, 2)
    mode = _MODES.get(args[1] if len(args) == 2 else "clean")
    if mode is None:
        raise ConsoleUsageError(f"usage: {_LOAD_USAGE} (mode '{args[1]}': expected clean|strip)")
    await cleaner.load(args[0], mode)
    how = "" if mode is CleanMode.FLUX_CLEAN else f", {mode.value}"
    return f"{args[0]} is in the chamber (LOADED{how})"


async def _wait_strip_tank(cleaner: Cleaner, args: list[str]) -> object:
    usage = "wait-strip-tank [TIMEOUT_S]"
    tank = await cleaner.wait_bath_ready(timeout_arg(usage, args, 3600.0),
                                         CleanMode.RESIST_STRIP)
    return f"strip tank ready at {tank} °C"


async def _start(cleaner: Cleaner) -> object:
    await cleaner.start()
    state = (await cleaner.status()).state
    return f"cycle started ({state.name}); 'wait-done' waits for its result"


async def _clean_unload(cleaner: Cleaner) -> object:
    await cleaner.unload()
    return f"wafer out ({(await cleaner.status()).state.name})"


async def _abort(cleaner: Cleaner) -> object:
    await cleaner.abort()
    return "cycle aborted: the wafer waits DONE (result ABORTED)"


async def _wait_done(cleaner: Cleaner, args: list[str]) -> object:
    await cleaner.wait_done(timeout_arg("wait-done [TIMEOUT_S]", args, 3600.0))
    return await cleaner.result()


async def _wait_bath(cleaner: Cleaner, args: list[str]) -> object:
    bath = await cleaner.wait_bath_ready(timeout_arg("wait-bath [TIMEOUT_S]", args, 3600.0))
    return f"bath ready at {bath} °C"


CLEANER_COMMANDS: tuple[ConsoleCommand, ...] = (
    reads("status", "state, bath, rinse, remaining time and inputs", lambda c: c.status()),
    ConsoleCommand("recipe", _CLEAN_RECIPE_USAGE, "show the recipe, or write a new one",
                   _clean_recipe, access=Access.READS_WITHOUT_ARGS),
    ConsoleCommand("strip-recipe", _STRIP_USAGE,
                   "FC-2: show the strip recipe, or write a new one", _strip_recipe,
                   access=Access.READS_WITHOUT_ARGS),
    ConsoleCommand("load", _LOAD_USAGE,
                   "place a wafer in the chamber, for a flux clean (default) or an FC-2 strip",
                   _clean_load),
    simple("start", "wash, rinse and dry the loaded wafer (returns once started)", _start),
    reads("result", "the last finished wafer's result", lambda c: c.result()),
    simple("unload", "take the cleaned wafer out", _clean_unload),
    simple("clear", "clear a latched alarm whose cause is gone",
           lambda c: done_text(c.clear_alarm(), "alarm cleared")),
    simple("abort", "stop the running cycle", _abort),
    reads("alarm", "the latched alarm, if any", alarm_or_none),
    ConsoleCommand("wait-done", "wait-done [TIMEOUT_S]",
                   "wait for the cycle to finish and show the result", _wait_done,
                   access=Access.READS),
    ConsoleCommand("wait-bath", "wait-bath [TIMEOUT_S]",
                   "wait for the bath to reach the wash temperature", _wait_bath,
                   access=Access.READS),
    ConsoleCommand("wait-strip-tank", "wait-strip-tank [TIMEOUT_S]",
                   "FC-2: wait for the strip tank to reach the strip temperature",
                   _wait_strip_tank, access=Access.READS),
)

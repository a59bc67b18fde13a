"""Console commands of the HostLink/1 tools: the WP-300 printer and the WBM-300 mounter.

Each command is one typed driver verb; the console only parses the engineer's
strings and says what happened.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from controller.console.args import (
    Access,
    ConsoleCommand,
    ConsoleUsageError,
    alarm_or_none,
    enum_arg,
    expect_args,
    float_arg,
    int_arg,
    reads,
    simple,
)
from drivers.errors import NakError, ToolError, WrongState
from drivers.protocols import Placer, Printer
from drivers.types import PlacementRecipe, PlacerState, PrinterState, PrintRecipe

DEFAULT_WAIT_S = 3600.0  # ``wait`` without a timeout: an hour of tool time


def common_commands(state_enum: type[Enum]) -> tuple[ConsoleCommand, ...]:
    """status, identify, alarm, clear, abort and wait, shared by both HostLink tools."""
    states = ",".join(str(s.value) for s in state_enum)
    wait_usage = "wait STATE[,STATE...] [TIMEOUT_S]"

    async def wait(driver: Printer | Placer, args: list[str]) -> object:
        expect_args(wait_usage, args, 1, 2)
        wanted: list[Any] = [
            enum_arg(s, state_enum, "STATE") for s in args[0].split(",") if s.strip()
        ]
        if not wanted:
            raise ConsoleUsageError(f"usage: {wait_usage} (no state given)")
        timeout = float_arg(args[1], "TIMEOUT_S") if len(args) > 1 else DEFAULT_WAIT_S
        # A state the tool cannot reach from where it is fails at once (StateUnreachable).
        return await driver.wait_for(*wanted, timeout_s=timeout)

    return (
        reads("status", "state, wafer and counters (STS)", lambda d: d.status()),
        reads("identify", "vendor, model, serial, firmware (IDN)", lambda d: d.identify()),
        reads("alarm", "the latched alarm, if any (ALR)", alarm_or_none),
        simple("clear", "clear an alarm whose cause is gone (CLR)", lambda d: d.clear_alarm()),
        simple("abort", "stop the running operation (ABT)", lambda d: d.abort()),
        ConsoleCommand(
            "wait", wait_usage,
            f"poll STS until the tool is in one of the states ({states}); "
            f"timeout in tool seconds, default {DEFAULT_WAIT_S:g}",
            wait, access=Access.READS,  # STS, and ALR on an alarm
        ),
    )


# What each command needs (the specs' "allowed in" column), so a NAK 04 at the console says
# which state the tool is in and what it wants instead of a bare WRONG STATE.
_LOD_NEEDS = "IDLE and a stored recipe (send 'recipe' first; a changeover clears it)"
NEEDS: dict[str, dict[str, str]] = {
    "printer": {
        "RCP": "IDLE", "CHG": "IDLE", "WPE": "IDLE", "FIL": "IDLE, or ALARM 102",
        "LOD": _LOD_NEEDS, "PRT": "READY (a loaded wafer)", "RES": "DONE", "ULD": "DONE",
        "CLR": "a latched alarm whose cause is gone",
    },
    "placer": {
        "RCP": "IDLE", "CHG": "IDLE", "LOD": _LOD_NEEDS, "PLC": "READY (a loaded wafer)",
        "RES": "DONE", "RPR": "DONE", "ULD": "DONE",
        "CLR": "a latched alarm whose cause is gone",
    },
}


async def explain_wrong_state(driver: Printer | Placer, role: str, exc: NakError) -> NakError:
    """The NAK 04 (a WrongState: its class is built from the spec's table, so the annotations
    name its base) with the state the tool is in now and what the command needs."""
    try:
        state = (await driver.status()).state.value
    except ToolError:  # no word from the tool: the NAK alone is still true
        return exc
    need = NEEDS.get(role, {}).get(exc.command)
    why = f"{driver.name} is {state}" + (f"; {exc.command} needs {need}" if need else "")
    return WrongState(driver.name, exc.command, exc.code, exc.text, why)


async def _load(driver: Printer | Placer, args: list[str]) -> None:
    expect_args("load WAFER_ID", args, 1)
    await driver.load(args[0])


# --- printer ------------------------------------------------------------------------------------

_PRINT_RECIPE_USAGE = (
    "recipe NAME SQUEEGEE_KGF SPEED_MM_S SEPARATION_MM_S STENCIL_ID PASSES WIPE_EVERY"
)


async def _print_recipe(printer: Printer, args: list[str]) -> None:
    expect_args(_PRINT_RECIPE_USAGE, args, 7)
    await printer.set_recipe(
        PrintRecipe(
            name=args[0],
            squeegee_kgf=float_arg(args[1], "SQUEEGEE_KGF"),
            speed_mm_s=float_arg(args[2], "SPEED_MM_S"),
            separation_mm_s=float_arg(args[3], "SEPARATION_MM_S"),
            stencil_id=args[4],
            passes=int_arg(args[5], "PASSES"),
            wipe_every=int_arg(args[6], "WIPE_EVERY"),
        )
    )


async def _print_changeover(printer: Printer, args: list[str]) -> None:
    expect_args("changeover STENCIL_ID PASTE_ALLOY", args, 2)
    await printer.changeover(args[0], args[1])


PRINTER_COMMANDS: tuple[ConsoleCommand, ...] = (
    *common_commands(PrinterState),
    ConsoleCommand("recipe", _PRINT_RECIPE_USAGE, "store print parameters (RCP; IDLE only)",
                   _print_recipe),
    ConsoleCommand(
        "changeover", "changeover STENCIL_ID PASTE_ALLOY",
        "exchange stencil and paste cartridge, 600 s (CHG)", _print_changeover,
    ),
    ConsoleCommand("load", "load WAFER_ID", "take in and align a wafer (LOD)", _load),
    simple("print", "print the loaded wafer (PRT)", lambda p: p.start_print()),
    reads("result", "the printed wafer's SPI result (RES)", lambda p: p.result()),
    simple("unload", "hand the wafer out (ULD)", lambda p: p.unload()),
    simple("wipe", "wipe the stencil underside (WPE)", lambda p: p.wipe()),
    simple("fill", "refill the paste cartridge, 120 s (FIL)", lambda p: p.fill()),
)


# --- ball mounter -------------------------------------------------------------------------------

_PLACE_RECIPE_USAGE = "recipe NAME BALL_DIAMETER_UM BALL_ALLOY FLUX_UM PITCH_UM SITES"


async def _place_recipe(placer: Placer, args: list[str]) -> None:
    expect_args(_PLACE_RECIPE_USAGE, args, 6)
    await placer.set_recipe(
        PlacementRecipe(
            name=args[0],
            ball_diameter_um=int_arg(args[1], "BALL_DIAMETER_UM"),
            ball_alloy=args[2],
            flux_um=int_arg(args[3], "FLUX_UM"),
            pitch_um=int_arg(args[4], "PITCH_UM"),
            sites=int_arg(args[5], "SITES"),
        )
    )


async def _place_changeover(placer: Placer, args: list[str]) -> None:
    expect_args("changeover BALL_ALLOY BALL_DIAMETER_UM", args, 2)
    await placer.changeover(args[0], int_arg(args[1], "BALL_DIAMETER_UM"))


PLACER_COMMANDS: tuple[ConsoleCommand, ...] = (
    *common_commands(PlacerState),
    ConsoleCommand("recipe", _PLACE_RECIPE_USAGE, "store placement parameters (RCP; IDLE only)",
                   _place_recipe),
    ConsoleCommand(
        "changeover", "changeover BALL_ALLOY BALL_DIAMETER_UM",
        "exchange ball supply and masks, 900 s (CHG)", _place_changeover,
    ),
    ConsoleCommand("load", "load WAFER_ID", "take in a wafer (LOD)", _load),
    simple("place", "flux, place and inspect the wafer (PLC)", lambda p: p.start_placement()),
    reads("result", "the placed wafer's inspection result (RES)", lambda p: p.result()),
    simple("repair", "repair missing and extra balls (RPR)", lambda p: p.repair()),
    simple("unload", "hand the wafer out (ULD)", lambda p: p.unload()),
)

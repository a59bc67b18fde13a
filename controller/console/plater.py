"""Console commands of the EP-25 barrier plater (text lines over TCP, pushed events).

Each command is one typed driver verb; the console parses the engineer's strings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
from drivers.plater import BarrierPlater
from drivers.types import BarrierRecipe

_RECIPE_USAGE = "recipe [NI_UM AU_UM NI_TEMP_C AU_TEMP_C]"


async def _recipe(plater: BarrierPlater, args: list[str]) -> object:
    if args:
        expect_args(_RECIPE_USAGE, args, 4)
        await plater.set_recipe(BarrierRecipe(
            ni_um=float_arg(args[0], "nickel thickness (µm)"),
            au_um=float_arg(args[1], "gold thickness (µm)"),
            ni_temp_c=float_arg(args[2], "nickel bath (°C)"),
            au_temp_c=float_arg(args[3], "gold bath (°C)"),
        ))
    return await plater.recipe()


async def _load(plater: BarrierPlater, args: list[str]) -> object:
    expect_args("load BATCH_ID WAFER_ID[,WAFER_ID...]", args, 2)
    wafers = args[1].split(",")
    try:
        await plater.load(args[0], wafers)
    except ValueError as exc:
        raise ConsoleUsageError(str(exc)) from None
    return f"loaded {args[0]} ({len(wafers)} wafers)"


async def _result(plater: BarrierPlater, args: list[str]) -> object:
    expect_args("result [WAFER_ID]", args, 0, 1)
    if not args:
        return await plater.result()
    try:
        return await plater.wafer_result(args[0])
    except ValueError as exc:
        raise ConsoleUsageError(str(exc)) from None


async def _events(plater: BarrierPlater, args: list[str]) -> object:
    expect_args("events [AFTER_SEQ]", args, 0, 1)
    after = int_arg(args[0], "event number") if args else 0
    events = await plater.history(after)
    return "\n".join(" ".join((f"!{e.seq}", e.name, *e.fields)) for e in events) or "no events"


async def _wait_done(plater: BarrierPlater, args: list[str]) -> object:
    return await plater.wait_done(timeout_arg("wait-done [TIMEOUT_S]", args, 14_400.0))


async def _wait_bath(plater: BarrierPlater, args: list[str]) -> object:
    return await plater.wait_bath_ready(timeout_arg("wait-bath [TIMEOUT_S]", args, 7_200.0))


def _action(
    name: str, help: str, call: Callable[[BarrierPlater], Awaitable[None]]
) -> ConsoleCommand:
    return simple(name, help, lambda p: done_text(call(p), f"{name} done"))


PLATER_COMMANDS: tuple[ConsoleCommand, ...] = (
    reads("status", "state, batch, step and remaining time", lambda p: p.status()),
    reads("identity", "vendor, model, serial and firmware", lambda p: p.identity()),
    ConsoleCommand("recipe", _RECIPE_USAGE, "show the batch recipe, or store a new one", _recipe,
                   access=Access.READS_WITHOUT_ARGS),
    reads("bath", "bath temperatures, nickel pH, MTO and level", lambda p: p.bath()),
    ConsoleCommand("load", "load BATCH_ID WAFER_ID[,WAFER_ID...]",
                   "a carrier of 1-25 wafers is in the load port", _load),
    _action("start", "plate the loaded batch", lambda p: p.start()),
    _action("abort", "stop the running batch (carrier to the rinse tank)", lambda p: p.abort()),
    _action("unload", "take the finished carrier out", lambda p: p.unload()),
    _action("clear", "clear an alarm whose cause is gone", lambda p: p.clear_alarm()),
    _action("replenish", "a fresh nickel bath (an hour in MAINT)", lambda p: p.replenish()),
    ConsoleCommand("result", "result [WAFER_ID]",
                   "the last finished batch, or one wafer of it", _result, access=Access.READS),
    reads("alarm", "the active alarm, if any", alarm_or_none),
    ConsoleCommand("events", "events [AFTER_SEQ]",
                   "the events the tool still holds after AFTER_SEQ", _events,
                   access=Access.READS),
    ConsoleCommand("wait-done", "wait-done [TIMEOUT_S]",
                   "wait for the batch to finish and show its result", _wait_done,
                   access=Access.READS),
    ConsoleCommand("wait-bath", "wait-bath [TIMEOUT_S]",
                   "wait for both baths to reach their setpoints", _wait_bath,
                   access=Access.READS),
)

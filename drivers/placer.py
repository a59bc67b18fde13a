"""Driver of the WBM-300 wafer ball mounter (HostLink/1, ball-placer.md).

One typed method per command; ranges are the tool's to enforce (NAK 03).
"""

from __future__ import annotations

from typing import Any

from drivers.console import ConsoleCommand, expect_args, int_arg, simple
from drivers.hostlink_tool import HostLinkTool, common_console_commands, number_text
from drivers.types import PlacementRecipe, PlacementResult, PlacerState, PlacerStatus, RunStatus

STS_FIELDS = (
    "state", "wafer_id", "alarm_code", "ball_alloy", "ball_diameter_um", "ball_level_pct",
    "flux_level_pct",
)
RES_FIELDS = ("wafer_id", "status", "sites", "placed", "missing", "extra", "offset_max_um")


class BallPlacer(HostLinkTool[PlacerStatus]):
    """A WBM-300 ball mounter behind a ``HostLinkPort``."""

    STATE = PlacerState
    ALARM_STATE = PlacerState.ALARM
    NEXT = {
        PlacerState.CHANGEOVER: (PlacerState.IDLE,),
        PlacerState.LOADING: (PlacerState.READY,),
        PlacerState.FLUXING: (PlacerState.PLACING,),
        PlacerState.PLACING: (PlacerState.INSPECTING,),
        PlacerState.INSPECTING: (PlacerState.DONE,),
        PlacerState.REPAIRING: (PlacerState.INSPECTING, PlacerState.DONE),  # re-inspects
        PlacerState.UNLOADING: (PlacerState.IDLE,),
    }

    async def status(self) -> PlacerStatus:
        f = await self._call("STS", fields=STS_FIELDS)
        return PlacerStatus(
            state=f.choice("state", PlacerState),
            wafer_id=f.optional_text("wafer_id"),
            alarm_code=f.whole("alarm_code"),
            ball_alloy=f.text("ball_alloy"),
            ball_diameter_um=f.whole("ball_diameter_um"),
            ball_level_pct=f.decimal("ball_level_pct"),
            flux_level_pct=f.decimal("flux_level_pct"),
        )

    async def set_recipe(self, recipe: PlacementRecipe) -> None:
        await self._call(
            "RCP",
            recipe.name,
            number_text(recipe.ball_diameter_um),
            recipe.ball_alloy,
            number_text(recipe.flux_um),
            number_text(recipe.pitch_um),
            number_text(recipe.sites),
        )

    async def changeover(self, ball_alloy: str, ball_diameter_um: int) -> None:
        """Exchange ball supply and masks (CHANGEOVER 900 s); clears the recipe."""
        await self._call("CHG", ball_alloy, number_text(ball_diameter_um))

    async def load(self, wafer_id: str) -> None:
        await self._call("LOD", wafer_id)

    async def start_placement(self) -> None:
        """Flux, place and inspect the loaded wafer (PLC)."""
        await self._call("PLC")

    async def result(self) -> PlacementResult:
        f = await self._call("RES", fields=RES_FIELDS)
        return PlacementResult(
            wafer_id=f.text("wafer_id"),
            status=f.choice("status", RunStatus),
            sites=f.whole("sites"),
            placed=f.whole("placed"),
            missing=f.whole("missing"),
            extra=f.whole("extra"),
            offset_max_um=f.whole("offset_max_um"),
        )

    async def repair(self) -> None:
        """Fix missing and extra balls, then re-inspect (RPR; a new RES follows)."""
        await self._call("RPR")

    async def unload(self) -> None:
        await self._call("ULD")


# --- console ------------------------------------------------------------------------------------

_RECIPE_USAGE = "recipe NAME BALL_DIAMETER_UM BALL_ALLOY FLUX_UM PITCH_UM SITES"


async def _recipe(placer: Any, args: list[str]) -> None:
    expect_args(_RECIPE_USAGE, args, 6)
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


async def _changeover(placer: Any, args: list[str]) -> None:
    expect_args("changeover BALL_ALLOY BALL_DIAMETER_UM", args, 2)
    await placer.changeover(args[0], int_arg(args[1], "BALL_DIAMETER_UM"))


async def _load(placer: Any, args: list[str]) -> None:
    expect_args("load WAFER_ID", args, 1)
    await placer.load(args[0])


CONSOLE_COMMANDS: tuple[ConsoleCommand, ...] = (
    *common_console_commands(PlacerState),
    ConsoleCommand("recipe", _RECIPE_USAGE, "store placement parameters (RCP; IDLE only)", _recipe),
    ConsoleCommand(
        "changeover", "changeover BALL_ALLOY BALL_DIAMETER_UM",
        "exchange ball supply and masks, 900 s (CHG)", _changeover,
    ),
    ConsoleCommand("load", "load WAFER_ID", "take in a wafer (LOD)", _load),
    simple("place", "flux, place and inspect the wafer (PLC)", lambda p: p.start_placement()),
    simple("result", "the placed wafer's inspection result (RES)", lambda p: p.result()),
    simple("repair", "repair missing and extra balls (RPR)", lambda p: p.repair()),
    simple("unload", "hand the wafer out (ULD)", lambda p: p.unload()),
)

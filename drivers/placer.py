"""Driver of the WBM-300 wafer ball mounter (HostLink/1, ball-placer.md).

One typed method per command; ranges are the tool's to enforce (NAK 03).
"""

from __future__ import annotations

from typing import Any

from drivers.hostlink_tool import Fields, HostLinkTool, number_text
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
    LEADS_TO = {
        "LOD": frozenset({PlacerState.LOADING, PlacerState.READY}),
        "PLC": frozenset({
            PlacerState.FLUXING, PlacerState.PLACING, PlacerState.INSPECTING, PlacerState.DONE,
        }),
        "RPR": frozenset({PlacerState.REPAIRING, PlacerState.INSPECTING}),
        "ULD": frozenset({PlacerState.UNLOADING, PlacerState.IDLE}),
        "CHG": frozenset({PlacerState.CHANGEOVER}),
        "CLR": frozenset(set(PlacerState) - {PlacerState.ALARM}),
    }

    async def status(self) -> PlacerStatus:
        if self._at_rest is not None:
            known = self._known()  # straight after our ULD and the wait for IDLE: that read
            if known is not None:
                return known
        f = await self._call("STS", fields=STS_FIELDS)
        return PlacerStatus(**self._decoded(f, _sts_values))

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
            offset_max_um=f.measured("offset_max_um"),
        )

    async def repair(self) -> None:
        """Fix missing and extra balls, then re-inspect (RPR; a new RES follows)."""
        await self._call("RPR")

    async def unload(self) -> None:
        await self._call("ULD")


def _sts_values(f: Fields) -> dict[str, Any]:
    return {
        "state": f.choice("state", PlacerState),
        "wafer_id": f.optional_text("wafer_id"),
        "alarm_code": f.whole("alarm_code"),
        "ball_alloy": f.text("ball_alloy"),
        "ball_diameter_um": f.measured("ball_diameter_um"),
        "ball_level_pct": f.decimal("ball_level_pct"),
        "flux_level_pct": f.decimal("flux_level_pct"),
    }

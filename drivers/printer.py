"""Driver of the WP-300 stencil paste printer (HostLink/1, paste-printer.md).

One typed method per command. Ranges are the tool's to enforce: a value it
refuses comes back as ``BadParameter`` (NAK 03), exactly as on the real tool.
"""

from __future__ import annotations

from typing import Any

from drivers.hostlink_tool import Fields, HostLinkTool, number_text
from drivers.types import PrinterState, PrinterStatus, PrintRecipe, PrintResult, RunStatus

STS_FIELDS = (
    "state", "wafer_id", "alarm_code", "prints_since_wipe", "paste_level_pct", "stencil_id",
    "paste_alloy",
)
RES_FIELDS = (
    "wafer_id", "status", "vol_mean_pct", "vol_min_pct", "vol_max_pct", "bridges", "insufficient",
)


class PastePrinter(HostLinkTool[PrinterStatus]):
    """A WP-300 paste printer behind a ``HostLinkPort``."""

    STATE = PrinterState
    ALARM_STATE = PrinterState.ALARM
    NEXT = {
        PrinterState.CHANGEOVER: (PrinterState.IDLE,),
        PrinterState.LOADING: (PrinterState.READY,),
        PrinterState.PRINTING: (PrinterState.INSPECTING,),
        PrinterState.INSPECTING: (PrinterState.DONE,),
        PrinterState.UNLOADING: (PrinterState.IDLE,),
        PrinterState.WIPING: (PrinterState.UNLOADING, PrinterState.IDLE),  # ULD may wipe first
        # a refill that clears alarm 102 with a wafer inside ends in DONE (its RES: ALARM)
        PrinterState.FILLING: (PrinterState.IDLE, PrinterState.DONE),
    }
    LEADS_TO = {
        "LOD": frozenset({PrinterState.LOADING, PrinterState.READY}),
        "PRT": frozenset({PrinterState.PRINTING, PrinterState.INSPECTING, PrinterState.DONE}),
        "ULD": frozenset({PrinterState.UNLOADING, PrinterState.WIPING, PrinterState.IDLE}),
        "CHG": frozenset({PrinterState.CHANGEOVER}),
        "CLR": frozenset(set(PrinterState) - {PrinterState.ALARM}),
    }

    async def status(self) -> PrinterStatus:
        if self._at_rest is not None:
            known = self._known()  # straight after our ULD and the wait for IDLE: that read
            if known is not None:
                return known
        f = await self._call("STS", fields=STS_FIELDS)
        return PrinterStatus(**self._decoded(f, _sts_values))

    async def set_recipe(self, recipe: PrintRecipe) -> None:
        # numbers as in the spec's golden frame: "6.0,40,1.0"
        await self._call(
            "RCP",
            recipe.name,
            number_text(recipe.squeegee_kgf, 1),
            number_text(recipe.speed_mm_s),
            number_text(recipe.separation_mm_s, 1),
            recipe.stencil_id,
            number_text(recipe.passes),
            number_text(recipe.wipe_every),
        )

    async def changeover(self, stencil_id: str, paste_alloy: str) -> None:
        """Start a stencil and paste exchange (CHANGEOVER 600 s); clears the recipe."""
        await self._call("CHG", stencil_id, paste_alloy)

    async def load(self, wafer_id: str) -> None:
        """Start taking in and aligning a wafer (LOADING 20 s, then READY)."""
        await self._call("LOD", wafer_id)

    async def start_print(self) -> None:
        await self._call("PRT")

    async def result(self) -> PrintResult:
        f = await self._call("RES", fields=RES_FIELDS)
        return PrintResult(
            wafer_id=f.text("wafer_id"),
            status=f.choice("status", RunStatus),
            vol_mean_pct=f.decimal("vol_mean_pct"),
            vol_min_pct=f.decimal("vol_min_pct"),
            vol_max_pct=f.decimal("vol_max_pct"),
            bridges=f.whole("bridges"),
            insufficient=f.whole("insufficient"),
        )

    async def unload(self) -> None:
        await self._call("ULD")

    async def wipe(self) -> None:
        await self._call("WPE")

    async def fill(self) -> None:
        await self._call("FIL")


def _sts_values(f: Fields) -> dict[str, Any]:
    return {
        "state": f.choice("state", PrinterState),
        "wafer_id": f.optional_text("wafer_id"),
        "alarm_code": f.whole("alarm_code"),
        "prints_since_wipe": f.whole("prints_since_wipe"),
        "paste_level_pct": f.decimal("paste_level_pct"),
        "stencil_id": f.text("stencil_id"),
        "paste_alloy": f.text("paste_alloy"),
    }

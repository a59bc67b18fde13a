"""The print step: stencil paste printing with solder paste inspection (paste-printer.md).

Spec constants (../shared/specs/paste-printer.md): a stencil or paste change
(CHG) takes 600 s; LOAD 20 s, each print pass 30 s, SPI 10 s, UNLOAD 10 s, and a
stencil wipe of 15 s every ``wipe_every`` prints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from drivers.protocols import Printer
from drivers.types import PrinterState, PrinterStatus, PrintResult, RunStatus
from sequences.kinds.base import (
    SetupKey,
    StepContext,
    ToolView,
    alarm_reasons,
    expect,
    timeout_for,
)
from sequences.kinds.hostlink_step import HostLinkStepKind, past_interlock
from sequences.recipes.recipe import PrintStep
from sequences.wafer.judge import Judgment, at_least, at_most, same_wafer, window

CHANGEOVER_S = 600.0
LOAD_S, UNLOAD_S, WIPE_S = 20.0, 10.0, 15.0
PRINT_PASS_S, SPI_S = 30.0, 10.0
PASTE_PER_PRINT_PCT = 0.4  # paste level a print needs at least
# paste-printer.md: more than 60 prints since the last wipe raise alarm 220 (STENCIL
# CLOGGED, cleared by CLR then WPE). A recipe that never wipes (wipe_every 0), or an
# alarm or the console in between, leaves the wiping to the host: WPE before the LOD.
PRINTS_BEFORE_WIPE = 60

log = logging.getLogger("sequences.kinds.paste_print")


class PastePrint(HostLinkStepKind[PrintStep, Printer, PrinterStatus, PrintResult]):
    name, role = "print", "printer"
    driver_type = Printer
    changeover_s = CHANGEOVER_S
    deposit = True
    states = PrinterState
    what = "printer"
    guarded = ("PRT",)
    load_s, unload_s, to_idle_s = LOAD_S, UNLOAD_S, UNLOAD_S + WIPE_S
    handing_out = frozenset({PrinterState.UNLOADING, PrinterState.WIPING})

    def setup_key(self, step: PrintStep) -> SetupKey:
        return ("print", step.stencil_id, step.paste_alloy)

    def setup_mismatches(self, step: PrintStep, view: ToolView[PrinterStatus]) -> list[str]:
        st = view.status
        reasons = []
        if st.stencil_id != step.stencil_id:
            reasons.append(f"stencil {st.stencil_id} mounted, the step needs {step.stencil_id}")
        if st.paste_alloy != step.paste_alloy:
            reasons.append(f"{st.paste_alloy} paste loaded, the step needs {step.paste_alloy}")
        return reasons

    def interlocks(self, step: PrintStep, view: ToolView[PrinterStatus], wafer_id: str
                   ) -> list[str]:
        st = view.status
        reasons = alarm_reasons(st.alarm_code, st.state is PrinterState.ALARM)
        reasons += self.occupied(st, wafer_id)
        reasons += self.setup_mismatches(step, view)
        if st.paste_level_pct < PASTE_PER_PRINT_PCT:
            reasons.append(f"paste level {st.paste_level_pct:g} % is below one print "
                           f"({PASTE_PER_PRINT_PCT:g} %)")
        return reasons

    def cycle_s(self, step: PrintStep) -> float:
        return PRINT_PASS_S * step.passes + SPI_S

    def nominal_s(self, step: PrintStep) -> float:
        wipe = WIPE_S / step.wipe_every if step.wipe_every else 0.0
        return LOAD_S + self.cycle_s(step) + UNLOAD_S + wipe

    def judge(self, step: PrintStep, result: PrintResult, wafer_id: str, *,
              repaired: bool = False) -> Judgment:
        r = result
        measurements = {
            "status": r.status.value, "vol_mean_pct": r.vol_mean_pct,
            "vol_min_pct": r.vol_min_pct, "vol_max_pct": r.vol_max_pct, "bridges": r.bridges,
            "insufficient": r.insufficient,
        }
        findings = same_wafer(wafer_id, r.wafer_id)
        if r.status is not RunStatus.OK:
            findings.append(f"print status {r.status.value}")
        findings += window("SPI mean volume", r.vol_mean_pct, step.vol_mean_pct, " %")
        findings += at_least("SPI smallest volume", r.vol_min_pct, step.vol_min_pct_min, " %")
        findings += at_most("bridges", r.bridges, step.max_bridges)
        findings += at_most("insufficient sites", r.insufficient, step.max_insufficient)
        return Judgment(not findings, tuple(findings), measurements)

    def result_from(self, step: PrintStep, wafer_id: str, measured: Mapping[str, Any]
                    ) -> PrintResult:
        m = measured
        return PrintResult(wafer_id, RunStatus(m["status"]), m["vol_mean_pct"],
                           m["vol_min_pct"], m["vol_max_pct"], m["bridges"], m["insufficient"])

    def windows(self, step: PrintStep) -> dict[str, list[float | None]]:
        return {
            "vol_mean_pct": list(step.vol_mean_pct),
            "vol_min_pct": [step.vol_min_pct_min, None],
            "bridges": [None, step.max_bridges],
            "insufficient": [None, step.max_insufficient],
        }

    parameters_called = "print parameters"

    async def change_setup(self, driver: Printer, step: PrintStep) -> str:
        await driver.changeover(step.stencil_id, step.paste_alloy)
        return f"changeover to stencil {step.stencil_id} and {step.paste_alloy} paste (CHG)"

    async def store_recipe(self, driver: Printer, step: PrintStep, recipe_name: str) -> None:
        await driver.set_recipe(step.tool_recipe(recipe_name))

    async def start(self, driver: Printer) -> None:
        await driver.start_print()

    async def before_load(self, driver: Printer, step: PrintStep, ctx: StepContext,
                          seen: ToolView[PrinterStatus]) -> None:
        if seen.status.prints_since_wipe >= PRINTS_BEFORE_WIPE:
            log.info("%s: %d prints since the last wipe: WPE before %s's LOD", driver.name,
                     seen.status.prints_since_wipe, ctx.wafer_id)
            await past_interlock(driver, driver.wipe, ctx.note)
            await expect(ctx.clock, WIPE_S)
            await driver.wait_for(PrinterState.IDLE, timeout_s=timeout_for(WIPE_S))


PASTE_PRINT = PastePrint()

"""WP-300 stencil paste printer, simulated (specs/paste-printer.md).

Pure and clock-driven: see ``sim.hostlink_tool``. Random draws (alignment
failures, SPI results) come from the model's own ``random.Random(seed)``, drawn
in the order things happen on the tool, so a run repeats exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import erf, sqrt

from sim.faults import FaultPlan
from sim.hostlink import Nak
from sim.hostlink_tool import (
    HostLinkTool,
    parse_decimal,
    parse_id,
    parse_int,
    poisson,
    want_args,
)

CHANGEOVER_S = 600.0
LOADING_S = 20.0
PRINT_PASS_S = 30.0
INSPECTING_S = 10.0
UNLOADING_S = 10.0
WIPING_S = 15.0
FILLING_S = 120.0

PASTE_PER_PRINT = 4  # tenths of a percent of the cartridge: 0.4 %
FULL_PASTE = 1000  # tenths of a percent
CLOG_LIMIT = 60  # more prints than this since the last wipe raise alarm 220

PASTE_EMPTY = 102
ALIGNMENT_FAILED = 210
STENCIL_CLOGGED = 220
SQUEEGEE_PRESSURE = 300


@dataclass(frozen=True)
class PrintParameters:
    name: str
    squeegee_kgf: float
    speed_mm_s: float
    separation_mm_s: float
    stencil_id: str
    passes: int
    wipe_every: int


@dataclass(frozen=True)
class SpiResult:
    """What RES reports; volumes are % of aperture volume."""

    wafer_id: str
    status: str  # OK, ABORTED, ALARM
    vol_mean_pct: float = 0.0
    vol_min_pct: float = 0.0
    vol_max_pct: float = 0.0
    bridges: int = 0
    insufficient: int = 0

    def fields(self) -> list[str]:
        return [
            self.wafer_id,
            self.status,
            f"{self.vol_mean_pct:.1f}",
            f"{self.vol_min_pct:.1f}",
            f"{self.vol_max_pct:.1f}",
            str(self.bridges),
            str(self.insufficient),
        ]


class PastePrinterModel(HostLinkTool):
    result: SpiResult | None  # the wafer's RES (HostLinkTool keeps it)

    IDENTITY = ("ACME-PRINT", "WP-300", "SN1042", "2.4.1")
    ALARM_TEXT = {
        PASTE_EMPTY: "PASTE EMPTY",
        ALIGNMENT_FAILED: "ALIGNMENT FAILED",
        STENCIL_CLOGGED: "STENCIL CLOGGED",
        SQUEEGEE_PRESSURE: "SQUEEGEE PRESSURE FAULT",
        400: "DOOR OPEN",
        900: "EMERGENCY STOP",
    }
    WAFER_ALARM_STEP = {ALIGNMENT_FAILED: "LOADING"}
    WAFER_ALARM_DEFAULT_STEP = "PRINTING"

    def __init__(
        self,
        *,
        seed: int = 0,
        stencil_id: str = "ST-300-100",
        paste_alloy: str = "Pb95Sn5",
        paste_level_pct: float = 100.0,
        prints_since_wipe: int = 0,
        align_fail_rate: float = 0.002,
        spi_sites: int = 50_000,
        faults: FaultPlan | None = None,
    ) -> None:
        if not 0.0 <= paste_level_pct <= 100.0:
            raise ValueError(f"WP-300 paste_level_pct must be 0-100, got {paste_level_pct}")
        super().__init__(seed=seed, faults=faults)
        self.stencil_id = stencil_id
        self.paste_alloy = paste_alloy
        self.paste_tenths = round(paste_level_pct * 10)
        self.prints_since_wipe = prints_since_wipe
        self.align_fail_rate = align_fail_rate
        self.spi_sites = spi_sites
        self.recipe: PrintParameters | None = None
        # counters a test can check
        self.prints_executed = 0
        self.wipes = 0
        self.fills = 0
        self.changeovers = 0
        self._commands.update(
            RCP=self._rcp, CHG=self._chg, LOD=self._lod, PRT=self._prt, RES=self._res,
            ULD=self._uld, WPE=self._wpe, FIL=self._fil,
        )

    @property
    def paste_level_pct(self) -> float:
        return self.paste_tenths / 10

    # --- HostLinkTool hooks ------------------------------------------------------------------

    def status_fields(self) -> list[str]:
        return [
            self.state,
            self.wafer_id or "",
            str(self.alarm),
            str(self.prints_since_wipe),
            f"{self.paste_level_pct:.1f}",
            self.stencil_id,
            self.paste_alloy,
        ]

    def alarm_cause_gone(self, code: int, now: float) -> bool:
        return code != PASTE_EMPTY  # only FIL clears an empty cartridge

    def allowed_in_alarm(self, cmd: str) -> bool:
        return cmd == "FIL" and self.alarm == PASTE_EMPTY

    def unmeasured_result(self, status: str) -> SpiResult:
        return SpiResult(self.wafer_id or "", status)  # not measured

    # --- commands ----------------------------------------------------------------------------

    def _rcp(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        want_args(args, 7, "RCP")
        name, squeegee, speed, separation, stencil, passes, wipe_every = args
        recipe = PrintParameters(
            name=parse_id(name, "recipe name", 32),
            squeegee_kgf=parse_decimal(squeegee, "squeegee_kgf", 0.5, 10.0),
            speed_mm_s=parse_decimal(speed, "speed_mm_s", 5, 200),
            separation_mm_s=parse_decimal(separation, "separation_mm_s", 0.1, 10.0),
            stencil_id=parse_id(stencil, "stencil_id"),
            passes=parse_int(passes, "passes", 1, 3),
            wipe_every=parse_int(wipe_every, "wipe_every", 0, 50),
        )
        if recipe.stencil_id != self.stencil_id:
            raise Nak(3, f"stencil {recipe.stencil_id} is not the mounted {self.stencil_id}")
        self.recipe = recipe
        return []

    def _chg(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        want_args(args, 2, "CHG")
        stencil = parse_id(args[0], "stencil_id")
        alloy = parse_id(args[1], "paste_alloy")
        self.recipe = None  # a changeover always needs a new RCP, even if aborted

        def mounted(t: float) -> None:
            self.stencil_id, self.paste_alloy = stencil, alloy
            self.paste_tenths = FULL_PASTE  # a fresh cartridge comes with the changeover
            self.prints_since_wipe = 0
            self.changeovers += 1
            self.settle("IDLE", t)

        self.start("CHANGEOVER", now, CHANGEOVER_S, mounted)
        return []

    def _lod(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        if self.recipe is None:
            raise Nak(4, "LOD needs an RCP first")
        want_args(args, 1, "LOD")
        wafer_id = parse_id(args[0], "wafer_id")
        self.take_wafer(wafer_id)
        self.result, self.result_final = None, False
        self.start("LOADING", now, LOADING_S, self._aligned)
        return []

    def _aligned(self, t: float) -> None:
        if self.rng.random() < self.align_fail_rate:
            self.latch(ALIGNMENT_FAILED, t)
        else:
            self.settle("READY", t)

    def _prt(self, args: list[str], now: float) -> list[str]:
        self.need("READY")
        want_args(args, 0, "PRT")
        assert self.recipe is not None  # READY is only reached after an RCP
        # Both refusals are alarms after the ACK: the tool takes the command, then stops.
        if self.paste_tenths <= 0:
            self.latch(PASTE_EMPTY, now)
            return []
        if self.prints_since_wipe > CLOG_LIMIT:
            self.latch(STENCIL_CLOGGED, now)
            return []
        # The paste goes onto the stencil with the first stroke: an aborted print still counts.
        self.paste_tenths = max(0, self.paste_tenths - PASTE_PER_PRINT)
        self.prints_since_wipe += 1
        self.prints_executed += 1
        self.start("PRINTING", now, PRINT_PASS_S * self.recipe.passes, self._printed)
        return []

    def _printed(self, t: float) -> None:
        self.start("INSPECTING", t, INSPECTING_S, self._inspected)

    def _inspected(self, t: float) -> None:
        assert self.wafer_id is not None and self.recipe is not None
        self.result = self._measure(self.wafer_id, self.recipe)
        self.result_final = True
        if self.prints_since_wipe > CLOG_LIMIT:
            # The deposit was measured; the wafer is the host's to disposition.
            self.result = replace(self.result, status="ALARM")
            self.latch(STENCIL_CLOGGED, t)
        else:
            self.settle("DONE", t)

    def _uld(self, args: list[str], now: float) -> list[str]:
        self.need("DONE")
        want_args(args, 0, "ULD")
        wipe_every = self.recipe.wipe_every if self.recipe else 0
        if 0 < wipe_every <= self.prints_since_wipe:
            self.start("WIPING", now, WIPING_S, lambda t: self._wiped(t, then_unload=True))
        else:
            self._unload(now)
        return []

    def _unload(self, t: float) -> None:
        self.start("UNLOADING", t, UNLOADING_S, self.hand_out_wafer)

    def _wpe(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        want_args(args, 0, "WPE")
        self.start("WIPING", now, WIPING_S, lambda t: self._wiped(t, then_unload=False))
        return []

    def _wiped(self, t: float, *, then_unload: bool) -> None:
        self.prints_since_wipe = 0
        self.wipes += 1
        if then_unload:
            self._unload(t)
        else:
            self.settle("IDLE", t)

    def _fil(self, args: list[str], now: float) -> list[str]:
        self.need("ALARM" if self.alarm else "IDLE")  # IDLE, or ALARM 102 (its remedy)
        want_args(args, 0, "FIL")
        self.alarm = 0  # FIL is how alarm 102 clears; the refill starts at once

        def filled(t: float) -> None:
            self.paste_tenths = FULL_PASTE
            self.fills += 1
            self.settle(self.rest, t)

        self.start("FILLING", now, FILLING_S, filled)
        return []

    # --- the deposit -------------------------------------------------------------------------

    def _measure(self, wafer_id: str, recipe: PrintParameters) -> SpiResult:
        """SPI over all sites: paste building up under the stencil lowers and spreads volume."""
        rng, psw = self.rng, self.prints_since_wipe
        fresh_mean = min(102.0, max(95.0, rng.gauss(98.5, 1.2)))
        extra_pass = 1.5 * (recipe.passes - 1)  # another stroke fills apertures a little more
        mean = fresh_mean + extra_pass - 0.3 * psw
        spread = 5.0 + 0.12 * psw  # standard deviation across sites
        tail = 3.3 + abs(rng.gauss(0, 0.2))  # how far the extremes sit, in spreads
        low = max(0.0, mean - tail * spread)
        high = mean + (tail + rng.gauss(0, 0.2)) * spread
        # sites under 50 %: the normal tail; bridges: smeared paste once the underside fouls
        below_half = self.spi_sites * _normal_cdf((50.0 - mean) / spread)
        bridges = poisson(rng, 0.02 + 0.02 * max(0, psw - 20) + 0.002 * max(0, psw - 40) ** 2)
        return SpiResult(
            wafer_id,
            "OK",
            round(mean, 1),
            round(low, 1),
            round(high, 1),
            bridges,
            poisson(rng, below_half),
        )


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + erf(z / sqrt(2)))

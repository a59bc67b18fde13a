"""WBM-300 wafer ball mounter, simulated (specs/ball-placer.md).

Pure and clock-driven: see ``sim.hostlink_tool``. Defects are drawn from the
model's own ``random.Random(seed)`` in the order things happen on the tool.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sim.faults import FaultPlan
from sim.hostlink import Nak
from sim.hostlink_tool import (
    HostLinkTool,
    binomial,
    parse_id,
    parse_int,
    poisson,
    want_args,
)

CHANGEOVER_S = 900.0
LOADING_S = 20.0
FLUXING_S = 25.0
PLACING_S = 40.0
INSPECTING_S = 15.0
REPAIR_BASE_S = 5.0
REPAIR_PER_BALL_S = 0.5
UNLOADING_S = 10.0
FLUX_REFILL_S = 60.0  # the operator's refill after alarm 121, as the tool simulates it

FULL_SUPPLY = 5_000_000  # balls
FULL_FLUX = 1000  # tenths of a percent
FLUX_PER_WAFER = 5  # 0.5 %

NOMINAL_DEFECT_RATE = 30e-6  # of sites, fresh mask, flux = diameter / 10
MASK_WEAR_WAFERS = 5000  # wafers after which a mask's defect rate has doubled
REPAIR_FIXES_MISSING = 0.97
REPAIR_FIXES_EXTRA = 0.90

BALL_SUPPLY_EMPTY = 111
FLUX_EMPTY = 121
VACUUM_FAULT = 230
HEAD_FAULT = 240


@dataclass(frozen=True)
class PlacementParameters:
    name: str
    ball_diameter_um: int
    ball_alloy: str
    flux_um: int
    pitch_um: int
    sites: int


@dataclass(frozen=True)
class PlacementReport:
    """What RES reports. Zero counts with status ABORTED/ALARM: never inspected."""

    wafer_id: str
    status: str  # OK, ABORTED, ALARM
    sites: int
    placed: int = 0
    missing: int = 0
    extra: int = 0
    offset_max_um: int = 0

    def fields(self) -> list[str]:
        return [
            self.wafer_id,
            self.status,
            str(self.sites),
            str(self.placed),
            str(self.missing),
            str(self.extra),
            str(self.offset_max_um),
        ]


class BallPlacerModel(HostLinkTool):
    result: PlacementReport | None  # the wafer's RES (HostLinkTool keeps it)

    IDENTITY = ("ACME-BALL", "WBM-300", "SN0077", "1.9.0")
    ALARM_TEXT = {
        BALL_SUPPLY_EMPTY: "BALL SUPPLY EMPTY",
        FLUX_EMPTY: "FLUX EMPTY",
        VACUUM_FAULT: "VACUUM FAULT",
        HEAD_FAULT: "PLACEMENT HEAD FAULT",
        400: "DOOR OPEN",
        900: "EMERGENCY STOP",
    }
    WAFER_ALARM_DEFAULT_STEP = "PLACING"

    def __init__(
        self,
        *,
        seed: int = 0,
        ball_alloy: str = "SAC305",
        ball_diameter_um: int = 250,
        ball_level_pct: float = 100.0,
        flux_level_pct: float = 100.0,
        mask_wafers: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        for what, pct in (("ball_level_pct", ball_level_pct), ("flux_level_pct", flux_level_pct)):
            if not 0.0 <= pct <= 100.0:
                raise ValueError(f"WBM-300 {what} must be 0-100, got {pct}")
        super().__init__(seed=seed, faults=faults)
        self.ball_alloy = ball_alloy
        self.ball_diameter_um = ball_diameter_um
        self.balls = round(ball_level_pct / 100 * FULL_SUPPLY)
        self.flux_tenths = round(flux_level_pct * 10)
        self.mask_wafers = mask_wafers  # wafers through the masks since the last changeover
        self.recipe: PlacementParameters | None = None
        self._supply_exchanged = True  # alarm 111 clears only after a CHG
        self._flux_refill_due: float | None = None
        # counters a test can check
        self.placements_executed = 0
        self.repairs = 0
        self.changeovers = 0
        self.flux_refills = 0
        self._commands.update(
            RCP=self._rcp, CHG=self._chg, LOD=self._lod, PLC=self._plc, RES=self._res,
            RPR=self._rpr, ULD=self._uld,
        )

    @property
    def ball_level_pct(self) -> float:
        return self.balls / FULL_SUPPLY * 100

    @property
    def flux_level_pct(self) -> float:
        return self.flux_tenths / 10

    # --- HostLinkTool hooks ------------------------------------------------------------------

    def status_fields(self) -> list[str]:
        return [
            self.state,
            self.wafer_id or "",
            str(self.alarm),
            self.ball_alloy,
            str(self.ball_diameter_um),
            f"{self.ball_level_pct:.1f}",
            f"{self.flux_level_pct:.1f}",
        ]

    def alarm_raised(self, code: int, t: float) -> None:
        if code == BALL_SUPPLY_EMPTY:
            self._supply_exchanged = False
        elif code == FLUX_EMPTY and self._flux_refill_due is None:
            self._flux_refill_due = t + FLUX_REFILL_S
            self.schedule(t + FLUX_REFILL_S, self._flux_refilled)

    def _flux_refilled(self, t: float) -> None:
        self.flux_tenths = FULL_FLUX
        self.flux_refills += 1
        self._flux_refill_due = None
        self._log.append(f"t={t:.1f}s flux refilled")

    def alarm_cause_gone(self, code: int, now: float) -> bool:
        if code == BALL_SUPPLY_EMPTY:
            return self._supply_exchanged
        if code == FLUX_EMPTY:
            return self._flux_refill_due is None
        return True

    def allowed_in_alarm(self, cmd: str) -> bool:
        return cmd == "CHG" and self.alarm == BALL_SUPPLY_EMPTY

    def unmeasured_result(self, status: str) -> PlacementReport:
        return PlacementReport(self.wafer_id or "", status, self.recipe.sites if self.recipe else 0)

    # --- commands ----------------------------------------------------------------------------

    def _rcp(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        want_args(args, 6, "RCP")
        name, diameter, alloy, flux, pitch, sites = args
        recipe = PlacementParameters(
            name=parse_id(name, "recipe name", 32),
            ball_diameter_um=parse_int(diameter, "ball_diameter_um", 60, 760),
            ball_alloy=parse_id(alloy, "ball_alloy"),
            flux_um=parse_int(flux, "flux_um", 5, 50),
            pitch_um=parse_int(pitch, "pitch_um", 100, 2000),
            sites=parse_int(sites, "sites", 1, 3_000_000),
        )
        loaded = (self.ball_alloy, self.ball_diameter_um)
        if (recipe.ball_alloy, recipe.ball_diameter_um) != loaded:
            raise Nak(3, f"recipe balls {recipe.ball_alloy} {recipe.ball_diameter_um} um "
                         f"are not the loaded {loaded[0]} {loaded[1]} um")
        self.recipe = recipe
        return []

    def _chg(self, args: list[str], now: float) -> list[str]:
        # IDLE, or ALARM 111 (its remedy); never a second CHG while one runs.
        self.need("ALARM" if self.alarm else "IDLE")
        want_args(args, 2, "CHG")
        alloy = parse_id(args[0], "ball_alloy")
        diameter = parse_int(args[1], "ball_diameter_um", 60, 760)
        self.recipe = None

        def exchanged(t: float) -> None:
            self.ball_alloy, self.ball_diameter_um = alloy, diameter
            self.balls = FULL_SUPPLY
            self.mask_wafers = 0
            self._supply_exchanged = True
            self.changeovers += 1
            self.settle(self.rest, t)

        self.start("CHANGEOVER", now, CHANGEOVER_S, exchanged)
        return []

    def _lod(self, args: list[str], now: float) -> list[str]:
        self.need("IDLE")
        if self.recipe is None:
            raise Nak(4, "LOD needs an RCP first")
        want_args(args, 1, "LOD")
        self.take_wafer(parse_id(args[0], "wafer_id"))
        self.result, self.result_final = None, False
        self.start("LOADING", now, LOADING_S, lambda t: self.settle("READY", t))
        return []

    def _plc(self, args: list[str], now: float) -> list[str]:
        self.need("READY")
        want_args(args, 0, "PLC")
        recipe = self.recipe
        assert recipe is not None  # READY is only reached after an RCP
        # Checked before anything moves: the command is taken, then the tool stops.
        if self.balls < recipe.sites:
            self.latch(BALL_SUPPLY_EMPTY, now)
            return []
        if self.flux_tenths < FLUX_PER_WAFER:
            self.latch(FLUX_EMPTY, now)
            return []
        self.balls -= recipe.sites
        self.flux_tenths -= FLUX_PER_WAFER
        self.mask_wafers += 1
        self.placements_executed += 1
        self.start("FLUXING", now, FLUXING_S, self._fluxed)
        return []

    def _fluxed(self, t: float) -> None:
        self.start("PLACING", t, PLACING_S, self._placed)

    def _placed(self, t: float) -> None:
        self.start("INSPECTING", t, INSPECTING_S, self._inspected)

    def _inspected(self, t: float) -> None:
        assert self.wafer_id is not None and self.recipe is not None
        self.result = self._inspect(self.wafer_id, self.recipe)
        self.result_final = True
        self.settle("DONE", t)

    def _rpr(self, args: list[str], now: float) -> list[str]:
        self.need("DONE")
        want_args(args, 0, "RPR")
        before = self.result
        assert before is not None and self.recipe is not None  # DONE: a wafer with its RES
        self.result_final = False
        self.repairs += 1
        duration = REPAIR_BASE_S + REPAIR_PER_BALL_S * (before.missing + before.extra)
        # ball-placer.md: "REPAIRING 5 s + 0.5 s per missing or extra ball, re-inspects,
        # then DONE": the re-inspection is part of REPAIRING's time, not a state of its own.
        if before.status != "OK" and before.placed == 0:
            # Stopped before its inspection (ABT, an alarm): nothing to count; the repair
            # head looks the wafer over and the re-inspection gives its first RES.
            wafer_id, recipe = self.wafer_id, self.recipe
            assert wafer_id is not None

            def looked_over(t: float) -> None:
                self.result = self._inspect(wafer_id, recipe)
                self._reinspected(t)

            self.start("REPAIRING", now, duration, looked_over)
            return []

        def repaired(t: float) -> None:
            fixed_missing = binomial(self.rng, before.missing, REPAIR_FIXES_MISSING)
            fixed_extra = binomial(self.rng, before.extra, REPAIR_FIXES_EXTRA)
            self.balls = max(0, self.balls - fixed_missing)
            self.result = replace(
                before,
                status="OK",  # a new RES: the stop that marked the last one is over
                placed=before.placed + fixed_missing + fixed_extra,
                missing=before.missing - fixed_missing,
                extra=before.extra - fixed_extra,
            )
            self._reinspected(t)

        self.start("REPAIRING", now, duration, repaired)
        return []

    def _reinspected(self, t: float) -> None:
        self.result_final = True
        self.settle("DONE", t)

    def _uld(self, args: list[str], now: float) -> list[str]:
        self.need("DONE")
        want_args(args, 0, "ULD")

        self.start("UNLOADING", now, UNLOADING_S, self.hand_out_wafer)
        return []

    # --- the placement -----------------------------------------------------------------------

    def _inspect(self, wafer_id: str, recipe: PlacementParameters) -> PlacementReport:
        """Defects: ~30 ppm nominally, more with flux far from diameter/10 and a worn mask."""
        rng = self.rng
        nominal_flux = recipe.ball_diameter_um / 10
        deviation = (recipe.flux_um - nominal_flux) / nominal_flux
        wear = 1 + self.mask_wafers / MASK_WEAR_WAFERS
        expected = recipe.sites * NOMINAL_DEFECT_RATE * (1 + 8 * deviation**2) * wear
        # thin flux loses balls; thick flux lets a second ball stick
        extra_share = min(0.8, max(0.05, 0.25 + 0.3 * deviation))
        missing = poisson(rng, expected * (1 - extra_share))
        extra = poisson(rng, expected * extra_share)
        missing = min(missing, recipe.sites)
        extra = min(extra, recipe.sites - missing)
        offset = round(min(40.0, max(2.0, rng.gauss(9.0 + 3.0 * (wear - 1), 1.5))))
        return PlacementReport(
            wafer_id, "OK", recipe.sites, recipe.sites - missing - extra, missing, extra, offset
        )

"""A WBM-300 wafer ball mounter written from ball-placer.md alone. Pure: no I/O.

Strict choices where the spec is silent (docs/protocols.md, "Independent tools"),
beyond hostlink_tool's:

* RCP: diameter, pitch and sites integers, flux a plain decimal; name 1-32 characters;
  LOD without an RCP since power-up or the last CHG is NAK 04; wafer id 1-16
  characters (as the printer's);
* PLC when the supply holds fewer balls than the recipe's sites is ACKed and latches
  111 at once (nothing placed); with the flux at 0 % it latches 121, whose cause (the
  refill) lasts 60 s: CLR before then is NAK 04;
* CHG is accepted in IDLE and in ALARM 111 (the spec's way out of 111); from ALARM it
  returns to ALARM with the cause gone, for the CLR; CHG clears the RCP at once;
* balls and 0.5 % flux are taken when FLUXING starts; a wafer aborted or alarmed
  before its balls were placed reports every site missing, so RPR on it takes
  5 s + 0.5 s x sites; RPR's new RES (after the re-inspection) has status OK.
"""

from __future__ import annotations

import random

from tests.independent.hostlink import Nak
from tests.independent.hostlink_tool import (
    ALARM,
    CHANGEOVER,
    DONE,
    IDLE,
    READY,
    HostLinkTool,
    Phase,
    name,
    number,
)

FLUXING, PLACING, INSPECTING, REPAIRING = "FLUXING", "PLACING", "INSPECTING", "REPAIRING"
FULL_SUPPLY = 5_000_000
ANY = None
ONLY_IDLE = frozenset({IDLE})


class Mounter(HostLinkTool):
    idn = ("ACME-BALL", "WBM-300", "SN0077", "1.9.0")
    alarm_texts = {111: "BALL SUPPLY EMPTY", 121: "FLUX EMPTY", 230: "VACUUM FAULT",
                   240: "PLACEMENT HEAD FAULT", 400: "DOOR OPEN", 900: "EMERGENCY STOP"}
    commands = {
        "IDN": (0, ANY, "cmd_idn"), "STS": (0, ANY, "cmd_sts"), "ALR": (0, ANY, "cmd_alr"),
        "CLR": (0, ANY, "cmd_clr"), "ABT": (0, ANY, "cmd_abt"),
        "RCP": (6, ONLY_IDLE, "cmd_rcp"), "CHG": (2, ONLY_IDLE, "cmd_chg"),
        "LOD": (1, ONLY_IDLE, "cmd_lod"), "PLC": (0, frozenset({READY}), "cmd_plc"),
        "RES": (0, frozenset({DONE}), "cmd_res"), "RPR": (0, frozenset({DONE}), "cmd_rpr"),
        "ULD": (0, frozenset({DONE}), "cmd_uld"),
    }

    def __init__(self, *, alloy: str = "SAC305", diameter: int = 250,
                 balls: int = 3_200_000, flux_pct: float = 71.5, seed: int = 15,
                 defects: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.alloy, self.diameter = alloy, diameter
        self.balls = balls
        self.flux_pct = flux_pct
        self.recipe: dict[str, float | str] | None = None
        self.changing_to: tuple[str, int] | None = None
        self.from_alarm = False
        self.random = random.Random(seed)
        self.defects = defects  # a test's worn mask: this many missing balls on every wafer

    def allowed_in_alarm(self, cmd: str) -> bool:
        return cmd == "CHG" and self.alarm == 111

    def status_fields(self) -> list[str]:
        return [self.state, self.wafer, str(self.alarm), self.alloy, str(self.diameter),
                f"{100.0 * self.balls / FULL_SUPPLY:.1f}", f"{self.flux_pct:.1f}"]

    def failed_result(self, status: str) -> list[str]:
        sites = str(int(self.recipe["sites"])) if self.recipe else "0"
        if self.result is not None and self.result[1] == "OK":
            return [self.wafer, status, *self.result[2:]]
        return [self.wafer, status, sites, "0", sites, "0", "0"]

    def cmd_rcp(self, rname: str, diameter: str, alloy: str, flux: str, pitch: str,
                sites: str) -> list[str]:
        recipe: dict[str, float | str] = {
            "name": name(rname),
            "diameter": number(diameter, 60, 760, integer=True),
            "alloy": name(alloy),
            "flux": number(flux, 5, 50),
            "pitch": number(pitch, 100, 2000, integer=True),
            "sites": number(sites, 1, 3_000_000, integer=True),
        }
        if recipe["diameter"] != self.diameter or alloy != self.alloy:
            raise Nak(3)
        self.recipe = recipe
        return []

    def cmd_chg(self, alloy: str, diameter: str) -> list[str]:
        name(alloy)
        size = int(number(diameter, 60, 760, integer=True))
        self.motion()
        self.recipe = None
        self.changing_to = (alloy, size)
        self.from_alarm = self.state == ALARM
        self.run(Phase(CHANGEOVER, 900, self._changed))
        return []

    def _changed(self) -> None:
        assert self.changing_to is not None
        self.alloy, self.diameter = self.changing_to
        self.changing_to = None
        self.balls = FULL_SUPPLY
        if self.from_alarm:
            self.state = ALARM  # cause gone: CLR now
            self.cause_until = self.now
        else:
            self.state = IDLE
        self.from_alarm = False

    def cmd_abt(self) -> list[str]:
        if self.state == CHANGEOVER and self.from_alarm:
            self.phases, self.changing_to, self.from_alarm = [], None, False
            self.state = ALARM  # still no fresh supply
            return []
        self.changing_to = None
        return super().cmd_abt()

    def cmd_lod(self, wafer_id: str) -> list[str]:
        if self.recipe is None:
            raise Nak(4)
        self.load(wafer_id)
        return []

    def cmd_plc(self) -> list[str]:
        self.motion()
        assert self.recipe is not None
        sites = int(self.recipe["sites"])
        if self.balls < sites:
            self.latch(111, cause_s=10**9)  # only a CHG brings balls
            return []
        if self.flux_pct <= 0.0:
            self.latch(121, cause_s=60)
            return []
        self.balls -= sites
        self.flux_pct = max(0.0, round(self.flux_pct - 0.5, 6))
        alarm = self.planned_alarm(lambda c: c != 210)
        self.run(Phase(FLUXING, 25), Phase(PLACING, 40, None, alarm),
                 Phase(INSPECTING, 15, self._inspected))
        return []

    def cmd_clr(self) -> list[str]:
        code = self.alarm
        reply = super().cmd_clr()
        if code == 121:
            self.flux_pct = 100.0
        return reply

    def _inspected(self) -> None:
        assert self.recipe is not None
        sites = int(self.recipe["sites"])
        nominal_flux = self.diameter / 10
        off = abs(float(self.recipe["flux"]) - nominal_flux) / nominal_flux
        rate = 30e-6 * (1.0 + 8.0 * max(0.0, off - 0.25))
        defects = round(sites * rate * self.random.uniform(0.5, 1.5))
        if self.defects is not None:
            defects = min(sites, self.defects)
        extra = 0 if self.defects is not None else defects // 4
        missing = defects - extra
        self.result = [self.wafer, "OK", str(sites), str(sites - missing - extra),
                       str(missing), str(extra), str(self.random.randint(6, 14))]
        self.state = DONE

    def cmd_rpr(self) -> list[str]:
        self.motion()
        assert self.result is not None
        defects = int(self.result[4]) + int(self.result[5])
        self.run(Phase("REPAIRING", 5 + 0.5 * defects, self._repaired))
        return []

    def _repaired(self) -> None:
        assert self.result is not None
        sites = self.result[2]
        self.result = [self.wafer, "OK", sites, sites, "0", "0", self.result[6]]
        self.state = DONE


__all__ = ["Mounter", "REPAIRING", "FLUXING", "PLACING", "INSPECTING"]

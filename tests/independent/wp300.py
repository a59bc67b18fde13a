"""A WP-300 stencil paste printer written from paste-printer.md alone. Pure: no I/O.

Strict choices where the spec is silent (docs/protocols.md, "Independent tools"),
beyond hostlink_tool's:

* LOD without an RCP since power-up or the last CHG is NAK 04; CHG clears the RCP at
  once (not when the changeover ends); an aborted CHG keeps the old stencil and paste;
* RCP: squeegee, speed and separation plain decimals; passes and wipe_every integers
  (``1.0`` is 03); name 1-32 characters;
* PRT with the paste at 0 % (or with 60 prints since the last wipe: the 61st would be
  "more than 60") is ACKed and latches 102 (220) at once without printing;
* a print takes 0.4 % of the paste and counts in prints_since_wipe when it starts;
* FIL from ALARM 102 with a wafer inside ends in DONE with RES status ALARM;
* the wafer stays in the tool through ULD's WIPING and UNLOADING (ABT then: DONE,
  ABORTED); RES of a wafer never printed reports zeros.
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
    UNLOADING,
    HostLinkTool,
    Phase,
    name,
    number,
)

PRINTING, INSPECTING, WIPING, FILLING = "PRINTING", "INSPECTING", "WIPING", "FILLING"
ANY = None
ONLY_IDLE = frozenset({IDLE})


class Printer(HostLinkTool):
    idn = ("ACME-PRINT", "WP-300", "SN1042", "2.4.1")
    alarm_texts = {102: "PASTE EMPTY", 210: "ALIGNMENT FAILED", 220: "STENCIL CLOGGED",
                   300: "SQUEEGEE PRESSURE FAULT", 400: "DOOR OPEN", 900: "EMERGENCY STOP"}
    commands = {
        "IDN": (0, ANY, "cmd_idn"), "STS": (0, ANY, "cmd_sts"), "ALR": (0, ANY, "cmd_alr"),
        "CLR": (0, ANY, "cmd_clr"), "ABT": (0, ANY, "cmd_abt"),
        "RCP": (7, ONLY_IDLE, "cmd_rcp"), "CHG": (2, ONLY_IDLE, "cmd_chg"),
        "LOD": (1, ONLY_IDLE, "cmd_lod"), "PRT": (0, frozenset({READY}), "cmd_prt"),
        "RES": (0, frozenset({DONE}), "cmd_res"), "ULD": (0, frozenset({DONE}), "cmd_uld"),
        "WPE": (0, ONLY_IDLE, "cmd_wpe"), "FIL": (0, ONLY_IDLE, "cmd_fil"),
    }

    def __init__(self, *, stencil: str = "ST-300-100", paste: str = "Pb95Sn5",
                 paste_pct: float = 87.5, prints_since_wipe: int = 12, seed: int = 15,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stencil, self.paste = stencil, paste
        self.paste_pct = paste_pct
        self.prints_since_wipe = prints_since_wipe
        self.recipe: dict[str, float | str] | None = None
        self.changing_to: tuple[str, str] | None = None
        self.random = random.Random(seed)

    def allowed_in_alarm(self, cmd: str) -> bool:
        return cmd == "FIL" and self.alarm == 102

    def status_fields(self) -> list[str]:
        return [self.state, self.wafer, str(self.alarm), str(self.prints_since_wipe),
                f"{self.paste_pct:.1f}", self.stencil, self.paste]

    def failed_result(self, status: str) -> list[str]:
        if self.result is not None and self.result[1] == "OK":
            return [self.wafer, status, *self.result[2:]]
        return [self.wafer, status, "0.0", "0.0", "0.0", "0", "0"]

    def cmd_rcp(self, rname: str, squeegee: str, speed: str, separation: str, stencil: str,
                passes: str, wipe_every: str) -> list[str]:
        recipe: dict[str, float | str] = {
            "name": name(rname),
            "squeegee": number(squeegee, 0.5, 10.0),
            "speed": number(speed, 5, 200),
            "separation": number(separation, 0.1, 10.0),
            "passes": number(passes, 1, 3, integer=True),
            "wipe_every": number(wipe_every, 0, 50, integer=True),
        }
        if stencil != self.stencil:
            raise Nak(3)
        self.recipe = recipe
        return []

    def cmd_chg(self, stencil: str, paste: str) -> list[str]:
        name(stencil), name(paste)
        self.motion()
        self.recipe = None
        self.changing_to = (stencil, paste)
        self.run(Phase(CHANGEOVER, 600, self._changed))
        return []

    def _changed(self) -> None:
        assert self.changing_to is not None
        self.stencil, self.paste = self.changing_to
        self.changing_to = None
        self.prints_since_wipe = 0
        self.state = IDLE

    def cmd_lod(self, wafer_id: str) -> list[str]:
        if self.recipe is None:
            raise Nak(4)
        self.load(wafer_id)
        return []

    def cmd_prt(self) -> list[str]:
        self.motion()
        assert self.recipe is not None
        if self.paste_pct <= 0.0:
            self.latch(102)
            return []
        if self.prints_since_wipe >= 60:
            self.latch(220)
            return []
        self.paste_pct = max(0.0, round(self.paste_pct - 0.4, 6))
        self.prints_since_wipe += 1
        alarm = self.planned_alarm(lambda c: c != 210)
        self.run(Phase(PRINTING, 30 * float(self.recipe["passes"]), None, alarm),
                 Phase(INSPECTING, 10, self._inspected))
        return []

    def _inspected(self) -> None:
        build_up = self.prints_since_wipe
        mean = 99.0 - 0.25 * build_up + self.random.gauss(0, 0.8)
        spread = 12.0 + 0.4 * build_up
        low, high = mean - spread * self.random.uniform(0.9, 1.3), mean + spread
        bridges = max(0, int((build_up - 40) / 5))
        insufficient = 0 if low >= 50 else 1 + int((50 - low) / 5)
        self.result = [self.wafer, "OK", f"{mean:.1f}", f"{low:.1f}", f"{high:.1f}",
                       str(bridges), str(insufficient)]
        self.state = DONE

    def cmd_uld(self) -> list[str]:
        self.motion()
        every = int(self.recipe["wipe_every"]) if self.recipe else 0
        if every > 0 and self.prints_since_wipe >= every:
            self.run(Phase(WIPING, 15, self._wiped), Phase(UNLOADING, 10, self._unloaded))
        else:
            self.run(Phase(UNLOADING, 10, self._unloaded))
        return []

    def cmd_wpe(self) -> list[str]:
        self.motion()
        self.run(Phase(WIPING, 15, self._wiped_idle))
        return []

    def _wiped(self) -> None:
        self.prints_since_wipe = 0
        self.log.append("wiped")

    def _wiped_idle(self) -> None:
        self._wiped()
        self.state = IDLE

    def cmd_fil(self) -> list[str]:
        self.motion()
        self.alarm = 0  # FIL is what clears 102: its cause goes with the refill
        self.run(Phase(FILLING, 120, self._filled))
        return []

    def _filled(self) -> None:
        self.paste_pct = 100.0
        self.state = DONE if self.wafer else IDLE

    def abort_phases(self) -> None:
        self.changing_to = None  # an aborted CHG keeps the old stencil and paste

    def cmd_abt(self) -> list[str]:
        filling_empty = self.state == FILLING and self.paste_pct <= 0.0
        reply = super().cmd_abt()
        if filling_empty:
            self.latch(102)
        return reply


__all__ = ["Printer", "ALARM"]

"""The WP-300 printer model's host for the simulator's printer tests (test_sim_printer.py,
test_sim_printer_faults.py)."""

from __future__ import annotations

from sim_host import ModelHost, assert_stays

RECIPE = ["HIPB-1", "6.0", "40", "1.0", "ST-300-100", "1", "20"]

__all__ = ["RECIPE", "Host", "assert_stays"]


class Host(ModelHost):
    RECIPE = RECIPE

    def sts(self) -> dict[str, str]:
        keys = "state wafer_id alarm prints_since_wipe paste stencil alloy".split()
        return dict(zip(keys, self("STS"), strict=True))

    def print_wafer(self, wafer: str = "W1", recipe: list[str] = RECIPE) -> list[str]:
        self.load(wafer, recipe)
        self("PRT")
        self.wait(30 * int(recipe[5]) + 10)
        assert self.state() == "DONE"
        return self("RES")

    def unload(self) -> None:
        self("ULD")
        self.wait(10 + (15 if self.state() == "WIPING" else 0))
        assert self.state() == "IDLE"

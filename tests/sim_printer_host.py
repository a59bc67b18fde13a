"""A WP-300 printer model driven the way the link drives it, in tool time, for the
simulator's printer tests (test_sim_printer.py, test_sim_printer_faults.py)."""

from __future__ import annotations

import pytest

from sim.clock import ManualClock
from sim.hostlink import Nak
from sim.printer import PastePrinterModel

RECIPE = ["HIPB-1", "6.0", "40", "1.0", "ST-300-100", "1", "20"]


class Host:
    """Drives a model the way the link does: command, args, tool time from a ManualClock."""

    def __init__(self, model: PastePrinterModel) -> None:
        self.model = model
        self.clock = ManualClock()

    def __call__(self, cmd: str, *args: str) -> list[str]:
        return self.model.handle(cmd, list(args), self.clock.now())

    def nak(self, cmd: str, *args: str) -> int:
        with pytest.raises(Nak) as refused:
            self(cmd, *args)
        return refused.value.code

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def state(self) -> str:
        return self("STS")[0]

    def sts(self) -> dict[str, str]:
        keys = "state wafer_id alarm prints_since_wipe paste stencil alloy".split()
        return dict(zip(keys, self("STS"), strict=True))

    def load(self, wafer: str = "W1", recipe: list[str] = RECIPE) -> None:
        if self.model.recipe is None:
            self("RCP", *recipe)
        self("LOD", wafer)
        self.wait(20)

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


def assert_stays(host: Host, state: str, seconds: float) -> None:
    """``state`` holds for ``seconds`` (checked just before the end) and not a moment longer."""
    assert host.state() == state
    host.wait(seconds - 0.25)  # quarter seconds add up exactly in binary floating point
    assert host.state() == state
    host.wait(0.25)
    assert host.state() != state

"""A HostLink/1 tool model (WP-300 printer, WBM-300 ball mounter) driven the way the link
drives it, in tool time from a ManualClock: the simulator's model tests' host."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from sim.clock import ManualClock
from sim.hostlink import Nak


class ModelHost:
    """Command, args and tool time to a model; ``RECIPE``: the tool's RCP arguments."""

    RECIPE: ClassVar[list[str]]

    def __init__(self, model: Any) -> None:
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

    def load(self, wafer: str = "W1", recipe: list[str] | None = None) -> None:
        if self.model.recipe is None:
            self("RCP", *(recipe or self.RECIPE))
        self("LOD", wafer)
        self.wait(20)


def assert_stays(host: ModelHost, state: str, seconds: float) -> None:
    """``state`` holds for ``seconds`` (checked just before the end) and not a moment longer."""
    assert host.state() == state
    host.wait(seconds - 0.25)  # quarter seconds add up exactly in binary floating point
    assert host.state() == state
    host.wait(0.25)
    assert host.state() != state

"""The simulator's time source.

Tool models are pure: every method takes ``now`` (tool seconds) and computes
state lazily from elapsed time, so a model never needs a ticking thread. The
servers read ``now`` from a clock object; any object with ``now()`` works, so
the controller may hand its own clock to an in-process simulated line and both
sides then agree on tool time exactly.
"""

from __future__ import annotations

import time


class ScaledClock:
    """Monotonic wall time multiplied by ``scale`` (tool seconds per wall second)."""

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.scale


class ManualClock:
    """A clock that only moves when told: for testing models deterministically."""

    scale = 1.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds
        return self._now

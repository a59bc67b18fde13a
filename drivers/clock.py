"""Tool time.

Everything that waits for or measures a tool works in *tool seconds*, read from
an injected clock. On real hardware the clock runs at wall speed
(``time_scale = 1.0``); against the simulator it runs ``time_scale`` times
faster, so a 600 s stencil changeover passes in 6 s of wall time at 100x.

The simulator keeps its own clock type (``sim.clock``) because it must not
import the drivers; both only need ``now()``, so one object can serve both
sides when the simulated line runs in the controller's process.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

# A sleep that wakes this much later than asked (wall s) met a stall: the event loop busy,
# or the process waiting for a core another process has. Remembered for STALL_MEMORY_S of
# wall time by what must act within a wall-time margin at simulator speed (the oven's exit
# between two arrivals, sequences/kinds/oven_exit.py): a loaded machine stalls again.
STALL_MIN_S = 0.01
STALL_MEMORY_S = 30.0
STALLS_KEPT = 32


class Clock(Protocol):
    """What drivers, sequences and the controller need of time."""

    scale: float

    def now(self) -> float:
        """Tool seconds since the clock started."""
        ...

    async def sleep(self, tool_seconds: float) -> None:
        """Wait this many tool seconds."""
        ...

    def recent_stall_s(self) -> float:
        """The longest a sleep woke late lately, in wall seconds (0 with no wall time)."""
        ...


class ScaledClock:
    """Monotonic wall time multiplied by ``scale`` (tool seconds per wall second)."""

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self._origin = time.monotonic()
        self._stalls: deque[tuple[float, float]] = deque(maxlen=STALLS_KEPT)  # (woke, late)

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.scale

    async def sleep(self, tool_seconds: float) -> None:
        wall_s = max(0.0, tool_seconds) / self.scale
        due = time.monotonic() + wall_s
        await asyncio.sleep(wall_s)
        woke = time.monotonic()
        if woke - due >= STALL_MIN_S:
            self._stalls.append((woke, woke - due))

    def recent_stall_s(self) -> float:
        since = time.monotonic() - STALL_MEMORY_S
        return max((late for woke, late in self._stalls if woke >= since), default=0.0)

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale})"


class ManualClock:
    """Tool time that moves only when something sleeps: each sleep advances it at once.

    For logic that waits on tools in memory (scripted tools, table tests): no wall
    time passes, so no test depends on how busy the machine is.
    """

    scale = float("inf")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, tool_seconds: float) -> None:
        self._now += max(0.0, tool_seconds)

    async def sleep(self, tool_seconds: float) -> None:
        self.advance(tool_seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real wait would

    def recent_stall_s(self) -> float:
        return 0.0  # no wall time passes

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:g})"

"""Commands applied on the tool's next tick: what a tool built on a scan cycle (a PLC) does.

The specs (reflow-oven.md, flux-cleaner.md) say what a COMMAND does and when it is refused
(exception 06 "not allowed in the current state"); they do not say that its effect is
visible by the time the Modbus reply goes out. A tool that runs its logic once a tick
answers the write at once, judged against the state it shows then, and carries the
command out at its next tick (``tick_s`` tool seconds, on the tick grid): until then
every register still shows the state before it (the oven's belt has not taken the wafer,
the cleaner is still DONE after UNLOAD, still in ALARM after CLEAR, ...).

Two readings of a second command while one waits for the tick (``pending``):

* ``"busy"`` (the strict one, and the usual PLC: one command slot): exception 06 until
  the tick has taken the first;
* ``"queue"``: judged against the state the commands waiting will leave, and carried out
  after them at the same tick.

A command a tick can no longer carry out (an alarm latched in between) is dropped and
logged ``dropped N``: its reply has gone, as on such a tool.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from tests.independent.modbus_codec import SERVER_DEVICE_BUSY, ModbusError

PENDING = ("busy", "queue")


class Ticking:
    """Mixed into a pure tool model with ``now``, ``log``, ``command(code)`` and
    ``_step(dt)``; its ``write_registers`` calls ``order(code)``, its ``advance`` is ours."""

    tick_s: float = 0.0
    pending_policy: str = "busy"
    now: float
    log: list[str]

    def late_commands(self, tick_s: float, pending: str = "busy") -> None:
        """From now on each command takes effect at the next tick (0: at once)."""
        if pending not in PENDING:
            raise ValueError(f"pending: one of {PENDING}, not {pending!r}")
        self.tick_s = tick_s
        self.pending_policy = pending
        self._pending: list[int] = []
        self._due = 0.0

    def command(self, code: int) -> None:  # the tool's own, carried out now
        raise NotImplementedError

    def _step(self, dt: float) -> None:
        raise NotImplementedError

    def order(self, code: int) -> None:
        """A COMMAND written by the host: carried out now, or judged now and queued."""
        if not self.tick_s:
            self.command(code)
            return
        pending = self._pending
        if pending and self.pending_policy == "busy":
            raise ModbusError(SERVER_DEVICE_BUSY)
        trial: Any = copy.deepcopy(self)
        trial.tick_s = 0.0
        trial._pending = []
        for waiting in pending:
            try:
                trial.command(waiting)
            except ModbusError:
                pass
        trial.command(code)  # 03/06 as the tool would answer now
        pending.append(code)
        self._due = (math.floor(self.now / self.tick_s + 1e-9) + 1) * self.tick_s

    def commands_waiting(self) -> int:
        return len(getattr(self, "_pending", ()))

    def advance_with_ticks(self, dt: float, step_s: float) -> None:
        """``advance``: steps of at most ``step_s``, the commands waiting carried out as the
        tick comes."""
        while dt > 1e-9:
            step = min(step_s, dt)
            if self.tick_s and self._pending and self.now + step >= self._due - 1e-9:
                step = max(0.0, self._due - self.now)
                if step > 1e-9:
                    self._step(step)
                    dt -= step
                self._tick()
                continue
            self._step(step)
            dt -= step

    def _tick(self) -> None:
        waiting, self._pending = self._pending, []
        for code in waiting:
            try:
                self.command(code)
            except ModbusError:
                self.log.append(f"dropped {code}")

"""One reply timer per link, not one per request.

A link has one request on the wire at a time. Arming a loop timer for each request and
cancelling it when the reply comes is a heap push, a cancel and a cancelled handle to pop
per request, more than the rest of the wait on a fast tool. ``Watchdog`` keeps one timer:
it fires at the earliest deadline it was armed for and, if the request waiting then still
has time left, arms itself again for that request's deadline. (``drivers/serial_link.py``
times its HostLink requests the same way, inline.)
"""

from __future__ import annotations

import asyncio
from typing import Any

EARLY_S = 1e-6  # a timer may run up to the loop's clock resolution before its time


class Watchdog:
    """Fails the awaited future with ``TimeoutError`` at its deadline (loop time)."""

    def __init__(self) -> None:
        self._waiting: asyncio.Future[Any] | None = None
        self._deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, loop: asyncio.AbstractEventLoop, waiting: asyncio.Future[Any],
              deadline: float) -> None:
        """``waiting`` is the request on the wire now; it times out at ``deadline``."""
        self._waiting, self._deadline = waiting, deadline
        timer = self.timer
        if timer is None or self._loop is not loop or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._loop = loop
            self.timer = loop.call_at(deadline, self._fire)

    def done(self) -> None:
        """The request is answered (or failed): nothing waits until the next ``watch``."""
        self._waiting = None

    def cancel(self) -> None:
        """The link closes: no timer is left behind."""
        self._waiting = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self) -> None:
        self.timer = None
        waiting, loop = self._waiting, self._loop
        if waiting is None or waiting.done() or loop is None:
            return  # nothing waits now: the next request arms it again
        if loop.time() >= self._deadline - EARLY_S:  # the loop runs timers that early
            waiting.set_exception(TimeoutError())
        else:
            self.timer = loop.call_at(self._deadline, self._fire)

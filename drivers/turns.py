"""Turns on a link: one request on the wire at a time, urgent requests before the queue.

A link carries one request at a time, and an ``asyncio.Lock`` grants it in arrival
order. At the oven that order can keep a wafer at the exit: the UNLOAD that frees it
queues behind the entrance's look and LOAD and the scheduler's status reads, and at
simulator speed (or on a busy machine) a few round trips are long enough for the next
wafer to reach the exit (alarm 530, reflow-oven.md). A task that marks itself urgent
(``urgent()``; the oven's exit watcher does) has its requests go before every
ordinary one still waiting; the request on the wire is never cut short. Urgent
requests among themselves, and ordinary ones, keep their arrival order.

Marked per task (a context variable), so a driver's methods need no flag: whatever
the exit watcher asks of the oven - the exit read, UNLOAD, the curve, a lost reply's
probe - goes first, and the same methods called by a wafer's step wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from contextvars import ContextVar

_URGENT: ContextVar[bool] = ContextVar("urgent link requests", default=False)


def urgent() -> None:
    """Every request this task sends from now on goes before the ordinary ones waiting.
    Call it at the top of the task's own coroutine: a task runs in a copy of its
    creator's context, so the mark stays with this task (and the tasks it creates)."""
    _URGENT.set(True)


def is_urgent() -> bool:
    return _URGENT.get()


class Turns:
    """``async with turns:`` holds the wire; urgent holders (``urgent()``) are let in first."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> tuple[int, int]:
        """(urgent, ordinary) requests waiting for the wire."""
        return (sum(not f.done() for f in self._urgent),
                sum(not f.done() for f in self._ordinary))

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        queue = self._urgent if _URGENT.get() else self._ordinary
        turn = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the wire, then cancelled
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def release(self) -> None:
        """Hand the wire to the next waiting (urgent first), or free it."""
        for queue in (self._urgent, self._ordinary):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # held on: the wire passes without a gap
                    return
        self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

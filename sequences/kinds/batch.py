"""A batch: several wafers riding one tool cycle together, each judged on its own.

The runner stays per wafer (one ``WaferRun`` and one task per wafer); a batch
tool's step is the same step run by every member at once, with a ``Batch``
handed to each through ``StepContext``. The batch is the meeting point:

* every member arrives (``arrive``) once its interlocks passed, or leaves
  (``leave``) if it never gets there (held at its interlock, aborted while
  waiting); the tool work starts only when every member has done one or the
  other, so no member's interlock check sees the tool already loaded;
* the tool work (LOAD, START, the wait for DONE) runs once, in a task of the
  batch's own, so a member held or cancelled meanwhile does not cancel it for
  the others; every member awaits its outcome (an alarm reaches all of them);
* each member then takes its own result and is judged on its own;
* the carrier goes out once, after every member is judged or has left
  (``judged``), so no wafer's result is asked after UNLOAD; if the tool cannot
  hand it out then (an alarm latched after the batch ended), the line is told
  (``kept_inside``) and its riders wait until it is out.

Pure asyncio; what the tool work is belongs to the kind (``sequences.kinds.barrier``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sequences.errors import SequenceError

if TYPE_CHECKING:
    from drivers.types import Alarm

Work = Callable[["Batch"], Awaitable[Any]]


class Batch:
    """The members of one batch and the single run of their tool work."""

    def __init__(self, batch_id: str, wafer_ids: list[str] | tuple[str, ...],
                 tool: str = "") -> None:
        if not wafer_ids:
            raise SequenceError(f"batch {batch_id}: a batch needs at least one wafer")
        if len(set(wafer_ids)) != len(wafer_ids):
            raise SequenceError(f"batch {batch_id}: a wafer appears twice")
        self.batch_id = batch_id
        self.members: tuple[str, ...] = tuple(wafer_ids)
        self.tool = tool
        self.arrived: list[str] = []  # in arrival order
        self.left: set[str] = set()  # never arrived, or gone before being judged
        self.done_with: set[str] = set()  # judged (or left after arriving)
        self.journals: dict[str, Any] = {}  # wafer -> its journal (intents are per wafer)
        self._task_of: dict[Any, str] = {}  # a member's step task -> its wafer
        self._all_in = asyncio.Event()
        self._all_out = asyncio.Event()
        self._work: asyncio.Future[Any] | None = None
        self._unload: asyncio.Future[Any] | None = None
        # The line's word for an alarm that keeps the carrier in the tool once every rider
        # is judged (set by controller/line/batching.py): it records the alarm, takes the
        # tool out of service and holds the riders until the carrier is out. None (a step
        # run on its own, no line): the riders fail with the alarm.
        self.kept_inside: Callable[[Alarm], None] | None = None

    @classmethod
    def found(cls, batch_id: str, wafer_ids: list[str] | tuple[str, ...], tool: str) -> Batch:
        """A carrier recovery found in its tool after a stop: every member rode in it."""
        batch = cls(batch_id, wafer_ids, tool)
        batch.arrived = list(batch.members)
        return batch

    def __repr__(self) -> str:
        return f"Batch({self.batch_id}, {len(self.members)} wafers)"

    @property
    def riders(self) -> tuple[str, ...]:
        """The wafers that went into the tool (arrived, in member order)."""
        return tuple(w for w in self.members if w in self.arrived)

    def _member(self, wafer_id: str) -> None:
        if wafer_id not in self.members:
            raise SequenceError(f"wafer {wafer_id} is not in batch {self.batch_id}")

    def _check_in(self) -> None:
        if len(self.arrived) + len(self.left - set(self.arrived)) >= len(self.members):
            self._all_in.set()

    def _check_out(self) -> None:
        if self.done_with >= set(self.riders) and self._all_in.is_set():
            self._all_out.set()

    def wafer_of_current_task(self) -> str | None:
        """The member whose step runs in this task (a step's unload names no wafer)."""
        return self._task_of.get(asyncio.current_task())

    async def run(self, wafer_id: str, work: Work, journal: Any = None) -> Any:
        """Arrive, and the tool work's outcome once it has run for every member who came.

        The first member past the meeting point starts the work; a member cancelled
        while waiting only stops waiting (the work goes on for the others)."""
        self._member(wafer_id)
        if wafer_id in self.arrived or wafer_id in self.left:
            raise SequenceError(f"wafer {wafer_id} already arrived at batch {self.batch_id}")
        self.arrived.append(wafer_id)
        self.journals[wafer_id] = journal
        self._task_of[asyncio.current_task()] = wafer_id
        self._check_in()
        await self._all_in.wait()
        if self._work is None:
            self._work = asyncio.ensure_future(work(self))
        return await asyncio.shield(self._work)

    def leave(self, wafer_id: str) -> None:
        """The wafer is finished with the batch (judged, failed, held or aborted); a wafer
        that never arrived no longer holds the others back. Idempotent."""
        self._member(wafer_id)
        self.left.add(wafer_id)
        if wafer_id in self.arrived:
            self.done_with.add(wafer_id)
        self._check_in()
        self._check_out()

    async def judged(self, wafer_id: str, unload: Callable[[], Awaitable[Any]]) -> None:
        """This member is judged; once all riders are, ``unload`` runs once (every member
        waits for it, so none moves on with the carrier still in the tool)."""
        self._member(wafer_id)
        self.done_with.add(wafer_id)
        self._check_out()
        await self._all_out.wait()
        if self._unload is None:
            self._unload = asyncio.ensure_future(unload())
        await asyncio.shield(self._unload)

    async def cancel(self) -> None:
        """The controller stops dead: the tool work is left where it is (recovery asks the
        tool later), its task is ended, not orphaned."""
        for future in (self._work, self._unload):
            if future is not None and not future.done():
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await future

    @property
    def unloaded(self) -> bool:
        return self._unload is not None and self._unload.done() and \
            not self._unload.cancelled() and self._unload.exception() is None

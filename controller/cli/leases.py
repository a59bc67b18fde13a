"""One controller per line and per lot: the leases ``bumpline run`` and ``serve`` hold.

Both commands lock the line (``[line] id`` of the configuration, else the file's
resolved path, else ``sim`` for the in-process simulated line) and every lot they
run in the database, renew the leases while they run and release them at the end;
a second controller is refused with the holder named (docs/database.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

SIM_LINE_ID = "sim"  # the in-process simulated line's id for the line lock


def line_id(args: argparse.Namespace) -> str:
    """The line to lock: ``[line] id``, else the configuration's resolved path, else "sim"."""
    if not args.line:
        return SIM_LINE_ID
    from pathlib import Path

    from drivers.line_config import load_line_config

    config = load_line_config(args.line)
    return config.id or str(Path(args.line).resolve())


class Leases:
    """The line and lot locks this controller holds, renewed in the background.

    Leases are in wall seconds (they are about processes, not tools), like link
    timeouts; ``clock`` (monotonic seconds) says how long since a lease was renewed.
    """

    def __init__(
        self, store: Any, holder: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from controller.store import DEFAULT_LEASE_S, Holder

        self.store, self.holder, self.clock = store, Holder(holder), clock
        self.lease_s = DEFAULT_LEASE_S
        self.held: dict[str, Any] = {}  # resource -> LockInfo
        self._renewed: dict[str, float] = {}  # resource -> when last taken or renewed (wall)
        self.lost: str | None = None  # why a lock was lost, once it was
        # the running controller's stop(), or a task's cancel (whose bool is not read)
        self.stop: Callable[[], object] | None = None

    def take_line(self, line: str) -> None:
        lock = self.store.acquire_line_lock(line, lease_s=self.lease_s, holder=self.holder)
        self.held[lock.resource] = lock
        self._renewed[lock.resource] = self.clock()

    def take_lot(self, lot_id: str) -> None:
        """Lock a lot; ``LockHeldError`` (a ``StoreError``) names the controller running it."""
        from controller.store import lot_resource

        if lot_resource(lot_id) not in self.held:
            lock = self.store.acquire_lot_lock(lot_id, lease_s=self.lease_s, holder=self.holder)
            self.held[lock.resource] = lock
            self._renewed[lock.resource] = self.clock()

    def release_lots(self) -> None:
        for resource in [r for r in self.held if r.startswith("lot:")]:
            self.store.release_lock(self.held.pop(resource))

    def release_all(self) -> None:
        for lock in self.held.values():
            with contextlib.suppress(Exception):  # best effort: the lease expires anyway
                self.store.release_lock(lock)
        self.held.clear()

    async def heartbeat(self) -> None:
        """Renew every lease a third of the way through it.

        A lock taken over stops the controller at once. A renewal that fails otherwise (the
        database unreachable, its connection lost, locked past its busy timeout) says so and
        is tried again at the next beat - unless the lease could run out before that beat:
        then the controller stops too, for it can no longer know it holds the line, and the
        next controller may take it over. Nothing here ends the heartbeat silently."""
        from controller.persistence.base import reason
        from controller.store import StoreError

        beat = self.lease_s / 3
        while True:
            await asyncio.sleep(beat)
            for resource, lock in list(self.held.items()):
                try:
                    self.held[resource] = self.store.renew_lock(lock, lease_s=self.lease_s)
                    self._renewed[resource] = self.clock()
                    continue
                except StoreError as exc:  # taken over: another controller holds it now
                    why = str(exc)
                except Exception as exc:  # the database failed us, not a verdict on the lock
                    since = self.clock() - self._renewed.get(resource, 0.0)
                    if since + beat < self.lease_s:
                        print(f"bumpline: renewing the lock on {lock.what} failed "
                              f"({reason(exc)}); trying again", file=sys.stderr, flush=True)
                        continue
                    why = (f"this controller could not renew its lock on {lock.what} for "
                           f"{since:.1f} s ({reason(exc)}); its lease may run out")
                self.held.pop(resource, None)
                self.lost = why
                print(f"bumpline: {why}: stopping", file=sys.stderr, flush=True)
                if self.stop is not None:
                    self.stop()
                return

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Leases]:
        """The heartbeat runs for the whole block (opening the line may take longer than
        a lease); the locks are released at its end."""
        beat = asyncio.create_task(self.heartbeat())
        try:
            yield self
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.release_all()

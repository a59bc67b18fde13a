"""What the equipment sends the host (S5F1, S6F11, S10F1), in order, from one task.

Queuing never waits, so a line event or an alarm is never held up by the host.
The sender task delivers one primary at a time and waits for its reply (T3); a
primary the host cannot take goes to the spool in the database if it is one the
host spools (S2F43 and ENABLESPOOL, spool_capability.py), and while the spool is
active the spooled kinds queue behind it there, so the host receives everything
in the order it happened (spool.py). A primary without a reply in T3 is E30's
communication failure: the equipment is not communicating until an S1F13/S1F14
exchange again, and spools meanwhile. A message not spooled goes to a
communicating host even while the spool waits (S10F1 by default), and is dropped
(logged) when the host cannot take it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from controller.gem import ids
from controller.gem.context import Equipment
from controller.gem.hsms import HostAborted, HsmsError, ReplyTimeout
from controller.gem.secs2 import Item, decode

log = logging.getLogger("controller.gem")

@dataclass(frozen=True)
class Outgoing:
    stream: int
    function: int
    body: Item
    what: str  # for logs and the spool, e.g. "CEID 21"
    force: bool = False  # send even though the control state just went offline


class _Unspool:
    """A request, queued behind what is already waiting, to send the spool (S6F23 RSDC 0)."""


class Sender:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq
        self._queue: asyncio.Queue[Outgoing | _Unspool] = asyncio.Queue()

    def put(self, outgoing: Outgoing) -> None:
        self._queue.put_nowait(outgoing)

    def unspool(self) -> None:
        self._queue.put_nowait(_Unspool())

    async def drained(self) -> None:
        """Wait until everything queued so far has been sent or spooled."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Unspool):
                    await self._unspool()
                else:
                    await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad message must not end reporting
                log.exception("sending %r to the host failed", item)
            finally:
                self._queue.task_done()

    async def _deliver(self, out: Outgoing) -> None:
        eq = self.eq
        if not eq.control.state.online and not out.force:
            log.debug("%s not sent: control state %s", out.what, eq.control.state.label)
            return
        conn = eq.server.connection
        spoolable = eq.spooling.spools(out.stream, out.function)
        # while the spool is active, what is spooled queues behind it (order kept)
        if eq.comm.communicating and conn is not None and not (
                spoolable and eq.spooling.active):
            try:
                await conn.request(out.stream, out.function, out.body)
                return
            except HostAborted as exc:  # the host had it and refused it: not spooled
                log.warning("host refused %s: %s", out.what, exc)
                return
            except HsmsError as exc:
                if isinstance(exc, ReplyTimeout):  # E30: a communication failure
                    eq.communication_failed(f"no reply to {out.what}")
                log.warning("%s not delivered (%s)%s", out.what, exc,
                            ": spooled" if spoolable else "")
        if spoolable:
            eq.spooling.put(out.stream, out.function, out.body, out.what)
        else:
            log.warning("%s dropped: not communicating with the host and S%dF%d is not "
                        "spooled (S2F43, ENABLESPOOL)", out.what, out.stream, out.function)

    async def _unspool(self) -> None:
        eq = self.eq
        limit = int(eq.status.constant(ids.EC_MAX_SPOOL_TRANSMIT)) or None
        for spooled in eq.db.spooled(limit):
            conn = eq.server.connection
            if conn is None or not eq.comm.communicating:
                return  # the rest stays spooled for the next request
            try:
                await conn.request(spooled.stream, spooled.function, decode(spooled.body))
            except HostAborted:
                pass  # delivered, and refused: it leaves the spool all the same
            except HsmsError as exc:
                if isinstance(exc, ReplyTimeout):
                    eq.communication_failed(f"no reply to spooled {spooled.what}")
                log.warning("spool transmit stopped at %s: %s", spooled.what, exc)
                return
            if eq.db.delivered(spooled.id):  # emptied: SPOOL INACTIVE, reported first
                report = eq.spooling.deactivated_report()
                if report is not None:
                    await self._deliver(Outgoing(6, 11, report,
                                                 f"CEID {ids.CE_SPOOLING_DEACTIVATED}"))

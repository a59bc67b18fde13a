"""What the equipment sends the host (S5F1, S6F11, S10F1), in order, from one task.

Queuing never waits, so a line event or an alarm is never held up by the host.
The sender task delivers one primary at a time and waits for its reply (T3); a
primary the host cannot take goes to the spool in the database (streams 5 and 6,
E30's spoolable ones), and once anything is spooled the rest queues behind it
there, so the host receives everything in the order it happened (spool.py).
A primary without a reply in T3 is E30's communication failure: the equipment is
not communicating until an S1F13/S1F14 exchange again, and spools meanwhile.
S10F1 is not spooled: it goes to a communicating host even while the spool waits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from controller.gem import ids
from controller.gem.context import Equipment
from controller.gem.hsms import HostAborted, HsmsError, ReplyTimeout
from controller.gem.secs2 import Item, ascii_item, decode, encode

log = logging.getLogger("controller.gem")

SPOOLABLE_STREAMS = (5, 6)


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
        spoolable = out.stream in SPOOLABLE_STREAMS
        # once anything is spooled, spoolable reports queue behind it (order kept)
        if eq.comm.communicating and conn is not None and not (
                spoolable and eq.db.spool_count()):
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
            # ASCII as the link sends it (HsmsConnection.send): no text stops a spooling
            eq.db.spool(out.stream, out.function, encode(ascii_item(out.body)), out.what,
                        limit=int(eq.status.constant(ids.EC_MAX_SPOOL_SIZE)),
                        overwrite=bool(eq.status.constant(ids.EC_OVERWRITE_SPOOL)))
        else:
            log.warning("%s dropped: not communicating with the host and S%d is not spooled",
                        out.what, out.stream)

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
            eq.db.delivered(spooled.id)

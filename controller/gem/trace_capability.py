"""Trace data collection (E30 additional capability): the host asks for status variables
sampled at a fixed period (S2F23) and receives them in groups (S6F1).

S2F23 is ``L,5: TRID, DSPER, TOTSMP, REPGSZ, L,n SVID``:

* DSPER, the sampling period, is ``hhmmss`` or ``hhmmsscc`` (E5); at least
  ``MIN_PERIOD_S``, else TIAACK 3;
* TOTSMP samples are taken, the first at once; TOTSMP 0 ends the trace TRID names
  (TIAACK 0, running or not);
* every REPGSZ samples (>= 1, else TIAACK 5) go to the host in one S6F1
  ``L,4: TRID, SMPLN, STIME, L,(n x REPGSZ) SV``: SMPLN and STIME are the group's
  last sample's number (from 1) and time (CLOCK's format), the values sample after
  sample; the last group may be shorter, when TOTSMP is no multiple of REPGSZ;
* SVIDs must be status variables (a DV has no value outside its event, an EC is not
  sampled): anything else, or none, TIAACK 4; more than ``MAX_SVIDS``, TIAACK 1;
* a TRID already tracing is replaced; beyond ``MAX_TRACES`` traces, TIAACK 2.

Periods are kept without drift (sample k at start + (k-1) x DSPER on the event
loop's clock); a sample late because the loop was busy is taken late, not skipped.
Traces are not persisted, and end when communication with the host ends (a lost
link, a new host): a host sets them up again, as trace data is only of use live.
S6F1 goes through the sender like every primary (spooled only if S2F43 names it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import U4, A, B, Fmt, Item, L
from controller.gem.status_capability import ids_of

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.trace")

MAX_TRACES = 16  # traces running at once
MAX_SVIDS = 64  # status variables in one trace
MIN_PERIOD_S = 0.1  # a sample reads the store for the lot SVs: not faster than this

# TIAACK (E5)
TIAACK_OK, TOO_MANY_SVIDS, NO_MORE_TRACES, INVALID_PERIOD, UNKNOWN_SVID, INVALID_REPGSZ = range(6)


def parse_period(text: str) -> float | None:
    """DSPER ``hhmmss`` or ``hhmmsscc`` in seconds; None if it is neither."""
    if len(text) not in (6, 8) or not text.isascii() or not text.isdigit():
        return None
    hours, minutes, seconds = int(text[0:2]), int(text[2:4]), int(text[4:6])
    if minutes > 59 or seconds > 59:
        return None
    hundredths = int(text[6:8]) if len(text) == 8 else 0
    return hours * 3600 + minutes * 60 + seconds + hundredths / 100


@dataclass
class _Trace:
    trid: Item  # as the host sent it, echoed in each S6F1
    svids: list[int]
    period_s: float
    total: int
    group: int


class TraceCapability:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq
        self._running: dict[Any, asyncio.Task[None]] = {}  # TRID value -> its sampling

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(2, 23): self._s2f23}

    @property
    def running(self) -> list[Any]:
        """The TRIDs tracing now."""
        return [trid for trid, task in self._running.items() if not task.done()]

    def stop(self, trid: Any) -> None:
        task = self._running.pop(trid, None)
        if task is not None:
            task.cancel()

    def stop_all(self, why: str) -> None:
        if self._running:
            log.info("traces %s ended: %s", sorted(map(str, self._running)), why)
        for trid in list(self._running):
            self.stop(trid)

    async def _s2f23(self, message: Message) -> Reply:
        trid_item, dsper_item, totsmp_item, repgsz_item, svids_item = message.item.items
        if trid_item.fmt is Fmt.L or dsper_item.fmt is not Fmt.A:
            raise ValueError("TRID must be an integer or text and DSPER text")
        trid = trid_item.python()
        total, group = totsmp_item.number, repgsz_item.number
        if total == 0:  # E30: TOTSMP 0 ends the trace
            self.stop(trid)
            return 24, B(TIAACK_OK)
        svids = ids_of(svids_item)
        period = parse_period(dsper_item.text)
        refusal = None
        if period is None or period < MIN_PERIOD_S:
            refusal = INVALID_PERIOD
        elif len(svids) > MAX_SVIDS:
            refusal = TOO_MANY_SVIDS
        elif not svids or not all(self._is_sv(v) for v in svids):
            refusal = UNKNOWN_SVID
        elif group < 1 or total < 0:
            refusal = INVALID_REPGSZ
        elif trid not in self.running and len(self.running) >= MAX_TRACES:
            refusal = NO_MORE_TRACES
        if refusal is not None:
            return 24, B(refusal)
        assert period is not None
        self.stop(trid)  # the same TRID again: the new trace replaces it
        trace = _Trace(trid_item, svids, period, total, group)
        task = self._running[trid] = asyncio.ensure_future(self._sample(trace))
        task.add_done_callback(lambda done: self._ended(trid, done))
        return 24, B(TIAACK_OK)

    def _ended(self, trid: Any, task: asyncio.Task[None]) -> None:
        if self._running.get(trid) is task:
            del self._running[trid]

    def _is_sv(self, vid: int) -> bool:
        var = self.eq.status.variables.get(vid)
        return var is not None and var.kind is ids.VarKind.SV

    async def _sample(self, trace: _Trace) -> None:
        try:
            await self._samples(trace)
        except Exception:  # a fault of ours ends this trace, never the host link
            log.exception("trace %s ended: a sample could not be taken", trace.trid.python())

    async def _samples(self, trace: _Trace) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        values: list[Item] = []
        for number in range(1, trace.total + 1):
            values += self.eq.status.values(trace.svids)
            if number % trace.group == 0 or number == trace.total:
                stime = self.eq.status.clock_text(self.eq.db.now())
                self.eq.send_primary(6, 1, L(trace.trid, U4(number), A(stime), L(*values)),
                                     f"TRID {trace.trid.python()} sample {number}")
                values = []
            if number < trace.total:
                await asyncio.sleep(max(0.0, start + number * trace.period_s - loop.time()))

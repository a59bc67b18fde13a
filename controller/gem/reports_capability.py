"""Dynamic event reports: the host defines reports (S2F33), links them
to collection events (S2F35) and enables events (S2F37); the equipment then sends
S6F11 with the linked reports' values. S1F23 lists the events and their data. The
events are ids.EVENTS and, per alarm of the line, its own set and clear event.

Definitions, links and enables are persisted: a restart keeps what the host set up.
Every request is all or nothing: one bad entry refuses the whole message.

DATAIDs go on across restarts, so a report sent after a restart never repeats the
DATAID of one spooled before it: they are reserved in the database a block at a
time (one write per ``DATAID_BLOCK`` reports, none per report), and a restart
continues after the reserved block, skipping what the last run did not use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import U4, A, B, Fmt, Item, L
from controller.gem.status_capability import U4_MAX, id_item, ids_of

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem")

DATAID_BLOCK = 1000  # DATAIDs reserved in the database at a time
DATAID_MAX = 0xFFFF_FFFF  # DATAID is U4: it wraps to 1 after this


class ReportsCapability:
    def __init__(self, eq: Equipment, tools: list[str] | tuple[str, ...] = ()) -> None:
        self.eq = eq
        # the line's collection events: ids.EVENTS and each alarm's set and clear event
        self.events = {event.ceid: event for event in ids.events_of(tuple(tools))}
        self.reports: dict[int, list[int]] = {
            int(k): v for k, v in (eq.db.load("reports") or {}).items()}
        self.links: dict[int, list[int]] = {
            int(k): v for k, v in (eq.db.load("links") or {}).items()}
        self.enabled: set[int] = set(eq.db.load("enabled_events") or [])
        stored = eq.db.load("dataid", 1)
        if isinstance(stored, bool) or not isinstance(stored, int) or stored < 1:
            log.warning("stored next DATAID %r ignored: not a positive whole number; "
                        "DATAIDs start at 1", stored)
            stored = 1
        self._dataid = self._reserved_until = stored  # nothing of this run reserved yet

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(2, 33): self._s2f33, (2, 35): self._s2f35, (2, 37): self._s2f37,
                (1, 23): self._s1f23, (6, 15): self._s6f15, (6, 19): self._s6f19,
                (6, 21): self._s6f21}

    def event_report(self, ceid: int, values: dict[int, Item]) -> Item | None:
        """The S6F11 body for ``ceid``, or None when the host has not enabled it."""
        if ceid not in self.enabled:
            return None
        return L(U4(self._next_dataid()), U4(ceid), self._linked(ceid, values))

    def _linked(self, ceid: int, values: dict[int, Item]) -> Item:
        """RPT: each report linked to ``ceid`` with its variables' values."""
        return L(*(L(U4(rptid), L(*self.eq.status.values(self.reports[rptid], values)))
                   for rptid in self.links.get(ceid, ())))

    def _next_dataid(self) -> int:
        if self._dataid > DATAID_MAX:
            self._dataid = self._reserved_until = 1
        dataid = self._dataid
        if dataid >= self._reserved_until:  # reserved (persisted) before it is used
            self._reserved_until = dataid + DATAID_BLOCK
            self.eq.db.save("dataid", self._reserved_until)
        self._dataid += 1
        return dataid

    def _save(self) -> None:
        self.eq.db.save("reports", {str(k): v for k, v in self.reports.items()})
        self.eq.db.save("links", {str(k): v for k, v in self.links.items()})
        self.eq.db.save("enabled_events", sorted(self.enabled))

    async def _s2f33(self, message: Message) -> Reply:
        _dataid, definitions = message.item.items
        if not definitions.items:  # L,0: delete every report (and its links)
            self.reports.clear()
            self.links.clear()
            self._save()
            return 34, B(0)
        reports = dict(self.reports)
        for definition in definitions.items:
            rptid_item, vids_item = definition.items
            if rptid_item.fmt is Fmt.A:
                return 34, B(2)  # DRACK 2, invalid format: our RPTIDs are numbers, sent as U4
            rptid, vids = rptid_item.number, ids_of(vids_item)
            if not 0 <= rptid <= U4_MAX:
                return 34, B(2)  # no U4 holds it, and S6F11 carries it as U4
            if not vids:  # RPTID with no VIDs: delete that report (none: nothing to do)
                reports.pop(rptid, None)
                continue
            if rptid in reports:
                return 34, B(3)  # DRACK 3: RPTID already defined
            if any(v not in self.eq.status.variables for v in vids):
                return 34, B(4)  # DRACK 4: a VID does not exist
            reports[rptid] = vids
        self.reports = reports
        for ceid in list(self.links):  # links to deleted reports go with them
            self.links[ceid] = [r for r in self.links[ceid] if r in reports]
        self._save()
        return 34, B(0)

    async def _s2f35(self, message: Message) -> Reply:
        _dataid, links = message.item.items
        new = dict(self.links)
        for link in links.items:
            ceid_item, rptids_item = link.items
            ceid, rptids = ceid_item.number, ids_of(rptids_item)
            if ceid not in self.events:
                return 36, B(4)  # LRACK 4: CEID does not exist
            if not rptids:
                new.pop(ceid, None)  # L,0: unlink every report from the event
                continue
            if any(r not in self.reports for r in rptids):
                return 36, B(5)  # LRACK 5: RPTID does not exist
            if new.get(ceid):
                return 36, B(3)  # LRACK 3: CEID already has reports linked
            new[ceid] = rptids
        self.links = new
        self._save()
        return 36, B(0)

    async def _s2f37(self, message: Message) -> Reply:
        ceed_item, ceids_item = message.item.items
        if ceed_item.fmt is not Fmt.BOOLEAN:
            raise ValueError(f"CEED must be BOOLEAN, got {ceed_item!r}")
        enable, ceids = bool(ceed_item.scalar), ids_of(ceids_item) or list(self.events)
        if any(c not in self.events for c in ceids):
            return 38, B(1)  # ERACK 1: a CEID does not exist
        if enable:
            self.enabled.update(ceids)
        else:
            self.enabled.difference_update(ceids)
        self._save()
        return 38, B(0)

    # -- variable data collection: the host asks for reports now, outside their events

    async def _s6f15(self, message: Message) -> Reply:
        """Event report request: the reports linked to a CEID, as its S6F11 would carry them
        now, enabled or not (a DV has no value outside its event: L,0). An unknown CEID, or
        one with nothing linked, gets a zero-length RPT list."""
        ceid_item = message.item
        ceid = ceid_item.number
        if ceid not in self.events:
            return 16, L(U4(self._next_dataid()), id_item(ceid), L())
        return 16, L(U4(self._next_dataid()), U4(ceid), self._linked(ceid, {}))

    async def _s6f19(self, message: Message) -> Reply:
        """Individual report request: a report's values now; L,0 for an undefined RPTID."""
        vids = self.reports.get(message.item.number)
        return 20, L(*self.eq.status.values(vids or [], {}))

    async def _s6f21(self, message: Message) -> Reply:
        """Annotated individual report request: each VID with its value now."""
        vids = self.reports.get(message.item.number) or []
        values = self.eq.status.values(vids, {})
        return 22, L(*(L(U4(vid), value) for vid, value in zip(vids, values, strict=True)))

    async def _s1f23(self, message: Message) -> Reply:
        ceids = ids_of(message.body) or list(self.events)
        out = []
        for ceid in ceids:
            event = self.events.get(ceid)
            if event is None:
                out.append(L(id_item(ceid), A(""), L()))
            else:
                out.append(L(U4(ceid), A(event.name), L(*(U4(v) for v in event.dvids))))
        return 24, L(*out)

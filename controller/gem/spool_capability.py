"""Spooling (E30): which messages are spooled, the spool state, and the host's requests.

* S2F43/S2F44: the host names the streams and functions to spool
  (``L,m of L,2 <STRID> <L,n of FCNID>``; m = 0 spools nothing, n = 0 every
  primary of the stream we send). It replaces the previous setting, all or
  nothing, and is persisted. Until a host sends it, S5F1 and S6F11 are spooled
  (what the equipment always spooled). Refused (RSPACK 1) with a STRACK per
  stream in error: 1 stream 1 or 9 (never spooled), 2 a stream the equipment
  does not know, 3 a function the equipment never sends, 4 a secondary.
* ENABLESPOOL false: nothing new is spooled.
* The state model: SPOOL INACTIVE until the first message must be spooled, then
  SPOOL ACTIVE (SPOOLSTARTTIME; the SPOOLINGACTIVATED report goes into the spool
  ahead of that message) until the spool is emptied by S6F23 transmit or purge
  (SPOOLINGDEACTIVATED is reported). While active, what is spoolable queues in
  the spool behind what is there, so the host receives everything in order.
* S6F23: RSDC 0 transmits (through the sender, MAXSPOOLTRANSMIT at a time),
  RSDC 1 purges; RSDA 2 when there is nothing spooled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import U1, A, B, Item, L, ascii_item, encode
from controller.gem.status_capability import ids_of

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.spool")

# The primaries the equipment sends through its sender, by stream: what S2F43 can name.
SENT_PRIMARIES: dict[int, frozenset[int]] = {5: frozenset({1}), 6: frozenset({1, 11}),
                                              10: frozenset({1})}
NEVER_SPOOLED = frozenset({1, 9})  # E30: stream 1; stream 9 answers a host that is there
DEFAULT_SPOOLED: dict[int, list[int]] = {5: [1], 6: [11]}  # before any S2F43

# STRACK (E5)
NOT_ALLOWED, STREAM_UNKNOWN, FUNCTION_UNKNOWN, SECONDARY = 1, 2, 3, 4

SPOOL_INACTIVE, SPOOL_ACTIVE = 1, 2  # SPOOLSTATE


class SpoolCapability:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq
        # stream -> the functions spooled ([] = every primary of the stream we send)
        self.setting: dict[int, list[int]] = DEFAULT_SPOOLED
        stored = eq.db.load("spooled_messages")
        if stored is not None:
            try:
                self.setting = {int(s): [int(f) for f in fs] for s, fs in stored}
            except (TypeError, ValueError):
                log.warning("stored spooled streams and functions %r ignored: not an S2F43 "
                            "setting; S5F1 and S6F11 are spooled", stored)

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(2, 43): self._s2f43, (6, 23): self._s6f23}

    # -- what is spooled

    def spools(self, stream: int, function: int) -> bool:
        """A message the host cannot take goes to the spool (ENABLESPOOL and S2F43)."""
        if not self.eq.status.constant(ids.EC_ENABLE_SPOOL) or stream not in self.setting:
            return False
        functions = self.setting[stream]
        return function in functions if functions else (
            function in SENT_PRIMARIES.get(stream, ()))

    @property
    def active(self) -> bool:
        return bool(self.eq.db.spool_state()["active"])

    def put(self, stream: int, function: int, body: Item, what: str) -> None:
        """Spool a message; the first one activates the spool (its report goes first)."""
        if not self.active:
            self.eq.db.activate_spool()
            log.warning("spooling activated by %s: the host asks for the spool with S6F23",
                        what)
            report = self.eq.reports.event_report(ids.CE_SPOOLING_ACTIVATED, {})
            if report is None:
                pass  # the host did not enable the event
            elif self.spools(6, 11):
                self._store(6, 11, report, f"CEID {ids.CE_SPOOLING_ACTIVATED}")
            else:
                log.warning("CEID %d dropped: S6F11 is not spooled",
                            ids.CE_SPOOLING_ACTIVATED)
        self._store(stream, function, body, what)

    def _store(self, stream: int, function: int, body: Item, what: str) -> None:
        status = self.eq.status
        # ASCII as the link sends it (HsmsConnection.send): no text stops a spooling
        self.eq.db.spool(stream, function, encode(ascii_item(body)), what,
                         limit=int(status.constant(ids.EC_MAX_SPOOL_SIZE)),
                         overwrite=bool(status.constant(ids.EC_OVERWRITE_SPOOL)))

    def deactivated_report(self) -> Item | None:
        """The SPOOLINGDEACTIVATED report (if enabled), once the spool was emptied."""
        log.info("spooling deactivated: the spool is empty")
        return self.eq.reports.event_report(ids.CE_SPOOLING_DEACTIVATED, {})

    # -- status variables

    def state_item(self) -> Item:
        return U1(SPOOL_ACTIVE if self.active else SPOOL_INACTIVE)

    def time_item(self, key: str) -> Item:
        """SPOOLSTARTTIME ("started_at") or SPOOLFULLTIME ("filled_at"); empty if never."""
        stamp = self.eq.db.spool_state()[key]
        return A(self.eq.status.clock_text(datetime.fromisoformat(stamp)) if stamp else "")

    # -- the host's requests

    async def _s2f43(self, message: Message) -> Reply:
        if message.body is None:
            raise ValueError("S2F43 without a body")  # S9F7
        setting: dict[int, list[int]] = {}
        errors = []
        for entry in message.body.items:
            strid_item, fcnids_item = entry.items
            stream, functions = strid_item.number, ids_of(fcnids_item)
            strack, wrong = self._check(stream, functions)
            if strack:
                errors.append(L(U1(stream), B(strack), L(*(U1(f) for f in wrong))))
            setting[stream] = sorted(set(functions))
        if errors:
            log.warning("S2F43 refused: %s", errors)
            return 44, L(B(1), L(*errors))  # RSPACK 1: nothing changed
        self.setting = setting
        self.eq.db.save("spooled_messages", sorted([s, f] for s, f in setting.items()))
        log.info("spooled streams and functions set by the host: %s",
                 setting or "none (spooling off)")
        return 44, L(B(0), L())

    def _check(self, stream: int, functions: list[int]) -> tuple[int, list[int]]:
        """(STRACK, the functions in error) for one stream of S2F43; (0, []) when fine."""
        if stream in NEVER_SPOOLED:
            return NOT_ALLOWED, functions
        if stream not in self.eq.streams():
            return STREAM_UNKNOWN, functions
        secondary = [f for f in functions if f % 2 == 0]
        if secondary:
            return SECONDARY, secondary
        unknown = [f for f in functions if f not in SENT_PRIMARIES.get(stream, ())]
        if unknown:
            return FUNCTION_UNKNOWN, unknown
        return 0, []

    async def _s6f23(self, message: Message) -> Reply:
        rsdc = message.body.scalar if message.body is not None else None
        if rsdc not in (0, 1):
            raise ValueError(f"RSDC {rsdc!r} is neither 0 (transmit) nor 1 (purge)")
        if not self.eq.db.spool_count():
            if self.active:  # activated with nothing kept (e.g. a full spool refusing)
                self.eq.db.deactivate_spool()
                self._report_deactivated()
            return 24, B(2)  # no spooled data
        if rsdc == 1:
            self.eq.db.purge()
            self._report_deactivated()
        else:
            self.eq.sender.unspool()
        return 24, B(0)

    def _report_deactivated(self) -> None:
        report = self.deactivated_report()
        if report is not None:
            self.eq.send_primary(6, 11, report, f"CEID {ids.CE_SPOOLING_DEACTIVATED}")

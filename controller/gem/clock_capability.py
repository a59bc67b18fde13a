"""Clock (E30 additional capability): the host reads the equipment's time (S2F17/S2F18)
and sets it (S2F31/S2F32).

The controller's PC keeps its own clock (NTP, the plant's time service): a GEM host has
no business moving the operating system's clock, and the store's records (wafer
events, alarms, the audit log) stay in the PC's UTC. What the host sets is the clock
the *host interface* shows: the difference between the host's time and the PC's is
kept (persisted, so a restart keeps it) and added to every time GEM sends (CLOCK,
S2F18, SPOOLSTARTTIME, SPOOLFULLTIME). A host that sends its local time then reads its
local time back, whatever zone the PC runs in (docs/gem.md, "Clock").

TIME is A[12] ``YYMMDDhhmmss`` or A[16] ``YYYYMMDDhhmmsscc`` (E5; TIMEFORMAT 0 or 1
says which one we send); S2F31 takes either, whatever TIMEFORMAT says. A time that
is not one of them, or not a real date, gets TIACK 1 and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import A, B, Fmt

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.clock")

TIACK_OK, TIACK_ERROR = 0, 1  # E5 TIACK: 1 = error, not done
_OFFSET_KEY = "clock_offset_s"


def parse_time(text: str) -> datetime | None:
    """E5 TIME in either form we know, as a naive datetime; None if it is not one."""
    if not text.isascii() or not text.isdigit():
        return None
    try:
        if len(text) == 12:  # YYMMDDhhmmss: this century's year
            return datetime.strptime("20" + text, "%Y%m%d%H%M%S")
        if len(text) == 16:  # YYYYMMDDhhmmsscc: cc in hundredths
            whole = datetime.strptime(text[:14], "%Y%m%d%H%M%S")
            return whole + timedelta(milliseconds=10 * int(text[14:]))
    except ValueError:  # month 13, 30 February, hour 24
        return None
    return None


class ClockCapability:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq
        stored = eq.db.load(_OFFSET_KEY, 0.0)
        if isinstance(stored, bool) or not isinstance(stored, (int, float)):
            log.warning("stored clock offset %r ignored: not a number of seconds; the host "
                        "interface shows the PC's UTC until the host sets the time", stored)
            stored = 0.0
        self.offset = timedelta(seconds=float(stored))

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(2, 17): self._s2f17, (2, 31): self._s2f31}

    def shown(self, when: datetime) -> datetime:
        """A time of the PC's clock (UTC) as the host interface shows it."""
        return when + self.offset

    async def _s2f17(self, message: Message) -> Reply:
        return 18, A(self.eq.status.clock_text(self.eq.db.now()))

    async def _s2f31(self, message: Message) -> Reply:
        item = message.item
        if item.fmt is not Fmt.A:
            raise ValueError(f"TIME must be ASCII, got {item!r}")
        wanted = parse_time(item.text)
        if wanted is None:
            log.warning("the host's time %r refused: not YYMMDDhhmmss or YYYYMMDDhhmmsscc",
                        item.text)
            return 32, B(TIACK_ERROR)
        # Any real date is taken, however far from the PC's: a PC whose clock is wrong
        # (a flat CMOS battery) is what a host setting the time is for.
        offset = wanted - self.eq.db.now().replace(tzinfo=None)
        self.offset = offset
        self.eq.db.save(_OFFSET_KEY, offset.total_seconds())
        self.eq.commands.audit("gem.clock", f"host set the clock to {item.text} "
                               f"({offset.total_seconds():+.2f} s from the PC's UTC)")
        log.info("host set the clock to %s: %+.2f s from the PC's UTC", item.text,
                 offset.total_seconds())
        return 32, B(TIACK_OK)

"""Terminal services: text between the host and the operator.

S10F3 (host → equipment, terminal display single) is shown to the operator: it
goes to the ``on_terminal`` callback (the live view or operator screen), the log,
and the audit log, and is answered with ACKC10 0 (2 for a TID other than 0:
terminal not available). S10F5 (multi-block) is shown the same way, its lines
joined into one message. ``to_host`` sends operator
text (and the equipment's own notices, such as why a process program was
refused) as S10F1; it is queued like every other primary and never waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import A, B, Item, L, ascii_text

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.terminal")

TID = 0  # bumpline has one operator terminal


class TerminalCapability:
    def __init__(self, eq: Equipment, on_terminal: Callable[[str], None] | None) -> None:
        self.eq = eq
        self.on_terminal = on_terminal
        self.received: list[str] = []  # this run's host messages, newest last

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(10, 3): self._s10f3, (10, 5): self._s10f5}

    def to_host(self, text: str) -> None:
        self.eq.send_primary(10, 1, L(B(TID), A(ascii_text(text))), "S10F1 terminal text")

    async def _s10f3(self, message: Message) -> Reply:
        tid_item, text_item = message.item.items
        return 4, self._display(tid_item, text_item.text)

    async def _s10f5(self, message: Message) -> Reply:
        """Multi-block display: the lines shown as one message, one line each."""
        tid_item, lines_item = message.item.items
        return 6, self._display(tid_item, "\n".join(line.text for line in lines_item.items))

    def _display(self, tid_item: Item, text: str) -> Item:
        """ACKC10 for a host's text: 0 shown, 2 no such terminal."""
        if tid_item.scalar != TID:  # E5 ACKC10 2: terminal not available
            log.warning("message from the host for terminal %r (we have %d): %s",
                        tid_item.scalar, TID, text)
            return B(2)
        self.received.append(text)
        log.warning("message from the host: %s", text)
        self.eq.commands.audit("gem.terminal", text)
        if self.on_terminal is not None:
            try:
                self.on_terminal(text)
            except Exception:  # a display must never break the host link
                log.exception("terminal display failed")
        return B(0)

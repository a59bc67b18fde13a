"""The EP-25's numbered event log: what it pushes, and what it replays to ``EVENTS?``.

Its own piece because the spec makes it outlive everything else the tool holds
(../shared/specs/barrier-plater.md, "Link" and "Power loss"): the numbering is
kept across host connections and tool restarts, and the last 1,000 events are
replayed on request. The model (sim/plater.py) pushes; the server drains the
outbox onto the host connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sim.plater_process import EVENT_LOG_SIZE


class EventLog:
    """Numbered event lines (+1 per event), the last ``EVENT_LOG_SIZE`` of them kept."""

    def __init__(self) -> None:
        self.seq = 0  # the last number given
        self._kept: deque[tuple[int, str]] = deque(maxlen=EVENT_LOG_SIZE)
        self._outbox: list[str] = []  # lines not yet pushed to the host

    def push(self, name: str, *fields: str) -> None:
        self.seq += 1
        line = " ".join((f"!{self.seq}", name, *fields))
        self._kept.append((self.seq, line))
        self._outbox.append(line)

    def after(self, seq: int) -> list[str]:
        """The kept lines numbered after ``seq``, oldest first."""
        return [line for s, line in self._kept if s > seq]

    def replay(self, seq: int) -> int:
        """Queue the kept lines after ``seq`` behind anything already waiting to go out (an
        ``EVENTS?`` reply follows them); how many."""
        lines = self.after(seq)
        self._outbox.extend(lines)
        return len(lines)

    def drain(self) -> list[str]:
        """Lines raised or replayed since the last call, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    # --- through a power loss ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "log": [line for _, line in self._kept]}

    def restore(self, saved: dict[str, Any]) -> None:
        """The numbering and the kept lines survive; nobody was connected to hear the rest."""
        self.seq = int(saved["seq"])
        first = self.seq - len(saved["log"]) + 1
        self._kept.clear()
        self._kept.extend((first + i, line) for i, line in enumerate(saved["log"]))
        self._outbox.clear()

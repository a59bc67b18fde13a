"""Tool time for a lot's records: what the report's durations are measured in.

Under simulation the wall clock says a 3.7 h lot took a minute, so every
duration in the report is in *tool seconds*. The store keeps a tool time
(``drivers/clock.py``) beside the wall time of each transition, step, alarm and
tool-state change; a record with only a wall time (an operator's request) is
placed by interpolating between its neighbours.

Each controller run starts its clock at 0, so a lot continued with ``--resume``
spans several clock *sessions*. A session ends where tool time goes back, or
advances far slower than the session's own rate so far (a new clock that
happened to start above the old one's last reading). Lot time is the sessions
laid end to end: time with no controller running is not tool time, and is not
counted (docs/operators.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# A pair of readings at least this far apart in wall time whose tool-time rate is below
# this share of the session's rate so far starts a new session (a restarted clock).
_MIN_RATE_WALL_S = 1.0
_NEW_CLOCK_RATE_SHARE = 0.5
# Wall and tool time are read at slightly different moments: tool time going back by
# less than this (tool seconds) is that jitter, not a new clock.
_JITTER_TOOL_S = 30.0


@dataclass(frozen=True)
class Session:
    """One controller run's stretch of a lot: wall and tool time at its ends."""

    wall0: datetime
    wall1: datetime
    tool0: float
    tool1: float
    offset: float  # lot seconds at tool0

    @property
    def span(self) -> float:
        return self.tool1 - self.tool0


class Timeline:
    """Maps (wall time, tool time or None) to *lot seconds* from the lot's first record."""

    def __init__(self, anchors: Iterable[tuple[datetime, float | None]]) -> None:
        points = sorted(anchors, key=lambda a: a[0])
        timed = [(w, t) for w, t in points if t is not None]
        if not timed and points:
            # No tool times at all (records from before tool time was kept): wall time.
            first = points[0][0]
            timed = [(w, (w - first).total_seconds()) for w, _ in points]
        self.sessions: list[Session] = []
        groups: list[list[tuple[datetime, float]]] = []
        for wall, tool in timed:
            if not groups or _new_clock(groups[-1], wall, tool):
                groups.append([(wall, tool)])
            elif tool >= groups[-1][-1][1]:
                groups[-1].append((wall, tool))
        offset = 0.0
        for group in groups:
            session = Session(group[0][0], group[-1][0], group[0][1], group[-1][1], offset)
            self.sessions.append(session)
            offset += session.span
        self.span = offset
        self._walls = [s.wall0 for s in self.sessions]

    def at(self, wall: datetime, tool: float | None = None) -> float:
        """Lot seconds of a record, clamped to the lot's sessions."""
        if not self.sessions:
            return 0.0
        i = max(0, bisect.bisect_right(self._walls, wall) - 1)
        s = self.sessions[i]
        if wall > s.wall1:  # between two runs, or after the last: the end of this run
            return s.offset + s.span
        if tool is not None and s.tool0 <= tool <= s.tool1:
            return s.offset + tool - s.tool0
        if wall <= s.wall0 or s.wall1 == s.wall0:
            return s.offset
        share = (wall - s.wall0) / (s.wall1 - s.wall0)
        return s.offset + share * s.span

    def seconds(
        self,
        start: datetime,
        start_tool: float | None,
        end: datetime | None,
        end_tool: float | None,
    ) -> float | None:
        """Tool seconds from one record to another (None while the second is missing)."""
        if end is None:
            return None
        if start_tool is not None and end_tool is not None and end_tool >= start_tool:
            return end_tool - start_tool  # same clock: exact
        return max(0.0, self.at(end, end_tool) - self.at(start, start_tool))


def _new_clock(group: list[tuple[datetime, float]], wall: datetime, tool: float) -> bool:
    last_wall, last_tool = group[-1]
    if tool < last_tool - _JITTER_TOOL_S:
        return True
    first_wall, first_tool = group[0]
    elapsed = (last_wall - first_wall).total_seconds()
    gap = (wall - last_wall).total_seconds()
    if elapsed < _MIN_RATE_WALL_S or gap < _MIN_RATE_WALL_S or last_tool == first_tool:
        return False
    rate = (last_tool - first_tool) / elapsed
    return (tool - last_tool) / gap < _NEW_CLOCK_RATE_SHARE * rate

"""The equipment processing state model (E30 fundamental requirement) of a line.

E30 leaves the states to the equipment. A bumping line processes lots, so its state
follows its lots as the store has them:

* IDLE: no lot running and none held (lots may be queued: nothing is being done);
* EXECUTING: at least one lot running;
* PAUSE: no lot running, at least one held (work is started and waits for a person).

INIT is the state before the first one is known: only PREVIOUSPROCESSSTATE shows it,
until the first change. Each change is collection event PROCESSSTATECHANGE, sent after
the lot event that caused it (LOTSTARTED, LOTHELD, ...), with PROCESSSTATE and
PREVIOUSPROCESSSTATE (status variables) for the host's reports. Pure: the
equipment feeds it the lot states it hears of.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

RUNNING, HELD = "running", "held"


class ProcessState(IntEnum):
    INIT = 0
    IDLE = 1
    EXECUTING = 2
    PAUSE = 3


def process_state_of(lot_states: Mapping[str, str]) -> ProcessState:
    states = set(lot_states.values())
    if RUNNING in states:
        return ProcessState.EXECUTING
    if HELD in states:
        return ProcessState.PAUSE
    return ProcessState.IDLE


class ProcessStateModel:
    def __init__(self, lot_states: Mapping[str, str] | None = None) -> None:
        # only the lots that count (running or held): a line's finished lots are many
        self._lots = {lot: s for lot, s in (lot_states or {}).items() if s in (RUNNING, HELD)}
        self.state = process_state_of(self._lots)
        self.previous = ProcessState.INIT

    def lot(self, lot_id: str, state: str) -> bool:
        """A lot is now in ``state``; True if the line's processing state changed."""
        if state in (RUNNING, HELD):
            self._lots[lot_id] = state
        else:
            self._lots.pop(lot_id, None)
        new = process_state_of(self._lots)
        if new is self.state:
            return False
        self.previous, self.state = self.state, new
        return True

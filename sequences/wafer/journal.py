"""The wafer journal: "persist before acting" (docs/decisions/0004) has one owner.

The runner tells the journal of every wafer transition before it sends the next
tool command; a transition that opens or closes a step record carries it
(``WaferEvent.opens`` / ``closes``), so the two commit together. Every command
whose repetition would harm the wafer (oven LOAD, cleaner START, printer PRT,
mounter PLC) is sent inside ``guarded``: an intent committed before it is sent
and resolved after, which recovery reads to know what may have reached a tool.

The controller's journal writes to the store and publishes to the line event
stream; ``MemoryJournal`` keeps the same record in memory (``bumpline sequence
run``, tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.errors import DeviceBusy, Refused


@dataclass(frozen=True)
class StepOpened:
    """The step record a transition opens (the wafer takes its tool)."""

    kind: str
    parameters: Mapping[str, Any]
    windows: Mapping[str, Any]


@dataclass(frozen=True)
class StepClosed:
    """The step record a transition closes, with what was measured."""

    status: str  # done | failed | aborted
    results: Mapping[str, Any]
    curve_c: list[float] | None = None
    liquidus_c: float | None = None


@dataclass(frozen=True)
class WaferEvent:
    """One transition of one wafer: what the controller persists."""

    wafer_id: str
    step: int | None  # 1-based recipe step the event concerns
    step_kind: str | None
    from_state: str
    to_state: str
    trigger: str
    why: str
    measurements: dict[str, Any] = field(default_factory=dict)
    tool: str | None = None
    tool_time: float = 0.0
    opens: StepOpened | None = None  # the step record this transition opens
    closes: StepClosed | None = None  # the step record this transition closes
    # No tool command for this wafer follows before its next journal write: the journal
    # may commit it with its next transaction (docs/decisions/0017-deferred-transitions.md).
    deferrable: bool = False


# Outcomes of an intent (as the store records them).
DONE, REFUSED = "done", "failed"


class WaferJournal(Protocol):
    def record(self, event: WaferEvent) -> None:
        """Commit the transition (and the step record it opens or closes) before returning;
        a ``deferrable`` one at the latest with the journal's next transaction."""

    def intend(self, wafer_id: str, command: str, tool: str) -> int:
        """Commit "about to send ``command``" before it is sent; the intent's id."""

    def resolve(self, intent: int, outcome: str) -> None:
        """The command was acknowledged (DONE) or refused with nothing changed (REFUSED)."""


@asynccontextmanager
async def guarded(journal: WaferJournal, wafer_id: str, command: str, tool: str
                  ) -> AsyncIterator[None]:
    """Send a command that must not be repeated blindly inside this block.

    Acknowledged: the intent is closed as done. Refused by the tool (a NAK, an ERR
    or a Modbus "busy": nothing was changed): closed as refused. Anything else (no
    reply, a lost link, a cancellation): the intent stays open, and recovery asks
    the tool what happened before anything is sent again.
    """
    intent = journal.intend(wafer_id, command, tool)
    try:
        yield
    except (Refused, DeviceBusy):
        journal.resolve(intent, REFUSED)
        raise
    journal.resolve(intent, DONE)


@dataclass
class Intent:
    wafer_id: str
    command: str
    tool: str
    outcome: str | None = None  # None: open


@dataclass
class MemoryJournal:
    """The journal kept in memory: every transition and intent, in order."""

    events: list[WaferEvent] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    listeners: list[Any] = field(default_factory=list)

    def record(self, event: WaferEvent) -> None:
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def intend(self, wafer_id: str, command: str, tool: str) -> int:
        self.intents.append(Intent(wafer_id, command, tool))
        return len(self.intents) - 1

    def resolve(self, intent: int, outcome: str) -> None:
        self.intents[intent].outcome = outcome

    def open_intents(self) -> list[Intent]:
        return [i for i in self.intents if i.outcome is None]

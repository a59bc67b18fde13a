"""What the scheduler knows of the line: each tool and each wafer it dispatches, and the
reports it gives the line about the tools. Plain records, shared by the scheduler and the
batch dispatching of batch tools (``controller/line/batching.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.protocols import AnyTool
from sequences.errors import SequenceError
from sequences.kinds.base import SetupKey
from sequences.wafer.runner import WaferRun


@dataclass(frozen=True)
class ToolReport:
    """What the scheduler tells the line about a tool (the controller records it)."""

    tool: str
    # "productive", "setup", "standby", "note", "alarm", "alarm_cleared", "link_lost",
    # "link_back", "batch_started", "batch_ended"
    what: str
    text: str = ""
    code: int = 0  # alarm code
    wafer_id: str | None = None  # the wafer the tool works on, or its alarm concerns
    # Every wafer an alarm concerns (wafer_id first): an oven alarm hits the whole belt.
    wafers: tuple[str, ...] = ()
    # A setup: the step it is for and what it aims at (StepKind.setup_facts), JSON-ready.
    setup: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)  # a batch's record, as written


@dataclass
class ScheduledTool:
    """One tool as the scheduler sees it."""

    name: str
    role: str
    driver: AnyTool
    setup: SetupKey | None = None  # None: not known yet
    busy: bool = False  # a step or a changeover owns the tool
    holder: str | None = None  # the wafer whose step owns it (None: a changeover)
    riding: set[str] = field(default_factory=set)  # oven: wafers on the belt
    entrance_at: float = 0.0  # oven: tool time the last wafer will have cleared the entrance
    spacing_s: float = 0.0  # oven: belt time the wafer being loaded needs at the entrance
    alarm: int = 0  # latched alarm code, 0 = in service; -1: out of service with no alarm
    down_why: str = ""  # why, when out of service with no alarm (a setup that failed)
    clear_tried_at: float = float("-inf")  # tool time of the last CLEAR it refused
    clear_refused: str = ""  # why it refused, as last told (told again when it changes)
    busy_since: float | None = None
    busy_s: float = 0.0  # tool seconds spent on steps and changeovers
    working: bool = False  # the line was told it is productive or in setup (not standby)
    lost: str = ""  # why the tool stopped answering ("" = it answers); out of service
    stranded: set[str] = field(default_factory=set)  # wafers in it when it went silent
    ahead_tried: bool = False  # set up ahead of its wafers once (controller/line/ahead.py)
    # The mode people took it out of production in ("" = in production): no new wafer or
    # changeover starts on it; what it works on finishes (controller/line/modes.py).
    out_of_production: str = ""

    def take(self, now: float, holder: str | None = None) -> None:
        self.busy = True
        self.busy_since = now
        self.holder = holder

    def release(self, now: float) -> None:
        if self.busy_since is not None:
            self.busy_s += now - self.busy_since
        self.busy = False
        self.busy_since = None
        self.holder = None

    def release_for(self, wafer_id: str, now: float) -> None:
        """Release the tool if this wafer's step still holds it (an oven is handed on at
        the LOAD, so a step ending later must not free it under the next wafer)."""
        if self.busy and self.holder == wafer_id:
            self.release(now)


@dataclass
class ScheduledWafer:
    run: WaferRun
    lot_id: str
    priority: int
    order: int  # slot order within the lot, for stable tie-breaking
    ready_since: float = 0.0
    running: bool = False

    @property
    def waiting(self) -> int:
        """The step the wafer waits to run: the scheduler dispatches only waiting wafers."""
        number = self.run.next_step
        if number is None:
            raise SequenceError(f"wafer {self.run.wafer_id} is {self.run.state}: no step waits")
        return number

    @property
    def in_step(self) -> int:
        """The step the wafer is running or judging: recovery settles only such wafers."""
        where = self.run.machine.where
        if not where.in_step or where.step is None:
            raise SequenceError(f"wafer {self.run.wafer_id} is {self.run.state}: in no step")
        return where.step

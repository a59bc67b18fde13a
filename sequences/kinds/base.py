"""What every step kind provides (``StepKind``), and the helpers the kinds share.

A step kind is everything bumpline knows about one kind of recipe step and the
tool role that runs it: the setup the tool must have, what makes the tool busy,
the interlocks, preparing the tool, running the step up to its result, repair,
unload and abort, the judgment against the recipe's windows, the nominal times
the scheduler and the makespan bound use, and how recovery settles a wafer found
mid-step after a stop. One module per kind implements it; ``sequences.kinds``
maps a step's ``kind`` to its implementation. Nothing outside the kind modules
asks which class a step is.

Kinds never decide what happens to the wafer (that is the runner and its state
machine); they run tool operations and return what the tool measured. All waits
are in tool seconds on the injected clock and always bounded.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar

from drivers.clock import Clock
from drivers.errors import AlarmActive, ToolAlarm, ToolError, ToolTimeout, WrongState
from drivers.protocols import Tool
from drivers.types import Alarm, CleanRecipe, StripRecipe
from sequences.errors import SequenceError
from sequences.recipes.recipe import Step
from sequences.wafer.journal import guarded
from sequences.wafer.judge import Judgment

if TYPE_CHECKING:
    from sequences.kinds.batch import Batch
    from sequences.wafer.journal import WaferJournal

POLL_S = 1.0  # how often a tool is looked at while waiting for it to be free
# How often a long wait with no poll of its own (a changeover's, a heat-up's) looks for an
# alarm: one request each, a 20-minute cool-down about 20 of them. No wafer is in the tool
# then, so a minute is soon enough for the operator, and requests per wafer are a tracked
# figure (issue 12: 30 s cost ~2.5 requests a wafer on the demo lot).
SETUP_ALARM_LOOK_S = 60.0


async def expect(clock: Clock, nominal_s: float) -> None:
    """Wait the time the spec says an operation takes before polling for its end.

    Polling from the start would cost a round trip per poll interval for nothing;
    the tool cannot be faster than its nominal time, and a slower one is caught by
    the polls that follow.
    """
    await clock.sleep(nominal_s)


async def expect_watching(clock: Clock, nominal_s: float,
                          look: Callable[[], Awaitable[None]],
                          every_s: float = SETUP_ALARM_LOOK_S) -> None:
    """``expect`` for a long wait (a changeover, a heat-up, a cool-down): ``look()`` every
    ``every_s`` on the way, which raises ToolAlarm when the tool latched an alarm. Slept
    through, an alarm latched early in a 10-25 minute wait was found only at its end, or
    never: a run that ends meanwhile cancels a setup (a lot's wafers all stopped before
    the tool), and its alarm was never recorded. The last stretch ends at ``nominal_s``
    exactly: the polls that follow find the tool as soon as before."""
    end = clock.now() + nominal_s
    while (left := end - clock.now()) > every_s:
        await clock.sleep(every_s)
        await look()
    if left > 0:
        await clock.sleep(left)


T = TypeVar("T")


async def when_in(driver: Tool[Any], state: Enum, timeout_s: float,
                  command: Callable[[], Awaitable[T]]) -> T:
    """Send a HostLink command that needs ``state``, once the spec's time for getting
    there has passed: usually the tool is there, and a status poll first would be a
    round trip for nothing. If it is not (NAK 04 WRONG STATE, or 05 ALARM ACTIVE:
    nothing was changed), wait for the state (an alarm raises ToolAlarm with its text)
    and send the command again.
    """
    try:
        return await command()
    except (WrongState, AlarmActive):
        pass
    await driver.wait_for(state, timeout_s=timeout_s)
    return await command()


# How a kind's ``abort`` notes that the wafer is still in the tool (it never raises).
ABORT_UNFINISHED = "could not finish the abort"


def timeout_for(nominal_s: float) -> float:
    """A generous timeout for an operation the spec says takes ``nominal_s``."""
    return nominal_s * 2.0 + 60.0


Note = Callable[[str], None]


class BeforeEntry(ToolError):
    """What stopped a running step before anything it sent for its wafer reached the tool:
    the wafer never went in. No engineer's disposition for it: it waits for the tool again,
    held at the tool's interlock (``interlock`` says why), as if the interlock check had
    found it."""

    @property
    def interlock(self) -> str:
        return f"{self.detail} before the wafer went in"


class AlarmBeforeEntry(ToolAlarm, BeforeEntry):
    """A tool alarm found before the wafer went in (the oven's entrance: its LOAD refused in
    ALARM, or not sent; a HostLink RCP, WPE or LOD refused with NAK 05): the tool's alarm
    handling clears it and lets the wafer go on."""

    @property
    def interlock(self) -> str:
        return f"{self.detail} active"


class RefusedBeforeEntry(BeforeEntry):
    """A HostLink tool still refusing the wafer's entry (its RCP, WPE or LOD) with NAK 06
    INTERLOCK after ``past_interlock``'s wait: a door open, which may latch no alarm. The
    line looks at the tool again (controller/line/rechecks.py)."""


# Where the step a tool runs tells the operator of the tool (its StepContext.note), for a
# kind's methods that get no context (a HostLink unload or repair waiting at the tool's
# interlock): set by the runner for the step it runs on the tool.
_TOOL_NOTES: weakref.WeakKeyDictionary[Any, Note] = weakref.WeakKeyDictionary()


def set_tool_note(driver: Any, note: Note) -> None:
    _TOOL_NOTES[driver] = note


def tool_note(driver: Any) -> Note | None:
    """What the step running on ``driver`` tells the operator with; None if none does."""
    return _TOOL_NOTES.get(driver)


# An alarm a tool showed latched when recovery asked it (code, text; True once recovery
# cleared it): raised while no controller watched, it is recorded with the line's alarms.
AlarmFound = Callable[[int, str, bool], None]


class Stated(Protocol):
    """A tool status: every one has the tool's state (an enum)."""

    @property
    def state(self) -> Enum: ...


S = TypeVar("S", bound=Step)  # the recipe step the kind runs
D = TypeVar("D", bound=Tool[Any])  # the tool protocol of its role (drivers/protocols.py)
St = TypeVar("St", bound=Stated)  # that tool's status dataclass
R = TypeVar("R")  # what the tool measures for one wafer (its result dataclass)
SetupKey: TypeAlias = tuple[str | float, ...]  # the kind's name, then what a changeover sets


@dataclass(frozen=True)
class ToolView(Generic[St]):
    """What the interlock check read from the tool just before a step.

    The scheduler gives the tool to the step alone, so ``execute`` may start from it
    instead of asking the tool again.
    """

    status: St
    clean_recipe: CleanRecipe | StripRecipe | None = None  # cleaner: its recipe registers
    own_wafer_done: bool = False  # this wafer is still in the tool, finished (an earlier stop)
    wafers: int = 1  # wafers the cycle takes (a batch tool: the batch's members, all may ride)


@dataclass
class StepResult(Generic[R]):
    """What the tool measured, plus alarms it raised while the wafer rode through."""

    result: R
    alarms: list[Alarm] = field(default_factory=list)
    repaired: bool = False  # after the tool's repair (judged as such: no second repair)


@dataclass(frozen=True)
class StepContext:
    """What a running step needs besides its tool: whose wafer, which clock, which record."""

    wafer_id: str
    clock: Clock
    recipe_name: str  # the name the tool stores the step's parameters under
    journal: WaferJournal
    tool_free: Callable[[], None] = lambda: None  # a pipelined tool may take the next wafer
    batch: Batch | None = None  # a batch tool: the Batch this wafer rides in (None: one)
    note: Callable[[str], None] = lambda _: None  # what an operator reads of the tool (a wait)


class Settled:
    """How recovery found a step that was in progress when the controller stopped."""


@dataclass(frozen=True)
class TakeResult(Settled):
    """The tool has the step's result: judge it and go on."""

    result: Any
    unloaded: bool = False
    how: str = ""
    alarms: tuple[Alarm, ...] = ()  # raised while the wafer rode through (fail the judgment)
    repaired: bool = False  # the result is the one after the tool's repair


@dataclass(frozen=True)
class KeptInside(TakeResult):
    """The tool has the step's result, final, but an alarm that latched after it keeps the
    wafer in the tool (a batch's carrier, between its DONE and its UNLOAD): judge it; one
    judged good goes on only once the line has cleared the alarm and taken the carrier out
    (``ToolAlarms.carrier_kept``, as with a controller watching)."""

    alarm: Alarm | None = None
    carrier: Batch | None = None  # the riders it holds (every wafer it kept inside)


@dataclass(frozen=True)
class NeverTaken(Settled):
    """The tool provably never took the wafer: it waits for a tool again."""

    why: str


@dataclass(frozen=True)
class Unknown(Settled):
    """What happened cannot be told from the tool: an engineer decides."""

    why: str


@dataclass(frozen=True)
class StoppedByAlarm(Settled):
    """The tool holds the wafer, stopped by an alarm that latched while nobody watched: the
    step failed as it would have with the controller watching. An engineer decides, and the
    line hands the wafer out once the alarm is cleared (its ``after_failure``)."""

    why: str


@dataclass(frozen=True)
class Recovering:
    """What recovery knows of a wafer found mid-step (for a kind's ``settle``)."""

    wafer_id: str
    step_number: int
    judging: bool  # the step's result had been taken (running: not yet)
    earlier_results: tuple[Mapping[str, Any], ...]  # this wafer's earlier steps of the kind
    intents: tuple[str, ...]  # commands with an intent recorded for this step ("LOAD", …)
    note: Note
    # What the step's last ``step_done`` stored (judging only): the result was taken and
    # judged; a stop between the unload and the judgment's commit leaves only these.
    measured: Mapping[str, Any] | None = None
    # Running after a ``repair`` transition (the tool's repair may have been sent): what the
    # ``step_done`` before it stored, the result before the repair (None: not repairing).
    before_repair: Mapping[str, Any] | None = None
    # The journal the wafer's step records its intents in: a command recovery sends that
    # must not be repeated (a start) is journalled like the step's own (None: not journalled).
    journal: WaferJournal | None = None
    alarm: AlarmFound | None = None  # None: not recorded (the notes still say it)

    def guarded(self, command: str, tool: str) -> AbstractAsyncContextManager[None]:
        """Send ``command`` inside: an intent committed first, as the step itself does
        (persist before acting holds for recovery too: a second stop then finds it)."""
        if self.journal is None:
            return contextlib.nullcontext()
        return guarded(self.journal, self.wafer_id, command, tool)


class StepKind(ABC, Generic[S, D, St, R]):
    """One kind of recipe step and the tool role that runs it: ``S`` the recipe step,
    ``D`` the tool protocol of the role, ``St`` its status, ``R`` its result for a wafer."""

    name: ClassVar[str]  # the recipe's ``kind``
    role: ClassVar[str]  # the tool role that runs it
    changeover_s: ClassVar[float] = 0.0  # nominal setup change (the makespan bound)
    deposit: ClassVar[bool] = False  # puts solder on the wafer (retry strips back to it)
    repeatable: ClassVar[bool] = False  # a retry may simply run it again
    repairable: ClassVar[bool] = False  # the tool has a repair for a failed judgment
    rides_out: ClassVar[bool] = False  # once taken, the tool cannot stop it (abort waits)
    pipelined: ClassVar[bool] = False  # the tool takes the next wafer before this one is out
    batch: ClassVar[bool] = False  # several wafers ride one cycle (controller/line/batching.py)
    driver_type: ClassVar[type]  # the tool protocol its role's drivers implement
    # Commands that change the wafer and must never be repeated blindly: each is
    # journalled as an intent before it is sent.
    guarded: ClassVar[tuple[str, ...]] = ()

    def check_driver(self, driver: D) -> None:
        """Refuse to run the step on a tool of another role (a wrong line file)."""
        if not _is_a(driver, self.driver_type):
            raise SequenceError(f"a {self.name} step runs on {_a(self.role)}; "
                                f"{getattr(driver, 'name', driver)} is not one")
        if not self.can_run(driver):
            raise SequenceError(f"{driver.name} cannot take a {self.name} step (its model "
                                "has no such mode)")

    def can_run(self, driver: D) -> bool:
        """This tool of the role can take the kind (a cleaner whose model has the mode)."""
        return True

    # --- setup and readiness (pure) ---

    @abstractmethod
    def setup_key(self, step: S) -> SetupKey:
        """What a tool must be set up with for this step (a changeover changes it)."""

    @abstractmethod
    def setup_mismatches(self, step: S, view: ToolView[St]) -> list[str]:
        """How the tool's setup differs from the step's (empty: set up)."""

    def setup_facts(self, step: S) -> dict[str, Any]:
        """What a changeover to this step's setup aims at, JSON-ready, for the people watching
        (the live view's ETA): its nominal duration as a range, and kind-specific targets."""
        # A kind with no nominal time (a cleaner's bath change is waited out) claims none.
        return {"changeover_s": [self.changeover_s] * 2} if self.changeover_s > 0 else {}

    @abstractmethod
    def busy(self, status: St, wafer_id: str) -> bool:
        """The tool works on another wafer or a setup change that will end by itself."""

    @abstractmethod
    def interlocks(self, step: S, view: ToolView[St], wafer_id: str) -> list[str]:
        """Why the tool must not take this step now (empty: go)."""

    # --- what the scheduler and the makespan bound need (pure) ---

    @abstractmethod
    def nominal_s(self, step: S) -> float:
        """How long one wafer's step keeps it busy (spec nominal times)."""

    def batch_capacity(self, step: S) -> int:
        """How many wafers one cycle takes (1 unless the kind is a batch kind)."""
        return 1

    def occupancy_s(self, step: S) -> float:
        """How long the step keeps its tool from taking the next wafer."""
        return self.nominal_s(step)

    def startup_s(self, step: S) -> float:
        """From a tool switched on cold to ready for its first step (the oven's warm-up);
        0 for a tool that is ready at once."""
        return 0.0

    def bound_setup(self, step: S) -> SetupKey | None:
        """The setup the makespan bound counts changeovers of (None: none are needed), as
        the line configuration names it (the setup key without the kind's name)."""
        return self.setup_key(step)[1:]

    # --- results (pure) ---

    @abstractmethod
    def judge(self, step: S, result: R, wafer_id: str, *, repaired: bool = False) -> Judgment:
        """The tool's result against the recipe's windows."""

    @abstractmethod
    def windows(self, step: S) -> dict[str, list[float | None]]:
        """The recipe's acceptance windows, as [low, high] (None = open), for the record."""

    def curve(self, step: S, result: R) -> tuple[list[float], float] | None:
        """A measured curve and its liquidus line, for the record (reflow only)."""
        return None

    def result_from(self, step: S, wafer_id: str, measured: Mapping[str, Any]) -> R | None:
        """The tool's result rebuilt from the measurements its judgment stored (``judge``'s
        ``measurements``), so recovery can judge it again; None: this kind cannot."""
        return None

    def parameters(self, step: S) -> Mapping[str, Any]:
        """What is sent to the tool for the step, for the record (read-only)."""
        return _parameters(step)

    # --- talking to the tool ---

    async def check_status(self, driver: D) -> St:
        """The status the interlock check reads (the driver's whole status unless the kind
        needs less: the oven's LOAD leaves its discrete inputs out)."""
        status: St = await driver.status()
        return status

    async def look(self, driver: D, step: S, wafer_id: str, status: St) -> ToolView[St]:
        """What the interlock check needs beyond the status."""
        return ToolView(status)

    @abstractmethod
    async def prepare(self, driver: D, step: S, *, clock: Clock, recipe_name: str,
                      note: Note) -> None:
        """Change the tool's setup to what the step needs, saying what was done."""

    @abstractmethod
    async def execute(self, driver: D, step: S, ctx: StepContext, seen: ToolView[St]
                      ) -> StepResult[R]:
        """Run the step on the tool up to its result."""

    async def repair(self, driver: D, before: R | None = None) -> R:
        raise NotImplementedError(f"a {self.name} step has no repair")

    async def unload(self, driver: D, step: S) -> None:
        """Hand the wafer out after judging."""

    async def read_again(self, driver: D, step: S, result: R, wafer_id: str) -> R | None:
        """The step's result read from the tool once more, for a result that failed its
        judgment on a link with no checksum (Modbus TCP: a damaged reply is a wrong value,
        not an error). None: the tool cannot say it again (it shows another wafer's now,
        it does not answer) or its replies carry a checksum."""
        return None

    async def close_batch(self, driver: D, batch: Batch) -> bool:
        """A batch kind: the batch is over for every member (the carrier goes out). False:
        the tool still holds the carrier (an alarm latched: it can go out once cleared)."""
        return True

    async def abort(self, driver: D, step: S, wafer_id: str) -> list[str]:
        """Stop the tool's work on the wafer and hand it out; what was done (never raises)."""
        return []

    def forget(self, driver: D) -> None:
        """Drop what the kind remembers of what it wrote to the tool (a recipe it need not
        send again): people may have changed it while the tool was out of production."""

    # --- recovery after a controller stop ---

    async def holds(self, driver: D, wafer_id: str, started: bool) -> bool:
        """Whether the tool still holds this wafer, whose step failed: a stop after the
        failure was stored and before the line's hand-out (``abort``) took it out leaves it
        inside, in the way of every wafer after it. ``started``: a command of the step was
        journalled and not refused (a start: the wafer went in). Asked by recovery only.
        No, by default: the oven's belt carries its wafers out, and a batch's carrier goes
        with its batch."""
        return False

    @abstractmethod
    async def settle(self, driver: D, step: S, wafer: Recovering, clock: Clock) -> Settled:
        """Ask the tool what became of a wafer that was mid-step when the controller stopped."""

    def judged_before(self, step: S, wafer: Recovering, tool: str) -> Settled:
        """A wafer judging whose tool no longer holds it: only a judged wafer is unloaded, so
        the stop came between its unload and its judgment's commit. Its result was taken and
        stored with ``step_done``: judge it again from those measurements (never the tool
        again). Without them (or a kind that cannot rebuild its result) an engineer decides."""
        measured = wafer.measured
        try:
            result = self.result_from(step, wafer.wafer_id, measured) if measured else None
        except (KeyError, TypeError, ValueError):  # a record from before a field existed
            result = None
        if measured is None or result is None:
            return Unknown(f"{tool} no longer shows the wafer")
        alarms = tuple(_alarm(text) for text in measured.get("alarms", ()))
        return TakeResult(result, unloaded=True, alarms=alarms,
                          repaired=bool(measured.get("repaired")),
                          how=f"{tool} had handed it out after its judgment: judged again "
                          "from the measurements stored with the step")

    async def settle_all(self, driver: D, wafers: list[tuple[S, Recovering]], clock: Clock
                         ) -> dict[str, Settled]:
        """Every wafer one tool had mid-step, each settled once (a pipelined tool may hold
        several: the oven settles its whole belt in one pass)."""
        return {w.wafer_id: await self.settle(driver, step, w, clock) for step, w in wafers}


@functools.cache  # recipe steps are frozen; every wafer of a lot sends the same ones
def _parameters(step: Step) -> Mapping[str, Any]:
    data = asdict(step)
    data.pop("note", None)
    return MappingProxyType(data)


# A kind whose step, tool and result are known only at run time (the registry's value).
AnyKind: TypeAlias = "StepKind[Any, Any, Any, Any]"


async def wait_free(kind: StepKind[Any, D, St, Any], driver: D, wafer_id: str, clock: Clock,
                    timeout_s: float) -> St:
    """The tool's status once it is not busy with something else (ToolTimeout if it stays)."""
    deadline = clock.now() + timeout_s
    while True:
        status: St = await kind.check_status(driver)
        if not kind.busy(status, wafer_id):
            return status
        if clock.now() >= deadline:
            raise ToolTimeout(driver.name, f"still busy ({state_name(status)}) after "
                              f"{timeout_s:g} s")
        await clock.sleep(POLL_S)


_CHECKED: dict[tuple[type, type], bool] = {}


def _is_a(driver: object, protocol: type) -> bool:
    """isinstance against a tool protocol, once per driver class (it walks every verb)."""
    key = (type(driver), protocol)
    known = _CHECKED.get(key)
    if known is None:
        known = _CHECKED[key] = isinstance(driver, protocol)
    return known


def _alarm(text: str) -> Alarm:
    """An alarm as a judgment stored it ("560 thermocouple open")."""
    code, _, rest = str(text).partition(" ")
    return Alarm(int(code), rest) if code.isdigit() else Alarm(0, str(text))


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def state_name(status: Stated) -> str:
    state = status.state
    value = getattr(state, "value", None)
    return value if isinstance(value, str) else state.name


def alarm_reasons(code: int, latched: bool) -> list[str]:
    if code:
        return [f"alarm {code} active"]
    return ["alarm latched"] if latched else []

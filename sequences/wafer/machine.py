"""The per-wafer state machine, built from a recipe's steps with ``transitions``.

States: ``queued``; for each step *i* ``step{i}_waiting`` (for a tool),
``step{i}_running`` and ``step{i}_judging``; ``complete``; ``held`` (resume
returns to where the wafer was); ``awaiting_disposition`` (an engineer decides:
continue as is, retry where a repeat cannot harm the wafer, or scrap);
``aborted`` and ``scrapped``. A state's name is what the store keeps;
``WaferState`` is the same state as a value (phase and step number), so nobody
parses names.

The machine only records and checks moves; it never talks to a tool. Callbacks
are short and synchronous: every transition emits one ``WaferEvent`` to
``on_event`` before ``fire`` returns, so the caller has persisted it before it
sends the next tool command. Long tool operations belong to the runner.

One transitions ``Machine`` serves every wafer of a step table
(docs/decisions/0008): each wafer is added to it as a model with
``model_override=True``, so only the two methods the model declares
(``trigger``, ``may_trigger``) are bound to it, and is removed once final.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from transitions import EventData, Machine, MachineError

from sequences.errors import SequenceError
from sequences.kinds import kind_of
from sequences.wafer.journal import StepClosed, StepOpened, WaferEvent

__all__ = ["StepClosed", "StepOpened", "WaferEvent", "WaferMachine", "WaferState", "Phase",
           "state_of"]

QUEUED, COMPLETE, HELD = "queued", "complete", "held"
AWAITING = "awaiting_disposition"
ABORTED, SCRAPPED = "aborted", "scrapped"
FINAL_STATES = (COMPLETE, ABORTED, SCRAPPED)
TRIGGERS = ("start", "tool_acquired", "step_done", "repair", "judged_ok", "step_failed",
            "hold", "resume", "abort", "retry", "continue_as_is", "scrap")
# model_override reports every method it leaves unbound as a warning; leaving them
# unbound is why it is used (a quarter of a millisecond per wafer of log records).
logging.getLogger("transitions.core").setLevel(logging.ERROR)
_STEP_STATE = re.compile(r"^step(\d+)_(waiting|running|judging)$")


class Phase(StrEnum):
    QUEUED = "queued"
    WAITING = "waiting"  # for a tool
    RUNNING = "running"  # on its tool
    JUDGING = "judging"  # the tool's result against the recipe's windows
    COMPLETE = "complete"
    HELD = "held"
    AWAITING = "awaiting_disposition"
    ABORTED = "aborted"
    SCRAPPED = "scrapped"


IN_STEP = (Phase.RUNNING, Phase.JUDGING)  # a step owns a tool


class WaferState(NamedTuple):
    """A wafer's state as a value: its phase, and the step for waiting/running/judging."""

    phase: Phase
    step: int | None = None

    @property
    def name(self) -> str:
        return f"step{self.step}_{self.phase.value}" if self.step else self.phase.value

    @property
    def in_step(self) -> bool:
        return self.phase in IN_STEP

    @property
    def final(self) -> bool:
        return self.phase in (Phase.COMPLETE, Phase.ABORTED, Phase.SCRAPPED)


@functools.cache  # a handful of state names, asked about on every dispatch
def state_of(name: str) -> WaferState:
    m = _STEP_STATE.match(name)
    if m:
        return WaferState(Phase(m.group(2)), int(m.group(1)))
    try:
        return WaferState(Phase(name))
    except ValueError:
        raise SequenceError(f"no wafer state {name!r}") from None


def waiting(i: int) -> str:
    return f"step{i}_waiting"


def running(i: int) -> str:
    return f"step{i}_running"


def judging(i: int) -> str:
    return f"step{i}_judging"


def step_of(state: str) -> int | None:
    return state_of(state).step


def retry_targets(kinds: Sequence[str]) -> dict[int, int]:
    """Step (1-based) -> step a retry restarts from, for steps a repeat cannot harm.

    Before its reflow a misprint or a bad placement is stripped and everything
    deposited since the last reflow is redone, so the retry restarts at the first
    deposit after that reflow. A clean may simply run again. A reflow never.
    """
    targets: dict[int, int] = {}
    first_deposit: int | None = None
    for i, kind in enumerate(kinds, start=1):
        if kind_of(kind).deposit:
            first_deposit = first_deposit or i
            targets[i] = first_deposit
        elif kind_of(kind).repeatable:
            targets[i] = i
        else:  # a reflow (or any step that changes what was deposited) is never repeated
            first_deposit = None
    return targets


class _Wafer:
    """The model transitions moves: its ``state``, and the WaferMachine it belongs to.

    It declares the only methods the shared machine may bind (``model_override``)."""

    def __init__(self, owner: WaferMachine | None = None) -> None:
        self.state = QUEUED
        self.owner = owner

    def trigger(self, trigger_name: str, **kwargs: Any) -> bool:
        raise RuntimeError("bound by the machine")  # pragma: no cover

    def may_trigger(self, trigger_name: str) -> bool:
        raise RuntimeError("bound by the machine")  # pragma: no cover


def transition_table(
    kinds: Sequence[str], first: int = 1, last: int | None = None, *,
    resume_to: Callable[[str], Callable[..., bool]],
    failed_at: Callable[[int], Callable[..., bool]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """States and transitions for steps first..last (1-based, inclusive).

    ``resume_to(state)`` and ``failed_at(step)`` make the conditions of resume (back to
    the state the wafer was held from) and of retry/continue (at the step that failed).
    """
    last = len(kinds) if last is None else last
    if not 1 <= first <= last <= len(kinds):
        raise SequenceError(f"steps {first}-{last} outside the recipe's 1-{len(kinds)}")
    numbers = range(first, last + 1)
    states = [QUEUED]
    for i in numbers:
        states += [waiting(i), running(i), judging(i)]
    states += [COMPLETE, HELD, AWAITING, ABORTED, SCRAPPED]

    def after(i: int) -> str:
        return waiting(i + 1) if i < last else COMPLETE

    t: list[dict[str, Any]] = [{"trigger": "start", "source": QUEUED, "dest": waiting(first)}]
    for i in numbers:
        t.append({"trigger": "tool_acquired", "source": waiting(i), "dest": running(i)})
        t.append({"trigger": "step_done", "source": running(i), "dest": judging(i)})
        if kind_of(kinds[i - 1]).repairable:
            t.append({"trigger": "repair", "source": judging(i), "dest": running(i)})
        t.append({"trigger": "judged_ok", "source": judging(i), "dest": after(i)})
        t.append({"trigger": "step_failed", "source": [running(i), judging(i)], "dest": AWAITING})
    holdable = [QUEUED] + [waiting(i) for i in numbers]
    t.append({"trigger": "hold", "source": holdable, "dest": HELD})
    for state in holdable:
        t.append({"trigger": "resume", "source": HELD, "dest": state,
                  "conditions": [resume_to(state)]})
    live = [s for s in states if s not in FINAL_STATES]
    t.append({"trigger": "abort", "source": live, "dest": ABORTED})
    targets = retry_targets(kinds)
    for i in numbers:
        cond = failed_at(i)
        target = targets.get(i)
        if target is not None and target >= first:
            t.append({"trigger": "retry", "source": AWAITING, "dest": waiting(target),
                      "conditions": [cond]})
        t.append({"trigger": "continue_as_is", "source": AWAITING, "dest": after(i),
                  "conditions": [cond]})
    t.append({"trigger": "scrap", "source": [HELD, AWAITING], "dest": SCRAPPED})
    return states, t


def _named_condition(name: str, fn: Callable[[], bool]) -> Callable[..., bool]:
    def condition(*_: Any, **__: Any) -> bool:
        return fn()

    condition.__name__ = condition.__qualname__ = name
    return condition


def _wafer_condition(name: str, test: Callable[[WaferMachine], bool]) -> Callable[..., bool]:
    """A condition on the wafer the shared machine is moving (``send_event``: EventData)."""
    def condition(event_data: EventData) -> bool:
        return test(event_data.model.owner)  # type: ignore[attr-defined]  # a bound _Wafer

    condition.__name__ = condition.__qualname__ = name
    return condition


def _was(state: str) -> Callable[..., bool]:
    return _wafer_condition(f"was_{state}", lambda wafer: wafer.held_from == state)


def _failed_at(step: int) -> Callable[..., bool]:
    return _wafer_condition(f"failed_at_step{step}", lambda wafer: wafer.failed_step == step)


def _emit_for_owner(event_data: EventData) -> None:
    event_data.model.owner._emit(event_data)  # type: ignore[attr-defined]  # a bound _Wafer


@functools.cache
def _shared_machine(kinds: tuple[str, ...], first: int, last: int) -> Machine:
    """One transitions Machine per step table, shared by every wafer that runs it.

    Building a Machine costs about 2 ms (its Transition and Condition objects); a lot
    of 25 wafers of one recipe needs one. Wafers are added as models with
    ``model_override=True``: only the ``trigger`` and ``may_trigger`` they declare are
    bound to each; conditions read the wafer from the EventData.
    """
    states, table = transition_table(kinds, first, last, resume_to=_was, failed_at=_failed_at)
    return Machine(
        model=None, states=states, transitions=table, initial=QUEUED,
        auto_transitions=False, send_event=True, ignore_invalid_triggers=False,
        after_state_change=_emit_for_owner, model_override=True,
    )


class WaferMachine:
    """One wafer's state; ``fire`` moves it and emits a WaferEvent, or raises SequenceError."""

    def __init__(
        self,
        wafer_id: str,
        kinds: Sequence[str],
        *,
        first: int = 1,
        last: int | None = None,
        on_event: Callable[[WaferEvent], None] | None = None,
        now: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.wafer_id = wafer_id
        self.kinds = tuple(kinds)
        self.first = first
        self.last = len(self.kinds) if last is None else last
        self.on_event = on_event
        self.now = now
        self.step: int | None = None  # the step the wafer is at (or was, when held/failed)
        self.held_from: str | None = None
        self.failed_step: int | None = None
        self.hold_reason = ""
        self._wafer = _Wafer(self)
        self._machine = _shared_machine(self.kinds, first, self.last)
        self._machine.add_model(self._wafer, initial=QUEUED)
        self._last_event: WaferEvent | None = None

    @property
    def state(self) -> str:
        """The state's name (what the store keeps)."""
        return self._wafer.state

    @property
    def where(self) -> WaferState:
        """The state as a value: phase and step."""
        return state_of(self._wafer.state)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def step_kind(self) -> str | None:
        return self.kinds[self.step - 1] if self.step else None

    def allowed(self) -> list[str]:
        """Triggers that can fire now (conditions included)."""
        return [t for t in TRIGGERS if self.may(t)]

    def may(self, trigger: str) -> bool:
        """Can ``trigger`` fire now (conditions included)?"""
        return self._wafer.may_trigger(trigger)

    def restore(self, state: str, *, step: int | None = None, failed_step: int | None = None,
                held_from: str | None = None, hold_reason: str = "",
                announce: str | None = None, closes: StepClosed | None = None
                ) -> WaferEvent | None:
        """Put the wafer back into a stored state (controller recovery after a stop).

        With ``announce`` the move is an event (trigger ``recover``) for the record:
        used when recovery moves a wafer, e.g. back to waiting because its tool never
        took it. Without it the machine just resumes where the store says it was.
        """
        if state not in self._machine.states:
            raise SequenceError(f"wafer {self.wafer_id}: cannot restore unknown state {state!r}")
        source = self.state
        self._machine.set_state(state, model=self._wafer)
        self.step = step if step is not None else (
            step_of(state) or (step_of(held_from) if held_from else None) or self.step)
        self.failed_step = failed_step
        self.held_from, self.hold_reason = held_from, hold_reason
        if announce is None:
            return None
        event = WaferEvent(wafer_id=self.wafer_id, step=self.step, step_kind=self.step_kind,
                           from_state=source, to_state=state, trigger="recover", why=announce,
                           tool_time=self.now(), closes=closes)
        self._deliver(event)
        return event

    def fire(
        self, trigger: str, *, why: str = "", measurements: dict[str, Any] | None = None,
        tool: str | None = None, opens: StepOpened | None = None,
        closes: StepClosed | None = None, deferrable: bool = False,
    ) -> WaferEvent:
        """Move the wafer; its WaferEvent has been delivered to on_event on return.

        ``opens``/``closes``: the step record this transition opens or closes, committed
        with it by the journal. ``deferrable``: no tool command for this wafer follows
        before its next transition or intent (``WaferEvent.deferrable``)."""
        if trigger not in TRIGGERS:
            raise SequenceError(f"unknown wafer event '{trigger}' (known: {', '.join(TRIGGERS)})")
        source = self.state
        before = self.held_from, self.hold_reason, self.failed_step
        if trigger == "hold":
            self.held_from, self.hold_reason = source, why
        if trigger == "step_failed":
            self.failed_step = self.step
        # No may_trigger first: the trigger checks the same conditions (twice per transition
        # was a tenth of its CPU); a refusal is explained after.
        try:
            moved = self._wafer.trigger(trigger, why=why, measurements=measurements, tool=tool,
                                        opens=opens, closes=closes, source=source,
                                        step=self.step, deferrable=deferrable)
        except MachineError:  # no such transition from here
            moved = False
        if not moved:
            self.held_from, self.hold_reason, self.failed_step = before
            allowed = ", ".join(self.allowed()) or "none"
            where = f" at step {self.step} ({self.step_kind})" if self.step else ""
            raise SequenceError(
                f"wafer {self.wafer_id} is {source}{where}: '{trigger}' is not allowed now "
                f"(allowed: {allowed})"
            )
        assert self._last_event is not None
        return self._last_event

    def _emit(self, event_data: EventData) -> None:
        """After a transition: the WaferEvent, from what ``fire`` passed to the trigger."""
        data = event_data.kwargs
        dest = self.state
        trigger = event_data.event.name
        step = data["step"] if data["step"] is not None else step_of(dest)
        dest_step = step_of(dest)
        if dest_step is not None:
            self.step = dest_step
        if trigger == "resume":
            self.held_from, self.hold_reason = None, ""
        if trigger in ("retry", "continue_as_is"):
            self.failed_step = None
        self._deliver(WaferEvent(
            wafer_id=self.wafer_id, step=step,
            step_kind=self.kinds[step - 1] if step else None,
            from_state=data["source"], to_state=dest, trigger=trigger, why=data["why"],
            measurements=dict(data["measurements"] or {}), tool=data["tool"],
            tool_time=self.now(), opens=data["opens"], closes=data["closes"],
            deferrable=data["deferrable"],
        ))
        if dest in FINAL_STATES:  # nothing moves it again: the shared machine lets go
            self._machine.remove_model(self._wafer)

    def _deliver(self, event: WaferEvent) -> None:
        self._last_event = event
        if self.on_event is not None:
            self.on_event(event)


def mermaid_diagram(kinds: Sequence[str], title: str = "wafer") -> str:
    """The state machine for these steps as a Mermaid stateDiagram."""
    from transitions.extensions.diagrams import GraphMachine

    states, table = transition_table(
        kinds,
        resume_to=lambda s: _named_condition(f"was_{s}", lambda: True),
        failed_at=lambda i: _named_condition(f"failed_at_step{i}", lambda: True),
    )
    machine = GraphMachine(
        model=_Wafer(), states=states, transitions=table, initial=QUEUED, auto_transitions=False,
        graph_engine="mermaid", show_conditions=True, title=title,
    )
    source = machine.model.get_graph().draw(None)  # type: ignore[attr-defined]  # GraphMachine's
    # transitions writes "Class"; Mermaid's keyword is lowercase.
    return "\n".join(
        line.replace("Class ", "class ", 1) if line.lstrip().startswith("Class ") else line
        for line in source.splitlines()
    ) + "\n"

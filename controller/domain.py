"""The line's rules for lots and wafers, with no I/O: what the store enforces.

Kept apart from persistence so the rules read in one place and are tested
directly (``tests/test_domain.py``); the store (``controller.persistence``)
applies them inside its transactions, the command line uses them to check an
operator's input before anything is opened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

from sequences.wafer.machine import ABORTED, AWAITING, COMPLETE, HELD, QUEUED, SCRAPPED


class RuleError(Exception):
    """A request the line's rules refuse; the message is for the user as it is."""


class LotState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"
    COMPLETE = "complete"
    ABORTED = "aborted"


LOT_TRANSITIONS: dict[LotState, set[LotState]] = {
    LotState.QUEUED: {LotState.RUNNING, LotState.HELD, LotState.ABORTED},
    LotState.RUNNING: {LotState.HELD, LotState.COMPLETE, LotState.ABORTED},
    LotState.HELD: {LotState.QUEUED, LotState.RUNNING, LotState.ABORTED},  # resume, or abort
    LotState.COMPLETE: set(),
    LotState.ABORTED: set(),
}
FINAL_LOT_STATES = (LotState.COMPLETE, LotState.ABORTED)

# A wafer's state is its state machine's (sequences.wafer.machine): the store writes only the
# first one and the outcome its final states imply (yield counts "good").
WAFER_START_STATE = QUEUED
WAFER_START_LOCATION = "carrier"
OUTCOME_OF_STATE = {COMPLETE: "good", SCRAPPED: "scrapped", ABORTED: "aborted"}
OUTCOMES = ("good", "scrapped", "aborted")


class Disposition(StrEnum):
    """An engineer's decision for a held wafer."""

    CONTINUE = "continue"
    RETRY = "retry"
    SCRAP = "scrap"


# Which decisions a wafer can take in which state (as the wafer state machine allows;
# "continue" on an operator-held wafer means resume).
DISPOSITIONS_IN_STATE = {
    AWAITING: (Disposition.CONTINUE, Disposition.RETRY, Disposition.SCRAP),
    HELD: (Disposition.CONTINUE, Disposition.SCRAP),
}
NEVER_REPEATED_STEPS = ("reflow",)  # a second reflow would remelt the bumps

REQUEST_ACTIONS = ("hold_lot", "resume_lot", "abort_lot", "hold_wafer") + tuple(
    d.value for d in Disposition
)

STEP_STATUSES = ("running", "done", "failed", "aborted")
INTENT_OUTCOMES = ("done", "not_sent", "failed")

MAX_WAFERS = 25  # slots in a 300 mm FOUP
LOT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Tools take wafer ids of at most 16 characters; "<LOT>-NN" must fit.
MAX_LOT_ID_LEN = 13
PRIORITY_RANGE = (1, 9)  # 1 = most urgent (hot lot)
DEFAULT_PRIORITY = 5


# --- lots -----------------------------------------------------------------------------------


def wafer_id(lot_id: str, slot: int) -> str:
    return f"{lot_id}-{slot:02d}"


def check_lot_id(lot_id: str) -> str:
    lot_id = lot_id.strip()
    if not LOT_ID_PATTERN.match(lot_id):
        raise RuleError(
            f"bad lot id {lot_id!r}: use letters, digits, '.', '-' or '_', starting with a "
            "letter or digit"
        )
    if len(lot_id) > MAX_LOT_ID_LEN:
        raise RuleError(
            f"lot id {lot_id!r} is {len(lot_id)} characters: at most {MAX_LOT_ID_LEN}, so wafer "
            f"ids like {lot_id}-01 fit the tools' 16-character wafer id"
        )
    return lot_id


def check_priority(priority: object) -> int:
    low, high = PRIORITY_RANGE
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not low <= priority <= high
    ):
        raise RuleError(f"priority must be {low}-{high} ({low} = most urgent), got {priority!r}")
    return priority


MAX_REASON_LEN = 500  # a person's why: a sentence or two, copied into each wafer's event


def check_reason(reason: str) -> str:
    """A person's reason for a hold, an abort or a disposition: kept with every wafer it
    touches (an abort copies it into each wafer's event) and shown on every screen."""
    if len(reason) > MAX_REASON_LEN:
        raise RuleError(f"a reason is at most {MAX_REASON_LEN} characters, got {len(reason)}")
    return reason


def check_slots(slots: Sequence[int]) -> list[int]:
    """A lot's carrier slots, sorted: at least one, each 1-25 and once."""
    if not slots:
        raise RuleError("a lot needs at least one wafer")
    if len(slots) > MAX_WAFERS:
        raise RuleError(f"a lot holds at most {MAX_WAFERS} wafers, got {len(slots)}")
    seen: set[int] = set()
    for slot in slots:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= MAX_WAFERS:
            raise RuleError(f"slot {slot!r} is outside 1-{MAX_WAFERS}")
        if slot in seen:
            raise RuleError(f"slot {slot} appears twice")
        seen.add(slot)
    return sorted(slots)


def slots_for_count(count: int) -> list[int]:
    """Slots 1..count of a full-from-the-bottom carrier."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WAFERS:
        raise RuleError(f"wafer count must be 1-{MAX_WAFERS} (one carrier), got {count!r}")
    return list(range(1, count + 1))


def slot_text(slots: Sequence[int]) -> str:
    """Slots as compact ranges: [1,2,3,5] -> "1-3,5"."""
    parts: list[str] = []
    start = prev = slots[0]
    for slot in [*slots[1:], None]:
        if slot is not None and slot == prev + 1:
            prev = slot
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if slot is not None:
            start = prev = slot
    return ",".join(parts)


def lot_state(state: str | LotState) -> LotState:
    try:
        return LotState(state)
    except ValueError:
        names = ", ".join(s.value for s in LotState)
        raise RuleError(f"unknown lot state {state!r} (expected one of: {names})") from None


def next_lot_state(
    lot_id: str, current: LotState, target: LotState | None, state_before_hold: str | None
) -> LotState:
    """Where a lot goes: ``target``, or for a resume (None) the state it was held in."""
    if target is None:
        if current is not LotState.HELD:
            raise RuleError(f"lot {lot_id} is {current.value}, not held: nothing to resume")
        target = LotState(state_before_hold or LotState.QUEUED.value)
    if target not in LOT_TRANSITIONS[current]:
        raise RuleError(f"lot {lot_id} is {current.value}: it cannot become {target.value}")
    return target


# --- wafers ---------------------------------------------------------------------------------


def wafer_outcome(to_state: str, outcome: str | None) -> str | None:
    """The outcome a transition records: the one given, else what a final state implies."""
    if outcome is None:
        return OUTCOME_OF_STATE.get(to_state)
    if outcome not in OUTCOMES:
        raise RuleError(f"unknown wafer outcome {outcome!r} (expected {', '.join(OUTCOMES)})")
    return outcome


def disposition(decision: str | Disposition) -> Disposition:
    try:
        return Disposition(decision)
    except ValueError:
        raise RuleError(
            f"unknown disposition {decision!r} (expected continue, retry or scrap)"
        ) from None


def check_disposition(
    wafer_id: str, wafer_state: str, decision: Disposition, failed_step_kind: str | None
) -> None:
    """Refuse what the wafer state machine would refuse, so the engineer hears it at once.

    ``failed_step_kind`` is the kind of the step that sent the wafer to
    awaiting disposition (a retry of a reflow is refused).
    """
    allowed = DISPOSITIONS_IN_STATE.get(wafer_state)
    if allowed is None:
        raise RuleError(
            f"wafer {wafer_id} is {wafer_state}: only a held wafer or one awaiting "
            "disposition takes a disposition"
        )
    if decision not in allowed:
        names = " or ".join(d.value for d in allowed)
        raise RuleError(
            f"wafer {wafer_id} is {wafer_state}: it can take {names}, not {decision.value}"
        )
    if decision is Disposition.RETRY and failed_step_kind in NEVER_REPEATED_STEPS:
        raise RuleError(
            f"wafer {wafer_id} failed a {failed_step_kind} step: a {failed_step_kind} is never "
            "repeated (continue or scrap)"
        )


def check_step_status(status: str) -> str:
    if status not in STEP_STATUSES[1:]:
        raise RuleError(
            f"step status {status!r}: expected one of {', '.join(STEP_STATUSES[1:])}"
        )
    return status


def check_intent_outcome(outcome: str) -> str:
    if outcome not in INTENT_OUTCOMES:
        raise RuleError(f"intent outcome {outcome!r}: expected {', '.join(INTENT_OUTCOMES)}")
    return outcome


def check_windows(windows: object) -> dict[str, list[float | None]]:
    """A step's windows as ``{result: [low, high]}`` with None for an open end."""
    checked: dict[str, list[float | None]] = {}
    for name, window in dict(windows).items():  # type: ignore[call-overload]
        try:
            low, high = window
            bounds = [None if v is None else float(v) for v in (low, high)]
        except (TypeError, ValueError):
            raise RuleError(
                f"window for {name!r} must be [low, high] (None for an open end), got {window!r}"
            ) from None
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            raise RuleError(f"window for {name!r} has low {bounds[0]} above high {bounds[1]}")
        checked[str(name)] = bounds
    return checked


def parse_slots(text: str) -> list[int]:
    """Slots from an operator's list like ``1-5,8,10`` (sorted; every slot once, 1-25)."""
    spec = text.strip()
    if not spec:
        raise RuleError("empty slot list (expected e.g. 1-5,8,10)")
    slots: list[int] = []
    for part in spec.split(","):
        item = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if not match:
            raise RuleError(
                f"bad slot list {spec!r}: {item!r} is not a slot or a range "
                "(expected e.g. 1-5,8,10)"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first:
            raise RuleError(f"bad slot list {spec!r}: range {item!r} runs backwards")
        for slot in range(first, last + 1):
            if not 1 <= slot <= MAX_WAFERS:
                raise RuleError(f"bad slot list {spec!r}: slot {slot} is outside 1-{MAX_WAFERS}")
            if slot in slots:
                raise RuleError(f"bad slot list {spec!r}: slot {slot} appears twice")
            slots.append(slot)
    return sorted(slots)

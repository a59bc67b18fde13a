"""The line's rules (controller.domain) on their own: no database, no I/O."""

from __future__ import annotations

import pytest

from controller.domain import (
    LOT_TRANSITIONS,
    Disposition,
    LotState,
    RuleError,
    check_disposition,
    check_intent_outcome,
    check_lot_id,
    check_priority,
    check_slots,
    check_step_status,
    check_windows,
    disposition,
    lot_state,
    next_lot_state,
    slot_text,
    slots_for_count,
    wafer_id,
    wafer_outcome,
)
from sequences.wafer.machine import ABORTED, AWAITING, COMPLETE, HELD, QUEUED, SCRAPPED


@pytest.mark.parametrize("count", [0, 26, -1, True, 2.0])
def test_wafer_count_must_fit_one_carrier(count: object) -> None:
    with pytest.raises(RuleError, match="wafer count must be 1-25"):
        slots_for_count(count)  # type: ignore[arg-type]
    assert slots_for_count(25) == list(range(1, 26))


def test_slot_text_is_compact() -> None:
    assert slot_text([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert slot_text([4]) == "4"


@pytest.mark.parametrize(
    ("slots", "message"),
    [
        ([], "at least one wafer"),
        ([2, 2], "slot 2 appears twice"),
        ([0], "slot 0 is outside 1-25"),
        (list(range(1, 27)), "at most 25 wafers"),
    ],
)
def test_bad_slots_are_named(slots: list[int], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        check_slots(slots)
    assert check_slots([3, 1]) == [1, 3]


# Lot ids the rules refuse, and the words that say why (the store's test uses them too).
BAD_LOT_IDS = [
    ("LOT-ABCDEFGHIJ", "at most 13"),
    ("LOT 42", "bad lot id"),
    ("-LOT", "bad lot id"),
    ("LOT,42", "bad lot id"),
]


@pytest.mark.parametrize(("lot_id", "message"), BAD_LOT_IDS)
def test_lot_ids_must_make_tool_safe_wafer_ids(lot_id: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        check_lot_id(lot_id)


def test_a_good_lot_id_gives_16_character_wafer_ids() -> None:
    lot = check_lot_id(" LOT-ABCDEFGHI ")
    assert lot == "LOT-ABCDEFGHI"
    assert len(wafer_id(lot, 25)) == 16


@pytest.mark.parametrize("priority", [0, 10, True, "5"])
def test_priority_is_1_to_9(priority: object) -> None:
    with pytest.raises(RuleError, match="priority must be 1-9"):
        check_priority(priority)
    assert check_priority(1) == 1


def test_lot_life_cycle_rules() -> None:
    assert next_lot_state("L", LotState.QUEUED, LotState.RUNNING, None) is LotState.RUNNING
    # a resume goes back to where the hold found the lot
    assert next_lot_state("L", LotState.HELD, None, "running") is LotState.RUNNING
    assert next_lot_state("L", LotState.HELD, None, None) is LotState.QUEUED
    with pytest.raises(RuleError, match="lot L is running, not held: nothing to resume"):
        next_lot_state("L", LotState.RUNNING, None, None)
    with pytest.raises(RuleError, match="lot L is complete: it cannot become running"):
        next_lot_state("L", LotState.COMPLETE, LotState.RUNNING, None)
    assert LOT_TRANSITIONS[LotState.ABORTED] == set()
    with pytest.raises(RuleError, match="unknown lot state 'done'"):
        lot_state("done")


def test_final_wafer_states_imply_the_outcome() -> None:
    assert wafer_outcome(COMPLETE, None) == "good"
    assert wafer_outcome(SCRAPPED, None) == "scrapped"
    assert wafer_outcome(ABORTED, None) == "aborted"
    assert wafer_outcome(QUEUED, None) is None
    with pytest.raises(RuleError, match="unknown wafer outcome 'fine'"):
        wafer_outcome(COMPLETE, "fine")


def test_dispositions_follow_the_wafer_state() -> None:
    check_disposition("W", AWAITING, Disposition.RETRY, "print")
    check_disposition("W", HELD, Disposition.CONTINUE, None)
    with pytest.raises(RuleError, match="it can take continue or scrap, not retry"):
        check_disposition("W", HELD, Disposition.RETRY, None)
    with pytest.raises(RuleError, match="only a held wafer or one awaiting disposition"):
        check_disposition("W", QUEUED, Disposition.SCRAP, None)
    with pytest.raises(RuleError, match="a reflow is never repeated"):
        check_disposition("W", AWAITING, Disposition.RETRY, "reflow")
    with pytest.raises(RuleError, match="unknown disposition 'redo'"):
        disposition("redo")


def test_steps_intents_and_windows() -> None:
    assert check_step_status("failed") == "failed"
    with pytest.raises(RuleError, match="step status 'running'"):
        check_step_status("running")  # a step ends; it does not end running
    with pytest.raises(RuleError, match="intent outcome 'maybe'"):
        check_intent_outcome("maybe")
    assert check_windows({"peak_c": (340, 360), "bridges": [None, 0]}) == {
        "peak_c": [340.0, 360.0],
        "bridges": [None, 0.0],
    }
    with pytest.raises(RuleError, match="low 360.0 above high 340.0"):
        check_windows({"peak_c": [360, 340]})
    with pytest.raises(RuleError, match="must be \\[low, high\\]"):
        check_windows({"peak_c": 350})

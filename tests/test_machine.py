"""The wafer state machine: every trigger from every state, and the events it emits."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequences.errors import SequenceError
from sequences.wafer.machine import (
    FINAL_STATES,
    TRIGGERS,
    WaferEvent,
    WaferMachine,
    mermaid_diagram,
    retry_targets,
)

KINDS = ["place", "reflow", "clean"]  # ballmount-sac305
REBUMP = ["print", "reflow", "clean", "print", "reflow", "clean"]


def machine(kinds=KINDS, **kw) -> tuple[WaferMachine, list[WaferEvent]]:
    events: list[WaferEvent] = []
    return WaferMachine("W01", kinds, on_event=events.append, **kw), events


def drive(m: WaferMachine, path: list[str]) -> None:
    for trigger in path:
        m.fire(trigger, why=f"test {trigger}")


# How to reach each state of the 3-step machine from queued.
PATHS: dict[str, list[str]] = {
    "queued": [],
    "step1_waiting": ["start"],
    "step1_running": ["start", "tool_acquired"],
    "step1_judging": ["start", "tool_acquired", "step_done"],
    "step2_waiting": ["start", "tool_acquired", "step_done", "judged_ok"],
    "step2_running": ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired"],
    "step2_judging": ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired",
                      "step_done"],
    "step3_waiting": ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired",
                      "step_done", "judged_ok"],
    "step3_judging": ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired",
                      "step_done", "judged_ok", "tool_acquired", "step_done"],
    "complete": ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired",
                 "step_done", "judged_ok", "tool_acquired", "step_done", "judged_ok"],
    "held": ["start", "hold"],
    "awaiting_disposition@1": ["start", "tool_acquired", "step_failed"],
    "awaiting_disposition@2": ["start", "tool_acquired", "step_done", "judged_ok",
                               "tool_acquired", "step_done", "step_failed"],
    "awaiting_disposition@3": ["start", "tool_acquired", "step_done", "judged_ok",
                               "tool_acquired", "step_done", "judged_ok", "tool_acquired",
                               "step_failed"],
    "aborted": ["start", "abort"],
    "scrapped": ["start", "hold", "scrap"],
}

ALLOWED: dict[str, set[str]] = {
    "queued": {"start", "hold", "abort"},
    "step1_waiting": {"tool_acquired", "hold", "abort"},
    "step1_running": {"step_done", "step_failed", "abort"},
    "step1_judging": {"judged_ok", "step_failed", "abort", "repair"},  # a place step
    "step2_waiting": {"tool_acquired", "hold", "abort"},
    "step2_running": {"step_done", "step_failed", "abort"},
    "step2_judging": {"judged_ok", "step_failed", "abort"},  # a reflow: no repair
    "step3_waiting": {"tool_acquired", "hold", "abort"},
    "step3_judging": {"judged_ok", "step_failed", "abort"},
    "complete": set(),
    "held": {"resume", "abort", "scrap"},
    "awaiting_disposition@1": {"continue_as_is", "retry", "abort", "scrap"},
    "awaiting_disposition@2": {"continue_as_is", "abort", "scrap"},  # a reflow: never retried
    "awaiting_disposition@3": {"continue_as_is", "retry", "abort", "scrap"},
    "aborted": set(),
    "scrapped": set(),
}


@pytest.mark.parametrize("where", sorted(PATHS))
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_trigger_from_every_state(where: str, trigger: str) -> None:
    m, events = machine()
    drive(m, PATHS[where])
    state = m.state
    assert state == where.split("@")[0]
    before = len(events)
    if trigger in ALLOWED[where]:
        event = m.fire(trigger, why="because")
        assert events[-1] is event and len(events) == before + 1
        assert (event.from_state, event.to_state, event.trigger) == (state, m.state, trigger)
        assert event.why == "because" and event.wafer_id == "W01"
    else:
        with pytest.raises(SequenceError, match=f"wafer W01 is {state}.*'{trigger}' is not "
                                                f"allowed now"):
            m.fire(trigger)
        assert m.state == state and len(events) == before  # a refusal changes nothing


def test_allowed_lists_exactly_the_possible_triggers() -> None:
    for where, path in PATHS.items():
        m, _ = machine()
        drive(m, path)
        assert set(m.allowed()) == ALLOWED[where], where


@pytest.mark.parametrize("where", ["queued", "step1_waiting", "step2_waiting", "step3_waiting"])
def test_resume_returns_to_where_the_wafer_was_held(where: str) -> None:
    m, events = machine()
    drive(m, PATHS[where])
    m.fire("hold", why="operator: check the stencil")
    assert m.state == "held" and m.hold_reason == "operator: check the stencil"
    m.fire("resume", why="checked")
    assert m.state == where
    assert [e.trigger for e in events[-2:]] == ["hold", "resume"]
    assert events[-1].from_state == "held" and events[-1].to_state == where


@pytest.mark.parametrize("where", sorted(set(PATHS) - {"complete", "aborted", "scrapped"}))
def test_abort_from_every_live_state(where: str) -> None:
    m, events = machine()
    drive(m, PATHS[where])
    m.fire("abort", why="lot cancelled")
    assert m.state == "aborted" and m.done
    assert events[-1].why == "lot cancelled"
    assert m.allowed() == []


def test_scrap_only_after_an_engineer_looked() -> None:
    for where in ("held", "awaiting_disposition@1"):
        m, _ = machine()
        drive(m, PATHS[where])
        m.fire("scrap", why="cracked")
        assert m.state == "scrapped"


def test_retry_targets_never_a_reflow() -> None:
    assert retry_targets(KINDS) == {1: 1, 3: 3}
    assert retry_targets(REBUMP) == {1: 1, 3: 3, 4: 4, 6: 6}
    # place and print before one reflow: a bad print strips both, so retry from the place
    assert retry_targets(["place", "print", "reflow", "clean"]) == {1: 1, 2: 1, 4: 4}


def test_retry_goes_back_to_the_first_deposit_since_the_last_reflow() -> None:
    m, events = machine(["place", "print", "reflow", "clean"])
    drive(m, ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired", "step_done",
              "step_failed"])
    assert m.failed_step == 2
    m.fire("retry", why="misprint stripped")
    assert m.state == "step1_waiting"
    assert (events[-1].step, events[-1].from_state) == (2, "awaiting_disposition")


def test_continue_as_is_moves_past_the_failed_step() -> None:
    for where, after in (("awaiting_disposition@1", "step2_waiting"),
                         ("awaiting_disposition@2", "step3_waiting"),
                         ("awaiting_disposition@3", "complete")):
        m, _ = machine()
        drive(m, PATHS[where])
        m.fire("continue_as_is", why="peak 1 °C high, accepted")
        assert m.state == after


def test_repair_runs_the_place_step_again() -> None:
    m, events = machine()
    drive(m, ["start", "tool_acquired", "step_done", "repair", "step_done", "judged_ok"])
    assert [e.to_state for e in events] == [
        "step1_waiting", "step1_running", "step1_judging", "step1_running", "step1_judging",
        "step2_waiting"]


def test_events_carry_step_tool_measurements_and_time() -> None:
    clock = iter([10.0, 20.0, 30.0])
    m, events = machine(now=lambda: next(clock))
    m.fire("start")
    m.fire("tool_acquired", tool="placer-1", why="place on placer-1")
    m.fire("step_done", tool="placer-1", measurements={"missing": 3, "extra": 0})
    e = events[-1]
    assert (e.step, e.step_kind, e.tool, e.tool_time) == (1, "place", "placer-1", 30.0)
    assert e.measurements == {"missing": 3, "extra": 0}
    assert [ev.tool_time for ev in events] == [10.0, 20.0, 30.0]
    with pytest.raises(AttributeError):
        e.why = "changed"  # type: ignore[misc]  # events are frozen records


def test_event_is_delivered_before_fire_returns() -> None:
    seen: list[str] = []
    m = WaferMachine("W02", KINDS, on_event=lambda e: seen.append(e.to_state))
    m.fire("start")
    assert seen == ["step1_waiting"]  # the controller has it before the next tool command


def test_step_range_machine_starts_and_completes_inside_the_range() -> None:
    m, events = machine(REBUMP, first=4, last=5)
    drive(m, ["start", "tool_acquired", "step_done", "judged_ok", "tool_acquired",
              "step_done", "judged_ok"])
    assert m.state == "complete"
    assert events[0].to_state == "step4_waiting" and events[0].step == 4
    # a retry may not restart before the range's first step
    m2, _ = machine(["place", "print", "reflow", "clean"], first=2)
    drive(m2, ["start", "tool_acquired", "step_failed"])
    assert "retry" not in m2.allowed()
    with pytest.raises(SequenceError, match="steps 3-9 outside the recipe's 1-6"):
        machine(REBUMP, first=3, last=9)


def test_unknown_trigger_is_refused() -> None:
    m, _ = machine()
    with pytest.raises(SequenceError, match="unknown wafer event 'teleport'"):
        m.fire("teleport")


def test_final_states() -> None:
    assert set(FINAL_STATES) == {"complete", "aborted", "scrapped"}


def test_mermaid_diagram_and_the_shipped_doc() -> None:
    text = mermaid_diagram(REBUMP, "rebump-hipb-snpb")
    assert text.startswith("---\nrebump-hipb-snpb\n---\nstateDiagram-v2")
    assert "step5_judging --> awaiting_disposition: step_failed" in text
    assert "awaiting_disposition --> step4_waiting: retry [failed_at_step4]" in text
    assert "retry [failed_at_step5]" not in text  # the cap reflow is never retried
    assert "held --> step3_waiting: resume [was_step3_waiting]" in text
    assert "\n  Class " not in text  # Mermaid's keyword is lowercase
    doc = Path(__file__).resolve().parents[1] / "docs" / "wafer-state-machine.mmd"
    assert doc.read_text(encoding="utf-8") == text, "regenerate: make docs"
    recipes_doc = (doc.parent / "recipes.md").read_text(encoding="utf-8")
    assert "```mermaid\n" + text + "```" in recipes_doc, "copy the diagram into docs/recipes.md"

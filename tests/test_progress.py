"""The live view of `bumpline run`: what each wafer's row says, and the plain log lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.progress import LiveProgress, _describe
from controller.store import Store
from sequences.machine import WaferEvent


def _event(step: int, kind: str, source: str, dest: str, trigger: str, **kw) -> WaferEvent:
    return WaferEvent("L1-01", step, kind, source, dest, trigger, kw.pop("why", ""), **kw)


@pytest.mark.parametrize(
    ("state", "event", "shown"),
    [
        (
            "step4_waiting",
            _event(3, "clean", "step3_judging", "step4_waiting", "judged_ok"),
            "step 4 waiting for a tool",
        ),
        (
            "step3_running",
            _event(3, "clean", "step3_waiting", "step3_running", "tool_acquired", tool="cleaner-1"),
            "step 3 clean: running on cleaner-1",
        ),
        ("step2_judging", None, "step 2 judging"),
        ("awaiting_disposition", None, "awaiting disposition"),
        ("complete", None, "complete"),
    ],
)
def test_each_state_reads_as_a_person_would_say_it(state, event, shown) -> None:
    assert _describe(state, event) == shown


def test_plain_mode_prints_one_line_per_finished_step(tmp_path: Path, capsys) -> None:
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        store.create_lot(
            "L1", recipe_name="r", recipe_version=1, recipe_hash="h", slots=[1], user="op"
        )
        live = LiveProgress(store, ["L1"], plain=True)
        with live:
            live.progress.on_event(
                _event(
                    2, "reflow", "step2_waiting", "step2_running", "tool_acquired", tool="oven-1"
                )
            )
            live.progress.on_event(
                _event(
                    2,
                    "reflow",
                    "step2_judging",
                    "step3_waiting",
                    "judged_ok",
                    measurements={"peak_c": 348.8, "tal_s": 64.3},
                )
            )
            live.progress.on_tool_note("printer-1", "changeover to stencil ST-300-080")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2  # the step start is not a line of its own; the result and the note are
    assert "judged_ok" in out[0] and "peak 348.8 °C, TAL 64 s" in out[0]
    assert out[1].strip() == "printer-1: changeover to stencil ST-300-080"

"""A controller stopped dead between a step's unload and its judgment's commit.

The runner judges a wafer, stores ``step_done`` with the measurements, unloads it, and
only then commits ``judged_ok`` (or ``step_failed``). Killed between the unload and that
commit, the store says "judging" and the tool is empty: the fault campaign found such
wafers held for an engineer ("printer-1 no longer shows the wafer"). Recovery now judges
them again from the measurements stored with ``step_done``, and sends the tool nothing.

Each row runs the real runner and journal on a store, with an in-memory tool scripted
after the spec that is "killed" at its ULD (nothing after it runs), then a new journal
and ``Recovery`` on the same store, as a resumed controller does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from controller.line.events import LineEventStream
from controller.line.journal import StoreJournal
from controller.line.recovery import Recovery
from controller.line.scheduled import ScheduledTool, ScheduledWafer
from controller.store import Store
from drivers.clock import ManualClock
from drivers.types import (
    Alarm,
    Identity,
    OvenState,
    OvenStatus,
    PlacementResult,
    PlacerState,
    PlacerStatus,
    PrinterState,
    PrinterStatus,
    PrintResult,
    ReflowResult,
    RunStatus,
)
from sequences.kinds import kind_of
from sequences.recipes.recipe import Recipe, find_recipe
from sequences.wafer.journal import StepClosed, StepOpened
from sequences.wafer.machine import WaferMachine
from sequences.wafer.runner import WaferRun

PRINTING = find_recipe("rebump-hipb-snpb")  # step 1: print
PLACING = find_recipe("ballmount-sac305")  # step 1: place
GOOD_PRINT = dict(vol_mean_pct=100.0, vol_min_pct=90.0, vol_max_pct=110.0, bridges=0,
                  insufficient=0)


class Killed(BaseException):
    """The controller's SIGKILL: nothing after it runs (not an error anything catches)."""


class HostLinkTool:
    """A printer or ball mounter in memory: LOD, start, result, RPR, ULD as the specs say.
    ``kill_at_unload``: the controller dies right after the tool has taken its ULD."""

    def __init__(self, name: str, states: Any, status: Any, results: list[Any]) -> None:
        self.name, self.states, self._status, self.results = name, states, status, results
        self.clock = ManualClock()
        self.kill_at_unload = True
        self.sent: list[str] = []

    async def status(self) -> Any:
        return self._status

    def _to(self, state: Any, wafer: str | None) -> None:
        self._status = dataclasses.replace(self._status, state=state, wafer_id=wafer)

    async def wait_for(self, *states: Any, timeout_s: float) -> Any:
        assert self._status.state in states, (self._status.state, states)
        return self._status

    async def load(self, wafer_id: str) -> None:
        self.sent.append("LOD")
        self._to(self.states.READY, wafer_id)

    async def _start(self) -> None:
        self._to(self.states.DONE, self._status.wafer_id)

    async def start_print(self) -> None:
        self.sent.append("PRT")
        await self._start()

    async def start_placement(self) -> None:
        self.sent.append("PLC")
        await self._start()

    async def result(self) -> Any:
        self.sent.append("RES")
        return dataclasses.replace(self.results[0], wafer_id=self._status.wafer_id)

    async def repair(self) -> None:
        self.sent.append("RPR")
        self.results.pop(0)

    async def unload(self) -> None:
        self.sent.append("ULD")
        self._to(self.states.IDLE, None)
        if self.kill_at_unload:
            raise Killed

    async def set_recipe(self, recipe: Any) -> None:
        self.sent.append("RCP")

    async def alarm(self) -> Alarm | None:
        return None

    async def clear_alarm(self) -> None: ...
    async def identify(self) -> Identity: ...
    async def abort(self) -> None: ...
    async def changeover(self, *setup: Any) -> None: ...
    async def wipe(self) -> None: ...
    async def fill(self) -> None: ...


def printer(**measured: Any) -> HostLinkTool:
    step = PRINTING.step(1)
    idle = PrinterStatus(PrinterState.IDLE, None, 0, 0, 80.0, step.stencil_id,
                         step.paste_alloy)
    return HostLinkTool("printer-1", PrinterState, idle,
                        [PrintResult("", RunStatus.OK, **{**GOOD_PRINT, **measured})])


def placer(*missing: int) -> HostLinkTool:
    step = PLACING.step(1)
    idle = PlacerStatus(PlacerState.IDLE, None, 0, step.ball_alloy, step.ball_diameter_um,
                        50.0, 50.0)
    return HostLinkTool("placer-1", PlacerState, idle,
                        [PlacementResult("", RunStatus.OK, step.sites, step.sites - m, m, 0, 5)
                         for m in missing])


async def _killed_at_unload(store: Store, recipe: Recipe, tool: HostLinkTool) -> None:
    journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
    run = WaferRun(recipe, "K1-01", ManualClock(), journal=journal)
    with pytest.raises(Killed):
        await run.run_step(tool)


async def _resume(store: Store, recipe: Recipe, tool: HostLinkTool) -> tuple[WaferRun, list[str]]:
    notes: list[str] = []
    journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
    recovery = Recovery(store, journal, ManualClock(), lambda wafer, text: notes.append(text))
    (wafer,) = store.wafers("K1")
    run = recovery.restored_run(recipe, wafer.id, wafer.state)
    await recovery.settle([ScheduledWafer(run, "K1", 5, 0)],
                          {tool.name: ScheduledTool(tool.name, "?", tool)})
    return run, notes


@pytest.mark.parametrize(("recipe", "make_tool", "state", "why"), [
    # Judged within every window: the wafer goes on to its reflow, the step is done.
    (PRINTING, lambda: printer(), "step2_waiting", "within every window"),
    # A misprint stays a misprint, for its own reason, not "no longer shows the wafer".
    (PRINTING, lambda: printer(bridges=3), "awaiting_disposition", "bridges 3 above"),
    # 4 defects, one repair (RPR), 1 left: judged as repaired, never sent for a second repair.
    (PLACING, lambda: placer(4, 1), "step2_waiting", "within every window"),
    # 4 defects, 3 left after the repair: still above the limit, and no second repair.
    (PLACING, lambda: placer(4, 3), "awaiting_disposition", "after repair"),
])
async def test_a_wafer_killed_between_unload_and_judgment_is_judged_again(
        tmp_path: Path, recipe: Recipe, make_tool, state: str, why: str) -> None:
    tool = make_tool()
    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        store.create_lot("K1", recipe_name=recipe.name, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=[1], user="t")
        await _killed_at_unload(store, recipe, tool)
        assert store.wafers("K1")[0].state == "step1_judging"  # the window
        assert tool.sent[-1] == "ULD" and (await tool.status()).wafer_id is None
        before = len(tool.sent)
        run, notes = await _resume(store, recipe, tool)
        assert run.state == state, notes
        assert tool.sent[before:] == []  # nothing printed, placed, repaired or unloaded again
        (record,) = store.steps("K1-01")
        assert record.status == ("done" if state == "step2_waiting" else "failed")
        last = store.events("K1-01")[-1]
        assert why in last.why, last.why
        assert any("judged again from the measurements" in n for n in notes), notes
        assert not any("no longer shows" in n for n in notes), notes
        assert store.open_intents() == []


@pytest.mark.parametrize(("recipe", "make_tool", "state"), [
    (PRINTING, lambda: printer(), "step2_waiting"),
    # Judged after its repair: judged so again, the mounter is not asked for a second one.
    (PLACING, lambda: placer(4, 3), "awaiting_disposition"),
])
async def test_a_wafer_killed_before_its_unload_is_unloaded_once(
        tmp_path: Path, recipe: Recipe, make_tool, state: str) -> None:
    """The control rows: killed before ULD reached the tool, the wafer is still in it (DONE):
    its result is read again, judged, and it is unloaded once."""
    tool = make_tool()

    async def dies_first() -> None:
        raise Killed

    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        store.create_lot("K1", recipe_name=recipe.name, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=[1], user="t")
        tool.unload, unload = dies_first, tool.unload  # type: ignore[method-assign]
        await _killed_at_unload(store, recipe, tool)
        assert (await tool.status()).state is tool.states.DONE
        tool.unload = unload  # type: ignore[method-assign]
        tool.kill_at_unload = False
        before = len(tool.sent)
        run, _ = await _resume(store, recipe, tool)
        assert run.state == state
        assert tool.sent[before:] == ["RES", "ULD"]


# --- several wafers on the oven belt, one of them out of its window -----------------------------

REFLOW = PRINTING.step(2)


class Belt:
    """An oven in memory whose belt delivers its wafers at the exit, in order."""

    name = "oven-1"

    def __init__(self, peaks: dict[str, float]) -> None:
        self.belt, self.peaks = list(peaks), peaks
        self.last_exit, self.at_exit = "", False
        self.unloaded: list[str] = []

    async def status(self) -> OvenStatus:
        if not self.at_exit and self.belt:
            self.last_exit, self.at_exit = self.belt.pop(0), True
        return OvenStatus(OvenState.READY, (150.0,) * 10, len(self.belt) + self.at_exit, 0,
                          20, REFLOW.profile_id, entrance_clear=True,
                          wafer_at_exit=self.at_exit, zones_stable=True, alarm_active=False,
                          nitrogen_on=True, conveyor_running=True)

    async def exit_result(self) -> ReflowResult:
        return ReflowResult(self.last_exit, self.peaks[self.last_exit], 60.0, 1.0, 2.0,
                            REFLOW.profile_id, 20, 0)

    async def exit_values(self) -> ReflowResult:
        return await self.exit_result()

    async def unload(self, wafer_id: str | None = None) -> None:
        self.unloaded.append(self.last_exit)
        self.at_exit = False


def _riding(store: Store, wafer: str) -> None:
    """Printed and judged, then loaded onto oven-1 (LOAD acknowledged) when the controller
    died: the store as the runner leaves it."""
    journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
    machine = WaferMachine(wafer, [s.kind for s in PRINTING.steps], on_event=journal.record)
    machine.fire("start")
    for number, tool in ((1, "printer-1"), (2, "oven-1")):
        step = PRINTING.step(number)
        kind = kind_of(step)
        machine.fire("tool_acquired", tool=tool,
                     opens=StepOpened(step.kind, kind.parameters(step), kind.windows(step)))
        if number == 1:
            machine.fire("step_done", tool=tool, measurements=dict(GOOD_PRINT))
            machine.fire("judged_ok", tool=tool, closes=StepClosed("done", dict(GOOD_PRINT)))
    journal.resolve(journal.intend(wafer, "LOAD", "oven-1"), "done")


async def test_several_oven_wafers_settle_once_each_and_one_fails_for_its_own_reason(
        tmp_path: Path) -> None:
    """Issue 10 items 1-2: three wafers riding, the middle one peaks out of window. Each is
    settled once from its own exit result; none is held for an invented reason."""
    wafers = ["K1-01", "K1-02", "K1-03"]
    oven = Belt({"K1-01": 350.0, "K1-02": 390.0, "K1-03": 350.0})
    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        store.create_lot("K1", recipe_name=PRINTING.name, recipe_version=PRINTING.version,
                         recipe_hash=PRINTING.hash, slots=[1, 2, 3], user="t")
        for wafer in wafers:
            _riding(store, wafer)
        notes: list[str] = []
        journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
        recovery = Recovery(store, journal, ManualClock(), lambda w, text: notes.append(text))
        runs = [recovery.restored_run(PRINTING, w.id, w.state) for w in store.wafers("K1")]
        await recovery.settle([ScheduledWafer(run, "K1", 5, i) for i, run in enumerate(runs)],
                              {"oven-1": ScheduledTool("oven-1", "oven", oven)})
        assert [run.state for run in runs] == ["step3_waiting", "awaiting_disposition",
                                               "step3_waiting"], [
            store.events(w)[-1].why for w in wafers]
        assert "peak 390" in store.events("K1-02")[-1].why
        assert oven.unloaded == wafers  # each taken off the belt once
        assert not any("not on this line" in n or "no longer shows" in n for n in notes), notes
        assert store.open_intents() == []
        assert all(s.status != "running" for w in wafers for s in store.steps(w))


@pytest.mark.parametrize(("recipe", "make_tool"), [
    (PRINTING, lambda: printer()),
    (PLACING, lambda: placer(4, 1)),  # judged after its repair
])
async def test_a_wafer_killed_before_its_deferred_judgment_commits_recovers_the_same(
        tmp_path: Path, recipe: Recipe, make_tool) -> None:
    """decision 0017: ``judged_ok`` rides on the journal's next transaction. Killed before
    one comes (nothing flushed), the store is where the kill at ULD leaves it - judging,
    the tool empty - and recovery ends where the committed judgment would have: the next
    step waiting, the step record done, nothing sent again."""
    tool = make_tool()
    tool.kill_at_unload = False
    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        store.create_lot("K1", recipe_name=recipe.name, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=[1], user="t")
        journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
        run = WaferRun(recipe, "K1-01", ManualClock(), journal=journal)
        assert await run.run_step(tool) == "step2_waiting"
        assert journal.pending == 1  # judged_ok: killed here
        assert store.wafers("K1")[0].state == "step1_judging"
        before = len(tool.sent)
        resumed, notes = await _resume(store, recipe, tool)
        assert resumed.state == "step2_waiting", notes
        assert tool.sent[before:] == []
        (record,) = store.steps("K1-01")
        assert record.status == "done"
        assert record.results == run.judgments[1].measurements  # what the judgment stored
        assert store.open_intents() == []


async def test_a_wafer_killed_before_its_deferred_start_commits_is_queued(
        tmp_path: Path) -> None:
    """A start rides on the next transaction too: killed before it, the wafer is queued,
    as if the controller had never started it, and starts again."""
    tool = printer()
    with Store(f"sqlite:///{tmp_path / 'line.db'}") as store:
        store.create_lot("K1", recipe_name=PRINTING.name, recipe_version=PRINTING.version,
                         recipe_hash=PRINTING.hash, slots=[1], user="t")
        journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
        WaferRun(PRINTING, "K1-01", ManualClock(), journal=journal).start(deferrable=True)
        assert store.wafers("K1")[0].state == "queued" and tool.sent == []
        journal = StoreJournal(store, LineEventStream("line-1", lambda: 0.0), lambda w: "K1")
        rerun = WaferRun(PRINTING, "K1-01", ManualClock(), journal=journal)
        tool.kill_at_unload = False
        assert await rerun.run_step(tool) == "step2_waiting"
        journal.flush()
        assert [e.trigger for e in store.events("K1-01")] == [
            "start", "tool_acquired", "step_done", "judged_ok"]

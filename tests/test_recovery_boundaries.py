"""The controller killed at an exact boundary between two journal writes or tool commands,
then resumed on what the store had committed at that instant, against the real simulator.

Each test runs a short lot (one wafer; two for a batch) on a simulated line (in this
process, on real sockets; the batch's plater is ours or the independent EP-25) and kills
the controller at one point of one step: a hook on a driver verb (before the command
goes out, or right after its reply) or on the journal. The kill is a SIGKILL as the store
sees it: the database is copied with SQLite's backup at that instant (committed
transactions only: a deferred transition or an intent's answer not yet carried is lost),
the hook never returns, and the controller's task is cancelled; whatever the dead
controller does after that goes to the old file, which nobody reads again. A new
controller then runs the lot on the copy, on the same tools, which kept working. Each test
counts on the simulator what the tool really did (placements, repairs, LOADs, STARTs).

The boundaries, and which test covers each, are in
docs/audits/2026-12-02-recovery-vs-persist-before-acting.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sim.placer as sim_placer
import sim.plater as sim_plater
from controller.line.batch_records import BatchRecords
from controller.line.controller import LineController
from controller.line.tool_alarms import ToolAlarms
from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import LineTools, open_line
from sequences.kinds.oven_exit import ExitWatch
from sequences.recipes.recipe import Recipe, find_recipe
from sequences.recipes.validate import load_valid_recipe
from sim.line import SimulatedLine
from tests.independent.ep25_server import line_table as ep25_table
from tests.independent.ep25_server import serve as serve_ep25

BALLMOUNT = find_recipe("ballmount-sac305")  # place, reflow, clean
STRIPPING = find_recipe("ballmount-mask-sac305")  # place, reflow, strip (an FC-2)
LAYOUT = {"printer": 0, "placer": 1, "oven": 1, "cleaner": 1, "plater": 0}
SPEED = 1000.0
WORN_MASK = 115_000  # placer wafers: ~65 defects expected (the mask worn), repaired, a few left


class Kill:
    """The instant of death: what is committed then is all a restart finds."""

    def __init__(self, db: Path, copy: Path) -> None:
        self.db, self.copy = db, copy
        self.kept = copy.with_suffix(".at-kill")  # the copy as it was (the resume writes on)
        self.at = asyncio.Event()
        self.pending = -1  # what the journal held uncommitted at the kill
        self.controller: LineController | None = None

    def now(self) -> None:
        for path in (self.copy, self.kept):
            with contextlib.closing(sqlite3.connect(self.db)) as src, \
                    contextlib.closing(sqlite3.connect(path)) as dst:
                src.backup(dst)
        if self.controller is not None:
            self.pending = self.controller.journal.pending
        self.at.set()

    async def dead(self) -> None:
        """Kill here: never returns (the controller's task is cancelled from outside)."""
        self.now()
        await asyncio.Event().wait()


Hook = Callable[[LineTools, Kill], None]


class _Never:
    """A flush timer that never fires (cancelled or not)."""

    def cancel(self) -> None:
        return None


def after(tools: LineTools, tool: str, verb: str, kill: Kill, *, nth: int = 1) -> None:
    """Kill right after the ``nth`` call of ``tool.verb`` returned (the tool acted, the reply
    came, nothing after it ran)."""
    driver = tools[tool]
    original = getattr(driver, verb)
    calls = 0

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = await original(*args, **kwargs)
        calls += 1
        if calls == nth:
            await kill.dead()
        return result

    setattr(driver, verb, hooked)


def before(tools: LineTools, tool: str, verb: str, kill: Kill) -> None:
    """Kill when ``tool.verb`` is called, before anything is sent."""
    driver = tools[tool]

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        await kill.dead()

    setattr(driver, verb, hooked)


async def run_lot(db: Path, config: Any, clock: ScaledClock, lot: str,
                  hook: Hook | None = None, copy: Path | None = None) -> tuple[Any, Kill | None]:
    """Run the lot on ``db``; with ``hook``, until the kill it installs (then the copy holds
    what was committed). Returns the outcome (None when killed) and the kill."""
    with Store(f"sqlite:///{db}") as store:
        # The plater's pushed events are numbered: a new connection says where it was.
        async with open_line(config, clock, event_seqs=BatchRecords(store).seqs()) as tools:
            controller = LineController(store, tools, clock, recipes=load_valid_recipe)
            if hook is None:
                (outcome,) = await controller.run([lot])
                return outcome, None
            assert copy is not None
            kill = Kill(db, copy)
            kill.controller = controller
            hook(tools, kill)
            task = asyncio.create_task(controller.run([lot]))
            waiting = asyncio.ensure_future(kill.at.wait())
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            assert kill.at.is_set(), f"the lot ended before the kill point: {task.result()}"
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return None, kill


def _lot(db: Path, lot: str, recipe: Recipe = BALLMOUNT, wafers: int = 1) -> None:
    with Store(f"sqlite:///{db}") as store:
        store.create_lot(lot, recipe_name=recipe.name, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=list(range(1, wafers + 1)), user="t")


async def _killed_then_resumed(tmp_path: Path, line: SimulatedLine, *hooks: Hook,
                               recipe: Recipe = BALLMOUNT, wafers: int = 1,
                               more_tools: str = "") -> tuple[Any, list[Kill], Path]:
    """Kill at each hook in turn (each run resumes on what the last kill left), then run
    to the end. Returns the last outcome, the kills and the database it ran on.
    ``more_tools``: line-file tables of tools served beside the simulated line."""
    clock = line.clock
    config = parse_line_config(line.config_text() + "\n" + more_tools)
    db = tmp_path / "line-0.db"
    _lot(db, "B1", recipe, wafers)
    kills = []
    for n, hook in enumerate(hooks, start=1):
        copy = tmp_path / f"line-{n}.db"
        _, kill = await run_lot(db, config, clock, "B1", hook, copy)
        assert kill is not None
        kills.append(kill)
        db = copy
    outcome, _ = await run_lot(db, config, clock, "B1")
    return outcome, kills, db


def _place_records(db: Path) -> list[Any]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return [s for s in store.steps("B1-01") if s.kind == "place"]


def _records(db: Path) -> list[Any]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return store.steps("B1-01")


def _events(db: Path) -> list[Any]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return store.events("B1-01")


def _notes(db: Path) -> list[str]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return [a.detail for a in store.audit_log() if a.action == "wafer.recovery"]


def _tool_notes(db: Path, tool: str) -> list[str]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return [a.detail for a in store.audit_log() if a.actor == tool]


def _intents(db: Path, kind: str) -> list[tuple[str, str | None]]:
    with Store(f"sqlite:///{db}", create=False) as store:
        record = [s for s in store.steps("B1-01") if s.kind == kind][-1]
        return [(i.command, i.outcome) for i in store.step_intents(record.id)]


def _line(layout: dict[str, int] = LAYOUT) -> SimulatedLine:
    return SimulatedLine(clock=ScaledClock(SPEED), seed=5, layout=layout,
                         serial_transport="tcp")


# --- the ball mounter's repair ----------------------------------------------------------------

@pytest.mark.parametrize("fixes_extra", [
    0.90,  # the simulator's repair head: 0 left, judged OK
    0.40,  # a head that fixes fewer extra balls: several left, above the limit after repair
])
async def test_killed_after_the_repair_reached_the_mounter_it_is_never_repaired_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixes_extra: float) -> None:
    """Killed right after RPR's reply, before "repair finished" is stored: the store says
    running (after the ``repair`` transition), the mounter holds the repaired wafer. The
    result it shows is the one after the repair: judged as repaired, never sent a second
    RPR (the recipe's one automatic repair), and its record says repaired."""
    monkeypatch.setattr(sim_placer, "REPAIR_FIXES_EXTRA", fixes_extra)
    async with _line() as line:
        placer = line.models["placer-1"]
        placer.mask_wafers = WORN_MASK
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: after(tools, "placer-1", "repair", k))
        assert (placer.placements_executed, placer.repairs) == (1, 1), _events(db)
    first, repair, *_ = [e for e in _events(db) if e.step_index == 1
                         and e.trigger in ("step_done", "repair")]
    assert (first.trigger, repair.trigger) == ("step_done", "repair")  # the pass, then RPR
    (record,) = _place_records(db)
    assert record.results["repaired"] is True, record.results
    assert record.results["defects"] < first.measurements["defects"]  # the result after RPR
    if record.results["defects"] <= BALLMOUNT.step(1).max_defects_after_repair:
        assert outcome.wafers["B1-01"] == "complete", outcome.wafers
    else:
        assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
        assert "after repair" in _events(db)[-1].why, _events(db)[-1].why
    assert any("repair" in n for n in _notes(db)), _notes(db)


async def test_killed_after_the_repair_transition_before_rpr_an_engineer_decides(
        tmp_path: Path) -> None:
    """Killed once ``repair`` is committed, before RPR goes out: the mounter shows the
    result from before the repair, which a repair that changed nothing would show too. Not
    repaired a second time on a guess, nor judged as repaired: an engineer decides, told
    why; the mounter is sent no RPR."""
    async with _line() as line:
        placer = line.models["placer-1"]
        placer.mask_wafers = WORN_MASK
        outcome, _, db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: before(tools, "placer-1", "repair", k))
        assert (placer.placements_executed, placer.repairs) == (1, 0)
    assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
    last = _events(db)[-1]
    assert last.why.startswith("recovery:") and "may have reached it" in last.why, last.why


async def test_a_start_recovery_sends_is_journalled_so_a_second_stop_never_places_twice(
        tmp_path: Path) -> None:
    """Killed after LOD's reply (before PLC's intent): recovery finds the wafer READY and
    starts it. Killed again once its result is read, and the mounter then forgets the wafer
    (a power cycle, or someone took it out): the store must still say PLC was sent. It goes
    to an engineer; it is never loaded and placed a second time."""
    async with _line() as line:
        clock, placer = line.clock, line.models["placer-1"]
        config = parse_line_config(line.config_text())
        db0, db1, db2 = (tmp_path / f"line-{n}.db" for n in range(3))
        _lot(db0, "B1")
        await run_lot(db0, config, clock, "B1",
                      lambda tools, k: after(tools, "placer-1", "load", k), db1)
        assert _intents(db1, "place") == []  # LOD answered, no PLC journalled yet
        await run_lot(db1, config, clock, "B1",
                      lambda tools, k: after(tools, "placer-1", "result", k), db2)
        assert placer.placements_executed == 1 and placer.state == "DONE"
        assert [c for c, _ in _intents(db2, "place")] == ["PLC"]  # recovery's own PLC
        placer.hand_out_wafer(clock.now())  # the mounter forgets it
        outcome, _ = await run_lot(db2, config, clock, "B1")
        assert placer.placements_executed == 1, outcome.wafers
    assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
    assert "its PLC was sent" in _events(db2)[-1].why, _events(db2)[-1].why
    assert any("holds it loaded: starting it" in n for n in _notes(db2))


# --- the oven: LOAD, and the exit -----------------------------------------------------------

@pytest.mark.parametrize(("verb", "how"), [
    # LOAD answered, its answer not yet committed (the intent open), the wafer on the belt.
    ("load", "delivered it at the exit"),
    # Taken off at the exit (UNLOAD answered), step_done not stored: the oven's exit
    # registers still name it (they change when the next wafer arrives).
    ("unload", "delivered it at the exit"),
])
async def test_killed_around_the_oven_the_wafer_is_reflowed_once_and_judged(
        tmp_path: Path, verb: str, how: str) -> None:
    async with _line() as line:
        oven = line.models["oven-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: after(tools, "oven-1", verb, k))
        assert oven._wafers_taken == 1  # one LOAD: one reflow
    ((command, answer),) = _intents(kill.kept, "reflow")
    assert command == "LOAD"
    # Killed at LOAD's reply its answer is not committed (the intent open, as recovery must
    # expect); at the exit the flush timer may have carried it during the ride, or not.
    assert answer is None if verb == "load" else answer in (None, "done")
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert store.wafers("B1")[0].state == "step2_running"  # the kill's store
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    assert any(how in n for n in _notes(db)), _notes(db)
    reflows = [s for s in _records(db) if s.kind == "reflow"]
    assert [s.status for s in reflows] == ["done"] and reflows[0].results["peak_c"]


async def test_an_oven_alarm_latched_while_the_controller_was_down_is_a_row_of_the_alarms(
        tmp_path: Path) -> None:
    """Killed while its wafer rides, the belt jams and the jam is freed before the restart:
    alarm 520 stays latched. Recovery clears it to let the belt empty; before, only the
    wafer's recovery notes said so, and `bumpline alarms` (the operator's, GEM's list)
    had no row of it. Now it is set, naming the wafer, and cleared when recovery's CLEAR
    is taken."""
    def hook(tools: LineTools, kill: Kill, oven: Any, clock: ScaledClock) -> None:
        driver = tools["oven-1"]
        original = driver.load

        async def load(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)
            oven.jam_conveyor(clock.now())  # while no controller watches
            oven.clear_jam(clock.now())  # freed: its alarm stays latched until CLEAR
            await kill.dead()

        driver.load = load

    async with _line() as line:
        oven = line.models["oven-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, oven, line.clock))
        assert oven._wafers_taken == 1
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert store.alarms() == []  # the kill's store: nothing seen
    assert any("alarm 520" in n and "clearing it" in n for n in _notes(db)), _notes(db)
    with Store(f"sqlite:///{db}", create=False) as store:
        (alarm,) = store.alarms(tool="oven-1")
        assert alarm.code == 520 and "found latched by recovery" in alarm.text
        assert alarm.wafer_id == "B1-01" and alarm.lot_id == "B1"
        assert not alarm.active  # recovery's CLEAR was taken
        audit = [a.action for a in store.audit_log() if a.actor == "oven-1"]
        assert "alarm.set" in audit and "alarm.clear" in audit, audit
    # The wafer rode a stopped belt: the oven's own flag fails it, nothing passes silently.
    assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
    assert "belt stopped" in _events(db)[-1].why


async def test_a_jam_freed_only_after_recovery_gave_up_its_wafer_is_still_taken_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed while its wafer rides, the belt jams and stays jammed past recovery's wait
    (twice the slowest transit): the wafer goes to an engineer, still on the stopped belt.
    The jam is freed once the line runs (the scheduler's CLEAR is then taken): the belt
    carries that wafer to the exit, where someone must take it off, or the next wafer
    reaches the exit behind it (530) and the belt stops again."""
    def hook(tools: LineTools, kill: Kill, oven: Any, clock: ScaledClock) -> None:
        driver = tools["oven-1"]
        original = driver.load

        async def load(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)
            if not kill.at.is_set():
                oven.jam_conveyor(clock.now())  # while no controller watches, not freed
                await kill.dead()

        driver.load = load

    async with _line() as line:
        oven = line.models["oven-1"]
        clear = ToolAlarms._clear

        async def freed_then_clear(self: ToolAlarms, tool: Any) -> None:
            oven.clear_jam(line.clock.now())  # a person freed it while the line ran
            await clear(self, tool)

        monkeypatch.setattr(ToolAlarms, "_clear", freed_then_clear)
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, oven, line.clock), wafers=2)
        assert oven._wafers_on_belt() == 0 and oven._exit_waiting is None, oven.state(
            line.clock.now())
    assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
    assert outcome.wafers["B1-02"] == "complete", (outcome.wafers, _events(db))
    with Store(f"sqlite:///{db}", create=False) as store:
        codes = [a.code for a in store.alarms(tool="oven-1")]
    assert 530 not in codes, codes
    # The new controller's oven setup met the jam: said at once, not as "belt not empty"
    # after waiting out a belt that could not move.
    oven_notes = _tool_notes(db, "oven-1")
    assert any("changeover failed: alarm 520" in n for n in oven_notes), oven_notes
    assert not any("belt not empty" in n for n in oven_notes), oven_notes


async def test_a_jam_freed_as_recovery_gave_up_on_the_only_wafer_the_run_still_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As above with one wafer, the jam freed just as recovery gives up (520 still latched):
    no wafer needs the oven any more, so only the exit watcher, looking for the stray, asks
    the oven; it tells the line of the alarm, whose CLEAR lets the belt run, and the stray
    is taken off. Before (found in review), nothing cleared the alarm, the stray never came
    out, and the run waited for it for ever."""
    def hook(tools: LineTools, kill: Kill, oven: Any, clock: ScaledClock) -> None:
        driver = tools["oven-1"]
        original = driver.load

        async def load(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)
            if not kill.at.is_set():
                oven.jam_conveyor(clock.now())
                await kill.dead()

        driver.load = load

    async with _line() as line:
        oven = line.models["oven-1"]
        strays = ExitWatch.strays

        def freed_then_strays(self: ExitWatch, *args: Any) -> None:
            oven.clear_jam(line.clock.now())  # freed, its alarm latched until CLEAR
            strays(self, *args)

        monkeypatch.setattr(ExitWatch, "strays", freed_then_strays)
        outcome, _, db = await asyncio.wait_for(_killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, oven, line.clock)), 60)
        assert oven._wafers_on_belt() == 0 and oven._exit_waiting is None
    assert outcome.wafers == {"B1-01": "awaiting_disposition"}, outcome.wafers
    with Store(f"sqlite:///{db}", create=False) as store:
        assert not [a for a in store.alarms(tool="oven-1") if a.active]


# --- the cleaner: LOAD and START -------------------------------------------------------------

@pytest.mark.parametrize(("verb", "note"), [
    # LOAD answered, START not journalled: the cleaner shows it LOADED: started once, here.
    ("load", None),
    # START answered, its answer not yet committed: the cycle runs on; its result is taken
    # (DONE already, or once the cycle ends).
    ("start", "clean"),
])
async def test_killed_around_the_cleaners_start_the_wafer_is_cleaned_once(
        tmp_path: Path, verb: str, note: str | None) -> None:
    async with _line() as line:
        cleaner = line.models["cleaner-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: after(tools, "cleaner-1", verb, k))
        assert cleaner._cycle_count == 1  # one START: one clean
    assert _intents(kill.kept, "clean") == ([] if verb == "load" else [("START", None)])
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    cleans = [s for s in _records(db) if s.kind == "clean"]
    assert [s.status for s in cleans] == ["done"]
    if note is not None:
        assert any(n.startswith("cleaner-1 ") and note in n for n in _notes(db)), _notes(db)
    else:  # recovery's own START was journalled first
        assert [c for c, _ in _intents(db, "clean")] == ["START"]


@pytest.mark.parametrize(("verb", "note"), [
    # LOAD answered (MODE written with it), START not journalled: LOADED: started once here.
    ("load", None),
    # START answered, not committed: the strip runs on (STRIPPING, ABORT refused); its
    # result is taken from the FC-2 once it is DONE.
    ("start", "clean"),
])
async def test_killed_around_the_fc2s_strip_start_the_mask_is_stripped_once(
        tmp_path: Path, verb: str, note: str | None) -> None:
    """The FC-2's resist strip (flux-cleaner-fc2.md), killed around its START as the flux
    clean above: one strip cycle, its residue judged, the lot complete."""
    line = SimulatedLine(clock=ScaledClock(SPEED), seed=5, layout=LAYOUT,
                         serial_transport="tcp", cleaner_models=("FC-2",))
    async with line:
        stripper = line.models["cleaner-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: after(tools, "cleaner-1", verb, k),
            recipe=STRIPPING)
        assert stripper._cycle_count == 1  # one START: one strip
    assert _intents(kill.kept, "strip") == ([] if verb == "load" else [("START", None)])
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    strips = [s for s in _records(db) if s.kind == "strip"]
    assert [s.status for s in strips] == ["done"]
    assert "mask_residue_pct" in strips[0].results, strips[0].results
    if note is not None:
        assert any(n.startswith("cleaner-1 ") and note in n for n in _notes(db)), _notes(db)
    else:  # recovery's own START was journalled first
        assert [c for c, _ in _intents(db, "strip")] == ["START"]


def door_over(tools: LineTools, kill: Kill, tool: str, verb: str, model: Any,
              clock: ScaledClock) -> None:
    """Right after the first ``tool.verb`` returned, the tool's door opens and closes while
    no controller watches (400 latched over the wafer, cleared only by CLEAR); then killed."""
    driver = tools[tool]
    original = getattr(driver, verb)

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if not kill.at.is_set():  # the first wafer's only
            model.open_door(clock.now())
            model.close_door(clock.now())
            await kill.dead()
        return result

    setattr(driver, verb, hooked)


def _failed_inside_then_out(outcome: Any, db: Path, tool: str) -> None:
    """The first wafer failed by the alarm recovery found (an engineer decides), the alarm
    recorded naming it and cleared, the wafer unloaded; the second wafer completes."""
    assert outcome.wafers == {"B1-01": "awaiting_disposition", "B1-02": "complete"}, (
        outcome.wafers)
    why = _events(db)[-1].why
    assert why.startswith("recovery: ") and "alarm 400" in why, why
    _door_alarm_cleared_and_wafer_unloaded(db, tool)


def _door_alarm_cleared_and_wafer_unloaded(db: Path, tool: str) -> None:
    """The door's 400 recorded once naming the first wafer and cleared; that wafer unloaded."""
    with Store(f"sqlite:///{db}", create=False) as store:
        (alarm,) = store.alarms(tool=tool)
        assert alarm.code == 400 and alarm.wafer_id == "B1-01" and not alarm.active
    audit = _tool_notes(db, tool)
    assert any("B1-01: wafer unloaded" in a for a in audit), audit


async def test_killed_after_an_alarm_stopped_the_clean_the_wafer_comes_out_once_cleared(
        tmp_path: Path) -> None:
    """Killed while the cleaner washes; a door opened meanwhile stopped the cycle (400 with
    the wafer inside) and was closed again before the restart. Recovery finds the cleaner
    in ALARM holding the wafer: its step failed as if the controller had watched it, so an
    engineer decides, the alarm is recorded naming it, and once CLEARed the wafer is
    unloaded. Before: nothing took it out (CLEAR left it DONE in the chamber) and the next
    wafer was held for good at "interlock: cleaner is DONE" (the random soak's seed 4
    plan 14)."""
    async with _line() as line:
        cleaner = line.models["cleaner-1"]
        outcome, _, db = await _killed_then_resumed(
            tmp_path, line,
            lambda tools, k: door_over(tools, k, "cleaner-1", "start", cleaner, line.clock),
            wafers=2)
        assert cleaner._wafer is None  # the chamber is empty at the end
        assert cleaner._cycle_count == 2  # the second wafer was cleaned, the first not again
    _failed_inside_then_out(outcome, db, "cleaner-1")


async def test_killed_after_an_alarm_stopped_the_placement_the_wafer_comes_out_once_cleared(
        tmp_path: Path) -> None:
    """The same on a HostLink tool: the mounter's door opened and closed while it placed
    (400 latched over the wafer). Before, recovery waited for DONE, met the alarm, said the
    mounter "could not be asked", and the wafer stayed inside after the CLEAR."""
    async with _line() as line:
        placer = line.models["placer-1"]
        outcome, _, db = await _killed_then_resumed(
            tmp_path, line,
            lambda tools, k: door_over(tools, k, "placer-1", "start_placement", placer,
                                       line.clock),
            wafers=2)
        assert placer.wafer_id is None and placer.state == "IDLE", placer.state
    _failed_inside_then_out(outcome, db, "placer-1")


def door_during(tools: LineTools, tool: str, verb: str, model: Any, clock: ScaledClock,
                ) -> None:
    """Right after the first ``tool.verb`` returned, the tool's door opens and closes with
    the controller watching (400 latched over the wafer: its step fails)."""
    driver = tools[tool]
    original = getattr(driver, verb)
    calls = 0

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = await original(*args, **kwargs)
        calls += 1
        if calls == 1:
            model.open_door(clock.now())
            model.close_door(clock.now())
        return result

    setattr(driver, verb, hooked)


def _handed_out_by_recovery(outcome: Any, db: Path, tool: str) -> None:
    """The first wafer failed (the door's 400, recorded once and cleared by the first run),
    then the tool's unload of it was cut short by the kill: recovery finds it still inside
    and hands it out; the second wafer completes."""
    assert outcome.wafers == {"B1-01": "awaiting_disposition", "B1-02": "complete"}, (
        outcome.wafers)
    assert any(n.startswith("step ") and f"{tool} still holds it" in n
               for n in _notes(db)), _notes(db)
    _door_alarm_cleared_and_wafer_unloaded(db, tool)


async def test_killed_before_a_failed_clean_was_unloaded_recovery_hands_it_out(
        tmp_path: Path) -> None:
    """A door opened over the first wafer's wash, the controller watching: the clean failed,
    the alarm was recorded and CLEARed, and the kill fell before the UNLOAD that hands the
    wafer out. The store says awaiting disposition, which recovery did not look at: the
    wafer stayed in the chamber (DONE) and the second was held at "interlock: cleaner is
    DONE" for good (the independent soak's seed 7 plan 24). Now recovery asks the cleaner,
    finds the failed wafer inside, and the line hands it out as after any failure."""
    async with _line() as line:
        cleaner = line.models["cleaner-1"]

        def hook(tools: LineTools, kill: Kill) -> None:
            door_during(tools, "cleaner-1", "start", cleaner, line.clock)
            before(tools, "cleaner-1", "unload", kill)  # the first: the failed wafer's

        outcome, _, db = await _killed_then_resumed(tmp_path, line, hook, wafers=2)
        assert cleaner._wafer is None  # the chamber is empty at the end
    _handed_out_by_recovery(outcome, db, "cleaner-1")


async def test_killed_before_a_failed_placement_was_unloaded_recovery_hands_it_out(
        tmp_path: Path) -> None:
    """The same on a HostLink tool: the mounter's door opened and closed while it placed
    the first wafer; killed before the ULD that hands it out. Before, the mounter kept it
    (DONE) and the second wafer was held at its interlock for good."""
    async with _line() as line:
        placer = line.models["placer-1"]

        def hook(tools: LineTools, kill: Kill) -> None:
            door_during(tools, "placer-1", "start_placement", placer, line.clock)
            before(tools, "placer-1", "unload", kill)

        outcome, _, db = await _killed_then_resumed(tmp_path, line, hook, wafers=2)
        assert placer.wafer_id is None and placer.state == "IDLE", placer.state
    _handed_out_by_recovery(outcome, db, "placer-1")


# --- a deferred judgment waiting for the flush --------------------------------------------------

async def test_killed_while_a_deferred_judgment_waits_for_its_flush(tmp_path: Path) -> None:
    """The placement's judged_ok rides on the journal's next transaction (decision 0017).
    Killed before one comes (at the oven's interlock read for the next step): the store says
    judging with the mounter empty; recovery judges it again from what step_done stored and
    it goes on, placed once, never held."""
    def hook(tools: LineTools, kill: Kill) -> None:
        assert kill.controller is not None
        # The journal's flush timer never fires in this run: the kill comes before it,
        # however slow the machine (it would otherwise carry the judgment within 1 wall s).
        kill.controller.journal._arm = lambda delay, callback: _Never()
        driver = tools["oven-1"]
        original = driver.readiness

        async def readiness() -> Any:
            controller = kill.controller
            assert controller is not None
            wafer = controller.scheduler.wafers["B1-01"].run
            if wafer.state == "step2_waiting" and controller.journal.pending:
                await kill.dead()
            return await original()

        driver.readiness = readiness

    async with _line() as line:
        placer = line.models["placer-1"]
        outcome, (kill,), db = await _killed_then_resumed(tmp_path, line, hook)
        assert placer.placements_executed == 1 and placer.repairs <= 1
    assert kill.pending >= 1
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert store.wafers("B1")[0].state == "step1_judging"
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    assert any("judged again from the measurements" in n for n in _notes(db)), _notes(db)


async def test_killed_after_the_oven_refused_the_load_the_wafer_waits_again(
        tmp_path: Path) -> None:
    """The oven refuses a LOAD (exception 06: nothing moved; here its purge was off for that
    one command). The reflow step looks at the oven's inputs and tries again; killed before
    that: the refusal must be in the store, or recovery finds a LOAD that "may have reached"
    an oven that never showed the wafer and holds it for nothing. It waits for the oven
    again and is reflowed once."""
    def hook(tools: LineTools, kill: Kill, oven: Any) -> None:
        driver = tools["oven-1"]
        load = driver.load

        async def refused(*args: Any, **kwargs: Any) -> Any:
            oven._n2_coil = False  # the tool's refusal: LOAD needs the purge
            try:
                return await load(*args, **kwargs)
            finally:
                oven._n2_coil = True

        async def signals() -> Any:  # the step's look before it tries again: killed here
            await kill.dead()

        driver.load, driver.signals = refused, signals

    async with _line() as line:
        oven = line.models["oven-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, oven))
        assert oven._wafers_taken == 1  # refused once, loaded once after the resume
    assert _intents(kill.kept, "reflow") == [("LOAD", "failed")]
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    assert any("never took it" in n for n in _notes(db)), _notes(db)


# --- the plater: a batch's LOAD, START and UNLOAD -----------------------------------------------

SNCU = find_recipe("rebump-sncu-niau-snpb")  # step 4: the Ni/Au barrier, in one batch
PLATING = {"printer": 1, "placer": 0, "oven": 1, "cleaner": 1, "plater": 1}


# (hook, the wafers' state at the kill, what recovery notes on each)
BATCH_KILLS = [
    # Both LOAD intents committed, the carrier never sent: the plater never took it.
    (lambda tools, k: before(tools, "plater-1", "load", k), "step4_running",
     "never started it"),
    # LOAD answered, no START journalled: the plater shows our carrier LOADED: started.
    (lambda tools, k: after(tools, "plater-1", "load", k), "step4_running", "started now"),
    # START answered, its answer not committed: the batch runs on; its results are taken.
    (lambda tools, k: after(tools, "plater-1", "start", k), "step4_running", "reports batch"),
    # The carrier out (UNLOAD answered; each member's step_done was committed before it),
    # the members' judgments not committed.
    (lambda tools, k: after(tools, "plater-1", "unload", k), "step4_judging", "reports batch"),
]
BATCH_KILL_IDS = ["before-load", "after-load", "after-start", "after-unload"]


def _each_plated_once(outcome: Any, db: Path, at_kill: str) -> None:
    """Both wafers complete, each one's last barrier record done, recovery's note on each."""
    assert set(outcome.wafers.values()) == {"complete"}, outcome.wafers
    with Store(f"sqlite:///{db}", create=False) as store:
        for wafer in ("B1-01", "B1-02"):
            barrier = [s for s in store.steps(wafer) if s.kind == "barrier"]
            assert barrier[-1].status == "done", barrier
    notes = _notes(db)
    assert sum(at_kill in n for n in notes) == 2, notes


@pytest.mark.parametrize(("hook", "state", "at_kill"), BATCH_KILLS, ids=BATCH_KILL_IDS)
async def test_killed_around_a_batch_each_wafer_is_plated_once(
        tmp_path: Path, hook: Hook, state: str, at_kill: str) -> None:
    async with _line(layout=PLATING) as line:
        plater = line.models["plater-1"]
        outcome, (kill,), db = await _killed_then_resumed(tmp_path, line, hook,
                                                          recipe=SNCU, wafers=2)
        assert plater._batches_started == 1  # one START: plated once
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        # Why a wafer was elsewhere at the kill, for a failure on a loaded machine.
        why = {w.id: store.events(w.id)[-1].why for w in store.wafers("B1")
               if w.state != state}
        assert {w.state for w in store.wafers("B1")} == {state}, why
    _each_plated_once(outcome, db, at_kill)


@pytest.mark.parametrize(("hook", "at_kill"), [(hook, note) for hook, _, note in BATCH_KILLS],
                         ids=BATCH_KILL_IDS)
async def test_killed_around_a_batch_on_the_independent_plater_each_wafer_is_plated_once(
        tmp_path: Path, hook: Hook, at_kill: str) -> None:
    """The same kills against the EP-25 written from barrier-plater.md alone
    (tests/independent/ep25.py: events pushed while no host listens are kept by number,
    a new connection is told nothing of them, a DONE only after its STATE DONE): the
    resumed controller catches up and settles the batch from what this tool reports."""
    async with _line(layout={**PLATING, "plater": 0}) as line, \
            serve_ep25(SPEED) as served:
        outcome, _, db = await _killed_then_resumed(
            tmp_path, line, hook, recipe=SNCU, wafers=2, more_tools=ep25_table(served))
    log = [e.split()[0] for e in served.tool.log]
    assert log.count("start") == 1 and log.count("unload") == 1, served.tool.log
    _each_plated_once(outcome, db, at_kill)


def _stopped_by(code: int, plater: Any, clock: ScaledClock) -> Callable[[], Any]:
    """The alarm that ends the running batch while no controller watches, its cause gone
    before the restart (so CLEAR is taken): 900, an emergency stop pressed and released;
    700, the nickel heater failing until the bath leaves its ±3 °C, then repaired."""
    async def stop() -> None:
        if code == 900:
            plater.latch_alarm(900, clock.now(), "emergency stop pressed and released")
            return
        plater.fail_heater("ni", clock.now())
        while 700 not in plater.alarms:  # the bath cools 0.01 °C/s: ~300 tool s
            await clock.sleep(10.0)
            plater.advance(clock.now())
        plater.repair_heater("ni", clock.now())
    return stop


@pytest.mark.parametrize("code", [900, 700])
async def test_killed_after_an_alarm_stopped_the_batch_its_carrier_comes_out_once_cleared(
        tmp_path: Path, code: int) -> None:
    """Killed right after the batch's START; an alarm that ends a running batch (status
    ALARM, barrier-plater.md) latched meanwhile and its cause was gone before the restart.
    Recovery finds the plater in ALARM with our carrier inside: the riders' step failed as
    if watched (an engineer decides; never started again: plated once), the alarm is
    recorded once naming every rider, CLEARed, and the carrier unloaded. Before, the riders
    were judged from the ALARM result, no alarm was recorded and the carrier stayed in the
    ALARMed tool after the run; the next lot's batch is not held up by it either."""
    def hook(tools: LineTools, kill: Kill, stop: Callable[[], Any]) -> None:
        driver = tools["plater-1"]
        original = driver.start

        async def start(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)
            if not kill.at.is_set():  # the first batch's START only
                await stop()  # while no controller watches (nothing else is running)
                await kill.dead()

        driver.start = start

    async with _line(layout=PLATING) as line:
        plater = line.models["plater-1"]
        stop = _stopped_by(code, plater, line.clock)
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, stop), recipe=SNCU, wafers=2)
        assert (plater.state.value, plater.batch) == ("IDLE", None)  # cleared, carrier out
        assert plater._batches_started == 1  # never started again
        _lot(db, "B2", SNCU, wafers=1)  # a later batch, after the run that recovered
        later, _ = await run_lot(db, parse_line_config(line.config_text()), line.clock, "B2")
        assert plater._batches_started == 2
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert {w.state for w in store.wafers("B1")} == {"step4_running"}
    assert outcome.wafers == {"B1-01": "awaiting_disposition",
                              "B1-02": "awaiting_disposition"}, outcome.wafers
    assert later.wafers == {"B2-01": "complete"}, later.wafers
    with Store(f"sqlite:///{db}", create=False) as store:
        for wafer in ("B1-01", "B1-02"):
            why = store.events(wafer)[-1].why
            assert why.startswith("recovery: ") and f"alarm {code}" in why, why
            assert "ended ALARM" in why, why
        (alarm,) = store.alarms(tool="plater-1")
        assert alarm.code == code and alarm.wafer_id == "B1-01" and not alarm.active
        assert "B1-02" in alarm.text, alarm.text  # every rider named
        audit = [a.detail for a in store.audit_log() if a.actor == "plater-1"]
        assert sum("UNLOAD after the batch ended" in a for a in audit) == 1, audit
        first, second = BatchRecords(store).batches()
        assert (first.state, second.state, second.status) == ("failed", "done", "OK")


# (the verb the kill follows: "result" after it returned, "unload" before it went out; the
# riders' state at the kill)
AFTER_DONE = {"after-result": ("result", "step4_running"),  # DONE heard, RESULT? answered
              "before-unload": ("unload", "step4_judging")}  # every rider's step_done stored


@pytest.mark.parametrize("code", [900, 730])
@pytest.mark.parametrize("at", list(AFTER_DONE))
async def test_killed_after_the_batch_ended_ok_an_alarm_keeps_its_carrier_riders_wait_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str, code: int) -> None:
    """The batch ended OK (its DONE, RESULT? naming it), then, while no controller watched
    and before its UNLOAD, an alarm the plater takes in DONE latched (900 pressed and
    released; 730 the tank topped up), its cause gone before the restart. Recovery does as a
    watching controller would (``ToolAlarms.carrier_kept``, docs/reliability.md "A batch's
    carrier an alarm keeps in the plater"): the result is final and OK, so the riders are
    judged from it and never plated again; but they are in the plater, so none goes on
    until the alarm is recorded (naming every rider), CLEARed and the carrier unloaded
    (once). Going on at once with the carrier inside would move wafers that physically are
    not there, and leave the plater ALARMed with a carrier nobody unloads. A later lot's
    batch then plates. Before, the riders went on at once and completed, no alarm was
    recorded and the carrier stayed in the ALARMed plater after the run (the next lot's
    interlock met the alarm, recorded naming no wafer, and its batch unloaded it)."""
    verb, state = AFTER_DONE[at]
    unloads: list[float] = []  # when the plater took an UNLOAD (tool seconds)
    unload = sim_plater._COMMANDS["UNLOAD"]

    def counted(model: Any, args: list[str]) -> str:
        reply = unload(model, args)
        unloads.append(model.time)
        return reply

    monkeypatch.setitem(sim_plater._COMMANDS, "UNLOAD", counted)

    def hook(tools: LineTools, kill: Kill, plater: Any, clock: ScaledClock) -> None:
        driver = tools["plater-1"]
        original = getattr(driver, verb)

        async def latched_then_killed(*args: Any, **kwargs: Any) -> Any:
            if verb == "result":
                await original(*args, **kwargs)
            assert plater.state.value == "DONE" and plater.result.status == "OK"
            why = ("emergency stop pressed and released" if code == 900
                   else "tank level low, topped up")
            plater.latch_alarm(code, clock.now(), why)  # while no controller watches
            await kill.dead()

        setattr(driver, verb, latched_then_killed)

    async with _line(layout=PLATING) as line:
        plater = line.models["plater-1"]
        outcome, (kill,), db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: hook(tools, k, plater, line.clock),
            recipe=SNCU, wafers=2)
        assert plater._batches_started == 1  # plated once
        assert (plater.state.value, plater.batch) == ("IDLE", None)  # cleared, carrier out
        assert len(unloads) == 1, unloads
        _lot(db, "B2", SNCU, wafers=1)  # a later batch, after the run that recovered
        later, _ = await run_lot(db, parse_line_config(line.config_text()), line.clock, "B2")
        assert plater._batches_started == 2 and len(unloads) == 2, unloads
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        # Why a wafer was elsewhere at the kill, for a failure on a loaded machine.
        why = {w.id: store.events(w.id)[-1].why for w in store.wafers("B1")
               if w.state != state}
        assert {w.state for w in store.wafers("B1")} == {state}, why
    assert outcome.wafers == {"B1-01": "complete", "B1-02": "complete"}, outcome.wafers
    assert later.wafers == {"B2-01": "complete"}, later.wafers
    with Store(f"sqlite:///{db}", create=False) as store:
        for wafer in ("B1-01", "B1-02"):
            barrier = [s for s in store.steps(wafer) if s.kind == "barrier"]
            assert [s.status for s in barrier] == ["done"], barrier  # judged from it, once
            # Nothing after the barrier began before the carrier was out of the plater.
            onward = [e.tool_time for e in store.events(wafer)
                      if (e.step_index or 0) > 4 and e.trigger == "tool_acquired"]
            assert onward and min(onward) >= unloads[0], (onward, unloads)
        (alarm,) = store.alarms(tool="plater-1")
        assert alarm.code == code and alarm.wafer_id == "B1-01" and not alarm.active
        assert "B1-02" in alarm.text, alarm.text  # every rider named
        first, second = BatchRecords(store).batches()
        assert (first.state, first.status, second.state, second.status) == (
            "done", "OK", "done", "OK")


# --- the mounter's LOD, PLC and ULD, and the oven's LOAD not sent ---------------------------------

@pytest.mark.parametrize(("hook", "state", "note"), [
    # tool_acquired committed, LOD never sent: the mounter never took it; it waits again.
    (lambda tools, k: before(tools, "placer-1", "load", k), "step1_running", "never took it"),
    # PLC's intent committed, PLC never sent: READY, started by recovery (journalled).
    (lambda tools, k: before(tools, "placer-1", "start_placement", k), "step1_running",
     "holds it loaded: starting it"),
    # PLC answered, its answer not committed: the cycle runs on; its result is taken.
    (lambda tools, k: after(tools, "placer-1", "start_placement", k), "step1_running",
     "still holds it: taking its result"),
    # ULD answered, the judgment not committed: judged again from what step_done stored.
    (lambda tools, k: after(tools, "placer-1", "unload", k), "step1_judging",
     "judged again from the measurements"),
], ids=["before-lod", "before-plc", "after-plc", "after-uld"])
async def test_killed_around_the_mounter_the_wafer_is_placed_once(
        tmp_path: Path, hook: Hook, state: str, note: str) -> None:
    async with _line() as line:
        placer = line.models["placer-1"]
        outcome, (kill,), db = await _killed_then_resumed(tmp_path, line, hook)
        assert placer.placements_executed == 1 and placer.repairs <= 1
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert store.wafers("B1")[0].state == state
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    assert any(note in n for n in _notes(db)), _notes(db)


async def test_killed_between_the_load_intent_and_the_load_an_engineer_decides(
        tmp_path: Path) -> None:
    """The one place recovery holds a wafer nothing happened to, on purpose: LOAD's intent
    committed, LOAD never sent. The oven shows nothing of it, which is also what an oven
    that lost its memory (a power cycle) would show of a wafer it did reflow; a reflow is
    never run twice on a guess (decision 4). Held for an engineer, with why; not reflowed."""
    async with _line() as line:
        oven = line.models["oven-1"]
        outcome, _, db = await _killed_then_resumed(
            tmp_path, line, lambda tools, k: before(tools, "oven-1", "load", k))
        assert oven._wafers_taken == 0
    assert outcome.wafers["B1-01"] == "awaiting_disposition", outcome.wafers
    assert "its LOAD may have reached oven-1" in _events(db)[-1].why, _events(db)[-1].why


async def test_killed_before_the_reflows_judgment_commits_it_is_judged_again(
        tmp_path: Path) -> None:
    """A reflow's step_done commits at once, its judged_ok (with the curve) after it, with
    no command between: killed there (a hook on the journal), the store says judging and
    the wafer is off the belt. Judged again from what step_done stored, never looked for on
    the belt, reflowed once; its record keeps no curve (the curve was not stored)."""
    def hook(tools: LineTools, kill: Kill) -> None:
        controller = kill.controller
        assert controller is not None
        record = controller.journal.record

        def killed_at_judgment(event: Any) -> None:
            if event.trigger == "judged_ok" and event.step_kind == "reflow":
                kill.now()  # the kill: this transition is never committed
                raise asyncio.CancelledError  # and nothing after it runs
            record(event)

        controller.journal.record = killed_at_judgment  # type: ignore[method-assign]

    async with _line() as line:
        oven = line.models["oven-1"]
        outcome, (kill,), db = await _killed_then_resumed(tmp_path, line, hook)
        assert oven._wafers_taken == 1
    with Store(f"sqlite:///{kill.kept}", create=False) as store:
        assert store.wafers("B1")[0].state == "step2_judging"
    assert outcome.wafers["B1-01"] == "complete", (outcome.wafers, _events(db)[-1].why)
    assert any("judged again from the measurements" in n for n in _notes(db)), _notes(db)
    (reflow,) = [s for s in _records(db) if s.kind == "reflow"]
    assert reflow.status == "done" and reflow.results["peak_c"]

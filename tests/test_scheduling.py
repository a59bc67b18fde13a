"""The scheduler's policy on the real simulated line, and the makespan lower bound."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from types import SimpleNamespace

import pytest

from controller.line.bound import lower_bound, step_seconds, tool_occupancy
from controller.line.controller import LineController
from controller.line.scheduled import ScheduledWafer, ToolReport
from controller.line.scheduler import IDLE_WAKE_S, ScheduledTool, Scheduler
from controller.line.tool_alarms import CLEAR_RETRY_S
from controller.report import render_lot_report
from controller.store import Store
from drivers.clock import ManualClock, ScaledClock
from drivers.errors import ToolError
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from drivers.types import Alarm, PlaterState, PrinterState, PrinterStatus
from sequences.kinds.batch import Batch
from sequences.kinds.reflow import cold_start_s
from sequences.recipes.recipe import BarrierStep, find_recipe
from sequences.recipes.validate import load_valid_recipe
from sequences.wafer.runner import WaferRun
from sim.line import SimulatedLine

HIPB = find_recipe("rebump-hipb-snpb")
MOUNTED = {"printer": ("ST-300-100", "Pb95Sn5")}


async def _run_lot(
    db_url: str, layout: dict[str, int], wafers: int, speed: float = 1500.0, lot: str = "S1"
):
    clock = ScaledClock(speed)
    async with SimulatedLine(clock=clock, seed=11, layout=layout) as line:
        config = parse_line_config(line.config_text())
        with Store(db_url) as store:
            store.create_lot(
                lot,
                recipe_name=HIPB.name,
                recipe_version=HIPB.version,
                recipe_hash=HIPB.hash,
                slots=list(range(1, wafers + 1)),
                user="t",
            )
            async with open_line(config, clock) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                start = clock.now()
                (outcome,) = await controller.run([lot])
                makespan = clock.now() - start
            steps = {w.id: store.steps(w.id) for w in store.wafers(lot)}
            return outcome, steps, line.models, makespan


async def test_batches_changeovers_and_uses_every_tool_of_a_role(db_url: str) -> None:
    outcome, steps, models, _ = await _run_lot(
        db_url, {"printer": 1, "placer": 0, "oven": 1, "cleaner": 2}, wafers=4
    )
    finished = {w: s for w, s in outcome.wafers.items()}
    # Alignment failures are random (seeded); every wafer that finished went through all.
    assert sum(1 for s in finished.values() if s == "complete") >= 3, finished
    # One stencil/paste changeover for the whole lot: first pass, change, second pass.
    assert models["printer-1"].changeovers == 1
    prints = sorted(
        (s.started_at, s.step_index)
        for ws in steps.values()
        for s in ws
        if s.kind == "print" and s.status == "done"
    )
    first_pass = [i for _, i in prints if i == 1]
    assert [i for _, i in prints[: len(first_pass)]] == first_pass  # no cap print in between
    # Both cleaners took wafers.
    cleaners = Counter(s.tool for ws in steps.values() for s in ws if s.kind == "clean")
    assert set(cleaners) == {"cleaner-1", "cleaner-2"}, cleaners
    # The oven is a pipeline: no wafer goes in before the one ahead has cleared the entrance.
    gaps, spacing = _second_pass_gaps(steps)
    assert gaps and all(gap >= spacing for gap in gaps), (spacing, gaps)


def _second_pass_gaps(steps: dict) -> tuple[list[float], float]:
    second_pass = sorted(s.tool_time_start for ws in steps.values() for s in ws
                         if s.step_index == 5 and s.status == "done")
    gaps = [b - a for a, b in zip(second_pass, second_pass[1:], strict=False)]
    return gaps, tool_occupancy(HIPB.step(5))


@pytest.mark.timing
async def test_the_oven_takes_each_wafer_as_soon_as_the_entrance_clears(db_url: str) -> None:
    # After the profile change every wafer waits for the oven, and each goes in as soon as
    # the one ahead has cleared the entrance, not a wall-clock beat later: within 30 tool
    # seconds, 75 ms of wall time at 400x (a timing test: `make test-timing`). Not at
    # 1500x: there the exit's reaction (at least 40 ms of wall time between two arrivals,
    # 60 tool s, decision 0018) spaces the LOADs more than the entrance does.
    _, steps, _, _ = await _run_lot(
        db_url, {"printer": 1, "placer": 0, "oven": 1, "cleaner": 2}, wafers=4, speed=400.0)
    gaps, spacing = _second_pass_gaps(steps)
    assert gaps and all(spacing <= gap <= spacing + 30.0 for gap in gaps), (spacing, gaps)


@pytest.mark.slow
async def test_a_second_cleaner_cleans_beside_the_first(db_url: str) -> None:
    """A clean is longer than the oven's spacing of two wafers, so with a second cleaner
    the wafer that comes out while one cleans goes to the other: two cleans run at once
    (what shortens the lot; the makespans themselves are compared in the timing test
    below: at 1500x a loaded machine's wall clock moves them by more than the gain)."""
    _, steps, _, _ = await _run_lot(db_url, {"printer": 1, "oven": 1, "cleaner": 2}, 4)
    cleans = sorted((s.tool_time_start, s.tool_time_end, s.tool) for ws in steps.values()
                    for s in ws if s.kind == "clean" and s.status == "done")
    beside = [(a, b) for a, b in zip(cleans, cleans[1:], strict=False)
              if b[0] < a[1] and b[2] != a[2]]  # the next began before this one ended
    assert beside, cleans


@pytest.mark.timing
async def test_a_second_cleaner_shortens_the_lot(db_url: str) -> None:
    _, _, _, one = await _run_lot(db_url, {"printer": 1, "oven": 1, "cleaner": 1}, 4, lot="S1")
    _, _, _, two = await _run_lot(db_url, {"printer": 1, "oven": 1, "cleaner": 2}, 4, lot="S2")
    assert two < one, (one, two)


def test_step_times_follow_the_specs() -> None:
    print_step, reflow, clean = HIPB.step(1), HIPB.step(2), HIPB.step(3)
    assert step_seconds(print_step) == pytest.approx(20 + 30 + 10 + 10 + 15 / 20)
    assert step_seconds(reflow) == pytest.approx(4000 / 600 * 60)  # 400 s in the tunnel
    assert tool_occupancy(reflow) == pytest.approx(450 / 600 * 60)  # the entrance spacing
    assert step_seconds(clean) == 120 + 60 + 60


def test_the_cleaner_bounds_a_rebump_lot() -> None:
    bound = lower_bound(HIPB, 25, {"printer": 1, "oven": 1, "cleaner": 1}, MOUNTED)
    assert bound.limiting == "cleaner"
    # head: the oven's cold start to the high-lead profile (longer than the first print's
    # 70.75 s, which runs meanwhile) + its 400 s tunnel; work: 50 cleans of 240 s.
    warm_up = 90 * math.log((362 - 25) / 2) + 60  # hottest zone 362 °C, from 25 °C
    assert cold_start_s(reflow_step := HIPB.step(2)) == pytest.approx(warm_up)
    assert warm_up == pytest.approx(521.4, abs=0.1)
    assert bound.seconds == pytest.approx(warm_up + 400 + 50 * 240)
    # The oven's own row: its first profile comes with the start-up, only the cool-down to
    # the eutectic profile is a changeover (no invented first one).
    spacing = 25 * (tool_occupancy(reflow_step) + tool_occupancy(HIPB.step(5)))
    assert bound.per_role["oven"] == pytest.approx(warm_up + spacing + 900 + 213 + 240)
    two = lower_bound(HIPB, 25, {"printer": 1, "oven": 1, "cleaner": 2}, MOUNTED)
    assert two.seconds < bound.seconds
    assert two.per_role["cleaner"] == pytest.approx(warm_up + 400 + 25 * 240)
    # An oven already running the first profile needs no start-up.
    warm = lower_bound(HIPB, 25, {"printer": 1, "oven": 1, "cleaner": 1},
                       {**MOUNTED, "oven": (reflow_step.profile_id,)})
    assert warm.seconds == pytest.approx(70.75 + 400 + 50 * 240)


def test_one_wafer_is_bounded_by_its_critical_path() -> None:
    bound = lower_bound(HIPB, 1, {"printer": 1, "oven": 1, "cleaner": 1}, MOUNTED)
    assert bound.limiting == "critical path"
    # The oven starts cold: the first reflow waits for its start-up (longer than the first
    # print, which runs meanwhile); it cools to the second profile (900 s) once the wafer is
    # out, while the wafer is cleaned and printed again (the printer's 600 s cap paste
    # change overlaps the clean): then the second reflow and clean.
    warm_up = cold_start_s(HIPB.step(2))
    first_reflow, second_reflow = (step_seconds(HIPB.step(n)) for n in (2, 5))
    assert bound.seconds == pytest.approx(warm_up + first_reflow + 900 + second_reflow + 240)
    assert bound.seconds < warm_up + sum(step_seconds(s) for s in HIPB.steps) + 600 + 900


def test_a_changeover_before_the_first_wafer_delays_every_role_after_it() -> None:
    # The printer powers up with another paste: no wafer reaches the oven or the cleaner
    # before its CHG (600 s by the spec); the oven's and cleaner's heads carry it.
    plain = lower_bound(HIPB, 25, {"printer": 1, "oven": 1, "cleaner": 1}, MOUNTED)
    other = lower_bound(HIPB, 25, {"printer": 1, "oven": 1, "cleaner": 1},
                        {"printer": ("ST-300-100", "SnCu0.7")})
    # The oven's start-up runs beside the CHG: the heads grow by what the CHG and the first
    # print take beyond it.
    first_print, warm_up = step_seconds(HIPB.step(1)), cold_start_s(HIPB.step(2))
    delay = max(600 + first_print, warm_up) - max(first_print, warm_up)
    assert delay > 0
    assert other.per_role["cleaner"] == pytest.approx(plain.per_role["cleaner"] + delay)
    assert other.per_role["oven"] == pytest.approx(plain.per_role["oven"] + delay)
    # Nothing known of the oven: its first profile comes with its start-up (no changeover),
    # the second is a changeover.
    assert plain.per_role["oven"] == pytest.approx(
        warm_up
        + 25 * (tool_occupancy(HIPB.step(2)) + tool_occupancy(HIPB.step(5))) + 900
        + step_seconds(HIPB.step(5)) - tool_occupancy(HIPB.step(5)) + 240)


def test_a_missing_role_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs a cleaner"):
        lower_bound(HIPB, 5, {"printer": 1, "oven": 1}, MOUNTED)


def test_a_step_releases_only_the_tool_it_holds() -> None:
    """The oven is handed to the next wafer at the LOAD: a wafer leaving the exit later
    must not free it under the wafer being loaded."""
    oven = ScheduledTool("oven-1", "oven", driver=None)
    oven.take(10.0, "W-01")
    oven.release(12.0)  # W-01 is on the belt
    oven.take(60.0, "W-02")  # W-02's step holds the oven until its LOAD
    oven.release_for("W-01", 400.0)  # W-01's step ends at the exit
    assert oven.busy and oven.holder == "W-02"
    oven.release_for("W-02", 401.0)  # W-02 never got on the belt: its step frees the oven
    assert not oven.busy and oven.holder is None
    assert oven.busy_s == pytest.approx(2.0 + 341.0)


class ChangingPrinter:
    """A printer in memory that reports the statuses it is given, one per look."""

    name = "printer-1"

    def __init__(self, *statuses: PrinterStatus) -> None:
        self.statuses = list(statuses)

    async def status(self) -> PrinterStatus:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


async def test_no_setup_is_learned_from_a_printer_mid_changeover() -> None:
    """Issue 10 item 3: resumed while the printer changed over from the first print's
    stencil to the cap print's, the scheduler learned the old stencil it still reports and
    sent wafers into the interlock. A changeover in progress teaches nothing; the look after
    it ends does."""
    recipe = find_recipe("rebump-hipb-snpb")
    first, cap = recipe.step(1), recipe.step(4)
    changing = PrinterStatus(PrinterState.CHANGEOVER, None, 0, 0, 80.0, first.stencil_id,
                             first.paste_alloy)  # the old setup, until the change ends
    changed = PrinterStatus(PrinterState.IDLE, None, 0, 0, 80.0, cap.stencil_id,
                            cap.paste_alloy)
    clock = ManualClock()
    scheduler = Scheduler({"printer-1": ("printer", ChangingPrinter(changing, changed))},
                          clock)
    wafers = []
    for number, state in ((1, None), (2, "step4_waiting")):
        run = WaferRun(recipe, f"W-{number}", clock)
        run.start()
        if state:
            run.restore(state)
        wafers.append(ScheduledWafer(run, "L1", 5, number))
    tool = scheduler.tools["printer-1"]
    await scheduler._learn_setup(tool, wafers)
    assert tool.setup is None  # not the old stencil the changeover is taking off
    await scheduler._learn_setup(tool, wafers)
    assert tool.setup == ("print", cap.stencil_id, cap.paste_alloy)


class DoorOpenPrinter:
    """A printer in memory whose door stays open until ``closed_at`` (tool time): CLR is
    refused until then (paste-printer.md: 400 DOOR OPEN clears with CLR once closed), and
    refused too once a person has reset the alarm at the tool (``reset_at``; hostlink.md:
    CLR is NAK 04 "if the cause persists or no alarm"); ``then``: an alarm raised after
    the reset."""

    name = "printer-1"

    def __init__(self, clock: ManualClock, closed_at: float, reset_at: float = math.inf,
                 then: Alarm | None = None) -> None:
        self.clock, self.closed_at, self.reset_at, self.then = clock, closed_at, reset_at, then
        self.clears = 0
        self.latched: Alarm | None = Alarm(400, "DOOR OPEN")

    async def alarm(self) -> Alarm | None:
        if self.clock.now() >= self.reset_at and self.latched == Alarm(400, "DOOR OPEN"):
            self.latched = self.then
        return self.latched

    async def clear_alarm(self) -> None:
        self.clears += 1
        if await self.alarm() is None or self.clock.now() < self.closed_at:
            raise ToolError(self.name, "CLR refused: NAK 04 WRONG STATE")
        self.latched = None


class Reports:
    def __init__(self) -> None:
        self.seen: list[ToolReport] = []

    def report(self, report: ToolReport) -> None:
        self.seen.append(report)

    def poll_requests(self) -> None:
        pass

    async def settle(self, tool: ScheduledTool, wafers: list[ScheduledWafer]) -> None:
        pass


async def test_a_tool_whose_alarm_stays_is_asked_every_few_seconds_and_noted_once() -> None:
    """A pass comes every 0.2 s of wall time. At wall speed each sent the tool a CLEAR
    while its alarm's cause stayed (a door open a minute: 300 CLEARs) and noted each
    refusal in the audit log. Now a refused CLEAR is tried again CLEAR_RETRY_S later and
    noted once; the tool is back in service at the first try after the cause is gone."""
    clock = ManualClock()
    printer = DoorOpenPrinter(clock, closed_at=60.0)
    reports = Reports()
    scheduler = Scheduler({"printer-1": ("printer", printer)}, clock, line=reports)
    tool = scheduler.tools["printer-1"]
    tool.alarm = 400
    for _ in range(600):  # two minutes of passes at wall speed
        scheduler.alarms.check()
        await scheduler.alarms.clears_done()
        clock.advance(IDLE_WAKE_S)
    assert printer.clears == math.ceil(60.0 / CLEAR_RETRY_S) + 1, printer.clears
    notes = [r.text for r in reports.seen if r.what == "note"]
    assert notes == ["alarm 400 not cleared: CLR refused: NAK 04 WRONG STATE",
                     "alarm 400 cleared (cause gone)"], notes
    assert tool.alarm == 0 and [r.what for r in reports.seen].count("alarm_cleared") == 1


@pytest.mark.parametrize("then", [None, Alarm(900, "EMERGENCY STOP")])
async def test_an_alarm_reset_at_the_tool_puts_it_back_in_service(then: Alarm | None) -> None:
    """A person resets the alarm at the tool's own panel after closing its door: the tool
    refuses our CLR from then on (no alarm), and the scheduler kept it out of service for
    good. Now a refused CLR asks the tool's alarm: none, and the tool is back; another one
    raised since, and that one is the tool's alarm (the first recorded cleared)."""
    clock = ManualClock()
    printer = DoorOpenPrinter(clock, closed_at=math.inf, reset_at=30.0, then=then)
    reports = Reports()
    scheduler = Scheduler({"printer-1": ("printer", printer)}, clock, line=reports)
    tool = scheduler.tools["printer-1"]
    tool.alarm = 400
    for _ in range(300):
        scheduler.alarms.check()
        await scheduler.alarms.clears_done()
        clock.advance(IDLE_WAKE_S)
    said = [(r.what, r.code) for r in reports.seen if r.what != "note"]
    if then is None:
        assert tool.alarm == 0 and said == [("alarm_cleared", 400)], said
        assert [r.text for r in reports.seen if r.what == "note"][-1] == (
            "alarm 400 cleared (at the tool)")
    else:
        assert tool.alarm == 900 and said == [("alarm_cleared", 400), ("alarm", 900)], said


class SlowLinkPrinter(DoorOpenPrinter):
    """A printer in memory whose door is closed, on a link so slow that each CLR's reply
    takes as long as the test says (``reply``): the resends of a link timing out."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock, closed_at=0.0)
        self.sent = asyncio.Event()
        self.reply = asyncio.Event()
        self.sends = 0

    async def clear_alarm(self) -> None:
        self.sends += 1
        self.sent.set()
        await self.reply.wait()
        await super().clear_alarm()


async def test_a_clear_on_a_slow_link_does_not_hold_up_the_line() -> None:
    """Each pass awaited the CLEARs it sent: a tool whose replies time out and are resent
    (seconds on a real link) stopped the dispatch of every other tool's wafers for that
    long, every CLEAR_RETRY_S. Now the CLEAR runs beside the passes, one at a time per
    tool, and the tool is back in service only once it is done."""
    clock = ManualClock()
    printer = SlowLinkPrinter(clock)
    reports = Reports()
    scheduler = Scheduler({"printer-1": ("printer", printer)}, clock, line=reports)
    tool = scheduler.tools["printer-1"]
    tool.alarm = 400
    scheduler.alarms.check()  # returns at once: the pass goes on to dispatch
    scheduler.alarms.check()  # the next pass, before that CLEAR has started: not a second
    await asyncio.wait_for(printer.sent.wait(), 10)  # a bound on a failure, not a pace
    for _ in range(100):  # passes while the reply is awaited: no second CLEAR, not in service
        clock.advance(IDLE_WAKE_S)
        scheduler.alarms.check()
    assert printer.sends == 1 and tool.alarm == 400
    printer.reply.set()
    await scheduler.alarms.clears_done()
    assert printer.sends == printer.clears == 1 and tool.alarm == 0
    assert [r.what for r in reports.seen if r.what != "note"] == ["alarm_cleared"]


class RelatchingPlater:
    """A plater in memory whose door alarm (400) keeps a batch's carrier in: our CLEAR is
    taken, and the tank level alarm (730) latches at once, until the tank is topped up."""

    name = "plater-1"

    def __init__(self) -> None:
        self.latched: Alarm | None = Alarm(400, "DOOR OPEN")
        self.tank_low = True
        self.sent: list[str] = []

    @property
    def state(self) -> PlaterState:
        return PlaterState.ALARM if self.latched else PlaterState.DONE

    async def status(self) -> SimpleNamespace:
        return SimpleNamespace(state=self.state)

    async def alarm(self) -> Alarm | None:
        return self.latched

    async def clear_alarm(self) -> None:
        self.sent.append("CLEAR")
        if self.latched and self.latched.code == 730 and self.tank_low:
            raise ToolError(self.name, "CLEAR refused: ERR 04 cause present")
        self.latched = Alarm(730, "TANK LEVEL LOW") if self.tank_low else None

    async def unload(self) -> None:
        assert self.state is PlaterState.DONE
        self.sent.append("UNLOAD")


def _carrier_kept_by_400(plater: RelatchingPlater) -> tuple[ManualClock, Scheduler, Reports]:
    """A scheduler whose plater's door alarm (400) keeps batch B1's carrier in."""
    clock = ManualClock()
    reports = Reports()
    scheduler = Scheduler({"plater-1": ("plater", plater)}, clock, line=reports)
    step = next(s for s in find_recipe("rebump-sncu-niau-snpb").steps
                if isinstance(s, BarrierStep))
    scheduler.alarms.carrier_kept(scheduler.tools["plater-1"], Batch("B1", ["W1"], "plater-1"),
                                  step, 4, [], Alarm(400, "DOOR OPEN"))
    return clock, scheduler, reports


async def test_an_alarm_latched_again_as_a_kept_carrier_comes_out_keeps_the_tool_down() -> None:
    """The alarm that kept a batch's carrier in the plater was cleared, and another latched
    before the carrier's UNLOAD: the tool was put back in service anyway, that alarm never
    reported nor cleared, the carrier left inside for a person. Now the tool stays out of
    service for the new alarm, and the carrier comes out once that one is cleared too."""
    plater = RelatchingPlater()
    clock, scheduler, reports = _carrier_kept_by_400(plater)
    tool = scheduler.tools["plater-1"]
    scheduler.alarms.check()
    await scheduler.alarms.clears_done()
    assert tool.alarm == 730 and plater.sent == ["CLEAR"]
    plater.tank_low = False  # topped up
    clock.advance(CLEAR_RETRY_S)
    scheduler.alarms.check()
    await scheduler.alarms.clears_done()
    assert tool.alarm == 0 and plater.sent == ["CLEAR", "CLEAR", "UNLOAD"]
    said = [(r.what, r.code) for r in reports.seen if r.what != "note"]
    assert said == [("alarm", 400), ("alarm_cleared", 400), ("alarm", 730),
                    ("alarm_cleared", 730)], said


class TickLatePlater(RelatchingPlater):
    """A plater in memory that applies our CLEAR on its next tick: the first look after the
    CLEAR's OK still shows the alarm (400) it cleared; CLEAR is refused (04) out of ALARM."""

    def __init__(self) -> None:
        super().__init__()
        self.applying = False  # a CLEAR taken, not yet applied: the next look still sees 400

    async def status(self) -> SimpleNamespace:
        shown = await self.alarm()
        return SimpleNamespace(state=PlaterState.ALARM if shown else PlaterState.DONE)

    async def alarm(self) -> Alarm | None:
        shown = self.latched
        if self.applying:  # applied on this tick: the look after this one sees it
            self.applying, self.latched = False, None
        return shown

    async def clear_alarm(self) -> None:
        self.sent.append("CLEAR")
        if self.latched is None:
            raise ToolError(self.name, "CLEAR refused: ERR 04 not in ALARM")
        self.applying = True


async def test_a_clear_the_plater_applies_a_tick_late_is_not_a_second_alarm() -> None:
    """Right after the CLEAR's OK the plater still shows the alarm it cleared: the carrier
    is not out yet. That is no new alarm to report (it was reported a second time, with a
    second clear): the tool stays down for it, and the next try finds it cleared at the
    tool and takes the carrier out."""
    plater = TickLatePlater()
    clock, scheduler, reports = _carrier_kept_by_400(plater)
    tool = scheduler.tools["plater-1"]
    for _ in range(2):
        scheduler.alarms.check()
        await scheduler.alarms.clears_done()
        clock.advance(CLEAR_RETRY_S)
    assert tool.alarm == 0 and plater.sent[-1] == "UNLOAD", plater.sent
    said = [(r.what, r.code) for r in reports.seen if r.what != "note"]
    assert said == [("alarm", 400), ("alarm_cleared", 400)], said


async def _run_lots(db_url: str, layout: dict[str, int], cleaners: list[str],
                    lots: dict[str, tuple[str, int]], speed: float = 1500.0,
                    reports: dict[str, str] | None = None):
    """Lots (id -> recipe, wafers) on a simulated line whose cleaners are these models;
    each lot's report into ``reports``."""
    reports = {} if reports is None else reports
    clock = ScaledClock(speed)
    async with SimulatedLine(clock=clock, seed=11, layout=layout,
                             cleaner_models=cleaners) as line:
        config = parse_line_config(line.config_text())
        with Store(db_url) as store:
            for lot_id, (name, wafers) in lots.items():
                recipe = find_recipe(name)
                store.create_lot(lot_id, recipe_name=recipe.name, recipe_version=recipe.version,
                                 recipe_hash=recipe.hash, slots=list(range(1, wafers + 1)),
                                 user="t")
            async with open_line(config, clock) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe)
                outcomes = await controller.run(list(lots))
            steps = [s for lot_id in lots for w in store.wafers(lot_id) for s in store.steps(w.id)]
            reports.update({lot_id: render_lot_report(store, lot_id) for lot_id in lots})
            return outcomes, steps, line.models


async def test_strips_go_only_to_the_fc2_of_a_mixed_line(db_url: str) -> None:
    reports: dict[str, str] = {}
    outcomes, steps, _ = await _run_lots(
        db_url, {"printer": 1, "placer": 1, "oven": 1, "cleaner": 2}, ["FC-1", "FC-2"],
        {"MASK": ("ballmount-mask-sac305", 3), "HIPB": ("rebump-hipb-snpb", 2)},
        reports=reports)
    assert all(o.state == "complete" for o in outcomes), outcomes
    strips = Counter(s.tool for s in steps if s.kind == "strip" and s.status == "done")
    assert strips == {"cleaner-2": 3}
    # The mask flow appears in its report: the strip, its mask residue against its window.
    assert "strip" in reports["MASK"] and "mask_residue_pct" in reports["MASK"]
    cleans = Counter(s.tool for s in steps if s.kind == "clean" and s.status == "done")
    assert sum(cleans.values()) == 4  # two per rebump wafer, on either cleaner


async def test_one_fc2_strips_and_cleans_changing_mode_as_a_setup(db_url: str) -> None:
    reports: dict[str, str] = {}
    outcomes, steps, models = await _run_lots(
        db_url, {"printer": 1, "placer": 1, "oven": 1, "cleaner": 1}, ["FC-2"],
        {"MASK": ("ballmount-mask-sac305", 2), "CUPOST": ("wlcsp-cupost-snag35", 2)},
        reports=reports)
    assert all(o.state == "complete" for o in outcomes), outcomes
    done = sorted((s.tool_time_start, s.kind) for s in steps
                  if s.kind in ("strip", "clean") and s.status == "done")
    assert {k for _, k in done} == {"strip", "clean"}
    assert {s.tool for s in steps if s.kind in ("strip", "clean")} == {"cleaner-1"}
    assert "wlcsp-cupost-snag35" in reports["CUPOST"] and "ionic_ug_cm2" in reports["CUPOST"]
    # Batched by setup: the mode changes once, not at every wafer.
    changes = sum(1 for (_, a), (_, b) in zip(done, done[1:], strict=False) if a != b)
    assert changes == 1, done

"""Tool modes: a tool people took out of production gets no wafer, its E10 state follows,
the store keeps the mode across restarts, and the line event stream says so."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from controller.cli import main
from controller.line.controller import LineController
from controller.line.e10 import E10State, ToolMode
from controller.line.events import EventKind, LineEvent, LineEventStream
from controller.line.modes import IdleModes, ToolModes
from controller.line.scheduled import ScheduledTool
from controller.store import Store, StoreError
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_line
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import load_valid_recipe
from sim.line import SimulatedLine

HIPB = find_recipe("rebump-hipb-snpb")
WHEN = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_the_store_keeps_a_mode_with_who_and_why_and_refuses_bad_ones(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'modes.db'}"
    with Store(url) as store:
        assert store.tool_modes() == {}
        assert store.set_tool_mode("oven-1", "Maintenance", user="erik",
                                   reason="belt tension") == (ToolMode.PRODUCTION,
                                                              ToolMode.MAINTENANCE)
        with pytest.raises(StoreError, match="unknown tool mode 'repair'"):
            store.set_tool_mode("oven-1", "repair", user="erik", reason="x")
        with pytest.raises(StoreError, match="say why oven-1 goes out of production"):
            store.set_tool_mode("oven-1", "offline", user="erik")
    with Store(url) as store:  # a restart: still in maintenance
        (mode,) = store.tool_modes().values()
        assert (mode.tool, mode.mode, mode.set_by, mode.reason) == (
            "oven-1", ToolMode.MAINTENANCE, "erik", "belt tension")
        assert store.set_tool_mode("oven-1", "production", user="erik") == (
            ToolMode.MAINTENANCE, ToolMode.PRODUCTION)
        assert store.tool_modes()["oven-1"].mode is ToolMode.PRODUCTION
        trail = [e.detail for e in store.audit_log() if e.action == "tool.mode"]
        assert trail == ["oven-1: production -> maintenance: belt tension",
                         "oven-1: maintenance -> production"]


def test_a_mode_set_by_another_process_is_seen_at_the_next_look(db_url: str) -> None:
    """The controller's once-a-second look answers from its last read while nothing
    changed; a change through another store (another process) is seen at once, with the
    same time and words, however small."""
    with Store(db_url, now=lambda: WHEN) as controller, Store(db_url, now=lambda: WHEN) as cli:
        assert controller.tool_modes() == {}
        cli.set_tool_mode("oven-1", "maintenance", user="erik", reason="belt")
        first = controller.tool_modes()
        assert (first["oven-1"].mode, first["oven-1"].set_at) == (ToolMode.MAINTENANCE, WHEN)
        first.clear()  # a caller's copy: the next answer is not changed by it
        assert controller.tool_modes()["oven-1"].reason == "belt"
        cli.set_tool_mode("oven-1", "maintenance", user="erik", reason="belt and rollers")
        assert controller.tool_modes()["oven-1"].reason == "belt and rollers"  # same time
        cli.set_tool_mode("oven-1", "production", user="erik")
        assert controller.tool_modes()["oven-1"].mode is ToolMode.PRODUCTION


def test_the_controllers_look_reads_modes_and_waiting_requests_in_one_statement(
        db_url: str) -> None:
    """``Store.look``: what ``tool_modes`` and "any request waiting?" answer, in one read
    (the controller's once-a-second look), whichever way each of them changes."""
    with Store(db_url, now=lambda: WHEN) as controller, Store(db_url, now=lambda: WHEN) as cli:
        assert controller.look() == ({}, False)
        cli.set_tool_mode("oven-1", "maintenance", user="erik", reason="belt")
        cli.set_tool_mode("printer-1", "engineering", user="erik", reason="squeegee")
        modes, waiting = controller.look()
        assert (modes, waiting) == (controller.tool_modes(), False)
        assert [(m.tool, m.mode, m.reason) for m in modes.values()] == [
            ("oven-1", ToolMode.MAINTENANCE, "belt"),
            ("printer-1", ToolMode.ENGINEERING, "squeegee")]
        cli.create_lot("L1", recipe_name=HIPB.name, recipe_version=HIPB.version,
                       recipe_hash=HIPB.hash, slots=[1], user="erik")
        (request,) = [cli.hold_wafer("L1-01", user="erik", reason="look at it")]
        modes, waiting = controller.look()
        assert waiting and set(modes) == {"oven-1", "printer-1"}  # the request row is no mode
        controller.mark_request_handled(request.id, note="held")
        cli.set_tool_mode("oven-1", "production", user="erik")
        modes, waiting = controller.look()
        assert not waiting and modes["oven-1"].mode is ToolMode.PRODUCTION


def test_a_busy_tool_finishes_its_wafer_before_its_e10_state_follows_the_mode(
        tmp_path) -> None:
    tools = {"cleaner-1": ScheduledTool("cleaner-1", "cleaner", driver=None),
             "cleaner-2": ScheduledTool("cleaner-2", "cleaner", driver=None)}
    events: list[LineEvent] = []
    stream = LineEventStream("line", lambda: 0.0)
    stream.listen(events.append)
    recorded: list[tuple[str, E10State, str]] = []
    modes = ToolModes(tools, stream, lambda *args: recorded.append(args))
    with Store(f"sqlite:///{tmp_path / 'modes.db'}") as store:
        tools["cleaner-1"].take(0.0, holder="W-01")
        store.set_tool_mode("cleaner-1", "engineering", user="erik", reason="DOE rinse")
        store.set_tool_mode("cleaner-2", "offline", user="erik", reason="no DI water")
        assert modes.apply(store.tool_modes())
        assert not modes.apply(store.tool_modes())  # nothing new
    assert tools["cleaner-1"].out_of_production == "engineering"
    # cleaner-2 is idle: its state changes now; cleaner-1 finishes W-01 first.
    assert [r[0] for r in recorded] == ["cleaner-2"]
    assert modes.e10(*recorded[0]) == (E10State.NON_SCHEDULED,
                                       "mode offline by erik: no DI water")
    assert modes.e10("cleaner-1", E10State.PRODUCTIVE, "clean") == (E10State.PRODUCTIVE,
                                                                    "clean")
    assert modes.e10("cleaner-1", E10State.STANDBY, "no wafer to take")[0] is \
        E10State.ENGINEERING
    said = {e.tool: dict(e.data) for e in events if e.kind is EventKind.TOOL_MODE}
    assert said["cleaner-1"] == {"mode": "engineering", "previous": "production", "by": "erik",
                                 "reason": "DOE rinse", "finishing": ["W-01"]}


async def test_the_scheduler_gives_a_tool_in_maintenance_no_wafer(db_url: str) -> None:
    # 250x, not faster: on a loaded machine (the whole suite on two workers) a wall
    # millisecond late at the oven's exit is a quarter second of tool time or more; at
    # 1500x, and once at 500x (a stall of ~90 ms, the next wafer 32 tool s behind: alarm
    # 530), a wafer reached the exit after its step had given up on it.
    clock = ScaledClock(250.0)
    layout = {"printer": 1, "placer": 0, "oven": 1, "cleaner": 2}
    async with SimulatedLine(clock=clock, seed=11, layout=layout) as line:
        config = parse_line_config(line.config_text())
        with Store(db_url) as store:
            store.create_lot("M1", recipe_name=HIPB.name, recipe_version=HIPB.version,
                             recipe_hash=HIPB.hash, slots=[1, 2, 3], user="t")
            # Set before the controller starts: what a restart finds in the store.
            store.set_tool_mode("cleaner-2", "maintenance", user="erik", reason="pump swap")
            events = LineEventStream("line", clock.now)
            heard: list[LineEvent] = []
            events.listen(heard.append)
            async with open_line(config, clock) as tools:
                controller = LineController(store, tools, clock, recipes=load_valid_recipe,
                                            events=events)
                (outcome,) = await controller.run(["M1"])
            cleans = Counter(s.tool for w in store.wafers("M1") for s in store.steps(w.id)
                             if s.kind == "clean")
            # E10 changes; the run's end may add a row with the tool's own state (what
            # `bumpline tools` shows) under the same E10 state: one change, not two.
            states = [(s.e10_state, s.reason) for s in store.tool_state_history("cleaner-2")]
            states = [st for i, st in enumerate(states) if i == 0 or st != states[i - 1]]
    # Print alignment failures are seeded (a wafer may wait for a disposition); every clean
    # of the wafers that got there ran on cleaner-1.
    assert sum(s == "complete" for s in outcome.wafers.values()) >= 2, outcome
    assert set(cleans) == {"cleaner-1"} and sum(cleans.values()) >= 2, cleans
    assert states == [("scheduled down", "mode maintenance by erik: pump swap")]
    # Found at the start, not changed during the run: nothing to announce.
    assert not [e for e in heard if e.kind is EventKind.TOOL_MODE]
    changes = [e.data["e10_state"] for e in heard if e.kind is EventKind.TOOL_STATE
               and e.tool == "cleaner-2" and "previous" in e.data]  # not the status refreshes
    assert changes == ["scheduled down"]


def test_between_lots_a_mode_change_is_recorded_and_announced(tmp_path) -> None:
    events: list[LineEvent] = []
    stream = LineEventStream("line", lambda: 0.0)
    stream.listen(events.append)
    with Store(f"sqlite:///{tmp_path / 'modes.db'}") as store:
        store.set_tool_mode("printer-1", "offline", user="erik", reason="stencil lost")
        idle = IdleModes(store, stream)
        idle.look()  # what serve finds when it starts: recorded, not announced
        store.set_tool_mode("oven-1", "engineering", user="erik", reason="profile DOE")
        idle.look()
        idle.look()  # nothing new
        store.set_tool_mode("oven-1", "production", user="erik")
        idle.look()
        states = [(s.tool, s.e10_state) for s in store.tool_state_history()]
    assert states == [("printer-1", "non-scheduled"), ("oven-1", "engineering"),
                      ("oven-1", "standby")]
    said = [(e.tool, e.data["mode"], e.data["previous"]) for e in events
            if e.kind is EventKind.TOOL_MODE]
    assert said == [("oven-1", "engineering", "production"),
                    ("oven-1", "production", "engineering")]


def test_bumpline_tools_mode_sets_it_with_the_user_or_says_why_not(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    with Store(db) as store:
        store.record_tool_state("oven-1", "standby")
    assert main(["tools", "mode", "oven-1", "maintenance", "--reason", "belt tension",
                 "--user", "erik", "--db", db]) == 0
    assert capsys.readouterr().out == ("oven-1: production -> maintenance; a wafer on it "
                                       "finishes first\n")
    assert main(["tools", "mode", "oven-1", "offline", "--db", db]) == 1
    assert capsys.readouterr().err == ("bumpline: say why oven-1 goes out of production "
                                       "(a reason)\n")
    with pytest.raises(SystemExit) as exc:
        main(["tools", "mode", "oven-1", "repair", "--db", db])
    assert exc.value.code == 2
    with Store(db) as store:
        assert store.tool_modes()["oven-1"].set_by == "erik"
    assert main(["tools", "--db", db]) == 0  # the listing still works without a subcommand
    assert "oven-1" in capsys.readouterr().out


def test_a_mode_is_one_lines_tool_not_every_tool_of_that_name(db_url: str) -> None:
    """Tool names repeat on every line: maintenance on bay-A's oven-1 leaves bay-B's in
    production, for the store, the controller's look and the audit trail."""
    with Store(db_url, line_id="bay-A") as a, Store(db_url, line_id="bay-B") as b:
        assert a.set_tool_mode("oven-1", "maintenance", user="erik", reason="belt") == (
            ToolMode.PRODUCTION, ToolMode.MAINTENANCE)
        assert b.tool_modes() == {}
        assert b.set_tool_mode("oven-1", "offline", user="ann", reason="no N2") == (
            ToolMode.PRODUCTION, ToolMode.OFFLINE)  # its own previous mode, not bay-A's
        assert a.tool_modes()["oven-1"].mode is ToolMode.MAINTENANCE
        assert [(m.line_id, m.tool, m.mode.value) for m in a.every_tool_mode()] == [
            ("bay-A", "oven-1", "maintenance"), ("bay-B", "oven-1", "offline")]
        trail = [e.detail for e in a.audit_log() if e.action == "tool.mode"]
    assert trail == ["oven-1 on line bay-A: production -> maintenance: belt",
                     "oven-1 on line bay-B: production -> offline: no N2"]


def test_bumpline_tools_mode_takes_the_line_and_tools_lists_each_mode(tmp_path,
                                                                      capsys) -> None:
    db = f"sqlite:///{tmp_path / 'lines.db'}"
    with Store(db, line_id="bay-A") as a, Store(db, line_id="bay-B") as b:
        a.record_tool_state("oven-1", "standby")
        b.record_tool_state("oven-1", "standby")
        b.record_tool_state("printer-1", "standby")
    assert main(["tools", "mode", "oven-1", "maintenance", "--reason", "belt", "--db", db]) == 1
    assert capsys.readouterr().err == ("bumpline: oven-1 is a tool of lines bay-A, bay-B: say "
                                       "which with --line\n")
    assert main(["tools", "mode", "oven-9", "offline", "--reason", "x", "--db", db]) == 1
    assert capsys.readouterr().err == ("bumpline: no line has recorded a tool oven-9 yet: check "
                                       "the name, or give its line with --line ID\n")
    assert main(["tools", "mode", "oven-1", "maintenance", "--reason", "belt", "--line",
                 "bay-B", "--user", "erik", "--db", db]) == 0
    assert capsys.readouterr().out == ("oven-1 on line bay-B: production -> maintenance; a "
                                       "wafer on it finishes first\n")
    # The one line that has printer-1 is taken without --line, and said.
    assert main(["tools", "mode", "printer-1", "engineering", "--reason", "DOE", "--user",
                 "erik", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("printer-1 on line bay-B: production -> ")
    assert main(["tools", "mode", "cleaner-1", "offline", "--reason", "x", "--line", "bay-A",
                 "--db", db]) == 0  # a new line's tool may be named before it runs
    assert capsys.readouterr().out.endswith(
        "(no state recorded yet for cleaner-1 on line bay-A: check the name)\n")
    with Store(db, line_id="bay-A") as a:
        assert set(a.tool_modes()) == {"cleaner-1"}
    assert main(["tools", "--json", "--db", db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["line_id"], t["tool"], t["mode"]) for t in listed] == [
        ("bay-A", "oven-1", "production"), ("bay-B", "oven-1", "maintenance"),
        ("bay-B", "printer-1", "engineering")]
    assert main(["tools", "--line", "bay-B", "--db", db]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:7] == ["line", "tool", "E10", "state", "tool", "state", "mode"]
    assert [r.split()[:5] for r in rows[1:]] == [
        ["bay-B", "oven-1", "standby", "—", "maintenance"],
        ["bay-B", "printer-1", "standby", "—", "engineering"]]

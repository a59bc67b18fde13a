"""Lots queued for a line or for any line, claimed by exactly one controller (SQLite and
PostgreSQL): the store's claim, the binding of a lot to the line that runs it, and the
query commands' ``--line``."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller.cli.claims import recipe_roles
from controller.store import LotInfo, Store, StoreError
from sequences.recipes.validate import load_valid_recipe

BUMPLINE = [sys.executable, "-m", "controller.cli"]
BALLMOUNT = "ballmount-sac305"  # place, reflow, clean
REBUMP = "rebump-hipb-snpb"  # print, reflow, clean


def _queue(store: Store, lot_id: str, recipe_name: str, *, line_id: str | None = None,
           priority: int = 5) -> None:
    recipe = load_valid_recipe(recipe_name)
    store.create_lot(lot_id, recipe_name=recipe_name, recipe_version=recipe.version,
                     recipe_hash=recipe.hash, slots=[1], priority=priority, user="tester",
                     line_id=line_id)


def _tools(*roles: str, cleaner_model: str | None = None) -> list[tuple[str, object]]:
    """(role, driver, never connected) of a line with one tool of each role given."""
    import argparse

    from controller.cli.claims import line_drivers
    from drivers.clock import ScaledClock
    from drivers.line_config import ToolConfig
    from drivers.tools import unopened_drivers

    tools = [(r, d) for r, d in line_drivers(argparse.Namespace(line=None, platers=1))
             if r in roles and not (r == "cleaner" and cleaner_model)]
    if cleaner_model and "cleaner" in roles:
        tools += unopened_drivers([ToolConfig("cleaner-1", "cleaner", "modbus-rtu", "/dev/null",
                                              model=cleaner_model)], ScaledClock(1.0))
    return tools


def _anything(lot: LotInfo) -> bool:
    return True


def test_recipe_roles_come_from_the_step_kinds() -> None:
    assert recipe_roles(load_valid_recipe(BALLMOUNT)) == {"placer", "oven", "cleaner"}
    assert recipe_roles(load_valid_recipe(REBUMP)) == {"printer", "oven", "cleaner"}


def test_a_lot_for_a_line_goes_only_to_that_line(db_url: str) -> None:
    with Store(db_url) as store:
        _queue(store, "FOR-B", REBUMP, line_id="bay-B", priority=1)
        _queue(store, "ANY", REBUMP, priority=5)
        assert store.claim_lot("bay-A", _anything).id == "ANY"  # FOR-B is not A's
        assert store.get_lot("ANY").line_id == "bay-A"
        assert store.claim_lot("bay-C", _anything) is None  # nothing left for C
        assert store.claim_lot("bay-B", _anything).id == "FOR-B"
        assert [lot.id for lot in store.list_lots(line_id="bay-A")] == ["ANY"]
        claims = [a.detail for a in store.audit_log(lot_id="ANY") if a.action == "lot.claim"]
        assert claims == ["claimed by line bay-A"]


def test_a_line_skips_lots_it_cannot_run_and_a_claimed_lot_stays_its_lines(
    db_url: str,
) -> None:
    with Store(db_url) as store:
        _queue(store, "URGENT", BALLMOUNT, priority=1)
        _queue(store, "LATER", REBUMP, priority=9)
        no_placer = {"printer", "oven", "cleaner"}

        def can_run(lot: LotInfo) -> bool:
            return recipe_roles(load_valid_recipe(lot.recipe_name)) <= no_placer

        assert store.claim_lot("bay-C", can_run).id == "LATER"
        assert store.get_lot("URGENT").line_id is None  # still any line's
        # Claimed but not started (its controller died): only its own line gets it again.
        assert store.claim_lot("bay-A", _anything).id == "URGENT"
        assert store.claim_lot("bay-A", _anything).id == "URGENT"  # A's until it runs
        assert store.claim_lot("bay-C", can_run).id == "LATER"


def test_a_lot_of_another_line_is_refused_by_run(db_url: str) -> None:
    with Store(db_url) as store:
        _queue(store, "L1", REBUMP)
        assert store.take_lot_for_line("L1", "bay-A").line_id == "bay-A"
        assert store.take_lot_for_line("L1", "bay-A").line_id == "bay-A"
        with pytest.raises(StoreError, match="lot L1 belongs to line bay-A, not bay-B"):
            store.take_lot_for_line("L1", "bay-B")
        with pytest.raises(StoreError, match="a line id is 1-200 printable"):
            _queue(store, "L2", REBUMP, line_id="")


def test_controllers_claiming_at_once_each_win_different_lots(db_url: str) -> None:
    """Six claimers, each with its own engine, race for 12 lots: every lot is claimed once."""
    with Store(db_url) as store:
        for n in range(12):
            _queue(store, f"R{n:02d}", REBUMP)
    won: dict[str, list[str]] = {f"bay-{n}": [] for n in range(6)}
    failed: list[BaseException] = []
    stores = [Store(db_url) for _ in won]  # opened (and migrated) before the race
    start = threading.Barrier(len(stores), timeout=60)

    def claimer(line: str, mine: Store) -> None:
        try:
            start.wait()
            got = won[line]
            while (lot := mine.claim_lot(line, _anything)) is not None:
                if lot.id in got:
                    break  # our own, claimed already: the queue is empty for us
                got.append(lot.id)
                mine.set_lot_state(lot.id, "running")  # claimed lots leave the queue
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
            start.abort()

    threads = [threading.Thread(target=claimer, args=(line, mine))
               for line, mine in zip(won, stores, strict=True)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for mine in stores:
            mine.close()
    assert not failed, failed
    claimed = [lot for lots in won.values() for lot in lots]
    assert sorted(claimed) == [f"R{n:02d}" for n in range(12)]  # each exactly once
    with Store(db_url) as store:
        for line, lots in won.items():
            assert {lot.id for lot in store.list_lots(line_id=line)} == set(lots)


def test_a_controller_deciding_on_a_lot_leaves_the_others_to_other_controllers(
    db_url: str,
) -> None:
    """While bay-A's controller weighs the most urgent lot (its ``can_run`` is held
    open), bay-B's controller still claims: the queue never looks empty to it, and the
    lot bay-B takes meanwhile is not claimed by bay-A too."""
    with Store(db_url) as store:
        for n in range(2):
            _queue(store, f"Q{n}", REBUMP)
    deciding, decide = threading.Event(), threading.Event()
    got: list[str | None] = []
    failed: list[BaseException] = []

    def slow_can_run(lot: LotInfo) -> bool:
        deciding.set()
        assert decide.wait(timeout=60), "never told to go on"  # only guards a hang
        return True

    def bay_a(mine: Store) -> None:
        try:
            lot = mine.claim_lot("bay-A", slow_can_run)
            got.append(None if lot is None else lot.id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
            deciding.set()

    with Store(db_url) as a, Store(db_url) as b:
        thread = threading.Thread(target=bay_a, args=(a,))
        thread.start()
        try:
            assert deciding.wait(timeout=60)
            assert not failed, failed
            # Before: bay-A's transaction held the queue (every row locked on
            # PostgreSQL, the write lock on SQLite) while it decided, so bay-B saw no
            # lot at all (or waited for the lock and failed).
            taken = b.claim_lot("bay-B", _anything)
        finally:
            decide.set()
            thread.join()
        assert not failed, failed
        assert taken is not None and taken.id == "Q0" and taken.line_id == "bay-B"
        assert got == ["Q1"]  # bay-A passed over Q0, which bay-B won meanwhile
        assert a.get_lot("Q0").line_id == "bay-B" and a.get_lot("Q1").line_id == "bay-A"
        claims = [(entry.lot_id, entry.detail) for entry in a.audit_log()
                  if entry.action == "lot.claim"]
        assert sorted(claims) == [("Q0", "claimed by line bay-B"),
                                  ("Q1", "claimed by line bay-A")]


def test_alarms_and_tool_states_are_kept_per_line(db_url: str) -> None:
    """Two lines' controllers on one database, tools named alike: one line's alarm is
    neither taken for nor cleared with the other's, and each line's tool states are
    recorded and read on their own."""
    with Store(db_url, line_id="bay-A") as a, Store(db_url, line_id="bay-B") as b:
        on_a = a.alarm_set("oven-1", 540, "O2 HIGH")
        assert a.alarm_set("oven-1", 540, "O2 HIGH") == on_a  # polled again: the same one
        on_b = b.alarm_set("oven-1", 540, "O2 HIGH")
        assert on_b != on_a  # before: bay-B's alarm was bay-A's row
        assert a.alarm_cleared("oven-1") == [on_a]
        assert [(x.id, x.line_id) for x in b.alarms(active_only=True)] == [(on_b, "bay-B")]
        assert [x.id for x in b.alarms(line_id="bay-A")] == [on_a]
        assert a.record_tool_state("oven-1", "standby", tool_state="READY")
        assert b.record_tool_state("oven-1", "standby", tool_state="READY")  # its own change
        assert not b.record_tool_state("oven-1", "standby", tool_state="READY")
        assert a.record_tool_state("oven-1", "productive", tool_state="REFLOW")
        latest = [(t.line_id, t.tool, t.e10_state) for t in b.tool_states_latest()]
        assert latest == [("bay-A", "oven-1", "productive"), ("bay-B", "oven-1", "standby")]
        assert [t.line_id for t in a.tool_states_latest("bay-B")] == ["bay-B"]
        # A lot's report reads its own line's tool (and rows that name no line).
        with Store(db_url) as unnamed:
            unnamed.record_tool_state("oven-1", "standby", tool_state="OLD")
        history = a.tool_state_history("oven-1", line_id="bay-B")
        assert [(t.line_id, t.tool_state) for t in history] == [("bay-B", "READY"), (None, "OLD")]
        assert len(a.tool_state_history("oven-1")) == 4
    with pytest.raises(StoreError, match="a line id is 1-200 printable"):
        Store(db_url, line_id="")


def test_lot_start_names_the_line_and_lot_list_filters_by_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fab.db'}"

    def bumpline(*args: str) -> str:
        done = subprocess.run([*BUMPLINE, *args, "--db", db], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = bumpline("lot", "start", "--lot", "A1", "--recipe", REBUMP, "--wafers", "2",
                   "--line-id", "bay-A")
    assert out.rstrip().endswith("priority 5, for line bay-A")
    assert bumpline("lot", "start", "--lot", "ANY1", "--recipe", REBUMP, "--wafers",
                    "1").rstrip().endswith("for any line")
    listed = bumpline("lot", "list", "--line", "bay-A")
    assert "A1" in listed and "ANY1" not in listed
    assert listed.splitlines()[0].split()[:3] == ["lot", "state", "line"]
    assert listed.splitlines()[-1].split()[:3] == ["A1", "queued", "bay-A"]
    assert "  line     any (not claimed yet)" in bumpline("lot", "show", "ANY1").splitlines()


def test_two_changes_of_one_lot_at_once_never_undo_each_other(pg_url: str) -> None:
    """PostgreSQL, READ COMMITTED: the scheduler completes a lot while an operator aborts
    it. The abort waits for the completion's lock, then reads "complete" and is refused;
    before, it read "running", waited only at its UPDATE and wrote "aborted" over it."""
    import sqlalchemy as sa

    with Store(pg_url) as store:
        _queue(store, "RACE", REBUMP)
        store.set_lot_state("RACE", "running")
        engine = sa.create_engine(pg_url)
        outcome: list[BaseException | str] = []
        operator = Store(pg_url)
        try:
            with engine.connect() as scheduler:
                # The scheduler's change, committed last: the row stays locked meanwhile.
                scheduler.execute(sa.text("UPDATE lots SET state = 'complete' WHERE id = 'RACE'"))
                pid = scheduler.execute(sa.text("SELECT pg_backend_pid()")).scalar()

                def abort() -> None:
                    try:
                        operator.abort_lot("RACE", user="op", reason="late")
                        outcome.append("aborted")
                    except StoreError as exc:
                        outcome.append(exc)

                aborting = threading.Thread(target=abort)
                aborting.start()
                # The abort is blocked behind the scheduler's lock (what the database says).
                blocked = sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                  ":pid = ANY(pg_blocking_pids(pid))")
                with engine.connect() as watcher:
                    while not watcher.execute(blocked, {"pid": pid}).scalar():
                        watcher.rollback()
                        assert aborting.is_alive(), outcome
                scheduler.commit()
                aborting.join(timeout=30)
        finally:
            operator.close()
            engine.dispose()
        assert len(outcome) == 1 and isinstance(outcome[0], StoreError), outcome
        assert "complete" in str(outcome[0])
        assert store.get_lot("RACE").state == "complete"


def test_a_lot_for_any_line_held_before_it_started_is_no_lines_until_claimed(
    db_url: str,
) -> None:
    """Held while queued, a lot for any line never started: a serve looking for its own
    unfinished lots must not take it (one without a printer took a rebump lot and was
    stuck with it); resumed, it is queued again and the line that can run it claims it."""
    from controller.cli.claims import LotClaims

    with Store(db_url) as store:
        _queue(store, "HELD-ANY", REBUMP)
        store.hold_lot("HELD-ANY", user="op", reason="wait for the carrier")
        no_printer = LotClaims(store, "bay-B", _tools("placer", "oven", "cleaner"),
                               load_valid_recipe)
        assert no_printer.unfinished(set()) == []
        store.resume_lot("HELD-ANY", user="op")
        assert no_printer.claim() is None  # it cannot run a rebump
        printer = LotClaims(store, "bay-A", _tools("printer", "oven", "cleaner"),
                            load_valid_recipe)
        assert printer.claim() == "HELD-ANY"
        # A lot from before lots named their line, which had started, is still resumed by
        # whichever line looks (as before).
        _queue(store, "OLD", REBUMP)
        store.set_lot_state("OLD", "running")
        assert store.get_lot("OLD").line_id is None
        assert no_printer.unfinished(set()) == ["OLD"]


def test_the_in_process_line_has_a_plater_only_when_asked() -> None:
    """`serve` without --line runs the in-process simulated line: one tool of each role but
    the plater, of which --platers (default none). A barrier lot it claimed without one
    could never run, and serve took it up again and again (a core kept busy)."""
    import argparse

    from controller.cli.claims import line_drivers

    def roles(platers: int) -> set[str]:
        return {role for role, _ in line_drivers(argparse.Namespace(line=None, platers=platers))}

    plain = roles(0)
    assert plain == {"printer", "placer", "oven", "cleaner"}
    assert "plater" in roles(1)
    barrier = load_valid_recipe("rebump-hipb-niau-snbi")
    assert "plater" in recipe_roles(barrier) and not recipe_roles(barrier) <= plain


def test_a_writer_connection_the_server_dropped_is_replaced(pg_url: str) -> None:
    """PostgreSQL restarted (or the connection killed) under a controller: the write that
    meets the dead connection fails, and the next one gets a new connection instead of
    failing for good."""
    import psycopg
    import sqlalchemy as sa

    with Store(pg_url) as store:
        _queue(store, "GONE", REBUMP)
        store.record_transition("GONE-01", "queued", "step1_waiting", "start")
        writer = store._db._writer  # the connection hot writes use
        assert writer is not None
        pid = writer.connection.dbapi_connection.info.backend_pid
        admin = sa.create_engine(pg_url)
        try:
            with admin.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                                    {"pid": pid}).scalar()
        finally:
            admin.dispose()
        with pytest.raises((psycopg.OperationalError, StoreError, sa.exc.OperationalError)):
            store.record_transition("GONE-01", "step1_waiting", "step1_running",
                                    "tool_acquired", location="printer-1")
        store.record_transition("GONE-01", "step1_waiting", "step1_running", "tool_acquired",
                                location="printer-1")
        assert store.get_wafer("GONE-01").state == "step1_running"


def test_a_controller_taking_the_lot_during_a_persons_hold_gets_the_request(
        db_url: str) -> None:
    """The hold looked for a controller, found none, and one took the lot before the change
    was written: the request is left for that controller, not answered as if nobody ran
    the lot (it would never apply the hold, and new wafers would keep starting)."""
    with Store(db_url) as store:
        _queue(store, "TAKEN", REBUMP)
        real_hold = store.hold_lot

        def hold_while_a_controller_takes_it(lot_id: str, **kwargs: object) -> LotInfo:
            store.acquire_lot_lock(lot_id)  # a controller (this live process) takes it
            return real_hold(lot_id, **kwargs)  # type: ignore[arg-type]

        store.hold_lot = hold_while_a_controller_takes_it  # type: ignore[method-assign]
        lot, holder = store.act_on_lot("TAKEN", "hold", user="olga", reason="paste check")
        assert lot.state == "held" and holder is not None
        assert [q.action for q in store.pending_requests("TAKEN")] == ["hold_lot"]


def test_a_look_that_fails_leaves_no_aborted_transaction_behind(pg_url: str) -> None:
    """PostgreSQL: a look whose statement failed (cancelled, or as here an error) left the
    writer's implicit transaction aborted, so every later hot write failed with "current
    transaction is aborted" until something rolled it back."""
    import sqlalchemy as sa

    from controller.persistence.base import HotStatement

    with Store(pg_url) as store:
        _queue(store, "LOOK", REBUMP)
        failing = HotStatement(sa.select(sa.literal_column("1 / 0")))
        with pytest.raises(Exception, match="division by zero"):
            store._db.peek_all(failing, {})
        store.record_transition("LOOK-01", "queued", "step1_waiting", "start")
        assert store.get_wafer("LOOK-01").state == "step1_waiting"


def test_a_started_lot_this_line_can_no_longer_finish_is_run_once_then_left(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The line file lost a role after one of its lots started: serve runs the lot once
    (recovering its wafers on the line's tools), then leaves it, said once; it took the lot
    up again and again before, a core kept busy. A lot it can finish is always taken."""
    from controller.cli.claims import LotClaims

    with Store(db_url) as store:
        for lot_id, recipe in (("NEEDS-PRINTER", REBUMP), ("CAN-RUN", "ballmount-sac305")):
            _queue(store, lot_id, recipe)
            store.take_lot_for_line(lot_id, "bay-A")
            store.set_lot_state(lot_id, "running")
        no_printer = LotClaims(store, "bay-A", _tools("placer", "oven", "cleaner"),
                               load_valid_recipe)
        assert no_printer.unfinished(set()) == ["NEEDS-PRINTER", "CAN-RUN"]
        assert no_printer.unfinished(set()) == ["CAN-RUN"]
        assert no_printer.unfinished(set()) == ["CAN-RUN"]
    err = capsys.readouterr().err
    assert err.count("NEEDS-PRINTER") == 1
    assert ("lot NEEDS-PRINTER run once to recover its wafers, then left as it is: line bay-A "
            "has no printer tool for its recipe") in err


def test_a_lot_whose_step_no_tool_of_the_line_can_take_is_not_claimed(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A mask-strip lot for any line: a line whose cleaner is an FC-1 (no strip mode) has a
    cleaner, and claimed it by its roles; its wafers were placed and reflowed, then waited
    at the strip for good. Now only a line with an FC-2 claims it; queued for the FC-1's
    own line, it stays queued, said once."""
    from controller.cli.claims import LotClaims

    roles = ("placer", "oven", "cleaner")
    with Store(db_url) as store:
        _queue(store, "MASK", "ballmount-mask-sac305")
        fc1 = LotClaims(store, "bay-B", _tools(*roles), load_valid_recipe)
        assert fc1.claim() is None
        fc2 = LotClaims(store, "bay-A", _tools(*roles, cleaner_model="FC-2"), load_valid_recipe)
        assert fc2.claim() == "MASK"
        _queue(store, "MASK-B", "ballmount-mask-sac305", line_id="bay-B")
        assert fc1.claim() is None and fc1.claim() is None
    err = capsys.readouterr().err
    assert err.count("MASK-B") == 1
    assert ("lot MASK-B left queued: line bay-B: step 3 (strip) needs a cleaner whose model "
            "can take it, and the line's (cleaner-1) cannot") in err

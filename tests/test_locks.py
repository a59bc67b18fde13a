"""One controller per line and per lot: leases in the database, on SQLite and PostgreSQL.

The store's lock API, and the real thing: two ``bumpline run`` processes on one
line, and a SIGKILLed holder whose lock the next controller takes over without
anyone removing it by hand.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from controller.cli import main
from controller.cli.leases import Leases
from controller.persistence.locks import process_start
from controller.store import Holder, LockHeldError, Store, StoreError
from sequences.recipes.validate import load_valid_recipe

BUMPLINE = Path(sys.executable).with_name("bumpline")
RECIPE = "rebump-hipb-snpb"
T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
PROCESS_TIMEOUT_S = 120.0  # a hang fails instead of blocking the suite


class Clock:
    """The store's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def test_a_second_controller_is_refused_with_the_holder_named(db_url: str) -> None:
    with Store(db_url) as first, Store(db_url) as second:
        held = first.acquire_line_lock("bay-1", holder=Holder("bumpline run by ann"))
        with pytest.raises(LockHeldError) as refused:
            second.acquire_line_lock("bay-1")
        message = str(refused.value)
        assert message.startswith("line bay-1 is already run by another controller: ")
        assert f"host {socket.gethostname()}, pid {os.getpid()} (bumpline run by ann)" in message
        assert "since " in message and "lease until " in message
        assert refused.value.holder.token == held.token
        # Lots are locked on their own: the same lot twice is refused, another lot is not.
        first.acquire_lot_lock("C1")
        with pytest.raises(LockHeldError, match="lot C1 is already run by another controller"):
            second.acquire_lot_lock("C1")
        second.acquire_lot_lock("C2")
        second.acquire_line_lock("bay-2")


def test_release_lets_the_next_controller_in(db_url: str) -> None:
    with Store(db_url) as first, Store(db_url) as second:
        held = first.acquire_line_lock("bay-1")
        assert first.release_lock(held) is True
        assert first.release_lock(held) is False  # not ours any more
        assert first.line_lock_holder("bay-1") is None
        taken = second.acquire_line_lock("bay-1")
        assert second.line_lock_holder("bay-1") == taken


def test_an_expired_lease_is_taken_over_and_the_loser_hears_it(db_url: str) -> None:
    clock = Clock()
    with Store(db_url, now=clock) as first, Store(db_url, now=clock) as second:
        # A holder on another host: only its lease can tell whether it still runs.
        held = first.acquire_line_lock("bay-1", lease_s=30,
                                      holder=Holder(host="other-host", pid=4242))
        clock.t = T0 + timedelta(seconds=20)
        held = first.renew_lock(held, lease_s=30)  # the heartbeat: now good until +50 s
        assert held.expires_at == T0 + timedelta(seconds=50)
        clock.t = T0 + timedelta(seconds=45)
        with pytest.raises(LockHeldError, match="host other-host, pid 4242"):
            second.acquire_line_lock("bay-1")
        clock.t = T0 + timedelta(seconds=50)  # expired
        taken = second.acquire_line_lock("bay-1")
        assert (taken.host, taken.pid) == (socket.gethostname(), os.getpid())
        (takeover,) = [a for a in second.audit_log() if a.action == "lock.takeover"]
        assert "line bay-1 taken over" in takeover.detail
        assert "host other-host, pid 4242" in takeover.detail
        assert "its lease had expired" in takeover.detail
        with pytest.raises(StoreError, match="this controller lost its lock on line bay-1: now "
                           f"held by host {socket.gethostname()}"):
            first.renew_lock(held)
        assert first.release_lock(held) is False
        assert second.line_lock_holder("bay-1") == taken


def test_a_pid_the_system_gave_to_another_process_is_not_the_holder(db_url: str) -> None:
    """The holder died and its pid now names another live process on this host (here: this
    test's own process, recorded with another start time, as the dead holder's would be):
    the lease is stale at once, not only when it expires."""
    started = process_start(os.getpid())
    if started is None:
        pytest.skip("this system shows no process start times (/proc)")
    with Store(db_url) as store:
        held = store.acquire_line_lock("bay-1", holder=Holder("the live one"))
        assert held.pid_started == started
        with pytest.raises(LockHeldError):  # the same pid and start: the holder itself runs
            store.acquire_line_lock("bay-1")
        store.release_lock(held)
        store.acquire_line_lock(
            "bay-1", holder=Holder("dead", pid=os.getpid(), pid_started=started - 1)
        )
        taken = store.acquire_line_lock("bay-1")  # the pid is alive, yet not the holder's
        assert (taken.pid, taken.pid_started) == (os.getpid(), started)
        (takeover,) = [a for a in store.audit_log() if a.action == "lock.takeover"]
        assert f"pid {os.getpid()} now belongs to another process" in takeover.detail


def test_a_bad_lease_is_refused(db_url: str) -> None:
    with Store(db_url) as store, pytest.raises(StoreError, match="lease must be > 0 s"):
        store.acquire_line_lock("bay-1", lease_s=0)


_HOLDER = """
import sys
from controller.store import Holder, Store
with Store(sys.argv[1]) as store:
    lock = store.acquire_line_lock("bay-1", holder=Holder("child"))
    print(lock.pid, flush=True)
    sys.stdin.read()  # hold it until killed
"""


def _end(child: subprocess.Popen[str]) -> None:
    """Kill ``child`` if it still runs, reap it and close its pipes (no ResourceWarning)."""
    if child.poll() is None:
        child.kill()
    child.wait(timeout=PROCESS_TIMEOUT_S)
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()


def test_a_sigkilled_holder_on_this_host_is_taken_over_at_once(db_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, db_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert int(child.stdout.readline()) == child.pid  # it holds the lock now
        with Store(db_url) as store:
            with pytest.raises(LockHeldError, match=f"pid {child.pid} \\(child\\)"):
                store.acquire_line_lock("bay-1")  # alive: refused
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=PROCESS_TIMEOUT_S) == -signal.SIGKILL
            # The lease (30 s) has not run out: the dead pid on this host is what frees it.
            taken = store.acquire_line_lock("bay-1")
            assert taken.pid == os.getpid()
            (takeover,) = [a for a in store.audit_log() if a.action == "lock.takeover"]
            assert f"pid {child.pid}" in takeover.detail
            assert "its process is gone" in takeover.detail
    finally:
        _end(child)


async def test_a_lost_lock_stops_the_controller_and_says_why(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    with Store(db_url, now=clock) as mine, Store(db_url, now=clock) as theirs:
        leases = Leases(mine, "bumpline run by ann")
        leases.lease_s = 0.03  # renewals every 10 ms of wall time
        leases.take_line("bay-1")
        clock.t = T0 + timedelta(seconds=1)  # our lease has run out ...
        # ... and was taken over:
        theirs.acquire_line_lock("bay-1", holder=Holder(host="other-host", pid=7))
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        leases.stop = lambda: stopped.set_result(None)  # what stops the controller
        async with leases.kept():
            await asyncio.wait_for(stopped, PROCESS_TIMEOUT_S)
        assert leases.lost is not None
        assert leases.lost.startswith("this controller lost its lock on line bay-1: now held "
                                      "by host other-host, pid 7")
        assert leases.held == {}
        assert "bumpline: this controller lost its lock on line bay-1" in capsys.readouterr().err
        assert theirs.line_lock_holder("bay-1").host == "other-host"  # type: ignore[union-attr]


def _impatient(store: Store) -> None:
    """SQLite's busy timeout for ``store``'s connections: 20 ms, not 5 s, so a database
    locked by another writer fails a renewal at once."""

    @event.listens_for(store.engine, "connect")
    def impatient(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types
        dbapi_connection.execute("PRAGMA busy_timeout=20")

    store.engine.dispose()


async def test_a_database_that_stops_answering_stops_the_controller_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a takeover: the renewal itself fails (here SQLite's write lock, held by another
    connection past the busy timeout: "database is locked"). The heartbeat neither dies
    silently nor keeps a lease it can no longer renew: once the lease could run out, the
    controller is stopped with one line saying why."""
    url = f"sqlite:///{tmp_path / 'line.db'}"
    with Store(url) as mine:
        _impatient(mine)
        leases = Leases(mine, "bumpline run by ann")
        leases.lease_s = 0.3
        leases.take_line("bay-1")
        other = sqlite3.connect(tmp_path / "line.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")  # another writer that never lets go
            stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            leases.stop = lambda: stopped.set_result(None)
            async with leases.kept():
                await asyncio.wait_for(stopped, PROCESS_TIMEOUT_S)
        finally:
            other.close()
        assert leases.lost is not None
        assert leases.lost.startswith("this controller could not renew its lock on line "
                                      "bay-1 for "), leases.lost
        assert "database is locked" in leases.lost and leases.held == {}
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith("bumpline: this controller could not renew its lock")
        assert all("Traceback" not in line for line in err)


async def test_a_passing_database_failure_is_said_and_the_heartbeat_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A renewal that fails while the lease cannot yet run out (the database locked for a
    moment) is said in one line and tried again at the next beat; the controller keeps
    the line. The heartbeat's clock stands still here, so no lease ever runs out by it:
    each reading of it is one renewal tried, which is what the test waits for."""
    url = f"sqlite:///{tmp_path / 'line.db'}"
    store_clock = Clock()
    with Store(url, now=store_clock) as mine:
        _impatient(mine)
        readings: asyncio.Queue[None] = asyncio.Queue()

        def clock() -> float:
            readings.put_nowait(None)
            return 0.0

        leases = Leases(mine, "bumpline run by ann", clock=clock)
        leases.lease_s = 0.03  # a renewal tried every 10 ms of wall time
        leases.take_line("bay-1")
        readings.get_nowait()  # the line taken
        taken = leases.held["line:bay-1"]
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        leases.stop = lambda: stopped.set_result(None)

        async def renewal_tried() -> None:
            reading = asyncio.ensure_future(readings.get())
            await asyncio.wait({reading, stopped}, timeout=PROCESS_TIMEOUT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            assert not stopped.done(), f"the heartbeat stopped the controller: {leases.lost}"
            assert reading.done(), "no renewal was tried"

        other = sqlite3.connect(tmp_path / "line.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")  # another writer, for a moment
            async with leases.kept():
                await renewal_tried()  # with the database locked: it failed
                assert leases.held["line:bay-1"] is taken
                other.execute("ROLLBACK")
                store_clock.t = T0 + timedelta(seconds=5)
                await renewal_tried()  # the next beat: renewed
                renewed = leases.held["line:bay-1"]
        finally:
            other.close()
        assert leases.lost is None and not stopped.done()
        assert renewed.token == taken.token
        assert renewed.expires_at == T0 + timedelta(seconds=5.03)
        assert mine.line_lock_holder("bay-1") is None  # released at the end of the block
        err = capsys.readouterr().err.splitlines()
        assert err == ["bumpline: renewing the lock on line bay-1 failed (database is locked); "
                       "trying again"], err


# --- the real thing: bumpline run, twice ---------------------------------------------------------


def _bumpline(*args: str, db: str, tmp_path: Path) -> list[str]:
    return [str(BUMPLINE), *args, "--db", db, "--report-dir", str(tmp_path / "reports"),
            "--user", "tester", "--plain"]


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_two_bumpline_runs_on_one_line(db_url: str, tmp_path: Path) -> None:
    """The second run is refused naming the first; once the first is SIGKILLed, a resume
    takes the line over and finishes the lot."""
    recipe = load_valid_recipe(RECIPE)
    with Store(db_url) as store:
        store.create_lot("C2", recipe_name=RECIPE, recipe_version=recipe.version,
                         recipe_hash=recipe.hash, slots=[1], user="tester")
    first = subprocess.Popen(
        _bumpline("run", "--lot", "C1", "--recipe", RECIPE, "--wafers", "1", "--speed", "20",
                  db=db_url, tmp_path=tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert first.stdout is not None
        started = first.stdout.readline()  # printed once the line and the lot are locked
        assert started.startswith("bumpline: C1 on the simulated line"), started

        second = subprocess.run(
            _bumpline("run", "--resume", "C2", "--speed", "2000", db=db_url, tmp_path=tmp_path),
            capture_output=True, text=True, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S,
        )
        error = _one_line_error(second)
        assert error.startswith("bumpline: line sim is already run by another controller: ")
        assert f"pid {first.pid} (bumpline run by tester), since " in error

        # Another line, the same lot: refused on the lot, before any tool is opened.
        other_line = tmp_path / "other.toml"
        other_line.write_text('[line]\nname = "other"\nid = "bay-9"\n')
        third = subprocess.run(
            _bumpline("run", "--resume", "C1", "--line", str(other_line), db=db_url,
                      tmp_path=tmp_path),
            capture_output=True, text=True, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S,
        )
        assert _one_line_error(third).startswith(
            "bumpline: lot C1 is already run by another controller: "
        )

        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=PROCESS_TIMEOUT_S) == -signal.SIGKILL
    finally:
        _end(first)

    resumed = subprocess.run(
        _bumpline("run", "--resume", "C1", "--speed", "2000", db=db_url, tmp_path=tmp_path),
        capture_output=True, text=True, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S,
    )
    assert resumed.returncode in (0, 3), resumed.stdout + resumed.stderr  # 3: a held wafer
    assert "lot C1: " in resumed.stdout
    with Store(db_url) as store:
        assert store.get_lot("C1").state in ("complete", "running")
        takeovers = [a.detail for a in store.audit_log() if a.action == "lock.takeover"]
        assert any(d.startswith("line sim taken over") for d in takeovers), takeovers
        assert any(d.startswith("lot C1 taken over") for d in takeovers), takeovers
        # Released at the end: nobody holds the line or the lot now.
        assert store.line_lock_holder("sim") is None
        assert store.lot_lock_holder("C1") is None


def test_sequence_run_refuses_a_line_a_controller_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bumpline sequence run --line`` drives the line's tools as a controller does: while a
    live controller holds the line it is refused with one line naming the holder, before any
    tool is opened; otherwise it holds the line itself while it runs."""
    db = f"sqlite:///{tmp_path / 'line.db'}"
    line = tmp_path / "bay.toml"
    line.write_text('[line]\nname = "bay"\nid = "bay-1"\n')  # no tools: nothing to open
    command = ["sequence", "run", RECIPE, "--wafer", "W1", "--line", str(line), "--db", db]
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, db], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert int(child.stdout.readline()) == child.pid  # a controller holds bay-1
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
        assert err[0].startswith("bumpline: line bay-1 is already run by another controller: ")
        assert f"pid {child.pid} (child)" in err[0]
        assert err[0].endswith("sequence run drives no line a controller holds")
        child.kill()
        assert child.wait(timeout=PROCESS_TIMEOUT_S) == -signal.SIGKILL
    finally:
        _end(child)
    # The holder is gone: the run takes the line (and fails on this tool-less line), then
    # lets it go.
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "already run by another controller" not in err, err
    with Store(db) as store:
        assert store.line_lock_holder("bay-1") is None
        takeovers = [a.detail for a in store.audit_log() if a.action == "lock.takeover"]
        assert any("(child)" in d and "its process is gone" in d for d in takeovers)


_STARTER = """
import sys
from controller.store import Holder, LockHeldError, Store
sys.stdin.readline()  # every starter is ready: go at once
try:
    with Store(sys.argv[1]) as store:
        store.acquire_line_lock("bay-1", holder=Holder("starter"))
        print("took the line", flush=True)
        sys.stdin.readline()  # hold it until the test has heard every starter
except LockHeldError as exc:
    print(f"refused: {exc}", flush=True)
except Exception as exc:
    print(f"failed: {exc}", flush=True)
"""


def test_controllers_starting_together_on_a_new_database_one_wins_the_others_are_refused(
    tmp_path: Path,
) -> None:
    """The fault campaign's two controllers started at once on a new SQLite file: one was
    refused "database is locked" (no holder named) while the other created the schema."""
    db = f"sqlite:///{tmp_path / 'new.db'}"
    starters = [subprocess.Popen([sys.executable, "-c", _STARTER, db], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for child in starters:
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.flush()
        said = []
        for child in starters:
            assert child.stdout is not None
            said.append(child.stdout.readline().strip())
        assert sorted(s.split(":")[0] for s in said) == [
            "refused", "refused", "refused", "took the line"], said
        assert all("pid " in s and "(starter)" in s for s in said if s.startswith("refused"))
    finally:
        for child in starters:
            _end(child)

"""`bumpline tool` under a running controller: a command that changes a tool in production
is refused while a controller holds the line's lease; a read never is (issue: the console
could UNLOAD or switch the oven's conveyor off under `serve`).

The console runs as its own process against `bumpline sim` (a process too), as an
engineer runs it; the lease is taken in the test's database as a controller takes it.
What reached the tool is read from the simulated tool itself, and `--trace` shows that a
refused command opened no link at all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sim_process import stop, wait_for_line_config

from controller.cli.toolguard import FORCED, SENT, judge
from controller.console import COMMANDS, ConsoleUsageError, run_tool_command
from controller.console.args import Access
from controller.line.e10 import ToolMode
from controller.persistence.base import utc_now
from controller.persistence.locks import process_start
from controller.store import Holder, LockInfo, Store
from drivers.clock import ScaledClock
from drivers.errors import ToolError
from drivers.line_config import load_line_config
from drivers.tools import open_tool

BUMPLINE = [sys.executable, "-m", "controller.cli"]
LINE_ID = "bay-7"
SERVE = "bumpline serve by ann"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A simulated line with every role (an FC-2 cleaner: its strip tank too), serial tools
    over TCP; the folder it runs in, with its line file (`line.toml`, no `[line] id`: the
    lease is on the file's path) and a copy naming the line `bay-7` (`bay7.toml`)."""
    where = tmp_path_factory.mktemp("guard")
    config = where / "line.toml"
    proc = subprocess.Popen(
        [*BUMPLINE, "sim", "--speed", "1000", "--seed", "3", "--serial", "tcp",
         "--cleaners", "fc-2", "--platers", "1", "--state-dir", str(where),
         "--config-out", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=where,
    )
    try:
        wait_for_line_config(config, proc)
        text = config.read_text(encoding="utf-8")
        assert "\nid = " not in text
        (where / "bay7.toml").write_text(
            text.replace("[line]\n", f'[line]\nid = "{LINE_ID}"\n', 1), encoding="utf-8")
        yield where
    finally:
        stop(proc)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BUMPLINE_DB"}
    return {**env, "BUMPLINE_USER": "ann", **extra}


def _tool(where: Path, *args: str, line: str = "line.toml", **env: str
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BUMPLINE, "tool", *args, "--line", str(where / line)],
                          capture_output=True, text=True, cwd=where, timeout=60, env=_env(**env))


def _line_id(where: Path) -> str:
    return str((where / "line.toml").resolve())  # what `run --line line.toml` locks


async def _on_oven(where: Path, *calls: tuple[str, Any]) -> list[Any]:
    """Call the oven's driver in this process: ("n2", True) switches nitrogen, ("status",
    None) and ("profile", None) read."""
    config = load_line_config(where / "line.toml")
    out: list[Any] = []
    async with open_tool(config.tool("oven-1"), ScaledClock(config.time_scale)) as oven:
        for what, value in calls:
            if what == "n2":
                await oven.set_nitrogen(value)
            elif what == "status":
                out.append(await oven.status())
            else:
                out.append(await oven.staged_profile())
    return out


def _nitrogen(where: Path, switch: bool | None = None) -> bool:
    calls = ([("n2", switch)] if switch is not None else []) + [("status", None)]
    return asyncio.run(_on_oven(where, *calls))[-1].nitrogen_on


def _staged_id(where: Path) -> int:
    return asyncio.run(_on_oven(where, ("profile", None)))[0].profile_id


def _run_by_controller(db: Path, line: str, **holder: Any) -> None:
    """A live controller's lease on ``line``: this test process's, as `serve` takes it."""
    with Store(f"sqlite:///{db}") as store:
        store.acquire_line_lock(line, holder=Holder(SERVE, **holder))


def _tool_audit(db: Path) -> list[Any]:
    with Store(f"sqlite:///{db}", create=False) as store:
        return [a for a in store.audit_log() if a.action in (SENT, FORCED)]


def _profile_args(profile_id: int) -> list[str]:
    return [*["150"] * 10, "700", "100", "183", str(profile_id)]


# --- which commands change a tool ---------------------------------------------------------------

# Every command that does not change its tool, by role; any other changes it. A command
# marked a read here must also read on the wire (the test below).
READS = {
    "printer": {"status", "identify", "alarm", "wait", "result"},
    "placer": {"status", "identify", "alarm", "wait", "result"},
    "oven": {"status", "zones", "result", "alarm", "wait-ready", "wait-exit"},
    "cleaner": {"status", "result", "alarm", "wait-done", "wait-bath", "wait-strip-tank"},
    "plater": {"status", "identity", "bath", "result", "alarm", "events", "wait-done",
               "wait-bath"},
}
READS_WITHOUT_ARGS = {"oven": {"profile"}, "cleaner": {"recipe", "strip-recipe"},
                      "plater": {"recipe"}}


def test_each_command_says_whether_it_changes_its_tool() -> None:
    for role, commands in COMMANDS.items():
        by_access = {access: {c.name for c in commands if c.access is access} for access in Access}
        assert by_access[Access.READS] == READS[role], role
        assert by_access[Access.READS_WITHOUT_ARGS] == READS_WITHOUT_ARGS.get(role, set()), role
        for c in commands:
            assert c.changes_tool(["x"]) is (c.access is not Access.READS), c.name
            assert c.changes_tool([]) is (c.access is Access.CHANGES), c.name


def test_a_new_command_changes_its_tool_unless_marked() -> None:
    from controller.console.args import ConsoleCommand, simple

    async def run(driver: Any, args: list[str]) -> None:
        return None

    assert ConsoleCommand("x", "x", "x", run).changes_tool([])
    assert simple("x", "x", run).changes_tool([])


# What each read is run with on the wire (a wait ends at once: 0.5 tool seconds), and the
# reads that take arguments run with them too.
SAMPLE_ARGS = {"wait": ["IDLE", "0.5"], "wait-ready": ["0.5"], "wait-exit": ["0.5"],
               "wait-done": ["0.5"], "wait-bath": ["0.5"], "wait-strip-tank": ["0.5"],
               "events": ["0"]}
MORE_ARGS = {("plater", "result"): ["W01"]}
TOOLS = {"printer": "printer-1", "placer": "placer-1", "oven": "oven-1",
         "cleaner": "cleaner-1", "plater": "plater-1"}
HOSTLINK_READS = {"IDN", "STS", "ALR", "RES"}  # drivers/hostlink_tool.py READS


def _is_read(role: str, sent: Any) -> bool:
    if role in ("printer", "placer"):  # a frame: $NN,CMD[,ARGS]*CS
        text = bytes(sent).decode("ascii")
        return text.startswith("$") and text[1:].split(",")[1].split("*")[0] in HOSTLINK_READS
    if role == "plater":  # a text line: every query ends its first word with ?
        return str(sent).split(" ")[0].endswith("?")
    return str(sent).startswith(("read_holding ", "read_input ", "read_coils ",
                                 "read_discrete "))


async def test_a_command_marked_a_read_sends_only_reads(sim: Path) -> None:
    """What each read-only command (and each show-or-set command without arguments) puts on
    the wire, on every role: only queries. A command marked a read that writes fails here."""
    config = load_line_config(sim / "line.toml")
    ran: list[tuple[str, str]] = []
    for role, name in TOOLS.items():
        sent: list[Any] = []

        def trace(tool: str, direction: str, data: Any, sent: list[Any] = sent) -> None:
            if direction == ">":
                sent.append(data)

        tool = config.tool(name)
        async with open_tool(tool, ScaledClock(config.time_scale), trace=trace) as driver:
            for command in COMMANDS[role]:
                runs = [SAMPLE_ARGS.get(command.name, [])]
                runs += [more] if (more := MORE_ARGS.get((role, command.name))) else []
                for args in runs:
                    if command.changes_tool(args):
                        continue
                    try:
                        await run_tool_command(role, driver, command.name, args)
                    except (ToolError, ConsoleUsageError):
                        pass  # refused, timed out, no result yet: what it sent still counts
                    ran.append((role, command.name))
        assert sent, role
        writes = [s for s in sent if not _is_read(role, s)]
        assert not writes, f"{role}: a read sent {writes}"
    expected = [(role, name) for table in (READS, READS_WITHOUT_ARGS)
                for role, names in table.items() for name in names]
    assert sorted(ran) == sorted(expected + list(MORE_ARGS))


# --- the rule -----------------------------------------------------------------------------------


def _lock(**kw: Any) -> LockInfo:
    now = utc_now()
    return LockInfo(**{"resource": f"line:{LINE_ID}", "token": "t", "host": "fab-pc-3",
                       "pid": 4711, "holder": SERVE, "acquired_at": now, "renewed_at": now,
                       "expires_at": now + timedelta(seconds=30), **kw})


@pytest.mark.parametrize("mode", list(ToolMode))
@pytest.mark.parametrize("force", [False, True])
def test_the_rule(mode: ToolMode, force: bool) -> None:
    rule = dict(tool="oven-1", command="n2 off", line=LINE_ID, mode=mode, force=force)
    assert judge(changes=False, holder=_lock(), **rule) == judge(changes=True, holder=None,
                                                                  **rule)
    nothing = judge(changes=False, holder=_lock(), **rule)
    assert (nothing.refusal, nothing.audit, nothing.warning) == (None, None, None)
    held = judge(changes=True, holder=_lock(), **rule)
    if mode is not ToolMode.PRODUCTION:
        assert held.refusal is None and held.warning is None
        assert held.audit is not None and held.audit[0] == SENT
        assert held.audit[1].startswith(f"oven-1 n2 off: console command to oven-1 in "
                                        f"{mode.value} while line bay-7 is run by a controller")
    elif force:
        assert held.refusal is None and held.audit is not None and held.audit[0] == FORCED
        assert held.warning is not None and held.warning.startswith(
            "warning: oven-1 n2 off: sending it with --force to a tool in production while "
            "line bay-7 is run by a controller (host fab-pc-3, pid 4711 (bumpline serve by ")
        assert held.audit[1].startswith(
            "oven-1 n2 off: console command with --force to oven-1 in production while line "
            "bay-7 is run by a controller (host fab-pc-3, pid 4711 (bumpline serve by ann)")
    else:
        assert held.audit is None and held.warning is None
        assert held.refusal is not None and "\n" not in held.refusal
        assert held.refusal.startswith(
            "oven-1 n2 off: refused: line bay-7 is run by a controller (host fab-pc-3, pid "
            "4711 (bumpline serve by ann), since ")
        assert ("bumpline tools mode oven-1 engineering --line bay-7 --reason TEXT"
                in held.refusal)
        assert "a wafer on it finishes first" in held.refusal
        assert held.refusal.endswith("or send it anyway with --force (audited)")


@pytest.mark.parametrize("force", [False, True])
def test_out_of_production_a_tool_still_working_its_last_wafer_is_refused(force: bool) -> None:
    """Taken out of production, a tool finishes the wafer it has (the oven: every wafer on
    its belt); `tools mode oven-1 engineering` then `tool oven-1 conveyor stop` at once
    flagged the wafers riding the belt."""
    held = judge(tool="oven-1", command="conveyor stop", line=LINE_ID, changes=True,
                 holder=_lock(), mode=ToolMode.ENGINEERING, force=force,
                 working="productive since 2026-12-03 15:00:00Z: reflow BENCH-07")
    if force:
        assert held.refusal is None and held.audit is not None and held.audit[0] == FORCED
        assert "still working (productive since" in held.audit[1]
        assert held.warning is not None and "still working" in held.warning
    else:
        assert held.audit is None and held.refusal is not None and "\n" not in held.refusal
        assert held.refusal.startswith(
            "oven-1 conveyor stop: refused: oven-1 is in engineering but still working "
            "(productive since 2026-12-03 15:00:00Z: reflow BENCH-07) while line bay-7 is run "
            "by a controller")
        assert "a wafer on it finishes first" in held.refusal
        assert held.refusal.endswith("or send it anyway with --force (audited)")
    assert judge(tool="oven-1", command="conveyor stop", line=LINE_ID, changes=False,
                 holder=_lock(), mode=ToolMode.ENGINEERING, force=force,
                 working="productive since 2026-12-03 15:00:00Z").refusal is None


# --- the command line ---------------------------------------------------------------------------


def test_a_read_runs_under_a_live_controller(sim: Path, tmp_path: Path) -> None:
    db = tmp_path / "line.db"
    _run_by_controller(db, _line_id(sim))
    for args in (["oven-1", "status", "--json"], ["oven-1", "profile"],
                 ["printer-1", "wait", "IDLE,DONE,READY,ALARM", "10"]):
        out = _tool(sim, *args, "--db", str(db))
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
    assert _tool_audit(db) == []


def test_a_change_is_refused_under_a_live_controller_and_nothing_is_sent(
    sim: Path, tmp_path: Path,
) -> None:
    db = tmp_path / "line.db"
    _run_by_controller(db, LINE_ID)  # the line file's [line] id, not its path
    assert _nitrogen(sim, True) is True
    staged = _staged_id(sim)
    for args in (["n2", "off"], ["profile", *_profile_args(staged + 1)]):
        out = _tool(sim, "oven-1", *args, "--db", str(db), "--trace", line="bay7.toml")
        assert out.returncode == 1, out
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.stderr  # and no frame traced: no link was opened
        assert lines[0].startswith(f"bumpline: oven-1 {' '.join(args)}: refused: line bay-7 "
                                   f"is run by a controller (host ")
        assert f"pid {os.getpid()} ({SERVE})" in lines[0]
        assert "bumpline tools mode oven-1 engineering --line bay-7 --reason TEXT" in lines[0]
        assert "--force" in lines[0]
        assert out.stdout == ""
    assert _nitrogen(sim) is True
    assert _staged_id(sim) == staged
    assert _tool_audit(db) == []


def test_out_of_production_the_change_is_sent_and_audited(sim: Path, tmp_path: Path) -> None:
    db = tmp_path / "line.db"
    line = _line_id(sim)
    _run_by_controller(db, line)
    with Store(f"sqlite:///{db}", line_id=line) as store:
        store.set_tool_mode("oven-1", "engineering", user="ann", reason="N2 flow check")
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nitrogen off" and out.stderr == ""
    assert _nitrogen(sim) is False
    (entry,) = _tool_audit(db)
    assert (entry.actor, entry.action, entry.line_id) == ("ann", SENT, line)
    assert entry.detail.startswith("oven-1 n2 off: console command to oven-1 in "
                                   f"engineering while line {line} is run by a controller")


def test_out_of_production_but_still_working_the_change_waits_for_the_wafer(
    sim: Path, tmp_path: Path,
) -> None:
    db = tmp_path / "line.db"
    line = _line_id(sim)
    _run_by_controller(db, line)
    with Store(f"sqlite:///{db}", line_id=line) as store:
        store.record_tool_state("oven-1", "productive", reason="reflow LOT1-03")
        store.set_tool_mode("oven-1", "engineering", user="ann", reason="N2 flow check")
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off", "--db", str(db))
    assert out.returncode == 1, out
    assert out.stderr.startswith("bumpline: oven-1 n2 off: refused: oven-1 is in engineering "
                                 "but still working (productive since ")
    assert "reflow LOT1-03" in out.stderr and len(out.stderr.splitlines()) == 1
    assert _nitrogen(sim) is True and _tool_audit(db) == []
    with Store(f"sqlite:///{db}", line_id=line) as store:  # its last wafer is out
        store.record_tool_state("oven-1", "engineering", reason="mode engineering by ann")
    out = _tool(sim, "oven-1", "n2", "off", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert _nitrogen(sim) is False
    assert [e.action for e in _tool_audit(db)] == [SENT]


def test_force_sends_it_audited_with_a_warning(sim: Path, tmp_path: Path) -> None:
    db = tmp_path / "line.db"
    line = _line_id(sim)
    _run_by_controller(db, line)
    staged = _staged_id(sim)
    out = _tool(sim, "oven-1", "profile", *_profile_args(staged + 1), "--db", str(db),
                "--force", "--user", "bob")
    assert out.returncode == 0, out.stderr
    (warning,) = out.stderr.splitlines()
    assert warning.startswith("bumpline: warning: oven-1 profile 150 ")
    assert (f"sending it with --force to a tool in production while line {line} is run by"
            in warning)
    assert _staged_id(sim) == staged + 1
    (entry,) = _tool_audit(db)
    assert (entry.actor, entry.action, entry.line_id) == ("bob", FORCED, line)
    assert f"pid {os.getpid()} ({SERVE})" in entry.detail


def _expired(db: Path, line: str) -> None:
    with Store(f"sqlite:///{db}", now=lambda: utc_now() - timedelta(hours=1)) as store:
        store.acquire_line_lock(line, holder=Holder(SERVE, host="fab-pc-3", pid=4711))


def _gone(db: Path, line: str) -> None:
    started = process_start(os.getpid())
    assert started is not None
    _run_by_controller(db, line, pid=os.getpid(), pid_started=started - 1)


@pytest.mark.parametrize("stale", [_expired, _gone], ids=["lease-expired", "holder-gone"])
def test_a_stale_lease_refuses_nothing(sim: Path, tmp_path: Path, stale: Any) -> None:
    db = tmp_path / "line.db"
    line = _line_id(sim)
    stale(db, line)
    with Store(f"sqlite:///{db}", create=False) as store:
        assert store.line_lock_holder(line) is not None  # there, but nobody runs it
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert _nitrogen(sim) is False
    assert _tool_audit(db) == []


def test_without_a_database_file_it_is_sent_and_none_is_made(sim: Path, tmp_path: Path) -> None:
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off")  # ./bumpline.db, in the sim's folder: none
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert _nitrogen(sim) is False
    assert not (sim / "bumpline.db").exists()

    named = tmp_path / "typo.db"  # given, and missing: said, as it may be a typo
    out = _tool(sim, "oven-1", "n2", "on", BUMPLINE_DB=str(named))
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == (f"bumpline: note: no database at {named}: no controller "
                                  f"holds line {_line_id(sim)} there; not checked")
    assert _nitrogen(sim) is True
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("db", ["garbage", "postgresql+psycopg://nobody@127.0.0.1:9/none"])
def test_a_database_that_cannot_be_read_is_one_line_and_nothing_is_sent(
    sim: Path, tmp_path: Path, db: str,
) -> None:
    if db == "garbage":
        path = tmp_path / "notes.db"
        path.write_text("not a database\n" * 200, encoding="utf-8")
        db = str(path)
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off", "--db", db, "--trace")
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith("bumpline: cannot open database "), line
    assert _nitrogen(sim) is True


def test_an_older_database_is_brought_to_head_and_its_lease_still_refuses(
    sim: Path, tmp_path: Path,
) -> None:
    """A database from before tool modes and the lease's process start (0007, 0009): opened
    as every command opens it (brought to the newest schema), then judged as any."""
    from alembic import command
    from sqlalchemy import inspect

    from controller.db import HEAD_REVISION, alembic_config, stamped

    db = tmp_path / "old.db"
    line = _line_id(sim)
    _run_by_controller(db, line)
    with Store(f"sqlite:///{db}") as store:
        config = alembic_config()
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0006_lot_line")
        assert "tool_modes" not in inspect(store.engine).get_table_names()
    assert _nitrogen(sim, True) is True
    out = _tool(sim, "oven-1", "n2", "off", "--db", str(db))
    assert out.returncode == 1
    assert f"refused: line {line} is run by a controller" in out.stderr
    assert _nitrogen(sim) is True
    with Store(f"sqlite:///{db}", create=False) as store:
        assert stamped(store.engine) == [HEAD_REVISION]

"""Shared test fixtures.

* ``--line-config FILE`` runs the driver conformance tests against the tools a
  line configuration names (real hardware in the loop): ``pytest tests -m conformance
  --line-config FILE``. With it only the conformance tests run (the rest of the
  suite has nothing to say about real tools), and a file that does not load
  stops pytest before any test. Without it, the tests start their own simulated
  tools. Conformance tests are the ones that take the ``line_config_path``
  fixture (marked ``conformance`` here); those marked ``faults`` need the
  simulator's fault injection and are skipped against real tools.
* ``db_url`` runs a test on SQLite and on a throwaway PostgreSQL (``databases.py``).
* An autouse fixture fails any test that leaves asyncio tasks, threads or file
  descriptors (ptys, sockets, serial ports) open behind it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import databases
import pytest
from databases import db_url, pg_cluster, pg_url, sqlite_url  # noqa: F401 - shared fixtures

# Fixture modules every test file may use without importing them.
pytest_plugins = ["serial_fixtures", "modbus_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--line-config",
        action="store",
        default=None,
        metavar="FILE",
        help="run driver conformance tests against the tools in this line configuration",
    )


@pytest.fixture(scope="session")
def line_config_path(request: pytest.FixtureRequest) -> str | None:
    return request.config.getoption("--line-config")


@pytest.fixture
def hardware(line_config_path: str | None) -> bool:
    """True when the tests talk to real tools named by --line-config."""
    return line_config_path is not None


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--line-config")
    if path is None:
        return
    if config.getoption("numprocesses", None):  # pytest-xdist's -n
        raise pytest.UsageError("--line-config: one real tool takes one test at a time; "
                                "run without -n (or with -n 0)")
    from drivers.line_config import LineConfigError, load_line_config

    try:
        line = load_line_config(path)
    except LineConfigError as exc:  # before any test, not as one test's error among passes
        raise pytest.UsageError(f"--line-config: {exc}") from None
    _refuse_a_line_a_controller_runs(line.id or str(Path(path).resolve()))


def _refuse_a_line_a_controller_runs(line: str) -> None:
    """The conformance tests drive the line's tools and change them (README, "Hardware in
    the loop"): not under a controller holding the line's lease in $BUMPLINE_DB (else
    ./bumpline.db), as ``bumpline tool``'s changing commands are not. No database there:
    no controller holds anything in it, nothing to check."""
    from controller.cli.toolguard import look
    from controller.store import StoreError

    try:
        found = look(None, line, "")
    except StoreError as exc:
        raise pytest.UsageError(f"--line-config: cannot check who runs line {line}: "
                                f"{exc}") from None
    if found.store is None:
        return
    with found.store:
        if found.holder is not None:
            raise pytest.UsageError(
                f"--line-config: line {line} is run by a controller "
                f"({found.holder.describe()}): the conformance tests drive its tools and "
                "change them; stop the controller first")


def _dump_stacks_and_tasks(terminal) -> None:  # noqa: ANN001
    """pytest-timeout's thread stacks, then every asyncio task's: a test that hangs on the
    event loop shows only ``select()`` in its threads; its tasks say what each awaits."""
    _thread_stacks(terminal)
    try:
        loop = asyncio.get_running_loop()  # the signal lands in the thread running the loop
    except RuntimeError:
        return
    for task in asyncio.all_tasks(loop):
        terminal.sep("~", title=f"asyncio task {task.get_name()}")
        terminal.line(repr(task))  # what it waits for, and who would wake it
        awaited: object = task.get_coro()
        while awaited is not None:  # down the chain of awaits (get_stack shows the top only)
            frame = next((getattr(awaited, f) for f in ("cr_frame", "gi_frame", "ag_frame")
                          if getattr(awaited, f, None) is not None), None)
            if frame is None:
                terminal.line(f"  awaits {awaited!r}")
                break
            code = frame.f_code
            terminal.line(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = next((getattr(awaited, f) for f in ("cr_await", "gi_yieldfrom", "ag_await")
                            if getattr(awaited, f, None) is not None), None)


try:  # pytest-timeout's dump is a module function its SIGALRM handler calls by name
    import pytest_timeout as _pytest_timeout

    _thread_stacks = _pytest_timeout.dump_stacks
    _pytest_timeout.dump_stacks = _dump_stacks_and_tasks
except (ImportError, AttributeError):  # another version: its own dump only
    pass


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # noqa: ANN001
    line = databases.summary_line(config)
    if line is not None:
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    databases.leave_out_postgres(config, items)
    for item in items:
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.obj):
            item.fixturenames.insert(0, "no_leaked_tasks")
        if "line_config_path" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.conformance)
    if config.getoption("--line-config") is None:
        return
    others = [item for item in items if "conformance" not in item.keywords]
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = [item for item in items if "conformance" in item.keywords]
    skip = pytest.mark.skip(reason="needs simulator fault injection; not run against real tools")
    for item in items:
        if "faults" in item.keywords:
            item.add_marker(skip)


_PORT_KINDS = ("socket:", "/dev/pts", "/dev/ptmx", "/dev/tty")


def _open_ports() -> set[tuple[int, str]]:
    """(fd, target) of every open socket, pty and tty; fd numbers alone get reused."""
    ports = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:  # not Linux: no fd accounting
        return ports
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(_PORT_KINDS):
            ports.add((int(fd), target))
    return ports


# Threads some libraries start once and keep for the life of the process.
_PERSISTENT_THREAD_PREFIXES = ("asyncio_", "ThreadPoolExecutor", "pydevd", "Dummy-")


@pytest.fixture
async def no_leaked_tasks():
    """Added to every async test: fail it if it leaves asyncio tasks running."""
    yield
    await asyncio.sleep(0)  # let tasks that were just cancelled finish
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if tasks:
        for t in tasks:
            t.cancel()
        pytest.fail(f"tasks left running: {tasks}", pytrace=False)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest):
    """Fail a test that leaves threads or ports open."""
    threads_before = set(threading.enumerate())
    ports_before = _open_ports()
    yield
    gc.collect()
    # What survives is frozen, so the next test's collection walks only what that test
    # made: the suite's heap grows to hundreds of MB, and walking all of it after every
    # test cost ~0.3 s a test (the suite took 18 min instead of 10). A controller run
    # unfreezes everything when it ends (LineController.run), and its test walks it again.
    gc.freeze()
    problems: list[str] = []

    deadline_threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before
        and t.is_alive()
        and not t.name.startswith(_PERSISTENT_THREAD_PREFIXES)
    ]
    for t in deadline_threads:
        t.join(timeout=2.0)  # a thread that is already stopping gets a moment to finish
    leaked_threads = [t for t in deadline_threads if t.is_alive()]
    if leaked_threads:
        problems.append(f"threads left running: {[t.name for t in leaked_threads]}")

    leaked = [f"{fd}->{target}" for fd, target in sorted(_open_ports() - ports_before)]
    if leaked:
        problems.append(f"ports/sockets left open: {leaked}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)

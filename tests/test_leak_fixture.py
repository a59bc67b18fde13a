"""The leak checks themselves must be able to fail (run in a separate pytest process)."""

import asyncio
import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# The leak checks of the suite's own conftest, without the fixture modules it plugs in.
CONFTEST = "\n".join(line for line in (Path(__file__).parent / "conftest.py").read_text()
                      .splitlines() if not line.startswith("pytest_plugins ="))
DATABASES = (Path(__file__).parent / "databases.py").read_text()  # the conftest imports it
INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def _run(pytester: pytest.Pytester, test_source: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(databases=DATABASES)
    pytester.makeini(INI)
    pytester.makepyfile(test_source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_leaked_socket_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        "import socket\nKEEP = []\ndef test_leaks():\n    KEEP.append(socket.socket())\n",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ports/sockets left open*"])


def test_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        "import asyncio\nasync def test_leaks():\n"
        "    asyncio.get_running_loop().create_task(asyncio.sleep(3600))\n",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tasks left running*"])


def test_leaked_thread_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        "import threading\nSTOP = threading.Event()\ndef test_leaks():\n"
        "    threading.Thread(target=STOP.wait, args=(5,), name='stray', daemon=True).start()\n",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*threads left running*stray*"])


def test_clean_sync_test_passes() -> None:
    with socket.socket() as s:
        assert s.fileno() >= 0


async def test_clean_async_test_passes() -> None:
    task = asyncio.create_task(asyncio.sleep(0, result=7))
    assert await task == 7

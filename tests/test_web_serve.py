"""``bumpline web`` (read-only, no controller) as a process, and a taken port as one line."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controller.errors import UserError
from controller.store import Store
from controller.web.app import web_server
from tests.web_fixtures import screen

BUMPLINE = [sys.executable, "-m", "controller.cli"]


def test_bumpline_web_serves_read_only_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    Store(db).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen([*BUMPLINE, "web", "--web", f"127.0.0.1:{port}", "--db", db],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=tmp_path)
    try:
        first = web.stdout.readline()  # printed once it listens
        assert "READ-ONLY (no controller runs)" in first, first + web.stdout.read()
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200
        assert 'action="/login"' in page.text and "READ-ONLY" in page.text
    finally:
        web.terminate()
        web.wait(timeout=30)
        web.stdout.close()


async def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        with pytest.raises(UserError, match=r"cannot serve the screen on 127\.0\.0\.1:\d+: "):
            async with web_server(context, url.removeprefix("http://").rstrip("/")):
                pass


async def test_ctrl_c_stays_the_commands_while_the_screen_serves(tmp_path: Path) -> None:
    # serve's first Ctrl-C stops cleanly (its Stopper's handler). uvicorn's own handlers took
    # the signal too (the install_signal_handlers override had gone with uvicorn 0.29): the
    # screen stopped, and the signal was raised again as it ended, a second Ctrl-C, so
    # 'serve --web' left at once.
    loop = asyncio.get_running_loop()
    heard: list[int] = []
    loop.add_signal_handler(signal.SIGINT, heard.append, signal.SIGINT)
    try:
        async with screen(tmp_path) as (_, url), httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 200  # serving (uvicorn started)
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(1.5)  # the screen looks whether to stop once a second
            assert (await client.get(url)).status_code == 200  # still serving
        assert heard == [signal.SIGINT]
    finally:
        loop.remove_signal_handler(signal.SIGINT)

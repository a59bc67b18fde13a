"""A real mosquitto for the feed's tests, on 127.0.0.1 and a free port.

Killed (SIGKILL, like a broker host that dies) and started again on the same
port by the tests. Without mosquitto the tests that need it are skipped with
one line (``.ci/run`` installs Debian's package).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

START_S = 10.0  # wall-second bound on a broker starting (a hang fails, never a pass)


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, binary: str, folder: Path, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate, key) of a TLS listener (``mqtts://``)."""
        self.port = free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self._binary = binary
        self._conf = folder / "mosquitto.conf"
        listener = f"listener {self.port} 127.0.0.1\n"
        if tls is not None:  # as root mosquitto would read them as its own user: stay root
            listener += f"certfile {tls[0]}\nkeyfile {tls[1]}\nuser root\n"
        self._conf.write_text(f"{listener}allow_anonymous true\n"
                              "persistence false\nlog_dest none\n")
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            self._binary, "-c", str(self._conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(self._accepting(), START_S)

    async def _accepting(self) -> None:
        while True:  # the broker says nothing when it listens: try its port
            assert self._process is not None and self._process.returncode is None, \
                "mosquitto exited at start"
            try:  # TLS or not, a TCP connection accepted is a broker listening
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


@contextlib.asynccontextmanager
async def mosquitto(folder: Path, tls: tuple[Path, Path] | None = None
                    ) -> AsyncIterator[Broker]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("no mosquitto here (Debian's package; .ci/run installs it)")
    broker = Broker(binary, folder, tls)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.kill()

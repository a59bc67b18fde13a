"""A real mosquitto for the feed's tests, on 127.0.0.1 and a free port.

Killed (SIGKILL, like a broker host that dies) and started again on the same
port by the tests; a ``Gate`` (a TCP relay the test opens and shuts) lets a test
decide when the feed may reach the broker again; a ``Subscriber`` is the fab's side,
keeping what it receives. Without mosquitto the tests that need it are skipped with
one line (``.ci/run`` installs Debian's package).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
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


class Gate:
    """A TCP relay in front of the broker that a test opens and shuts: the feed talks to
    the broker through it, a subscriber talks to the broker directly. Shut, it refuses
    connections (nothing listens) and cuts the ones it relays; so a test that restarts
    the broker can subscribe first and only then let the feed back in, instead of racing
    the feed's reconnection."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                      reuse_address=True)

    async def shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        relays, self._relays = self._relays, set()
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        writers = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker.port)
            writers.append(up_writer)
            pipes = [asyncio.create_task(_pipe(reader, up_writer)),
                     asyncio.create_task(_pipe(up_reader, writer))]
            try:  # either side ending (the broker killed, the client gone) ends both
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass  # the broker is not there: the client sees its connection closed
        finally:
            self._relays.discard(task)
            for w in writers:
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def gate(broker: Broker) -> AsyncIterator[Gate]:
    """A gate to ``broker``, open; shut (its relays ended) on the way out."""
    relay = Gate(broker)
    await relay.open()
    try:
        yield relay
    finally:
        await relay.shut()


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


@dataclass(frozen=True)
class Got:
    topic: str  # below the subscriber's ``root``, if it has one
    payload: dict[str, Any] | None  # None: a retained topic deleted
    retain: bool
    qos: int


class Subscriber:
    """A QoS 1 client on ``bumpline/#`` keeping what it receives, in order. ``root``: a topic
    prefix left out of ``Got.topic``; ``wait_s``: the wall-second bound on ``until`` (a hang
    fails, never a pass)."""

    def __init__(self, broker: Broker, *, root: str = "", wait_s: float = 30.0) -> None:
        self.got: list[Got] = []
        self._client = aiomqtt.Client("127.0.0.1", broker.port)
        self._prefix = f"{root}/" if root else ""
        self._wait_s = wait_s
        self._waiters: list[tuple[Callable[[Got], bool], asyncio.Future[Got]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Any:  # the subclass's own type
        await self._client.__aenter__()
        await self._client.subscribe("bumpline/#", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker was killed
            async for message in self._client.messages:
                raw = bytes(message.payload) if message.payload else b""  # type: ignore[arg-type]
                topic = str(message.topic).removeprefix(self._prefix)
                got = Got(topic, json.loads(raw) if raw else None, bool(message.retain),
                          message.qos)
                self.got.append(got)
                for predicate, future in list(self._waiters):
                    if not future.done() and predicate(got):
                        future.set_result(got)
                        self._waiters.remove((predicate, future))

    async def until(self, predicate: Callable[[Got], bool]) -> Got:
        """The first message so far or from now on that matches."""
        for got in self.got:
            if predicate(got):
                return got
        future: asyncio.Future[Got] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return await asyncio.wait_for(future, self._wait_s)

    async def settled(self) -> list[Got]:
        """What came before a marker this client publishes now: every retained message
        the broker delivers on subscribing comes before it (the marker itself left out)."""
        marker = f"bumpline-test/marker/{len(self.got)}"
        await self._client.subscribe(marker, qos=1)
        await self._client.publish(marker, b"{}", qos=1)
        await self.until(lambda g: g.topic == marker)
        return [g for g in self.got if not g.topic.startswith("bumpline-test/")]

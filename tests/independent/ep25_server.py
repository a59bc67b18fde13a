"""The independent EP-25 on TCP, as barrier-plater.md says: one host connection (a second
is answered ``ERR 09 BUSY LINK`` and closed), a reply line per host line, events pushed
between replies as they happen. asyncio; the tool (``tests/independent/ep25.py``) lives on
between requests, tool time being wall time x ``speed``.

Where the spec leaves the wire open, the strict choice: what the tool writes is split in
two pieces at an arbitrary byte (a line may arrive in parts); the events a command causes
come before its reply and after it, by turns (``event_order``); a command's line faults
(``LinkFaults``) lose its reply (executed) or the line itself (never whole: not
executed), or hang up right after an event is pushed.

Run it alone (``python -m tests.independent.ep25_server --speed 600``): it prints one JSON
line with the port, then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.independent.ep25 import Plater

MAX_LINE = 512
TICK_S = 0.01  # wall seconds between the tool's turns when nobody asks


@dataclass
class LinkFaults:
    """A test's faults on the wire, counted per command word (``START``, ``RESULT?``)."""

    lose_reply: dict[str, int] = field(default_factory=dict)  # executed, the reply lost
    lose_line: dict[str, int] = field(default_factory=dict)  # never received whole
    hang_up_after: list[str] = field(default_factory=list)  # an event's text, e.g. "STEP NI_PLATE"

    @staticmethod
    def take(plan: dict[str, int], word: str) -> bool:
        if plan.get(word, 0) > 0:
            plan[word] -= 1
            return True
        return False


@dataclass
class Host:
    writer: asyncio.StreamWriter
    pushed: int  # the last event number written to this host
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def write(self, lines: list[str]) -> None:
        if self.closed or not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("ascii")
        cut = max(1, len(data) // 2 - 3)
        async with self.lock:  # events never land inside a reply
            for piece in (data[:cut], data[cut:]):
                if self.closed:
                    return
                self.writer.write(piece)
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    def hang_up(self) -> None:
        self.closed = True
        self.writer.transport.abort()


@dataclass
class ServedPlater:
    tool: Plater
    speed: float
    event_order: str = "alternate"  # "before" | "after" | "alternate" the reply
    faults: LinkFaults = field(default_factory=LinkFaults)
    port: int = 0
    host: Host | None = None
    connections: int = 0
    busy_refused: int = 0
    hang_ups: int = 0
    # every host line and what the tool wrote for it ("(lost)" for lost lines or replies)
    lines: list[tuple[str, list[str]]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    done_s: float = 0.0
    # set once the tool has powered up again after a power loss (a test waits on it)
    power_back: asyncio.Event = field(default_factory=asyncio.Event)
    _turn: int = 0

    def catch_up(self) -> list[str]:
        """The tool moved up to the current tool time: the events it pushes meanwhile."""
        target = (time.monotonic() - self.started) * self.speed
        if target > self.done_s:
            self.tool.advance(target - self.done_s)
            self.done_s = target
        if self.host is not None and not self.tool.powered:
            self._drop_host()  # the power went: so did the connection
        if self.tool.power_cuts and self.tool.powered:
            self.power_back.set()
        return self._new_events()

    def _new_events(self) -> list[str]:
        host = self.host
        if host is None:
            return []
        fresh = [(seq, text) for seq, text in self.tool.events if seq > host.pushed]
        host.pushed = self.tool.seq
        return [f"!{seq} {text}" for seq, text in fresh]

    def _drop_host(self) -> None:
        if self.host is not None:
            self.host.hang_up()
            self.host = None

    async def push(self, events: list[str]) -> None:
        host = self.host
        if host is None or not events:
            return
        await host.write(events)
        self._hang_up_after(events)

    def _hang_up_after(self, written: list[str]) -> None:
        for wanted in list(self.faults.hang_up_after):
            if any(line.split(" ", 1)[1].startswith(wanted) for line in written
                   if line.startswith("!")):
                self.faults.hang_up_after.remove(wanted)
                self.hang_ups += 1
                self._drop_host()
                return

    async def line(self, host: Host, raw: bytes) -> None:
        await self.push(self.catch_up())  # live events first: they happened before
        if host.closed:
            return
        text = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            line = text.decode("ascii") if len(raw) <= MAX_LINE else ""
        except UnicodeDecodeError:
            line = ""
        word = line.split(" ", 1)[0]
        if LinkFaults.take(self.faults.lose_line, word):
            self.lines.append((line, ["(line lost)"]))
            return
        out = self.tool.handle(line) if line else ["ERR 01 SYNTAX"]
        caused = self._new_events()
        if LinkFaults.take(self.faults.lose_reply, word):
            self.lines.append((line, [*out[:-1], "(reply lost)"]))
            out = out[:-1]  # a replay's lines were written; the OK never came
        else:
            self.lines.append((line, out))
        if caused:
            self._turn += 1
        before = self.event_order == "before" or (
            self.event_order == "alternate" and self._turn % 2 == 1)
        await host.write([*caused, *out] if before else [*out, *caused])
        self._hang_up_after(caused)

    async def serve_host(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self.catch_up()
        if not self.tool.powered:
            writer.close()
            return
        if self.host is not None:
            self.busy_refused += 1
            writer.write(b"ERR 09 BUSY LINK\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        host = self.host = Host(writer, pushed=self.tool.seq)
        self.connections += 1
        buffer = b""
        overlong = False
        try:
            while not host.closed and (data := await reader.read(4096)):
                buffer += data
                while b"\n" in buffer and not host.closed:
                    raw, buffer = buffer.split(b"\n", 1)
                    if overlong:  # the tail of a line past 512 bytes: already refused
                        overlong = False
                        continue
                    await self.line(host, raw)
                if len(buffer) > MAX_LINE and not overlong:
                    overlong = True
                    buffer = b""
                    await host.write(["ERR 01 SYNTAX"])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.host is host:
                self.host = None
            host.closed = True
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve(speed: float, *, tool: Plater | None = None, host: str = "127.0.0.1",
                port: int = 0, event_order: str = "alternate",
                faults: LinkFaults | None = None) -> AsyncIterator[ServedPlater]:
    served = ServedPlater(tool or Plater(), speed, event_order, faults or LinkFaults())
    handlers: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await served.serve_host(reader, writer)
        finally:
            handlers.discard(task)

    async def tick() -> None:  # the tool lives on and pushes its events between requests
        while True:
            await asyncio.sleep(TICK_S)
            await served.push(served.catch_up())

    server = await asyncio.start_server(on_connect, host, port)
    served.port = server.sockets[0].getsockname()[1]
    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield served
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        server.close()
        served._drop_host()  # each handler then ends by itself (never cancelled)
        if handlers:
            await asyncio.wait(list(handlers), timeout=5)
        await server.wait_closed()


def line_table(served: ServedPlater, host: str = "127.0.0.1") -> str:
    """The [tools.plater-1] table of a line configuration that reaches this plater."""
    return (f'[tools.plater-1]\nrole = "plater"\ntransport = "text-tcp"\nhost = "{host}"\n'
            f"port = {served.port}\n")


async def _main(args: argparse.Namespace) -> str:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tool = Plater(mto=args.mto, faults=args.fault, done_at=args.done_at,
                  warning_in_alarm=args.warning_in_alarm)
    async with serve(args.speed, tool=tool, port=args.port,
                     event_order=args.event_order) as served:
        print(json.dumps({"plater_port": served.port}), flush=True)
        await stop.wait()
    lines = ["# plater", *tool.log, "# link"]
    lines += [f"{line} -> {' | '.join(out)}" for line, out in served.lines]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mto", type=float, default=0.0, help="the nickel bath's age at start")
    parser.add_argument("--done-at", choices=("clear", "alarm"), default="clear",
                        help="when a batch an alarm ended pushes its DONE")
    parser.add_argument("--warning-in-alarm", action="store_true",
                        help="ALARM? names the 741 warning (from 5.5 MTO) while no alarm is "
                        "latched")
    parser.add_argument("--event-order", choices=("before", "after", "alternate"),
                        default="alternate", help="a command's events against its reply")
    parser.add_argument("--fault", action="append", default=[],
                        help="WHAT@WHEN[+DELAY][/DURATION] (tests/independent/faults.py), WHAT "
                        "one of 400 700 710 730 900 power: e.g. 700@plate+60/900")
    parser.add_argument("--log", help="write the tool's log and the link's lines here on exit")
    args = parser.parse_args()
    log = asyncio.run(_main(args))
    if args.log:
        with open(args.log, "w", encoding="utf-8") as out:
            out.write(log)


if __name__ == "__main__":
    main()

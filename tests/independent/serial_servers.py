"""The independent WP-300 and WBM-300 on raw TCP, as a serial device server in raw mode
carries a HostLink/1 line: one client at a time (a second is closed at once), each
reply paced at 115200 baud 8N1 after a turnaround and written in two pieces. The tool
(and its retransmission memory) outlives a client's connection.

Run it alone (``python -m tests.independent.serial_servers --speed 300``): it prints one
JSON line with the ports, then serves until killed. Tool time is wall time x ``speed``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.independent.hostlink import Link
from tests.independent.hostlink_tool import HostLinkTool
from tests.independent.wbm300 import Mounter
from tests.independent.wp300 import Printer

BAUD = 115200
CHAR_S = 10 / BAUD  # 8N1
TURNAROUND_S = 0.004


@dataclass
class SerialTool:
    tool: HostLinkTool
    speed: float
    link: Link = field(init=False)
    port: int = 0
    started: float = field(default_factory=time.monotonic)
    done_s: float = 0.0
    clients: int = 0
    refused_clients: int = 0
    # A test's line faults: CMD -> how many of its next replies are lost / garbled.
    lose: dict[str, int] = field(default_factory=dict)
    garble: dict[str, int] = field(default_factory=dict)
    lost: list[bytes] = field(default_factory=list)
    # (opens, closes) tool s: the door opened then, as a person would (hostlink_tool's
    # open_door: 400 if something moves, else motion NAK 06 until it closes).
    doors: list[tuple[float, float]] = field(default_factory=list)

    def fault(self, reply: bytes) -> bytes | None:
        cmd = reply[8:11].decode()
        if self.lose.get(cmd, 0) > 0:
            self.lose[cmd] -= 1
            self.lost.append(reply)
            return None
        if self.garble.get(cmd, 0) > 0:
            self.garble[cmd] -= 1
            self.lost.append(reply)
            return reply[:-4] + (b"00" if reply[-4:-2] != b"00" else b"FF") + b"\r\n"
        return reply

    def __post_init__(self) -> None:
        self.link = Link(self.handle)

    def handle(self, cmd: str, args: list[str]) -> list[str]:
        target = (time.monotonic() - self.started) * self.speed
        for opens, closes in self.doors:
            if self.done_s < opens <= target:
                self.tool.advance(opens - self.done_s)
                self.done_s = opens
                self.tool.open_door(closes - opens)
                self.tool.log.append(f"door open until {closes:g}")
        if target > self.done_s:
            self.tool.advance(target - self.done_s)
            self.done_s = target
        return self.tool.handle(cmd, args)


async def _conn(served: SerialTool, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter, pace: bool) -> None:
    try:
        while data := await reader.read(4096):
            for sent in served.link.feed(data):
                reply = served.fault(sent)
                if reply is None:
                    continue
                if pace:
                    await asyncio.sleep(TURNAROUND_S + len(reply) * CHAR_S / 2)
                half = len(reply) // 2
                writer.write(reply[:half])
                await writer.drain()
                if pace:
                    await asyncio.sleep(len(reply) * CHAR_S / 2)
                writer.write(reply[half:])
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class Served:
    printer: SerialTool
    mounter: SerialTool


@contextlib.asynccontextmanager
async def serve(speed: float, *, host: str = "127.0.0.1", printer_port: int = 0,
                mounter_port: int = 0, pace: bool = True,
                printer: Printer | None = None, mounter: Mounter | None = None):
    served = Served(SerialTool(printer or Printer(), speed),
                    SerialTool(mounter or Mounter(), speed))
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def on_line(tool: SerialTool
                ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if tool.clients:  # one serial line: one client
                tool.refused_clients += 1
                writer.close()
                return
            task = asyncio.current_task()
            assert task is not None
            handlers[task] = writer
            tool.clients += 1
            try:
                await _conn(tool, reader, writer, pace)
            finally:
                tool.clients -= 1
                handlers.pop(task, None)
        return run

    servers = []
    for tool, port in ((served.printer, printer_port), (served.mounter, mounter_port)):
        server = await asyncio.start_server(on_line(tool), host, port)
        tool.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    try:
        yield served
    finally:
        for server in servers:
            server.close()
        for writer in list(handlers.values()):
            writer.transport.abort()
        if handlers:
            await asyncio.wait(list(handlers), timeout=5)
        for server in servers:
            await server.wait_closed()


def line_tables(served: Served, host: str = "127.0.0.1") -> str:
    """The [tools.*] tables of a line configuration that reach these tools."""
    return (
        f'[tools.printer-1]\nrole = "printer"\ntransport = "serial"\n'
        f'port = "socket://{host}:{served.printer.port}"\n\n'
        f'[tools.placer-1]\nrole = "placer"\ntransport = "serial"\n'
        f'port = "socket://{host}:{served.mounter.port}"\n'
    )


def _window(text: str) -> tuple[float, float]:
    opens, closes = (float(t) for t in text.split("-"))
    return opens, closes


def _plan(items: list[str]) -> dict[int, int]:
    plan = {}
    for text in items:
        code, n = text.split("@")
        plan[int(n)] = int(code)
    return plan


async def _main(args: argparse.Namespace) -> str:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    printer = Printer(alarm_at_wafer=_plan(args.printer_alarm), paste_pct=args.paste_pct)
    mounter = Mounter(alarm_at_wafer=_plan(args.mounter_alarm), balls=args.balls,
                      flux_pct=args.flux_pct)
    async with serve(args.speed, printer_port=args.printer_port,
                     mounter_port=args.mounter_port, pace=not args.no_pace,
                     printer=printer, mounter=mounter) as served:
        served.printer.doors = [_window(w) for w in args.printer_door]
        served.mounter.doors = [_window(w) for w in args.mounter_door]
        print(json.dumps({"printer_port": served.printer.port,
                          "mounter_port": served.mounter.port}), flush=True)
        await stop.wait()
    lines = ["# printer", *printer.log, "# mounter", *mounter.log, "# link"]
    for tool in (served.printer, served.mounter):
        lines += [f"{body.decode()} -> {reply.decode().strip()}" for body, reply in tool.link.log]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=300.0)
    parser.add_argument("--printer-port", type=int, default=0)
    parser.add_argument("--mounter-port", type=int, default=0)
    parser.add_argument("--paste-pct", type=float, default=87.5)
    parser.add_argument("--balls", type=int, default=3_200_000)
    parser.add_argument("--flux-pct", type=float, default=71.5)
    parser.add_argument("--no-pace", action="store_true", help="answer at once, in one piece")
    parser.add_argument("--printer-alarm", action="append", default=[],
                        help="CODE@N: latch CODE half way through the N-th wafer's print")
    parser.add_argument("--mounter-alarm", action="append", default=[],
                        help="CODE@N: latch CODE half way through the N-th wafer's placing")
    parser.add_argument("--printer-door", action="append", default=[], metavar="T-U",
                        help="open the printer's door at tool time T, close it at U")
    parser.add_argument("--mounter-door", action="append", default=[], metavar="T-U",
                        help="open the mounter's door at tool time T, close it at U")
    parser.add_argument("--log", help="write the tools' event and link logs here on exit")
    args = parser.parse_args()
    log = asyncio.run(_main(args))
    if args.log:
        with open(args.log, "w", encoding="utf-8") as out:
            out.write(log)


if __name__ == "__main__":
    main()

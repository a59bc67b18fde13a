"""The independent tools on sockets: the RF-10N on Modbus TCP, the FC-1 (or the FC-2,
``--cleaner-model FC-2``) as Modbus RTU frames over raw TCP (a serial device server in
raw mode). asyncio, no pymodbus.

Run it alone (``python -m tests.independent.servers --speed 200``): it prints one JSON
line with the ports, then serves until killed. Tool time is wall time x ``speed``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from tests.independent.fc1 import DONE, LOADED, Cleaner
from tests.independent.fc2 import Stripper
from tests.independent.modbus_codec import (
    check_rtu,
    handle_pdu,
    mbap,
    rtu,
    rtu_request_length,
    split_mbap,
)
from tests.independent.rf10n import Oven

OVEN_UNIT = 1
CLEANER_UNIT = 2
RTU_BAUD = 19200
RTU_CHAR_S = 11 / RTU_BAUD  # 8E1: start + 8 data + parity + stop


@dataclass
class ToolClock:
    """Moves a pure tool model up to the current tool time before each request."""

    tool: Oven | Cleaner
    speed: float
    now: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    done_s: float = 0.0
    after: Callable[[], None] | None = None  # called after each catch-up

    def __post_init__(self) -> None:
        self.started = self.now()

    def catch_up(self) -> None:
        target = (self.now() - self.started) * self.speed
        if target > self.done_s:
            self.tool.advance(target - self.done_s)
            self.done_s = target
        if self.after is not None:
            self.after()


@dataclass
class Slow:
    """Each reply held back a random ``low``..``high`` wall seconds (a slow tool or
    gateway): the tool has done the request when it arrives, the host hears later."""

    low: float = 0.0
    high: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(19))

    async def wait(self) -> None:
        if self.high > 0:
            await asyncio.sleep(self.rng.uniform(self.low, self.high))


@dataclass
class Served:
    oven: Oven
    cleaner: Cleaner
    oven_port: int
    cleaner_port: int
    requests: list[tuple[str, bytes, bytes]] = field(default_factory=list)


async def _oven_conn(clock: ToolClock, served: Served, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, slow: Slow) -> None:
    buffer = bytearray()
    try:
        while data := await reader.read(4096):
            buffer += data
            while (adu := split_mbap(buffer)) is not None:
                transaction, protocol, unit, pdu = adu
                if protocol != 0 or unit != OVEN_UNIT or not pdu:
                    continue  # not ours: a strict unit stays silent
                clock.catch_up()
                reply = handle_pdu(clock.tool, pdu)
                served.requests.append(("oven", pdu, reply))
                if clock.after is not None:
                    clock.after()
                await slow.wait()
                writer.write(mbap(transaction, unit, reply))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _cleaner_conn(clock: ToolClock, served: Served, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, pace: bool, slow: Slow) -> None:
    buffer = bytearray()
    try:
        while data := await reader.read(4096):
            buffer += data
            while buffer:
                length = rtu_request_length(bytes(buffer))
                if length is None:
                    break
                if length < 0 or length > 256:
                    length = len(buffer)  # unknown function: one burst is one frame
                if len(buffer) < length:
                    break
                frame = bytes(buffer[:length])
                del buffer[:length]
                parsed = check_rtu(frame)
                if parsed is None:
                    buffer.clear()  # a damaged frame: resynchronise on the next burst
                    break
                unit, pdu = parsed
                if unit not in (CLEANER_UNIT, 0):
                    continue
                clock.catch_up()
                reply = handle_pdu(clock.tool, pdu)
                served.requests.append(("cleaner", pdu, reply))
                if clock.after is not None:
                    clock.after()
                if unit == 0:
                    continue  # broadcast: done, never answered
                out = rtu(CLEANER_UNIT, reply)
                await slow.wait()
                if pace:  # the serial line's time: request, turnaround, reply
                    await asyncio.sleep((len(frame) + 3.5 + len(out)) * RTU_CHAR_S)
                writer.write(out)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve(speed: float, *, host: str = "127.0.0.1", oven_port: int = 0,
                cleaner_port: int = 0, count_exit: bool = True, pace_rtu: bool = True,
                cleaner_bath_c: float | None = None, cleaner_alarms: dict[int, int] | None = None,
                interrupted_to: int = DONE, oven_faults: list[str] | None = None,
                cleaner_faults: list[str] | None = None, events_to: str | None = None,
                cleaner: Cleaner | None = None, tick_s: float = 0.0, pending: str = "busy",
                slow_s: tuple[float, float] = (0.0, 0.0), oven: Oven | None = None):
    """``oven_faults``, ``cleaner_faults``: plans of tests/independent/faults.py.
    ``events_to``: a file the tools' logs are appended to as they happen. ``cleaner``: a
    cleaner model built by the caller (an FC-2) instead of the FC-1 the options build;
    ``oven`` likewise. ``tick_s``: both tools carry each COMMAND out at their next tick
    (tests/independent/late.py; ``pending``: a second command meanwhile ``"busy"`` (06) or
    ``"queue"``). ``slow_s``: (low, high) wall seconds each reply is held back."""
    if oven is None:
        oven = Oven(count_exit=count_exit, faults=oven_faults)
    if cleaner is None:
        cleaner = Cleaner(bath_c=25.0 if cleaner_bath_c is None else cleaner_bath_c,
                          alarm_at_wafer=cleaner_alarms, interrupted_to=interrupted_to,
                          faults=cleaner_faults)
    if tick_s:
        oven.late_commands(tick_s, pending)
        cleaner.late_commands(tick_s, pending)
    slow = Slow(*slow_s)
    served = Served(oven, cleaner, 0, 0)
    written = {"oven": 0, "cleaner": 0}
    out = _append_to(events_to) if events_to else None

    def flush_events() -> None:
        if out is None:
            return
        for name, tool in (("oven", oven), ("cleaner", cleaner)):
            for line in tool.log[written[name]:]:
                out.write(f"{name} {tool.now:.1f} {line}\n")
            written[name] = len(tool.log)
        out.flush()

    oven_clock = ToolClock(oven, speed, after=flush_events)
    cleaner_clock = ToolClock(cleaner, speed, after=flush_events)
    cleaner_conns = 0

    async def cleaner_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A serial device server in raw mode has one serial line: one client at a time.
        nonlocal cleaner_conns
        if cleaner_conns:
            writer.close()
            return
        cleaner_conns += 1
        try:
            await _cleaner_conn(cleaner_clock, served, reader, writer, pace_rtu, slow)
        finally:
            cleaner_conns -= 1

    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def tracked(handler: Callable[..., Awaitable[None]]
                ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers[task] = writer
            try:
                await handler(reader, writer)
            finally:
                handlers.pop(task, None)
        return run

    oven_server = await asyncio.start_server(
        tracked(lambda r, w: _oven_conn(oven_clock, served, r, w, slow)), host, oven_port)
    cleaner_server = await asyncio.start_server(tracked(cleaner_conn), host, cleaner_port)
    served.oven_port = oven_server.sockets[0].getsockname()[1]
    served.cleaner_port = cleaner_server.sockets[0].getsockname()[1]

    async def tick() -> None:  # the tools live on between requests (events_to only)
        while True:
            await asyncio.sleep(0.1)
            oven_clock.catch_up()
            cleaner_clock.catch_up()

    ticker = asyncio.get_running_loop().create_task(tick()) if out is not None else None
    try:
        yield served
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        oven_server.close()
        cleaner_server.close()
        # Hang up on every client so each handler ends by itself (never cancelled).
        for writer in list(handlers.values()):
            writer.transport.abort()
        if handlers:
            await asyncio.wait(list(handlers), timeout=5)
        await oven_server.wait_closed()
        await cleaner_server.wait_closed()
        flush_events()
        if out is not None:
            out.close()


def _append_to(path: str) -> TextIO:
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed when serve ends


def line_tables(served: Served, host: str = "127.0.0.1") -> str:
    """The [tools.*] tables of a line configuration that reach these tools."""
    return (
        f'[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\nhost = "{host}"\n'
        f"port = {served.oven_port}\nunit = {OVEN_UNIT}\n\n" + cleaner_table(served, host)
    )


def cleaner_table(served: Served, host: str = "127.0.0.1") -> str:
    """The [tools.cleaner-1] table alone (the oven left to our simulator)."""
    return (
        f'[tools.cleaner-1]\nrole = "cleaner"\nmodel = "{served.cleaner.model}"\n'
        f'transport = "modbus-rtu"\nport = "socket://{host}:{served.cleaner_port}"\n'
        f"unit = {CLEANER_UNIT}\n"
    )


async def _main(args: argparse.Namespace) -> str:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    interrupted_to = LOADED if args.interrupted == "loaded" else DONE
    alarms = dict(_alarm(a) for a in args.cleaner_alarm)
    cleaner = (Stripper(alarm_at_wafer=alarms, interrupted_to=interrupted_to,
                        faults=args.cleaner_fault) if args.cleaner_model == "FC-2" else None)
    async with serve(args.speed, oven_port=args.oven_port, cleaner_port=args.cleaner_port,
                     count_exit=args.oven_belt_count == "exit",
                     pace_rtu=not args.no_pace,
                     cleaner_alarms=alarms, interrupted_to=interrupted_to,
                     oven_faults=args.oven_fault, cleaner_faults=args.cleaner_fault,
                     events_to=args.events, cleaner=cleaner, tick_s=args.tick,
                     pending=args.pending, slow_s=(args.slow_ms[0] / 1000,
                                                   args.slow_ms[1] / 1000)) as served:
        print(json.dumps({"oven_port": served.oven_port,
                          "cleaner_port": served.cleaner_port}), flush=True)
        await stop.wait()
        return "\n".join(["# oven", *served.oven.log, "# cleaner", *served.cleaner.log]) + "\n"


def _alarm(text: str) -> tuple[int, int]:
    code, n = text.split("@")
    return int(n), int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=200.0)
    parser.add_argument("--oven-port", type=int, default=0)
    parser.add_argument("--cleaner-port", type=int, default=0)
    parser.add_argument("--oven-belt-count", choices=("exit", "tunnel"), default="exit")
    parser.add_argument("--cleaner-model", choices=("FC-1", "FC-2"), default="FC-1")
    parser.add_argument("--no-pace", action="store_true", help="answer RTU at once")
    parser.add_argument("--cleaner-alarm", action="append", default=[],
                        help="CODE@N: latch CODE half way through the N-th wafer's wash")
    parser.add_argument("--interrupted", choices=("done", "loaded"), default="done",
                        help="where CLEAR leaves a wafer whose cycle an alarm ended")
    parser.add_argument("--oven-fault", action="append", default=[],
                        help="WHAT@WHEN[+DELAY][/DURATION] (tests/independent/faults.py), "
                        "WHAT one of 510[:zN] 520 540 550 560 900: e.g. 520@load2+120/60")
    parser.add_argument("--cleaner-fault", action="append", default=[],
                        help="door|di|chem@WHEN[+DELAY][/DURATION]: e.g. door@start1+30/20; "
                        "an FC-2 also stripper|tank, and the event strip: tank@strip1+30/300")
    parser.add_argument("--tick", type=float, default=0.0,
                        help="carry each COMMAND out at the tool's next tick, this many tool "
                        "s apart (the reply at once): tests/independent/late.py")
    parser.add_argument("--pending", choices=("busy", "queue"), default="busy",
                        help="a second command while one waits for the tick: 06, or queued")
    parser.add_argument("--slow-ms", type=float, nargs=2, default=(0.0, 0.0),
                        metavar=("LOW", "HIGH"), help="hold each reply back LOW..HIGH wall ms")
    parser.add_argument("--events", help="append the tools' events here as they happen")
    parser.add_argument("--log", help="write the tools' event logs here on exit")
    args = parser.parse_args()
    log = asyncio.run(_main(args))
    if args.log:
        with open(args.log, "w", encoding="utf-8") as out:
            out.write(log)


if __name__ == "__main__":
    main()

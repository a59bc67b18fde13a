"""A TCP relay that adds a fixed delay each way: a plant network between a line PC and the
fab's PostgreSQL server, on one machine.

On localhost a round trip to PostgreSQL costs about 0.05 ms, on a plant network
0.3-1 ms; what a hot transaction's round trips cost there cannot be seen on
localhost. The relay runs in a process of its own (its work is not the
controller's CPU) and forwards each chunk after ``rtt_ms / 2``, keeping each
direction's order; it is a model of latency, not of bandwidth or loss. asyncio's
timers wake at millisecond resolution (epoll), so each direction waits at least
about 1 ms whatever ``rtt_ms`` asks: on this machine a round trip through it
took about 3 ms with ``--rtt-ms 0.5``. Compare runs through the same relay, and
read the figure as that network's, not the nominal one.

    .venv/bin/python benchmarks/netdelay.py --rtt-ms 0.5 --to 127.0.0.1:5432 [--port N]

prints ``listening 127.0.0.1:PORT`` once it accepts. ``bench_db.py --rtt-ms`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay_s, chunk))
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError):
        await sender


async def _relay(port: int, host: str, to_port: int, delay_s: float) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, to_port)
        await asyncio.gather(_pump(reader, up_writer, delay_s),
                             _pump(up_reader, writer, delay_s))

    server = await asyncio.start_server(client, "127.0.0.1", port)
    print(f"listening 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def relay(rtt_ms: float, host: str, port: int) -> Iterator[int]:
    """A relay process to ``host:port`` adding ``rtt_ms`` per round trip; its port."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--rtt-ms", str(rtt_ms), "--to", f"{host}:{port}"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise SystemExit(f"netdelay: the relay did not start ({line.strip()!r})")
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, required=True)
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    asyncio.run(_relay(args.port, host, int(port), args.rtt_ms / 2000))


if __name__ == "__main__":
    main()

"""What the Modbus link needs that is not pymodbus: the in-memory wire of
``ModbusLink.in_memory``, the checks of register spans and words made before
anything is sent, a serial device server's address, and the loop turns a closed
socket needs to be released.

Kept apart from ``drivers/modbus_link.py`` (the only driver module that imports
pymodbus) so that module holds the request policy and little else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

Exchange = Callable[[bytes], bytes | None]  # request ADU -> reply ADU (None: no reply)
CLOSE_SPINS = 100  # loop turns allowed for a closed socket to be released


class MemoryTransport(asyncio.Transport):
    """The wire of ``ModbusLink.in_memory``: what the client writes goes to ``exchange``;
    its answer arrives on the next loop turn, as bytes from a socket would."""

    def __init__(self, protocol: Any, exchange: Exchange) -> None:
        super().__init__()
        self._protocol = protocol
        self._exchange = exchange
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        reply = self._exchange(bytes(data))
        if reply:
            asyncio.get_running_loop().call_soon(self._deliver, reply)

    def _deliver(self, reply: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(reply)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def socket_address(url: str, tool: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"{tool}: bad serial device server URL {url!r}: expected socket://HOST:PORT")
    return parts.hostname, port


def is_pty(path: str) -> bool:
    return os.path.realpath(path).startswith("/dev/pts/")


def check_span(tool: str, what: str, address: int, count: int) -> None:
    if not 0 <= address <= 0xFFFF or count < 1 or address + count > 0x10000:
        raise ValueError(
            f"{tool}: {what}: bad register span {address} (+{count}); addresses are 0-65535"
        )


def check_words(tool: str, what: str, values: Sequence[int]) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
            raise ValueError(f"{tool}: {what}: {v!r} is not a 16-bit register word (0-65535)")


async def released(transport: Any) -> None:
    """Give the event loop the turns it needs to really close a socket transport."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is None:  # serial transports close synchronously
        return
    for _ in range(CLOSE_SPINS):
        if sock.fileno() == -1:
            return
        await asyncio.sleep(0)

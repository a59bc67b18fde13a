"""An independent factory host, driven line by line from a test.

Runs in its own virtualenv (``.venv-gemhost``, ``make gemhost``) on
``secsgem-driver`` (PyPI, import name ``secsgem``): its HSMS and SECS-II code,
not bumpline's. It imports nothing from bumpline. The test writes one JSON
command per line on stdin and reads one JSON answer per line on stdout:

    {"op": "connect", "port": 5000}            -> {"ok": true}
    {"op": "request", "s": 1, "f": 1, "body": ITEM or null}
                                               -> {"s": 1, "f": 2, "body": VALUE}
    {"op": "received", "s": 6, "f": 11, "count": 3, "timeout": 15, "all": false}
                                               -> {"bodies": [VALUE, ...]} (waits; the
                                                  first count, or all received so far)
    {"op": "disconnect"}                       -> {"ok": true} (received kept until
                                                  the next connect)
    {"op": "quit"}

ITEM is ``[FORMAT, value]`` with FORMAT one of L, A, B, BOOLEAN, U1, U2, U4, I4, F4
(L's value a list of ITEMs, B's a list of byte values); VALUE is what the
library decodes (lists, text, numbers; binary as a list of byte values).
The host answers the equipment's primaries as a host does: S1F13 with COMMACK 0,
S5F1/S6F11/S10F1 with ack 0, S1F1 with an empty list.
"""

import asyncio
import json
import sys

from secsgem.hsms import HSMSConnection
from secsgem.secs2 import FormatCode, Secs2Item, decode, encode

FORMATS = {"L": FormatCode.LIST, "A": FormatCode.ASCII, "B": FormatCode.BINARY,
           "BOOLEAN": FormatCode.BOOLEAN, "U1": FormatCode.U1, "U2": FormatCode.U2,
           "U4": FormatCode.U4, "I4": FormatCode.I4, "F4": FormatCode.F4}
REPLIES = {(1, 13): [b"\x00", []], (1, 1): [], (5, 1): b"\x00", (6, 1): b"\x00",
           (6, 11): b"\x00", (10, 1): b"\x00"}
WAIT_S = 15.0


def item(spec):
    fmt, value = spec
    if fmt == "L":
        return Secs2Item([item(child) for child in value], FormatCode.LIST)
    if fmt == "B":
        return Secs2Item(bytes(value), FormatCode.BINARY)
    return Secs2Item(value, FORMATS[fmt])


def plain(value):
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def body_of(data):
    return plain(decode(data)[0]) if data else None


class Host:
    def __init__(self):
        self.connection = None
        self.received = {}
        self.changed = asyncio.Condition()

    async def on_primary(self, header, data):
        stream, function = header.stream & 0x7F, header.function
        async with self.changed:
            self.received.setdefault((stream, function), []).append(body_of(data))
            self.changed.notify_all()
        if header.w_bit:
            reply = REPLIES.get((stream, function))
            if reply is None:
                payload = b""
            elif isinstance(reply, bytes):
                payload = encode(reply, FormatCode.BINARY)
            else:
                payload = encode([Secs2Item(r, FormatCode.BINARY) if isinstance(r, bytes)
                                  else r for r in reply])
            await self.connection.send_reply(header, stream, function + 1, payload)

    async def run(self, command):
        op = command["op"]
        if op == "connect":
            self.received.clear()  # what the last connection got stays readable until now
            self.connection = HSMSConnection("127.0.0.1", command["port"], mode="active",
                                             session_id=command.get("device_id", 0),
                                             reply_timeout=10)
            self.connection.on_message_received = self.on_primary
            return {"ok": await self.connection.connect()}
        if op == "request":
            body = item(command["body"]) if command.get("body") else None
            data = encode(body.value, body.format_code) if body is not None else b""
            header, reply = await self.connection.send_data_message(
                command["s"], command["f"], True, data)
            return {"s": header.stream & 0x7F, "f": header.function, "body": body_of(reply)}
        if op == "received":
            key, count = (command["s"], command["f"]), command["count"]
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(
                    lambda: len(self.received.get(key, [])) >= count),
                    command.get("timeout", WAIT_S))
                bodies = self.received.get(key, [])
                return {"bodies": bodies if command.get("all") else bodies[:count]}
        if op == "disconnect":
            await self.connection.disconnect()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")


async def main():
    host = Host()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or json.loads(line)["op"] == "quit":
            if host.connection is not None and host.connection.connected:
                await host.connection.disconnect()
            return
        try:
            answer = await host.run(json.loads(line))
        except Exception as exc:  # reported to the test, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

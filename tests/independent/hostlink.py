"""HostLink/1 framing written from hostlink.md alone. Pure: bytes in, bytes out.

Strict choices where the spec is silent (docs/protocols.md, "Independent tools"):

* ``CK`` must be two UPPERCASE hex digits: ``*4f`` is a wrong checksum;
* a ``$`` inside a frame starts a new frame (bytes before a ``$`` are discarded);
  a frame longer than 255 bytes, or one ended by ``\\n`` without ``\\r``, is
  discarded without a reply;
* ``SEQ`` must be exactly two decimal digits and ``CMD`` exactly three uppercase
  letters; otherwise (checksum right or wrong) there is no reply at all;
* a field holding a byte outside 0x20-0x7E is NAK 03;
* the retransmission memory (the previous request's body and reply) belongs to the
  tool, not to a TCP connection: it survives the host reconnecting. A request with
  the previous SEQ and body gets the previous reply again, whatever it was;
* a frame NAKed for its checksum is not remembered as "the previous request".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_FRAME = 255
SEQ_RE = re.compile(rb"[0-9]{2}")
CMD_RE = re.compile(rb"[A-Z]{3}")
CK_RE = re.compile(rb"[0-9A-F]{2}")

NAK_TEXT = {
    1: "CHECKSUM",
    2: "UNKNOWN COMMAND",
    3: "BAD PARAMETER",
    4: "WRONG STATE",
    5: "ALARM ACTIVE",
    6: "INTERLOCK",
}


class Nak(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(NAK_TEXT[code])
        self.code = code


def checksum(body: bytes) -> int:
    ck = 0
    for b in body:
        ck ^= b
    return ck


def frame(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{checksum(raw):02X}".encode() + b"\r\n"


def ack(seq: str, cmd: str, fields: list[str]) -> bytes:
    return frame(",".join([seq, "ACK", cmd, *fields]))


def nak(seq: str, cmd: str, code: int) -> bytes:
    return frame(f"{seq},NAK,{cmd},{code:02d},{NAK_TEXT[code]}")


# A tool answers (cmd, args) with its ACK fields or raises Nak.
Handler = Callable[[str, list[str]], list[str]]


@dataclass
class Link:
    """One tool's side of the line: feed it received bytes, get the bytes to send."""

    handler: Handler
    buffer: bytearray = field(default_factory=bytearray)
    last_body: bytes | None = None
    last_reply: bytes = b""
    log: list[tuple[bytes, bytes]] = field(default_factory=list)  # (request body, reply)
    retransmissions: int = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        replies: list[bytes] = []
        while True:
            start = self.buffer.find(b"$")
            if start < 0:
                self.buffer.clear()
                return replies
            del self.buffer[:start]
            end = self.buffer.find(b"\n")
            restart = self.buffer.find(b"$", 1)
            if restart >= 0 and (end < 0 or restart < end):
                del self.buffer[:restart]  # a new '$' before the end: start over there
                continue
            if end < 0:
                if len(self.buffer) >= MAX_FRAME:
                    self.buffer.clear()  # no \r\n within 255 bytes: discarded
                return replies
            raw = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            reply = self.frame_in(raw)
            if reply is not None:
                replies.append(reply)

    def frame_in(self, raw: bytes) -> bytes | None:
        if len(raw) > MAX_FRAME or not raw.endswith(b"\r\n"):
            return None
        star = raw.rfind(b"*")
        if star < 0 or len(raw) != star + 5:
            return None
        body, ck = raw[1:star], raw[star + 1: star + 3]
        parts = body.split(b",")
        if len(parts) < 2 or not SEQ_RE.fullmatch(parts[0]) or not CMD_RE.fullmatch(parts[1]):
            return None
        seq, cmd = parts[0].decode(), parts[1].decode()
        if not CK_RE.fullmatch(ck) or int(ck, 16) != checksum(body):
            reply = nak(seq, cmd, 1)
            self.log.append((body, reply))
            return reply
        if body == self.last_body:
            self.retransmissions += 1
            self.log.append((body, self.last_reply))
            return self.last_reply
        try:
            if any(b < 0x20 or b > 0x7E for b in body):
                raise Nak(3)
            fields = self.handler(cmd, [p.decode("ascii") for p in parts[2:]])
            reply = ack(seq, cmd, fields)
        except Nak as refused:
            reply = nak(seq, cmd, refused.code)
        self.last_body, self.last_reply = body, reply
        self.log.append((body, reply))
        return reply

"""Tool side of HostLink/1, the framing both serial tools speak (specs/hostlink.md).

Pure: bytes in, bytes out, no I/O. ``HostLinkEndpoint`` turns request frames into
reply frames for one tool model; ``FrameSplitter`` cuts frames out of a byte
stream. A server keeps one endpoint per tool (the tool remembers its previous
request whatever wire it came over) and one splitter per wire.
"""

from __future__ import annotations

import re
from functools import reduce
from typing import Protocol

MAX_FRAME = 255  # bytes, '$' to '\n' inclusive

NAK_TEXT = {
    1: "CHECKSUM",
    2: "UNKNOWN COMMAND",
    3: "BAD PARAMETER",
    4: "WRONG STATE",
    5: "ALARM ACTIVE",
    6: "INTERLOCK",
}

_SEQ = re.compile(r"\d\d")
_CMD = re.compile(r"[A-Z]{3}")
_CK = re.compile(rb"[0-9A-F]{2}")
_PRINTABLE = re.compile(r"[\x20-\x23\x25-\x29\x2b-\x7e]*")  # hostlink.md: 0x20-0x7E but $ * ,


class Nak(Exception):
    """A refusal: the tool answers ``NAK,<CMD>,<code>,<text>`` and changes nothing."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"NAK {code:02d} {NAK_TEXT[code]}" + (f": {detail}" if detail else ""))
        self.code = code
        self.text = NAK_TEXT[code]
        self.detail = detail  # for logs only; never on the wire


class HostLinkModel(Protocol):
    """What the endpoint needs from a tool model."""

    def handle(self, cmd: str, args: list[str], now: float) -> list[str]:
        """Execute one command at tool time ``now``; return the ACK fields or raise Nak."""
        ...


def checksum(body: bytes) -> str:
    """Two uppercase hex digits: XOR of every byte of the body."""
    return f"{reduce(lambda a, b: a ^ b, body, 0):02X}"


def encode_frame(body: str) -> bytes:
    """``$<body>*<CK>\\r\\n``; refuses a frame the wire cannot carry."""
    raw = body.encode("ascii")
    frame = b"$" + raw + b"*" + checksum(raw).encode("ascii") + b"\r\n"
    if len(frame) > MAX_FRAME:
        raise ValueError(f"HostLink frame of {len(frame)} bytes exceeds {MAX_FRAME}: {body[:40]}")
    return frame


class FrameSplitter:
    """Cuts ``$...\\r\\n`` frames out of a byte stream, per the link rules.

    Bytes before a ``$`` are discarded; a ``$`` inside a pending frame starts a
    new frame (``$`` never appears in a field); a frame with no ``\\r\\n`` within
    255 bytes is discarded. Yields the bytes between ``$`` and ``\\r\\n``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0  # bytes thrown away (noise, partial or oversize frames)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            start = buf.find(b"$")
            if start < 0:
                self.discarded += len(buf)
                buf.clear()
                break
            if start:
                self.discarded += start
                del buf[:start]
            end = buf.find(b"\r\n", 1)
            restart = buf.find(b"$", 1)
            if restart >= 0 and (end < 0 or restart < end):
                self.discarded += restart  # unfinished frame cut short by a new one
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) >= MAX_FRAME:  # cannot end within 255 bytes any more
                    self.discarded += len(buf)
                    buf.clear()
                break
            if end + 2 <= MAX_FRAME:
                frames.append(bytes(buf[1:end]))
            else:
                self.discarded += end + 2
            del buf[: end + 2]
        return frames


class HostLinkEndpoint:
    """The tool's side of the link: request frames in, reply frames out."""

    def __init__(self, model: HostLinkModel) -> None:
        self.model = model
        self._splitter = FrameSplitter()
        self._last_body: bytes | None = None
        self._last_reply: bytes | None = None
        self.requests = 0  # well-formed requests executed
        self.retransmissions = 0  # repeated requests answered from memory
        self.checksum_errors = 0
        self.unanswered = 0  # frames too damaged to answer

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the wire (any chunking); returns the replies to send, in order."""
        replies = []
        for frame in self._splitter.feed(data):
            reply = self.handle_frame(frame, now)
            if reply is not None:
                replies.append(reply)
        return replies

    def handle_frame(self, frame: bytes, now: float) -> bytes | None:
        """One frame (the bytes between ``$`` and ``\\r\\n``); the reply, or None for silence."""
        if len(frame) >= 3 and frame[-3:-2] == b"*" and _CK.fullmatch(frame[-2:]):
            body, ck = frame[:-3], frame[-2:].decode("ascii")
        else:  # no readable checksum at all: treat as a wrong one
            body, ck = frame.split(b"*", 1)[0], None
        text = body.decode("latin-1")
        fields = text.split(",")
        if ck != checksum(body):
            self.checksum_errors += 1
            if len(fields) >= 2 and _SEQ.fullmatch(fields[0]) and _CMD.fullmatch(fields[1]):
                return encode_frame(f"{fields[0]},NAK,{fields[1]},01,CHECKSUM")
            self.unanswered += 1
            return None
        if body == self._last_body and self._last_reply is not None:
            self.retransmissions += 1  # rule 3: answer again, do not execute again
            return self._last_reply
        if len(fields) < 2 or not _SEQ.fullmatch(fields[0]) or not _PRINTABLE.fullmatch(fields[1]):
            self.unanswered += 1
            return None
        seq, cmd, args = fields[0], fields[1], fields[2:]
        reply = self._execute(seq, cmd, args, now)
        self.requests += 1
        self._last_body, self._last_reply = body, reply
        return reply

    def _execute(self, seq: str, cmd: str, args: list[str], now: float) -> bytes:
        try:
            if not _CMD.fullmatch(cmd):
                raise Nak(2, f"'{cmd}' is not a command")
            if not all(_PRINTABLE.fullmatch(a) for a in args):
                raise Nak(3, "an argument byte outside printable ASCII, or $ or *")
            ack = self.model.handle(cmd, args, now)
            return encode_frame(",".join([seq, "ACK", cmd, *ack]))
        except Nak as nak:
            try:
                return encode_frame(f"{seq},NAK,{cmd},{nak.code:02d},{nak.text}")
            except ValueError:  # an absurdly long bogus CMD cannot be echoed in 255 bytes
                return encode_frame(f"{seq},NAK,{cmd[:200]},{nak.code:02d},{nak.text}")

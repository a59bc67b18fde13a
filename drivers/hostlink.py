"""HostLink/1 framing: the pure codec (no I/O).

A frame is ``$<body>*<CK>\\r\\n``: ``body`` is comma-separated fields, ``CK``
the XOR of the body bytes as two uppercase hex digits, the whole frame at most
255 bytes. Requests are ``SEQ,CMD[,arg...]``; replies are
``SEQ,ACK,CMD[,field...]`` or ``SEQ,NAK,CMD,code,text``.

Everything a wire can do wrong ends in :class:`FrameError`, never in an
IndexError or a half-parsed reply: the link decides what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import xor

MAX_FRAME = 255  # bytes, '$' to '\n' inclusive
START = 0x24  # '$'
END = b"\r\n"
_CMD = re.compile(rb"[A-Z]{3}")
_SEQ = re.compile(rb"[0-9]{2}")
_HEX = b"0123456789ABCDEF"
_NAK_CODE = re.compile(rb"[0-9]{1,3}")
_FIELD = re.compile(rb"[\x20-\x23\x25-\x29\x2b\x2d-\x7e]*")  # printable, not $ * ,
_BODY = re.compile(rb"[\x20-\x23\x25-\x29\x2b-\x7e]*")  # printable, not $ *


class FrameError(ValueError):
    """A frame that cannot be built or cannot be read, and why."""


class ChecksumError(FrameError):
    """A frame that is well formed but whose checksum does not match its body."""


def checksum(body: bytes) -> int:
    """XOR of every byte of ``body``."""
    return reduce(xor, body, 0)  # C-level loop: this sits on every request's path


def _check_field(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise FrameError(f"{what} must be text, got {type(value).__name__} {value!r}")
    raw = value.encode("ascii") if value.isascii() else b"\x00"
    if not _FIELD.fullmatch(raw):
        raise FrameError(
            f"{what} {value!r}: only printable ASCII without '$', '*' or ',' is allowed"
        )
    return raw


def encode_frame(fields: Sequence[str]) -> bytes:
    """``$f1,f2,...*CK\\r\\n`` for already-validated field text."""
    body = b",".join(_check_field(f, f"field {i + 1}") for i, f in enumerate(fields))
    ck = checksum(body)
    frame = b"$" + body + b"*" + bytes((_HEX[ck >> 4], _HEX[ck & 15])) + END
    if len(frame) > MAX_FRAME:
        raise FrameError(
            f"frame would be {len(frame)} bytes; HostLink/1 allows at most {MAX_FRAME}"
        )
    return frame


def _seq_text(seq: int) -> str:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 99:
        raise FrameError(f"sequence number must be 0-99, got {seq!r}")
    return f"{seq:02d}"


def _check_cmd(cmd: str) -> str:
    if not isinstance(cmd, str) or not _CMD.fullmatch(cmd.encode("ascii", "replace")):
        raise FrameError(f"command must be three uppercase letters, got {cmd!r}")
    return cmd


def encode_request(seq: int, cmd: str, args: Iterable[str] = ()) -> bytes:
    """The request frame ``$SEQ,CMD[,arg...]*CK\\r\\n``."""
    return encode_frame([_seq_text(seq), _check_cmd(cmd), *args])


def encode_reply(seq: int, cmd: str, fields: Iterable[str] = (), *, ack: bool = True) -> bytes:
    """A reply frame as a tool sends it (for tests and line-noise tools)."""
    return encode_frame([_seq_text(seq), "ACK" if ack else "NAK", _check_cmd(cmd), *fields])


@dataclass(frozen=True)
class Reply:
    """One parsed reply. For a NAK, ``fields`` is ``(code, text)``."""

    seq: int
    ack: bool
    cmd: str
    fields: tuple[str, ...] = ()

    @property
    def nak_code(self) -> int | None:
        return None if self.ack else int(self.fields[0])

    @property
    def nak_text(self) -> str:
        return "" if self.ack else self.fields[1]


@dataclass(frozen=True)
class Request:
    seq: int
    cmd: str
    args: tuple[str, ...] = ()


def split_frame(frame: bytes) -> list[bytes]:
    """Check framing, characters and checksum; return the body's fields."""
    if len(frame) > MAX_FRAME:
        raise FrameError(f"frame is {len(frame)} bytes, over the {MAX_FRAME}-byte limit")
    if len(frame) < 6 or frame[0] != START or not frame.endswith(END) or frame[-5] != 0x2A:
        raise FrameError(f"not a $...*CK\\r\\n frame: {frame!r}")
    body, ck_text = frame[1:-5], frame[-4:-2]
    if not _BODY.fullmatch(body):
        raise FrameError(f"frame body holds a forbidden byte: {frame!r}")
    if ck_text[0] not in _HEX or ck_text[1] not in _HEX:
        raise FrameError(f"checksum must be two uppercase hex digits: {frame!r}")
    if int(ck_text, 16) != checksum(body):
        raise ChecksumError(
            f"checksum {ck_text.decode()} does not match body (expected "
            f"{checksum(body):02X}): {frame!r}"
        )
    return body.split(b",")


def parse_reply(frame: bytes) -> Reply:
    """A tool's reply frame, checked in full; anything else raises FrameError."""
    parts = split_frame(frame)
    if len(parts) < 3 or not _SEQ.fullmatch(parts[0]) or not _CMD.fullmatch(parts[2]):
        raise FrameError(f"not a reply (SEQ,ACK|NAK,CMD...): {frame!r}")
    kind = parts[1]
    fields = tuple(p.decode("ascii") for p in parts[3:])
    if kind == b"ACK":
        ack = True
    elif kind == b"NAK":
        ack = False
        if len(fields) != 2 or not _NAK_CODE.fullmatch(parts[3]):
            raise FrameError(f"a NAK carries exactly a numeric code and a text: {frame!r}")
    else:
        raise FrameError(f"reply is neither ACK nor NAK: {frame!r}")
    return Reply(int(parts[0]), ack, parts[2].decode("ascii"), fields)


def parse_request(frame: bytes) -> Request:
    """A host's request frame (used by line-noise test tools, not by the driver)."""
    parts = split_frame(frame)
    if len(parts) < 2 or not _SEQ.fullmatch(parts[0]) or not _CMD.fullmatch(parts[1]):
        raise FrameError(f"not a request (SEQ,CMD...): {frame!r}")
    return Request(int(parts[0]), parts[1].decode("ascii"), tuple(p.decode() for p in parts[2:]))


class FrameExtractor:
    """Cuts a byte stream into candidate frames, ``$`` to ``\\n``.

    Bytes before a ``$`` are dropped; a frame that reaches 255 bytes without
    its ``\\n`` is dropped whole. A ``$`` inside a frame does not restart it:
    the frame is returned and fails validation, so a single damaged byte can
    never turn the tail of one frame into a different valid one.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0  # bytes thrown away as garbage or over-long frames

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while buf:
            if buf[0] != START:
                start = buf.find(b"$")
                drop = len(buf) if start < 0 else start
                self.discarded += drop
                del buf[:drop]
                if start < 0:
                    break
            end = buf.find(b"\n", 0, MAX_FRAME)
            if end < 0:
                if len(buf) >= MAX_FRAME:
                    self.discarded += MAX_FRAME
                    del buf[:MAX_FRAME]
                    continue
                break
            frames.append(bytes(buf[: end + 1]))
            del buf[: end + 1]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held back."""
        return len(self._buf)

    def clear(self) -> None:
        self.discarded += len(self._buf)
        self._buf.clear()

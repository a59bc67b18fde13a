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
from functools import reduce
from operator import xor
from typing import NamedTuple

MAX_FRAME = 255  # bytes, '$' to '\n' inclusive
START = 0x24  # '$'
END = b"\r\n"
_CMD = re.compile(rb"[A-Z]{3}")
_CMD_STR = re.compile(r"[A-Z]{3}")
_SEQ_STR = re.compile(r"[0-9]{2}")
_NAK_CODE_STR = re.compile(r"[0-9]{1,3}")
_SEQ_TEXT = [b"%02d" % n for n in range(100)]
_HEX_PAIRS = [b"%02X" % n for n in range(256)]
_CK_VALUE = {pair: n for n, pair in enumerate(_HEX_PAIRS)}  # uppercase only, as the spec says
_FIELD = re.compile(rb"[\x20-\x23\x25-\x29\x2b\x2d-\x7e]*")  # printable, not $ * ,
_BODY = re.compile(rb"[\x20-\x23\x25-\x29\x2b-\x7e]*")  # printable, not $ *


class FrameError(ValueError):
    """A frame that cannot be built or cannot be read, and why."""


class ChecksumError(FrameError):
    """A frame that is well formed but whose checksum does not match its body."""


def checksum(body: bytes) -> int:
    """XOR of every byte of ``body``."""
    return reduce(xor, body, 0)  # C-level loop: this sits on every request's path


def _field_bytes(fields: Iterable[str]) -> list[bytes]:
    out = []
    for i, value in enumerate(fields):
        raw = value.encode("ascii") if isinstance(value, str) and value.isascii() else None
        if raw is None or not _FIELD.fullmatch(raw):
            if not isinstance(value, str):
                raise FrameError(
                    f"field {i + 1} must be text, got {type(value).__name__} {value!r}"
                )
            raise FrameError(
                f"field {i + 1} {value!r}: only printable ASCII without '$', '*' or ',' "
                "is allowed"
            )
        out.append(raw)
    return out


def _frame(body: bytes) -> bytes:
    ck = checksum(body)
    frame = b"$" + body + b"*" + _HEX_PAIRS[ck] + END
    if len(frame) > MAX_FRAME:
        raise FrameError(
            f"frame would be {len(frame)} bytes; HostLink/1 allows at most {MAX_FRAME}"
        )
    return frame


def encode_frame(fields: Sequence[str]) -> bytes:
    """``$f1,f2,...*CK\\r\\n`` from field text, each field checked."""
    return _frame(b",".join(_field_bytes(fields)))


def _seq_bytes(seq: int) -> bytes:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 99:
        raise FrameError(f"sequence number must be 0-99, got {seq!r}")
    return _SEQ_TEXT[seq]


def _cmd_bytes(cmd: str) -> bytes:
    raw = cmd.encode("ascii", "replace") if isinstance(cmd, str) else b""
    if not _CMD.fullmatch(raw):
        raise FrameError(f"command must be three uppercase letters, got {cmd!r}")
    return raw


def encode_request(seq: int, cmd: str, args: Iterable[str] = ()) -> bytes:
    """The request frame ``$SEQ,CMD[,arg...]*CK\\r\\n``."""
    if args == () and type(seq) is int:  # STS, RES, ULD...: one frame per SEQ, built once
        frame = _BARE_REQUESTS.get((seq, cmd))
        if frame is None:
            frame = _BARE_REQUESTS[seq, cmd] = _frame(_seq_bytes(seq) + b"," + _cmd_bytes(cmd))
        return frame
    return _frame(b",".join([_seq_bytes(seq), _cmd_bytes(cmd), *_field_bytes(args)]))


_BARE_REQUESTS: dict[tuple[int, str], bytes] = {}  # bounded: 100 SEQs x the commands sent


def encode_reply(seq: int, cmd: str, fields: Iterable[str] = (), *, ack: bool = True) -> bytes:
    """A reply frame as a tool sends it (for tests and line-noise tools)."""
    head = [_seq_bytes(seq), b"ACK" if ack else b"NAK", _cmd_bytes(cmd)]
    return _frame(b",".join(head + _field_bytes(fields)))


class Reply(NamedTuple):
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


class Request(NamedTuple):
    seq: int
    cmd: str
    args: tuple[str, ...] = ()


def split_frame(frame: bytes) -> list[str]:
    """Check framing, characters and checksum; return the body's fields."""
    if len(frame) > MAX_FRAME:
        raise FrameError(f"frame is {len(frame)} bytes, over the {MAX_FRAME}-byte limit")
    if len(frame) < 6 or frame[0] != START or frame[-5:-4] != b"*" or not frame.endswith(END):
        raise FrameError(f"not a $...*CK\\r\\n frame: {frame!r}")
    body = frame[1:-5]
    if not _BODY.fullmatch(body):
        raise FrameError(f"frame body holds a forbidden byte: {frame!r}")
    ck = _CK_VALUE.get(frame[-4:-2])
    if ck is None:
        raise FrameError(f"checksum must be two uppercase hex digits: {frame!r}")
    if ck != checksum(body):
        raise ChecksumError(
            f"checksum {frame[-4:-2].decode()} does not match body (expected "
            f"{checksum(body):02X}): {frame!r}"
        )
    return body.decode("ascii").split(",")


def parse_reply(frame: bytes) -> Reply:
    """A tool's reply frame, checked in full; anything else raises FrameError.

    A tool polled at rest answers the same body again and again, with only the SEQ new:
    the part after ``SEQ,`` of the last replies that passed every check is kept with its
    XOR and its fields, so such a reply costs a framing check, its SEQ digits and the
    checksum (the tail's XOR with the SEQ's), not the whole parse.
    """
    if (len(frame) <= MAX_FRAME and frame[:1] == b"$" and frame[3:4] == b","
            and frame[-5:-4] == b"*" and frame.endswith(END)):
        known = _TAILS.get(frame[4:-5])
        seq = frame[1:3]
        if known is not None and seq.isdigit():  # bytes.isdigit: ASCII 0-9 only
            if _CK_VALUE.get(frame[-4:-2]) == known[0] ^ seq[0] ^ seq[1] ^ 0x2C:
                return Reply(int(seq), *known[1])
    reply = _parse_reply(frame)
    if frame[3:4] == b",":
        if len(_TAILS) >= _TAILS_KEPT:
            _TAILS.clear()
        tail = frame[4:-5]
        _TAILS[tail] = (checksum(tail), (reply.ack, reply.cmd, reply.fields))
    return reply


_TAILS: dict[bytes, tuple[int, tuple[bool, str, tuple[str, ...]]]] = {}
_TAILS_KEPT = 256  # distinct reply bodies remembered (a handful in a steady poll)


def _parse_reply(frame: bytes) -> Reply:
    parts = split_frame(frame)
    # the body is printable ASCII by now, so isdigit/isalpha/isupper mean [0-9] and [A-Z]
    if (len(parts) < 3 or len(parts[0]) != 2 or not parts[0].isdigit()
            or len(parts[2]) != 3 or not (parts[2].isalpha() and parts[2].isupper())):
        raise FrameError(f"not a reply (SEQ,ACK|NAK,CMD...): {frame!r}")
    kind = parts[1]
    if kind == "ACK":
        return Reply(int(parts[0]), True, parts[2], tuple(parts[3:]))
    if kind == "NAK":
        if len(parts) != 5 or not _NAK_CODE_STR.fullmatch(parts[3]):
            raise FrameError(f"a NAK carries exactly a numeric code and a text: {frame!r}")
        return Reply(int(parts[0]), False, parts[2], (parts[3], parts[4]))
    raise FrameError(f"reply is neither ACK nor NAK: {frame!r}")


def parse_request(frame: bytes) -> Request:
    """A host's request frame (used by line-noise test tools, not by the driver)."""
    parts = split_frame(frame)
    if len(parts) < 2 or not _SEQ_STR.fullmatch(parts[0]) or not _CMD_STR.fullmatch(parts[1]):
        raise FrameError(f"not a request (SEQ,CMD...): {frame!r}")
    return Request(int(parts[0]), parts[1], tuple(parts[2:]))


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
        if (not buf and type(data) is bytes and len(data) <= MAX_FRAME and data[:1] == b"$"
                and data.find(b"\n") == len(data) - 1):
            return [data]  # the usual case: one whole reply per read
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

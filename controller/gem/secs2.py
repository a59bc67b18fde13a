"""SECS-II data items (SEMI E5 §9): encode to and decode from the bytes on the wire.

Pure and small on purpose: every GEM message is built from these items, and the
item format is where interoperability lives, so it is tested byte by byte
against the E5 item layout. An item is a format code and a value:

* ``L`` a list of items; ``A`` text (ASCII, Latin-1 passes through);
  ``B`` binary bytes; ``BOOLEAN`` a tuple of bools;
* the numeric formats (``I1``..``I8``, ``U1``..``U8``, ``F4``, ``F8``) a tuple
  of numbers (E5 arrays: a single value is a tuple of one).

On the wire: one format byte (the 6-bit format code, then 2 bits saying how many
length bytes follow, 1-3), the length (bytes of data; for a list, its number of
items), then the data, big-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Secs2Error(ValueError):
    """Bytes that are not a SECS-II item, or a value a format cannot hold."""


class Fmt(IntEnum):
    """E5 format codes (octal in the standard)."""

    L = 0o00
    B = 0o10
    BOOLEAN = 0o11
    A = 0o20
    J = 0o21
    I8 = 0o30
    I1 = 0o31
    I2 = 0o32
    I4 = 0o34
    F8 = 0o40
    F4 = 0o44
    U8 = 0o50
    U1 = 0o51
    U2 = 0o52
    U4 = 0o54


# struct code per numeric format (big-endian on the wire)
_NUMERIC = {
    Fmt.I1: "b", Fmt.I2: "h", Fmt.I4: "i", Fmt.I8: "q",
    Fmt.U1: "B", Fmt.U2: "H", Fmt.U4: "I", Fmt.U8: "Q",
    Fmt.F4: "f", Fmt.F8: "d",
}
_MAX_LENGTH = 0xFFFFFF  # three length bytes


@dataclass(frozen=True, slots=True)
class Item:
    """One SECS-II item: ``fmt`` and its value (see the module docstring for the types)."""

    fmt: Fmt
    value: Any

    def __repr__(self) -> str:
        if self.fmt is Fmt.L:
            return f"<L[{len(self.value)}] {' '.join(map(repr, self.value))}>"
        return f"<{self.fmt.name} {self.value!r}>"

    # -- reading values back (handlers use these; a wrong shape is a Secs2Error)

    @property
    def items(self) -> tuple[Item, ...]:
        if self.fmt is not Fmt.L:
            raise Secs2Error(f"expected a list, got {self.fmt.name}")
        return self.value

    @property
    def text(self) -> str:
        if self.fmt is Fmt.A or self.fmt is Fmt.J:
            return self.value
        raise Secs2Error(f"expected text (A), got {self.fmt.name}")

    @property
    def scalar(self) -> Any:
        """The single value of a one-element array (numeric, boolean or binary)."""
        if self.fmt in (Fmt.L, Fmt.A, Fmt.J) or len(self.value) != 1:
            raise Secs2Error(f"expected one value, got {self!r}")
        return self.value[0]

    @property
    def number(self) -> int:
        """An integer id (U*/I*/B of one value): what E5 ids like CEID and ALID are."""
        value = self.scalar
        if isinstance(value, bool) or not isinstance(value, int):
            raise Secs2Error(f"expected an integer, got {self!r}")
        return value

    def python(self) -> Any:
        """Plain Python: lists, str, a scalar for one-element arrays, else a list."""
        if self.fmt is Fmt.L:
            return [item.python() for item in self.value]
        if self.fmt in (Fmt.A, Fmt.J):
            return self.value
        values = list(self.value)
        return values[0] if len(values) == 1 else values


# -- constructors ----------------------------------------------------------------------------


def L(*items: Item) -> Item:  # noqa: N802 - E5 names
    for item in items:
        if not isinstance(item, Item):
            raise Secs2Error(f"a list holds items, not {item!r}")
    return Item(Fmt.L, tuple(items))


def A(text: str) -> Item:  # noqa: N802
    return Item(Fmt.A, str(text))


_ASCII = str.maketrans({"°": "deg", "µ": "u", "≤": "<=", "≥": ">=", "–": "-", "—": "-",
                        "±": "+/-", "²": "2", "³": "3"})


def ascii_text(text: str) -> str:
    """Text for a host: E5 ``A`` items are ASCII, and many hosts decode nothing else."""
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


def ascii_item(item: Item) -> Item:
    """``item`` with every ``A`` inside it made ``ascii_text`` ("°C" -> "degC"): what the
    equipment sends, so no text can make the encoder refuse a report (nor a host misread it)."""
    if item.fmt is Fmt.A:
        return item if item.value.isascii() else Item(Fmt.A, ascii_text(item.value))
    if item.fmt is Fmt.L:
        children = tuple(ascii_item(child) for child in item.value)
        if any(new is not old for new, old in zip(children, item.value, strict=True)):
            return Item(Fmt.L, children)
    return item


def B(*values: int) -> Item:  # noqa: N802
    return Item(Fmt.B, tuple(_check_range(Fmt.B, v) for v in values))


def BOOLEAN(*values: bool) -> Item:  # noqa: N802
    return Item(Fmt.BOOLEAN, tuple(bool(v) for v in values))


def _numeric(fmt: Fmt):  # noqa: ANN202
    def make(*values: float) -> Item:
        return Item(fmt, tuple(_check_range(fmt, v) for v in values))

    make.__name__ = fmt.name
    return make


I1, I2, I4, I8 = (_numeric(f) for f in (Fmt.I1, Fmt.I2, Fmt.I4, Fmt.I8))
U1, U2, U4, U8 = (_numeric(f) for f in (Fmt.U1, Fmt.U2, Fmt.U4, Fmt.U8))
F4, F8 = _numeric(Fmt.F4), _numeric(Fmt.F8)


def _check_range(fmt: Fmt, value: Any) -> Any:
    if fmt in (Fmt.F4, Fmt.F8):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Secs2Error(f"{fmt.name} holds numbers, not {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Secs2Error(f"{fmt.name} holds whole numbers, not {value!r}")
    code = "B" if fmt is Fmt.B else _NUMERIC[fmt]
    try:
        struct.pack(">" + code, value)
    except struct.error:
        raise Secs2Error(f"{value} does not fit in {fmt.name}") from None
    return value


# -- encoding --------------------------------------------------------------------------------


def encode(item: Item) -> bytes:
    out = bytearray()
    _encode_into(item, out)
    return bytes(out)


def _encode_into(item: Item, out: bytearray) -> None:
    fmt = item.fmt
    if fmt is Fmt.L:
        _header(fmt, len(item.value), out)
        for child in item.value:
            _encode_into(child, out)
        return
    if fmt in (Fmt.A, Fmt.J):
        try:
            data = item.value.encode("latin-1")
        except UnicodeEncodeError:
            raise Secs2Error(f"text {item.value!r} is not 8-bit characters") from None
    elif fmt is Fmt.B:
        data = bytes(item.value)
    elif fmt is Fmt.BOOLEAN:
        data = bytes(1 if v else 0 for v in item.value)
    else:
        data = struct.pack(f">{len(item.value)}{_NUMERIC[fmt]}", *item.value)
    _header(fmt, len(data), out)
    out += data


def _header(fmt: Fmt, length: int, out: bytearray) -> None:
    if length > _MAX_LENGTH:
        raise Secs2Error(f"{fmt.name} item of length {length} exceeds 3 length bytes")
    size = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    out.append((fmt << 2) | size)
    out += length.to_bytes(size, "big")


# -- decoding --------------------------------------------------------------------------------


def decode(data: bytes) -> Item | None:
    """The one item of a message body (None for an empty body: a header-only message)."""
    if not data:
        return None
    item, end = _decode_at(memoryview(data), 0, depth=0)
    if end != len(data):
        raise Secs2Error(f"{len(data) - end} byte(s) after the item")
    return item


def _decode_at(data: memoryview, pos: int, depth: int) -> tuple[Item, int]:
    if depth > 64:
        raise Secs2Error("lists nested more than 64 deep")
    if pos >= len(data):
        raise Secs2Error("item header missing (message ends early)")
    head = data[pos]
    size = head & 0x03
    if size == 0:
        raise Secs2Error(f"format byte {head:#04x} gives no length bytes")
    try:
        fmt = Fmt(head >> 2)
    except ValueError:
        raise Secs2Error(f"unknown format code {head >> 2:#o}") from None
    if pos + 1 + size > len(data):
        raise Secs2Error("length bytes missing (message ends early)")
    length = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
    pos += 1 + size
    if fmt is Fmt.L:
        children = []
        for _ in range(length):
            child, pos = _decode_at(data, pos, depth + 1)
            children.append(child)
        return Item(fmt, tuple(children)), pos
    end = pos + length
    if end > len(data):
        raise Secs2Error(f"{fmt.name} item says {length} bytes, only {len(data) - pos} left")
    raw = bytes(data[pos:end])
    if fmt in (Fmt.A, Fmt.J):
        return Item(fmt, raw.decode("latin-1")), end
    if fmt is Fmt.B:
        return Item(fmt, tuple(raw)), end
    if fmt is Fmt.BOOLEAN:
        return Item(fmt, tuple(b != 0 for b in raw)), end
    code = _NUMERIC[fmt]
    width = struct.calcsize(code)
    if length % width:
        raise Secs2Error(f"{fmt.name} item of {length} bytes is not a whole number of values")
    return Item(fmt, struct.unpack(f">{length // width}{code}", raw)), end

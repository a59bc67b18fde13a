"""ASCII text in registers: two characters per register, high byte first, NUL padded."""

from __future__ import annotations

from tests.independent.modbus_codec import ILLEGAL_DATA_VALUE, ModbusError


def check_text_register(value: int) -> None:
    """A text register holds two bytes, each NUL or printable ASCII; else exception 03."""
    for byte in (value >> 8, value & 0xFF):
        if byte != 0 and not 0x20 <= byte <= 0x7E:
            raise ModbusError(ILLEGAL_DATA_VALUE)


def encode(text: str, registers: int = 8) -> list[int]:
    raw = text.encode("ascii")[: 2 * registers].ljust(2 * registers, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def decode(values: list[int]) -> str:
    raw = b"".join(bytes([v >> 8, v & 0xFF]) for v in values)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")

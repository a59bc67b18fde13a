"""Modbus ADUs built by hand, byte for byte, for tests that speak the wire without a
Modbus library (a different client than pymodbus, as a spec-literal test would be)."""

from __future__ import annotations

import struct


def tcp(tid: int, pdu: str, unit: int = 1) -> bytes:
    """A Modbus TCP ADU: MBAP header (transaction id, protocol 0, length, unit), then the PDU."""
    body = bytes.fromhex(pdu)
    return struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body


def crc16(data: bytes) -> bytes:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def rtu(pdu: str, unit: int = 2) -> bytes:
    """A Modbus RTU ADU: unit, PDU, CRC-16 low byte first."""
    frame = bytes([unit]) + bytes.fromhex(pdu)
    return frame + crc16(frame)

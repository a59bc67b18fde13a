"""A small, strict Modbus codec: PDUs, MBAP (TCP) and RTU framing. No I/O.

A device answers reads and writes through the ``Device`` protocol and raises
``ModbusError`` with an exception code; ``handle_pdu`` turns a request PDU into the
reply PDU, checking function code, quantity and byte count the way the Modbus
application protocol orders them (01, then 03, then 02, then the device's own).
"""

from __future__ import annotations

import struct
from typing import Protocol

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SERVER_DEVICE_FAILURE = 4
SERVER_DEVICE_BUSY = 6

READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING, READ_INPUT = 1, 2, 3, 4
WRITE_COIL, WRITE_REGISTER, WRITE_REGISTERS = 5, 6, 16


class ModbusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"modbus exception {code:02d}")
        self.code = code


class Device(Protocol):
    function_codes: frozenset[int]

    def read_bits(self, table: str, address: int, count: int) -> list[bool]: ...

    def read_registers(self, table: str, address: int, count: int) -> list[int]: ...

    def write_registers(self, address: int, values: list[int]) -> None: ...

    def write_coil(self, address: int, value: bool) -> None: ...


def _exception(function: int, code: int) -> bytes:
    return bytes([function | 0x80, code])


def handle_pdu(device: Device, pdu: bytes) -> bytes:
    if not pdu:
        raise ValueError("empty PDU")
    fc = pdu[0]
    if fc not in device.function_codes:
        return _exception(fc, ILLEGAL_FUNCTION)
    try:
        return _dispatch(device, fc, pdu)
    except ModbusError as exc:
        return _exception(fc, exc.code)


def _dispatch(device: Device, fc: int, pdu: bytes) -> bytes:
    if fc in (READ_COILS, READ_DISCRETE_INPUTS):
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        address, count = struct.unpack(">HH", pdu[1:5])
        if not 1 <= count <= 2000:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        bits = device.read_bits("coils" if fc == READ_COILS else "inputs", address, count)
        packed = bytearray((count + 7) // 8)
        for i, bit in enumerate(bits):
            if bit:
                packed[i // 8] |= 1 << (i % 8)
        return bytes([fc, len(packed)]) + bytes(packed)
    if fc in (READ_HOLDING, READ_INPUT):
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        address, count = struct.unpack(">HH", pdu[1:5])
        if not 1 <= count <= 125:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        regs = device.read_registers("holding" if fc == READ_HOLDING else "input", address, count)
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs)
    if fc == WRITE_COIL:
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        address, value = struct.unpack(">HH", pdu[1:5])
        if value not in (0x0000, 0xFF00):
            raise ModbusError(ILLEGAL_DATA_VALUE)
        device.write_coil(address, value == 0xFF00)
        return pdu
    if fc == WRITE_REGISTER:
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        address, value = struct.unpack(">HH", pdu[1:5])
        device.write_registers(address, [value])
        return pdu
    if fc == WRITE_REGISTERS:
        if len(pdu) < 6:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
        if not 1 <= count <= 123 or nbytes != 2 * count or len(pdu) != 6 + nbytes:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        values = list(struct.unpack(f">{count}H", pdu[6:]))
        device.write_registers(address, values)
        return pdu[:5]
    raise ModbusError(ILLEGAL_FUNCTION)


# --- Modbus TCP (MBAP) -------------------------------------------------------------

def split_mbap(buffer: bytearray) -> tuple[int, int, int, bytes] | None:
    """Take one ADU off the front of ``buffer``: (transaction, protocol, unit, pdu)."""
    if len(buffer) < 7:
        return None
    transaction, protocol, length = struct.unpack(">HHH", buffer[:6])
    if len(buffer) < 6 + length:
        return None
    unit = buffer[6]
    pdu = bytes(buffer[7 : 6 + length])
    del buffer[: 6 + length]
    return transaction, protocol, unit, pdu


def mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu


# --- Modbus RTU --------------------------------------------------------------------

def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_request_length(buffer: bytes) -> int | None:
    """The length of the request frame at the front of ``buffer`` (None: not known yet).

    Fixed-length requests are 8 bytes; FC 15/16 carry a byte count. Any other function
    code's length is unknown: the caller takes what arrived in one burst.
    """
    if len(buffer) < 2:
        return None
    fc = buffer[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return -1


def check_rtu(frame: bytes) -> tuple[int, bytes] | None:
    """(unit, pdu) of a frame whose CRC is right; None for a damaged frame."""
    if len(frame) < 4 or crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
        return None
    return frame[0], frame[1:-2]

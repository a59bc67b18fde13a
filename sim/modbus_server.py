"""Serve the simulated Modbus tools (oven, cleaner) with pymodbus.

The only sim module that imports pymodbus. Each server is a pymodbus 3.16
server built on a ``SimDevice`` whose ``action`` callback sends every request
to the tool model: a read fills pymodbus's register array from the model just
before pymodbus answers from it, a write goes to the model first (which may
refuse it with an exception code) and only then lands in the array, where
nobody reads it again. The model is therefore the single source of truth, and
any number of servers on one model always agree.

Gaps in the 3.16 API closed here:
* for coil and discrete-input reads the action is told the span in 16-bit
  words, not the bit count asked for; for a single-coil write, only
  ``bool(value)``. Small request subclasses (registered through the server's
  ``custom_pdu`` hook) pass the exact bit count or the coil value to the
  action in context variables, so the model can refuse a read that runs past
  its last input and a coil value other than 0x0000 / 0xFF00 gets exception 03;
* a request pymodbus cannot decode (a quantity of 0 or over 125 registers /
  2000 bits) is answered by pymodbus with function byte 0x80 and code 01;
  ``_trace_pdu`` rewrites that into ``fc | 0x80`` with 03 (a function the tool
  has) or 01 (one it has not), from the function code ``_trace_packet`` saw in
  the request;
* a function code pymodbus has no class for gets a catch-all request class
  answering exception 01 (on RTU the request would otherwise go unanswered);
* each request goes to its handler as a plain task, not through
  ``run_coroutine_threadsafe`` (``_RequestHandler``).

Transports:
* Modbus TCP (MBAP framing): ``start_tcp`` (the oven);
* Modbus RTU framing over raw TCP, like a serial device server:
  ``start_rtu_tcp`` -> ``socket://HOST:PORT`` (the cleaner);
* Modbus RTU on a pty: ``start_rtu_pty`` -> ``/dev/pts/N``. pymodbus can only
  open a serial *path* (that would be the client's side of the pty), so the
  pty master is bridged with ``loop.add_reader`` to an internal RTU-over-TCP
  server on 127.0.0.1.

Faults (``sim.faults.FaultPlan``): ``busy`` answers exception 06 without
touching the model; ``delay`` holds the answer ``delay_s`` wall seconds;
``drop`` swallows the answer; ``corrupt`` damages one byte of it; scheduled
alarms and the cleaner's door are handed to the model at construction.
Requests are logged at DEBUG and the model's state changes and alarms at INFO
on logger ``sim.<name>``, the latter once the answer has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import tty
from collections.abc import Callable
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from sim.faults import FaultPlan
from sim.modbus_map import FUNCTION_TABLES, Refusal, RegisterModel, Table

# Bit count of the coil / discrete-input read being served (see module docstring).
_bit_read_count: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "bit_read_count", default=None
)


class _PassesBitCount:
    """Mixin for bit-read requests: let the action see how many bits were asked for."""

    count: int

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        token = _bit_read_count.set(self.count)
        try:
            return await super().datastore_update(context, device_id)  # type: ignore[misc]
        finally:
            _bit_read_count.reset(token)


class _ReadCoils(_PassesBitCount, ReadCoilsRequest):
    pass


class _ReadDiscreteInputs(_PassesBitCount, ReadDiscreteInputsRequest):
    pass


# Value of the FC 05 write being served: pymodbus keeps only ``bool(value)``.
_coil_write_value: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "coil_write_value", default=None
)
COIL_OFF, COIL_ON = 0x0000, 0xFF00  # the only values FC 05 takes (Modbus application protocol)


class _WriteSingleCoil(WriteSingleCoilRequest):
    """FC 05 that lets the action see the value as sent."""

    value = COIL_OFF

    def decode(self, data: bytes) -> None:
        super().decode(data)
        self.value = int.from_bytes(data[2:4], "big")

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        token = _coil_write_value.set(self.value)
        try:
            return await super().datastore_update(context, device_id)
        finally:
            _coil_write_value.reset(token)


class _UnknownFunction(ModbusPDU):
    """A function code pymodbus has no class for: exception 01. Without a class the RTU
    framer cannot find such a frame at all and the request would get silence."""

    @classmethod
    def calculateRtuFrameSize(cls, data: bytes) -> int:
        # Its length is unknown: the frame ends where its CRC checks (a serial line ends it
        # by silence). With no such end the framer drops the bytes as garbage.
        for size in range(FramerRTU.MIN_SIZE, len(data) + 1):
            if FramerRTU.check_CRC(data[:size - 2], int.from_bytes(data[size - 2:size], "big")):
                return size
        return len(data)

    def decode(self, data: bytes) -> None:
        pass  # whatever follows the function code: the answer is 01 anyway

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_FUNCTION)


_KNOWN_FUNCTIONS = set(DecodePDU(is_server=True).list_function_codes())
_UNKNOWN_FUNCTIONS: list[type[ModbusPDU]] = [
    type(f"_UnknownFunction{code:02X}", (_UnknownFunction,), {"function_code": code})
    for code in range(1, 0x80) if code not in _KNOWN_FUNCTIONS
]
_CUSTOM_PDUS: list[type[ModbusPDU]] = [
    _ReadCoils, _ReadDiscreteInputs, _WriteSingleCoil, *_UNKNOWN_FUNCTIONS]


class _RequestHandler(ServerRequestHandler):
    """pymodbus's handler of one connection, handing each request on as a task.

    pymodbus hands a decoded request to its loop with ``run_coroutine_threadsafe``, from
    the loop's own thread: a wake-up through the loop's self-pipe (two system calls and a
    loop turn) and a concurrent future on every request, about a quarter of the
    simulator's CPU per request. A task on the same loop runs the same ``handle_request``.
    """

    def handle_later(self) -> None:
        task = self.loop.create_task(self.handle_request())
        _answering.add(task)  # the loop holds tasks only weakly
        task.add_done_callback(_answered)


_answering: set[asyncio.Task[None]] = set()


def _answered(task: asyncio.Task[None]) -> None:
    _answering.discard(task)
    if not task.cancelled():
        task.exception()  # as run_coroutine_threadsafe's future took it: nobody reads it


class _ToolModbusServer(ModbusTcpServer):
    """pymodbus's TCP server with the handler above for each connection."""

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


_BIT_TABLES = (Table.COILS, Table.DISCRETE_INPUTS)
_TABLE_ORDER = (Table.COILS, Table.DISCRETE_INPUTS, Table.HOLDING, Table.INPUT)  # SimDevice tuple


def _table_span(model: RegisterModel, table: Table) -> int:
    """Addresses pymodbus must hold for a table: everything up to the model's highest one."""
    span = model.register_span.get(table, 0)
    if table in _BIT_TABLES:
        return max(16, -(-span // 16) * 16)
    return max(1, span)


class ModbusToolServer:
    """A tool model served over Modbus. Start one or more listeners; ``await stop()`` ends all."""

    default_unit = 1

    def __init__(self, model: RegisterModel, clock: Any, *, name: str,
                 faults: FaultPlan | None = None, unit_id: int | None = None) -> None:
        self.model = model
        self.clock = clock
        self.name = name
        self.unit_id = self.default_unit if unit_id is None else unit_id
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"{name}: Modbus unit id must be 1-247, got {self.unit_id}")
        self.faults = faults if faults is not None else FaultPlan()
        self.log = logging.getLogger(f"sim.{name}")
        apply_plan = getattr(model, "apply_fault_plan", None)
        if apply_plan is not None:
            apply_plan(self.faults, tool=name)
        self._servers: list[ModbusTcpServer] = []
        self._request_function = 0  # of the last request received (see _trace_pdu)
        self._bridges: list[_PtyBridge] = []
        self._closing = asyncio.Event()
        self._held = 0  # answers held back by a delay fault
        self._released = asyncio.Event()
        self._released.set()

    @property
    def held_answers(self) -> int:
        """Answers a delay fault is holding back right now."""
        return self._held

    # --- listeners -------------------------------------------------------------------------------

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Modbus TCP on ``host:port`` (0 = any free port); returns the bound address."""
        return await self._listen(host, port, FramerType.SOCKET)

    async def start_rtu_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Modbus RTU frames over a raw TCP socket; returns the pyserial URL ``socket://H:P``."""
        bound_host, bound_port = await self._listen(host, port, FramerType.RTU)
        return f"socket://{bound_host}:{bound_port}"

    async def start_rtu_pty(self) -> str:
        """Modbus RTU on a new pty; returns the device path a serial client opens."""
        host, port = await self._listen("127.0.0.1", 0, FramerType.RTU)
        bridge = _PtyBridge(self.log)
        try:
            path = await bridge.open(host, port)
        except BaseException:
            await bridge.close()
            raise
        self._bridges.append(bridge)
        self.log.info("%s: Modbus RTU on %s (unit %d)", self.name, path, self.unit_id)
        return path

    async def stop(self) -> None:
        """Close every listener, connection, pty and held answer."""
        self._closing.set()
        await self._released.wait()  # held answers return at once once closing is set
        for bridge in self._bridges:
            await bridge.close()
        self._bridges.clear()
        for server in self._servers:
            await server.shutdown()
        self._servers.clear()
        # Connection sockets close in callbacks the transports have just scheduled: let them run.
        await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusToolServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self, host: str, port: int, framer: FramerType) -> tuple[str, int]:
        rtu = framer is FramerType.RTU
        self._closing.clear()  # listening again after a stop (the tool back on the network)
        server = _ToolModbusServer(
            self._devices(),
            framer=framer,
            address=(host, port),
            trace_packet=partial(self._trace_packet, rtu),
            trace_pdu=self._trace_pdu,
            custom_pdu=_CUSTOM_PDUS,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus: "Could not start listen"
            raise OSError(f"{self.name}: cannot listen on {host}:{port} ({exc})") from None
        self._servers.append(server)
        bound = server.transport.sockets[0].getsockname()  # type: ignore[attr-defined]
        kind = "Modbus RTU over TCP" if rtu else "Modbus TCP"
        self.log.info("%s: %s on %s:%d (unit %d)", self.name, kind, bound[0], bound[1],
                      self.unit_id)
        return bound[0], bound[1]

    def _devices(self) -> list[SimDevice]:
        blocks: list[list[SimData]] = []
        for table in _TABLE_ORDER:
            span = _table_span(self.model, table)
            if table in _BIT_TABLES:
                blocks.append([SimData(address=0, values=[False] * span, datatype=DataType.BITS)])
            else:
                blocks.append([SimData(address=0, count=span, datatype=DataType.REGISTERS)])
        tool = SimDevice(id=self.unit_id, simdata=tuple(blocks),  # type: ignore[arg-type]
                         action=self._action)
        # Unit id 0 catches requests for any other unit: no such device behind this address.
        others = SimDevice(id=0, simdata=[SimData(address=0, count=65536,
                                                  datatype=DataType.REGISTERS)],
                           action=self._other_unit)
        return [tool, others]

    # --- every request passes here ---------------------------------------------------------------

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None
                      ) -> ExcCodes | None:
        table = FUNCTION_TABLES.get(function_code)
        if table is None or function_code not in self.model.function_codes:
            self.log.debug("%s: function code %d not supported", self.name, function_code)
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is None and function_code in (5, 6):
            return None  # pymodbus reads back a single write for its echo: echo what was written
        if function_code == 5 and _coil_write_value.get() not in (None, COIL_OFF, COIL_ON):
            self.log.debug("%s: coil value %#06x is neither ON nor OFF", self.name,
                           _coil_write_value.get())
            return ExcCodes.ILLEGAL_VALUE  # checked before the address, as Modbus orders it
        plan = self.faults
        if plan.roll(plan.busy):
            self.log.debug("%s: fault: busy", self.name)
            return ExcCodes.DEVICE_BUSY
        delayed = plan.roll(plan.delay)  # the answer held, once the tool has acted on it
        answer: ExcCodes | None = None
        now = self.clock.now()
        try:
            if set_values is not None:
                self.model.write(table, address, list(set_values), now)
            elif table in _BIT_TABLES:
                bits = _bit_read_count.get() or 1
                values = self.model.read(table, address, bits, now)
                _put_bits(registers, address // 16 - start_address, address % 16, values)
            else:
                values = self.model.read(table, address, count, now)
                offset = address - start_address
                registers[offset:offset + count] = [int(v) for v in values]
        except Refusal as refusal:
            self.log.debug("%s: %s", self.name, refusal)
            answer = ExcCodes(refusal.code)
        finally:
            events = self.model.drain_events()
            if events:  # logged once the answer is out: a line costs 25 us, a LOAD two
                asyncio.get_running_loop().call_soon(self._log_events, events)
        if delayed:
            # The reply is late, not the request: what it did is done now, and a request
            # sent after it (a probe after the client's timeout) sees it, as a tool that
            # takes one connection's requests in order shows them (docs/protocols.md).
            self.log.debug("%s: fault: answer held %.2f s", self.name, plan.delay_s)
            await self._hold(plan.delay_s)
        return answer

    def _log_events(self, events: list[tuple[float, str]]) -> None:
        for at, text in events:
            self.log.info("%s t=%.0f s: %s", self.name, at, text)

    async def _other_unit(self, *_: Any) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _hold(self, seconds: float) -> None:
        self._held += 1
        self._released.clear()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._closing.wait()
        finally:
            self._held -= 1
            if not self._held:
                self._released.set()

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.log.debug("%s: request %s", self.name, pdu)
            return pdu
        function_code = pdu.function_code & 0x7F
        if function_code == 0 and isinstance(pdu, ExceptionResponse):
            pdu = self._refuse_undecoded(pdu)
            function_code = pdu.function_code & 0x7F
        if function_code not in self.model.function_codes:
            # pymodbus answers some function codes itself (08 diagnostics, 11 and 12 the comm
            # event counter and log, 17 report server id, 43 device identification), never
            # asking ``_action``; the tool supports only those its spec lists: exception 01.
            self.log.debug("%s: function code %d not supported", self.name, function_code)
            return ExceptionResponse(function_code, ExcCodes.ILLEGAL_FUNCTION,
                                     device_id=pdu.dev_id, transaction=pdu.transaction_id)
        return pdu

    def _refuse_undecoded(self, pdu: ExceptionResponse) -> ExceptionResponse:
        """pymodbus's answer to a request it could not decode (function 0, code 01), made
        the Modbus one: a function the tool has is 03 (its quantity is 0 or over 125
        registers / 2000 bits, or the PDU is short); any other function is 01."""
        function_code = self._request_function
        if function_code not in self.model.function_codes:
            code = ExcCodes.ILLEGAL_FUNCTION
        elif pdu.dev_id != self.unit_id:
            code = ExcCodes.GATEWAY_NO_RESPONSE  # as for any request to another unit
        else:
            code = ExcCodes.ILLEGAL_VALUE
        self.log.debug("%s: undecodable request, function code %d: exception %d",
                       self.name, function_code, code)
        return ExceptionResponse(function_code, code, device_id=pdu.dev_id,
                                 transaction=pdu.transaction_id)

    def _trace_packet(self, rtu: bool, sending: bool, data: bytes) -> bytes:
        if not sending:
            # pymodbus answers an undecodable request before this method is called again
            # (in the same callback), so this is that request's function code.
            at = 1 if rtu else 7  # after the unit id (RTU) or the MBAP header (TCP)
            if len(data) > at:
                self._request_function = data[at]
            return data
        if not data:
            return data
        if rtu and data[0] != self.unit_id:
            return b""  # on a serial bus another unit's request gets no answer from this one
        plan = self.faults
        if plan.roll(plan.drop):
            self.log.debug("%s: fault: answer dropped", self.name)
            return b""
        if plan.roll(plan.corrupt):
            damaged = bytearray(data)
            damaged[plan.rng.randrange(len(damaged))] ^= 0xFF
            self.log.debug("%s: fault: answer corrupted", self.name)
            return bytes(damaged)
        return data


def _put_bits(words: list[int], first_word: int, bit_offset: int, values: list[Any]) -> None:
    """Write ``values`` as bits into 16-bit words (bit 0 first), from bit ``bit_offset``."""
    for k, value in enumerate(values):
        word, bit = first_word + (bit_offset + k) // 16, (bit_offset + k) % 16
        if value:
            words[word] |= 1 << bit
        else:
            words[word] &= ~(1 << bit) & 0xFFFF


class OvenServer(ModbusToolServer):
    """The RF-10N reflow oven: Modbus TCP, unit 1."""

    default_unit = 1


class CleanerServer(ModbusToolServer):
    """The FC-1 flux cleaner or FC-2 cleaner/stripper: Modbus RTU (raw TCP or a pty), unit 2."""

    default_unit = 2


class _PtyBridge:
    """Bytes between a pty master and a TCP connection to an RTU-over-TCP listener."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._loop = asyncio.get_running_loop()
        self._master = -1
        self._slave = -1
        self._transport: asyncio.Transport | None = None

    async def open(self, host: str, port: int) -> str:
        self._master, self._slave = os.openpty()
        # Raw: binary frames pass untouched (no echo, no CR/LF mapping). The slave stays open
        # here too, so the master never sees a hang-up while no client has the port open.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._transport, _ = await self._loop.create_connection(
            partial(_BridgeProtocol, self._to_pty), host, port)
        self._loop.add_reader(self._master, self._from_pty)
        return os.ttyname(self._slave)

    def _from_pty(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.log.debug("pty read failed: %s", exc)
            return
        if data and self._transport is not None:
            self._transport.write(data)

    def _to_pty(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
        except OSError as exc:  # nobody reading and the pty buffer full: the line drops it
            self.log.debug("pty write failed: %s", exc)

    async def close(self) -> None:
        if self._master >= 0:
            self._loop.remove_reader(self._master)
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1


class _BridgeProtocol(asyncio.Protocol):
    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self._deliver = deliver

    def data_received(self, data: bytes) -> None:
        self._deliver(data)

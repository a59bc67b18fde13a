"""Request/response to one Modbus tool: the only driver module that imports pymodbus.

``ModbusLink.tcp(...)`` reaches a Modbus TCP tool; ``ModbusLink.rtu(url, ...)``
reaches an RTU tool through any pyserial URL (a device, a pty) or, for
``socket://HOST:PORT``, a serial device server in raw TCP mode (RTU frames
with CRC carried over a TCP connection).

What the link does so the drivers need not:

* every request has a reply timeout and a bounded number of attempts; a reply
  that does not match the request (a late reply to an earlier one) or that
  cannot be decoded is dropped and the request sent again;
* the link is the one owner of resends, but a write is judged on the tool's
  word: after a lost reply it asks a probe - the registers read back, or for a
  command the driver's "did it happen?" - before sending again, before calling
  a refusal (exception 06) a failure, and before giving up;
* a lost connection (the tool restarted) is re-opened by the next request;
* exception responses become ``IllegalAddress`` / ``IllegalValue`` /
  ``DeviceBusy`` naming the tool and the register; no usable reply becomes
  ``LinkError``;
* reads longer than one PDU allows (125 registers, 2000 bits) are split;
* one request on the wire at a time, an urgent task's first (``drivers/turns.py``).

pymodbus's own retries and background reconnection are switched off
(``retries=0``, ``reconnect_delay=0``) so that exactly one policy - this one -
decides, and ``close()`` leaves no tasks behind.

``drivers/mapped_registers.py`` adds named access through a register map on
top of a link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu import bit_message as pdu_bit
from pymodbus.pdu import register_message as pdu_reg
from pymodbus.transport import CommType

from drivers.errors import DeviceBusy, LinkError, ToolError, modbus_error
from drivers.modbus_wire import (
    Exchange,
    MemoryTransport,
    check_span,
    check_words,
    is_pty,
    released,
    socket_address,
)
from drivers.turns import Turns

# pymodbus logs every timeout at ERROR; the link reports them itself as LinkError.
# A NullHandler keeps them off stderr unless the application configures logging.
logging.getLogger("pymodbus").addHandler(logging.NullHandler())

Trace = Callable[[str, str], None]  # ('>' or '<', text)
Probe = Callable[[], Awaitable[bool]]  # "was it carried out?", asked of the tool
E = TypeVar("E", bound=ToolError)
Client = AsyncModbusTcpClient | AsyncModbusSerialClient

MAX_READ_REGISTERS = 125  # Modbus PDU limit for FC 03/04
MAX_READ_BITS = 2000  # for FC 01/02
MAX_WRITE_REGISTERS = 123  # for FC 16
BUSY_PAUSE_S = 0.02  # wall seconds before re-asking a tool that said busy (x attempt)
# pymodbus waits for a connection as long as for a reply (one ``timeout``). A simulated
# line's reply timeout shrinks to 0.1 s with its scale, and a connect to the simulator on
# a loaded 2-core machine once took longer (the line did not open). A connect refused
# fails at once either way; one not answered (a device server away) waits this long.
CONNECT_TIMEOUT_MIN_S = 1.0

FC_READ_COILS, FC_READ_DISCRETE, FC_READ_HOLDING, FC_READ_INPUT = 1, 2, 3, 4
FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_REGISTERS = 5, 6, 16


def after_lost_reply(exc: BaseException) -> bool:
    """True if a failed request had been sent before without an answer.

    The earlier copy may have been carried out: a command whose reply was lost
    and whose repeat the tool refuses as not allowed in its new state
    (DeviceBusy), or a command the link would not repeat (LinkError). The
    driver asks the tool what happened before calling it a failure.
    """
    return bool(getattr(exc, "after_lost_reply", False))


class ModbusLink:
    """One Modbus tool (one unit id) over TCP or RTU. Open before use; close when done."""

    def __init__(
        self,
        make_client: Callable[[], Client],
        *,
        tool: str,
        unit: int,
        endpoint: str,
        timeout_s: float = 0.5,
        retries: int = 3,
        trace: Trace | None = None,
    ) -> None:
        if not 0 <= unit <= 247:
            raise ValueError(f"{tool}: Modbus unit id must be 0-247, got {unit}")
        if not timeout_s > 0:
            raise ValueError(f"{tool}: reply timeout must be > 0 s, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"{tool}: retries must be >= 0, got {retries}")
        self._make_client = make_client
        self.tool = tool
        self.unit = unit
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.trace = trace
        self._client: Client | None = None
        self._lock = Turns()  # arrival order, but a task marked urgent goes first
        self.garbled_replies = 0  # replies that could not be decoded (dropped, asked again)

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        *,
        tool: str,
        unit: int,
        timeout_s: float = 0.5,
        retries: int = 3,
        trace: Trace | None = None,
    ) -> ModbusLink:
        """A Modbus TCP tool."""

        def make() -> Client:
            return AsyncModbusTcpClient(
                host, port=port, name=tool, timeout=_connect_timeout(timeout_s), retries=0,
                reconnect_delay=0,
            )

        return cls(make, tool=tool, unit=unit, endpoint=f"{host}:{port}", timeout_s=timeout_s,
                   retries=retries, trace=trace)

    @classmethod
    def rtu(
        cls,
        url: str,
        *,
        tool: str,
        unit: int,
        baudrate: int = 19200,
        parity: str = "E",
        timeout_s: float = 0.5,
        retries: int = 3,
        trace: Trace | None = None,
    ) -> ModbusLink:
        """A Modbus RTU tool on a serial port, a pty, or ``socket://HOST:PORT``."""
        if parity not in ("N", "E", "O"):
            raise ValueError(f"{tool}: parity must be N, E or O, got {parity!r}")
        if url.startswith("socket://"):
            host, port = socket_address(url, tool)

            # RTU frames (with CRC) over plain TCP, as a serial device server passes them on.
            def make() -> Client:
                return AsyncModbusTcpClient(
                    host, port=port, framer=FramerType.RTU, name=tool,
                    timeout=_connect_timeout(timeout_s), retries=0, reconnect_delay=0,
                )
        else:
            if not url.strip():
                raise ValueError(
                    f"{tool}: empty serial port; expected a device, pty path or socket://HOST:PORT"
                )
            if is_pty(url):
                # A pty carries bytes, not bits on a wire: parity means nothing there, and
                # recent Linux kernels refuse to set it on one.
                parity = "N"

            def make() -> Client:
                return AsyncModbusSerialClient(
                    url, framer=FramerType.RTU, baudrate=baudrate, bytesize=8, parity=parity,
                    stopbits=1, name=tool, timeout=_connect_timeout(timeout_s), retries=0,
                    reconnect_delay=0,
                )

        return cls(make, tool=tool, unit=unit, endpoint=url, timeout_s=timeout_s,
                   retries=retries, trace=trace)

    @classmethod
    def in_memory(
        cls,
        exchange: Exchange,
        *,
        tool: str,
        unit: int,
        framer: str = "tcp",
        timeout_s: float = 0.05,
        retries: int = 3,
        trace: Trace | None = None,
    ) -> ModbusLink:
        """A tool that is a function: each whole request ADU the real pymodbus client frames
        is handed to ``exchange``, whose bytes (or None: silence) come back as the reply.

        No socket, no pty: for byte-exact exchange tests (a list of request/reply ADUs) and
        dry runs. ``framer`` is ``tcp`` (MBAP header) or ``rtu`` (CRC, as on the FC-1's bus).
        """
        if framer not in ("tcp", "rtu"):
            raise ValueError(f"{tool}: framer must be tcp or rtu, got {framer!r}")

        def make() -> Client:
            client = AsyncModbusTcpClient(
                "in-memory", port=0, name=tool, timeout=timeout_s, retries=0, reconnect_delay=0,
                framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
            )
            ctx = client.ctx

            async def create() -> tuple[asyncio.Transport, Any]:
                transport = MemoryTransport(ctx, exchange)
                ctx.connection_made(transport)
                return transport, ctx

            ctx.call_create = create
            return client

        return cls(make, tool=tool, unit=unit, endpoint=f"in-memory ({framer})",
                   timeout_s=timeout_s, retries=retries, trace=trace)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client = self._make_client()
        self._guard_decoding(self._client)
        try:
            connected = await self._client.connect()
        except Exception as exc:  # e.g. termios.error: a port that refuses its settings
            await self.close()
            raise LinkError(self.tool, f"cannot open {self.endpoint}: {exc}") from None
        if not connected:
            await self.close()
            raise LinkError(self.tool, f"cannot connect to {self.endpoint}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        transport = client.ctx.transport
        client.close()
        await released(transport)

    async def __aenter__(self) -> ModbusLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"ModbusLink({self.tool} at {self.endpoint} unit {self.unit})"

    # --- reads -----------------------------------------------------------------------------------

    async def read_holding(self, address: int, count: int, *, what: str) -> list[int]:
        return await self._read_words(FC_READ_HOLDING, "read_holding", address, count, what)

    async def read_input(self, address: int, count: int, *, what: str) -> list[int]:
        return await self._read_words(FC_READ_INPUT, "read_input", address, count, what)

    async def read_coils(self, address: int, count: int, *, what: str) -> list[bool]:
        return await self._read_bits(FC_READ_COILS, "read_coils", address, count, what)

    async def read_discrete(self, address: int, count: int, *, what: str) -> list[bool]:
        return await self._read_bits(FC_READ_DISCRETE, "read_discrete", address, count, what)

    async def read(self, table: str, address: int, count: int, *, what: str) -> list[int]:
        """Any table by name (holding | input | coil | discrete); bits come back as 0/1."""
        if table == "holding":
            return await self.read_holding(address, count, what=what)
        if table == "input":
            return await self.read_input(address, count, what=what)
        if table == "coil":
            return [int(b) for b in await self.read_coils(address, count, what=what)]
        if table == "discrete":
            return [int(b) for b in await self.read_discrete(address, count, what=what)]
        raise ValueError(f"{self.tool}: {what}: no Modbus table {table!r}")

    async def _read_words(self, fc: int, op: str, address: int, count: int, what: str) -> list[int]:
        check_span(self.tool, what, address, count)
        out: list[int] = []
        for start in range(address, address + count, MAX_READ_REGISTERS):
            n = min(MAX_READ_REGISTERS, address + count - start)

            def all_words(r: ModbusPDU, n: int = n) -> bool:
                return r.function_code == fc and len(r.registers) == n

            reply = await self._request(
                fc, op, f"{start}..{start + n - 1}", what, self._reader(fc, start, n), all_words
            )
            assert reply is not None  # only a request with a probe ends without a reply
            out.extend(reply.registers)
        return out

    async def _read_bits(self, fc: int, op: str, address: int, count: int, what: str) -> list[bool]:
        check_span(self.tool, what, address, count)
        out: list[bool] = []
        for start in range(address, address + count, MAX_READ_BITS):
            n = min(MAX_READ_BITS, address + count - start)

            def all_bits(r: ModbusPDU, n: int = n) -> bool:
                return r.function_code == fc and len(r.bits) >= n

            def shown(r: ModbusPDU, n: int = n) -> str:  # the bits asked for, not the padding
                return str([int(b) for b in r.bits[:n]])

            reply = await self._request(
                fc, op, f"{start}..{start + n - 1}", what, self._reader(fc, start, n), all_bits,
                shown=shown,
            )
            assert reply is not None
            out.extend(bool(b) for b in reply.bits[:n])
        return out

    def _reader(
        self, fc: int, address: int, count: int
    ) -> Callable[[Client], Awaitable[ModbusPDU]]:
        unit = self.unit
        if fc == FC_READ_HOLDING:
            kind: type[ModbusPDU] = pdu_reg.ReadHoldingRegistersRequest
        elif fc == FC_READ_INPUT:
            kind = pdu_reg.ReadInputRegistersRequest
        elif fc == FC_READ_COILS:
            kind = pdu_bit.ReadCoilsRequest
        else:
            kind = pdu_bit.ReadDiscreteInputsRequest
        return lambda c: self._execute(c, kind(address=address, count=count, dev_id=unit))

    # --- writes ----------------------------------------------------------------------------------

    async def write_register(
        self, address: int, value: int, *, what: str, done: Probe | None = None
    ) -> None:
        """One holding register. ``done`` is the tool's word for a command register (which
        reads back 0): after a lost reply the link asks it before sending again, and a 06
        is the tool's refusal, reported at once (the spec: "not allowed in the current
        state"), not a busy tool to ask again. Without it, the register is read back."""
        check_span(self.tool, what, address, 1)
        check_words(self.tool, what, [value])
        unit = self.unit
        await self._request(
            FC_WRITE_REGISTER, "write_register", f"{address} = {value}", what,
            lambda c: self._execute(c, pdu_reg.WriteSingleRegisterRequest(
                address=address, registers=[value], dev_id=unit)),
            lambda r: r.function_code == FC_WRITE_REGISTER and r.address == address
            and list(r.registers[:1]) == [value],
            done=done or self._holds(address, [value], what),
            refusal_is_final=done is not None,
        )

    async def write_registers(self, address: int, values: Sequence[int], *, what: str) -> None:
        values = list(values)
        check_span(self.tool, what, address, len(values))
        if len(values) > MAX_WRITE_REGISTERS:
            raise ValueError(
                f"{self.tool}: {what}: at most {MAX_WRITE_REGISTERS} registers per write"
            )
        check_words(self.tool, what, values)
        unit = self.unit
        await self._request(
            FC_WRITE_REGISTERS, "write_registers",
            f"{address}..{address + len(values) - 1} = {values}", what,
            lambda c: self._execute(c, pdu_reg.WriteMultipleRegistersRequest(
                address=address, registers=values, dev_id=unit)),
            lambda r: r.function_code == FC_WRITE_REGISTERS and r.address == address
            and r.count == len(values),
            done=self._holds(address, values, what),
        )

    async def write_coil(self, address: int, value: bool, *, what: str) -> None:
        check_span(self.tool, what, address, 1)
        unit, value = self.unit, bool(value)

        async def holds() -> bool:
            return await self.read_coils(address, 1, what=what) == [value]

        await self._request(
            FC_WRITE_COIL, "write_coil", f"{address} = {int(value)}", what,
            lambda c: self._execute(c, pdu_bit.WriteSingleCoilRequest(
                address=address, bits=[value], dev_id=unit)),
            lambda r: r.function_code == FC_WRITE_COIL and r.address == address,
            done=holds,
        )

    def _holds(self, address: int, values: list[int], what: str) -> Probe:
        """A write's probe: the registers read back as written."""

        async def holds() -> bool:
            return await self.read_holding(address, len(values), what=what) == values

        return holds

    # --- the one request loop --------------------------------------------------------------------

    async def _request(
        self,
        fc: int,
        op: str,
        span: str,
        what: str,
        send: Callable[[Client], Awaitable[ModbusPDU]],
        matches: Callable[[ModbusPDU], bool],
        *,
        done: Probe | None = None,
        refusal_is_final: bool = False,
        shown: Callable[[ModbusPDU], str] | None = None,
    ) -> ModbusPDU | None:
        """Send until the tool answers, at most ``retries + 1`` times; the reply, or None when
        ``done`` said that a request whose reply was lost had been carried out.

        ``done`` is the tool's word for a request that must not simply be sent again: after
        a lost or garbled reply it is asked before any resend, and before a refusal or a
        silence is called a failure.
        """
        trace = self.trace
        if trace:
            trace(">", f"{op} {span} unit {self.unit} ({what})")
        lost_reply = False  # an earlier copy may have been carried out
        problem = ""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            if lost_reply and done is not None and await self._happened(done, what, trace):
                return None  # the earlier copy was carried out; its reply was lost
            async with self._lock:  # one request on the wire at a time; probes go between
                client = self._client
                if client is None:
                    raise LinkError(self.tool, f"{what}: link to {self.endpoint} is closed")
                reply: ModbusPDU | None = None
                if not client.connected and not await _connect(client):
                    problem = f"cannot connect to {self.endpoint}"
                else:
                    try:
                        reply = await send(client)
                    except ModbusException:  # nothing decodable within the timeout
                        reply = None
                    lost_reply = lost_reply or reply is None
                    problem = f"no reply within {self.timeout_s:g} s"
            if reply is None:
                if not client.connected and not last:
                    await asyncio.sleep(self.timeout_s / 5)  # the tool may be restarting
            elif reply.isError() and (reply.function_code & 0x7F) != fc:
                problem, lost_reply = "a garbled reply (exception to another function)", True
                self.garbled_replies += 1
            elif reply.isError():
                error = modbus_error(self.tool, what, reply.exception_code)
                if isinstance(error, DeviceBusy) and lost_reply and done is not None:
                    # Refused now, perhaps because the lost copy already did it: the tool's
                    # word decides, once - done, or a refusal to report (not to resend).
                    if await self._happened(done, what, trace):
                        return None
                    last = True
                if not isinstance(error, DeviceBusy) or last or refusal_is_final:
                    if trace:
                        trace("<", f"exception {reply.exception_code:02d} {error.meaning}")
                    raise _flagged(error, lost_reply)
                problem = "tool busy"
                await asyncio.sleep(BUSY_PAUSE_S * (attempt + 1))
            elif not matches(reply):
                problem, lost_reply = "a reply that does not match the request", True
            else:
                if trace:
                    trace("<", shown(reply) if shown else _shown(reply))
                return reply
            if trace:
                then = "asking the tool" if lost_reply and done else "asking again"
                trace("<", problem if last and not (lost_reply and done) else f"{problem}; {then}")
        if lost_reply and done is not None and await self._happened(done, what, trace):
            return None
        raise _flagged(
            LinkError(
                self.tool,
                f"{what}: {problem} ({op} {span} unit {self.unit} at {self.endpoint}, "
                f"{self.retries + 1} attempt{'s' if self.retries else ''}"
                f"{', and the tool says it was not done' if lost_reply and done else ''})",
            ),
            lost_reply,
        )

    async def _execute(self, client: Client, request: ModbusPDU) -> ModbusPDU:
        """One attempt of pymodbus's ``execute`` (its own retries are 0 here), waiting on the
        reply future itself under a loop timer.

        ``execute`` waits through ``asyncio.wait_for``, whose second future costs a loop turn
        per request: on the oven's zone read a tenth of the round trip. The frames, the
        transaction and unit id checks, and the count of unanswered requests after which
        pymodbus drops a silent TCP connection are pymodbus's own, kept as they are. The
        link's lock already keeps one request on the wire, so pymodbus's lock is not taken.
        """
        ctx = client.ctx
        if not ctx.transport:
            raise ConnectionException(f"Not connected[{client!s}]")
        request.transaction_id = ctx.getNextTID()
        ctx.recv_buffer = b""
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[ModbusPDU] = loop.create_future()
        ctx.response_future = waiting
        ctx.pdu_send(request)
        timer = loop.call_at(loop.time() + self.timeout_s, _expire, waiting)
        try:
            response = await waiting
        except TimeoutError:
            # pymodbus's own reckoning: a few silences in a row and a TCP tool is taken
            # for gone (the connection is closed; the next request opens it again).
            if ctx.count_until_disconnect < 0:
                if ctx.comm_params.comm_type != CommType.SERIAL:
                    ctx.connection_lost(TimeoutError("Server not responding"))
                raise ModbusIOException("no response, connection closed") from None
            ctx.count_until_disconnect -= 1
            raise ModbusIOException("no response") from None
        finally:
            timer.cancel()
        ctx.count_until_disconnect = ctx.max_until_disconnect
        if request.dev_id and response.dev_id != request.dev_id:
            raise ModbusIOException(f"reply from unit {response.dev_id}, not {request.dev_id}")
        if response.transaction_id and response.transaction_id != request.transaction_id:
            raise ModbusIOException(
                f"reply to transaction {response.transaction_id}, not {request.transaction_id}"
            )
        return response

    async def _happened(self, done: Probe, what: str, trace: Trace | None) -> bool:
        """Ask the tool whether a request whose reply was lost was carried out."""
        try:
            happened = await done()
        except LinkError as exc:
            raise _flagged(
                LinkError(self.tool, f"{what}: reply lost, and the tool could not be asked "
                          f"whether it was carried out ({exc.detail})"),
                True,
            ) from None
        if trace:
            trace("<", f"reply lost; the tool says it was {'' if happened else 'not '}carried out")
        return happened

    def _guard_decoding(self, client: Client) -> None:
        """A reply pymodbus cannot decode must end the wait for it, not the connection.

        pymodbus 3.16 decodes replies inside ``data_received``; a frame whose PDU it cannot
        decode raises ``ModbusIOException`` there, which asyncio reports as "Fatal error:
        protocol.data_received() call failed" with a traceback, and then it closes the
        transport while the request waits out its timeout. Here the undecodable bytes are
        dropped and the waiting request fails at once as garbled, so the link asks again.
        """
        ctx = client.ctx
        decode = ctx.callback_data

        def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
            try:
                return decode(data, addr)
            except ModbusException as exc:
                self.garbled_replies += 1
                waiting = ctx.response_future
                if not waiting.done():
                    waiting.set_exception(ModbusIOException(f"garbled reply: {exc}"))
                return len(data)  # nothing in what was buffered can be trusted

        ctx.callback_data = callback_data  # type: ignore[method-assign]


# --- helpers ------------------------------------------------------------------------------------


def _connect_timeout(reply_timeout_s: float) -> float:
    return max(reply_timeout_s, CONNECT_TIMEOUT_MIN_S)


def _expire(waiting: asyncio.Future[Any]) -> None:
    if not waiting.done():
        waiting.set_exception(TimeoutError())


async def _connect(client: Client) -> bool:
    try:
        return await client.connect()
    except Exception:  # a port that vanished or refuses its settings: not there now
        return False


def _flagged(error: E, lost_reply: bool) -> E:
    if lost_reply:
        error.after_lost_reply = True  # type: ignore[attr-defined]
    return error


def _shown(reply: ModbusPDU) -> str:
    if reply.function_code in (FC_READ_HOLDING, FC_READ_INPUT):
        return str(list(reply.registers))
    return "ok"

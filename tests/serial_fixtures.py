"""Test rigs for the HostLink/1 drivers, all over real ptys and sockets.

* ``scripted_tool`` — a ``ScriptedTool`` (tests/scripted.py) speaking HostLink
  frames on a pty or a TCP socket, answering each request frame through a
  test's handler; for link rules the simulator cannot be made to break on
  purpose (stale replies, silence, garbage).
* ``LineNoise`` — a pty relay between a driver and a simulated tool that can
  damage or inject frames on the way, like a bad cable would.
* ``printer`` / ``placer`` fixtures (a ``ToolRig``) and ``printer_line`` /
  ``placer_line`` factories (for a tool with faults or a chosen start state) —
  a driver connected to a simulated tool over a pty and over TCP
  (``socket://``), or, with ``--line-config FILE``, to the real tool of that
  role, first brought to IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from scripted import Answer, ScriptedTool

from drivers.clock import ScaledClock
from drivers.hostlink import FrameExtractor
from drivers.line_config import load_line_config
from drivers.placer import BallPlacer
from drivers.printer import PastePrinter
from drivers.serial_link import HostLinkPort

TIME_SCALE = 2000.0  # tool seconds per wall second against the simulator
LINK_TIMEOUT_S = 0.25  # the simulator answers at once; keeps drop tests quick


class HeldClock:
    """A driver's view of its clock with the reading held still (its sleeps still pass):
    "straight after" is then exactly zero tool seconds, whatever the machine's load (at
    2000x a busy machine's few milliseconds are ten tool seconds). ``advance`` moves it."""

    def __init__(self, clock: Any) -> None:
        self._clock, self._now = clock, clock.now()

    def now(self) -> float:
        return self._now

    def advance(self, tool_seconds: float) -> None:
        self._now += tool_seconds

    async def sleep(self, tool_seconds: float) -> None:
        await self._clock.sleep(tool_seconds)


@contextlib.asynccontextmanager
async def scripted_tool(
    handler: Answer, transport: str = "pty"
) -> AsyncIterator[tuple[ScriptedTool, str]]:
    tool = ScriptedTool(handler, FrameExtractor().feed)
    url = await (tool.start_pty() if transport == "pty" else tool.start_tcp())
    try:
        yield tool, url
    finally:
        await tool.stop()


class LineNoise:
    """A pty relay between a driver and a tool, damaging host frames on request.

    ``on_request(frame) -> bytes`` sees every host frame and returns what goes
    on toward the tool (the frame itself, a damaged copy, or nothing).
    """

    def __init__(self, tool_path: str, on_request: Callable[[bytes], bytes]) -> None:
        self.tool_path = tool_path
        self.on_request = on_request
        self._extractor = FrameExtractor()
        self._fds: list[int] = []

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        tool = os.open(self.tool_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(tool)
        os.set_blocking(master, False)
        self._fds = [master, slave, tool]
        self._master, self._tool = master, tool
        loop.add_reader(master, self._from_host)
        loop.add_reader(tool, self._from_tool)
        return os.ttyname(slave)

    def _from_host(self) -> None:
        with contextlib.suppress(OSError):
            for frame in self._extractor.feed(os.read(self._master, 4096)):
                out = self.on_request(frame)
                if out:
                    os.write(self._tool, out)

    def _from_tool(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, os.read(self._tool, 4096))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            if fd != self._fds[1]:
                loop.remove_reader(fd)
        for fd in self._fds:
            os.close(fd)
        self._fds = []


# --- a driver connected to a simulated (or real) tool ---------------------------------------


@dataclass
class ToolRig:
    """One driver with its open port, and the simulated tool behind it (None on hardware)."""

    driver: Any
    port: HostLinkPort
    clock: Any
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    server: Any = None

    @property
    def simulated(self) -> bool:
        return self.server is not None

    @property
    def model(self) -> Any:
        if self.server is None:
            pytest.skip("needs the simulated tool's model (running against a real tool)")
        return self.server.model

    def now(self) -> float:
        return self.clock.now()

    def sent(self) -> list[bytes]:
        return [f for d, f in self.frames if d == ">"]

    def received(self) -> list[bytes]:
        return [f for d, f in self.frames if d == "<"]


async def bring_to_idle(driver: Any, timeout_s: float = 3600.0) -> None:
    """Abort, clear and unload until a real tool is IDLE with no wafer, or skip the test."""
    from drivers.errors import NakError

    for _ in range(4):
        status = await driver.status()
        state = status.state.value
        if state == "IDLE" and status.wafer_id is None:
            return
        try:
            if state == "ALARM":
                await driver.clear_alarm()
            elif state == "DONE":
                await driver.unload()
            elif state == "READY" or state in ("LOADING", "PRINTING", "FLUXING", "PLACING"):
                await driver.abort()
            await driver.wait_for("IDLE", "DONE", "ALARM", timeout_s=timeout_s)
        except NakError as exc:
            pytest.skip(f"{driver.name} cannot be brought to IDLE: {exc}")
    pytest.skip(f"{driver.name} cannot be brought to IDLE (still {state})")


async def mounted_setup(driver: Any) -> tuple[str, Any]:
    """What a real tool has mounted: the printer's stencil and paste, the mounter's balls
    (alloy, diameter) — the arguments of its CHG."""
    status = await driver.status()
    if isinstance(driver, PastePrinter):
        return status.stencil_id, status.paste_alloy
    return status.ball_alloy, round(status.ball_diameter_um)


async def put_back_setup(driver: Any, setup: tuple[str, Any], name: str,
                         timeout_s: float = 3600.0) -> None:
    """A test that changed a real tool over (CHG) leaves it as the line had it: one
    changeover back (600 s on the printer, 900 s on the mounter); a failure to is the
    test's failure, said plainly."""
    from drivers.errors import ToolError

    if await mounted_setup(driver) == setup:
        return
    try:
        await driver.changeover(*setup)
        await driver.wait_for("IDLE", timeout_s=timeout_s)
    except ToolError as exc:
        pytest.fail(f"{name}: could not change back to {' / '.join(map(str, setup))} after "
                    f"the test ({exc}): change it over on the tool", pytrace=False)
    if await mounted_setup(driver) != setup:
        pytest.fail(f"{name}: changed back to {' / '.join(map(str, setup))} after the test, "
                    f"but it reports {' / '.join(map(str, await mounted_setup(driver)))}",
                    pytrace=False)


_ROLES: dict[str, tuple[type, str]] = {
    "printer": (PastePrinter, "sim.printer:PastePrinterModel"),
    "placer": (BallPlacer, "sim.placer:BallPlacerModel"),
}


class RigFactory:
    """``async with factory(faults=..., seed=...) as rig`` — a driver on a fresh tool."""

    def __init__(self, role: str, transport: str, line_config_path: str | None) -> None:
        self.role, self.transport, self.line_config_path = role, transport, line_config_path

    @contextlib.asynccontextmanager
    async def __call__(
        self,
        *,
        faults: Any = None,
        seed: int = 0,
        timeout_s: float = LINK_TIMEOUT_S,
        retries: int = 3,
        poll_s: float = 2.0,
        noise: Callable[[bytes], bytes] | None = None,
        model_args: dict[str, Any] | None = None,
    ) -> AsyncIterator[ToolRig]:
        driver_cls, model_ref = _ROLES[self.role]
        frames: list[tuple[str, bytes]] = []

        def trace(direction: str, frame: bytes) -> None:
            frames.append((direction, frame))

        if self.line_config_path is not None:  # the real tool of this role
            config = load_line_config(self.line_config_path)
            tools = config.by_role(self.role)
            if not tools:
                pytest.skip(f"{self.line_config_path} names no {self.role}")
            tool = tools[0]
            clock = ScaledClock(config.time_scale)
            port = HostLinkPort(
                str(tool.port), tool=tool.name, baudrate=tool.baudrate or 115200,
                timeout_s=tool.timeout_s, retries=tool.retries, trace=trace,
            )
            async with port:
                driver = driver_cls(port, clock, poll_s=poll_s)
                await bring_to_idle(driver)
                setup = await mounted_setup(driver)
                yield ToolRig(driver, port, clock, frames)
                await bring_to_idle(driver)  # the next test expects an idle, empty tool
                await put_back_setup(driver, setup, tool.name)
            return

        from sim.serial_server import SerialToolServer

        module, cls_name = model_ref.split(":")
        model_cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        clock = ScaledClock(TIME_SCALE)
        name = f"{self.role}-1"
        model = model_cls(seed=seed, **(model_args or {}))
        server = SerialToolServer(model, clock, name=name, faults=faults)
        relay: LineNoise | None = None
        try:
            url = await (server.start_pty() if self.transport == "pty" else server.start_tcp())
            if noise is not None:
                relay = LineNoise(url, noise)
                url = await relay.start()
            port = HostLinkPort(url, tool=name, timeout_s=timeout_s, retries=retries, trace=trace)
            async with port:
                yield ToolRig(driver_cls(port, clock, poll_s=poll_s), port, clock, frames, server)
        finally:
            if relay is not None:
                await relay.stop()
            await server.stop()


@pytest.fixture(params=["pty", "tcp"])
def serial_transport(request: pytest.FixtureRequest, line_config_path: str | None) -> str:
    if line_config_path is not None and request.param != "pty":
        pytest.skip("real tool: the line configuration decides the transport")
    return request.param


@pytest.fixture
def printer_line(serial_transport: str, line_config_path: str | None) -> RigFactory:
    return RigFactory("printer", serial_transport, line_config_path)


@pytest.fixture
def placer_line(serial_transport: str, line_config_path: str | None) -> RigFactory:
    return RigFactory("placer", serial_transport, line_config_path)


@pytest.fixture
async def printer(printer_line: RigFactory) -> AsyncIterator[ToolRig]:
    async with printer_line() as rig:
        yield rig


@pytest.fixture
async def placer(placer_line: RigFactory) -> AsyncIterator[ToolRig]:
    async with placer_line() as rig:
        yield rig

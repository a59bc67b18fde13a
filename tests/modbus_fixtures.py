"""Test rigs for the Modbus drivers: a driver on a simulated tool over a real socket
or pty, or - with ``--line-config FILE`` - on the real tool of that role.

* ``SimOven`` / ``SimCleaner`` (an FC-1, or an FC-2 with ``model=StripperModel()``):
  a simulated tool served by ``sim.modbus_server``
  on the caller's loop, restartable on the same port with the same model (the
  tool "reboots" but keeps its physical state, as a PLC restart would).
* ``oven_under_test`` / ``cleaner_under_test``: ``(driver, sim)`` for the test
  files' ``oven_env`` / ``cleaner_env`` fixtures; ``sim`` is None on real tools,
  and tests that need it are marked ``faults`` (skipped there).

Driver and simulator share one clock object, so tool time agrees exactly.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers.cleaner import FluxCleaner
from drivers.clock import ScaledClock
from drivers.line_config import load_line_config
from drivers.modbus_link import ModbusLink
from drivers.oven import ReflowOven
from drivers.tools import open_tool
from sim.cleaner import CleanerModel
from sim.faults import FaultPlan
from sim.modbus_server import CleanerServer, OvenServer
from sim.oven import OvenModel
from sim.stripper import cleaner_model

TIME_SCALE = 1000.0  # tool seconds per wall second against the simulator
LINK_TIMEOUT_S = 0.25  # the simulator answers at once; keeps fault tests quick
POLL_S = 5.0  # driver poll interval, tool seconds


@dataclass
class SimOven:
    """A simulated RF-10N on Modbus TCP."""

    clock: ScaledClock
    faults: FaultPlan = field(default_factory=FaultPlan)
    model: OvenModel = field(default_factory=OvenModel)
    name: str = "oven-1"
    host: str = "127.0.0.1"
    port: int = 0
    server: OvenServer | None = None

    async def start(self) -> None:
        self.server = OvenServer(self.model, self.clock, name=self.name, faults=self.faults)
        self.host, self.port = await self.server.start_tcp(self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def restart(self) -> None:
        """The server goes away and comes back on the same port with the same model."""
        await self.stop()
        await self.start()

    def link(self, **kw: Any) -> ModbusLink:
        options = {"tool": self.name, "unit": 1, "timeout_s": LINK_TIMEOUT_S} | kw
        return ModbusLink.tcp(self.host, self.port, **options)

    def now(self) -> float:
        return self.clock.now()


@dataclass
class SimCleaner:
    """A simulated FC-1 (or FC-2) on Modbus RTU over raw TCP (``socket://``) or a pty."""

    clock: ScaledClock
    faults: FaultPlan = field(default_factory=FaultPlan)
    model: CleanerModel = field(default_factory=CleanerModel)
    name: str = "cleaner-1"
    transport: str = "tcp"  # tcp | pty
    url: str = ""
    server: CleanerServer | None = None

    async def start(self) -> None:
        self.server = CleanerServer(self.model, self.clock, name=self.name, faults=self.faults)
        if self.transport == "pty":
            self.url = await self.server.start_rtu_pty()
        else:
            port = int(self.url.rsplit(":", 1)[1]) if self.url else 0
            self.url = await self.server.start_rtu_tcp("127.0.0.1", port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def link(self, **kw: Any) -> ModbusLink:
        options = {"tool": self.name, "unit": 2, "timeout_s": LINK_TIMEOUT_S} | kw
        return ModbusLink.rtu(self.url, **options)

    def now(self) -> float:
        return self.clock.now()


class DropArmedReply(FaultPlan):
    """Drops exactly the next reply after ``armed`` is set: a request carried out whose
    answer is lost on the way back."""

    def __init__(self) -> None:
        super().__init__(drop=1e-12)  # nonzero, so the server asks about every reply
        self.armed = False

    def roll(self, probability: float) -> bool:
        if self.armed and probability == self.drop:
            self.armed = False
            return True
        return super().roll(probability)


class BusyArmed(FaultPlan):
    """Answers exception 06 (busy) to exactly the next request after ``armed`` is set: a
    busy moment, not a refusal for the tool's state."""

    def __init__(self) -> None:
        super().__init__(busy=1e-12)  # nonzero, so the server asks about every request
        self.armed = False

    def roll(self, probability: float) -> bool:
        if self.armed and probability == self.busy:
            self.armed = False
            return True
        return super().roll(probability)


class DropReplies(FaultPlan):
    """Drops the next ``left`` replies, whatever they answer: a bus that goes quiet."""

    def __init__(self) -> None:
        super().__init__(drop=1e-12)
        self.left = 0

    def roll(self, probability: float) -> bool:
        if self.left and probability == self.drop:
            self.left -= 1
            return True
        return super().roll(probability)


class _FixedByte(random.Random):
    """Picks byte ``at`` of a reply to damage; the rest of the generator is as ever."""

    def __init__(self, at: int) -> None:
        super().__init__(0)
        self.at = at

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        return self.at


class CorruptArmedReply(FaultPlan):
    """Damages byte ``at`` (XOR 0xFF) of exactly the next reply after ``armed`` is set."""

    def __init__(self, at: int) -> None:
        super().__init__(corrupt=1e-12, rng=_FixedByte(at))  # nonzero: every reply is asked
        self.armed = False

    def roll(self, probability: float) -> bool:
        if self.armed and probability == self.corrupt:
            self.armed = False
            return True
        return super().roll(probability)


@contextlib.asynccontextmanager
async def sim_oven(faults: FaultPlan | None = None, *, scale: float = TIME_SCALE,
                   retries: int = 3, timeout_s: float = LINK_TIMEOUT_S,
                   ) -> AsyncIterator[tuple[ReflowOven, SimOven]]:
    sim = SimOven(ScaledClock(scale), faults or FaultPlan())
    await sim.start()
    link = sim.link(retries=retries, timeout_s=timeout_s)
    try:
        await link.open()
        yield ReflowOven(link, sim.clock, poll_s=POLL_S), sim
    finally:
        await link.close()
        await sim.stop()


@contextlib.asynccontextmanager
async def sim_cleaner(faults: FaultPlan | None = None, *, transport: str = "tcp",
                      scale: float = TIME_SCALE, retries: int = 3,
                      timeout_s: float = LINK_TIMEOUT_S, model: str = "FC-1",
                      tool: CleanerModel | None = None,
                      ) -> AsyncIterator[tuple[FluxCleaner, SimCleaner]]:
    """The driver, with the register map of ``model``, on that simulated model (or on
    ``tool``, a test's variant of it)."""
    sim = SimCleaner(ScaledClock(scale), faults or FaultPlan(),
                     model=tool or cleaner_model(model)(), transport=transport)
    await sim.start()
    link = sim.link(retries=retries, timeout_s=timeout_s)
    try:
        await link.open()
        yield FluxCleaner(link, sim.clock, register_map=model, poll_s=POLL_S), sim
    finally:
        await link.close()
        await sim.stop()


@contextlib.asynccontextmanager
async def real_tool(line_config_path: str, role: str) -> AsyncIterator[Any]:
    """The real tool of ``role``; what a test changes of its settings (the oven's profile,
    the cleaner's recipe) is put back afterwards, and a failure to is the test's failure."""
    config = load_line_config(line_config_path)
    tools = config.by_role(role)
    if not tools:
        pytest.skip(f"{line_config_path} names no {role}")
    async with open_tool(tools[0], ScaledClock(config.time_scale)) as driver:
        driver.poll_s = POLL_S
        saved = await _settings(driver, role)
        try:
            yield driver
        finally:
            await _restore(driver, role, saved, tools[0].name)


async def _settings(driver: Any, role: str) -> Any:
    if role == "oven":
        status = await driver.status()
        return (await driver.staged_profile(), status.active_profile_id,
                (status.nitrogen_on, status.conveyor_running))
    if role == "cleaner":
        return await driver.recipe()
    return None


async def _restore(driver: Any, role: str, saved: Any, name: str) -> None:
    from drivers.errors import ToolError

    try:
        if role == "oven":
            staged, active_id, (nitrogen_on, conveyor_running) = saved
            status = await driver.status()  # the coils first: a test switched nitrogen off
            if status.nitrogen_on != nitrogen_on:
                await driver.set_nitrogen(nitrogen_on)
            if status.conveyor_running != conveyor_running:
                await driver.set_conveyor(conveyor_running)
            if status.active_profile_id == active_id:
                # Staged and not applied: the next test that applies would find another
                # profile staged than the one running, and could not put the oven back.
                if await driver.staged_profile() != staged:
                    await driver.stage_profile(staged)
                return
            if staged.profile_id != active_id:
                pytest.fail(f"{name}: was on profile {active_id}, whose setpoints could not be "
                            f"read back (profile {staged.profile_id} was staged): set profile "
                            f"{active_id} on the tool", pytrace=False)
            if (await driver.status()).alarm_code:
                await driver.clear()
            await driver.stage_profile(staged)
            await driver.apply()
        elif role == "cleaner" and await driver.recipe() != saved:
            await driver.set_recipe(saved)
    except ToolError as exc:
        pytest.fail(f"{name}: could not restore its settings after the test ({exc}): "
                    f"check them on the tool", pytrace=False)


@contextlib.asynccontextmanager
async def oven_under_test(
    line_config_path: str | None,
) -> AsyncIterator[tuple[ReflowOven, SimOven | None]]:
    """The oven a conformance test talks to: simulated, or the real one in --line-config."""
    if line_config_path:
        async with real_tool(line_config_path, "oven") as driver:
            yield driver, None
        return
    async with sim_oven() as env:
        yield env


@contextlib.asynccontextmanager
async def cleaner_under_test(
    line_config_path: str | None,
) -> AsyncIterator[tuple[FluxCleaner, SimCleaner | None]]:
    """The cleaner a conformance test talks to: simulated, or the real one in --line-config."""
    if line_config_path:
        async with real_tool(line_config_path, "cleaner") as driver:
            yield driver, None
        return
    async with sim_cleaner() as env:
        yield env

"""Open the drivers for the tools a line configuration names.

This is where a ``ToolConfig`` (role + transport + address) becomes a driver
object; nothing above the drivers builds links by hand. A driver's role is the
one its configuration names; ``LineTools`` hands drivers out typed by that role
(``drivers/protocols.py``), never by guessing from the methods a driver has.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, cast

from drivers.clock import Clock
from drivers.line_config import LineConfig, ToolConfig
from drivers.protocols import ROLES, AnyTool, Cleaner, Oven, Placer, Printer

Trace = Callable[[str, str, Any], None]  # (tool name, direction '>'/'<', frame or text)


def _link_for(tool: ToolConfig, trace: Trace | None) -> Any:
    tool_trace = (lambda direction, data: trace(tool.name, direction, data)) if trace else None
    if tool.transport == "serial":
        from drivers.serial_link import HostLinkPort

        return HostLinkPort(
            str(tool.port),
            tool=tool.name,
            baudrate=tool.baudrate or 115200,
            parity=tool.parity,
            timeout_s=tool.timeout_s,
            retries=tool.retries,
            trace=tool_trace,
        )
    if tool.transport == "text-tcp":
        from drivers.textline_link import TextLineLink

        def text_trace(direction: str, line: str) -> None:
            if trace is not None:
                trace(tool.name, direction, line)

        return TextLineLink.tcp(
            str(tool.host), int(tool.port), tool=tool.name, timeout_s=tool.timeout_s,
            trace=text_trace if trace else None,
        )
    from drivers.modbus_link import ModbusLink

    if tool.transport == "modbus-tcp":
        return ModbusLink.tcp(
            str(tool.host),
            int(tool.port),
            tool=tool.name,
            unit=tool.unit or 1,
            timeout_s=tool.timeout_s,
            retries=tool.retries,
            trace=tool_trace,
        )
    return ModbusLink.rtu(
        str(tool.port),
        tool=tool.name,
        unit=tool.unit or 2,
        baudrate=tool.baudrate or 19200,
        parity=tool.parity,
        timeout_s=tool.timeout_s,
        retries=tool.retries,
        trace=tool_trace,
    )


def unopened_drivers(tools: list[ToolConfig], clock: Clock) -> list[tuple[str, AnyTool]]:
    """(role, driver) of each tool, never connected: what its model can take (a cleaner's
    strip mode is in its register map) is known before the line opens."""
    return [(tool.role, _driver_for(tool, _link_for(tool, None), clock)) for tool in tools]


def _driver_for(tool: ToolConfig, link: Any, clock: Clock, last_seq: int | None = None
                ) -> AnyTool:
    driver = _new_driver(tool, link, clock, last_seq)
    if not isinstance(driver, ROLES[tool.role]):  # a driver class that lost a verb
        raise TypeError(f"{tool.name}: {type(driver).__name__} is not a {tool.role} driver")
    return driver


def _new_driver(tool: ToolConfig, link: Any, clock: Clock, last_seq: int | None) -> AnyTool:
    if tool.role == "printer":
        from drivers.printer import PastePrinter

        return PastePrinter(link, clock)
    if tool.role == "placer":
        from drivers.placer import BallPlacer

        return BallPlacer(link, clock)
    if tool.role == "oven":
        from drivers.oven import ReflowOven

        return ReflowOven(link, clock, register_map=tool.model)
    if tool.role == "plater":
        from drivers.plater import BarrierPlater

        return BarrierPlater(link, clock, retries=tool.retries, last_seq=last_seq)
    from drivers.cleaner import FluxCleaner

    return FluxCleaner(link, clock, register_map=tool.model)


@contextlib.asynccontextmanager
async def open_tool(
    tool: ToolConfig, clock: Clock, *, trace: Trace | None = None,
    last_seq: int | None = None,
) -> AsyncIterator[AnyTool]:
    """The driver for one tool, with its link open; closed on exit.

    ``last_seq``: for a tool that numbers its pushed events (the plater), the last
    number the caller persisted; the events after it are fetched as the link opens.
    The driver is made before the link opens, so its catch-up sees the very first
    connection."""
    link = _link_for(tool, trace)
    driver = _driver_for(tool, link, clock, last_seq)
    await link.open()
    try:
        yield driver
    finally:
        await link.close()


class LineTools:
    """The open drivers of a line, by tool name and by role."""

    def __init__(self, config: LineConfig, drivers: dict[str, AnyTool]) -> None:
        self.config = config
        self._drivers = drivers

    def __getitem__(self, name: str) -> AnyTool:
        if name not in self._drivers:
            self.config.tool(name)  # raises the clear "no tool named" error
            raise KeyError(f"{name} was not opened (its role was left out)")
        return self._drivers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._drivers)

    def items(self) -> list[tuple[str, AnyTool]]:
        return list(self._drivers.items())

    def by_role(self, role: str) -> list[AnyTool]:
        return [self._drivers[t.name] for t in self.config.by_role(role) if t.name in self._drivers]

    def role_of(self, name: str) -> str:
        """The role the line configuration gives the tool."""
        return self.config.tool(name).role

    # Typed access: the configuration says what a tool is; asking for the wrong kind is an
    # error that names both.

    def printer(self, name: str) -> Printer:
        return cast(Printer, self._of_role(name, "printer"))

    def placer(self, name: str) -> Placer:
        return cast(Placer, self._of_role(name, "placer"))

    def oven(self, name: str) -> Oven:
        return cast(Oven, self._of_role(name, "oven"))

    def cleaner(self, name: str) -> Cleaner:
        return cast(Cleaner, self._of_role(name, "cleaner"))

    def _of_role(self, name: str, role: str) -> AnyTool:
        actual = self.role_of(name)
        if actual != role:
            raise ValueError(f"{name} is a {actual} in {self.config.source}, not a {role}")
        return self[name]


@contextlib.asynccontextmanager
async def open_line(
    config: LineConfig,
    clock: Clock,
    *,
    trace: Trace | None = None,
    roles: tuple[str, ...] | None = None,
    event_seqs: Mapping[str, int] | None = None,
) -> AsyncIterator[LineTools]:
    """Open a driver for every tool of the line (or of the given roles).

    ``event_seqs``: per tool name, the last pushed-event number the caller persisted
    (see ``open_tool``)."""
    seqs = event_seqs or {}
    async with contextlib.AsyncExitStack() as stack:
        drivers = {}
        for tool in config.tools.values():
            if roles is None or tool.role in roles:
                drivers[tool.name] = await stack.enter_async_context(
                    open_tool(tool, clock, trace=trace, last_seq=seqs.get(tool.name))
                )
        yield LineTools(config, drivers)

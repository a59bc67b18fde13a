"""The simulated line: every tool model served behind its real wire protocol.

``SimulatedLine`` builds one model per tool, serves each the way the real tool
is reached (printer and ball mounter on a pty or raw TCP, the oven on Modbus
TCP, the cleaner on Modbus RTU over raw TCP or a pty, the barrier plater on
text lines over TCP) and describes the result
as a line configuration, so drivers connect to it exactly as they would to
hardware. Each cleaner is an FC-1 or an FC-2 (``cleaner_models``), and the
configuration names the model. It runs on the caller's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.clock import ScaledClock
from sim.faults import FaultPlan, check_tools
from sim.stripper import cleaner_model

log = logging.getLogger("sim.line")

ROLES = ("printer", "placer", "oven", "cleaner", "plater")
# The barrier plater serves only the optional barrier step: a line has one when asked.
DEFAULT_LAYOUT = {"printer": 1, "placer": 1, "oven": 1, "cleaner": 1, "plater": 0}


@dataclass
class ServedTool:
    name: str
    role: str
    model: Any
    server: Any
    config: dict[str, Any]  # this tool's [tools.NAME] table of the line configuration


class SimulatedLine:
    """Start with ``async with SimulatedLine(speed=100) as line:``; ``line.config_text()``
    is the line configuration naming every endpoint."""

    def __init__(
        self,
        *,
        speed: float = 100.0,
        seed: int = 0,
        faults: dict[str, FaultPlan] | None = None,
        clock: Any = None,
        layout: dict[str, int] | None = None,
        serial_transport: str = "pty",
        cleaner_transport: str = "tcp",
        name: str = "sim-line-1",
        host: str = "127.0.0.1",
        cleaner_models: Sequence[str] = (),
        state_files: Mapping[str, str | Path] | None = None,
        oven_counts_exit: bool = True,
    ) -> None:
        """``cleaner_models``: the model of cleaner-1, cleaner-2, ... (FC-1 or FC-2); cleaners
        beyond the list are FC-1s. ``state_files``: per plater, where it keeps what survives a
        power loss (its event log and numbering); a plater without one forgets them when it
        stops. ``oven_counts_exit``: the ovens' WAFERS_ON_BELT counts the wafer waiting at the
        exit (False: the tunnel's wafers only; docs/simulator.md)."""
        if serial_transport not in ("pty", "tcp"):
            raise ValueError(f"serial transport must be pty or tcp, got {serial_transport!r}")
        if cleaner_transport not in ("pty", "tcp"):
            raise ValueError(f"cleaner transport must be pty or tcp, got {cleaner_transport!r}")
        self.clock = clock if clock is not None else ScaledClock(speed)
        self.speed = float(getattr(self.clock, "scale", speed))
        self.seed = seed
        self.faults = dict(faults or {})
        self.layout = dict(DEFAULT_LAYOUT if layout is None else layout)
        unknown = set(self.layout) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) in layout: {sorted(unknown)}")
        for model_name in cleaner_models:
            cleaner_model(model_name)  # ValueError naming the known models
        self.cleaner_models = [m.upper() for m in cleaner_models]
        self.serial_transport = serial_transport
        self.cleaner_transport = cleaner_transport
        self.name = name
        self.host = host
        self.state_files = {k: str(v) for k, v in (state_files or {}).items()}
        self.oven_counts_exit = oven_counts_exit
        self.tools: dict[str, ServedTool] = {}

    @property
    def models(self) -> dict[str, Any]:
        return {name: tool.model for name, tool in self.tools.items()}

    def tool_names(self) -> list[str]:
        return [f"{role}-{i}" for role in ROLES for i in range(1, self.layout.get(role, 0) + 1)]

    def roles(self) -> dict[str, str]:
        """Tool name -> role, for every tool this line serves."""
        return {name: name.rsplit("-", 1)[0] for name in self.tool_names()}

    async def start(self) -> None:
        check_tools(self.faults, self.roles())  # before any server starts
        try:
            for index, tool_name in enumerate(self.tool_names()):
                role = tool_name.rsplit("-", 1)[0]
                plan = self.faults.setdefault(tool_name, FaultPlan())
                plan.seed(self.seed * 1000 + index)
                self.tools[tool_name] = await self._start_tool(tool_name, role, index, plan)
                log.info("%s (%s) serving at %s", tool_name, role, self.tools[tool_name].config)
        except BaseException:
            await self.stop()
            raise

    async def _start_tool(self, name: str, role: str, index: int, plan: FaultPlan) -> ServedTool:
        seed = self.seed * 1000 + index
        if role in ("printer", "placer"):
            return await self._start_serial_tool(name, role, seed, plan)
        if role == "oven":
            return await self._start_oven(name, seed, plan)
        if role == "plater":
            return await self._start_plater(name, seed, plan)
        return await self._start_cleaner(name, seed, plan)

    async def _start_serial_tool(
        self, name: str, role: str, seed: int, plan: FaultPlan
    ) -> ServedTool:
        from sim.placer import BallPlacerModel
        from sim.printer import PastePrinterModel
        from sim.serial_server import SerialToolServer

        model = PastePrinterModel(seed=seed) if role == "printer" else BallPlacerModel(seed=seed)
        server = SerialToolServer(model, self.clock, name=name, faults=plan)
        if self.serial_transport == "pty":
            url = await server.start_pty()
        else:
            url = await server.start_tcp(self.host)
        config = {"role": role, "transport": "serial", "port": url, "baudrate": 115200}
        return ServedTool(name=name, role=role, model=model, server=server, config=config)

    async def _start_oven(self, name: str, seed: int, plan: FaultPlan) -> ServedTool:
        from sim.modbus_server import OvenServer
        from sim.oven import OvenModel

        model = OvenModel(seed=seed, belt_counts_exit=self.oven_counts_exit)
        server = OvenServer(model, self.clock, name=name, faults=plan)
        host, port = await server.start_tcp(self.host)
        config = {
            "role": "oven",
            "transport": "modbus-tcp",
            "host": host,
            "port": port,
            "unit": 1,
        }
        return ServedTool(name=name, role="oven", model=model, server=server, config=config)

    async def _start_plater(self, name: str, seed: int, plan: FaultPlan) -> ServedTool:
        from sim.plater import PlaterModel
        from sim.plater_server import PlaterServer

        state_file = self.state_files.get(name)
        if state_file:
            model = PlaterServer.restore_model(state_file, seed=seed, start=self.clock.now())
        else:
            model = PlaterModel(seed=seed, start=self.clock.now())
        server = PlaterServer(model, self.clock, name=name, faults=plan, state_file=state_file)
        host, port = await server.start_tcp(self.host)
        config: dict[str, Any] = {
            "role": "plater", "transport": "text-tcp", "host": host, "port": port,
        }
        if state_file:
            config["state_file"] = state_file
        return ServedTool(name=name, role="plater", model=model, server=server, config=config)

    async def _start_cleaner(self, name: str, seed: int, plan: FaultPlan) -> ServedTool:
        from sim.modbus_server import CleanerServer

        number = int(name.rsplit("-", 1)[1])
        model_name = (self.cleaner_models[number - 1] if number <= len(self.cleaner_models)
                      else "FC-1")
        model = cleaner_model(model_name)(seed=seed)
        server = CleanerServer(model, self.clock, name=name, faults=plan)
        if self.cleaner_transport == "pty":
            url = await server.start_rtu_pty()
        else:
            url = await server.start_rtu_tcp(self.host)
        # A pty carries no parity (this kernel refuses PARENB on ptys); RTU framing and
        # CRC are the same either way. A real RS-485 line or device server uses E.
        parity = "N" if self.cleaner_transport == "pty" else "E"
        config = {
            "role": "cleaner",
            "transport": "modbus-rtu",
            "port": url,
            "baudrate": 19200,
            "parity": parity,
            "unit": 2,
            "model": model_name,
        }
        return ServedTool(name=name, role="cleaner", model=model, server=server, config=config)

    # --- one tool off the network and back (its model keeps its state, as a real tool whose
    # cable was pulled keeps its wafers) -------------------------------------------------------

    async def stop_tool(self, name: str) -> None:
        """The tool stops answering: its server closes every connection and listener."""
        await self.tools[name].server.stop()

    async def restart_tool(self, name: str) -> None:
        """The tool answers again on the very endpoint the line configuration names. Only a
        TCP endpoint can be had again (a new pty gets a new path): use serial_transport and
        cleaner_transport "tcp" for a tool that is to come back."""
        tool = self.tools[name]
        config = tool.config
        if "host" in config:  # modbus-tcp, text-tcp
            await tool.server.start_tcp(config["host"], config["port"])
            return
        url = str(config["port"])
        if not url.startswith("socket://"):
            raise ValueError(f"{name} is served on a pty ({url}): it cannot come back on the "
                             "same endpoint; serve it on tcp")
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        if config["transport"] == "modbus-rtu":
            await tool.server.start_rtu_tcp(host, int(port))
        else:
            await tool.server.start_tcp(host, int(port))

    async def stop(self) -> None:
        for tool in reversed(list(self.tools.values())):
            try:
                await tool.server.stop()
            except Exception:  # noqa: BLE001 - keep closing the others
                log.exception("error stopping %s", tool.name)
        self.tools.clear()

    async def __aenter__(self) -> SimulatedLine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def config_text(self) -> str:
        """The line configuration (TOML) for this running line."""
        out = [
            "# Written by the bumpline simulator; describes the simulated line's endpoints.",
            "[line]",
            f"name = {_toml(self.name)}",
            f"time_scale = {self.speed!r}",
            "",
        ]
        for tool in self.tools.values():
            out.append(f"[tools.{tool.name}]")
            out.extend(f"{key} = {_toml(value)}" for key, value in tool.config.items())
            out.append("")
        return "\n".join(out)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)

"""The line configuration: which tools a line has and how to reach each one.

It is the single thing that decides simulator or hardware. ``bumpline sim``
writes one for the simulated line; a fab writes one for its real tools. Both
look the same, for example::

    [line]
    name = "sim-line-1"
    id = "bump-line-2"        # optional: what one-controller-per-line locks on
    time_scale = 100.0        # tool seconds per wall second; 1.0 on real hardware

    [tools.printer-1]
    role = "printer"          # printer | placer | oven | cleaner | plater
    transport = "serial"      # serial | modbus-tcp | modbus-rtu | text-tcp
    port = "/dev/pts/5"       # any pyserial URL
    baudrate = 115200

    [tools.cleaner-1]
    role = "cleaner"
    model = "FC-2"            # oven and cleaner: RF-10N; FC-1 (default) | FC-2
    port = "socket://10.0.0.5:4001"

Every error names the file, the key and what was expected.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.register_map import models_for_role

ROLES = ("printer", "placer", "oven", "cleaner", "plater")
DEFAULT_TIMEOUT_S = 0.5  # reply timeout, wall seconds: hostlink.md's recommendation
# A scaled (simulated) line shares its machine with the simulator: a reply may wait on a
# busy event loop, so its timeout never drops below this (docs/decisions/0012).
MIN_SCALED_TIMEOUT_S = 0.1


def default_timeout_s(time_scale: float) -> float:
    """The reply timeout (wall seconds) of a tool whose table names none.

    A lost reply costs one timeout before the resend. On hardware that is 0.5 s; on a line
    at ``time_scale`` it would be 0.5 x time_scale tool seconds (125 s at 250x: longer than
    a wafer may wait at the oven exit), so the timeout shrinks with the scale, down to what
    a shared machine needs to answer.
    """
    return min(DEFAULT_TIMEOUT_S, max(MIN_SCALED_TIMEOUT_S, DEFAULT_TIMEOUT_S / time_scale))
# Which transports each role's host interface uses (from the tools' specs).
ROLE_TRANSPORTS = {
    "printer": ("serial",),
    "placer": ("serial",),
    "oven": ("modbus-tcp",),
    "cleaner": ("modbus-rtu",),
    "plater": ("text-tcp",),
}
TCP_TRANSPORTS = ("modbus-tcp", "text-tcp")
PARITIES = ("N", "E", "O")
DEFAULT_BAUDRATE = {"serial": 115200, "modbus-rtu": 19200}
DEFAULT_PARITY = {"serial": "N", "modbus-rtu": "E"}
DEFAULT_UNIT = {"oven": 1, "cleaner": 2}
# The model a Modbus tool is taken to be when the configuration names none (the line
# had one model of each before the FC-2).
DEFAULT_MODEL = {"oven": "RF-10N", "cleaner": "FC-1"}
# Reply timeout (wall s) by transport: the plater's spec counts a command lost after 2 s.
PLATER_TIMEOUT_S = 2.5


class LineConfigError(ValueError):
    """A line configuration that cannot be used, with where and why."""


@dataclass(frozen=True)
class ToolConfig:
    name: str
    role: str
    transport: str
    port: str | int  # pyserial URL for serial/modbus-rtu, TCP port for modbus-tcp/text-tcp
    host: str | None = None  # modbus-tcp and text-tcp only
    baudrate: int | None = None
    parity: str = "N"
    unit: int | None = None  # Modbus device id
    timeout_s: float = DEFAULT_TIMEOUT_S  # reply timeout, wall seconds
    retries: int = 3
    model: str | None = None  # oven, cleaner: tool model (register map name, or a map file)
    faults: str = ""  # simulator only: a fault plan (see sim.faults)
    state_file: str = ""  # simulator only: where the plater keeps what survives a power loss

    @property
    def endpoint(self) -> str:
        if self.transport in TCP_TRANSPORTS:
            return f"{self.host}:{self.port}"
        return str(self.port)


@dataclass(frozen=True)
class LineConfig:
    name: str
    time_scale: float
    tools: dict[str, ToolConfig] = field(default_factory=dict)
    source: str = "<memory>"
    # The optional [gem] table as written; the factory host interface checks it
    # (controller/gem/config.py), so drivers/ knows nothing of GEM.
    gem: dict[str, Any] | None = None
    # The optional [mqtt] table as written, checked by the fab feed (controller/feed/).
    mqtt: dict[str, Any] | None = None
    # The line's identity for "one controller per line"; None: the controller uses the
    # configuration file's resolved path.
    id: str | None = None

    def by_role(self, role: str) -> list[ToolConfig]:
        return [t for t in self.tools.values() if t.role == role]

    def tool(self, name: str) -> ToolConfig:
        try:
            return self.tools[name]
        except KeyError:
            known = ", ".join(self.tools) or "none"
            raise LineConfigError(
                f"{self.source}: no tool named '{name}' (tools: {known})"
            ) from None


def load_line_config(path: str | Path) -> LineConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LineConfigError(f"{path}: cannot read line configuration: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LineConfigError(
            f"{path}: not a line configuration: not UTF-8 text (byte {exc.start})"
        ) from None
    return parse_line_config(text, source=str(path))


def parse_line_config(text: str, *, source: str = "<memory>") -> LineConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LineConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise LineConfigError(f"{source}: not valid TOML: nested too deeply") from None
    return _build(data, source)


class _Reader:
    """Pulls typed values out of one TOML table, naming the key on error."""

    def __init__(self, table: dict[str, Any], prefix: str, source: str) -> None:
        self.table, self.prefix, self.source = table, prefix, source
        self.used: set[str] = set()

    def fail(self, key: str, expected: str) -> LineConfigError:
        got = self.table.get(key, None)
        shown = "missing" if key not in self.table else f"got {got!r}"
        return LineConfigError(f"{self.source}: {self.prefix}{key}: expected {expected} ({shown})")

    def get(
        self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = ...
    ) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.fail(key, expected)
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.fail(key, expected)
        return value

    def check_unknown(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise LineConfigError(
                    f"{self.source}: {self.prefix}{key}: unknown key "
                    f"(known: {', '.join(sorted(allowed))})"
                )


_TOOL_KEYS = {
    "role",
    "transport",
    "port",
    "host",
    "baudrate",
    "parity",
    "unit",
    "timeout_s",
    "retries",
    "model",
    "faults",
    "state_file",
}


def _build(data: dict[str, Any], source: str) -> LineConfig:
    line_table = data.get("line")
    if not isinstance(line_table, dict):
        raise LineConfigError(f"{source}: [line]: expected a table with name and time_scale")
    line = _Reader(line_table, "line.", source)
    name = line.get("name", str, "a line name (text)")
    scale = line.get("time_scale", (int, float), "a number > 0", 1.0)
    if not 0 < scale < math.inf:
        raise line.fail("time_scale", "a number > 0")
    line_id = line.get("id", str, "a line id (text)", None)
    if line_id is not None and not line_id.strip():
        raise line.fail("id", "a line id (non-empty text)")
    line.check_unknown({"name", "id", "time_scale"})

    tools_table = data.get("tools", {})
    if not isinstance(tools_table, dict):
        raise LineConfigError(f"{source}: tools: expected [tools.NAME] tables")
    seen: dict[str, str] = {}
    for tool_name in tools_table:
        # Operators type tool names in any case; two that differ only by case are one tool.
        other = seen.setdefault(str(tool_name).lower(), str(tool_name))
        if other != tool_name:
            raise LineConfigError(
                f"{source}: tools.{tool_name}: the same tool as tools.{other} "
                "(tool names are compared without case)"
            )
    tools = {n: _tool(n, t, source, float(scale)) for n, t in tools_table.items()}
    unknown = set(data) - {"line", "tools", "gem", "mqtt"}
    if unknown:
        raise LineConfigError(
            f"{source}: {sorted(unknown)[0]}: unknown table (known: gem, line, mqtt, tools)"
        )
    return LineConfig(
        name=name,
        time_scale=float(scale),
        tools=tools,
        source=source,
        gem=data.get("gem"),
        mqtt=data.get("mqtt"),
        id=line_id.strip() if line_id is not None else None,
    )


def _tool(name: str, table: Any, source: str, time_scale: float) -> ToolConfig:
    if not isinstance(table, dict):
        raise LineConfigError(f"{source}: tools.{name}: expected a table")
    r = _Reader(table, f"tools.{name}.", source)
    role = r.get("role", str, "one of " + " | ".join(ROLES))
    if role not in ROLES:
        raise r.fail("role", "one of " + " | ".join(ROLES))
    allowed = ROLE_TRANSPORTS[role]
    transport = r.get("transport", str, " | ".join(allowed), allowed[0])
    if transport not in allowed:
        raise r.fail("transport", f"{' | '.join(allowed)} for a {role}")

    host = None
    port: str | int
    if transport in TCP_TRANSPORTS:
        host = r.get("host", str, "a host name or address")
        tcp_port: int = r.get("port", int, "a TCP port number 1-65535")
        if not 0 < tcp_port < 65536:
            raise r.fail("port", "a TCP port number 1-65535")
        port = tcp_port
    else:
        url: str = r.get("port", str, "a pyserial URL: /dev/ttyUSB0, a pty path or socket://HOST:PORT")
        if not url.strip():
            raise r.fail("port", "a pyserial URL: /dev/ttyUSB0, a pty path or socket://HOST:PORT")
        port = url

    baudrate = None
    parity = "N"
    if transport in DEFAULT_BAUDRATE:
        baudrate = r.get("baudrate", int, "a baud rate such as 115200", DEFAULT_BAUDRATE[transport])
        if baudrate <= 0:
            raise r.fail("baudrate", "a positive baud rate")
        parity = r.get("parity", str, "N | E | O", DEFAULT_PARITY[transport])
        if parity not in PARITIES:
            raise r.fail("parity", "N | E | O")

    unit = None
    if transport.startswith("modbus"):
        unit = r.get("unit", int, "a Modbus unit id 0-247", DEFAULT_UNIT[role])
        if not 0 <= unit <= 247:
            raise r.fail("unit", "a Modbus unit id 0-247")

    timeout_s = float(r.get("timeout_s", (int, float), "a reply timeout in seconds > 0",
                            PLATER_TIMEOUT_S if transport == "text-tcp"
                            else default_timeout_s(time_scale)))
    if not 0 < timeout_s < math.inf:  # nan and inf too
        raise r.fail("timeout_s", "a reply timeout in seconds > 0")
    retries = r.get("retries", int, "a retry count 0-10", 3)
    if not 0 <= retries <= 10:
        raise r.fail("retries", "a retry count 0-10")
    model = _model(r, role)
    faults = r.get("faults", str, 'a fault plan such as "drop=0.2"', "")
    state_file = r.get("state_file", str, "a file path (simulated plater only)", "")
    r.check_unknown(_TOOL_KEYS)
    return ToolConfig(
        name=name,
        role=role,
        transport=transport,
        port=port,
        host=host,
        baudrate=baudrate,
        parity=parity,
        unit=unit,
        timeout_s=timeout_s,
        retries=retries,
        model=model,
        faults=faults,
        state_file=state_file,
    )


def _model(r: _Reader, role: str) -> str | None:
    """The tool model: a shipped model of the role (any case; stored as the map names it)
    or the path of a register map file. Printers and placers have no maps."""
    if role not in DEFAULT_MODEL:
        return r.get("model", str, "a tool model name", None)
    known = models_for_role(role)
    expected = f"{' | '.join(known)} or the path of a register map file"
    model = r.get("model", str, expected, DEFAULT_MODEL[role])
    if model.upper() in known:
        return model.upper()
    if (model.endswith(".toml") or "/" in model) and Path(model).exists():
        return model  # a map file of the fab's own (relative to the working directory)
    raise r.fail("model", expected)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def dump_line_config(config: LineConfig) -> str:
    """TOML text for a line configuration (what ``bumpline sim --config-out`` writes)."""
    out = [
        "[line]",
        f"name = {_toml_value(config.name)}",
        *([f"id = {_toml_value(config.id)}"] if config.id is not None else []),
        f"time_scale = {config.time_scale!r}",
        "",
    ]
    for tool in config.tools.values():
        out.append(f"[tools.{tool.name}]")
        for key in ("role", "transport", "host", "port", "baudrate", "parity", "unit", "model"):
            value = getattr(tool, key)
            if value is None or (key == "parity" and tool.baudrate is None):
                continue
            out.append(f"{key} = {_toml_value(value)}")
        if tool.faults:
            out.append(f"faults = {_toml_value(tool.faults)}")
        if tool.state_file:
            out.append(f"state_file = {_toml_value(tool.state_file)}")
        out.append("")
    if config.gem is not None:
        out.append("[gem]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in config.gem.items())
        out.append("")
    if config.mqtt is not None:
        out.append("[mqtt]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in config.mqtt.items())
        out.append("")
    return "\n".join(out)

"""The feed's settings: the line file's ``[mqtt]`` table and ``serve --mqtt URL``.

Apart from the publisher so that a line without a feed never needs the MQTT
client (``pip install 'bumpline[mqtt]'``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from controller.errors import UserError


class MqttConfigError(UserError):
    """A bad [mqtt] table or --mqtt URL."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    site: str = "site"  # the plant: bumpline/<site>/<line>/...
    buffer: int = 10_000  # events kept while the broker is away
    keepalive_s: int = 30
    client_id: str | None = None  # default: bumpline-<site>-<line>
    tls: bool = False  # mqtts://: the broker's certificate checked, its host name too
    ca_file: str | None = None  # the CAs to check it against (None: the system's)

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS settings of an ``mqtts://`` feed (None for plain ``mqtt://``)."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


_KEYS = {"url", "site", "buffer", "keepalive_s", "client_id", "ca_file"}
_PORTS = {"mqtt": 1883, "mqtts": 8883}


def parse_url(url: str, *, source: str = "--mqtt") -> MqttConfig:
    """``mqtt[s]://[user[:password]@]host[:port]``; anything else is one clear error."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise MqttConfigError(f"{source}: {url!r} is not a broker URL ({exc})") from None
    if parts.scheme not in _PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query:
        raise MqttConfigError(f"{source}: expected mqtt[s]://[user[:password]@]host[:port], "
                              f"got {url!r}")
    return MqttConfig(host=parts.hostname, port=port or _PORTS[parts.scheme],
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      tls=parts.scheme == "mqtts")


def mqtt_config(table: Mapping[str, Any] | None, url: str | None, *,
                source: str = "line file") -> MqttConfig | None:
    """The feed's settings from the line file's ``[mqtt]`` and ``serve --mqtt URL``
    (which wins); None when neither asks for a feed."""
    table = dict(table or {})
    unknown = set(table) - _KEYS
    if unknown:
        raise MqttConfigError(f"{source}: [mqtt] {sorted(unknown)[0]}: unknown key "
                              f"(known: {', '.join(sorted(_KEYS))})")
    url = url or table.get("url")
    if url is None:
        if table:
            raise MqttConfigError(f"{source}: [mqtt] needs url = \"mqtt://host:port\"")
        return None
    if not isinstance(url, str):
        raise MqttConfigError(f"{source}: [mqtt] url: expected text, got {url!r}")
    config = parse_url(url, source="--mqtt" if url is not table.get("url") else
                       f"{source}: [mqtt] url")
    site = table.get("site", config.site)
    if not isinstance(site, str) or not site.strip():
        raise MqttConfigError(f"{source}: [mqtt] site: expected a name, got {site!r}")
    values: dict[str, Any] = {"site": site.strip()}
    for key, low in (("buffer", 1), ("keepalive_s", 5)):
        value = table.get(key, getattr(config, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise MqttConfigError(f"{source}: [mqtt] {key}: expected a whole number "
                                  f">= {low}, got {value!r}")
        values[key] = value
    client_id = table.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise MqttConfigError(f"{source}: [mqtt] client_id: expected text, got {client_id!r}")
    config = replace(config, client_id=client_id,
                     ca_file=_ca_file(table.get("ca_file"), config, source), **values)
    try:  # a CA file that is not one: said now, before the line starts
        config.tls_context()
    except (ssl.SSLError, OSError) as exc:
        raise MqttConfigError(f"{source}: [mqtt] ca_file {config.ca_file}: not a CA "
                              f"certificate file ({exc.strerror or exc})") from None
    return config


def _ca_file(value: Any, config: MqttConfig, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MqttConfigError(f"{source}: [mqtt] ca_file: expected a file name, got {value!r}")
    if not config.tls:
        raise MqttConfigError(f"{source}: [mqtt] ca_file is for mqtts:// (TLS), the url is "
                              f"{config.where}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise MqttConfigError(f"{source}: [mqtt] ca_file {value}: no such file")
    return str(path)

"""``bumpline serve --gem``: the GEM equipment next to the controller, in its event loop.

``gem_service`` starts the equipment on the line configuration's ``[gem]``
settings (defaults for the in-process simulated line), yields the line event
stream the controller publishes into, and closes the equipment when serving ends.
It also carries out the operator's control-state switches that
``bumpline gem control`` records in the database (a person switches: the
request is looked at once a second, like queued lots in ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from controller.errors import UserError
from controller.gem.commands import StoreLineCommands
from controller.gem.config import GemConfig, parse_gem_config
from controller.gem.equipment import GemEquipment
from controller.gem.spool import GemDatabase
from controller.gem.states import ControlError
from controller.line.events import LineEventStream
from drivers.line_config import load_line_config

log = logging.getLogger("controller.gem")

OPERATOR_REQUEST = "operator_request"  # gem_settings key written by `bumpline gem control`
CONTROL_ACTIONS = ("online", "offline", "local", "remote")
DEFAULT_TOOLS = ("printer-1", "placer-1", "oven-1", "cleaner-1")  # the simulated line


def gem_settings(line_file: str | None) -> tuple[GemConfig, tuple[str, ...], str]:
    """(settings, tool names, line name) from a line file's [gem] section, or defaults."""
    if not line_file:
        return GemConfig(), DEFAULT_TOOLS, "sim-line-1"
    config = load_line_config(line_file)
    gem = parse_gem_config(config.gem or {}, source=line_file)
    return gem, tuple(config.tools), config.name


async def apply_operator_request(eq: GemEquipment) -> str | None:
    """Carry out a pending ``bumpline gem control`` request; what happened, for the log."""
    request = eq.db.take(OPERATOR_REQUEST)
    if not request:
        return None
    action, by = request.get("action"), request.get("by", "operator")
    try:
        if action == "online":
            await eq.operator_online()
        elif action == "offline":
            eq.operator_offline()
        elif action in ("local", "remote"):
            eq.operator_remote(action == "remote")
        else:
            raise ControlError(f"unknown control action {action!r}")
        outcome = f"control state {eq.control.state.label}"
    except ControlError as exc:
        outcome = f"refused: {exc}"
    eq.commands.audit("gem.control", f"{action} by {by}: {outcome}")
    return f"{action} ({by}): {outcome}"


@contextlib.asynccontextmanager
async def gem_service(args: Any, store: Any, stream: LineEventStream | None = None
                      ) -> AsyncIterator[LineEventStream | None]:
    """With ``--gem``: the equipment, hearing ``stream`` (else a stream of its own, named
    after the line file's name); None without."""
    if not getattr(args, "gem", False):
        yield None
        return
    config, tools, line_name = gem_settings(args.line)
    if getattr(args, "gem_port", None) is not None:  # serve --gem-port
        config = dataclasses.replace(config, port=args.gem_port)
    loop = asyncio.get_running_loop()
    stream = stream or LineEventStream(line_name, loop.time)
    eq = GemEquipment(config, db=GemDatabase(store.engine, line_id=store.line_id or ""),
                      commands=StoreLineCommands(store),
                      events=stream, tools=tools,
                      on_terminal=lambda text: print(f"host says: {text}", file=sys.stderr))
    try:
        await eq.start()
    except OSError as exc:
        raise UserError(f"GEM cannot listen on {config.host}:{config.port}: "
                        f"{exc.strerror or exc}") from None
    print(f"GEM: {eq.mdln} listening for the host on port {eq.port} (HSMS-SS passive, "
          f"device id {config.device_id}), control state {eq.control.state.label}", flush=True)
    watcher = asyncio.ensure_future(_watch_operator(eq))
    try:
        yield stream
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await eq.close()


async def _watch_operator(eq: GemEquipment) -> None:
    while True:
        try:
            done = await apply_operator_request(eq)
        except Exception:  # the host link must outlive a bad request
            log.exception("operator control request failed")
            done = None
        if done:
            print(f"GEM: {done}", flush=True)
        await asyncio.sleep(1.0)  # a person switches; look once a second

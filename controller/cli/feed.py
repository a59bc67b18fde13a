"""The MQTT feed of ``bumpline run`` and ``bumpline serve``: one way to start it for both.

Every controller of a line feeds the fab's broker when its line file has an
``[mqtt]`` table (or ``--mqtt URL`` is given), not only the service: a line
driven lot by lot with ``bumpline run`` is as visible on the fab dashboard as one
run by ``serve`` (docs/events.md, decision 0015). The settings are read before
anything is taken, so a bad one is one line and no lease; the client library is
imported only when a feed is asked for (``bumpline[mqtt]``).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from controller.cli.leases import line_id
from controller.errors import UserError
from controller.line.events import LineEventStream


def feed_settings(args: argparse.Namespace) -> Any:
    """The MQTT feed's settings (``[mqtt]``, ``--mqtt``), or None: no feed."""
    from controller.feed.config import mqtt_config
    from drivers.line_config import load_line_config

    table = load_line_config(args.line).mqtt if args.line else None
    return mqtt_config(table, getattr(args, "mqtt", None), source=args.line or "line")


async def start_feed(args: argparse.Namespace, settings: Any, events: LineEventStream,
                     services: contextlib.AsyncExitStack) -> None:
    """Feed ``events`` to the broker until ``services`` closes (then flush what is left)."""
    try:
        from controller.feed.mqtt import mqtt_feed
    except ImportError as exc:  # the optional extra is not installed
        raise UserError(f"the MQTT feed needs {exc.name}: pip install 'bumpline[mqtt]'"
                        ) from None
    await services.enter_async_context(mqtt_feed(settings, events, line_id(args)))

"""Server-sent events: each open page hears that the line changed, with its live parts.

A page opens ``/events?part=URL&part=URL…`` naming its live parts. Parts that
are the same for every session are rendered once per change by the screen's
``LivePush`` (controller/web/push.py) and come down the stream as ``part``
messages; the first message (``pushed``) says which. Every page also hears a
``line`` message (the newest event's kinds and ids, and how many) at most once
per push interval, on which it fetches the parts that are not pushed
(static/line.js), so the controller's cost stays bounded whatever the event rate.

A stream ends at its next message or keepalive once its session no longer stands
(logged out, disabled, a new password or role): what it carries is for that
session's role only.

The read-only screen has no stream: it sends a tick every few seconds so pages
pick up what another process wrote to the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from controller.web.auth import current_user
from controller.web.push import LivePush, sse_message
from controller.web.users import UserInfo

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing the stream
READ_ONLY_TICK_S = 3.0
MAX_PARTS = 8  # a page shows two or three


def _still(request: Request, user: UserInfo) -> bool:
    """Whether the stream's session still stands as it was opened: a stream outlives no
    logout, disabling, new password or new role (the browser reconnects, and is told 401
    or gets what its new role may see)."""
    now = current_user(request)
    return now is not None and now.role == user.role


async def _line_messages(request: Request, push: LivePush, user: UserInfo, asked: list[str]
                         ) -> AsyncIterator[str]:
    pushed = frozenset(url for url in asked[:MAX_PARTS] if push.pushable(url, user))
    watcher = push.watch(pushed)
    try:
        yield "retry: 2000\n\n"
        yield sse_message("pushed", sorted(pushed))
        while True:
            try:
                message = await asyncio.wait_for(watcher.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                message = ": keepalive\n\n"
            if not _still(request, user):
                return
            yield message
    finally:
        push.unwatch(watcher)


async def _ticks(request: Request, user: UserInfo) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    while True:
        await asyncio.sleep(READ_ONLY_TICK_S)
        if not _still(request, user):
            return
        yield 'event: line\ndata: {"kinds": ["tick"]}\n\n'


async def line_events(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return PlainTextResponse("log in first", 401)
    push = request.app.state.push
    asked = request.query_params.getlist("part")
    body = (_line_messages(request, push, user, asked) if push is not None
            else _ticks(request, user))
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

"""Server-sent events: each browser hears that the line changed, and reloads what it shows.

One subscription to the line event stream per open page. Events are batched:
the first one starts a 0.5 s gathering, then everything queued goes out as one
message (the newest event's kind and ids, and how many), so a page costs the
line at most two messages a second, whatever the event rate. The page decides what
to fetch again (controller/web/static/line.js), at most once a second,
so the controller's cost stays bounded whatever the event rate.

The read-only screen has no stream: it sends a tick every few seconds so pages
pick up what another process wrote to the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from controller.line.events import LineEventStream
from controller.web.auth import current_user

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing the stream
READ_ONLY_TICK_S = 3.0
MIN_INTERVAL_S = 0.5  # wall seconds between two messages to one page


async def _line_messages(stream: LineEventStream, request: Request) -> AsyncIterator[str]:
    subscription = stream.subscribe(f"web:{id(request)}", maxsize=1000)
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                first = await asyncio.wait_for(subscription.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            except StopAsyncIteration:
                return
            # Gather what else comes within the interval: one message per interval at most,
            # whatever the event rate (the page refreshes at most once a second anyway).
            await asyncio.sleep(MIN_INTERVAL_S)
            batch = [first]
            while (more := subscription.get_nowait()) is not None:
                batch.append(more)
            last = batch[-1]
            kinds = sorted({e.kind.value for e in batch})
            data = {"seq": last.seq, "count": len(batch), "kinds": kinds,
                    "lots": sorted({e.lot_id for e in batch if e.lot_id}),
                    "wafers": sorted({e.wafer_id for e in batch if e.wafer_id}),
                    "missed": subscription.missed}
            yield f"event: line\ndata: {json.dumps(data)}\n\n"
    finally:
        subscription.close()


async def _ticks() -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    while True:
        await asyncio.sleep(READ_ONLY_TICK_S)
        yield 'event: line\ndata: {"kinds": ["tick"]}\n\n'


async def line_events(request: Request) -> Response:
    if current_user(request) is None:
        return PlainTextResponse("log in first", 401)
    stream = request.app.state.web.events
    body = _line_messages(stream, request) if stream is not None else _ticks()
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

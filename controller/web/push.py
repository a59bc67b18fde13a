"""Live parts pushed down the event stream: rendered once per change, sent to every screen.

Three screens that each fetched their live parts after every burst of line
events cost the controller a request apiece (uvicorn, the session middleware,
the thread pool, the store's queries, the template): ~18 ms of CPU per wafer
at 400x (benchmarks/bench_web.py). Here one ``LivePush`` per screen server
listens to the line event stream (a quick synchronous listener), and at most
once per ``PUSH_INTERVAL_S`` it renders each live part some open page watches,
once, in the thread pool, from the database, and hands the HTML to every page
that watches it and was not sent the same already. Open pages cost a queue
each, not a request each.

Parts with per-session content (forms carrying a CSRF token: alarms) are not
pushed: their pages hear a ``line`` message each interval and fetch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Match

from controller.line.events import EventKind, LineEvent, LineEventStream
from controller.web.pages import PART_CACHE
from controller.web.users import Role, UserInfo

log = logging.getLogger("controller.web.push")

# Wall seconds between two pushes. A render costs the controller a few ms of CPU whatever the
# time scale: at 1 s three screens still cost ~+16 ms per wafer at 200x (bench_web.py); a fab
# step takes minutes at 1x, so 2 s is as live as an operator needs.
PUSH_INTERVAL_S = 2.0
CLIENT_QUEUE = 64  # messages a slow page may fall behind before it is sent a fresh start


@dataclass(eq=False)  # each page its own, in a set
class Watcher:
    """One open page: the pushed parts it shows and its outgoing messages."""

    parts: frozenset[str]
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    # Part URL -> the HTML this page was sent last. Per page, not one "last pushed" for all:
    # a page that opened after a push shows what it rendered and fetched itself, which can
    # be older than that push; it gets the next render that differs from what *it* has.
    sent: dict[str, str] = field(default_factory=dict)

    def send(self, message: str) -> bool:
        """A server-sent event message, encoded once for every page (``sse_message``);
        False when it was dropped with everything queued before it (a page that fell
        behind)."""
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:  # a stuck browser: it reloads what it shows when it wakes
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.sent.clear()  # what it was sent is gone with the queue: the next push resends
            self.queue.put_nowait(sse_message("line", {"kinds": ["resync"], "missed": True}))
            return False


def sse_message(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


class LivePush:
    """Renders the watched live parts once per interval in which the line changed."""

    def __init__(self, app: Any, events: LineEventStream,
                 shared: Callable[[str], Role | None]) -> None:
        self.app = app
        self.shared = shared  # part URL -> least role, or None when it is not pushable
        self.watchers: set[Watcher] = set()
        self._batch: list[LineEvent] = []
        self._changed = asyncio.Event()
        self._poked = False
        self._task: asyncio.Task[None] | None = None
        self.renders = 0  # parts rendered (the tests and the benchmark read it)
        self.render_cpu_s = 0.0  # CPU seconds spent rendering them (bench_web.py reports it)
        events.listen(self._heard)

    def _heard(self, event: LineEvent) -> None:
        self._batch.append(event)
        if len(self._batch) > 10_000:  # nobody watched for a long time: render all next time
            del self._batch[:-1]
            self._poked = True
        self._changed.set()

    def pushable(self, url: str, user: UserInfo) -> bool:
        least = self.shared(url)
        return least is not None and user.role >= least

    def watch(self, parts: frozenset[str]) -> Watcher:
        if self._task is None or self._task.done():  # on the running loop, at first use
            self._task = asyncio.create_task(self._run(), name="web-push")
        watcher = Watcher(parts)
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            started = loop.time()
            self._changed.clear()
            batch, self._batch = self._batch, []
            if self.watchers and (batch or self._poked):
                try:
                    await self._push(batch)
                except Exception:  # a broken page must not stop the others' updates
                    log.exception("pushing the live parts failed")
            # Coalesce: whatever happens meanwhile goes out in the next push.
            await asyncio.sleep(max(0.0, PUSH_INTERVAL_S - (loop.time() - started)))

    def poke(self) -> None:
        """A write from the screen changed what parts show, with no line event (yet): render
        every watched part at the next push."""
        self._poked = True
        self._changed.set()

    async def _push(self, batch: list[LineEvent]) -> None:
        summary = {"seq": batch[-1].seq if batch else 0, "count": len(batch),
                   "kinds": sorted({e.kind.value for e in batch}),
                   "lots": sorted({e.lot_id for e in batch if e.lot_id}),
                   "wafers": sorted({e.wafer_id for e in batch if e.wafer_id})}
        poked, self._poked = self._poked, False
        watched = sorted({url for w in self.watchers for url in w.parts})
        rendered: dict[str, str] = {}
        for url in watched:
            if not poked and not concerns(url, batch):
                continue  # nothing in the batch can change it: no render, no queries
            html = await run_in_threadpool(self._timed_render, url)
            self.renders += 1
            if html is not None:
                rendered[url] = html
        line = sse_message("line", summary)
        messages: dict[str, str] = {}  # encoded once, for every page that needs it
        for watcher in list(self.watchers):
            watcher.send(line)
            for url, html in rendered.items():
                if url in watcher.parts and watcher.sent.get(url) != html:
                    if url not in messages:
                        messages[url] = sse_message("part", {"url": url, "html": html})
                    if watcher.send(messages[url]):  # dropped: it fetches everything again
                        watcher.sent[url] = html

    def _timed_render(self, url: str) -> str | None:
        started = time.thread_time()
        try:
            return self.render(url)
        finally:
            self.render_cpu_s += time.thread_time() - started

    def render(self, url: str) -> str | None:
        """The part at ``url`` as its page's own handler renders it (in the thread pool)."""
        split = urlsplit(url)
        scope: dict[str, Any] = {
            "type": "http", "method": "GET", "path": split.path, "raw_path": split.path.encode(),
            "query_string": split.query.encode(), "headers": [], "app": self.app,
            "session": {}, "root_path": "", "scheme": "http", "server": ("screen", 0),
            PART_CACHE: ({}, 0),  # from the database: a cache of its own, read by nobody
        }
        for route in self.app.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                handler = getattr(route.endpoint, "page", None)
                if handler is None:
                    return None
                response = handler(Request(scope), PUSHER)
                return bytes(response.body).decode() if response.status_code == 200 else None
        return None


# What each shared part shows, by the events that can change it (path prefix -> test); a part
# not listed changes with any event. The Line page shows every tool: any event.
_ALARMS = frozenset({EventKind.ALARM_SET, EventKind.ALARM_CLEARED})
_LOTS = frozenset({EventKind.LOT_STATE, EventKind.WAFER_TRANSITION, EventKind.OPERATOR_REQUEST})
_WAITING = frozenset({EventKind.DISPOSITION_NEEDED, EventKind.WAFER_TRANSITION,
                      EventKind.OPERATOR_REQUEST})


def concerns(url: str, batch: list[LineEvent]) -> bool:
    """Whether an event of ``batch`` can change the part at ``url``."""
    path = urlsplit(url).path
    parts = path.strip("/").split("/")
    if path == "/alarms/banner":
        return any(e.kind in _ALARMS for e in batch)
    if path == "/lots":
        return any(e.kind in _LOTS for e in batch)
    if parts[0] == "lots" and len(parts) == 2:
        return any(e.lot_id == parts[1] for e in batch)
    if parts[0] == "wafers" and len(parts) == 2:
        return any(e.wafer_id == parts[1] or parts[1] in e.data.get("wafers", ())
                   for e in batch)
    if path == "/dispositions":
        return any(e.kind in _WAITING for e in batch)
    if path == "/reports":
        return any(e.kind is EventKind.LOT_STATE for e in batch)
    return True


# Who the pushed parts are rendered for: shared parts carry nothing of a session or a user.
PUSHER = UserInfo(name="screen", role=Role.OPERATOR, disabled=False,
                  created_at=None, changed_at=None)  # type: ignore[arg-type]

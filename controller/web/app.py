"""The operator screen's application and its server inside the controller's event loop.

``build_app(web)`` makes the Starlette app for one ``WebContext`` (the store,
the users, the line event stream or None when read-only). ``web_server``
runs it with uvicorn as a task on the running loop, so the screen shares the
controller's loop and stream and needs no thread or process of its own.
Page handlers are plain functions: Starlette runs them in its thread pool, so
their database reads never stall the line's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from controller.errors import EXIT_USAGE, UserError
from controller.line.events import LineEventStream
from controller.store import Store
from controller.web import actions, pages
from controller.web.auth import LoginLimiter
from controller.web.guard import Guard
from controller.web.live import LineView
from controller.web.push import LivePush
from controller.web.sse import line_events
from controller.web.users import UserBook, UserInfo

log = logging.getLogger("controller.web")

SECRET_ENV = "BUMPLINE_WEB_SECRET"
SESSION_MAX_AGE_S = 12 * 3600  # one shift
MIN_SECRET = 32  # characters of the session signing key
USER_TTL_S = 5.0  # wall seconds a user's role and state, and a session's, are taken as read
MAX_SESSIONS = 1000  # sessions whose state is kept before the stale ones are dropped
DEFAULT_ADDRESS = "127.0.0.1:8080"


@dataclass
class WebContext:
    """What the pages and actions share."""

    store: Store
    events: LineEventStream | None  # None: read-only, no controller runs
    report_dir: Path = Path("reports")
    users: UserBook = field(init=False)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    view: LineView = field(default_factory=LineView)
    notes: dict[tuple[str, str], Any] = field(default_factory=dict)  # auth.note
    parts: dict[tuple[str, str, int], bytes] = field(default_factory=dict)  # pages.render
    push: LivePush | None = None  # set by build_app when a line event stream feeds the screen
    session_max_age_s: int = SESSION_MAX_AGE_S
    line_tools: tuple[str, ...] = ()  # the serving line's tools, reported or not yet
    # (role, driver, never connected) of each of the serving line's tools (None: not
    # known, e.g. read-only): a lot is started only on a recipe whose every step one of
    # them can take (a barrier without a plater, a strip without an FC-2 would wait forever).
    line_drivers: list[tuple[str, Any]] | None = None
    clock: Callable[[], float] = time.monotonic  # the caches' (tests: a manual one)
    _users: dict[str, tuple[float, UserInfo | None]] = field(default_factory=dict)
    _sessions: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id: (read, ended)

    def __post_init__(self) -> None:
        self.users = UserBook(self.store)
        if self.events is not None:
            self.events.listen(self.view.listen)

    def user(self, name: str) -> UserInfo | None:
        """The user as the database has it, read at most every USER_TTL_S per name: a
        disabled user or a changed role applies within that (changes made on this screen
        at once), without a query on each of a page's live fetches."""
        now = self.clock()
        cached = self._users.get(name)
        if cached is None or now - cached[0] > USER_TTL_S:
            cached = self._users[name] = (now, self.users.get(name))
        return cached[1]

    def forget_users(self) -> None:
        self._users.clear()

    def session_ended(self, session_id: str) -> bool:
        """Whether a logout ended the session, on any screen of the database (the table
        ``web_ended_sessions``): read at most every USER_TTL_S per session, as the user is,
        so a logout on another screen holds here within that and one on this screen at
        once. An ended session stays ended: only a live one is read again."""
        now = self.clock()
        cached = self._sessions.get(session_id)
        if cached is not None and (cached[1] or now - cached[0] <= USER_TTL_S):
            return cached[1]
        if len(self._sessions) >= MAX_SESSIONS:
            self._forget_sessions(now)
        ended = self.store.web_session_ended(session_id)
        self._sessions[session_id] = (now, ended)
        return ended

    def end_session(self, session_id: str, user: str) -> None:
        """Log a session out: recorded in the database (with its audit line) for every
        screen on it, and refused here at once."""
        self.store.end_web_session(session_id, user=user, max_age_s=self.session_max_age_s)
        self._sessions[session_id] = (self.clock(), True)

    def _forget_sessions(self, now: float) -> None:
        """Drop what would be read again anyway, and ended sessions whose cookies have
        expired."""
        for session_id, (read, ended) in list(self._sessions.items()):
            if now - read > (self.session_max_age_s if ended else USER_TTL_S):
                del self._sessions[session_id]

    @property
    def read_only(self) -> bool:
        return self.events is None

    def audit(self, user: str, action: str, detail: str = "", *, lot_id: str | None = None,
              wafer_id: str | None = None) -> None:
        self.store.audit(user, action, detail, lot_id=lot_id, wafer_id=wafer_id)


def _package_dir(name: str) -> str:
    return str(resources.files("controller.web") / name)


def build_app(web: WebContext, *, secret: str | None = None) -> Starlette:
    """The screen; ``secret`` signs session cookies (default $BUMPLINE_WEB_SECRET, else a
    random key: sessions then end when the controller restarts)."""
    key = secret or session_key()
    routes = [
        *pages.routes(),
        *actions.routes(),
        Route("/events", line_events),
        Mount("/static", StaticFiles(directory=_package_dir("static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: pages.http_error},  # no route: the screen's 404
        middleware=[Middleware(Guard),
                    Middleware(SessionMiddleware, secret_key=key, session_cookie="bumpline",
                               max_age=web.session_max_age_s, same_site="strict",
                               https_only=False)],
    )
    app.state.web = web
    app.state.push = web.push = None if web.events is None else LivePush(
        app, web.events, lambda url: pages.pushed_part(app, url))
    app.state.templates = Jinja2Templates(directory=_package_dir("templates"))
    # Compiled now, not on a first page view in the middle of a lot: compiling holds the
    # interpreter for tens of ms, which the line's loop would feel (bench_web.py).
    for name in app.state.templates.env.list_templates():
        app.state.templates.env.get_template(name)
    return app


def session_key() -> str:
    """$BUMPLINE_WEB_SECRET, else a random key; a short one is refused (it can be guessed, and
    every session forged with it)."""
    key = os.environ.get(SECRET_ENV) or secrets.token_urlsafe(MIN_SECRET)
    if len(key) < MIN_SECRET:
        raise UserError(f"${SECRET_ENV} is {len(key)} characters: use at least {MIN_SECRET} "
                        "random ones (python -c 'import secrets; print(secrets.token_urlsafe"
                        "(32))')", exit_code=EXIT_USAGE)
    return key


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise UserError(f"--web needs HOST:PORT, e.g. {DEFAULT_ADDRESS} (got '{text}')",
                        exit_code=EXIT_USAGE)
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def web_server(web: WebContext, address: str) -> AsyncIterator[str]:
    """Serve the screen on the running loop until the block ends; yields its URL."""
    host, port = parse_address(address)
    key = session_key()  # before binding: a bad key is refused with no socket left open
    try:  # bound here, so a taken port is one clear line (uvicorn would exit the process)
        sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
    except OSError as exc:
        raise UserError(f"cannot serve the screen on {address}: {exc.strerror or exc}") from None
    app = build_app(web, secret=key)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    bound = sock.getsockname()[1]
    try:
        yield f"http://{host}:{bound}/"
    finally:
        server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if app.state.push is not None:
            await app.state.push.close()
        sock.close()


class _QuietServer(uvicorn.Server):
    """uvicorn's server, waking once a second instead of ten times: every wake of the loop
    costs the controller CPU (about 3 ms a second at ten, on the loaded benchmark machine,
    benchmarks/bench_web.py), and all a tick does is refresh the Date header and look
    whether to stop, which ``stop`` now says at once."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM stay the command's (serve's Stopper: the first stops cleanly).
        uvicorn's own handlers (since 0.29; install_signal_handlers is gone) stopped the
        screen and raised the signal again as it ended: one Ctrl-C was two, and left at once."""
        yield

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # tick 0: the Date header is refreshed each time
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # no task per tick, as wait_for would make
                    await self._stop.wait()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET

"""Who is asking, and may they: sessions, CSRF tokens, login rate limits, role checks.

The session is a cookie signed by Starlette's SessionMiddleware (itsdangerous):
the browser holds ``{"user", "csrf", "since"}`` and cannot change it without the
key. The role is looked up in the database (``WebContext.user``, at most 5 s
old), and ``since`` is the user's ``changed_at`` when they logged in: a new
password, disabling (even if enabled again later) or a new role ends every session
the user had, within seconds, not when the cookie expires. The session's CSRF
token doubles as its id: logging out records it as ended in the database
(``web_ended_sessions``, through the store), so a copy of the cookie is refused
afterwards too, by every screen on that database and after a restart (checked
with the user, at most every 5 s per session).

Every write is a POST carrying the session's CSRF token (form field ``csrf`` or
header ``X-CSRF-Token``); the cookie is also ``SameSite=Strict``. A write is
checked on the server, in this order: session (401), CSRF (403), no control
character in a field (400), role (403, audited), read-only screen (409, users
included). ``writes`` wraps each write endpoint so none can forget a step.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from controller.web.layout import error
from controller.web.users import Role, UserInfo

LOGIN_WINDOW_S = 300.0  # wall seconds over which failed logins are counted
LOGIN_FAILURES = 5  # failures within the window that lock out a name or an address
MAX_NOTES = 1000  # pending write outcomes kept for sessions that have not come back for them


@dataclass
class LoginLimiter:
    """At most ``LOGIN_FAILURES`` failed logins per name and per client address per window."""

    now: Callable[[], float] = time.monotonic
    window_s: float = LOGIN_WINDOW_S
    failures: int = LOGIN_FAILURES
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float]:
        seen = self._seen.setdefault(key, deque())
        cutoff = self.now() - self.window_s
        while seen and seen[0] < cutoff:
            seen.popleft()
        return seen

    def blocked(self, name: str, address: str) -> float:
        """Seconds until a login may be tried again (0: now)."""
        wait = 0.0
        for key in (f"user:{name}", f"addr:{address}"):
            if key not in self._seen:  # asking keeps nothing: names never tried cost no memory
                continue
            seen = self._recent(key)
            if not seen:
                del self._seen[key]
            elif len(seen) >= self.failures:
                wait = max(wait, seen[0] + self.window_s - self.now())
        return wait

    def failed(self, name: str, address: str) -> None:
        for key in (f"user:{name}", f"addr:{address}"):
            self._recent(key).append(self.now())

    def succeeded(self, name: str) -> None:
        self._seen.pop(f"user:{name}", None)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def note(request: Request, kind: str, value: Any) -> None:
    """Something to show on the next page this session loads (a write's outcome).

    Kept on the server, keyed by the session's CSRF token, not in the cookie: a page's
    live requests run alongside and each sends the cookie back as it saw it, which
    would bring a shown message back or lose one."""
    notes = request.app.state.web.notes
    if len(notes) > MAX_NOTES:  # sessions that never came back for theirs
        notes.clear()
    notes[(csrf_token(request), kind)] = value


def take_note(request: Request, kind: str) -> Any:
    return request.app.state.web.notes.pop((csrf_token(request), kind), None)


def stamp(user: UserInfo) -> str:
    """What a session remembers of its user: any change to the account ends the session."""
    return user.changed_at.isoformat()


def start_session(request: Request, user: UserInfo) -> None:
    """A new session and a new CSRF token (its id) for ``user``: no session fixation."""
    request.session.clear()
    request.session["user"] = user.name
    request.session["since"] = stamp(user)
    csrf_token(request)


def end_session(request: Request, user: UserInfo) -> None:
    """Log out: the cookie is cleared, and its id recorded as ended in the database, so
    every screen on it refuses a copy of the cookie (this one at once, others within
    ``USER_TTL_S``), after a restart too. The logout's audit line commits with it."""
    request.app.state.web.end_session(request.session["csrf"], user.name)  # writes checked it
    request.session.clear()


def current_user(request: Request) -> UserInfo | None:
    """The session's user, or None (and the session cleared) when it no longer stands: the
    user is gone, disabled or changed since the login, or the session was logged out."""
    name = request.session.get("user")
    if not name:
        return None
    web = request.app.state.web
    user = web.user(name)
    token = request.session.get("csrf")
    if (user is None or user.disabled or request.session.get("since") != stamp(user)
            or not token or web.session_ended(token)):
        request.session.clear()
        return None
    return user


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _csrf_ok(request: Request) -> bool:
    expected = request.session.get("csrf")
    if not expected:
        return False
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf")
        given = value if isinstance(value, str) else None
    # bytes: compare_digest refuses non-ASCII text, and a form may carry any
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# C0 control characters but tab, line feed and carriage return: typed by no one, and NUL is
# refused by PostgreSQL in any text (a 500, not an answer, if it got that far).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


async def bad_field(request: Request, user: UserInfo | None = None) -> Response | None:
    """A 400 naming the form field that holds a control character, else None (``user``: the
    session's, None at the login)."""
    form = await request.form()
    for key, value in form.multi_items():
        if isinstance(value, str) and _CONTROL.search(key + value):
            return error(request, f"refused: the field '{_CONTROL.sub('?', key)[:32]}' holds "
                         "a control character", 400, user=user)
    return None


Endpoint = Callable[[Request, UserInfo], Awaitable[Response]]
Write = Callable[[Request], Awaitable[Response]]  # a POST route's endpoint, as ``writes`` makes it


def writes(role: Role, action: str, *, read_only_ok: bool = False
           ) -> Callable[[Endpoint], Write]:
    """A write endpoint for ``role`` and up; ``action`` names it in the audit log.

    Refused on a read-only screen (``bumpline web``: it changes nothing, users included)
    unless ``read_only_ok``: logging out, and validating a recipe, which stores nothing.
    """

    def wrap(endpoint: Endpoint) -> Write:
        async def checked(request: Request) -> Response:
            try:
                return await _checked(request)
            finally:
                await request.close()  # uploaded files' temporary files

        async def _checked(request: Request) -> Response:
            web = request.app.state.web
            user = current_user(request)
            if user is None:
                # As before the screen had error pages: a 401 is no page of the screen's.
                return PlainTextResponse("log in first (your session has ended)", 401)
            if not await _csrf_ok(request):
                return error(
                    request, "refused: the form is stale or came from another site (reload "
                    "the page)", 403, user=user)
            refused = await bad_field(request, user)
            if refused is not None:
                return refused
            if user.role < role:
                web.audit(user.name, f"web.denied.{action}",
                          f"needs {role.label}, {user.name} is {user.role.label}")
                return error(request, f"refused: {action} needs the {role.label} role; you "
                             f"are {user.role.label}", 403, user=user)
            if web.read_only and not read_only_ok:
                return error(
                    request, "refused: this screen is read-only (no controller runs) and "
                    "changes nothing; act on the line from 'bumpline serve --web', manage "
                    "users with 'bumpline user' on the controller host", 409, user=user)
            return await endpoint(request, user)

        checked.__name__ = endpoint.__name__
        checked.__doc__ = endpoint.__doc__
        checked.write_role = role  # type: ignore[attr-defined]  # the role matrix reads it
        return checked

    return wrap


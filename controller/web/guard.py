"""What every request and response of the screen passes through, before any page or session.

- A request body is at most ``MAX_BODY`` bytes, and says its length: a bigger one
  answers 413 and a chunked one 411 before a byte of it is read. Starlette parses
  a form's files into temporary files of any size, and the login form is open to
  anyone, so without this a stranger could fill the controller host's disk.
- A NUL character in the address is refused (400): PostgreSQL refuses it in any text.
- Every response says: no sniffing of content types, no framing by other sites, and
  scripts, styles, pictures and connections only from the screen itself
  (Content-Security-Policy: nothing from a CDN, and no inline script to inject).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.web.layout import error

MAX_BODY = 1024 * 1024  # bytes: a recipe upload (256 kB, actions.MAX_UPLOAD) and its form
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"content-security-policy", CSP.encode())]


class Guard:
    """Pure ASGI middleware (no buffering: the event stream passes straight through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _refused(scope, Headers(scope=scope))
        if refused is not None:
            await refused(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADERS]
            await send(message)

        return sending


def _refused(scope: Scope, headers: Headers) -> Response | None:
    """Answered before the session is read: a page without a menu for a browser."""
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:  # no database takes one
        return error(Request(scope), "refused: a NUL character in the address", 400)
    if "transfer-encoding" in headers:
        return error(Request(scope), "refused: send the request with its Content-Length", 411)
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return error(Request(scope),
                     f"refused: a request to the screen is at most {MAX_BODY // 1024} kB", 413)
    return None

"""The frame every page of the screen shares (templates/base.html): the menu a role sees, and
error answers.

An error (an unknown lot, wafer or report, a role too low, the read-only screen, a request
the guard refuses, an address no route takes) is answered by ``error`` alone, which decides
its form. A person's browser that navigated there (it asks for HTML) gets a page in the
screen's layout with the status, the message and a link back: an operator at the tool cart
who followed a link to an unknown wafer used to meet a bare text page with no way back.
htmx (``HX-Request``), the pages' own fetches of their live parts (static/line.js, which
ignore an error) and any other client get the one line of text they always got. The
message is the same either way, escaped on the page, and nothing else of the request or
the session is shown but the path it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from controller.web.users import Role, UserInfo

NAV = (  # (path, label, least role)
    ("/line", "Line", Role.OPERATOR),
    ("/lots", "Lots", Role.OPERATOR),
    ("/alarms", "Alarms", Role.OPERATOR),
    ("/dispositions", "Dispositions", Role.ENGINEER),
    ("/recipes", "Recipes", Role.ENGINEER),
    ("/reports", "Reports", Role.OPERATOR),
    ("/users", "Users", Role.ADMIN),
)
HOME = "/line"  # where a link back goes when the request came from no page of the screen


def menu(user: UserInfo | None) -> list[tuple[str, str]]:
    """The pages ``user`` may open: nobody's session, no menu."""
    return [(path, label) for path, label, least in NAV if user and user.role >= least]


def came_from(request: Request, fallback: str = HOME) -> str:
    """The path of the page the request came from (its Referer), else ``fallback``: only a
    path on this screen, never an address elsewhere (``//host`` and ``/\\host`` are one to a
    browser)."""
    path = urlsplit(request.headers.get("referer", "")).path
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return fallback
    return path


def wants_page(request: Request) -> bool:
    """Whether the request is a browser's navigation (a link followed, an address typed, a
    form sent), which shows the answer as a page: it asks for HTML, and is not htmx's."""
    headers = request.headers
    return headers.get("hx-request") != "true" and "text/html" in headers.get("accept", "")


def error(request: Request, message: str, status: int, *, user: UserInfo | None = None,
          headers: Mapping[str, str] | None = None) -> Response:
    """The screen's one answer to a request it cannot serve: ``message`` as text, or as a page
    in the screen's layout for a browser's navigation (``wants_page``). ``user``: the
    session's, for its menu; None before a session is known (the guard, the login), when the
    page has no menu and no form."""
    if not wants_page(request):
        return PlainTextResponse(message, status, headers=headers)
    back = came_from(request)
    if back == request.url.path and request.method == "GET":  # a link back to this same error
        back = HOME
    context = {
        "user": user, "nav": menu(user), "page": f"error {status}",
        "read_only": request.app.state.web.read_only,
        # The guard answers before the session is read: no token, and no form needs one.
        "csrf": request.session.get("csrf", "") if user is not None else "",
        "active_alarms": [],  # the alarm band: static/line.js fetches it once the stream opens
        "status": status, "phrase": HTTPStatus(status).phrase, "message": message,
        "back": back,
    }
    return request.app.state.templates.TemplateResponse(
        request, "error.html", context, status_code=status,
        headers={**(headers or {}), "Cache-Control": "no-store"})

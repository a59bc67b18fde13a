"""The screen's pages (GET): Line, Lots, Wafer, Alarms, Recipes, Dispositions, Reports, Users.

Each page renders whole on first load and, with ``?live=1``, only its live part,
which the browser fetches again when the line event stream says something
changed (static/line.js). Forms stay outside the live part, so what a person
is typing is never replaced under their fingers. A page a role may not use
answers 403 and is not in its menu.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Match, Route

from controller.line.e10 import ToolMode
from controller.store import Disposition, StoreError
from controller.web.auth import csrf_token, current_user, take_note
from controller.web.layout import error, menu
from controller.web.users import Role, UserInfo
from controller.web.views import (
    first_bump_solidus,
    judged,
    lot_progress,
    reflow_svg,
    startable_recipes,
)
from sequences.errors import RecipeError
from sequences.recipes.recipe import find_recipe, shipped_recipe_paths

WAITING = ("held", "awaiting_disposition")


# Live parts that are the same for every session (no CSRF token in them): rendered once per
# line event however many screens ask (bench_web.py); alarms_live has per-session forms.
# A request scope's key: (the part cache, the line's event number) the page renders with; the
# screen's push gives its own renders a cache nobody reads (they come from the database).
PART_CACHE = "bumpline.part_cache"
SHARED_PARTS = frozenset({"line", "lots", "lot", "wafer", "dispositions", "reports", "_banner"})
MAX_CACHED = 256


def render(request: Request, page: str, user: UserInfo | None, status: int = 200,
           **context: Any) -> Response:
    web = request.app.state.web
    live = request.query_params.get("live") == "1" or page.startswith("_")  # a part only
    # Cached by the line's event number, both taken before the page read the store (``_page``):
    # an event published, or a write from the screen (which replaces the cache,
    # actions._done), while it reads leaves what it renders under an older number, or in
    # a cache nobody reads any more; never older HTML under a newer number.
    parts, seq = request.scope.get(PART_CACHE) or (web.parts, web.view.last_seq)
    key = (request.url.path, request.url.query, seq)
    if live and page in SHARED_PARTS and not web.read_only:
        cached = parts.get(key)
        if cached is None:
            cached = _render(request, page, user, live, context).body
            if len(parts) >= MAX_CACHED:
                parts.clear()
            parts[key] = cached
        return Response(cached, media_type="text/html",
                        headers={"Cache-Control": "no-store"})
    return _render(request, page, user, live, context, status)


def _render(request: Request, page: str, user: UserInfo | None, live: bool,
            context: dict[str, Any], status: int = 200) -> Response:
    web = request.app.state.web
    name = f"{page}.html" if page.startswith("_") else (
        f"{page}_live.html" if live else f"{page}.html")  # parts never take a page's notes
    banner = user is not None and (not live or page == "_banner")  # only they show it
    context.update(
        user=user, nav=menu(user),
        page=page, read_only=web.read_only, csrf=csrf_token(request),
        flash=take_note(request, "flash") if not live else None,
        Role=Role, active_alarms=_loud_alarms(web.store) if banner else [],
    )
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                        status_code=status,
                                                        headers={"Cache-Control": "no-store"})


def _loud_alarms(store: Any) -> list[Any]:
    """Active alarms, and cleared ones nobody acknowledged yet: an alarm the controller
    cleared in a second (decision 0005) must still reach a person."""
    # A line's screen shows its line's (a tool name repeats on every line); the read-only
    # screen of no line shows every line's.
    return [a for a in store.alarms(line_id=store.line_id)
            if a.active or a.acknowledged_at is None]


def _page(least: Role, *, shared: bool = False) -> Any:
    """A GET page for ``least`` role and up: no session → the login page; too low → 403.
    ``shared``: its live part is the same for every session, so it may be pushed
    (controller/web/push.py), which calls ``handler`` itself as ``checked.page``."""

    def wrap(handler: Any) -> Any:
        def checked(request: Request) -> Response:
            user = current_user(request)
            if user is None:
                return RedirectResponse("/", 303)
            if user.role < least:
                return error(request, f"this page needs the {least.label} role", 403, user=user)
            # The part cache and the line's event number as they are before the handler reads
            # the store: what it reads is at least that new (see ``render``).
            web = request.app.state.web
            request.scope[PART_CACHE] = (web.parts, web.view.last_seq)
            return handler(request, user)

        checked.__name__ = handler.__name__
        checked.page = handler  # type: ignore[attr-defined]
        checked.least = least  # type: ignore[attr-defined]
        checked.shared = shared  # type: ignore[attr-defined]
        return checked

    return wrap


def pushed_part(app: Any, url: str) -> Role | None:
    """The least role for the live part at ``url`` when it can be pushed to every page that
    shows it (a shared page's ``?live=1`` or the alarm banner), else None."""
    split = urlsplit(url)
    if not split.path.startswith("/") or split.netloc:
        return None
    live = split.query == "live=1" or split.path == "/alarms/banner"
    scope = {"type": "http", "method": "GET", "path": split.path}
    for route in app.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            endpoint = getattr(route, "endpoint", None)
            if endpoint is None or not (live and getattr(endpoint, "shared", False)):
                return None
            return endpoint.least
    return None


def home(request: Request) -> Response:
    user = current_user(request)
    if user is not None:
        return RedirectResponse("/line", 303)
    return render(request, "login", None)


@_page(Role.OPERATOR, shared=True)
def line(request: Request, user: UserInfo) -> Response:
    web = request.app.state.web
    line_id = web.store.line_id
    # A line's screen: its tools by name. The read-only screen of no line: every line's,
    # one row per line and tool (their names repeat on every line: oven-1 on each).
    fab = line_id is None

    def key(line: str | None, tool: str) -> tuple[str, str]:
        return (line or "" if fab else "", tool)

    states = {key(s.line_id, s.tool): s for s in web.store.tool_states_latest(line_id)}
    lots = web.store.list_lots(["running"], line_id=line_id)  # its oven-1 is its own
    where = {key(lot.line_id, w.location): w.id for lot in lots
             for w in web.store.wafers(lot.id) if w.outcome is None and w.location}
    modes = ({key(None, tool): m for tool, m in web.store.tool_modes().items()} if not fab
             else {key(m.line_id, m.tool): m for m in web.store.every_tool_mode()})
    here = {key(None, name) for name in (*web.view.tools, *web.line_tools)}
    tools = [(line, name, states.get((line, name)), web.view.tools.get(name) if not fab
              else None, where.get((line, name)), modes.get((line, name)))
             for line, name in sorted(set(states) | here)]  # every tool
    return render(request, "line", user, tools=tools, ovens=sorted(web.view.ovens.items()),
                  modes=[m.value for m in ToolMode], fab=fab,
                  tool_names=sorted({name for _, name, *_ in tools}))


def _stopped(store: Any, lot: Any) -> bool:
    """A running lot whose controller is gone (no live lease), as `lot list` shows it."""
    return lot.state == "running" and store.lot_lock_holder(lot.id, live_only=True) is None


@_page(Role.OPERATOR, shared=True)
def lots(request: Request, user: UserInfo) -> Response:
    store = request.app.state.web.store
    shown = store.list_lots(["queued", "running", "held"])
    progress = [lot_progress(lot, store.wafers(lot.id), stopped=_stopped(store, lot))
                for lot in shown]
    recent = [lot for lot in store.list_lots(["complete", "aborted"])][:10]
    return render(request, "lots", user, progress=progress, recent=recent,
                  recipes=startable_recipes(request.app.state.web.line_drivers))


@_page(Role.OPERATOR, shared=True)
def lot(request: Request, user: UserInfo) -> Response:
    store = request.app.state.web.store
    try:
        info = store.get_lot(request.path_params["lot_id"])
    except StoreError as exc:
        return error(request, str(exc), 404, user=user)
    wafers = store.wafers(info.id)
    return render(request, "lot", user, lot=info, wafers=wafers,
                  progress=lot_progress(info, wafers, stopped=_stopped(store, info)),
                  requests=store.requests(lot_id=info.id))


@_page(Role.OPERATOR, shared=True)
def wafer(request: Request, user: UserInfo) -> Response:
    store = request.app.state.web.store
    try:
        history = store.wafer_history(request.path_params["wafer_id"])
        info = store.get_lot(history.wafer.lot_id)
    except StoreError as exc:
        return error(request, str(exc), 404, user=user)
    solidus = first_bump_solidus(info.recipe_name)
    steps = [(s, judged(s), reflow_svg(s, solidus) if s.kind == "reflow" else "")
             for s in history.steps]
    return render(request, "wafer", user, h=history, lot=info, steps=steps,
                  dispositions=[d.value for d in Disposition], waiting=WAITING)


@_page(Role.OPERATOR, shared=True)
def banner(request: Request, user: UserInfo) -> Response:
    return render(request, "_banner", user)


@_page(Role.OPERATOR)
def alarms(request: Request, user: UserInfo) -> Response:
    store = request.app.state.web.store
    return render(request, "alarms", user, alarms=store.alarms(line_id=store.line_id)[:200])


@_page(Role.ENGINEER, shared=True)
def dispositions(request: Request, user: UserInfo) -> Response:
    store = request.app.state.web.store
    waiting = [w for lot in store.list_lots(["running", "held"])
               for w in store.wafers(lot.id) if w.state in WAITING]
    why = {}
    for w in waiting:
        events = store.events(w.id)
        why[w.id] = events[-1].why if events else ""
    return render(request, "dispositions", user, waiting=waiting, why=why,
                  choices=[d.value for d in Disposition])


@_page(Role.ENGINEER)
def recipes(request: Request, user: UserInfo) -> Response:
    name = request.query_params.get("show")
    shown, text, error = None, "", ""
    if name:
        paths = shipped_recipe_paths()
        if name not in paths:
            error = f"no shipped recipe {name}"
        else:
            try:
                shown = find_recipe(name)
                text = paths[name].read_text(encoding="utf-8")
            except (RecipeError, OSError) as exc:
                error = str(exc)
    return render(request, "recipes", user, names=sorted(shipped_recipe_paths()),
                  shown=shown, text=text, error=error,
                  result=take_note(request, "validation"))


@_page(Role.OPERATOR, shared=True)
def reports(request: Request, user: UserInfo) -> Response:
    root = Path(request.app.state.web.report_dir)
    found = sorted(root.glob("*/report.html")) if root.is_dir() else []
    return render(request, "reports", user, reports=[p.parent.name for p in found],
                  root=root)


@_page(Role.OPERATOR)
def report_file(request: Request, user: UserInfo) -> Response:
    root = Path(request.app.state.web.report_dir).resolve()
    try:  # a NUL in a name: ValueError
        path = (root / request.path_params["lot_id"] / request.path_params["name"]).resolve()
        found = root in path.parents and path.is_file()  # no walking out of the report dir
    except (ValueError, OSError):
        found = False
    if not found:
        return error(request, "no such report file", 404, user=user)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media)


@_page(Role.ADMIN)
def users(request: Request, user: UserInfo) -> Response:
    return render(request, "users", user, users=request.app.state.web.users.list(),
                  roles=[r.label for r in Role])


def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (an address no route takes: 404; a method its route does not:
    405; a form it cannot parse: 400) answered as the pages answer theirs, same text."""
    assert isinstance(exc, HTTPException)
    return error(request, exc.detail, exc.status_code, user=current_user(request),
                 headers=exc.headers)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/line", line),
        Route("/lots", lots),
        Route("/lots/{lot_id}", lot),
        Route("/wafers/{wafer_id}", wafer),
        Route("/alarms", alarms),
        Route("/alarms/banner", banner),
        Route("/dispositions", dispositions),
        Route("/recipes", recipes),
        Route("/reports", reports),
        Route("/reports/{lot_id}/{name}", report_file),
        Route("/users", users),
    ]

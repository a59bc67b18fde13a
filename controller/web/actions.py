"""The screen's writes (POST): log in and out, lots, alarms, dispositions, tool modes,
recipes, users.

Every write but the login goes through ``auth.writes`` (session, CSRF, role on
the server, read-only refusal) and is recorded in the audit log under the
user's name as ``web.<action>`` with what came of it. The store's own calls
record the change itself as they do for the command line; the running
controller carries out holds, aborts and dispositions (it reads the requests).
A refused or malformed request comes back as one line on the page it came from.
"""

from __future__ import annotations

import hmac
import tomllib

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from controller.domain import DEFAULT_PRIORITY, RuleError, parse_slots, slots_for_count
from controller.store import StoreError
from controller.web.auth import (
    Write,
    bad_field,
    client_address,
    end_session,
    note,
    stamp,
    start_session,
    writes,
)
from controller.web.layout import came_from, error
from controller.web.users import Role, UserInfo
from controller.web.views import why_not_here
from sequences.errors import RecipeError, RecipeInvalid
from sequences.recipes.recipe import parse_recipe_problems, shipped_recipe_paths
from sequences.recipes.validate import load_valid_recipe, validate

MAX_UPLOAD = 256 * 1024  # a recipe is a few kB
MAX_NUMBER = 12  # digits of a number field: more is no count, id or priority of ours
# RuleError: the domain's checks (a wafer count, slots, a priority), StoreError among them;
# OverflowError: a number the database cannot hold.
FAILED = (RuleError, RecipeError, ValueError, OverflowError)
MAX_ID = 32  # characters of the audit log's lot and wafer id columns
MAX_NAME = 64  # characters of a typed user name kept in the audit log (the column's size)
UNSTRIPPED = frozenset({"password"})  # a password is taken as typed, as the command line does


def _back(request: Request, message: str, *, ok: bool = True, fallback: str = "/line"
          ) -> Response:
    note(request, "flash", {"ok": ok, "text": message})
    return RedirectResponse(came_from(request, fallback), 303)  # never a redirect elsewhere


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v if k in UNSTRIPPED else v.strip() for k, v in form.items()
            if isinstance(v, str)}


def _whole(text: str, what: str) -> int:
    """A form's whole number, or one clear line saying what is wrong with it."""
    digits = text.removeprefix("-")
    if not digits.isdigit() or not digits.isascii() or len(digits) > MAX_NUMBER:
        raise StoreError(f"{what} must be a whole number of at most {MAX_NUMBER} digits, "
                         f"got {text[:20]!r}")
    return int(text)


def _done(request: Request, user: UserInfo, action: str, outcome: str, *, ok: bool = True,
          lot_id: str | None = None, wafer_id: str | None = None) -> Response:
    request.app.state.web.parts = {}  # what the write changed is not in the stream yet
    if request.app.state.push is not None:
        request.app.state.push.poke()  # other screens see it too (an acknowledged alarm)
    request.app.state.web.forget_users()
    request.app.state.web.audit(user.name, f"web.{action}", outcome if ok else
                                f"refused: {outcome}", lot_id=_fits(lot_id),
                                wafer_id=_fits(wafer_id))
    return _back(request, outcome, ok=ok)


def _fits(typed: str | None) -> str | None:
    """A typed lot or wafer id for the audit log's id column, when it can be one (a refusal
    of a longer one says it in its detail)."""
    return typed if typed and len(typed) <= MAX_ID else None


# --- logging in and out ---------------------------------------------------------------------


async def login(request: Request) -> Response:
    web = request.app.state.web
    refused = await bad_field(request)
    if refused is not None:
        return refused
    form = await _form(request)
    name, address = form.get("name", "").lower()[:MAX_NAME], client_address(request)
    expected = request.session.get("csrf")
    if not expected or not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        return error(request, "refused: the login form is stale (reload the page)", 403)
    wait = web.limiter.blocked(name, address)
    if wait > 0:
        return error(request, f"too many failed logins: try again in {wait / 60:.0f} min",
                     429)
    # scrypt takes ~70 ms of CPU by design: in a thread, never on the line's loop
    user = await run_in_threadpool(web.users.verify, name, form.get("password", ""))
    if user is None:
        web.limiter.failed(name, address)
        web.audit(name or "-", "web.login_failed", f"from {address}")
        note(request, "flash", {"ok": False, "text": "wrong name or password"})
        return RedirectResponse("/", 303)
    web.limiter.succeeded(name)
    start_session(request, user)
    web.audit(user.name, "web.login", f"{user.role.label} from {address}")
    return RedirectResponse("/line", 303)


@writes(Role.OPERATOR, "logout", read_only_ok=True)
async def logout(request: Request, user: UserInfo) -> Response:
    request.app.state.web.parts = {}  # what the write changed is not in the stream yet
    request.app.state.web.forget_users()
    end_session(request, user)  # audited as web.logout, with the session's end
    return RedirectResponse("/", 303)


# --- lots (operator) ------------------------------------------------------------------------


@writes(Role.OPERATOR, "lot.start")
async def lot_start(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    lot_id, recipe_name = form.get("lot", ""), form.get("recipe", "")
    try:
        if recipe_name not in shipped_recipe_paths():
            raise StoreError(f"no recipe '{recipe_name}' (pick one of the list)")
        tools = request.app.state.web.line_drivers
        if tools is not None and (problems := why_not_here(recipe_name, tools)):
            raise StoreError(f"this line cannot run {recipe_name}: {'; '.join(problems)}")
        if form.get("slots"):
            slots = parse_slots(form["slots"])
        elif form.get("wafers"):
            slots = slots_for_count(_whole(form["wafers"], "the wafer count"))
        else:
            raise StoreError("give a wafer count or carrier slots")
        priority = _whole(form.get("priority") or str(DEFAULT_PRIORITY), "the priority")
        recipe = load_valid_recipe(recipe_name)
        store = request.app.state.web.store
        made = store.create_lot(  # the screen's line runs it (no line: any line that can)
            lot_id, recipe_name=recipe_name, recipe_version=recipe.version,
            recipe_hash=recipe.hash, slots=slots, priority=priority, user=user.name,
            line_id=store.line_id)
    except FAILED as exc:
        return _done(request, user, "lot.start", _line(exc), ok=False, lot_id=lot_id or None)
    return _done(request, user, "lot.start",
                 f"lot {made.id} queued: {made.wafer_count} wafers, {made.recipe_name}, "
                 f"priority {made.priority}", lot_id=made.id)


def _lot_action(action: str) -> Write:
    @writes(Role.OPERATOR, f"lot.{action}")
    async def act(request: Request, user: UserInfo) -> Response:
        form = await _form(request)
        lot_id, reason = form.get("lot", ""), form.get("reason", "")
        store = request.app.state.web.store
        try:
            if action in ("hold", "abort") and not reason.strip():
                # A held or aborted lot is explained to whoever comes next (as `bumpline
                # lot hold --reason`).
                raise StoreError(f"{'holding' if action == 'hold' else 'aborting'} a lot "
                                 "needs a reason")
            # As `bumpline lot hold/resume/abort`: queued for the controller running the
            # lot, else carried out here where safe (an abort with wafers in process is not).
            changed, holder = store.act_on_lot(lot_id, action, user=user.name, reason=reason)
        except FAILED as exc:
            return _done(request, user, f"lot.{action}", _line(exc), ok=False,
                         lot_id=lot_id or None)
        said = f"lot {lot_id}: {changed.state}" + (
            "; the controller running it carries it out" if holder is not None else "")
        return _done(request, user, f"lot.{action}", said, lot_id=lot_id)

    act.__name__ = f"lot_{action}"
    return act


# --- alarms (operator), dispositions (engineer) ---------------------------------------------


@writes(Role.OPERATOR, "alarm.ack")
async def alarm_ack(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    try:
        alarm = request.app.state.web.store.acknowledge_alarm(
            _whole(form.get("alarm", ""), "the alarm number"), user=user.name)
    except FAILED as exc:
        return _done(request, user, "alarm.ack", _line(exc), ok=False)
    return _done(request, user, "alarm.ack",
                 f"alarm {alarm.id} ({alarm.tool} {alarm.code} {alarm.text}) acknowledged",
                 lot_id=alarm.lot_id, wafer_id=alarm.wafer_id)


@writes(Role.ENGINEER, "wafer.disposition")
async def disposition(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    wafer_id = form.get("wafer", "")
    try:
        made = request.app.state.web.store.disposition_wafer(
            wafer_id, form.get("decision", ""), user=user.name, reason=form.get("reason", ""))
    except FAILED as exc:
        return _done(request, user, "wafer.disposition", _line(exc), ok=False,
                     wafer_id=wafer_id or None)
    return _done(request, user, "wafer.disposition",
                 f"{made.action} of {made.wafer_id} recorded; the controller carries it out",
                 lot_id=made.lot_id, wafer_id=made.wafer_id)


# --- tool modes (engineer) ------------------------------------------------------------------


@writes(Role.ENGINEER, "tool.mode")
async def tool_mode(request: Request, user: UserInfo) -> Response:
    """Take a tool out of production or back; the controller applies it within a second
    (controller/line/modes.py): no new wafer, the one on it finishes."""
    form = await _form(request)
    web = request.app.state.web
    tool, mode = form.get("tool", ""), form.get("mode", "")
    try:
        known = ({s.tool for s in web.store.tool_states_latest(web.store.line_id)}
                 | set(web.view.tools) | set(web.line_tools))
        if tool not in known:
            raise StoreError(f"no tool '{tool}' on this line (pick one of the list)")
        previous, now = web.store.set_tool_mode(tool, mode, user=user.name,
                                                reason=form.get("reason", ""))
    except FAILED as exc:
        return _done(request, user, "tool.mode", _line(exc), ok=False)
    return _done(request, user, "tool.mode", f"{tool}: {previous.value} -> {now.value}"
                 + ("; a wafer on it finishes first" if now.value != "production" else ""))


# --- recipes (engineer): validate an uploaded file -------------------------------------------


SHOWN_PROBLEMS = 50  # a validation's problems shown on the page, the count beyond


def _problems_of(text: str, name: str) -> list:
    recipe, problems = parse_recipe_problems(text, source=name)
    if recipe is not None:
        problems += validate(recipe)
    return problems


@writes(Role.ENGINEER, "recipe.validate", read_only_ok=True)  # stores nothing
async def recipe_validate(request: Request, user: UserInfo) -> Response:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _done(request, user, "recipe.validate", "choose a recipe file to validate",
                     ok=False)
    raw = await upload.read(MAX_UPLOAD + 1)
    name = upload.filename
    try:
        if len(raw) > MAX_UPLOAD:
            raise StoreError(f"{name} is over {MAX_UPLOAD // 1024} kB: not a recipe")
        text = raw.decode("utf-8")
        # Off the event loop: a 256 kB file of steps takes the validator seconds, and the
        # controller serving this screen runs the line on that loop.
        problems = await run_in_threadpool(_problems_of, text, name)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return _done(request, user, "recipe.validate", f"{name}: not UTF-8 TOML ({exc})",
                     ok=False)
    except FAILED as exc:
        return _done(request, user, "recipe.validate", _line(exc), ok=False)
    shown = [str(p) for p in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:  # the first ones say what is wrong; the page stays small
        shown.append(f"... and {len(problems) - SHOWN_PROBLEMS} more "
                     "(bumpline recipe validate lists them all)")
    note(request, "validation", {"file": name, "problems": shown})
    verdict = (f"{name}: valid" if not problems else
               f"{name}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    return _done(request, user, "recipe.validate", verdict, ok=not problems)


# --- users (admin) --------------------------------------------------------------------------


@writes(Role.ADMIN, "user.add")
async def user_add(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    book = request.app.state.web.users
    try:
        made = await run_in_threadpool(book.add, form.get("name", "").lower(),
                                       Role.parse(form.get("role", "")), form.get("password", ""))
    except FAILED as exc:
        return _done(request, user, "user.add", _line(exc), ok=False)
    return _done(request, user, "user.add", f"user {made.name} ({made.role.label}) added")


@writes(Role.ADMIN, "user.disable")
async def user_disable(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    name = form.get("name", "")
    try:
        if name == user.name:
            raise StoreError("you cannot disable yourself (another admin can)")
        request.app.state.web.users.set_disabled(name, form.get("enable") != "1")
    except FAILED as exc:
        return _done(request, user, "user.disable", _line(exc), ok=False)
    state = "enabled" if form.get("enable") == "1" else "disabled"
    return _done(request, user, "user.disable", f"user {name} {state}")


@writes(Role.ADMIN, "user.passwd")
async def user_passwd(request: Request, user: UserInfo) -> Response:
    form = await _form(request)
    name = form.get("name", "")
    try:
        changed = await run_in_threadpool(request.app.state.web.users.set_password, name,
                                          form.get("password", ""))
    except FAILED as exc:
        return _done(request, user, "user.passwd", _line(exc), ok=False)
    if changed.name == user.name:  # the admin's other sessions end; this one goes on
        request.session["since"] = stamp(changed)
    return _done(request, user, "user.passwd", f"password of {name} changed")


def _line(exc: BaseException) -> str:
    if isinstance(exc, RecipeInvalid):
        return f"{exc.source}: {len(exc.problems)} problem(s): {exc.problems[0]}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# Every write endpoint (the role matrix, tests/test_web_roles.py, tries every POST route
# of the built app, whatever table it came from).
WRITES: dict[str, Write] = {
    "/logout": logout,
    "/lots/start": lot_start,
    "/lots/hold": _lot_action("hold"),
    "/lots/resume": _lot_action("resume"),
    "/lots/abort": _lot_action("abort"),
    "/alarms/ack": alarm_ack,
    "/dispositions": disposition,
    "/tools/mode": tool_mode,
    "/recipes/validate": recipe_validate,
    "/users/add": user_add,
    "/users/disable": user_disable,
    "/users/passwd": user_passwd,
}


def routes() -> list[Route]:
    return [Route("/login", login, methods=["POST"]),
            *(Route(path, endpoint, methods=["POST"]) for path, endpoint in WRITES.items())]

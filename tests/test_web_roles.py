"""The role matrix: every write endpoint × every role and no session, over real HTTP.

The expected roles are written out here from the issue, not read from the code:
operator starts, holds, resumes and aborts lots and acknowledges alarms;
engineer also dispositions wafers, changes tool modes and validates recipes; admin also manages
users. The endpoints tried are every route of the built app that takes more than GET, so a
new one cannot be left out. Allowed writes answer 303 and leave ``web.<action>`` in the audit
log under the user's name; a role too low gets 403 and ``web.denied.<action>`` and nothing
else; no session gets 401, a missing CSRF token 403, a read-only screen 409, and then nothing
is recorded at all. Every refusal leaves the lots, alarms, requests, tool modes, users and
the session as they were.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.store import Store
from controller.web.app import WebContext, build_app
from tests.web_fixtures import ROLES, add_users, csrf_of, login, screen

ALLOWED = {  # endpoint -> (least role, audit action)
    "/lots/start": ("operator", "lot.start"),
    "/lots/hold": ("operator", "lot.hold"),
    "/lots/resume": ("operator", "lot.resume"),
    "/lots/abort": ("operator", "lot.abort"),
    "/alarms/ack": ("operator", "alarm.ack"),
    "/dispositions": ("engineer", "wafer.disposition"),
    "/tools/mode": ("engineer", "tool.mode"),
    "/recipes/validate": ("engineer", "recipe.validate"),
    "/users/add": ("admin", "user.add"),
    "/users/disable": ("admin", "user.disable"),
    "/users/passwd": ("admin", "user.passwd"),
    "/logout": ("operator", "logout"),
}
RANK = {"operator": 1, "engineer": 2, "admin": 3}
RECIPE = (Path(__file__).resolve().parents[1] / "sequences" / "recipes" / "shipped"
          / "ballmount-sac305.toml")
_names = itertools.count(1)


def _request(path: str, alarm_id: int) -> dict:
    n = next(_names)
    forms = {
        "/lots/start": {"lot": f"NEW{n}", "recipe": "ballmount-sac305", "wafers": "1"},
        "/lots/hold": {"lot": "LOTA", "reason": "matrix"},
        "/lots/resume": {"lot": "LOTA", "reason": "matrix"},
        "/lots/abort": {"lot": f"NEW{n}", "reason": "matrix"},
        "/alarms/ack": {"alarm": str(alarm_id)},
        "/dispositions": {"wafer": "LOTA-01", "decision": "scrap", "reason": "matrix"},
        "/tools/mode": {"tool": "oven-1", "mode": ("maintenance", "production")[n % 2],
                        "reason": "matrix"},
        "/users/add": {"name": f"new{n}", "role": "operator", "password": "new-user-pass"},
        "/users/disable": {"name": "olga", "enable": "1"},
        "/users/passwd": {"name": "olga", "password": "operator-pass-1"},
        "/logout": {},
    }
    if path == "/recipes/validate":
        return {"files": {"file": (RECIPE.name, RECIPE.read_bytes(), "application/toml")}}
    return {"data": forms[path]}


PUBLIC = {"/", "/events", "/login", "/static"}  # each checks its session itself, or needs none


def _routes(tmp_path: Path) -> dict[str, Any]:
    with Store(f"sqlite:///{tmp_path / 'routes.db'}") as store:
        app = build_app(WebContext(store, None), secret="k" * 32)
    return {route.path: route for route in app.routes}


def test_the_matrix_covers_every_write_route_of_the_app(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    writes = {path for path, route in routes.items()
              if set(getattr(route, "methods", None) or {"GET"}) - {"GET", "HEAD"}}
    assert writes == set(ALLOWED) | {"/login"}
    for path in ALLOWED:  # and each checks the role the issue gives it, on the server
        assert routes[path].endpoint.write_role.label == ALLOWED[path][0], path


def test_every_page_checks_the_session_and_the_role(tmp_path: Path) -> None:
    pages = {path: route for path, route in _routes(tmp_path).items()
             if path not in PUBLIC and path not in ALLOWED}
    assert pages and all(hasattr(route.endpoint, "least") for route in pages.values()), [
        path for path, route in pages.items() if not hasattr(route.endpoint, "least")]


def _state(context: WebContext) -> tuple[Any, ...]:
    """Everything a write can change in the database."""
    store = context.store
    return ([(lot.id, lot.state) for lot in store.list_lots()],
            [(a.id, a.acknowledged_by) for a in store.alarms()],
            [(r.id, r.action, r.wafer_id) for r in store.requests()],
            {tool: (m.mode, m.reason) for tool, m in store.tool_modes().items()},
            context.users.list())


async def _still_logged_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/line")).status_code == 200


async def test_every_write_endpoint_checks_the_role_on_the_server(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        store = context.store
        store.create_lot("LOTA", recipe_name="ballmount-sac305", recipe_version="1",
                         recipe_hash="0" * 64, slots=[1], priority=5, user="setup")
        alarm = store.alarm_set("placer-1", 7, "vacuum low", tool_time=1.0)
        store.record_tool_state("oven-1", "standby")  # a tool the line has
        for path, (least, action) in ALLOWED.items():
            async with httpx.AsyncClient(base_url=url) as anonymous:
                before, state = len(store.audit_log()), _state(context)
                answer = await anonymous.post(path, **_request(path, alarm))
                assert answer.status_code == 401, (path, "no session", answer.text)
                assert len(store.audit_log()) == before and _state(context) == state, path
            for name, role in ROLES.items():
                async with httpx.AsyncClient(base_url=url) as client:
                    assert (await login(client, name)).status_code == 303
                    before, state = len(store.audit_log()), _state(context)
                    # Without the CSRF token: refused, and nothing done or recorded.
                    answer = await client.post(path, **_request(path, alarm))
                    assert answer.status_code == 403, (path, name, "no csrf")
                    assert len(store.audit_log()) == before and _state(context) == state
                    assert await _still_logged_in(client), (path, name, "no csrf")
                    token = csrf_of((await client.get("/line")).text)
                    request = _request(path, alarm)
                    if "data" in request:
                        request["data"]["csrf"] = token
                    else:
                        request["data"] = {"csrf": token}
                    answer = await client.post(path, **request)
                    entries = store.audit_log()[before:]
                    mine = [(e.actor, e.action) for e in entries]
                    if role >= RANK[least]:
                        assert answer.status_code == 303, (path, name, answer.text)
                        assert (name, f"web.{action}") in mine, (path, name, mine)
                    else:
                        assert answer.status_code == 403, (path, name, answer.text)
                        assert f"needs the {least} role" in answer.text
                        assert mine == [(name, f"web.denied.{action}")], (path, name, mine)
                        assert _state(context) == state, (path, name)
                        assert await _still_logged_in(client), (path, name)
        # Only the engineer's and the admin's mode changes reached the store.
        changed_by = {e.actor for e in store.audit_log() if e.action == "tool.mode"}
        assert changed_by == {"erik", "ada"}, changed_by


async def test_a_read_only_screen_refuses_every_write_but_logging_out(tmp_path: Path) -> None:
    """``bumpline web`` changes nothing, users included; validating a recipe stores nothing."""
    async with screen(tmp_path, read_only=True) as (context, url):
        add_users(context)
        store = context.store
        store.create_lot("LOTA", recipe_name="ballmount-sac305", recipe_version="1",
                         recipe_hash="0" * 64, slots=[1], priority=5, user="setup")
        alarm = store.alarm_set("placer-1", 7, "vacuum low", tool_time=1.0)
        store.record_tool_state("oven-1", "standby")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "ada")
            page = await client.get("/users")
            assert "READ-ONLY" in page.text and page.text.count("disabled>") >= 4
            token = csrf_of(page.text)
            for path in ALLOWED:
                if path == "/logout":
                    continue
                before, state = len(store.audit_log()), _state(context)
                request = _request(path, alarm)
                request.setdefault("data", {})["csrf"] = token
                answer = await client.post(path, **request)
                if path == "/recipes/validate":
                    assert answer.status_code == 303, answer.text
                else:
                    assert answer.status_code == 409, (path, answer.text)
                    assert "read-only" in answer.text
                    assert len(store.audit_log()) == before, path
                assert _state(context) == state, path


async def test_pages_need_a_session_and_the_role(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            home = await client.get("/")
            assert home.status_code == 200 and 'action="/login"' in home.text
            assert (await client.get("/lots")).headers["location"] == "/"
            assert (await client.get("/events")).status_code == 401
            await login(client, "olga")
            line = await client.get("/line")
            assert "/dispositions" not in line.text and "/recipes" not in line.text
            for page in ("/dispositions", "/recipes", "/users"):
                assert (await client.get(page)).status_code == 403, page
            for page in ("/line", "/lots", "/alarms", "/reports"):
                assert (await client.get(page)).status_code == 200, page


async def test_failed_logins_are_rate_limited(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(context.limiter.failures):
                answer = await login(client, "olga", "wrong-password")
                assert answer.status_code == 303 and answer.headers["location"] == "/"
            locked = await login(client, "olga")  # the right password, too late
            assert locked.status_code == 429
            assert "too many failed logins" in locked.text
        failed = [e for e in context.store.audit_log() if e.action == "web.login_failed"]
        assert len(failed) == context.limiter.failures


@pytest.mark.parametrize("password", ["short", ""])
async def test_a_disabled_user_or_a_short_password_is_refused(tmp_path: Path,
                                                              password: str) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        context.users.set_disabled("olga")
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await login(client, "olga")
            assert answer.headers["location"] == "/"  # back to the login page
            assert (await client.get("/line")).status_code == 303
        with pytest.raises(Exception, match="at least 10 characters"):
            context.users.add("newbie", ROLES["olga"], password)


async def test_a_forged_csrf_token_is_refused_not_a_crash(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get("/")
            forged = await client.post("/login", data={
                "name": "olga", "password": "operator-pass-1", "csrf": "Grüße"})
            assert forged.status_code == 403 and "stale" in forged.text
            await login(client, "olga")
            answer = await client.post("/lots/hold", data={"csrf": "Grüße", "lot": "X"})
            assert answer.status_code == 403 and "stale" in answer.text


async def test_the_tool_mode_form_sets_its_own_lines_tool(tmp_path: Path) -> None:
    """Several lines share the database and name their tools alike: the form of bay-A's
    screen takes bay-A's oven-1 out of production, and its Line page shows bay-A's
    modes, not bay-B's."""
    async with screen(tmp_path, line_id="bay-A") as (context, url):
        add_users(context)
        store = context.store
        store.record_tool_state("oven-1", "standby")
        store.record_tool_state("cleaner-1", "standby")  # bay-A has a cleaner-1 too
        with Store(store.url, line_id="bay-B") as other_line:
            other_line.record_tool_state("cleaner-1", "standby")
            other_line.set_tool_mode("cleaner-1", "offline", user="ann", reason="no DI water")
            async with httpx.AsyncClient(base_url=url) as client:
                await login(client, "erik")
                page = await client.get("/line")
                assert "cleaner-1" in page.text  # bay-A's, in production: bay-B's mode
                assert "no DI water" not in page.text  # is not on bay-A's page
                answer = await client.post("/tools/mode", data={
                    "csrf": csrf_of(page.text), "tool": "oven-1", "mode": "maintenance",
                    "reason": "belt"})
                assert answer.status_code == 303
                assert "maintenance</strong> · erik: belt" in (await client.get("/line")).text
            assert other_line.tool_modes().keys() == {"cleaner-1"}
        assert store.tool_modes()["oven-1"].mode.value == "maintenance"
        assert [(m.line_id, m.tool) for m in store.every_tool_mode()] == [
            ("bay-A", "oven-1"), ("bay-B", "cleaner-1")]

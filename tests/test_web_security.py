"""The operator screen as a hostile user tries it, over real HTTP: bad input, ended sessions,
oversized requests, the login limiter, response headers (docs/security.md,
docs/audits/2026-12-02-operator-screen-security.md)."""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controller.errors import UserError
from controller.line.events import EventKind
from controller.store import Store
from controller.web.app import SECRET_ENV, USER_TTL_S, WebContext
from controller.web.auth import LoginLimiter
from controller.web.guard import MAX_BODY
from tests.web_fixtures import add_users, csrf_of, login, screen

WEB = Path(__file__).resolve().parents[1] / "controller" / "web"
FLASH = re.compile(r'id="flash">(.*?)</p>', re.S)
WAIT_S = 30.0  # a hang guard, not a timing
LONG = "L" * 200
KEY = "k" * 40  # $BUMPLINE_WEB_SECRET shared by the screens of a test


def _lot(context: WebContext, lot_id: str = "LOTA") -> None:
    context.store.create_lot(lot_id, recipe_name="ballmount-sac305", recipe_version="1",
                             recipe_hash="0" * 64, slots=[1], priority=5, user="setup")


async def _flash(client: httpx.AsyncClient, answer: httpx.Response) -> str:
    assert answer.status_code == 303, (answer.status_code, answer.text)
    found = FLASH.search((await client.get(answer.headers["location"])).text)
    assert found, "no message on the page"
    return html.unescape(found.group(1))


BAD_FORMS = [  # (path, form, what the one line says)
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "wafers": "-3"},
     "wafer count must be 1-25"),
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "wafers": "0"},
     "wafer count must be 1-25"),
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "wafers": "9" * 30},
     "the wafer count must be a whole number"),
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "wafers": "2.5"},
     "the wafer count must be a whole number"),
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "slots": "1-99"},
     "outside 1-25"),
    ("/lots/start", {"lot": "X1", "recipe": "ballmount-sac305", "wafers": "1",
                     "priority": "9" * 30}, "the priority must be a whole number"),
    ("/lots/start", {"lot": "X1", "recipe": "../../etc/passwd", "wafers": "1"},
     "no recipe '../../etc/passwd'"),
    ("/lots/start", {"lot": LONG, "recipe": "ballmount-sac305", "wafers": "1"},
     "at most 13"),
    ("/lots/start", {"lot": "<b>X</b>", "recipe": "ballmount-sac305", "wafers": "1"},
     "bad lot id '<b>X</b>'"),
    ("/lots/hold", {"lot": LONG, "reason": "r"}, f"no lot {LONG}"),
    ("/lots/hold", {"lot": "LOTA", "reason": " "}, "holding a lot needs a reason"),
    ("/lots/abort", {"lot": "LOTA", "reason": "x" * 900_000},
     "a reason is at most 500 characters, got 900000"),
    ("/lots/hold", {"lot": "LOTA", "reason": "x" * 501},
     "a reason is at most 500 characters, got 501"),
    ("/alarms/ack", {"alarm": "9" * 30}, "the alarm number must be a whole number"),
    ("/alarms/ack", {"alarm": "x"}, "the alarm number must be a whole number"),
    ("/dispositions", {"wafer": LONG, "decision": "scrap", "reason": "r"}, "no wafer"),
    ("/dispositions", {"wafer": "LOTA-01", "decision": "scrap", "reason": "y" * 600},
     "a reason is at most 500 characters, got 600"),
    ("/dispositions", {"wafer": "LOTA-01", "decision": "<b>nuke</b>", "reason": "r"},
     "unknown disposition '<b>nuke</b>'"),
]


@pytest.mark.parametrize(("path", "form", "says"), BAD_FORMS,
                         ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD_FORMS)])
async def test_a_bad_form_value_is_one_clear_line_never_a_500(
        tmp_path: Path, db_url: str, path: str, form: dict[str, str], says: str) -> None:
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        _lot(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "ada")
            token = csrf_of((await client.get("/lots")).text)
            answer = await client.post(path, data={"csrf": token, **form})
            assert says in await _flash(client, answer)
        assert [lot.id for lot in context.store.list_lots()] == ["LOTA"]


@pytest.mark.parametrize("path", ["/lots/LOTA%00", "/wafers/%00", "/reports/%00/report.html",
                                  "/reports/..%2F..%2Fetc/passwd", f"/lots/{LONG}",
                                  "/recipes?show=%00", "/lots/%3Cscript%3E"])
async def test_a_bad_path_is_a_clear_answer_never_a_500(tmp_path: Path, db_url: str,
                                                        path: str) -> None:
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "erik")
            answer = await client.get(path)
            assert answer.status_code in (200, 400, 404), (answer.status_code, answer.text)
            assert "<script>" not in answer.text or answer.headers["content-type"].startswith(
                "text/plain")


@pytest.mark.parametrize("path", ["/login", "/lots/hold"])
async def test_a_control_character_in_a_field_is_refused_never_a_500(
        tmp_path: Path, db_url: str, path: str) -> None:
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        _lot(context)
        async with httpx.AsyncClient(base_url=url) as client:
            if path != "/login":
                await login(client, "olga")
            token = csrf_of((await client.get("/lots" if path != "/login" else "/")).text)
            answer = await client.post(path, data={
                "csrf": token, "lot": "LOTA\x00", "name": "olga\x00", "password": "x",
                "reason": "r"})
            assert answer.status_code == 400
            assert "holds a control character" in answer.text
        assert context.store.get_lot("LOTA").state == "queued"


async def test_a_long_name_at_the_login_is_refused_not_a_500(tmp_path: Path,
                                                             db_url: str) -> None:
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await login(client, "x" * 500, "wrong-password")
            assert "wrong name or password" in await _flash(client, answer)
        [failed] = [e for e in context.store.audit_log() if e.action == "web.login_failed"]
        assert failed.actor == "x" * 64


async def test_logging_out_ends_the_session_for_a_copy_of_its_cookie_too(
        tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            copy = dict(client.cookies)
            token = csrf_of((await client.get("/line")).text)
            assert (await client.post("/logout", data={"csrf": token})).status_code == 303
        async with httpx.AsyncClient(base_url=url, cookies=copy) as thief:
            assert (await thief.get("/line")).headers["location"] == "/"
            assert (await thief.get("/events")).status_code == 401
            answer = await thief.post("/lots/hold", data={"csrf": token, "lot": "X"})
            assert answer.status_code == 401


async def test_a_cookie_copied_before_logout_is_refused_by_another_screen_on_the_database(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's screen and a read-only ``bumpline web`` share the database and the
    signing key: a logout on one ends the session on the other too, within USER_TTL_S."""
    monkeypatch.setenv(SECRET_ENV, KEY)
    clock = [0.0]
    async with screen(tmp_path, db=db_url) as (context, url), \
            screen(tmp_path, db=db_url, read_only=True) as (other, other_url):
        other.clock = lambda: clock[0]
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            copy = dict(client.cookies)
            async with httpx.AsyncClient(base_url=other_url, cookies=copy) as thief:
                assert (await thief.get("/line")).status_code == 200  # the key is shared
                token = csrf_of((await client.get("/line")).text)
                assert (await client.post("/logout", data={"csrf": token})).status_code == 303
                assert (await thief.get("/line")).status_code == 200  # read USER_TTL_S ago
                clock[0] += USER_TTL_S + 0.001
                assert (await thief.get("/line")).headers["location"] == "/"
                assert (await thief.get("/events")).status_code == 401
        async with httpx.AsyncClient(base_url=url, cookies=copy) as thief:
            assert (await thief.get("/line")).headers["location"] == "/"
        assert [e.actor for e in context.store.audit_log()
                if e.action == "web.logout"] == ["olga"]


async def test_a_cookie_copied_before_logout_is_refused_after_a_restart_with_the_same_key(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, KEY)
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as olga, \
                httpx.AsyncClient(base_url=url) as erik:
            await login(olga, "olga")
            await login(erik, "erik")
            copied, kept = dict(olga.cookies), dict(erik.cookies)
            token = csrf_of((await olga.get("/line")).text)
            assert (await olga.post("/logout", data={"csrf": token})).status_code == 303
    async with screen(tmp_path, db=db_url) as (context, url):  # restarted: nothing in memory
        async with httpx.AsyncClient(base_url=url, cookies=kept) as erik:
            assert (await erik.get("/line")).status_code == 200  # the same key: sessions stand
        async with httpx.AsyncClient(base_url=url, cookies=copied) as thief:
            assert (await thief.get("/line")).headers["location"] == "/"
            answer = await thief.post("/lots/hold", data={"csrf": token, "lot": "X"})
            assert answer.status_code == 401


async def test_a_new_password_or_disabling_ends_every_session_of_the_user(
        tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as olga, \
                httpx.AsyncClient(base_url=url) as ada:
            await login(olga, "olga")
            await login(ada, "ada")
            # Disabled and enabled again (a stolen cookie): the old session stays ended.
            context.users.set_disabled("olga")
            context.users.set_disabled("olga", False)
            context.forget_users()  # as after USER_TTL_S, or at once for the screen's own
            assert (await olga.get("/line")).headers["location"] == "/"
            await login(olga, "olga")
            assert (await olga.get("/line")).status_code == 200
            # An admin sets olga's password on the screen: olga's session ends, the
            # admin's own goes on, and so it does when the admin sets their own.
            token = csrf_of((await ada.get("/users")).text)
            for name in ("olga", "ada"):
                answer = await ada.post("/users/passwd", data={
                    "csrf": token, "name": name, "password": "a-new-password-1"})
                assert "password of" in await _flash(ada, answer)
            assert (await olga.get("/line")).headers["location"] == "/"
            assert (await ada.get("/users")).status_code == 200


async def test_an_open_event_stream_ends_when_its_user_is_disabled(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        _lot(context)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
            await login(client, "olga")
            async with client.stream("GET", "/events",
                                     params={"part": "/lots?live=1"}) as stream:
                lines = stream.aiter_lines()

                async def until(prefix: str) -> None:
                    async for line in lines:
                        if line.startswith(prefix):
                            return
                    raise AssertionError(f"the stream ended before {prefix!r}")

                await asyncio.wait_for(until("event: pushed"), WAIT_S)
                context.users.set_disabled("olga")
                context.forget_users()
                context.events.publish(EventKind.LOT_STATE, lot_id="LOTA", state="queued")
                rest = await asyncio.wait_for(_collect(lines), WAIT_S)  # the stream ends
                assert "event: part" not in rest and "LOTA" not in rest


async def _collect(lines: object) -> str:
    return "\n".join([line async for line in lines])  # type: ignore[attr-defined]


async def test_an_oversized_or_chunked_request_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            token = csrf_of((await client.get("/")).text)
            big = await client.post("/login", data={"csrf": token, "name": "olga"},
                                    files={"f": ("f.bin", b"A" * (MAX_BODY + 1))})
            assert big.status_code == 413 and "at most 1024 kB" in big.text

            async def chunks():  # no Content-Length: sent chunked
                yield b"name=olga&password=operator-pass-1&csrf=" + token.encode()

            chunked = await client.post("/login", content=chunks(), headers={
                "content-type": "application/x-www-form-urlencoded"})
            assert chunked.status_code == 411
            assert (await client.get("/line")).headers["location"] == "/"  # not logged in
            assert (await login(client, "olga")).headers["location"] == "/line"
        async with httpx.AsyncClient(base_url=url) as erik:
            await login(erik, "erik")
            token = csrf_of((await erik.get("/recipes")).text)
            upload = await erik.post("/recipes/validate", data={"csrf": token}, files={
                "file": ("big.toml", b"#" * (300 * 1024), "application/toml")})
            assert "over 256 kB" in await _flash(erik, upload)


def test_the_login_limiter_keeps_nothing_for_names_it_was_only_asked_about() -> None:
    clock = [0.0]
    limiter = LoginLimiter(now=lambda: clock[0])
    for n in range(1000):
        assert limiter.blocked(f"name{n}", "10.0.0.1") == 0
    assert limiter._seen == {}
    for _ in range(limiter.failures):
        limiter.failed("olga", "10.0.0.1")
    assert limiter.blocked("olga", "10.0.0.2") > 0  # the name, from anywhere
    assert limiter.blocked("someone", "10.0.0.1") > 0  # the address, for any name
    clock[0] += limiter.window_s + 1
    assert limiter.blocked("olga", "10.0.0.1") == 0
    assert limiter._seen == {}  # forgotten once the window passed


async def test_a_password_is_taken_as_typed(tmp_path: Path) -> None:
    db = tmp_path / "screen.db"
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "controller.cli", "user", "add", "sam", "--role", "operator",
         "--password-stdin", "--db", f"sqlite:///{db}"],
        input=" spaced password \n", text=True, capture_output=True, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    async with screen(tmp_path) as (context, url):
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await login(client, "sam", " spaced password ")
            assert answer.headers["location"] == "/line"


async def test_a_short_session_key_is_refused_and_leaves_nothing_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "secret")
    with pytest.raises(UserError, match=rf"\${SECRET_ENV} is 6 characters: use at least 32"):
        async with screen(tmp_path):
            pass
    monkeypatch.setenv(SECRET_ENV, "s" * 32)
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await login(client, "olga")).headers["location"] == "/line"


async def test_every_answer_forbids_framing_sniffing_and_other_origins(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            for answer in (await client.get("/"), await client.get("/static/line.js"),
                           await client.post("/lots/hold"), await login(client, "olga"),
                           await client.get("/lots"), await client.get("/nowhere")):
                headers = answer.headers
                assert headers["x-content-type-options"] == "nosniff", answer.url
                assert headers["x-frame-options"] == "DENY", answer.url
                policy = headers["content-security-policy"]
                assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy


def test_nothing_is_loaded_from_another_site() -> None:
    """The pages name only the screen's own files: no CDN, no font or script elsewhere."""
    external = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?:[a-z]+:)?//|@import|url\(""",
                          re.I)
    for path in [*WEB.glob("templates/*.html"), WEB / "static" / "line.js",
                 WEB / "static" / "screen.css"]:
        assert not external.search(path.read_text(encoding="utf-8")), path
    assert "http" not in (WEB / "static" / "line.js").read_text(encoding="utf-8")


async def test_there_is_no_default_account(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        assert context.users.list() == []
        async with httpx.AsyncClient(base_url=url) as client:
            for name, password in (("admin", "admin"), ("admin", "password"),
                                   ("root", "root"), ("operator", "operator")):
                answer = await login(client, name, password)
                assert answer.headers["location"] == "/", name


async def test_an_abort_no_controller_can_carry_out_is_refused_nothing_changed(
        tmp_path: Path, db_url: str) -> None:
    """A lot with a wafer out of the carrier and no controller running it: aborting it from
    the screen would leave that wafer in a tool for good (as `bumpline lot abort` says).
    Holding it is carried out at once, its request answered, none left pending."""
    async with screen(tmp_path, db=db_url) as (context, url):
        add_users(context)
        _lot(context)
        store = context.store
        store.set_lot_state("LOTA", "running")
        store.record_transition("LOTA-01", "queued", "step1_waiting", "start",
                                location="placer-1")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            token = csrf_of((await client.get("/lots")).text)
            answer = await client.post("/lots/abort", data={
                "csrf": token, "lot": "LOTA", "reason": "wrong carrier"})
            said = await _flash(client, answer)
            assert "1 wafer(s) in process (LOTA-01" in said and "nothing changed" in said
            assert store.get_lot("LOTA").state == "running"
            answer = await client.post("/lots/hold", data={
                "csrf": token, "lot": "LOTA", "reason": "wait"})
            assert await _flash(client, answer) == "lot LOTA: held"
        assert store.pending_requests("LOTA") == []


async def test_a_recipe_upload_nested_deep_or_full_of_problems_is_a_short_answer(
        tmp_path: Path) -> None:
    """Arrays 600 deep made the TOML reader recurse out (a 500, and a traceback from
    `bumpline recipe validate`); a file of 200 bad steps made a page of thousands of
    problems. Both are a clear answer, the page shows the first 50 and the count."""
    from sequences.recipes.recipe import shipped_recipe_paths

    text = shipped_recipe_paths()["rebump-hipb-snpb"].read_text(encoding="utf-8")
    head, first_step = text.split("[[steps]]", 1)[0], "[[steps]]" + text.split("[[steps]]")[1]
    bad_steps = head + first_step.replace("squeegee_kgf = 6.0", "squeegee_kgf = -1.0") * 200
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as erik:
            await login(erik, "erik")
            token = csrf_of((await erik.get("/recipes")).text)
            deep = await erik.post("/recipes/validate", data={"csrf": token}, files={
                "file": ("deep.toml", b"a=" + b"[" * 600 + b"]" * 600, "application/toml")})
            assert await _flash(erik, deep) == "deep.toml: 1 problem"
            page = (await erik.get("/recipes")).text
            assert "nested too deeply" in page
            many = await erik.post("/recipes/validate", data={"csrf": token}, files={
                "file": ("many.toml", bad_steps.encode(), "application/toml")})
            said = await _flash(erik, many)
            count = int(said.split(": ")[1].split()[0])
            assert count > 200, said
            page = (await erik.get("/recipes")).text
            assert f"... and {count - 50} more" in page
            assert len(page) < 200_000


async def test_a_tool_down_is_coloured_by_its_e10_state(tmp_path: Path) -> None:
    """E10 states with a space ("unscheduled down") named a CSS class the style sheet does
    not have: a tool down on an alarm was never red."""
    async with screen(tmp_path) as (context, url):
        add_users(context)
        context.store.record_tool_state("oven-1", "unscheduled down", reason="alarm 550")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            page = (await client.get("/line")).text
            css = (await client.get("/static/screen.css")).text
        assert 'class="e10-unscheduled_down"' in page
        assert ".e10-unscheduled_down td" in css and "td.off" in css


async def test_a_lines_screen_shows_its_own_lines_tools_alarms_and_lots(
        tmp_path: Path, db_url: str) -> None:
    """Lines share one database and name their tools alike: bay-A's screen showed bay-B's
    oven-1 alarm in its band and bay-B's wafer as the one in its own oven-1; a lot started
    from it was for any line."""
    async with screen(tmp_path, db=db_url, line_id="bay-A") as (context, url):
        add_users(context)
        with Store(db_url, line_id="bay-B") as bay_b:
            bay_b.alarm_set("oven-1", 550, "N2 FLOW LOW")
            bay_b.create_lot("LB", recipe_name="ballmount-sac305", recipe_version="1",
                             recipe_hash="0" * 64, slots=[1], user="b", line_id="bay-B")
            bay_b.set_lot_state("LB", "running")
            bay_b.record_transition("LB-01", "queued", "step1_waiting", "start",
                                    location="oven-1")
        context.store.alarm_set("printer-1", 240, "PASTE LOW")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            line_page = (await client.get("/line")).text
            alarms_page = (await client.get("/alarms")).text
            token = csrf_of((await client.get("/lots")).text)
            started = await client.post("/lots/start", data={
                "csrf": token, "lot": "LA", "recipe": "ballmount-sac305", "wafers": "1"})
            assert "lot LA queued" in await _flash(client, started)
        assert "PASTE LOW" in line_page and "N2 FLOW LOW" not in line_page
        assert "LB-01" not in line_page
        assert "PASTE LOW" in alarms_page and "N2 FLOW LOW" not in alarms_page
        assert context.store.get_lot("LA").line_id == "bay-A"


async def test_a_running_lot_no_controller_runs_shows_as_stopped(tmp_path: Path) -> None:
    """`bumpline lot list` calls it stopped; the screen said "running" with an ETA."""
    async with screen(tmp_path, read_only=True) as (context, url):
        add_users(context)
        _lot(context)
        context.store.set_lot_state("LOTA", "running")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            lots_page = (await client.get("/lots")).text
            lot_page = (await client.get("/lots/LOTA")).text
        assert 'class="state">stopped' in lots_page and "ETA" not in lot_page
        assert "stopped (no controller runs it)" in lot_page


async def test_the_line_page_lists_every_tool_of_the_line_before_it_reports(
        tmp_path: Path) -> None:
    """The in-process line has a placer-1; a rebump lot never uses it, so it never reported
    and the Line page (and the tool-mode form) did not know it."""
    import argparse

    from controller.cli.run import line_tool_names

    names = line_tool_names(argparse.Namespace(line=None, platers=0))
    assert names == ("printer-1", "placer-1", "oven-1", "cleaner-1")
    async with screen(tmp_path) as (context, url):
        context.line_tools = names
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "erik")
            page = (await client.get("/line")).text
            assert 'data-tool="placer-1"' in page
            token = csrf_of(page)
            answer = await client.post("/tools/mode", data={
                "csrf": token, "tool": "placer-1", "mode": "maintenance", "reason": "head"})
            assert "placer-1: production -> maintenance" in await _flash(client, answer)


async def test_a_line_offers_and_takes_only_recipes_its_tools_can_run(tmp_path: Path) -> None:
    """The in-process line has no plater unless asked: a barrier lot started on it could
    never run (serve took it up again and again, a core kept busy). Its cleaner is an FC-1:
    a mask-strip lot started on it would wait at the strip for good."""
    import argparse

    from controller.cli.claims import line_drivers

    async with screen(tmp_path) as (context, url):
        context.line_drivers = line_drivers(argparse.Namespace(line=None, platers=0))
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            page = (await client.get("/lots")).text
            assert "rebump-hipb-snpb" in page and "rebump-hipb-niau-snbi" not in page
            assert "<option>ballmount-mask-sac305</option>" not in page
            answer = await client.post("/lots/start", data={
                "csrf": csrf_of(page), "lot": "NI1", "recipe": "rebump-hipb-niau-snbi",
                "wafers": "2"})
            said = await _flash(client, answer)
            strip = await _flash(client, await client.post("/lots/start", data={
                "csrf": csrf_of(page), "lot": "MS1", "recipe": "ballmount-mask-sac305",
                "wafers": "2"}))
        assert said == ("this line cannot run rebump-hipb-niau-snbi: step 4 (barrier) needs a "
                        "plater, and the line has none")
        assert strip == ("this line cannot run ballmount-mask-sac305: step 3 (strip) needs a "
                         "cleaner whose model can take it, and the line's (cleaner-1) cannot")
        assert context.store.list_lots() == []


async def test_the_read_only_screen_of_no_line_shows_each_lines_tools_apart(
        tmp_path: Path, db_url: str) -> None:
    """`bumpline web` with no line shows the whole fab: every line's oven-1 is a row of its
    own with its line, state, mode and wafer (one row per tool name mixed the lines: bay-A's
    oven-1 showed bay-B's state)."""
    async with screen(tmp_path, db=db_url, read_only=True) as (context, url):
        add_users(context)
        with Store(db_url, line_id="bay-A") as bay_a, Store(db_url, line_id="bay-B") as bay_b:
            bay_a.record_tool_state("oven-1", "productive", reason="wafer LA-01")
            bay_b.record_tool_state("oven-1", "unscheduled down", reason="alarm 550")
            bay_b.set_tool_mode("oven-1", "maintenance", user="erik", reason="belt")
            bay_b.create_lot("LB", recipe_name="ballmount-sac305", recipe_version="1",
                             recipe_hash="0" * 64, slots=[1], user="b", line_id="bay-B")
            bay_b.set_lot_state("LB", "running")
            bay_b.record_transition("LB-01", "queued", "step1_waiting", "start",
                                    location="oven-1")
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            page = (await client.get("/line")).text
    rows = re.findall(r'<tr class="([^"]+)" data-tool="oven-1" data-line="([^"]*)">(.*?)</tr>',
                      page, re.S)
    assert [(css, line) for css, line, _ in rows] == [
        ("e10-productive", "bay-A"), ("e10-unscheduled_down", "bay-B")]
    bay_a_row, bay_b_row = rows[0][2], rows[1][2]
    assert "maintenance" not in bay_a_row and "LB-01" not in bay_a_row
    assert "maintenance" in bay_b_row and "LB-01" in bay_b_row


BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|\bstyle=|\bon[a-z]+=", re.I)  # the CSP refuses


async def test_a_browser_sent_to_an_unknown_wafer_gets_a_page_with_a_way_back(
        tmp_path: Path) -> None:
    """An operator at the tool cart who followed a link to an unknown wafer met a bare text
    page with no way back (audit 2026-12-03, 13). A browser's navigation now gets the screen's
    page: menu, status, the same message escaped, a link to where they came from; htmx and
    the pages' own fetches keep the one line of text."""
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            page = await client.get("/wafers/<b>X", headers={**BROWSER,
                                                              "referer": url + "lots/LOTA"})
            assert page.status_code == 404
            assert page.headers["content-type"].startswith("text/html")
            assert '<a href="/lots">Lots</a>' in page.text and "olga · operator" in page.text
            assert '<a href="/dispositions">' not in page.text  # the role's menu only
            assert "<h1>404 Not Found</h1>" in page.text
            assert '<p id="error-message">no wafer &lt;b&gt;X</p>' in page.text
            assert "<b>X" not in page.text
            assert '<a id="back" href="/lots/LOTA">' in page.text
            assert not INLINE.search(page.text)
            for text_please in ({**BROWSER, "hx-request": "true"}, {}):  # htmx; a fetch
                answer = await client.get("/wafers/<b>X", headers=text_please)
                assert answer.status_code == 404
                assert answer.headers["content-type"].startswith("text/plain")
                assert answer.text == "no wafer <b>X"
            # No route, and no page to go back to: the Line page.
            nowhere = await client.get("/nowhere", headers=BROWSER)
            assert nowhere.status_code == 404 and "<h1>404 Not Found</h1>" in nowhere.text
            assert '<a id="back" href="/line">' in nowhere.text
            assert '<a href="/lots">Lots</a>' in nowhere.text
            assert (await client.get("/nowhere")).text == "Not Found"
            # A role too low, from a browser: the same words, on a page.
            denied = await client.get("/dispositions", headers=BROWSER)
            assert denied.status_code == 403
            assert "this page needs the engineer role" in denied.text and "<nav>" in denied.text


async def test_a_browser_gets_the_guards_refusal_as_a_page_without_a_session(
        tmp_path: Path) -> None:
    """The guard refuses before the session is read: a page without menu or form, the same
    message and status, the screen's headers, nothing inline for the CSP to block."""
    async with screen(tmp_path) as (context, url):
        add_users(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "erik")
            token = csrf_of((await client.get("/recipes")).text)
            big = await client.post(
                "/recipes/validate", data={"csrf": token}, headers={
                    **BROWSER, "referer": url + "recipes"},
                files={"file": ("big.toml", b"#" * (MAX_BODY + 1), "application/toml")})
        assert big.status_code == 413 and big.headers["content-type"].startswith("text/html")
        assert "<h1>413 Request Entity Too Large</h1>" in big.text
        assert "refused: a request to the screen is at most 1024 kB" in big.text
        assert '<a id="back" href="/recipes">' in big.text
        assert "<nav></nav>" in big.text and "erik" not in big.text
        assert token not in big.text and 'action="/logout"' not in big.text
        assert not INLINE.search(big.text)
        assert "script-src 'self';" in big.headers["content-security-policy"]


async def test_a_browser_gets_the_read_only_refusal_as_a_page_saying_read_only(
        tmp_path: Path) -> None:
    async with screen(tmp_path, read_only=True) as (context, url):
        add_users(context)
        _lot(context)
        async with httpx.AsyncClient(base_url=url) as client:
            await login(client, "olga")
            token = csrf_of((await client.get("/lots")).text)
            answer = await client.post("/lots/hold", headers={**BROWSER, "referer": url + "lots"},
                                       data={"csrf": token, "lot": "LOTA", "reason": "r"})
        assert answer.status_code == 409 and 'id="read-only"' in answer.text
        assert "refused: this screen is read-only (no controller runs)" in answer.text
        assert '<a id="back" href="/lots">' in answer.text
        assert context.store.get_lot("LOTA").state == "queued"

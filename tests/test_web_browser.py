"""The operator screen in a real browser: headless Chromium (Debian's) driven by Playwright.

One scenario on the simulated line, behind ``bumpline serve --web`` in its own
process, exactly as an operator would meet it: an operator logs in, starts a
lot, watches wafers advance without reloading, sees the alarm a fault plan
raises, holds the lot and acknowledges the alarm, and reads the oven's zones; an
engineer dispositions the held wafer and takes the oven out of production and
back; the operator never sees the engineer's pages or forms. Every wait is for
something on the page (Playwright's ``expect``), never a sleep.

With ``BUMPLINE_SCREENS=DIR`` it also saves a screenshot of each page there
(``make screens`` → docs/screens/).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra has it
    sync_playwright = None
if CHROMIUM is None or sync_playwright is None:
    pytest.skip("no headless Chromium here (apt-get install chromium; .ci/run does): "
                "the operator screen's browser tests skip", allow_module_level=True)

BUMPLINE = [sys.executable, "-m", "controller.cli"]
SCREENS = os.environ.get("BUMPLINE_SCREENS")
WAIT_MS = 60_000  # the longest any step of the scenario may take (a slow CI machine)
USERS = {"olga": ("operator", "operator-pass-1"), "erik": ("engineer", "engineer-pass-1"),
         "ada": ("admin", "admin-pass-123")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def line(tmp_path: Path):
    """``bumpline serve --web`` on the simulated line with a placer alarm on wafer 2."""
    db = f"sqlite:///{tmp_path / 'line.db'}"
    for name, (role, password) in USERS.items():
        subprocess.run([*BUMPLINE, "user", "add", name, "--role", role, "--password-stdin",
                        "--db", db], input=password + "\n", text=True, check=True,
                       capture_output=True)
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [*BUMPLINE, "serve", "--web", f"127.0.0.1:{port}", "--speed", "400", "--seed", "3",
         "--faults", "placer-1:alarm=240@wafer2", "--db", db,
         "--report-dir", str(tmp_path / "reports")],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while "web: the operator screen" not in (tmp_path / "serve.log").read_text():
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        assert time.monotonic() < deadline, "serve --web did not start"
        time.sleep(0.05)  # waiting for the process to say it listens
    try:
        yield url
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        said = (tmp_path / "serve.log").read_text()
        print(said[-20_000:])  # pytest shows it when the scenario failed: what the line did
        assert "Traceback" not in said


def _shot(page: Page, name: str) -> None:
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENS) / f"{name}.png"), full_page=True)


def _login(page: Page, url: str, name: str) -> None:
    page.goto(url + "/")
    expect(page.locator("h1")).to_have_text("Log in")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", USERS[name][1])
    page.click("button[type=submit]")
    expect(page.locator(".who")).to_contain_text(f"{name} · {USERS[name][0]}")


def _csp(text: str, refused: list[str]) -> None:
    if "Content Security Policy" in text:
        refused.append(text)


def test_operator_and_engineer_run_a_lot_through_the_screen(line: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            _scenario(browser, line)
        finally:
            browser.close()


def _scenario(browser, url: str) -> None:  # noqa: ANN001
    expect.set_options(timeout=WAIT_MS)
    refused: list[str] = []  # what the screen's Content-Security-Policy stopped: nothing
    operator = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    operator.on("console", lambda m: _csp(m.text, refused))
    operator.set_default_timeout(WAIT_MS)
    operator.goto(url + "/")
    _shot(operator, "login")
    _login(operator, url, "olga")

    # Only an operator's pages in the menu; the engineer's pages refuse even when typed.
    nav = operator.locator("header nav")
    expect(nav).to_contain_text("Lots")
    expect(nav).not_to_contain_text("Dispositions")
    expect(nav).not_to_contain_text("Recipes")
    assert operator.request.get(url + "/dispositions").status == 403
    # An address to an unknown wafer: the screen's page saying so, with the way back.
    operator.goto(url + "/wafers/NOPE-01")
    expect(operator.locator("h1")).to_have_text("404 Not Found")
    expect(operator.locator("#error-message")).to_have_text("no wafer NOPE-01")
    operator.click("#back")
    expect(operator).to_have_url(url + "/line")

    # Start a lot; from here the Lots page is never reloaded. Its first event stream is
    # refused (a server busy or restarting): the page opens another and goes live.
    operator.goto(url + "/lots")
    streams: list[str] = []

    def refuse_the_first(route) -> None:  # noqa: ANN001
        streams.append(route.request.url)
        if len(streams) == 1:
            route.fulfill(status=503, body="busy")
        else:
            route.continue_()

    streams_url = re.compile(r"/events\?")
    operator.route(streams_url, refuse_the_first)
    operator.fill("#start-lot input[name=lot]", "E2E")
    operator.select_option("#start-lot select[name=recipe]", "ballmount-sac305")
    operator.fill("#start-lot input[name=wafers]", "4")
    operator.click("#start-lot button[type=submit]")
    expect(operator.locator("#flash")).to_contain_text("lot E2E queued: 4 wafers")
    operator.evaluate("window.__same_page = true")
    row = operator.locator("tr[data-lot=E2E]")
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator(".done")).to_have_text(re.compile(r"[1-4]"))  # a wafer finished
    # The fault plan's placer alarm on wafer 2: loud at the top, without reloading.
    expect(operator.locator(".alarms-loud")).to_contain_text("ALARM placer-1 240")
    assert operator.evaluate("window.__same_page") is True
    assert len(streams) >= 2, streams  # refused, then opened again
    operator.unroute(streams_url)
    _shot(operator, "lots")

    # Hold the lot, with a reason.
    operator.fill("#lot-action input[name=lot]", "E2E")
    operator.fill("#lot-action input[name=reason]", "placer alarm, engineer called")
    operator.click("#lot-action button[formaction='/lots/hold']")
    expect(operator.locator("#flash")).to_contain_text("lot E2E: held")
    expect(operator.locator("tr[data-lot=E2E] .state")).to_have_text("held")

    # Acknowledge the alarm.
    operator.goto(url + "/alarms")
    alarm = operator.locator("tr[data-alarm]", has_text="240")
    alarm.locator("button", has_text="Acknowledge").click()
    expect(operator.locator("#flash")).to_contain_text("acknowledged")
    expect(operator.locator("tr", has_text="240").first).to_contain_text("olga")
    _shot(operator, "alarms")
    operator.goto(url + "/line")
    expect(operator.locator("table.tools")).to_contain_text("placer-1")
    expect(operator.locator("#tool-mode")).to_have_count(0)  # tool modes are the engineer's
    # The oven's zones: the last reflow's setpoints and what the thermocouples read.
    zones = operator.locator("table.zones[data-oven=oven-1]")
    expect(zones.locator("tr.measured")).to_contain_text(re.compile(r"\d+\.\d"))
    expect(zones).to_contain_text("setpoint")
    operator.goto(url + "/reports")
    _shot(operator, "reports")

    # The engineer dispositions the held wafer.
    engineer = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    engineer.on("console", lambda m: _csp(m.text, refused))
    engineer.set_default_timeout(WAIT_MS)
    _login(engineer, url, "erik")
    expect(engineer.locator("header nav")).to_contain_text("Dispositions")
    # The held wafer's own page, left open in another tab: its disposition form shows while
    # the wafer waits, and goes without a reload once the wafer was dispositioned.
    wafer = engineer.context.new_page()
    wafer.on("console", lambda m: _csp(m.text, refused))
    wafer.goto(url + "/wafers/E2E-02")
    expect(wafer.locator("#wafer-disposition input[name=reason]")).to_be_visible()
    wafer.evaluate("window.__same_page = true")
    engineer.goto(url + "/dispositions")
    held = engineer.locator("tr[data-wafer='E2E-02']")
    expect(held).to_contain_text("240")
    _shot(engineer, "dispositions")
    engineer.fill("#disposition input[name=wafer]", "E2E-02")
    engineer.select_option("#disposition select[name=decision]", "scrap")
    engineer.fill("#disposition input[name=reason]", "balls knocked off by the alarm stop")
    engineer.click("#disposition button[type=submit]")
    expect(engineer.locator("#flash")).to_contain_text("scrap of E2E-02 recorded")
    expect(wafer.locator("p .state").first).to_have_text("scrapped")
    expect(wafer.locator("#wafer-disposition")).to_be_hidden()
    assert wafer.evaluate("window.__same_page") is True
    engineer.goto(url + "/wafers/E2E-02")
    expect(engineer.locator("p .state").first).to_have_text("scrapped")
    expect(engineer.locator("main")).to_contain_text("scrap by erik")
    engineer.goto(url + "/wafers/E2E-01")
    expect(engineer.locator("svg.curve").first).to_be_visible()  # the reflow, as vectors
    expect(engineer.locator("svg.curve text.solidus").first).to_contain_text("solidus")
    _shot(engineer, "wafer")
    engineer.goto(url + "/recipes?show=ballmount-sac305")
    _shot(engineer, "recipes")

    # The engineer takes the oven out of production and back; its E10 state follows live.
    engineer.goto(url + "/line")
    engineer.select_option("#tool-mode select[name=tool]", "oven-1")
    engineer.select_option("#tool-mode select[name=mode]", "engineering")
    engineer.fill("#tool-mode input[name=reason]", "profile DOE")
    engineer.click("#tool-mode button[type=submit]")
    expect(engineer.locator("#flash")).to_contain_text("oven-1: production -> engineering")
    oven = engineer.locator("tr[data-tool=oven-1]")
    expect(oven.locator(".mode")).to_contain_text("engineering · erik: profile DOE")
    expect(oven.locator("td").nth(1)).to_have_text("engineering")  # once the controller has it
    _shot(engineer, "line")
    engineer.select_option("#tool-mode select[name=tool]", "oven-1")
    engineer.select_option("#tool-mode select[name=mode]", "production")
    engineer.click("#tool-mode button[type=submit]")
    expect(oven.locator(".mode")).to_have_text("production")
    expect(oven.locator("td").nth(1)).to_have_text("standby")

    # The operator resumes; the lot finishes, seen on the page they left open.
    operator.goto(url + "/lots")
    operator.fill("#lot-action input[name=lot]", "E2E")
    operator.click("#lot-action button[formaction='/lots/resume']")
    expect(operator.locator("#flash")).to_contain_text("lot E2E: running")
    expect(operator.locator("ul.recent")).to_contain_text("E2E complete")

    # Only an admin manages users.
    admin = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    admin.on("console", lambda m: _csp(m.text, refused))
    _login(admin, url, "ada")
    admin.goto(url + "/users")
    expect(admin.locator("table.users")).to_contain_text("olga")
    _shot(admin, "users")
    assert refused == [], refused


def test_a_page_whose_session_ended_says_so(line: str) -> None:
    """Logged out in another tab (or expired, or the screen restarted with another key): the
    open page's stream is refused from then on. It used to go grey and stay quietly stale;
    now it says so and links to the login."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            expect.set_options(timeout=WAIT_MS)
            context = browser.new_context()
            watching = context.new_page()
            _login(watching, line, "olga")
            watching.goto(line + "/lots")
            expect(watching.locator("#pulse")).to_have_class(re.compile(r"\bon\b"))
            other = context.new_page()
            other.goto(line + "/line")
            other.click("form[action='/logout'] button")
            expect(other.locator("h1")).to_have_text("Log in")
            # The stream ends at its next keepalive (15 s) and is refused when reopened.
            expect(watching.locator("#session-ended")).to_contain_text("your session ended")
            expect(watching.locator("#session-ended a")).to_have_attribute("href", "/")
        finally:
            browser.close()

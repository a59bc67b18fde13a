"""Shared by the operator screen tests: a screen on a real socket and logged-in clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from controller.line.events import LineEventStream
from controller.store import Store
from controller.web.app import WebContext, web_server
from controller.web.users import Role

PASSWORDS = {"olga": "operator-pass-1", "erik": "engineer-pass-1", "ada": "admin-pass-123"}
ROLES = {"olga": Role.OPERATOR, "erik": Role.ENGINEER, "ada": Role.ADMIN}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def add_users(context: WebContext) -> None:
    for name, role in ROLES.items():
        context.users.add(name, role, PASSWORDS[name])


@asynccontextmanager
async def screen(tmp_path: Path, *, read_only: bool = False, line_id: str | None = None,
                 db: str | None = None) -> AsyncIterator[tuple[WebContext, str]]:
    """``line_id``: the line the screen's store (its controller's) names; ``db``: its
    database (default a SQLite file in ``tmp_path``)."""
    store = Store(db or f"sqlite:///{tmp_path / 'screen.db'}", line_id=line_id)
    events = None if read_only else LineEventStream("line", lambda: 0.0)
    context = WebContext(store, events, tmp_path / "reports")
    try:
        async with web_server(context, "127.0.0.1:0") as url:
            yield context, url
    finally:
        store.close()


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def login(client: httpx.AsyncClient, name: str, password: str | None = None
                ) -> httpx.Response:
    page = await client.get("/")
    return await client.post("/login", data={
        "name": name, "password": password or PASSWORDS[name], "csrf": csrf_of(page.text)})

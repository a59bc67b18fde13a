"""Live parts pushed down the event stream: rendered once per change for every open page,
sent only when changed, only to a role that may see them (controller/web/push.py)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from web_fixtures import add_users, login, screen

from controller.line.events import EventKind
from controller.web.app import WebContext
from controller.web.push import CLIENT_QUEUE, Watcher, sse_message

WEB = Path(__file__).resolve().parents[1] / "controller" / "web"
WAIT_S = 30.0  # a hang guard, not a timing
ASKED = ["/lots?live=1", "/dispositions?live=1", "/alarms?live=1", "/users?live=1",
         "http://elsewhere/lots?live=1"]


class Messages:
    def __init__(self, lines: AsyncIterator[str]) -> None:  # one generator, read in turns
        self.lines = lines

    async def next(self) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            kind = ""
            async for line in self.lines:
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    return kind, json.loads(line[6:])
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), WAIT_S)


@asynccontextmanager
async def page(url: str, name: str) -> AsyncIterator[Messages]:
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        await login(client, name)
        async with client.stream("GET", "/events", params=[("part", u) for u in ASKED]) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            try:
                yield Messages(lines)
            finally:
                await lines.aclose()


async def test_shared_parts_are_rendered_once_and_pushed_to_every_page(tmp_path: Path) -> None:
    async with screen(tmp_path) as (context, url):
        add_users(context)
        push = context.push
        async with page(url, "olga") as operator, page(url, "erik") as engineer:
            # Only shared parts the role may see: not the alarms (forms with the session's
            # CSRF token), not an admin's page, not another site.
            assert await operator.next() == ("pushed", ["/lots?live=1"])
            assert await engineer.next() == ("pushed", ["/dispositions?live=1", "/lots?live=1"])
            context.store.create_lot("LOTA", recipe_name="ballmount-sac305",
                                     recipe_version="1", recipe_hash="0" * 64, slots=[1],
                                     priority=5, user="setup")
            context.events.publish(EventKind.LOT_STATE, lot_id="LOTA", state="queued")
            for messages in (operator, engineer):
                kind, summary = await messages.next()
                assert (kind, summary["lots"], summary["kinds"]) == ("line", ["LOTA"],
                                                                     ["lot_state"])
                kind, part = await messages.next()
                assert (kind, part["url"]) == ("part", "/lots?live=1")
                assert "LOTA" in part["html"]
            # Two pages watch the lots: one render. A lot's state cannot change the wafers
            # waiting for a disposition: that part is not rendered at all.
            assert push.renders == 1

            # A wafer waits for an engineer: only the engineer's page gets its part.
            context.events.publish(EventKind.DISPOSITION_NEEDED, lot_id="LOTA",
                                   wafer_id="LOTA-01", step=1, step_kind="place", why="x")
            assert (await operator.next())[0] == "line"
            assert (await engineer.next())[0] == "line"
            kind, part = await engineer.next()
            assert (kind, part["url"]) == ("part", "/dispositions?live=1")
            assert push.renders == 2  # the dispositions part only

            # Nothing the parts show: a line message, no render, no part.
            context.events.publish(EventKind.TOOL_NOTE, tool="oven-1", text="warming")
            assert (await operator.next())[0] == "line"
            assert push.renders == 2
            context.store.create_lot("LOTB", recipe_name="ballmount-sac305",
                                     recipe_version="1", recipe_hash="0" * 64, slots=[1],
                                     priority=5, user="setup")
            context.events.publish(EventKind.LOT_STATE, lot_id="LOTB", state="queued")
            assert (await operator.next())[0] == "line"
            kind, part = await operator.next()
            assert kind == "part" and "LOTB" in part["html"]



async def test_a_page_opened_after_a_push_gets_the_next_render_that_differs_from_its_own(
        tmp_path: Path) -> None:
    """What a page was sent is kept per page: one that opened after a part was pushed to
    the others shows what it rendered and fetched itself (possibly older), so the next
    render goes to it even where the others have it already, and not again to them."""
    async with screen(tmp_path) as (context, url):
        add_users(context)
        context.store.create_lot("LOTA", recipe_name="ballmount-sac305", recipe_version="1",
                                 recipe_hash="0" * 64, slots=[1], priority=5, user="setup")
        async with page(url, "olga") as first:
            assert (await first.next())[0] == "pushed"
            context.events.publish(EventKind.LOT_STATE, lot_id="LOTA", state="queued")
            assert (await first.next())[0] == "line"
            kind, part = await first.next()
            assert kind == "part" and "LOTA" in part["html"]
            async with page(url, "erik") as second:
                assert (await second.next())[0] == "pushed"
                # The same lots part as before: new to the second page, not to the first.
                context.events.publish(EventKind.LOT_STATE, lot_id="LOTA", state="queued")
                assert (await second.next())[0] == "line"
                kind, again = await second.next()
                assert (kind, again["html"]) == ("part", part["html"])
                assert (await first.next())[0] == "line"
                # What does change reaches both; the first page's next message is that line.
                context.store.create_lot("LOTB", recipe_name="ballmount-sac305",
                                         recipe_version="1", recipe_hash="0" * 64, slots=[1],
                                         priority=5, user="setup")
                context.events.publish(EventKind.LOT_STATE, lot_id="LOTB", state="queued")
                for messages in (first, second):
                    assert (await messages.next())[0] == "line"
                    kind, changed = await messages.next()
                    assert kind == "part" and "LOTB" in changed["html"]


def test_a_page_that_falls_behind_is_told_to_fetch_everything_again() -> None:
    """A page whose queue is full (a stuck browser) loses what was queued for it, parts
    too: it gets one "missed" line message (on which static/line.js fetches every region),
    and what it was sent is forgotten, so the next push sends it every part again."""
    watcher = Watcher(frozenset({"/lots?live=1"}))
    watcher.sent["/lots?live=1"] = "<table>old</table>"
    assert all(watcher.send(sse_message("line", {"seq": n})) for n in range(CLIENT_QUEUE))
    # The part that does not fit: dropped, so the push does not count it as sent.
    assert watcher.send(sse_message("part", {"url": "/lots?live=1", "html": "new"})) is False
    assert watcher.queue.qsize() == 1
    assert watcher.queue.get_nowait() == sse_message("line", {"kinds": ["resync"],
                                                             "missed": True})
    assert watcher.sent == {}


async def test_a_part_read_before_a_screen_write_is_not_cached_after_it(tmp_path: Path) -> None:
    """A page's live part reads the store, and a write from another screen commits and
    replaces the part cache while it does (no line event follows: a queued lot held,
    nobody runs it). What the first read rendered is that request's answer, not the
    cache's: the next fetch shows the write."""
    async with screen(tmp_path) as (context, url):
        add_users(context)
        store = context.store
        read = store.list_lots
        raced: list[bool] = []

        def read_then_another_screen_writes(*args: Any, **kwargs: Any) -> Any:
            lots = read(*args, **kwargs)
            if not raced:  # once: the first fetch's read, then the other screen's write
                raced.append(True)
                store.create_lot("LATE", recipe_name="ballmount-sac305", recipe_version="1",
                                 recipe_hash="0" * 64, slots=[1], priority=5, user="setup")
                context.parts = {}  # as actions._done does after a write
            return lots

        store.list_lots = read_then_another_screen_writes  # type: ignore[method-assign]
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
            await login(client, "olga")
            first = (await client.get("/lots?live=1")).text
            assert raced and "LATE" not in first  # read before the write
            again = (await client.get("/lots?live=1")).text
            assert "LATE" in again


async def test_the_wafer_pages_disposition_form_comes_and_goes_with_its_live_part(
        tmp_path: Path) -> None:
    """The Wafer page's disposition form sat outside its live part and was there only if
    the wafer waited when the page loaded: it stayed after the wafer moved on, and never came
    when it started waiting (audit 2026-12-03, 10). The form stays outside (the part is pushed
    alike to every page: no CSRF token, no role; a push would wipe a half-typed reason), is
    on the page for engineers and admins only, and the pushed part says when the wafer awaits
    a disposition, which is when screen.css shows the form."""
    part = "/wafers/LOTA-01?live=1"
    async with screen(tmp_path) as (context, url):
        add_users(context)
        store = context.store
        store.create_lot("LOTA", recipe_name="ballmount-sac305", recipe_version="1",
                         recipe_hash="0" * 64, slots=[1], priority=5, user="setup")
        for name in ("olga", "erik", "ada"):
            async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
                await login(client, name)
                html = (await client.get("/wafers/LOTA-01")).text
            form = re.search(r'<form [^>]*id="wafer-disposition".*?</form>', html, re.S)
            assert (form is not None) == (name != "olga"), name
            if form is not None:
                assert 'class="disposition while-awaiting"' in form.group(0)
                assert re.search(r'name="csrf" value="[^"]+"', form.group(0))
                assert '<input name="reason" required>' in form.group(0)
        css = (WEB / "static" / "screen.css").read_text(encoding="utf-8")
        assert ".live:not(:has([data-awaits-disposition])) ~ form.while-awaiting" in css

        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
            await login(client, "erik")
            assert "data-awaits-disposition" not in (await client.get(part)).text
            async with client.stream("GET", "/events", params={"part": part}) as stream:
                lines = stream.aiter_lines()
                try:
                    await _comes_and_goes(context, Messages(lines), part)
                finally:
                    await lines.aclose()


async def _comes_and_goes(context: WebContext, messages: Messages, part: str) -> None:
    """The pushed part says the wafer awaits a disposition once it does, and no more once
    the wafer was dispositioned."""
    store, events = context.store, context.events
    assert await messages.next() == ("pushed", [part])
    store.record_transition("LOTA-01", "queued", "awaiting_disposition", "step_failed",
                            "4 bridges")
    events.publish(EventKind.DISPOSITION_NEEDED, lot_id="LOTA", wafer_id="LOTA-01", step=1,
                   step_kind="print", why="4 bridges")
    assert (await messages.next())[0] == "line"
    kind, pushed = await messages.next()
    assert kind == "part" and "data-awaits-disposition" in pushed["html"]
    assert 'name="csrf"' not in pushed["html"]
    # Dispositioned, and the controller carried it out: the form goes.
    store.record_transition("LOTA-01", "awaiting_disposition", "scrapped", "disposition",
                            "scrap by erik")
    events.publish(EventKind.WAFER_TRANSITION, lot_id="LOTA", wafer_id="LOTA-01",
                   from_state="awaiting_disposition", to_state="scrapped",
                   trigger="disposition", why="")
    assert (await messages.next())[0] == "line"
    kind, pushed = await messages.next()
    assert kind == "part" and "scrapped" in pushed["html"]
    assert "data-awaits-disposition" not in pushed["html"]

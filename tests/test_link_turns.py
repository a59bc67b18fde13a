"""Turns on a Modbus link: an urgent task's request goes before the ordinary ones already
waiting (the oven's exit watcher: UNLOAD before the entrance's look and the status reads),
against the simulated oven over Modbus TCP; and the turn-taking itself (a waiter that
gives up never holds the wire)."""

from __future__ import annotations

import asyncio

import pytest
from modbus_fixtures import sim_oven

from drivers.turns import Turns, urgent


@pytest.mark.parametrize("exit_urgent", [True, False])
async def test_an_urgent_request_goes_before_those_waiting(exit_urgent: bool) -> None:
    async with sim_oven() as (oven, _):
        answered: list[str] = []

        async def ask(name: str, request, *, is_urgent: bool = False) -> None:
            if is_urgent:
                urgent()
            await request()
            answered.append(name)

        # The entrance's look holds the wire; a zone read queues, then the exit's read
        # (one request each).
        look = asyncio.create_task(ask("look", oven.signals))
        await asyncio.sleep(0)  # on the wire now
        assert oven.link._lock.locked()
        zones = asyncio.create_task(ask("zones", oven.zone_temperatures))
        exit_ = asyncio.create_task(ask("exit", oven.exit_wafer_id, is_urgent=exit_urgent))
        await asyncio.gather(look, zones, exit_)

        assert answered == (["look", "exit", "zones"] if exit_urgent
                            else ["look", "zones", "exit"])
        assert not oven.link._lock.locked()


async def test_urgent_stays_with_the_task_that_asked() -> None:
    turns = Turns()
    order: list[str] = []

    async def holder(name: str, marked: bool) -> None:
        if marked:
            urgent()
        async with turns:
            order.append(name)
            await asyncio.sleep(0)

    async with turns:  # the wire is busy while three queue
        tasks = [asyncio.create_task(holder("a", False)),
                 asyncio.create_task(holder("b", True)),
                 asyncio.create_task(holder("c", False))]
        await asyncio.sleep(0)
        assert turns.waiting == (1, 2)
    await asyncio.gather(*tasks)
    assert order == ["b", "a", "c"]
    assert not turns.locked()
    # This task never marked itself: its own requests stay ordinary.
    async with turns:
        assert turns.waiting == (0, 0)


async def test_a_waiter_that_gives_up_never_keeps_the_wire() -> None:
    turns = Turns()
    got: list[str] = []

    async def take(name: str) -> None:
        async with turns:
            got.append(name)

    await turns.acquire()
    queued = asyncio.create_task(take("queued"))
    handed = asyncio.create_task(take("handed"))
    after = asyncio.create_task(take("after"))
    await asyncio.sleep(0)
    queued.cancel()  # gives up while waiting
    await asyncio.sleep(0)
    turns.release()  # hands the wire to "handed"...
    handed.cancel()  # ...which is cancelled before it runs: it must pass it on
    await asyncio.gather(queued, handed, after, return_exceptions=True)
    assert got == ["after"]
    assert queued.cancelled() and handed.cancelled()
    assert not turns.locked() and turns.waiting == (0, 0)

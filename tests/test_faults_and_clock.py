"""Fault plans and clocks: the small shared pieces."""


import asyncio
import time

import pytest

from drivers.clock import ManualClock as DriverManualClock
from drivers.clock import ScaledClock
from sim.clock import ManualClock
from sim.faults import FaultSpecError, ScheduledAlarm, parse_faults


def test_parses_a_plan_per_tool() -> None:
    plans = parse_faults(
        "printer-1:drop=0.2,corrupt=0.05,delay=0.1,delay_s=0.8;"
        "oven-1:alarm=550@1200,alarm=530@wafer3;cleaner-1:door=100-160,busy=0.5"
    )
    p = plans["printer-1"]
    assert (p.drop, p.corrupt, p.delay, p.delay_s) == (0.2, 0.05, 0.1, 0.8)
    assert plans["oven-1"].alarms == [
        ScheduledAlarm(550, at_time=1200.0),
        ScheduledAlarm(530, at_wafer=3),
    ]
    c = plans["cleaner-1"]
    assert (c.door_open_at, c.door_close_at, c.busy) == (100.0, 160.0, 0.5)
    assert not p.is_empty


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("printer-1:drop=2", "probability must be 0..1"),
        ("printer-1:drop", "expected key=value"),
        ("printer-1:explode=1", "unknown key 'explode'"),
        ("printer-1:alarm=abc", "expected alarm=CODE@SECONDS or alarm=CODE@waferN"),
        ("drop=0.1", "expected TOOL:key=value"),
        ("oven-1:door=soon", "expected door=SECONDS"),
        ("oven-1:delay_s=x", "'x' is not a number"),
    ],
)
def test_bad_specs_are_clear(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_faults(spec)


def test_rolls_repeat_under_a_seed() -> None:
    a, b = parse_faults("t:drop=0.3")["t"], parse_faults("t:drop=0.3")["t"]
    a.seed(7)
    b.seed(7)
    draws = [a.roll(0.3) for _ in range(200)]
    assert draws == [b.roll(0.3) for _ in range(200)]
    assert 30 < sum(draws) < 90  # about 30 % of 200
    assert not any(a.roll(0.0) for _ in range(100))


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(10.0)
    assert clock.advance(5) == 15.0
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_scaled_clock_runs_faster_than_wall_time() -> None:
    clock = ScaledClock(1000.0)
    start = clock.now()
    await clock.sleep(50.0)  # 50 tool seconds = 50 ms of wall time
    assert clock.now() - start >= 50.0
    with pytest.raises(ValueError):
        ScaledClock(0)


async def test_a_sleep_that_wakes_late_is_remembered_as_a_stall() -> None:
    """What must act within a wall-time margin at simulator speed (the oven's exit) learns
    from the clock how long the loop or the process was held up lately."""
    clock = ScaledClock(100.0)
    assert clock.recent_stall_s() == 0.0  # no sleep yet
    sleeper = asyncio.ensure_future(clock.sleep(0.1))
    await asyncio.sleep(0)  # the sleeper has armed its timer
    time.sleep(0.08)  # noqa: ASYNC251 - the loop held up: a stall is this
    await sleeper
    assert clock.recent_stall_s() >= 0.07
    assert DriverManualClock().recent_stall_s() == 0.0  # no wall time passes

"""The place step's waits against a mounter that applies each command one tick late.

hostlink.md says a long command is ACKed at once and its progress followed by STS; it
does not say the state has changed by the time the ACK goes out. A tool that applies
commands on its next simulation tick still shows DONE (or READY) on an STS sent straight
after the ACK. The steps must not take that first STS as the command's outcome. The
tool is scripted here (tests/scripted.py, over a real pty), its time the driver's
``ManualClock``: no wall time is involved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from serial_fixtures import scripted_tool

from drivers.clock import ManualClock
from drivers.hostlink import encode_reply, parse_request
from drivers.placer import BallPlacer
from drivers.serial_link import HostLinkPort
from drivers.types import PlacerState
from sequences.kinds.ball_place import BALL_PLACE
from sequences.kinds.base import Recovering, TakeResult, ToolView
from sequences.recipes.recipe import PlaceStep, find_recipe

TICK_S = 0.1  # the tool applies a command this long after its ACK


@dataclass(frozen=True)
class Phase:
    since: float  # tool time
    state: str
    wafer: str
    missing: int  # the RES the tool would give then


class LateMounter:
    """A WBM-300 whose commands take effect on its next tick (TICK_S after the ACK).
    Phase times follow ball-placer.md: RPR 5 s + 0.5 s per defect, ULD 10 s, PLC 80 s."""

    def __init__(self, clock: ManualClock, state: str, wafer: str, missing: int) -> None:
        self.clock = clock
        self.phases = [Phase(clock.now(), state, wafer, missing)]

    def now(self) -> Phase:
        t = self.clock.now()
        return [p for p in self.phases if p.since <= t][-1]

    def later(self, *steps: tuple[float, str, str | None, int | None]) -> None:
        """Phases from the next tick on: (seconds after it, state, wafer, missing)."""
        last = self.phases[-1]
        start = self.clock.now() + TICK_S
        for after, state, wafer, missing in steps:
            last = Phase(start + after, state, last.wafer if wafer is None else wafer,
                         last.missing if missing is None else missing)
            self.phases.append(last)

    def __call__(self, frame: bytes) -> bytes:
        req = parse_request(frame)
        p = self.now()
        if req.cmd == "STS":
            return encode_reply(req.seq, "STS", [p.state, p.wafer, "0", "SAC305", "250",
                                                 "99.0", "98.5"])
        if req.cmd == "RES":
            return encode_reply(req.seq, "RES", [p.wafer, "OK", "120000",
                                                 str(120000 - p.missing), str(p.missing),
                                                 "0", "11"])
        if req.cmd == "RPR":
            self.later((0.0, "REPAIRING", None, None),
                       (5.0 + 0.5 * p.missing, "INSPECTING", None, 0),
                       (5.0 + 0.5 * p.missing + 15.0, "DONE", None, None))
        elif req.cmd == "ABT":  # ball-placer.md: the wafer stays, the tool goes to DONE
            self.later((0.0, "DONE", None, None))
        elif req.cmd == "ULD":
            self.later((0.0, "UNLOADING", None, None), (10.0, "IDLE", "", None))
        elif req.cmd == "PLC":
            self.later((0.0, "FLUXING", None, None), (25.0, "PLACING", None, None),
                       (65.0, "INSPECTING", None, None), (80.0, "DONE", None, None))
        return encode_reply(req.seq, req.cmd)


@asynccontextmanager
async def late_placer(state: str, missing: int, *then: tuple[float, str, str | None, int | None]
                      ) -> AsyncIterator[BallPlacer]:
    """A BallPlacer on its ManualClock, talking to a LateMounter in ``state`` holding W1
    (``then``: the phases that follow it, as ``LateMounter.later`` takes them)."""
    clock = ManualClock()
    mounter = LateMounter(clock, state, "W1", missing=missing)
    mounter.later(*then)
    async with scripted_tool(mounter) as (_, url):
        async with HostLinkPort(url, sync=False, tool="placer-1", timeout_s=0.5) as port:
            yield BallPlacer(port, clock)  # type: ignore[arg-type]


def place_step() -> PlaceStep:
    steps = [s for s in find_recipe("ballmount-sac305").steps if isinstance(s, PlaceStep)]
    return steps[0]


async def test_a_repair_is_waited_for_on_a_tool_that_applies_rpr_a_tick_late() -> None:
    async with late_placer("DONE", missing=4) as placer:
        result = await BALL_PLACE.repair(placer)
    assert (result.wafer_id, result.missing) == ("W1", 0)  # the result after the repair


async def test_our_wafer_released_from_a_tool_that_applies_uld_a_tick_late() -> None:
    async with late_placer("DONE", missing=0) as placer:
        status = await placer.status()
        await BALL_PLACE.release_own(placer, ToolView(status, own_wafer_done=True))
        assert (await placer.status()).state is PlacerState.IDLE


async def test_settle_starts_a_loaded_wafer_on_a_tool_that_applies_plc_a_tick_late() -> None:
    notes: list[str] = []
    wafer = Recovering("W1", 1, judging=False, earlier_results=(), intents=("LOAD",),
                       note=notes.append)
    async with late_placer("READY", missing=0) as placer:
        settled = await BALL_PLACE.settle(placer, place_step(), wafer, placer.clock)
    assert isinstance(settled, TakeResult)
    assert settled.result.wafer_id == "W1" and notes == ["placer-1 holds it loaded: starting it"]


@pytest.mark.parametrize("state", ["LOADING", "READY"])
async def test_an_abort_is_waited_for_on_a_tool_that_applies_abt_a_tick_late(state: str) -> None:
    """ABT from a state that leads nowhere by itself (READY) or not to DONE (LOADING): the
    STS straight after the ACK still showed it, the wait raised StateUnreachable, and the
    aborted wafer stayed inside ("could not finish the abort")."""
    async with late_placer(state, missing=0) as placer:
        notes = await BALL_PLACE.abort(placer, place_step(), "W1")
        assert notes == ["ABT sent", "wafer unloaded"], notes
        await placer.clock.sleep(10.0)  # ULD's time (ManualClock: tool time, no wall time)
        status = await placer.wait_for(PlacerState.IDLE, timeout_s=30.0)
    assert status.wafer_id is None  # handed out


JUDGED = {"status": "OK", "sites": 120000, "placed": 120000, "missing": 0, "extra": 0,
          "offset_max_um": 11}


@pytest.mark.parametrize("before_repair", [None, {**JUDGED, "missing": 4, "placed": 119996}])
async def test_settle_finds_a_judged_wafer_being_handed_out(before_repair: dict | None
                                                            ) -> None:
    """Stopped after the ULD of a judged wafer (sent only after its judgment's commit), the
    controller restarted within the tool's 10 s of UNLOADING: the tool still shows the
    wafer. Recovery waited for DONE, which UNLOADING never reaches (StateUnreachable: the
    wafer went to an engineer). It is handed out: judged again from what step_done stored."""
    notes: list[str] = []
    wafer = Recovering("W1", 1, judging=True, earlier_results=(), intents=("LOAD", "PLC"),
                       note=notes.append, measured=JUDGED, before_repair=before_repair)
    async with late_placer("UNLOADING", 0, (10.0, "IDLE", "", None)) as placer:
        settled = await BALL_PLACE.settle(placer, place_step(), wafer, placer.clock)
        assert (await placer.status()).state is PlacerState.IDLE
    assert isinstance(settled, TakeResult) and settled.unloaded, settled
    assert settled.result.wafer_id == "W1" and settled.result.missing == 0

"""The GEM equipment against a host nobody on the project wrote: secsgem-driver (PyPI),
its own asyncio HSMS and SECS-II code, in its own virtualenv (``make gemhost``), run
as a subprocess (tests/gemhost/host.py) and driven step by step from here.

The scenario: connect, select, establish, go online-remote, define and link reports,
enable events, start a lot by S2F41 (queued in the store), receive each step's S6F11
in order and S5F1 for an oven alarm, name what is spooled (S2F43), drop the link
and reconnect to receive the spooled events in order (S6F23) between the
SPOOLINGACTIVATED and SPOOLINGDEACTIVATED reports, download a recipe that remelts
the first bump and see it refused with the reason, switch to online-local and see
S2F41 refused, go equipment-offline and see S1F3 aborted; on the way, ask for
reports outside their events (S6F15, S6F19), trace a status variable (S2F23, S6F1)
and set and read the clock (S2F31, S2F17). Here the line events are published by
the test; tests/test_gem_serve_e2e.py runs the same scenario against the real
controller.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from controller.gem import ids
from controller.gem.states import ControlState
from controller.line.events import EventKind
from controller.store import LotState
from sequences.recipes.recipe import shipped_recipe_paths
from tests.gem_host import RECIPE, WAIT_S, GemLine

ROOT = Path(__file__).resolve().parents[1]
HOST_PYTHON = Path(os.environ.get("BUMPLINE_GEMHOST_PYTHON",
                                  ROOT / ".venv-gemhost" / "bin" / "python"))
SCRIPT = ROOT / "tests" / "gemhost" / "host.py"

pytestmark = pytest.mark.skipif(
    not HOST_PYTHON.exists(),
    reason=f"independent GEM host not installed ({HOST_PYTHON}): run 'make gemhost'",
)


class IndependentHost:
    """The subprocess, one JSON command and answer per line."""

    def __init__(self, log: Path) -> None:
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("w")
        self.proc = await asyncio.create_subprocess_exec(
            str(HOST_PYTHON), str(SCRIPT), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=self._log)

    async def __call__(self, op: str, **fields) -> dict:
        self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        limit_s = 2 * max(WAIT_S, fields.get("timeout", 0))
        line = await asyncio.wait_for(self.proc.stdout.readline(), limit_s)
        if not line:
            pytest.fail(f"the host ended: {self.log_path.read_text()[-2000:]}")
        answer = json.loads(line)
        if "error" in answer:
            pytest.fail(f"host: {answer['error']}")
        return answer

    async def request(self, stream: int, function: int, body=None):
        answer = await self("request", s=stream, f=function, body=body)
        return answer["f"], answer["body"]

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.write(b'{"op": "quit"}\n')
            await self.proc.stdin.drain()
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        self._log.close()


def u4s(*values: int) -> list:
    return ["L", [["U4", v] for v in values]]


def param(name: str, value) -> list:
    return ["L", [["A", name], value]]


@pytest.fixture
async def setup(tmp_path):
    line = GemLine(f"sqlite:///{tmp_path / 'gem.db'}")
    await line.start()
    host = IndependentHost(tmp_path / "host.log")
    await host.start()
    yield line, host
    await host.close()
    await line.close()


async def connect(line: GemLine, host: IndependentHost) -> None:
    assert (await host("connect", port=line.eq.port))["ok"] is True
    await line.eq.communicating()  # our S1F13, answered by the host's library


async def test_the_scenario_against_secsgem_driver(setup):
    line, host = setup
    eq = line.eq
    await connect(line, host)
    # establish from the host side too, then ask to go online: the operator decides
    assert await host.request(1, 13, ["L", []]) == (14, [[0], ["BUMPLINE-T", eq.softrev]])
    assert await host.request(1, 17) == (18, [1])
    assert await eq.operator_online() is ControlState.ONLINE_REMOTE
    assert await host.request(1, 1) == (2, ["BUMPLINE-T", eq.softrev])

    # dynamic reports: RPT 7 = LOTID, WAFERID, STEP, OUTCOME on lot start and step events
    define = ["L", [["U4", 1], ["L", [["L", [["U4", 7], u4s(
        ids.DV_LOT_ID, ids.DV_WAFER_ID, ids.DV_STEP, ids.DV_OUTCOME)]]]]]]
    assert await host.request(2, 33, define) == (34, [0])
    link = ["L", [["U4", 2], ["L", [["L", [["U4", c], u4s(7)]] for c in (
        ids.CE_LOT_STARTED, ids.CE_STEP_STARTED, ids.CE_STEP_ENDED)]]]]
    assert await host.request(2, 35, link) == (36, [0])
    assert await host.request(2, 37, ["L", [["BOOLEAN", True], ["L", []]]]) == (38, [0])
    # asked for now (variable data collection): the DVs have no value outside their event
    assert await host.request(6, 19, ["U4", 7]) == (20, [[], [], [], []])
    _, (_, ceid, reports) = await host.request(6, 15, ["U4", ids.CE_LOT_STARTED])
    assert (ceid, reports) == (ids.CE_LOT_STARTED, [[7, [[], [], [], []]]])
    # a trace: CONTROLSTATE sampled twice, 0.1 s apart, in one S6F1
    trace = ["L", [["U4", 3], ["A", "00000010"], ["U4", 2], ["U4", 2],
                   u4s(ids.SV_CONTROL_STATE)]]
    assert await host.request(2, 23, trace) == (24, [0])
    (sample,) = (await host("received", s=6, f=1, count=1))["bodies"]
    assert (sample[0], sample[1], sample[3]) == (3, 2, [5, 5])  # TRID, SMPLN, 2 x ONLINE REMOTE
    # the host sets the clock GEM shows, and reads it back
    assert await host.request(2, 31, ["A", "2027010112000000"]) == (32, [0])
    function, shown = await host.request(2, 17)
    assert function == 18 and shown.startswith("202701011200")  # seconds later at most

    # START a lot: queued in the store, audited as the host's
    start = ["L", [["A", "START"], ["L", [
        param("LOTID", ["A", "IH1"]), param("RECIPE", ["A", RECIPE]),
        param("SLOTS", ["A", "1-3"]), param("PRIORITY", ["U1", 2])]]]]
    assert await host.request(2, 41, start) == (42, [[4], []])
    lot = line.store.get_lot("IH1")
    assert (lot.state, lot.wafer_count, lot.created_by) == (LotState.QUEUED, 3, "host")

    # the line runs it (events as the controller publishes them), an oven alarm comes
    await line.publish(EventKind.LOT_STATE, lot_id="IH1", state="running",
                       previous="queued", recipe=RECIPE)
    for step, kind in ((1, "print"), (2, "reflow")):
        await line.publish(EventKind.STEP_STARTED, lot_id="IH1", wafer_id="IH1-01",
                           tool="printer-1", step=step, step_kind=kind)
        await line.publish(EventKind.STEP_ENDED, lot_id="IH1", wafer_id="IH1-01",
                           tool="printer-1", step=step, step_kind=kind, outcome="ok")
    await line.publish(EventKind.ALARM_SET, tool="oven-1", code=540, text="O2 HIGH")
    reports = (await host("received", s=6, f=11, count=7))["bodies"]
    assert [r[1] for r in reports] == [ids.CE_LOT_STARTED, ids.CE_PROCESS_STATE_CHANGED,
                                       ids.CE_STEP_STARTED, ids.CE_STEP_ENDED,
                                       ids.CE_STEP_STARTED, ids.CE_STEP_ENDED,
                                       ids.CE_ALARM_SET]
    assert reports[5][2] == [[7, ["IH1", "IH1-01", 2, "ok"]]]
    alarm = (await host("received", s=5, f=1, count=1))["bodies"][0]
    assert alarm == [[0x80 | ids.ALCD_ATTENTION], 301_540, "oven-1 O2 HIGH"]

    # the host names what is spooled (S2F43): stream 1 is refused (STRACK 1), then
    # every primary of stream 6 and S5F1 accepted
    assert await host.request(2, 43, ["L", [["L", [["U1", 1], ["L", []]]]]]) == (
        44, [[1], [[1, [1], []]]])
    spool = ["L", [["L", [["U1", 6], ["L", []]]], ["L", [["U1", 5], ["L", [["U1", 1]]]]]]]
    assert await host.request(2, 43, spool) == (44, [[0], []])

    # the host link drops mid-lot: events are spooled in the database, SPOOLINGACTIVATED
    # (all events are enabled) ahead of them
    assert (await host("disconnect"))["ok"] is True
    await eq.server.connection.closed.wait()
    for step in (3, 4, 5):
        await line.publish(EventKind.STEP_STARTED, lot_id="IH1", wafer_id="IH1-01",
                           tool="cleaner-1", step=step, step_kind="clean")
    assert eq.db.spool_count() == 4
    await connect(line, host)
    assert await host.request(1, 3, u4s(ids.SV_SPOOL_STATE)) == (4, [2])  # SPOOL ACTIVE
    assert await host.request(6, 23, ["U1", 0]) == (24, [0])
    spooled = (await host("received", s=6, f=11, count=5))["bodies"]
    assert [r[1] for r in spooled] == [ids.CE_SPOOLING_ACTIVATED] + [
        ids.CE_STEP_STARTED] * 3 + [ids.CE_SPOOLING_DEACTIVATED]
    assert [r[2][0][1][2] for r in spooled[1:4]] == [3, 4, 5]  # STEP, in order
    await eq.drained()
    assert eq.db.spool_count() == 0
    assert await host.request(1, 3, u4s(ids.SV_SPOOL_STATE)) == (4, [1])  # SPOOL INACTIVE

    # a recipe that remelts the first bump is refused, and the host is told why
    text = shipped_recipe_paths()[RECIPE].read_text(encoding="utf-8")
    remelt = text.replace(f'name = "{RECIPE}"', 'name = "ih-remelt"').replace(
        "peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]")
    download = ["L", [["A", "ih-remelt"], ["B", list(remelt.encode("utf-8"))]]]
    assert await host.request(7, 3, download) == (4, [1])
    notice = (await host("received", s=10, f=1, count=1))["bodies"][0]
    assert "rebump rule" in notice[1] and "<= 288 degC" in notice[1]

    # online-local: remote commands refused (HCACK 2); equipment-offline: SxF0
    assert eq.operator_remote(False) is ControlState.ONLINE_LOCAL
    again = ["L", [["A", "START"], ["L", [
        param("LOTID", ["A", "IH2"]), param("RECIPE", ["A", RECIPE]),
        param("SLOTS", ["A", "1"])]]]]
    assert await host.request(2, 41, again) == (42, [[2], []])
    assert eq.operator_offline() is ControlState.EQUIPMENT_OFFLINE
    assert (await host.request(1, 3, ["L", []]))[0] == 0
    assert (await host.request(1, 13, ["L", []]))[0] == 14
    assert (await host("disconnect"))["ok"] is True

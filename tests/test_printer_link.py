"""PastePrinter and the HostLink/1 link rules, end to end with the simulated WP-300: lost,
corrupted and late replies never print a wafer twice, and a new host process is never
answered from the previous one's memory (hostlink.md rule 3)."""

from __future__ import annotations

import pytest
from serial_fixtures import RigFactory
from test_printer_driver import PATIENCE_S, S, print_one_wafer, recipe_for

from drivers.errors import LinkError
from drivers.hostlink import parse_request
from drivers.printer import PastePrinter
from drivers.serial_link import HostLinkPort
from drivers.types import RunStatus
from sim.clock import ManualClock
from sim.faults import FaultPlan

# --- the link rules, end to end with the simulator ----------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize(
    ("faults", "seed", "timeout_s"),
    [({"drop": 0.2}, 7, 0.15), ({"corrupt": 0.2}, 3, 0.15),
     ({"delay": 0.3, "delay_s": 0.2}, 5, 0.1)],
    ids=["lost", "corrupted", "late"],
)
async def test_lost_corrupted_and_late_replies_never_print_twice(
    printer_line: RigFactory, faults: dict[str, float], seed: int, timeout_s: float
) -> None:
    plan = FaultPlan(**faults)
    plan.seed(seed)
    async with printer_line(faults=plan, timeout_s=timeout_s, retries=6) as rig:
        result = await print_one_wafer(rig.driver, "LOT42-07")
        assert result.status is RunStatus.OK and rig.model.prints_executed == 1
        assert rig.port.retransmissions > 0
    if "delay" in faults:  # a late reply arrives after its retransmission: stale, dropped
        assert rig.port.stale_replies > 0
    # every retransmission repeated the previous frame exactly (same SEQ, same body)
    sent = rig.sent()
    seqs = [parse_request(f).seq for f in sent]
    for before, after in zip(sent, sent[1:], strict=False):
        if after[:3] == before[:3]:
            assert after == before
    repeats = sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if a == b)
    assert repeats == rig.port.retransmissions


@pytest.mark.faults
async def test_a_print_whose_every_reply_was_lost_is_done_when_sts_says_so(
    printer_line: RigFactory,
) -> None:
    """Every retransmission of PRT goes unanswered; the print started with the first one.
    The driver asks STS before calling it failed, and the wafer is printed once."""
    from modbus_fixtures import DropReplies

    plan = DropReplies()
    async with printer_line(faults=plan, retries=2) as rig:
        p = rig.driver
        await p.set_recipe(await recipe_for(p))
        await p.load("W-QUIET")
        await p.wait_for(S.READY, timeout_s=PATIENCE_S)
        plan.left = rig.port.retries + 1  # PRT and its two retransmissions
        await p.start_print()
        assert [parse_request(f).cmd for f in rig.sent()[-4:]] == ["PRT", "PRT", "PRT", "STS"]
        await p.wait_for(S.DONE, timeout_s=PATIENCE_S)
        assert rig.model.prints_executed == 1
        recipe = await recipe_for(p)
        plan.left = rig.port.retries + 1  # RCP changes nothing STS could show: not judged
        with pytest.raises(LinkError, match="no reply to RCP after 3 attempts"):
            await p.set_recipe(recipe)


# --- a new host process after another one (hostlink.md rule 3) --------------------------------


async def test_a_second_host_process_is_never_answered_from_the_first_ones_memory() -> None:
    """``bumpline tool printer-1 wipe`` twice: two links, both starting at SEQ 00. The tool
    remembers the first process's last request; the second must still wipe."""
    from sim.printer import PastePrinterModel
    from sim.serial_server import SerialToolServer

    clock = ManualClock()
    server = SerialToolServer(PastePrinterModel(seed=0), clock, name="printer-1")
    try:
        url = await server.start_pty()
        for _ in range(2):  # two processes, each with its own link and driver
            async with HostLinkPort(url, tool="printer-1", timeout_s=0.5) as port:
                await PastePrinter(port, clock).wipe()  # type: ignore[arg-type]
                # WPE is the process's last request: what the tool remembers
            clock.advance(60.0)  # the operator waits; the wipe (15 s) ends
        async with HostLinkPort(url, tool="printer-1", timeout_s=0.5) as port:
            status = await PastePrinter(port, clock).status()  # type: ignore[arg-type]
        assert status.state is S.IDLE and status.prints_since_wipe == 0
    finally:
        await server.stop()
    assert server.endpoint.retransmissions == 0
    assert server.model.wipes == 2

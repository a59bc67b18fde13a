"""The serial drivers against a WP-300 and a WBM-300 written by someone else from the specs.

``tests/independent/`` holds a HostLink/1 printer and mounter written from hostlink.md,
paste-printer.md and ball-placer.md without reading ``sim/``, taking the strictest
reasonable choice where the specs are silent (docs/protocols.md, "Independent tools"),
served on raw TCP as a serial device server carries them: replies paced at 115200 baud
and written in two pieces, one client at a time, the retransmission memory kept by the
tool across connections. A lot that prints and places runs on them on every test run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.store import Store
from drivers.clock import ScaledClock
from drivers.line_config import parse_line_config
from drivers.tools import open_tool
from drivers.types import PlacementRecipe, PrintRecipe, RunStatus
from sequences.kinds.ball_place import BALL_PLACE
from sequences.kinds.hostlink_step import INTERLOCK_WAIT_S
from tests.independent.hostlink import Nak
from tests.independent.lot import run_lot
from tests.independent.serial_servers import line_tables, serve
from tests.independent.wbm300 import Mounter
from tests.independent.wp300 import Printer

RECIPE = "corecap-pb90-snpb"  # ball placement, then a print: both serial tools, both CHG
LOT_SPEED = 300.0
DRIVER_SPEED = 1000.0


async def test_a_lot_on_the_independent_printer_and_mounter(tmp_path: Path) -> None:
    """Our simulator serves the oven and the cleaner; the printer and the mounter are the
    independent ones (each needs a changeover, an RCP, then LOD/PRT or LOD/PLC/RPR)."""
    async with serve(LOT_SPEED) as served:
        code, text = await run_lot(tmp_path, line_tables(served),
                                   leave_out=("printers", "placers"), speed=LOT_SPEED,
                                   lot="HL1", recipe=RECIPE, db=tmp_path / "hl.db")
    assert code == 0, text
    assert "lot HL1: complete; 2/2 wafers complete" in text, text
    printer, mounter = served.printer.tool.log, served.mounter.tool.log
    assert [e.split()[0] for e in mounter[:2]] == ["chg", "rcp"], mounter
    assert [e for e in mounter if e.startswith(("lod", "plc", "out"))] == [
        "lod HL1-01", "plc", "out HL1-01", "lod HL1-02", "plc", "out HL1-02"], mounter
    assert [e for e in printer if e.startswith(("lod", "prt", "out"))] == [
        "lod HL1-01", "prt", "out HL1-01", "lod HL1-02", "prt", "out HL1-02"], printer
    assert not [e for e in printer + mounter if e.startswith("alarm")], (printer, mounter)
    nak = [body for tool in (served.printer, served.mounter)
           for body, reply in tool.link.log if b",NAK," in reply]
    assert nak == [], nak


async def test_lost_and_garbled_replies_never_run_a_command_twice() -> None:
    """hostlink.md rule 3: the identical frame again is answered from the tool's memory."""
    async with serve(DRIVER_SPEED) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + line_tables(served))
        tool = served.printer
        async with open_tool(config.tools["printer-1"], ScaledClock(DRIVER_SPEED)) as p:
            stencil = (await p.status()).stencil_id
            await p.set_recipe(PrintRecipe("IND-1", 6.0, 40, 1.0, stencil, 1, 20))
            tool.lose["LOD"] = 1
            await p.load("W1")
            await p.wait_for("READY", timeout_s=600)
            tool.garble["PRT"] = 1
            await p.start_print()
            await p.wait_for("DONE", timeout_s=600)
            tool.lose["RES"] = 1
            assert (await p.result()).status is RunStatus.OK
            tool.lose["ULD"] = 2
            await p.unload()
            await p.wait_for("IDLE", timeout_s=600)
    assert [e.split()[0] for e in tool.tool.log] == ["rcp", "lod", "prt", "uld", "out"]
    assert tool.link.retransmissions == 5, tool.link.log


async def test_a_repair_of_many_defects_is_waited_for() -> None:
    """ball-placer.md: RPR takes 5 s + 0.5 s per missing or extra ball. A recipe may repair
    up to max_defects (up to 3,000,000); the wait was sized for 1000 (1070 s with its
    margin), so 3000 missing balls (1505 s) timed out and the wafer went to an engineer."""
    mounter = Mounter(defects=3000)
    async with serve(DRIVER_SPEED, mounter=mounter) as served:
        config = parse_line_config("[line]\nname = 'ind'\n" f"time_scale = {DRIVER_SPEED}\n"
                                   + line_tables(served))
        async with open_tool(config.tools["placer-1"], ScaledClock(DRIVER_SPEED)) as m:
            await m.set_recipe(PlacementRecipe("IND-1", 250, "SAC305", 25, 400, 120000))
            await m.load("W1")
            await m.wait_for("READY", timeout_s=600)
            await m.start_placement()
            await m.wait_for("DONE", timeout_s=600)
            before = await m.result()
            assert before.missing == 3000
            after = await BALL_PLACE.repair(m, before)
    assert (after.status, after.missing, after.extra) == (RunStatus.OK, 0, 0)


TOLD_ONCE = [("printer-1", "refused by a safety interlock (NAK 06: a door open?): asking "
              "again every 5 s for up to 300 s")]  # the operator's note of a NAK 06 wait


async def lot_with_a_door(tmp_path: Path, printer: Printer, lot: str, command: str
                          ) -> tuple[Any, list[bytes], list[tuple[str, str]]]:
    """A 2-wafer lot on ``printer`` (our simulator serves the rest), asserted complete: the
    servers, the requests ``command`` got NAK 06 for, and the operator's interlock notes."""
    db = tmp_path / f"{lot}.db"
    async with serve(LOT_SPEED, printer=printer) as served:
        code, text = await run_lot(tmp_path, line_tables(served),
                                   leave_out=("printers", "placers"), speed=LOT_SPEED,
                                   lot=lot, recipe=RECIPE, db=db)
    assert code == 0, text
    assert f"lot {lot}: complete; 2/2 wafers complete" in text, text
    nak = f",NAK,{command},06".encode()
    refused = [body for body, reply in served.printer.link.log if nak in reply]
    with Store(f"sqlite:///{db}", create=False) as store:
        told = [(a.actor, a.detail) for a in store.audit_log() if a.action == "tool.note"
                and "safety interlock" in a.detail]
    return served, refused, told


class DoorAtFirstLoad(Printer):
    """A WP-300 whose door a person opens as the first wafer comes to it, for a minute:
    it latches nothing while nothing moves, and refuses motion with NAK 06 meanwhile."""

    door_opened = False
    open_s = 60.0

    def cmd_lod(self, wafer_id: str) -> list[str]:
        if not self.door_opened:
            self.door_opened = True
            self.open_door(self.open_s)
        return super().cmd_lod(wafer_id)


async def test_a_load_refused_by_an_open_door_is_sent_again_once_it_closes(
        tmp_path: Path) -> None:
    """hostlink.md's NAK 06 INTERLOCK, "nothing was changed": the step failed at once, and
    a wafer the printer never took went to an engineer. Now the command is sent again every
    few seconds while the interlock lasts (up to five minutes), and the operator is told
    once (a tool note: the audit log and the line event stream)."""
    served, refused, told = await lot_with_a_door(tmp_path, DoorAtFirstLoad(), "HD1", "LOD")
    printer = served.printer.tool.log
    assert [e for e in printer if e.startswith(("lod", "prt", "out"))] == [
        "lod HD1-01", "prt", "out HD1-01", "lod HD1-02", "prt", "out HD1-02"], printer
    assert len(refused) >= 2, refused  # refused while the door stayed open, then taken
    assert told == TOLD_ONCE, told  # once, for the operator


class DoorOpenPastTheWait(DoorAtFirstLoad):
    """The door stays open 100 tool s longer than LOD is asked again for."""

    open_s = INTERLOCK_WAIT_S + 100.0


async def test_a_load_refused_past_the_wait_is_held_and_looked_at_again(
        tmp_path: Path) -> None:
    """The door outlasts the NAK 06 wait (the independent soak's seed 4 plan 19): the step
    failed, "tool error: LOD refused: NAK 06 INTERLOCK", an engineer's disposition for a
    wafer the printer never took. Now it goes back to waiting, held at the printer's
    interlock naming the refusal. The WP-300 latches no alarm, so no CLEAR brings it back:
    the line looks at the printer again (it shows nothing refusing: the door is seen only
    by a refused command), the wafer's LOD is sent again, and it is taken once the door is
    closed. Each wafer loaded once; no alarm."""
    served, refused, _ = await lot_with_a_door(tmp_path, DoorOpenPastTheWait(), "HW1", "LOD")
    printer = served.printer.tool.log
    assert sorted(e for e in printer if e.startswith("lod")) == ["lod HW1-01", "lod HW1-02"]
    assert not [e for e in printer if e.startswith("alarm")], printer
    assert len(refused) >= 2, refused
    with Store(f"sqlite:///{tmp_path / 'HW1.db'}", create=False) as store:
        events = store.events("HW1-01")
    (back,) = [e for e in events if e.trigger == "recover"]
    held, resumed = events[events.index(back) + 1:events.index(back) + 3]
    assert held.why == (f"interlock: printer-1 refused LOD for {INTERLOCK_WAIT_S:g} s (NAK 06 "
                        "INTERLOCK: a door open?) before the wafer went in"), held.why
    assert resumed.trigger == "resume" and "printer-1 looked at again" in resumed.why
    assert not any(e.to_state == "awaiting_disposition" for e in events), events


class DoorAtFirstUnload(Printer):
    """A WP-300 whose door a person opens as the first printed wafer is to come out."""

    door_opened = False

    def cmd_uld(self) -> list[str]:
        if not self.door_opened:
            self.door_opened = True
            self.open_door(30.0)
        return super().cmd_uld()


async def test_an_unload_refused_by_an_open_door_is_told_to_the_operator(
        tmp_path: Path) -> None:
    """ULD (a kind's unload, which gets no step context) waits at NAK 06 like LOD, and the
    operator is told so by the step's tool note, not only the log."""
    _, refused, told = await lot_with_a_door(tmp_path, DoorAtFirstUnload(), "HU1", "ULD")
    assert len(refused) >= 2, refused
    assert told == TOLD_ONCE, told


class DoorAtFirstResult(Printer):
    """A WP-300 whose door a person opens as the first print's result is asked for, and
    that refuses every command but the queries a host needs to see why (STS) with NAK 06
    while it is open, as our simulator does: RES too."""

    door_opened = False

    def cmd_res(self) -> list[str]:
        if not self.door_opened:
            self.door_opened = True
            self.open_door(30.0)
        if self.now < self.door_until:
            raise Nak(6)
        return super().cmd_res()


async def test_a_result_refused_by_an_open_door_is_asked_again(tmp_path: Path) -> None:
    """RES refused with NAK 06 while a door stood open failed the step (a printed wafer, its
    result waiting in DONE, went to an engineer: the random soak's seed 4, on the mounter).
    Now it is asked again as every interlocked command is."""
    _, refused, _ = await lot_with_a_door(tmp_path, DoorAtFirstResult(), "HR1", "RES")
    assert len(refused) >= 2, refused

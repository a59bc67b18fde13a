"""WP-300 paste printer model: alarms, abort, scheduled faults and determinism."""

from __future__ import annotations

import pytest
from sim_printer_host import RECIPE, Host, assert_stays

from sim.faults import parse_tool_faults
from sim.printer import PastePrinterModel


@pytest.fixture
def host() -> Host:
    return Host(PastePrinterModel(seed=1))


# --- alarms -------------------------------------------------------------------------------


def test_alignment_failure_leaves_the_wafer_for_the_host() -> None:
    host = Host(PastePrinterModel(align_fail_rate=1.0))
    host("RCP", *RECIPE)
    host("LOD", "W1")
    assert_stays(host, "LOADING", 20)
    assert host("ALR") == ["210", "ALIGNMENT FAILED"]
    assert host.nak("PRT") == 5
    assert host.nak("RES") == 5
    host("CLR")
    assert host.state() == "DONE"
    assert host("RES") == ["W1", "ALARM", "0.0", "0.0", "0.0", "0", "0"]
    host.unload()


def test_alignment_failures_are_rare_by_default() -> None:
    failures = 0
    for seed in range(200):
        host = Host(PastePrinterModel(seed=seed))
        host.load()
        failures += host.state() == "ALARM"
    assert failures <= 5


def test_squeegee_fault_while_printing(host: Host) -> None:
    host.load()
    host("PRT")
    host.wait(12)
    host.model.raise_alarm(300, host.clock.now())
    assert host.sts()["state"] == "ALARM"
    assert host("ALR") == ["300", "SQUEEGEE PRESSURE FAULT"]
    host.wait(1000)  # a stopped tool stays stopped
    assert host.state() == "ALARM"
    host("CLR")
    assert host.state() == "DONE" and host("RES")[1] == "ALARM"


def test_door_interlock(host: Host) -> None:
    host("RCP", *RECIPE)
    host.model.open_door(host.clock.now())
    assert host("ALR") == ["400", "DOOR OPEN"]
    assert host.nak("LOD", "W1") == 6  # the interlock itself refuses motion
    assert host.nak("CLR") == 4  # cause persists
    assert host("IDN")[1] == "WP-300"
    host.model.close_door(host.clock.now())
    assert host.nak("LOD", "W1") == 5  # closed, but still latched
    host("CLR")
    assert host.state() == "IDLE"
    host("LOD", "W1")


def test_door_opened_while_printing_stops_the_wafer(host: Host) -> None:
    host.load()
    host("PRT")
    host.wait(5)
    host.model.open_door(host.clock.now())
    host.wait(100)
    host.model.close_door(host.clock.now())
    host("CLR")
    assert host.state() == "DONE"
    assert host("RES")[:2] == ["W1", "ALARM"]


def test_emergency_stop_outranks_the_door(host: Host) -> None:
    host.model.open_door(0.0)
    host.model.press_estop(0.0)
    assert host("ALR") == ["900", "EMERGENCY STOP"]
    host.model.close_door(0.0)
    assert host.nak("CLR") == 4
    assert host.nak("WPE") == 6
    host.model.release_estop(0.0)
    host("CLR")
    assert host("ALR") == ["0", ""] and host.state() == "IDLE"


def test_a_lesser_alarm_does_not_replace_a_latched_one(host: Host) -> None:
    host.model.raise_alarm(300, 0.0)
    host.model.raise_alarm(220, 0.0)
    assert host("ALR")[0] == "300"


def test_alarm_on_a_finished_wafer_marks_its_result(host: Host) -> None:
    """paste-printer.md: "After an alarm is cleared with a wafer inside, the tool is in DONE
    and RES reports status ALARM" (its measured figures stand)."""
    res = host.print_wafer()
    host.model.press_estop(host.clock.now())
    host.model.release_estop(host.clock.now())
    host("CLR")
    assert host.state() == "DONE"
    assert host("RES") == [res[0], "ALARM", *res[2:]]


# --- abort --------------------------------------------------------------------------------


def test_abort_while_printing_leaves_the_wafer_aborted(host: Host) -> None:
    host.load()
    host("PRT")
    host.wait(10)
    host("ABT")
    assert host.state() == "DONE"
    assert host("RES")[:2] == ["W1", "ABORTED"]
    assert host.model.prints_executed == 1 and host.model.paste_level_pct == 99.6
    host.unload()


@pytest.mark.parametrize("after", [0.0, 5.0])  # READY, LOADING
def test_abort_before_printing_leaves_the_wafer_aborted(host: Host, after: float) -> None:
    host("RCP", *RECIPE)
    host("LOD", "W1")
    host.wait(20 - after)
    host("ABT")
    assert host.state() == "DONE" and host("RES")[1] == "ABORTED"
    assert host.model.prints_executed == 0


def test_abort_without_a_wafer_goes_idle(host: Host) -> None:
    host("ABT")
    assert host.state() == "IDLE"
    host("WPE")
    host.wait(5)
    host("ABT")
    assert host.state() == "IDLE"
    assert host.model.wipes == 0


def test_abort_while_unloading_leaves_the_wafer_done_and_aborted(host: Host) -> None:
    """paste-printer.md ABT: "A wafer in the tool stays; the tool goes to DONE with RES
    status ABORTED" (a wafer on its way out is still in the tool)."""
    res = host.print_wafer()
    host("ULD")
    host.wait(5)
    host("ABT")
    assert host.state() == "DONE" and host("RES") == [res[0], "ABORTED", *res[2:]]


def test_abort_does_not_clear_an_alarm(host: Host) -> None:
    host.model.raise_alarm(300, 0.0)
    host("ABT")
    assert host.state() == "ALARM"


# --- scheduled faults ---------------------------------------------------------------------


def test_alarm_at_a_tool_time() -> None:
    host = Host(PastePrinterModel(faults=parse_tool_faults("alarm=300@100")))
    host.wait(99.75)
    assert host.state() == "IDLE"
    host.wait(0.25)
    assert host("ALR") == ["300", "SQUEEGEE PRESSURE FAULT"]


def test_alarm_at_the_nth_wafer_stops_that_wafer_mid_print() -> None:
    host = Host(PastePrinterModel(faults=parse_tool_faults("alarm=300@wafer2")))
    assert host.print_wafer("W1")[1] == "OK"
    host.unload()
    host.load("W2")
    host("PRT")
    assert_stays(host, "PRINTING", 15)  # halfway through one 30 s pass
    assert host("ALR")[0] == "300"
    host("CLR")
    assert host("RES")[:2] == ["W2", "ALARM"]
    host.unload()
    assert host.print_wafer("W3")[1] == "OK"


def test_alignment_alarm_at_the_nth_wafer_fires_while_loading() -> None:
    host = Host(PastePrinterModel(faults=parse_tool_faults("alarm=210@wafer1")))
    host("RCP", *RECIPE)
    host("LOD", "W1")
    assert_stays(host, "LOADING", 10)
    assert host("ALR")[0] == "210"


def test_scheduled_door_opens_and_closes() -> None:
    host = Host(PastePrinterModel(faults=parse_tool_faults("door=50-80")))
    host("RCP", *RECIPE)
    host.wait(60)
    assert host("ALR")[0] == "400" and host.nak("LOD", "W1") == 6
    assert host.nak("CLR") == 4
    host.wait(20)
    host("CLR")
    host("LOD", "W1")


def test_scheduled_alarm_lands_at_its_own_time_however_late_the_poll() -> None:
    host = Host(PastePrinterModel(faults=parse_tool_faults("alarm=300@30")))
    host("RCP", *RECIPE)
    host("LOD", "W1")
    host.wait(500)
    assert host.state() == "ALARM"
    assert host.model.drain_log() == [
        "t=0.0s IDLE -> LOADING wafer 'W1'",
        "t=20.0s LOADING -> READY wafer 'W1'",
        "t=30.0s alarm 300 SQUEEGEE PRESSURE FAULT",
        "t=30.0s READY -> ALARM wafer 'W1'",
    ]
    host("CLR")
    assert host("RES")[1] == "ALARM"


# --- determinism --------------------------------------------------------------------------


def _run(seed: int) -> list[list[str]]:
    host = Host(PastePrinterModel(seed=seed, prints_since_wipe=20, align_fail_rate=0.2))
    results = []
    for n in range(8):
        host.load(f"W{n}")
        if host.state() == "ALARM":
            host("CLR")
        else:
            host("PRT")
            host.wait(40)
        results.append(host("RES"))
        host.unload()
    return results


def test_same_seed_same_run_and_another_seed_another() -> None:
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)


def test_fault_plan_with_alarm_code_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="WP-300 fault plan: alarm code must be > 0"):
        PastePrinterModel(faults=parse_tool_faults("alarm=0@10"))


def test_a_clock_read_behind_the_model_never_rewinds_it(host: Host) -> None:
    host("RCP", *RECIPE)
    host.model.handle("LOD", ["W1"], 100.0)
    assert host.model.handle("STS", [], 50.0)[0] == "LOADING"  # still 100 s for the tool
    assert host.model.state_at(119.75) == "LOADING"
    assert host.model.state_at(120.0) == "READY"

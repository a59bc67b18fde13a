"""WP-300 paste printer model: states, durations, refusals, consumption, clogging.

Alarms, abort, scheduled faults and determinism: test_sim_printer_faults.py."""

from __future__ import annotations

import re

import pytest
from sim_printer_host import RECIPE, Host, assert_stays

from sim.printer import PastePrinterModel


@pytest.fixture
def host() -> Host:
    return Host(PastePrinterModel(seed=1))


# --- identity and status ------------------------------------------------------------------


def test_identity_and_initial_status(host: Host) -> None:
    assert host("IDN") == ["ACME-PRINT", "WP-300", "SN1042", "2.4.1"]
    assert host("STS") == ["IDLE", "", "0", "0", "100.0", "ST-300-100", "Pb95Sn5"]
    assert host("ALR") == ["0", ""]


def test_initial_setup_is_configurable() -> None:
    model = PastePrinterModel(stencil_id="ST-300-080", paste_alloy="Sn63Pb37", paste_level_pct=42.4)
    assert Host(model)("STS") == ["IDLE", "", "0", "0", "42.4", "ST-300-080", "Sn63Pb37"]


def test_bad_initial_paste_level_is_refused() -> None:
    with pytest.raises(ValueError, match="WP-300 paste_level_pct"):
        PastePrinterModel(paste_level_pct=120)


# --- a wafer through the printer ----------------------------------------------------------


def test_full_cycle_states_and_durations(host: Host) -> None:
    host("RCP", "HIPB-2", "6.0", "40", "1.0", "ST-300-100", "2", "0")
    host("LOD", "LOT42-07")
    assert host.sts()["wafer_id"] == "LOT42-07"
    assert_stays(host, "LOADING", 20)
    assert host.state() == "READY"
    host("PRT")
    assert_stays(host, "PRINTING", 60)  # 30 s x 2 passes
    assert_stays(host, "INSPECTING", 10)
    assert host.state() == "DONE"
    res = host("RES")
    assert res[:2] == ["LOT42-07", "OK"]
    host("ULD")
    assert_stays(host, "UNLOADING", 10)
    assert host.sts() == {
        "state": "IDLE", "wafer_id": "", "alarm": "0", "prints_since_wipe": "1",
        "paste": "99.6", "stencil": "ST-300-100", "alloy": "Pb95Sn5",
    }
    m = host.model
    assert (m.prints_executed, m.wafers_loaded, m.wafers_unloaded) == (1, 1, 1)


def test_recipe_is_kept_across_wafers(host: Host) -> None:
    host.print_wafer("W1")
    host.unload()
    host("LOD", "W2")  # no new RCP needed
    host.wait(20)
    assert host.state() == "READY"


def test_result_format(host: Host) -> None:
    res = host.print_wafer("LOT42-07")
    assert len(res) == 7
    assert res[:2] == ["LOT42-07", "OK"]
    for volume in res[2:5]:
        assert re.fullmatch(r"\d+\.\d", volume)
    assert float(res[3]) <= float(res[2]) <= float(res[4])
    assert res[5].isdigit() and res[6].isdigit()


def test_fresh_stencil_deposit_is_realistic() -> None:
    for seed in range(20):
        host = Host(PastePrinterModel(seed=seed))
        res = host.print_wafer()
        mean, low, high = map(float, res[2:5])
        assert 95.0 <= mean <= 104.0
        assert 60.0 < low < mean < high < 140.0
        assert res[5:] == ["0", "0"] or int(res[5]) <= 2


def test_a_wafer_left_in_done_does_not_time_out(host: Host) -> None:
    host.print_wafer()
    host.wait(10 * 24 * 3600)
    assert host.state() == "DONE"


def test_state_is_exact_without_polling_in_between(host: Host) -> None:
    host("RCP", *RECIPE)
    host("LOD", "W1")
    host.wait(10_000)  # nobody asked in between: LOADING ended at 20 s, READY since
    assert host.state() == "READY"
    assert host.model.drain_log() == ["t=0.0s IDLE -> LOADING wafer 'W1'",
                                      "t=20.0s LOADING -> READY wafer 'W1'"]


# --- wiping -------------------------------------------------------------------------------


def test_unload_wipes_first_when_due(host: Host) -> None:
    recipe = ["R", "6.0", "40", "1.0", "ST-300-100", "1", "2"]
    host.print_wafer("W1", recipe)
    host("ULD")
    assert host.state() == "UNLOADING"  # 1 print < wipe_every 2
    host.wait(10)
    host.print_wafer("W2", recipe)
    host("ULD")
    assert_stays(host, "WIPING", 15)
    assert host.sts()["wafer_id"] == "W2"
    assert_stays(host, "UNLOADING", 10)
    assert host.sts()["prints_since_wipe"] == "0"
    assert host.model.wipes == 1


def test_wipe_every_zero_never_wipes() -> None:
    host = Host(PastePrinterModel(prints_since_wipe=50))
    host.print_wafer("W1", ["R", "6.0", "40", "1.0", "ST-300-100", "1", "0"])
    host("ULD")
    assert host.state() == "UNLOADING"


def test_wpe_wipes_the_stencil() -> None:
    host = Host(PastePrinterModel(prints_since_wipe=33))
    host("WPE")
    assert_stays(host, "WIPING", 15)
    assert host.sts()["prints_since_wipe"] == "0"
    assert host.state() == "IDLE"


# --- changeover ---------------------------------------------------------------------------


def test_changeover_takes_600s_and_clears_the_recipe() -> None:
    host = Host(PastePrinterModel(paste_level_pct=30.0, prints_since_wipe=9))
    host("RCP", *RECIPE)
    host("CHG", "ST-300-080", "Sn63Pb37")
    # during the changeover the old setup is still what is mounted
    assert host.sts()["stencil"] == "ST-300-100"
    assert_stays(host, "CHANGEOVER", 600)
    assert host("STS") == ["IDLE", "", "0", "0", "100.0", "ST-300-080", "Sn63Pb37"]
    assert host.nak("LOD", "W1") == 4  # a new RCP is required
    assert host.nak("RCP", *RECIPE) == 3  # ST-300-100 is no longer mounted
    host("RCP", "SNPB-1", "5.0", "40", "1.0", "ST-300-080", "1", "10")
    host("LOD", "W1")
    assert host.model.changeovers == 1


def test_aborted_changeover_keeps_the_old_setup_and_no_recipe(host: Host) -> None:
    host("RCP", *RECIPE)
    host("CHG", "ST-300-080", "Sn63Pb37")
    host.wait(100)
    host("ABT")
    assert host.sts()["state"] == "IDLE"
    assert host.sts()["stencil"] == "ST-300-100"
    assert host.nak("LOD", "W1") == 4


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index, value",
    [
        (1, "0.4"), (1, "10.1"), (1, "abc"), (1, ""), (1, "-1.0"), (1, "1e3"), (1, " 6.0"),
        (2, "4.9"), (2, "201"), (3, "0.09"), (3, "10.5"),
        (4, "ST-300-080"), (5, "0"), (5, "4"), (5, "1.0"), (6, "51"), (6, "-1"), (0, ""),
    ],
)
def test_recipe_out_of_range_is_bad_parameter(host: Host, index: int, value: str) -> None:
    args = list(RECIPE)
    args[index] = value
    assert host.nak("RCP", *args) == 3
    assert host.model.recipe is None


@pytest.mark.parametrize(
    "index, value",
    [(1, "0.5"), (1, "10.0"), (2, "5"), (2, "200"), (3, "0.1"), (3, "10.0"), (5, "3"), (6, "50")],
)
def test_recipe_range_limits_are_accepted(host: Host, index: int, value: str) -> None:
    args = list(RECIPE)
    args[index] = value
    assert host("RCP", *args) == []
    assert host.model.recipe is not None


def test_wrong_argument_counts_are_bad_parameter(host: Host) -> None:
    assert host.nak("RCP", *RECIPE[:6]) == 3
    assert host.nak("CHG", "ST-300-080") == 3
    assert host.nak("STS", "x") == 3
    assert host.nak("IDN", "") == 3
    host("RCP", *RECIPE)
    assert host.nak("LOD") == 3


@pytest.mark.parametrize("wafer", ["", "W" * 17, " W1"])
def test_bad_wafer_id_is_bad_parameter(host: Host, wafer: str) -> None:
    host("RCP", *RECIPE)
    assert host.nak("LOD", wafer) == 3
    assert host.state() == "IDLE"


def test_sixteen_character_wafer_id_is_accepted(host: Host) -> None:
    host("RCP", *RECIPE)
    host("LOD", "W" * 16)
    assert host.sts()["wafer_id"] == "W" * 16


def test_unknown_command(host: Host) -> None:
    assert host.nak("PLC") == 2  # the ball placer's, not the printer's
    assert host.nak("FOO") == 2


def test_wrong_state_refusals(host: Host) -> None:
    assert host.nak("LOD", "W1") == 4  # IDLE but no RCP
    for cmd in ("PRT", "RES", "ULD"):
        assert host.nak(cmd) == 4
    assert host.nak("CLR") == 4  # no alarm
    host.load()
    assert host.state() == "READY"
    assert host.nak("RCP", *RECIPE) == 4
    assert host.nak("CHG", "ST-300-080", "Sn63Pb37") == 4
    for cmd in ("WPE", "FIL", "RES", "ULD"):
        assert host.nak(cmd) == 4
    assert host.nak("LOD", "W2") == 4
    host("PRT")
    assert host.nak("PRT") == 4
    assert host.nak("ABT", "now") == 3


# --- paste consumption --------------------------------------------------------------------


def test_each_print_uses_0_4_percent(host: Host) -> None:
    for n in range(1, 4):
        host.print_wafer(f"W{n}")
        host.unload()
        assert host.model.paste_level_pct == pytest.approx(100 - 0.4 * n)
    assert host.sts()["paste"] == "98.8"


def test_empty_cartridge_raises_102_before_the_next_print() -> None:
    host = Host(PastePrinterModel(paste_level_pct=0.8))
    host.print_wafer("W1")
    host.unload()
    host.print_wafer("W2")
    host.unload()
    assert host.sts()["paste"] == "0.0"
    host.load("W3")
    assert host("PRT") == []  # taken, then the tool stops without printing
    assert host.sts()["state"] == "ALARM" and host.sts()["alarm"] == "102"
    assert host("ALR") == ["102", "PASTE EMPTY"]
    assert host.model.prints_executed == 2
    assert host.nak("CLR") == 4  # only FIL clears an empty cartridge
    assert host.nak("ULD") == 5
    host("FIL")  # allowed in ALARM with 102
    assert host.sts()["alarm"] == "0"
    assert_stays(host, "FILLING", 120)
    assert host.sts()["paste"] == "100.0"
    # the wafer stayed in the tool unprinted: it is the host's to disposition
    assert host.state() == "DONE"
    assert host("RES")[:2] == ["W3", "ALARM"]
    host.unload()
    assert host.model.fills == 1


def test_a_door_opened_over_102_does_not_let_clr_clear_it() -> None:
    host = Host(PastePrinterModel(paste_level_pct=0.0))
    host.load("W1")
    host("PRT")
    assert host("ALR") == ["102", "PASTE EMPTY"]
    host.model.open_door(host.clock.now())
    assert host("ALR")[0] == "400"  # the interlock is shown over it
    host.model.close_door(host.clock.now())
    host("CLR")  # clears the door alarm only: the cartridge is still empty
    assert host("ALR") == ["102", "PASTE EMPTY"]
    assert host.nak("CLR") == 4  # only FIL clears 102 (paste-printer.md)
    host("FIL")
    assert host.sts()["alarm"] == "0"


def test_fil_from_idle(host: Host) -> None:
    host.print_wafer()
    host.unload()
    host("FIL")
    assert_stays(host, "FILLING", 120)
    assert host.state() == "IDLE" and host.sts()["paste"] == "100.0"


def test_fil_is_refused_in_other_alarms(host: Host) -> None:
    host.model.raise_alarm(300, host.clock.now())
    assert host.nak("FIL") == 5


# --- clogging -----------------------------------------------------------------------------


def _volumes(prints_since_wipe: int, seeds: range) -> tuple[float, float]:
    """Average mean volume and average max-min spread over several wafers."""
    means, spreads = [], []
    for seed in seeds:
        host = Host(PastePrinterModel(seed=seed, prints_since_wipe=prints_since_wipe))
        res = host.print_wafer()
        means.append(float(res[2]))
        spreads.append(float(res[4]) - float(res[3]))
    return sum(means) / len(means), sum(spreads) / len(spreads)


def test_volume_falls_and_scatters_more_as_paste_builds_up() -> None:
    fresh_mean, fresh_spread = _volumes(0, range(10))
    used_mean, used_spread = _volumes(30, range(10))
    clogged_mean, clogged_spread = _volumes(55, range(10))
    assert fresh_mean > used_mean + 5 > clogged_mean + 10
    assert fresh_spread < used_spread < clogged_spread


def test_defects_rise_with_clogging() -> None:
    fresh = [Host(PastePrinterModel(seed=s)).print_wafer() for s in range(10)]
    clogged = [
        Host(PastePrinterModel(seed=s, prints_since_wipe=59)).print_wafer() for s in range(10)
    ]
    assert sum(int(r[5]) + int(r[6]) for r in clogged) > sum(int(r[5]) + int(r[6]) for r in fresh)
    assert sum(int(r[6]) for r in clogged) > 0


def test_wiping_restores_the_deposit() -> None:
    host = Host(PastePrinterModel(seed=3, prints_since_wipe=50))
    clogged = float(host.print_wafer("W1")[2])
    host.unload()
    host("WPE")
    host.wait(15)
    fresh = float(host.print_wafer("W2")[2])
    assert fresh > clogged + 10


def test_more_than_60_prints_since_wipe_raises_220() -> None:
    host = Host(PastePrinterModel(prints_since_wipe=59))
    never_wipe = ["R", "6.0", "40", "1.0", "ST-300-100", "1", "0"]
    host.print_wafer("W60", never_wipe)
    host.unload()
    host.load("W61", never_wipe)
    host("PRT")
    host.wait(40)
    assert host.sts()["state"] == "ALARM" and host("ALR") == ["220", "STENCIL CLOGGED"]
    assert host.sts()["prints_since_wipe"] == "61"
    host("CLR")
    assert host.state() == "DONE"
    res = host("RES")
    assert res[:2] == ["W61", "ALARM"] and float(res[2]) > 0  # measured, then stopped
    host.unload()
    # cleared but not wiped: the next print is refused by the same alarm, before printing
    host.load("W62", never_wipe)
    host("PRT")
    assert host("ALR")[0] == "220" and host.model.prints_executed == 2
    host("CLR")
    host.unload()
    host("WPE")
    host.wait(15)
    host.print_wafer("W63", never_wipe)
    assert host.sts()["prints_since_wipe"] == "1"

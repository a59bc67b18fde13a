"""WBM-300 ball mounter model: states, durations, refusals, defects, repair, consumption, alarms."""

from __future__ import annotations

import pytest
from sim_host import ModelHost, assert_stays

from sim.faults import parse_tool_faults
from sim.placer import BallPlacerModel

RECIPE = ["SAC305-250", "250", "SAC305", "25", "400", "120000"]
PROCESS_S = 25 + 40 + 15


class Host(ModelHost):
    RECIPE = RECIPE

    def res(self) -> dict[str, int | str]:
        wafer, status, *counts = self("RES")
        keys = ("sites", "placed", "missing", "extra", "offset_max_um")
        numbers = dict(zip(keys, map(int, counts), strict=True))
        return {"wafer_id": wafer, "status": status, **numbers}

    def place(self, wafer: str = "W1", recipe: list[str] = RECIPE) -> dict[str, int | str]:
        self.load(wafer, recipe)
        self("PLC")
        self.wait(PROCESS_S)
        assert self.state() == "DONE"
        return self.res()

    def unload(self) -> None:
        self("ULD")
        self.wait(10)
        assert self.state() == "IDLE"


@pytest.fixture
def host() -> Host:
    return Host(BallPlacerModel(seed=1))


def recipe(**changes: str) -> list[str]:
    keys = ["name", "diameter", "alloy", "flux", "pitch", "sites"]
    values = dict(zip(keys, RECIPE, strict=True)) | changes
    return [values[k] for k in keys]


# --- identity and status ------------------------------------------------------------------


def test_identity_and_initial_status(host: Host) -> None:
    assert host("IDN") == ["ACME-BALL", "WBM-300", "SN0077", "1.9.0"]
    assert host("STS") == ["IDLE", "", "0", "SAC305", "250", "100.0", "100.0"]
    assert host("ALR") == ["0", ""]


def test_initial_balls_are_configurable() -> None:
    model = BallPlacerModel(ball_alloy="SnAg3.5", ball_diameter_um=100, ball_level_pct=12.5)
    assert Host(model)("STS") == ["IDLE", "", "0", "SnAg3.5", "100", "12.5", "100.0"]


def test_bad_initial_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="WBM-300 flux_level_pct"):
        BallPlacerModel(flux_level_pct=-1)


# --- a wafer through the mounter ----------------------------------------------------------


def test_full_cycle_states_and_durations(host: Host) -> None:
    host("RCP", *RECIPE)
    host("LOD", "LOT42-07")
    assert_stays(host, "LOADING", 20)
    assert host.state() == "READY"
    host("PLC")
    assert_stays(host, "FLUXING", 25)
    assert_stays(host, "PLACING", 40)
    assert_stays(host, "INSPECTING", 15)
    assert host.state() == "DONE"
    res = host.res()
    assert res["wafer_id"] == "LOT42-07" and res["status"] == "OK" and res["sites"] == 120000
    assert res["placed"] + res["missing"] + res["extra"] == 120000
    assert 2 <= res["offset_max_um"] <= 25
    host("ULD")
    assert_stays(host, "UNLOADING", 10)
    assert host("STS") == ["IDLE", "", "0", "SAC305", "250", "97.6", "99.5"]
    m = host.model
    assert (m.placements_executed, m.wafers_loaded, m.wafers_unloaded) == (1, 1, 1)


def test_recipe_is_kept_across_wafers(host: Host) -> None:
    host.place("W1")
    host.unload()
    assert host.place("W2")["status"] == "OK"


def test_a_wafer_left_in_done_does_not_time_out(host: Host) -> None:
    host.place()
    host.wait(10 * 24 * 3600)
    assert host.state() == "DONE"


# --- defects ------------------------------------------------------------------------------


def _ppm(model_kw: dict, rcp: list[str], wafers: int = 5) -> float:
    defects = sites = 0
    for seed in range(wafers):
        res = Host(BallPlacerModel(seed=seed, **model_kw)).place("W1", rcp)
        defects += res["missing"] + res["extra"]
        sites += res["sites"]
    return defects / sites * 1e6


def test_nominal_defect_rate_is_about_30_ppm() -> None:
    ppm = _ppm({}, recipe(sites="3000000"))
    assert 25 < ppm < 35


def test_flux_far_from_a_tenth_of_the_diameter_raises_defects() -> None:
    nominal = _ppm({}, recipe(sites="3000000"))
    assert _ppm({}, recipe(flux="50", sites="3000000")) > 4 * nominal
    assert _ppm({}, recipe(flux="5", sites="3000000")) > 3 * nominal


def test_thin_flux_loses_balls_and_thick_flux_doubles_them() -> None:
    thin = Host(BallPlacerModel(seed=2)).place("W1", recipe(flux="5", sites="3000000"))
    thick = Host(BallPlacerModel(seed=2)).place("W1", recipe(flux="50", sites="3000000"))
    assert thin["missing"] > thin["extra"]
    assert thick["extra"] / (thick["missing"] + thick["extra"]) > thin["extra"] / (
        thin["missing"] + thin["extra"]
    )


def test_a_worn_mask_raises_defects() -> None:
    fresh = _ppm({}, recipe(sites="3000000"))
    assert _ppm({"mask_wafers": 20000}, recipe(sites="3000000")) > 3 * fresh


# --- repair -------------------------------------------------------------------------------


def test_repair_takes_time_per_defect_then_reinspects() -> None:
    host = Host(BallPlacerModel(seed=4))
    before = host.place("W1", recipe(flux="50", sites="3000000"))
    defects = before["missing"] + before["extra"]
    assert defects > 200
    host("RPR")
    # ball-placer.md: "REPAIRING 5 s + 0.5 s per missing or extra ball, re-inspects, then
    # DONE with a new RES": no other state in between
    assert_stays(host, "REPAIRING", 5 + 0.5 * defects)
    assert host.state() == "DONE"
    after = host.res()
    assert after["status"] == "OK" and after["sites"] == 3000000
    remaining = after["missing"] + after["extra"]
    assert 0 < remaining < defects / 5  # most, not necessarily all
    assert after["placed"] + remaining == 3000000
    assert host.model.repairs == 1


def test_repair_of_a_clean_wafer_still_takes_5s(host: Host) -> None:
    before = host.place("W1", recipe(sites="1000"))
    assert before["missing"] + before["extra"] == 0
    host("RPR")
    assert_stays(host, "REPAIRING", 5)
    assert host.state() == "DONE"
    assert host.res() == before


def test_repair_refused_outside_done(host: Host) -> None:
    assert host.nak("RPR") == 4
    host.load()
    assert host.nak("RPR") == 4


def test_repair_after_an_abort_before_inspection_gives_a_first_res(host: Host) -> None:
    """ball-placer.md: RPR is allowed in DONE, whatever the RES; it re-inspects, then DONE
    with a new RES."""
    host.load()
    host("ABT")
    assert host.res()["status"] == "ABORTED" and host.res()["placed"] == 0
    host("RPR")
    assert_stays(host, "REPAIRING", 5)
    assert host.state() == "DONE"
    after = host.res()
    assert after["status"] == "OK"
    assert after["placed"] + after["missing"] + after["extra"] == after["sites"]


def test_abort_during_repair_keeps_the_last_counts_and_a_repair_again_ends_ok(host: Host
                                                                               ) -> None:
    before = host.place("W1", recipe(flux="50", sites="3000000"))
    host("RPR")
    host.wait(2)
    host("ABT")
    after = host.res()
    assert after["status"] == "ABORTED"
    assert (after["missing"], after["extra"]) == (before["missing"], before["extra"])
    host("RPR")  # allowed in DONE with any RES
    host.wait(5 + 0.5 * (before["missing"] + before["extra"]))
    again = host.res()
    assert host.state() == "DONE" and again["status"] == "OK"
    assert again["missing"] + again["extra"] < before["missing"] + before["extra"]


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("diameter", "300"), ("alloy", "Sn63Pb37"), ("diameter", "59"), ("diameter", "761"),
        ("flux", "4"), ("flux", "51"), ("flux", "25.0"), ("pitch", "99"), ("pitch", "2001"),
        ("sites", "0"), ("sites", "3000001"), ("sites", "1e5"), ("name", ""), ("alloy", ""),
    ],
)
def test_recipe_out_of_range_or_not_the_loaded_balls(host: Host, field: str, value: str) -> None:
    assert host.nak("RCP", *recipe(**{field: value})) == 3
    assert host.model.recipe is None


@pytest.mark.parametrize(
    "field, value",
    [("flux", "5"), ("flux", "50"), ("pitch", "100"), ("pitch", "2000"), ("sites", "1"),
     ("sites", "3000000")],
)
def test_recipe_range_limits_are_accepted(host: Host, field: str, value: str) -> None:
    host("RCP", *recipe(**{field: value}))
    assert host.model.recipe is not None


def test_wrong_state_and_argument_refusals(host: Host) -> None:
    assert host.nak("LOD", "W1") == 4  # no RCP
    assert host.nak("PLC") == 4
    assert host.nak("RES") == 4
    assert host.nak("ULD") == 4
    assert host.nak("PRT") == 2  # the printer's command
    assert host.nak("RCP", *RECIPE[:5]) == 3
    host.load()
    assert host.nak("CHG", "SAC305", "300") == 4
    assert host.nak("RCP", *RECIPE) == 4
    assert host.nak("PLC", "now") == 3
    host("PLC")
    assert host.nak("PLC") == 4
    assert host.nak("ULD") == 4


# --- changeover and consumption -----------------------------------------------------------


def test_changeover_takes_900s_and_clears_the_recipe() -> None:
    host = Host(BallPlacerModel(ball_level_pct=40.0))
    host("RCP", *RECIPE)
    host("CHG", "Sn63Pb37", "300")
    assert host("STS")[3:6] == ["SAC305", "250", "40.0"]  # still what is loaded
    assert_stays(host, "CHANGEOVER", 900)
    assert host("STS") == ["IDLE", "", "0", "Sn63Pb37", "300", "100.0", "100.0"]
    assert host.nak("LOD", "W1") == 4
    assert host.nak("RCP", *RECIPE) == 3
    host("RCP", *recipe(diameter="300", alloy="Sn63Pb37", flux="30"))


@pytest.mark.parametrize("args", [("SAC305", "59"), ("SAC305", "250.0"), ("", "250"), ("SAC305",)])
def test_bad_changeover_arguments(host: Host, args: tuple[str, ...]) -> None:
    assert host.nak("CHG", *args) == 3
    assert host.state() == "IDLE"


def test_balls_and_flux_are_used_per_wafer() -> None:
    host = Host(BallPlacerModel())
    for n in range(1, 4):
        host.place(f"W{n}", recipe(sites="500000"))
        host.unload()
        assert host.model.balls == 5_000_000 - n * 500_000
    assert host("STS")[5:] == ["70.0", "98.5"]


def test_short_ball_supply_raises_111_and_needs_a_changeover() -> None:
    host = Host(BallPlacerModel(ball_level_pct=2.0))  # 100,000 balls
    host.load("W1", recipe(sites="120000"))
    assert host("PLC") == []  # taken, then the tool stops before placing
    assert host("ALR") == ["111", "BALL SUPPLY EMPTY"]
    assert host.model.placements_executed == 0
    assert host.nak("CLR") == 4
    assert host.nak("ULD") == 5
    host("CHG", "SAC305", "250")  # allowed in ALARM 111
    assert host.nak("CHG", "SAC305", "250") == 4  # not a second one while it changes over
    assert_stays(host, "CHANGEOVER", 900)
    assert host.state() == "ALARM" and host("STS")[5] == "100.0"
    host("CLR")
    assert host.state() == "DONE"
    assert host.res() == {"wafer_id": "W1", "status": "ALARM", "sites": 120000, "placed": 0,
                          "missing": 0, "extra": 0, "offset_max_um": 0}
    host.unload()
    assert host.place("W1", recipe(sites="120000"))["status"] == "OK"


def test_flux_empty_raises_121_and_clears_after_the_refill() -> None:
    host = Host(BallPlacerModel(flux_level_pct=0.5))
    host.place("W1")
    host.unload()
    assert host("STS")[6] == "0.0"
    host.load("W2")
    host("PLC")
    assert host("ALR") == ["121", "FLUX EMPTY"]
    host.wait(59.75)
    assert host.nak("CLR") == 4
    assert host("STS")[6] == "0.0"
    host.wait(0.25)
    assert host("STS")[6] == "100.0"
    host("CLR")
    assert host.res()["status"] == "ALARM"
    assert host.model.flux_refills == 1


# --- alarms and interlocks ----------------------------------------------------------------


@pytest.mark.parametrize("code, text", [(230, "VACUUM FAULT"), (240, "PLACEMENT HEAD FAULT")])
def test_tool_faults_while_placing(host: Host, code: int, text: str) -> None:
    host.load()
    host("PLC")
    host.wait(30)
    host.model.raise_alarm(code, host.clock.now())
    assert host("ALR") == [str(code), text]
    assert host.nak("RES") == 5
    host("CLR")
    assert host.res()["status"] == "ALARM"


def test_door_and_estop(host: Host) -> None:
    host("RCP", *RECIPE)
    host.model.open_door(0.0)
    assert host("ALR") == ["400", "DOOR OPEN"]
    assert host.nak("LOD", "W1") == 6
    host.model.press_estop(0.0)
    assert host("ALR") == ["900", "EMERGENCY STOP"]
    host.model.close_door(0.0)
    host.model.release_estop(0.0)
    assert host.nak("LOD", "W1") == 5
    host("CLR")
    host("LOD", "W1")


def test_abort_while_placing(host: Host) -> None:
    host.load()
    host("PLC")
    host.wait(50)
    host("ABT")
    assert host.state() == "DONE"
    assert host.res()["status"] == "ABORTED"
    assert host.model.placements_executed == 1
    host.unload()


def test_alarm_at_the_nth_wafer_fires_mid_placing() -> None:
    host = Host(BallPlacerModel(faults=parse_tool_faults("alarm=240@wafer2")))
    assert host.place("W1")["status"] == "OK"
    host.unload()
    host.load("W2")
    host("PLC")
    assert_stays(host, "FLUXING", 25)
    assert_stays(host, "PLACING", 20)
    assert host("ALR")[0] == "240"


# --- determinism --------------------------------------------------------------------------


def _run(seed: int) -> list[dict[str, int | str]]:
    host = Host(BallPlacerModel(seed=seed))
    results = []
    for n in range(4):
        results.append(host.place(f"W{n}", recipe(flux="40", sites="1000000")))
        host("RPR")
        host.wait(1000)
        results.append(host.res())
        host.unload()
    return results


def test_same_seed_same_run_and_another_seed_another() -> None:
    assert _run(11) == _run(11)
    assert _run(11) != _run(12)

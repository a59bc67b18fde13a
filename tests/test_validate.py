"""The validator: every shipped recipe passes; broken variants are refused by the right
rule, with the numbers, and every problem is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequences.errors import RecipeInvalid
from sequences.recipe import find_recipe, parse_recipe, shipped_recipe_paths
from sequences.validate import (
    ValidationOptions,
    check,
    load_valid_recipe,
    validate,
    validate_file,
)

PRINT = """
[[steps]]
kind = "print"
stencil_id = "ST-300-100"
paste_alloy = "{alloy}"
squeegee_kgf = 6.0
speed_mm_s = 40.0
separation_mm_s = 1.0
passes = 1
wipe_every = 20
vol_mean_pct = [85.0, 115.0]
vol_min_pct_min = 60.0
max_bridges = 0
max_insufficient = 5
"""
PLACE = """
[[steps]]
kind = "place"
ball_alloy = "{alloy}"
ball_diameter_um = 250
flux_um = 25
pitch_um = 400
sites = 120000
max_defects = 100
max_defects_after_repair = 2
"""
REFLOW = """
[[steps]]
kind = "reflow"
zones_c = [150.0, 175.0, 200.0, 200.0, 210.0, 290.0, {hot}, {hot}, 150.0, 50.0]
conveyor_mm_min = 600
o2_limit_ppm = 100
peak_c = [{low}, {high}]
tal_s = [40.0, 90.0]
{extra}
"""
CLEAN = """
[[steps]]
kind = "clean"
wash_temp_c = 60.0
wash_time_s = 120
rinse_time_s = 60
dry_time_s = 60
spray_pressure_bar = 3.0
max_ionic_ug_cm2 = 1.56
"""


def printed(alloy: str) -> str:
    return PRINT.format(alloy=alloy)


def placed(alloy: str) -> str:
    return PLACE.format(alloy=alloy)


def reflow(low: float, high: float, hot: float | None = None, extra: str = "") -> str:
    return REFLOW.format(low=low, high=high, hot=hot or high + 5, extra=extra)


def recipe(*steps: str):
    text = 'name = "variant"\nversion = 1\n' + "".join(steps)
    return parse_recipe(text, source="variant.toml")


def problems(*steps: str, **options: float) -> list[str]:
    return [str(p) for p in validate(recipe(*steps), options=ValidationOptions(**options))]


HIPB_FIRST = (printed("Pb95Sn5"), reflow(340, 360), CLEAN)


@pytest.mark.parametrize("name", sorted(shipped_recipe_paths()))
def test_every_shipped_recipe_is_valid(name: str) -> None:
    assert validate(find_recipe(name)) == []
    assert load_valid_recipe(name).name == name


def test_a_good_variant_passes() -> None:
    assert problems(*HIPB_FIRST, printed("Sn63Pb37"), reflow(215, 240), CLEAN) == []


def test_second_peak_too_close_to_the_first_solidus() -> None:
    assert problems(*HIPB_FIRST, printed("Sn63Pb37"), reflow(215, 300), CLEAN) == [
        "variant.toml: step 5 (reflow): rebump rule: peak window reaches 300 °C while the "
        "Pb95Sn5 bump from step 2 begins to melt at 308 °C (assumed), within the 20 °C margin "
        "(keep the peak <= 288 °C)"
    ]


def test_rebump_margin_is_configurable() -> None:
    steps = (*HIPB_FIRST, printed("Sn63Pb37"), reflow(215, 280), CLEAN)
    assert problems(*steps) == []  # 308 - 280 = 28 °C clear of the default 20 °C
    found = problems(*steps, rebump_margin_c=30.0)
    assert len(found) == 1 and "within the 30 °C margin (keep the peak <= 278 °C)" in found[0]


def test_bismuth_solder_on_a_lead_bump_is_refused() -> None:
    found = problems(*HIPB_FIRST, printed("Sn42Bi58"), reflow(160, 190), CLEAN)
    assert found == [
        "variant.toml: step 5 (reflow): no Sn-Bi over lead: reflowing bismuth-bearing Sn42Bi58 "
        "onto the lead-bearing Pb95Sn5 bump from step 2: Sn-Bi-Pb forms a ternary eutectic "
        "near 95 °C (an intact Ni/Au barrier of >= 2 µm nickel between them would allow it: "
        "an assumption of barrier-plater.md, not a standard)"
    ]


def test_bismuth_on_lead_free_bump_is_fine() -> None:
    assert problems(placed("SAC305"), reflow(240, 255), CLEAN, printed("Sn42Bi58"),
                    reflow(160, 190), CLEAN) == []


def test_missing_clean_between_reflow_and_next_deposit() -> None:
    found = problems(printed("Pb95Sn5"), reflow(340, 360), printed("Sn63Pb37"),
                     reflow(215, 240), CLEAN)
    assert found == [
        "variant.toml: step 3 (print): clean after reflow: print of Sn63Pb37 onto a wafer not "
        "cleaned since the reflow at step 2 (flux residue under the new deposit)"
    ]


def test_reflow_with_nothing_deposited() -> None:
    found = problems(reflow(340, 360), CLEAN)
    assert found == [
        "variant.toml: step 1 (reflow): reflow without deposit: nothing was deposited since "
        "the previous reflow (or the start)"
    ]
    found = problems(*HIPB_FIRST, reflow(215, 240), CLEAN)
    assert [f.split(": ")[2] for f in found] == ["reflow without deposit"]


def test_full_melt_uses_the_window_minimum_and_the_margin() -> None:
    found = problems(printed("Pb95Sn5"), reflow(320, 360), CLEAN)
    assert found == [
        "variant.toml: step 2 (reflow): full melt: peak window starts at 320 °C, but the "
        "Pb95Sn5 from step 1 is fully molten only at 312 °C (assumed); with the 20 °C margin "
        "the window must start at >= 332 °C"
    ]
    assert problems(printed("Pb95Sn5"), reflow(320, 360), CLEAN, full_melt_margin_c=5.0) == []


def test_every_deposit_before_a_reflow_must_melt() -> None:
    found = problems(placed("Pb90Sn10"), printed("Sn63Pb37"), reflow(215, 240), CLEAN)
    assert len(found) == 1
    assert "full melt" in found[0] and "Pb90Sn10 from step 1" in found[0]
    # the oven's TAL threshold is the highest liquidus of what the reflow melts
    r = recipe(placed("Pb90Sn10"), printed("Sn63Pb37"), reflow(330, 345), CLEAN)
    assert r.steps[2].tal_threshold_c == 302.0  # type: ignore[union-attr]


def test_ramp_and_cooling_limits() -> None:
    found = problems(printed("Pb95Sn5"),
                     reflow(340, 360, extra="max_ramp_c_s = 4.0\nmax_cool_c_s = 7.5"), CLEAN)
    assert [f.split(": ", 3)[2:] for f in found] == [
        ["ramp limit", "max_ramp_c_s = 4 °C/s exceeds the 3 °C/s heating limit (J-STD-020)"],
        ["cooling limit",
         "max_cool_c_s = 7.5 °C/s exceeds the 6 °C/s cooling limit (J-STD-020)"],
    ]


def test_recipe_must_end_clean() -> None:
    assert problems(printed("Pb95Sn5"), reflow(340, 360)) == [
        "variant.toml: ends clean: the recipe ends after the reflow at step 2 without a clean "
        "(last step 2 is reflow)"
    ]
    assert problems(*HIPB_FIRST, printed("Sn63Pb37")) == [
        "variant.toml: ends clean: the recipe ends with Sn63Pb37 from step 4 never reflowed"
    ]


def test_clean_before_reflow_would_strip_the_paste() -> None:
    found = problems(printed("Pb95Sn5"), CLEAN, reflow(340, 360), CLEAN)
    assert found[0] == ("variant.toml: step 2 (clean): clean before reflow: the wash would "
                        "strip the unreflowed Pb95Sn5 from step 1")


def test_peak_window_above_every_zone_is_unreachable() -> None:
    found = problems(printed("Pb95Sn5"), reflow(340, 360, hot=335.0), CLEAN)
    assert found == [
        "variant.toml: step 2 (reflow): unreachable peak: peak window starts at 340 °C but the "
        "hottest zone is set to 335 °C (the wafer never gets hotter than the air)"
    ]


def test_validate_collects_every_problem() -> None:
    found = problems(printed("Pb95Sn5"), reflow(320, 360), printed("Sn42Bi58"),
                     reflow(160, 300))
    rules = [f.split(": ")[2] if ": step" in f else f.split(": ")[1] for f in found]
    assert rules == ["full melt", "clean after reflow", "rebump rule", "no Sn-Bi over lead",
                     "ends clean"]
    with pytest.raises(RecipeInvalid) as info:
        check(recipe(printed("Pb95Sn5"), reflow(320, 360), printed("Sn42Bi58"),
                     reflow(160, 300)))
    assert str(info.value).startswith("variant.toml: 5 problems\n  variant.toml: step 2")


def test_validate_file_reports_range_and_rule_problems_together(tmp_path: Path) -> None:
    text = shipped_recipe_paths()["rebump-hipb-snpb"].read_text(encoding="utf-8")
    text = text.replace("squeegee_kgf = 6.0", "squeegee_kgf = 11.0").replace(
        "peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]")
    path = tmp_path / "rebump-x.toml"
    path.write_text(text, encoding="utf-8")
    found = [str(p) for p in validate_file(path)]
    assert found == [
        "rebump-x.toml: step 1 (print): range: squeegee_kgf = 11.0: expected squeegee force "
        "0.5-10.0 kgf",
        "rebump-x.toml: step 5 (reflow): rebump rule: peak window reaches 300 °C while the "
        "Pb95Sn5 bump from step 2 begins to melt at 308 °C (assumed), within the 20 °C margin "
        "(keep the peak <= 288 °C)",
    ]
    path.write_text("name = [", encoding="utf-8")
    assert [p.rule for p in validate_file(path)] == ["not valid TOML"]

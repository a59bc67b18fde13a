"""The validator: every shipped recipe passes; broken variants are refused by the right
rule, with the numbers, and every problem is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequences.errors import RecipeInvalid
from sequences.recipes.recipe import find_recipe, parse_recipe, shipped_recipe_paths
from sequences.recipes.validate import (
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


def test_full_melt_the_window_starts_above_the_liquidus_and_reaches_the_margin() -> None:
    """process-data rule 1: the peak must exceed the liquidus (the window's minimum is the
    worst peak the judgment accepts); the usual 20 °C margin is one the window must reach."""
    found = problems(printed("Pb95Sn5"), reflow(312, 360), CLEAN)
    assert found == [
        "variant.toml: step 2 (reflow): full melt: peak window starts at 312 °C, but the "
        "Pb95Sn5 from step 1 is fully molten only above 312 °C (assumed): the window must "
        "start above it"
    ]
    found = problems(printed("Pb95Sn5"), reflow(315, 330), CLEAN)
    assert found == [
        "variant.toml: step 2 (reflow): full melt: peak window ends at 330 °C, but the "
        "Pb95Sn5 from step 1 is fully molten only at 312 °C (assumed); with the usual 20 °C "
        "margin the window must reach >= 332 °C"
    ]
    assert problems(printed("Pb95Sn5"), reflow(315, 330), CLEAN, full_melt_margin_c=5.0) == []
    assert problems(printed("Pb95Sn5"), reflow(320, 360), CLEAN) == []


@pytest.mark.parametrize(("alloy", "window"), [
    ("Sn63Pb37", (220, 235)), ("SAC305", (235, 245)), ("SnAg3.5", (240, 250)),
    ("Pb90Sn10", (330, 345)), ("Pb95Sn5", (340, 355)), ("Sn42Bi58", (160, 175)),
    ("In52Sn48", (140, 150)),
])
def test_the_specs_typical_peaks_pass_the_full_melt_rule(alloy: str, window: tuple[int, int]
                                                          ) -> None:
    """Every "typical reflow peak" of process-data.md's alloy table is a valid window."""
    assert problems(printed(alloy), reflow(*window), CLEAN) == []


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


def test_o2_limit_above_the_production_nitrogen_band_is_refused() -> None:
    """process-data.md, "Atmosphere": production N2 reflow runs at 100-500 ppm O2."""
    def with_o2(ppm: int) -> list[str]:
        return problems(printed("Pb95Sn5"),
                        reflow(340, 360).replace("o2_limit_ppm = 100", f"o2_limit_ppm = {ppm}"),
                        CLEAN)

    assert with_o2(500) == [] and with_o2(20) == []  # the band's top; wafer bump runs lower
    assert with_o2(800) == [
        "variant.toml: step 2 (reflow): atmosphere: o2_limit_ppm = 800 is above the 500 ppm "
        "top of production nitrogen reflow (100-500 ppm O2; wafer bump reflow runs lower)"]


def test_limits_are_inclusive_where_the_spec_says_at_most_or_a_margin_of() -> None:
    # ramp <= 3 °C/s, cooling <= 6 °C/s
    assert problems(printed("SAC305"),
                    reflow(240, 255, extra="max_ramp_c_s = 3.0\nmax_cool_c_s = 6.0"), CLEAN) == []
    # full melt: SAC305 liquidus 220 + 20 exactly; rebump: SAC305 solidus 217 - 20 exactly
    assert problems(printed("SAC305"), reflow(225, 240), CLEAN, printed("Sn42Bi58"),
                    reflow(160, 197), CLEAN) == []
    # In52Sn48 (liquidus 118) over SAC305 is a valid rebump
    assert problems(printed("SAC305"), reflow(240, 255), CLEAN, printed("In52Sn48"),
                    reflow(130, 150), CLEAN) == []


def test_stencil_release_area_and_aspect_ratio() -> None:
    """process-data.md "Stencil printing": area ratio >= 0.66, aspect ratio >= 1.5 (IPC-7525).
    Round or square: area ratio = D / 4t; a slot W x L: W L / (2 (W + L) t)."""
    def printing(geometry: str) -> list[str]:
        return problems(printed("SAC305").replace("max_insufficient = 5",
                                                  f"max_insufficient = 5\n{geometry}"),
                        reflow(240, 255), CLEAN)

    assert printing("aperture_um = 132\nstencil_thickness_um = 50") == []  # exactly 0.66
    assert printing("aperture_um = 100\nstencil_thickness_um = 50") == [
        "variant.toml: step 1 (print): stencil release: area ratio 0.50 (a 100 µm aperture in a "
        "50 µm stencil) is under 0.66: the paste stays in the aperture (IPC-7525; transfer "
        "falls steeply below 0.5)"]
    assert printing("aperture_um = 70\naperture_length_um = 2000\n"
                    "stencil_thickness_um = 50") == [  # area ratio 0.68, but a narrow slot
        "variant.toml: step 1 (print): stencil release: aspect ratio 1.40 (a 70 x 2000 µm "
        "aperture in a 50 µm stencil) is under 1.5 (IPC-7525)"]
    assert printing("aperture_um = 75\naperture_length_um = 2000\n"
                    "stencil_thickness_um = 50") == []  # exactly 1.5


def test_stencil_geometry_comes_whole() -> None:
    with pytest.raises(RecipeInvalid) as info:
        recipe(printed("SAC305").replace("max_insufficient = 5",
                                         "max_insufficient = 5\naperture_um = 132"),
               reflow(240, 255), CLEAN)
    assert [str(p) for p in info.value.problems] == [
        "variant.toml: step 1 (print): missing key: stencil: give aperture_um and "
        "stencil_thickness_um together (aperture_length_um only with them), or none of them"]


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
    found = problems(printed("Pb95Sn5"), reflow(312, 360), printed("Sn42Bi58"),
                     reflow(160, 300))
    rules = [f.split(": ")[2] if ": step" in f else f.split(": ")[1] for f in found]
    assert rules == ["full melt", "clean after reflow", "rebump rule", "no Sn-Bi over lead",
                     "ends clean"]
    with pytest.raises(RecipeInvalid) as info:
        check(recipe(printed("Pb95Sn5"), reflow(312, 360), printed("Sn42Bi58"),
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


# --- a ball mount into a polymer mask, and its strip (seed 004, flux-cleaner-fc2.md) ------------

STRIP = """
[[steps]]
kind = "strip"
mask = "{mask}"
strip_temp_c = {temp}
strip_time_s = {time}
rinse_time_s = 60
dry_time_s = 60
spray_pressure_bar = 3.0
max_mask_residue_pct = 0.5
max_ionic_ug_cm2 = 1.56
"""


def masked(alloy: str, mask: str = "dry-film") -> str:
    return placed(alloy).replace('kind = "place"', f'kind = "place"\nmask = "{mask}"')


def strip(mask: str = "dry-film", temp: float = 50.0, time: int = 600) -> str:
    return STRIP.format(mask=mask, temp=temp, time=time)


SAC_REFLOW = reflow(240, 255)


def test_the_strip_stands_in_for_the_clean_after_the_bonding_reflow() -> None:
    assert problems(masked("SAC305"), SAC_REFLOW, strip()) == []
    assert problems(masked("SAC305"), SAC_REFLOW, CLEAN, strip()) == []
    # ... and a rebump may follow it, as after a clean
    assert problems(masked("SAC305"), SAC_REFLOW, strip(), printed("Sn42Bi58"),
                    reflow(160, 190), CLEAN) == []


def test_a_masked_ball_mount_needs_its_strip() -> None:
    assert problems(masked("SAC305"), SAC_REFLOW, CLEAN) == [
        "variant.toml: strip the mask: the recipe ends with the dry-film mask from step 1 "
        "still on the wafer"]
    assert problems(masked("SAC305"), SAC_REFLOW, CLEAN, printed("Sn42Bi58"), reflow(160, 190),
                    CLEAN, strip()) == [
        "variant.toml: step 4 (print): strip the mask: print onto a wafer still carrying the "
        "dry-film mask from step 1: strip it after the reflow at step 2, before anything else "
        "is deposited"]


def test_the_bonding_reflow_stays_under_the_mask_limit() -> None:
    assert problems(masked("SAC305", "photoresist"), SAC_REFLOW, strip("photoresist")) == [
        "variant.toml: step 2 (reflow): mask limit: peak window reaches 255 °C with the "
        "photoresist mask from step 1 on the wafer; above 250 °C (assumed) it hardens and no "
        "longer strips (keep the peak <= 250 °C)"]
    assert problems(masked("SAC305", "photoresist"), reflow(240, 250),
                    strip("photoresist")) == []


def test_strip_order_mask_and_window() -> None:
    assert problems(masked("SAC305"), strip(), SAC_REFLOW, CLEAN) == [
        "variant.toml: step 2 (strip): strip before reflow: stripping the dry-film mask from "
        "step 1 before a reflow bonds its balls would wash them off"]
    assert problems(placed("SAC305"), SAC_REFLOW, strip()) == [
        "variant.toml: step 3 (strip): strip without mask: no ball mount into a mask before "
        "it: there is no mask to strip"]
    assert problems(masked("SAC305"), SAC_REFLOW, strip("photoresist", 40.0, 1200)) == [
        "variant.toml: step 3 (strip): strip the mask: strips photoresist, but the mask from "
        "step 1 is dry-film",
        "variant.toml: step 3 (strip): strip window: strip_temp_c = 40 outside the 45-80 °C "
        "(assumed) the dry-film mask is stripped in (residue left, or the bumps attacked)",
        "variant.toml: step 3 (strip): strip window: strip_time_s = 1200 outside the 300-900 s "
        "(assumed) the dry-film mask is stripped in (residue left, or the bumps attacked)",
    ]


def test_the_seed_004_recipe_is_refused_without_its_strip_or_too_hot() -> None:
    text = shipped_recipe_paths()["ballmount-mask-sac305"].read_text(encoding="utf-8")
    no_strip = text.split('[[steps]]\nkind = "strip"')[0]
    assert [str(p) for p in validate(parse_recipe(no_strip, source="m.toml"))] == [
        "m.toml: strip the mask: the recipe ends with the dry-film mask from step 1 still on "
        "the wafer",
        "m.toml: ends clean: the recipe ends after the reflow at step 2 without a clean (last "
        "step 2 is reflow)",
    ]
    too_hot = text.replace("peak_c = [240.0, 255.0]", "peak_c = [245.0, 270.0]")
    assert [str(p) for p in validate(parse_recipe(too_hot, source="m.toml"))] == [
        "m.toml: step 2 (reflow): mask limit: peak window reaches 270 °C with the dry-film mask "
        "from step 1 on the wafer; above 260 °C (assumed) it hardens and no longer strips "
        "(keep the peak <= 260 °C)"]


# --- balls on Cu posts (seed 001) -----------------------------------------------------------------


def on_posts(ball: int, post: int, post_pitch: int, pitch: int = 500) -> str:
    return placed("SnAg3.5").replace("ball_diameter_um = 250", f"ball_diameter_um = {ball}") \
        .replace("pitch_um = 400", f"pitch_um = {pitch}\npost_diameter_um = {post}\n"
                 f"post_pitch_um = {post_pitch}")


def test_posts_are_checked_against_the_ball() -> None:
    good = (reflow(241, 255), CLEAN)
    assert problems(on_posts(300, 250, 500), *good) == []
    assert problems(on_posts(300, 250, 450), *good) == [
        "variant.toml: step 1 (place): cu post: pitch_um = 500 but the posts sit at 450 µm: one "
        "ball on every post needs the same pitch"]
    assert problems(on_posts(180, 250, 500), *good) == [
        "variant.toml: step 1 (place): cu post: a 180 µm ball holds too little solder to cap a "
        "250 µm post with a hemisphere (needs >= 199 µm)"]
    assert problems(on_posts(520, 250, 600, pitch=600), *good) == [
        "variant.toml: step 1 (place): cu post: a 520 µm ball is over 2 times the 250 µm post "
        "(assumed limit 500 µm): the post top no longer holds it"]
    assert problems(on_posts(520, 250, 600, pitch=600), *good, max_ball_per_post=2.5) == []
    assert problems(on_posts(450, 500, 500), *good) == [
        "variant.toml: step 1 (place): cu post: post_diameter_um = 500 is not under the post "
        "pitch 500 µm (the posts would touch)"]

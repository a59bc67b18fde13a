"""Recipe files: parsing, the canonical hash, and clear messages for malformed files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from drivers.types import CleanMode, StripRecipe
from sequences.errors import RecipeError, RecipeInvalid
from sequences.recipes.recipe import (
    TOOL_NAME_MAX,
    PlaceStep,
    PrintStep,
    ReflowStep,
    StripStep,
    find_recipe,
    load_recipe,
    parse_recipe,
    shipped_recipe_paths,
)

SHIPPED = ["ballmount-mask-sac305", "ballmount-sac305", "ballmount-sac305-rebump-snbi",
           "corecap-pb90-snpb", "rebump-hipb-niau-snbi", "rebump-hipb-snpb", "rebump-sac305-snbi",
           "rebump-sncu-niau-snpb", "wlcsp-cupost-snag35"]


def hipb_text() -> str:
    return shipped_recipe_paths()["rebump-hipb-snpb"].read_text(encoding="utf-8")


def problems_of(text: str) -> list[str]:
    with pytest.raises(RecipeInvalid) as info:
        parse_recipe(text, source="bad.toml")
    return [str(p) for p in info.value.problems]


def test_every_recipe_named_in_the_brief_is_shipped() -> None:
    assert sorted(shipped_recipe_paths()) == SHIPPED


def test_rebump_recipe_reads_as_written() -> None:
    r = find_recipe("rebump-hipb-snpb")
    assert [s.kind for s in r.steps] == ["print", "reflow", "clean", "print", "reflow", "clean"]
    first, cap = r.steps[0], r.steps[3]
    assert isinstance(first, PrintStep) and isinstance(cap, PrintStep)
    assert (first.stencil_id, first.paste_alloy) == ("ST-300-100", "Pb95Sn5")
    assert (cap.stencil_id, cap.paste_alloy) == ("ST-300-080", "Sn63Pb37")
    high, low = r.steps[1], r.steps[4]
    assert isinstance(high, ReflowStep) and isinstance(low, ReflowStep)
    assert high.tal_threshold_c == 312.0 and low.tal_threshold_c == 183.0  # liquidus melted
    assert high.profile_id != low.profile_id
    assert high.max_ramp_c_s == 3.0 and high.max_cool_c_s == 6.0  # J-STD defaults
    profile = high.tool_profile()
    assert profile.zone_setpoints_c == high.zones_c and profile.tal_threshold_c == 312.0


def test_ball_mount_recipe_has_a_repairable_limit() -> None:
    place = find_recipe("ballmount-sac305").steps[0]
    assert isinstance(place, PlaceStep)
    assert place.max_defects_after_repair <= place.max_defects
    assert place.tool_recipe("x").ball_alloy == "SAC305"


def test_hash_is_stable_and_ignores_layout_but_not_meaning() -> None:
    text = hipb_text()
    a = parse_recipe(text)
    reformatted = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    reformatted = reformatted.replace("squeegee_kgf = 6.0", "squeegee_kgf = 6")
    assert parse_recipe(reformatted).hash == a.hash
    assert len(a.hash) == 64 and a.hash == parse_recipe(text).hash
    changed = parse_recipe(text.replace("squeegee_kgf = 6.0", "squeegee_kgf = 6.5"))
    assert changed.hash != a.hash


def test_explicit_profile_id_is_kept() -> None:
    text = hipb_text().replace('note = "high-lead reflow"',
                               'note = "high-lead reflow"\nprofile_id = 4242')
    assert parse_recipe(text).steps[1].profile_id == 4242  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[[steps]]", "[[steps]"), "bad.toml: not valid TOML"),
        (('paste_alloy = "Pb95Sn5"', 'paste_alloy = "Pb97Sn3"'),
         "bad.toml: step 1 (print): unknown alloy: paste_alloy: expected an alloy id from the "
         "alloy library (got 'Pb97Sn3'); known: Sn63Pb37"),
        (('kind = "clean"', 'kind = "etch"'),
         "bad.toml: step 3: unknown step kind: kind = 'etch'; expected one of print, place, "
         "reflow, clean"),
        (("squeegee_kgf = 6.0", "squeegee_kgf = 12.0"),
         "bad.toml: step 1 (print): range: squeegee_kgf = 12.0: expected squeegee force "
         "0.5-10.0 kgf"),
        (("squeegee_kgf = 6.0", 'squeegee_kgf = "firm"'),
         "bad.toml: step 1 (print): wrong type: squeegee_kgf: expected squeegee force "
         "0.5-10.0 kgf (got 'firm')"),
        (("passes = 1\n", "passes = 1\nsqueege_kgf = 5.0\n"),
         "bad.toml: step 1 (print): unknown key: 'squeege_kgf'"),
        (("conveyor_mm_min = 600", "conveyor_mm_min = 100"),
         "bad.toml: step 2 (reflow): range: conveyor_mm_min = 100: expected conveyor "
         "200-1500 mm/min"),
        (("wash_temp_c = 60.0", "wash_temp_c = 95.0"),
         "bad.toml: step 3 (clean): range: wash_temp_c = 95.0: expected wash 30-80 °C"),
        (("version = 1", "version = 0"),
         "bad.toml: version: expected a whole number 1-2147483647"),
        (("version = 1", "version = 2147483648"),  # no database INTEGER holds it
         "bad.toml: version: expected a whole number 1-2147483647"),
        (('name = "rebump-hipb-snpb"', 'colour = "red"\nname = "rebump-hipb-snpb"'),
         "bad.toml: unknown key: 'colour'"),
    ],
)
def test_malformed_recipes_are_clear_messages(change: tuple[str, str], expected: str) -> None:
    text = hipb_text()
    assert change[0] in text
    found = problems_of(text.replace(change[0], change[1], 1))
    assert any(p.startswith(expected) for p in found), found


def test_zone_list_needs_ten_values() -> None:
    text = hipb_text().replace("362.0, 362.0, 150.0, 50.0]", "362.0, 362.0]", 1)
    assert any("zones_c: expected 10 zone setpoints 0-400 °C (0 = off)" in p
               and "(8 values given)" in p for p in problems_of(text))


def test_every_malformation_is_reported_not_just_the_first() -> None:
    text = (hipb_text().replace("squeegee_kgf = 6.0", "squeegee_kgf = 12.0")
            .replace("passes = 1", "passes = 7", 1)
            .replace("wash_time_s = 120", "wash_time_s = 5", 1)
            .replace('paste_alloy = "Sn63Pb37"', 'paste_alloy = "Unobtainium"'))
    found = problems_of(text)
    assert len(found) == 4
    assert [p.split(":")[1].strip() for p in found] == [
        "step 1 (print)", "step 1 (print)", "step 3 (clean)", "step 4 (print)"]


def test_seed_004_recipe_places_into_a_dry_film_and_strips_it() -> None:
    r = find_recipe("ballmount-mask-sac305")
    assert [s.kind for s in r.steps] == ["place", "reflow", "strip"]
    place, strip = r.steps[0], r.steps[2]
    assert isinstance(place, PlaceStep) and isinstance(strip, StripStep)
    assert place.mask == strip.mask == "dry-film" and place.post_diameter_um is None
    assert strip.mode is CleanMode.RESIST_STRIP  # what the FC-2 is loaded with
    assert strip.tool_recipe() == StripRecipe(strip_temp_c=50.0, strip_time_s=600,
                                              rinse_time_s=60, dry_time_s=60,
                                              spray_pressure_bar=3.0)
    assert (strip.max_mask_residue_pct, strip.max_ionic_ug_cm2) == (0.5, 1.56)


def test_seed_001_recipe_puts_its_balls_on_cu_posts() -> None:
    r = find_recipe("wlcsp-cupost-snag35")
    place = r.steps[0]
    assert isinstance(place, PlaceStep) and place.mask is None
    assert (place.ball_alloy, place.ball_diameter_um) == ("SnAg3.5", 300)
    assert (place.post_diameter_um, place.post_pitch_um) == (250, 500) == (250, place.pitch_um)


def test_optional_place_keys_left_out_keep_the_hash() -> None:
    text = Path(shipped_recipe_paths()["ballmount-sac305"]).read_text(encoding="utf-8")
    plain = parse_recipe(text)
    assert "mask" not in plain.canonical_json() and "post_" not in plain.canonical_json()
    masked = parse_recipe(text.replace('kind = "place"', 'kind = "place"\nmask = "dry-film"'))
    assert '"mask":"dry-film"' in masked.canonical_json() and masked.hash != plain.hash


def test_strip_and_mask_keys_are_checked() -> None:
    text = shipped_recipe_paths()["ballmount-mask-sac305"].read_text(encoding="utf-8")
    assert problems_of(text.replace('mask = "dry-film"\nstrip_temp_c', "strip_temp_c")) == [
        "bad.toml: step 3 (strip): missing key: mask: expected the mask it strips: a mask id "
        "from the library"]
    assert problems_of(text.replace('mask = "dry-film"', 'mask = "wax"', 1)) == [
        "bad.toml: step 1 (place): unknown mask: mask: expected the mask the balls go into: a "
        "mask id from the library (got 'wax'); known: dry-film, photoresist"]
    assert problems_of(text.replace("strip_time_s = 600", "strip_time_s = 3600")) == [
        "bad.toml: step 3 (strip): range: strip_time_s = 3600: expected strip 60-1800 s"]
    posts = text.replace("pitch_um = 400", "pitch_um = 400\npost_pitch_um = 400")
    assert problems_of(posts) == [
        "bad.toml: step 1 (place): missing key: Cu posts: give both post_diameter_um and "
        "post_pitch_um (or neither, for balls on bare pads)"]


def test_missing_key_and_empty_recipe() -> None:
    found = problems_of(hipb_text().replace("spray_pressure_bar = 3.0", "", 1))
    assert found == ["bad.toml: step 3 (clean): missing key: spray_pressure_bar: expected spray "
                     "0.5-6.0 bar"]
    assert problems_of('name = "x"\nversion = 1\n') == [
        "bad.toml: steps: expected at least one [[steps]] table"]


def test_ionic_residue_limit_is_a_parameter_defaulting_to_1_56() -> None:
    """process-data.md: 1.56 µg NaCl-eq/cm² (J-STD-001 legacy), made a recipe parameter."""
    text = hipb_text()
    left_out = parse_recipe(text.replace("max_ionic_ug_cm2 = 1.56", "", 1), source="x.toml")
    clean = left_out.steps[2]
    assert clean.kind == "clean" and clean.max_ionic_ug_cm2 == 1.56  # type: ignore[union-attr]
    # the same recipe as writing it out, so the same hash
    assert left_out.hash == parse_recipe(text, source="x.toml").hash
    own = parse_recipe(text.replace("max_ionic_ug_cm2 = 1.56", "max_ionic_ug_cm2 = 0.8", 1))
    assert own.steps[2].max_ionic_ug_cm2 == 0.8  # type: ignore[union-attr]
    strip = Path(shipped_recipe_paths()["ballmount-mask-sac305"]).read_text(encoding="utf-8")
    stripped = parse_recipe(strip.replace("max_ionic_ug_cm2 = 1.56", "", 1)).steps[2]
    assert isinstance(stripped, StripStep) and stripped.max_ionic_ug_cm2 == 1.56


def test_place_step_geometry_is_checked() -> None:
    text = Path(shipped_recipe_paths()["ballmount-sac305"]).read_text(encoding="utf-8")
    found = problems_of(text.replace("pitch_um = 400", "pitch_um = 200"))
    assert found == ["bad.toml: step 1 (place): range: pitch_um = 200 must exceed "
                     "ball_diameter_um = 250 (balls would touch)"]


def test_unknown_recipe_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError,
                       match="no recipe named 'nope' \\(shipped: ballmount-mask-sac305"):
        find_recipe("nope")
    with pytest.raises(RecipeError, match="missing.toml: cannot read recipe"):
        load_recipe(tmp_path / "missing.toml")
    binary = tmp_path / "blob.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RecipeError, match="blob.toml: not a text file"):
        load_recipe(binary)


# --- bumpline recipe ... ------------------------------------------------------------------------


def test_cli_validate_lists_every_problem_and_fails(tmp_path: Path, capsys) -> None:
    from controller.cli import main

    bad = tmp_path / "rebump-x.toml"
    bad.write_text(hipb_text().replace("squeegee_kgf = 6.0", "squeegee_kgf = 12.0")
                   .replace("peak_c = [215.0, 240.0]", "peak_c = [215.0, 300.0]"),
                   encoding="utf-8")
    assert main(["recipe", "validate", "rebump-hipb-snpb", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "rebump-hipb-snpb.toml: ok" in out
    assert f"{bad}: 2 problems" in out
    assert "rebump-x.toml: step 1 (print): range: squeegee_kgf = 12.0" in out
    assert "rebump-x.toml: step 5 (reflow): rebump rule: peak window reaches 300 °C" in out
    assert "1 of 2 recipe file(s) refused" in err
    assert main(["recipe", "validate", *SHIPPED]) == 0


def test_cli_list_show_and_diagram(tmp_path: Path, capsys, monkeypatch) -> None:
    from controller.cli import main

    assert main(["recipe", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("rebump-hipb-snpb", "corecap-pb90-snpb"))
    assert main(["recipe", "show", "corecap-pb90-snpb"]) == 0
    out = capsys.readouterr().out
    assert "Pb90Sn10: Pb 90% Sn 10%; solidus 268 °C" in out and "TAL above 302 °C" in out
    monkeypatch.setenv("COLUMNS", "400")  # one line per table row
    assert main(["recipe", "show", "ballmount-mask-sac305"]) == 0
    out = capsys.readouterr().out
    assert "into dry-film mask" in out and "strip dry-film 50 °C 600 s" in out
    assert "mask left <= 0.5 %, ionic <= 1.56 µg/cm²" in out
    assert "dry-film mask: reflow peak <= 260 °C (assumed)" in out
    assert main(["recipe", "show", "wlcsp-cupost-snag35"]) == 0
    assert "on 250 µm Cu posts at 500 µm" in capsys.readouterr().out
    out_file = tmp_path / "machine.mmd"
    assert main(["recipe", "diagram", "ballmount-sac305", "--out", str(out_file)]) == 0
    assert "awaiting_disposition --> step1_waiting: retry" in out_file.read_text("utf-8")
    assert main(["recipe", "show", "no-such-recipe"]) == 1
    assert "no recipe named 'no-such-recipe'" in capsys.readouterr().err


def test_tool_recipe_names_fit_16_characters_one_per_recipe_and_step() -> None:
    # paste-printer.md and ball-placer.md give RCP's name no length; every id the specs
    # size is 1-16 characters, so a tool may cap it there.
    names = {}
    for name in SHIPPED:
        recipe = find_recipe(name)
        for number in range(1, len(recipe.steps) + 1):
            names[(name, number)] = recipe.tool_recipe_name(number)
    assert all(1 <= len(n) <= TOOL_NAME_MAX for n in names.values()), names
    assert len(set(names.values())) == len(names)  # one per (recipe, step)
    # the same every run (a hash of the name, not Python's salted hash())
    assert names[("ballmount-sac305-rebump-snbi", 3)] == "ballmoun-8aed4.3"
    assert names[("rebump-hipb-snpb", 1)] == "rebump-h-0f6b7.1"


def test_recipe_show_names_the_stencil_geometry_when_given() -> None:
    from controller.cli.sequences import describe_step

    step = next(s for s in find_recipe("rebump-hipb-snpb").steps if s.kind == "print")
    assert "apertures" not in describe_step(step)[0]  # none given: nothing to show
    round_ = dataclasses.replace(step, aperture_um=132, stencil_thickness_um=50)
    assert "ST-300-100 (132 µm apertures, 50 µm)" in describe_step(round_)[0]
    slot = dataclasses.replace(round_, aperture_um=75, aperture_length_um=2000)
    assert "(75 x 2000 µm apertures, 50 µm)" in describe_step(slot)[0]


def test_a_recipe_nested_hundreds_deep_is_a_problem_not_a_traceback() -> None:
    from sequences.recipes.recipe import NESTED_TOO_DEEP, parse_recipe_problems

    recipe, problems = parse_recipe_problems("a=" + "[" * 600 + "]" * 600, source="deep.toml")
    assert recipe is None
    assert [(p.rule, p.message) for p in problems] == [("not valid TOML", NESTED_TOO_DEEP)]

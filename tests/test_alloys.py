"""The alloy library: figures as process-data.md gives them, and clear refusals."""

from __future__ import annotations

import pytest

from sequences.alloys import default_alloys, parse_alloys
from sequences.errors import RecipeError


def test_library_holds_every_alloy_of_the_process_data() -> None:
    lib = default_alloys()
    assert set(lib.ids()) == {
        "Sn63Pb37", "SAC305", "SnAg3.5", "Pb90Sn10", "Pb95Sn5", "Sn42Bi58", "In52Sn48",
        "SnCu0.7"}  # SnCu0.7: the barrier flow's alloy (barrier-plater.md)


@pytest.mark.parametrize(
    ("alloy", "solidus", "liquidus"),
    [("Sn63Pb37", 183, 183), ("SAC305", 217, 220), ("SnAg3.5", 221, 221),
     ("Pb90Sn10", 268, 302), ("Pb95Sn5", 308, 312), ("Sn42Bi58", 138, 138),
     ("In52Sn48", 118, 118), ("SnCu0.7", 227, 227)],
)
def test_melting_ranges(alloy: str, solidus: float, liquidus: float) -> None:
    a = default_alloys()[alloy]
    assert (a.solidus_c, a.liquidus_c) == (solidus, liquidus)
    assert a.eutectic == (solidus == liquidus)


def test_lead_and_bismuth_come_from_the_composition() -> None:
    lib = default_alloys()
    assert [a.id for a in lib if a.contains_lead] == ["Sn63Pb37", "Pb90Sn10", "Pb95Sn5"]
    assert [a.id for a in lib if a.contains_bismuth] == ["Sn42Bi58"]
    assert lib["SAC305"].composition_text() == "Sn 96.5% Ag 3% Cu 0.5%"


def test_unconfirmed_figures_are_marked_assumed() -> None:
    pb95 = default_alloys()["Pb95Sn5"]
    assert {"solidus_c", "liquidus_c"} <= pb95.assumed
    assert pb95.figure("solidus_c") == "308 °C (assumed)"
    assert default_alloys()["Sn63Pb37"].figure("liquidus_c") == "183 °C"


def test_unknown_alloy_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match=r"unknown alloy 'SnZn9' \(known: Sn63Pb37, SAC305"):
        default_alloys()["SnZn9"]


GOOD = """
[alloys.X]
composition = { Sn = 60.0, Pb = 40.0 }
solidus_c = 183.0
liquidus_c = 190.0
peak_c = [220.0, 235.0]
tal_s = [60.0, 90.0]
source = "test"
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("solidus_c = 183.0", "solidus_c = 200.0"), r"alloys\.X\.solidus_c: expected at most"),
        (("Pb = 40.0", "Pb = 30.0"), r"composition: expected weights adding up to 100"),
        (("tal_s = [60.0, 90.0]", "tal_s = [90.0]"), r"tal_s: expected \[low, high\]"),
        (('source = "test"', 'source = "test"\ncolour = "grey"'), r"X\.colour: unknown key"),
        (("liquidus_c = 190.0", 'liquidus_c = "hot"'), r"liquidus_c: expected a temperature"),
        (("[alloys.X]", "[alloys.X"), r"not valid TOML"),
    ],
)
def test_bad_library_is_refused_with_file_and_key(change: tuple[str, str], message: str) -> None:
    assert parse_alloys(GOOD, source="lib.toml")["X"].liquidus_c == 190.0
    with pytest.raises(RecipeError, match=message) as info:
        parse_alloys(GOOD.replace(*change), source="lib.toml")
    assert str(info.value).startswith("lib.toml: ")


def test_masks_carry_the_fc2_page_figures_as_assumed() -> None:
    masks = default_alloys().masks
    assert {m: masks[m].max_reflow_peak_c for m in masks} == {"dry-film": 260.0,
                                                              "photoresist": 250.0}
    dry = masks["dry-film"]
    assert (dry.strip_temp_c, dry.strip_time_s) == ((45.0, 80.0), (300.0, 900.0))
    assert dry.figure("max_reflow_peak_c") == "260 °C (assumed)"
    assert dry.figure("strip_time_s") == "300-900 s (assumed)"


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ('max_reflow_peak_c = "hot"\nstrip_temp_c = [45, 80]\nstrip_time_s = [300, 900]\n'
         'source = "x"', "masks.m.max_reflow_peak_c: expected a temperature"),
        ('max_reflow_peak_c = 260\nstrip_temp_c = [80, 45]\nstrip_time_s = [300, 900]\n'
         'source = "x"', "masks.m.strip_temp_c: expected \\[low, high\\]"),
        ('max_reflow_peak_c = 260\nstrip_temp_c = [45, 80]\nstrip_time_s = [300, 900]\n'
         'source = "x"\ncolour = "blue"', "masks.m.colour: unknown key"),
    ],
)
def test_bad_mask_is_refused_with_file_and_key(mask: str, message: str) -> None:
    text = ('[alloys.A]\ncomposition = { Sn = 100.0 }\nsolidus_c = 232.0\nliquidus_c = 232.0\n'
            'peak_c = [250.0, 260.0]\ntal_s = [30.0, 60.0]\nsource = "x"\n\n[masks.m]\n' + mask)
    with pytest.raises(RecipeError, match=f"lib.toml: {message}"):
        parse_alloys(text, source="lib.toml")

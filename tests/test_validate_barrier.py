"""The barrier step: its recipe format, its place in the flow, its thicknesses, and the
two shipped barrier recipes, valid with the barrier and refused without it."""

from __future__ import annotations

import pytest

from drivers.types import BarrierRecipe
from sequences.errors import RecipeInvalid
from sequences.recipe import BarrierStep, parse_recipe, shipped_recipe_paths
from sequences.validate import validate

SNCU = "rebump-sncu-niau-snpb"
HIPB = "rebump-hipb-niau-snbi"


def text_of(name: str) -> str:
    return shipped_recipe_paths()[name].read_text(encoding="utf-8")


def blocks(text: str) -> tuple[str, list[str]]:
    head, *steps = text.split("[[steps]]")
    return head, steps


def barrier_block(name: str) -> str:
    return next(s for s in blocks(text_of(name))[1] if 'kind = "barrier"' in s)


def rebuilt(name: str, order: list[int], edit: tuple[str, str] | None = None) -> str:
    """The recipe with its steps (0-based) in this order, the barrier's text edited."""
    head, steps = blocks(text_of(name))
    text = head + "".join("[[steps]]" + steps[i] for i in order)
    return text.replace(*edit) if edit else text


def problems(text: str) -> list[str]:
    return [str(p) for p in validate(parse_recipe(text, source="variant.toml"))]


@pytest.mark.parametrize("name", [SNCU, HIPB])
def test_the_shipped_barrier_recipes_are_valid(name: str) -> None:
    assert problems(text_of(name)) == []


def test_the_barrier_step_reads_as_written() -> None:
    step = parse_recipe(text_of(SNCU)).steps[3]
    assert isinstance(step, BarrierStep)
    assert (step.ni_measured_um, step.au_measured_um, step.batch_size) == (
        (2.7, 3.3), (0.06, 0.10), 25)
    assert step.tool_recipe() == BarrierRecipe(ni_um=3.0, au_um=0.08, ni_temp_c=85.0,
                                               au_temp_c=80.0)
    assert parse_recipe(text_of(HIPB)).steps[3].batch_size is None  # optional


def test_without_its_barrier_the_tin_lead_recipe_is_refused() -> None:
    assert problems(rebuilt(SNCU, [0, 1, 2, 4, 5, 6])) == [
        "variant.toml: step 5 (reflow): no lead over lead-free tin: reflowing lead-bearing "
        "Sn63Pb37 onto the lead-free SnCu0.7 bump from step 2: lead dissolving into the tin "
        "forms Sn-Pb eutectic, which melts at 183 °C where they meet, so the first bump "
        "remelts there (assumed rule, seed 003 claim 11; an intact Ni/Au barrier of >= 2 µm "
        "nickel between them would allow it: an assumption of barrier-plater.md, not a "
        "standard)"]


def test_without_its_barrier_the_bismuth_on_lead_recipe_is_refused() -> None:
    assert problems(rebuilt(HIPB, [0, 1, 2, 4, 5, 6])) == [
        "variant.toml: step 5 (reflow): no Sn-Bi over lead: reflowing bismuth-bearing Sn42Bi58 "
        "onto the lead-bearing Pb95Sn5 bump from step 2: Sn-Bi-Pb forms a ternary eutectic "
        "near 95 °C (an intact Ni/Au barrier of >= 2 µm nickel between them would allow it: "
        "an assumption of barrier-plater.md, not a standard)"]


def test_a_thin_nickel_barrier_is_refused_and_relaxes_nothing() -> None:
    found = problems(rebuilt(HIPB, list(range(7)), ("ni_measured_um = [2.7, 3.3]",
                                                    "ni_measured_um = [1.5, 3.3]")))
    assert len(found) == 2
    assert found[0] == (
        "variant.toml: step 4 (barrier): barrier nickel: lowest accepted ni_measured_um = 1.5 "
        "µm: below 2 µm tin consumes the nickel through repeated reflows (assumed minimum, "
        "barrier-plater.md)")
    assert "step 6 (reflow): no Sn-Bi over lead" in found[1]


def test_gold_above_0_15_um_is_refused() -> None:
    found = problems(rebuilt(SNCU, list(range(7)), ("au_measured_um = [0.06, 0.10]",
                                                    "au_measured_um = [0.06, 0.2]")))
    assert found == [
        "variant.toml: step 4 (barrier): barrier gold: au_measured_um accepts up to 0.2 µm: "
        "keep immersion gold <= 0.15 µm (AuSn4 embrittlement in the second bump)"]


def test_the_barrier_goes_after_the_first_reflow_and_clean_and_before_the_next_deposit(
) -> None:
    # before the reflow: the preclean would strip the paste; nothing to plate on before it
    found = problems(rebuilt(SNCU, [0, 3, 1, 2, 4, 5, 6]))
    assert found[0].startswith(
        "variant.toml: step 2 (barrier): barrier after reflow: the barrier plates reflowed "
        "bumps, but the SnCu0.7 from step 1 is not reflowed")
    found = problems(rebuilt(SNCU, [3, 0, 1, 2, 4, 5, 6]))
    assert "step 1 (barrier): barrier after reflow: no bump has been deposited" in found[0]
    # between the reflow and its clean
    found = problems(rebuilt(SNCU, [0, 1, 3, 2, 4, 5, 6]))
    assert found[0] == (
        "variant.toml: step 3 (barrier): clean before barrier: the wafer is not cleaned since "
        "the reflow at step 2 (flux residue under the nickel)")
    # last: nothing covers it
    found = problems(rebuilt(SNCU, [0, 1, 2, 3]))
    assert found == [
        "variant.toml: step 4 (barrier): barrier before deposit: nothing is deposited on the "
        "barrier before the recipe ends: the second bump must cover it (seed 003, claim 10)"]


def test_the_rebump_rule_holds_across_a_barrier() -> None:
    found = problems(rebuilt(SNCU, list(range(7)), ("peak_c = [203.0, 207.0]",
                                                    "peak_c = [203.0, 215.0]")))
    assert len(found) == 1 and "step 6 (reflow): rebump rule: peak window reaches 215 °C" \
        in found[0] and "SnCu0.7 bump from step 2" in found[0]


@pytest.mark.parametrize(("edit", "message"), [
    (("ni_um = 3.0", "ni_um = 9.0"), "ni_um = 9.0: expected electroless nickel 1.0-8.0 µm"),
    (("au_temp_c = 80.0", "au_temp_c = 90.0"), "au_temp_c = 90.0: expected gold bath 75-88 °C"),
    (("batch_size = 25", "batch_size = 30"), "batch_size = 30: expected wafers per plating "
     "batch 1-25 (optional)"),
    (("ni_measured_um = [2.7, 3.3]", "ni_measured_um = [3.5, 4.0]"),
     "ni_measured_um = [3.5, 4] does not hold ni_um = 3 (every batch would be refused)"),
    (("ni_um = 3.0", 'ni_um = "thick"'), "ni_um: expected electroless nickel 1.0-8.0 µm "
     "(got 'thick')"),
])
def test_malformed_barrier_steps_are_one_clear_line_each(edit: tuple[str, str],
                                                         message: str) -> None:
    with pytest.raises(RecipeInvalid) as info:
        parse_recipe(rebuilt(SNCU, list(range(7)), edit), source="variant.toml")
    assert [p.message for p in info.value.problems][0] == message


def test_the_cli_shows_and_validates_barrier_recipes(capsys, monkeypatch) -> None:
    from controller.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # one table row a line
    assert main(["recipe", "show", SNCU]) == 0
    out = capsys.readouterr().out
    assert "barrier" in out and "Ni 3 µm at 85 °C, Au 0.08 µm at 80 °C" in out
    assert "SnCu0.7: Sn 99.3% Cu 0.7%; solidus 227 °C" in out
    assert main(["recipe", "validate", SNCU, HIPB]) == 0
    assert main(["recipe", "list"]) == 0
    assert "clean barrier" in capsys.readouterr().out

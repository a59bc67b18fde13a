"""The wafer's own history against the next step (sequences/recipes/history.py): pure."""

from __future__ import annotations

from dataclasses import replace

from sequences.recipes.alloys import default_alloys
from sequences.recipes.history import HistoryEntry, WaferHistory, history_interlocks
from sequences.recipes.recipe import find_recipe
from sequences.recipes.validate import DEFAULT_OPTIONS


def test_an_assumed_solidus_is_marked_assumed_in_the_history_reasons() -> None:
    """process-data.md marks Pb95Sn5's 308 °C solidus unverified: where a reason uses it,
    it says "(assumed)", as the validator's messages do."""
    recipe = find_recipe("rebump-hipb-snpb")  # print Pb95Sn5, reflow, clean, print, reflow
    history = WaferHistory([
        HistoryEntry(1, "print", "Pb95Sn5"), HistoryEntry(2, "reflow", peak_c=349.0),
        HistoryEntry(3, "clean"), HistoryEntry(4, "print", "Sn63Pb37"),
    ])
    hot = replace(recipe.step(5), peak_c=(215.0, 300.0))  # type: ignore[type-var]
    assert history_interlocks(5, hot, history, default_alloys(), DEFAULT_OPTIONS) == [
        "peak window reaches 300 °C while the Pb95Sn5 bump from step 2 begins to melt at "
        "308 °C (assumed)"]
    # a later reflow measured at the first bump's solidus remelted it
    history.record(HistoryEntry(5, "reflow", peak_c=310.0))
    history.record(HistoryEntry(6, "clean"))
    history.record(HistoryEntry(7, "print", "Sn63Pb37"))
    reasons = history_interlocks(8, recipe.step(5), history, default_alloys(), DEFAULT_OPTIONS)
    assert "the reflow at step 5 reached 310 °C, remelting the Pb95Sn5 bump from step 2 " \
        "(solidus 308 °C (assumed))" in reasons

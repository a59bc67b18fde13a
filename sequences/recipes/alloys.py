"""The solder alloy library: melting range, composition and where each figure came from;
and the polymer masks balls can be placed into (the hottest reflow each survives and
its strip window).

Loaded from ``alloys.toml`` next to this module (or any file with the same
layout). Lead and bismuth content are derived from the composition, so the
"no Sn-Bi over lead" rule cannot disagree with the alloy's own definition.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeGuard

from sequences.errors import RecipeError

LIBRARY_PATH = Path(__file__).with_name("alloys.toml")

_FIGURES = ("solidus_c", "liquidus_c", "peak_c", "tal_s")
_KEYS = {"composition", "solidus_c", "liquidus_c", "peak_c", "tal_s", "source", "assumed"}


@dataclass(frozen=True)
class Alloy:
    id: str
    composition: tuple[tuple[str, float], ...]  # (element, weight %), as listed
    solidus_c: float  # starts to melt
    liquidus_c: float  # fully molten
    peak_c: tuple[float, float]  # typical reflow peak
    tal_s: tuple[float, float]  # typical time above liquidus
    source: str
    assumed: frozenset[str]  # which of the figures no source confirmed

    @property
    def contains_lead(self) -> bool:
        return any(element == "Pb" for element, _ in self.composition)

    @property
    def contains_bismuth(self) -> bool:
        return any(element == "Bi" for element, _ in self.composition)

    @property
    def eutectic(self) -> bool:
        return self.solidus_c == self.liquidus_c

    def figure(self, name: str) -> str:
        """A figure for messages, flagged when it is an assumption."""
        value = getattr(self, name)
        text = f"{value:g} °C" if isinstance(value, float) else f"{value[0]:g}-{value[1]:g}"
        return text + (" (assumed)" if name in self.assumed else "")

    def composition_text(self) -> str:
        return " ".join(f"{element} {pct:g}%" for element, pct in self.composition)


@dataclass(frozen=True)
class Mask:
    """A polymer mask (dry film, photoresist) that holds balls in its openings until the
    reflow, then is stripped."""

    id: str
    max_reflow_peak_c: float  # a hotter reflow hardens it so it no longer strips
    strip_temp_c: tuple[float, float]  # the stripper bath it is rated for
    strip_time_s: tuple[float, float]
    source: str
    assumed: frozenset[str]

    def figure(self, name: str) -> str:
        value = getattr(self, name)
        unit = " s" if name.endswith("_s") else " °C"
        text = f"{value:g}" if isinstance(value, float) else f"{value[0]:g}-{value[1]:g}"
        return text + unit + (" (assumed)" if name in self.assumed else "")


class AlloyLibrary:
    """Alloys by id; unknown ids get an error listing the known ones. ``masks`` by id."""

    def __init__(self, alloys: dict[str, Alloy], source: str,
                 masks: dict[str, Mask] | None = None) -> None:
        self._alloys = dict(alloys)
        self.source = source
        self.masks: dict[str, Mask] = dict(masks or {})

    def __contains__(self, alloy_id: object) -> bool:
        return alloy_id in self._alloys

    def __getitem__(self, alloy_id: str) -> Alloy:
        try:
            return self._alloys[alloy_id]
        except KeyError:
            raise RecipeError(
                f"unknown alloy '{alloy_id}' (known: {', '.join(self.ids())})"
            ) from None

    def __iter__(self):
        return iter(self._alloys.values())

    def ids(self) -> list[str]:
        return list(self._alloys)


def parse_alloys(text: str, *, source: str = "<memory>") -> AlloyLibrary:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{source}: not valid TOML: nested too deeply") from None
    table = data.get("alloys")
    if not isinstance(table, dict) or not table:
        raise RecipeError(f"{source}: expected [alloys.ID] tables")
    masks = data.get("masks", {})
    if not isinstance(masks, dict):
        raise RecipeError(f"{source}: masks: expected [masks.ID] tables")
    return AlloyLibrary({k: _alloy(k, v, source) for k, v in table.items()}, source,
                        {k: _mask(k, v, source) for k, v in masks.items()})


def load_alloys(path: str | Path = LIBRARY_PATH) -> AlloyLibrary:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read alloy library: {exc.strerror}") from None
    return parse_alloys(text, source=str(path))


@cache
def default_alloys() -> AlloyLibrary:
    """The library shipped with bumpline (read once)."""
    return load_alloys(LIBRARY_PATH)


def _alloy(alloy_id: str, t: Any, source: str) -> Alloy:
    where = f"{source}: alloys.{alloy_id}"

    def fail(key: str, expected: str) -> RecipeError:
        got = f"got {t[key]!r}" if key in t else "missing"
        return RecipeError(f"{where}.{key}: expected {expected} ({got})")

    if not isinstance(t, dict):
        raise RecipeError(f"{where}: expected a table")
    for key in t:
        if key not in _KEYS:
            raise RecipeError(f"{where}.{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    comp = t.get("composition")
    if not isinstance(comp, dict) or not comp or not all(
        _is_number(v) and v > 0 for v in comp.values()
    ):
        raise fail("composition", "a table of element = weight %")
    if abs(sum(comp.values()) - 100.0) > 0.01:
        raise fail("composition", "weights adding up to 100 %")
    temps = {}
    for key in ("solidus_c", "liquidus_c"):
        if not _is_number(t.get(key)) or not 0 < t[key] < 1000:
            raise fail(key, "a temperature in °C")
        temps[key] = float(t[key])
    if temps["solidus_c"] > temps["liquidus_c"]:
        raise fail("solidus_c", f"at most the liquidus {temps['liquidus_c']:g} °C")
    windows = {}
    for key in ("peak_c", "tal_s"):
        value = t.get(key)
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
                and value[0] <= value[1]):
            raise fail(key, "[low, high]")
        windows[key] = (float(value[0]), float(value[1]))
    if not isinstance(t.get("source"), str) or not t["source"].strip():
        raise fail("source", "where the figures come from")
    assumed = t.get("assumed", [])
    if not isinstance(assumed, list) or not all(a in _FIGURES for a in assumed):
        raise fail("assumed", f"a list of figure names ({', '.join(_FIGURES)})")
    return Alloy(
        id=alloy_id,
        composition=tuple((str(e), float(p)) for e, p in comp.items()),
        solidus_c=temps["solidus_c"],
        liquidus_c=temps["liquidus_c"],
        peak_c=windows["peak_c"],
        tal_s=windows["tal_s"],
        source=t["source"],
        assumed=frozenset(assumed),
    )


_MASK_FIGURES = ("max_reflow_peak_c", "strip_temp_c", "strip_time_s")


def _mask(mask_id: str, t: Any, source: str) -> Mask:
    where = f"{source}: masks.{mask_id}"

    def fail(key: str, expected: str) -> RecipeError:
        got = f"got {t[key]!r}" if key in t else "missing"
        return RecipeError(f"{where}.{key}: expected {expected} ({got})")

    if not isinstance(t, dict):
        raise RecipeError(f"{where}: expected a table")
    known = {*_MASK_FIGURES, "source", "assumed"}
    for key in t:
        if key not in known:
            raise RecipeError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
    peak = t.get("max_reflow_peak_c")
    if not _is_number(peak) or not 0 < peak < 1000:
        raise fail("max_reflow_peak_c", "a temperature in °C")
    windows = {}
    for key in ("strip_temp_c", "strip_time_s"):
        value = t.get(key)
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
                and 0 <= value[0] <= value[1]):
            raise fail(key, "[low, high]")
        windows[key] = (float(value[0]), float(value[1]))
    if not isinstance(t.get("source"), str) or not t["source"].strip():
        raise fail("source", "where the figures come from")
    assumed = t.get("assumed", [])
    if not isinstance(assumed, list) or not all(a in _MASK_FIGURES for a in assumed):
        raise fail("assumed", f"a list of figure names ({', '.join(_MASK_FIGURES)})")
    return Mask(id=mask_id, max_reflow_peak_c=float(peak), strip_temp_c=windows["strip_temp_c"],
                strip_time_s=windows["strip_time_s"], source=t["source"],
                assumed=frozenset(assumed))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

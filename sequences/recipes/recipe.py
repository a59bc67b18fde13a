"""Recipes: the ordered steps one wafer goes through, parsed from TOML.

A recipe file::

    name = "rebump-hipb-snpb"
    version = 1
    description = "..."

    [[steps]]
    kind = "print"          # print | place | reflow | clean | strip | barrier
    ...

Parsing collects every problem it can (unknown keys, wrong types, values
outside the tools' ranges, unknown alloys) before giving up, so one run of
``bumpline recipe validate`` shows them all. The metallurgical rules that span
several steps live in ``sequences.recipes.validate``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from drivers.types import (
    PLATER_BATCH_MAX,
    ZONES,
    BarrierRecipe,
    CleanMode,
    CleanRecipe,
    PlacementRecipe,
    PrintRecipe,
    ReflowProfile,
    StripRecipe,
)
from sequences.errors import Problem, RecipeError, RecipeInvalid
from sequences.recipes.alloys import AlloyLibrary, default_alloys

RECIPES_DIR = Path(__file__).with_name("shipped")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
# HostLink fields may not hold these (framing characters).
_HOSTLINK_FORBIDDEN = set("$*,")
# RCP names: the specs give no length, and every id they size is 1-16 characters.
TOOL_NAME_MAX = 16

Window = tuple[float, float]


@dataclass(frozen=True)
class PrintStep:
    kind: ClassVar[str] = "print"
    stencil_id: str
    paste_alloy: str
    squeegee_kgf: float
    speed_mm_s: float
    separation_mm_s: float
    passes: int
    wipe_every: int
    # SPI acceptance
    vol_mean_pct: Window
    vol_min_pct_min: float
    max_bridges: int
    max_insufficient: int
    note: str = ""
    # Stencil geometry, when given, is checked for paste release (IPC-7525 ratios).
    aperture_um: int | None = None
    aperture_length_um: int | None = None  # None: round or square (= aperture_um)
    stencil_thickness_um: int | None = None

    @property
    def alloy(self) -> str:
        return self.paste_alloy

    def tool_recipe(self, name: str) -> PrintRecipe:
        return PrintRecipe(
            name=name, squeegee_kgf=self.squeegee_kgf, speed_mm_s=self.speed_mm_s,
            separation_mm_s=self.separation_mm_s, stencil_id=self.stencil_id,
            passes=self.passes, wipe_every=self.wipe_every,
        )


@dataclass(frozen=True)
class PlaceStep:
    kind: ClassVar[str] = "place"
    ball_alloy: str
    ball_diameter_um: int
    flux_um: int
    pitch_um: int
    sites: int
    max_defects: int  # most missing + extra balls the automatic repair is tried on
    max_defects_after_repair: int  # most defects a wafer may leave the mounter with
    note: str = ""
    # Where the balls go, when not onto bare pads: into the openings of a polymer mask
    # (seed 004; stripped after the reflow), or onto Cu posts (seed 001).
    mask: str | None = None  # a mask id from the library (dry-film | photoresist)
    post_diameter_um: int | None = None
    post_pitch_um: int | None = None

    @property
    def alloy(self) -> str:
        return self.ball_alloy

    def tool_recipe(self, name: str) -> PlacementRecipe:
        return PlacementRecipe(
            name=name, ball_diameter_um=self.ball_diameter_um, ball_alloy=self.ball_alloy,
            flux_um=self.flux_um, pitch_um=self.pitch_um, sites=self.sites,
        )


@dataclass(frozen=True)
class ReflowStep:
    kind: ClassVar[str] = "reflow"
    zones_c: tuple[float, ...]
    conveyor_mm_min: int
    o2_limit_ppm: int
    peak_c: Window
    tal_s: Window
    max_ramp_c_s: float
    max_cool_c_s: float
    profile_id: int  # given in the file, or derived from the profile's content
    tal_threshold_c: float  # liquidus of what this reflow melts (see resolve_tal_thresholds)
    note: str = ""

    @property
    def hottest_zone_c(self) -> float:
        return max(self.zones_c[:8])  # zones 9-10 cool

    def tool_profile(self) -> ReflowProfile:
        return ReflowProfile(
            zone_setpoints_c=self.zones_c, conveyor_mm_min=self.conveyor_mm_min,
            o2_limit_ppm=self.o2_limit_ppm, tal_threshold_c=self.tal_threshold_c,
            profile_id=self.profile_id,
        )


@dataclass(frozen=True)
class CleanStep:
    kind: ClassVar[str] = "clean"
    wash_temp_c: float
    wash_time_s: int
    rinse_time_s: int
    dry_time_s: int
    spray_pressure_bar: float
    max_ionic_ug_cm2: float
    note: str = ""

    def tool_recipe(self) -> CleanRecipe:
        return CleanRecipe(
            wash_temp_c=self.wash_temp_c, wash_time_s=self.wash_time_s,
            rinse_time_s=self.rinse_time_s, dry_time_s=self.dry_time_s,
            spray_pressure_bar=self.spray_pressure_bar,
        )


@dataclass(frozen=True)
class StripStep:
    """The FC-2's resist strip: removes the mask a ball mount placed into (and the flux),
    after the reflow that bonds the balls."""

    kind: ClassVar[str] = "strip"
    mode: ClassVar[CleanMode] = CleanMode.RESIST_STRIP  # the cleaner mode it loads with
    mask: str  # the mask it strips: must be the one on the wafer
    strip_temp_c: float
    strip_time_s: int
    rinse_time_s: int
    dry_time_s: int
    spray_pressure_bar: float
    max_mask_residue_pct: float  # most wafer area with mask left (the FC-2's optical check)
    max_ionic_ug_cm2: float  # the strip stands in for the clean, so its residue counts too
    note: str = ""

    def tool_recipe(self) -> StripRecipe:
        return StripRecipe(
            strip_temp_c=self.strip_temp_c, strip_time_s=self.strip_time_s,
            rinse_time_s=self.rinse_time_s, dry_time_s=self.dry_time_s,
            spray_pressure_bar=self.spray_pressure_bar,
        )


@dataclass(frozen=True)
class BarrierStep:
    """The optional diffusion barrier of the rebump flow: electroless nickel with an
    immersion-gold coating on the first bumps, plated a batch at a time on the EP-25
    (../shared/specs/barrier-plater.md; seed 003, claims 7-11)."""

    kind: ClassVar[str] = "barrier"
    ni_um: float
    au_um: float
    ni_temp_c: float
    au_temp_c: float
    # acceptance: each wafer's thickness as the plater's XRF head measured it
    ni_measured_um: Window
    au_measured_um: Window
    batch_size: int | None = None  # wafers per carrier; None = as many as are ready (1-25)
    note: str = ""

    def tool_recipe(self) -> BarrierRecipe:
        return BarrierRecipe(ni_um=self.ni_um, au_um=self.au_um, ni_temp_c=self.ni_temp_c,
                             au_temp_c=self.au_temp_c)


Step = PrintStep | PlaceStep | ReflowStep | CleanStep | StripStep | BarrierStep
STEP_KINDS: dict[str, type] = {
    c.kind: c for c in (PrintStep, PlaceStep, ReflowStep, CleanStep, StripStep, BarrierStep)
}
DEPOSIT_KINDS = ("print", "place")


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    description: str
    steps: tuple[Step, ...]
    source: str = "<memory>"

    @functools.cached_property  # the recipe is frozen: hash it once
    def hash(self) -> str:
        """sha256 of the canonical content: the same for any file meaning the same recipe."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        content = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            # Unset optional fields (None) are left out, so a recipe that does not use
            # them keeps the hash it had before they existed.
            "steps": [{"kind": s.kind, **{k: v for k, v in asdict(s).items() if v is not None}}
                      for s in self.steps],
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def step(self, number: int) -> Step:
        """Step by 1-based number."""
        if not 1 <= number <= len(self.steps):
            raise RecipeError(f"{self.name}: no step {number} (steps 1-{len(self.steps)})")
        return self.steps[number - 1]

    def tool_recipe_name(self, number: int) -> str:
        """The name sent with a tool's RCP, one per (recipe, step) and the same every run:
        ``<recipe>.<step>`` where it fits TOOL_NAME_MAX, else the recipe name's first
        characters, a short hash of the whole name, and the step (``ballmoun-1a2b3.3``)."""
        whole = f"{self.name}.{number}"
        if len(whole) <= TOOL_NAME_MAX:
            return whole
        tail = f"-{hashlib.sha256(self.name.encode()).hexdigest()[:5]}.{number}"
        return self.name[: TOOL_NAME_MAX - len(tail)] + tail


# --- parsing ------------------------------------------------------------------------------------

# Per kind: key -> (type, range or None, description). Ranges are the tools' own (specs).
_Spec = tuple[str, tuple[float, float] | None, str]
_STEP_KEYS: dict[str, dict[str, _Spec]] = {
    "print": {
        "stencil_id": ("id", None, "the stencil to print with, as the printer reports it"),
        "paste_alloy": ("alloy", None, "an alloy id from the alloy library"),
        "squeegee_kgf": ("float", (0.5, 10.0), "squeegee force 0.5-10.0 kgf"),
        "speed_mm_s": ("float", (5.0, 200.0), "print speed 5-200 mm/s"),
        "separation_mm_s": ("float", (0.1, 10.0), "separation speed 0.1-10.0 mm/s"),
        "passes": ("int", (1, 3), "1-3 passes"),
        "wipe_every": ("int", (0, 50), "wipe after 0-50 prints (0 = never)"),
        "vol_mean_pct": ("window", (0.0, 300.0), "[min, max] mean deposit volume, % of aperture"),
        "vol_min_pct_min": ("float", (0.0, 300.0), "lowest acceptable smallest deposit, %"),
        "max_bridges": ("int", (0, 10_000_000), "most bridged sites accepted (>= 0)"),
        "max_insufficient": ("int", (0, 10_000_000), "most insufficient sites accepted (>= 0)"),
    },
    "place": {
        "ball_alloy": ("alloy", None, "an alloy id from the alloy library"),
        "ball_diameter_um": ("int", (60, 760), "ball diameter 60-760 µm"),
        "flux_um": ("int", (5, 50), "flux thickness 5-50 µm"),
        "pitch_um": ("int", (100, 2000), "pitch 100-2000 µm"),
        "sites": ("int", (1, 3_000_000), "1-3,000,000 sites"),
        "max_defects": ("int", (0, 3_000_000), "most defects the automatic repair is tried on"),
        "max_defects_after_repair": ("int", (0, 3_000_000), "most defects accepted after repair"),
    },
    "reflow": {
        "zones_c": ("zones", (0.0, 400.0), f"{ZONES} zone setpoints 0-400 °C (0 = off)"),
        "conveyor_mm_min": ("int", (200, 1500), "conveyor 200-1500 mm/min"),
        "o2_limit_ppm": ("int", (10, 1000), "O2 limit 10-1000 ppm"),
        "peak_c": ("window", (0.0, 400.0), "[min, max] measured wafer peak, °C"),
        "tal_s": ("window", (0.0, 1000.0), "[min, max] time above liquidus, s"),
        "max_ramp_c_s": ("float", (0.01, 100.0), "steepest heating accepted, °C/s"),
        "max_cool_c_s": ("float", (0.01, 100.0), "steepest cooling accepted, °C/s"),
        "profile_id": ("int", (1, 65535), "the oven's profile tag 1-65535"),
    },
    "clean": {
        "wash_temp_c": ("float", (30.0, 80.0), "wash 30-80 °C"),
        "wash_time_s": ("int", (10, 900), "wash 10-900 s"),
        "rinse_time_s": ("int", (10, 900), "rinse 10-900 s"),
        "dry_time_s": ("int", (10, 900), "dry 10-900 s"),
        "spray_pressure_bar": ("float", (0.5, 6.0), "spray 0.5-6.0 bar"),
        "max_ionic_ug_cm2": ("float", (0.01, 100.0), "ionic residue limit, µg NaCl-eq/cm²"),
    },
    "barrier": {
        "ni_um": ("float", (1.0, 8.0), "electroless nickel 1.0-8.0 µm"),
        "au_um": ("float", (0.02, 0.15), "immersion gold 0.02-0.15 µm"),
        "ni_temp_c": ("float", (80.0, 90.0), "nickel bath 80-90 °C"),
        "au_temp_c": ("float", (75.0, 88.0), "gold bath 75-88 °C"),
        "ni_measured_um": ("window", (0.0, 10.0), "[min, max] measured nickel per wafer, µm"),
        "au_measured_um": ("window", (0.0, 1.0), "[min, max] measured gold per wafer, µm"),
        "batch_size": ("int", (1, PLATER_BATCH_MAX),
                       f"wafers per plating batch 1-{PLATER_BATCH_MAX} (optional)"),
    },
}
# The ionic limit defaults to J-STD-001's legacy 1.56 µg NaCl-eq/cm² (process-data.md:
# IPC WP-019B calls a fixed limit obsolete, so each recipe may set its own).
IONIC_LIMIT_DEFAULT = 1.56
_OPTIONAL = {"note": "", "profile_id": None, "max_ramp_c_s": 3.0, "max_cool_c_s": 6.0,
             "max_ionic_ug_cm2": IONIC_LIMIT_DEFAULT}

# --- the mask strip (FC-2) and where the balls go (mask, Cu posts) --------------------------
_STEP_KEYS["place"] |= {
    "mask": ("mask", None, "the mask the balls go into: a mask id from the library"),
    "post_diameter_um": ("int", (20, 2000), "Cu post diameter 20-2000 µm"),
    "post_pitch_um": ("int", (100, 2000), "Cu post pitch 100-2000 µm"),
}
_STEP_KEYS["strip"] = {
    "mask": ("mask", None, "the mask it strips: a mask id from the library"),
    "strip_temp_c": ("float", (30.0, 80.0), "strip tank 30-80 °C"),
    "strip_time_s": ("int", (60, 1800), "strip 60-1800 s"),
    "rinse_time_s": ("int", (10, 900), "rinse 10-900 s"),
    "dry_time_s": ("int", (10, 900), "dry 10-900 s"),
    "spray_pressure_bar": ("float", (0.5, 6.0), "spray 0.5-6.0 bar"),
    "max_mask_residue_pct": ("float", (0.0, 100.0), "most wafer area with mask left, %"),
    "max_ionic_ug_cm2": ("float", (0.01, 100.0), "ionic residue limit, µg NaCl-eq/cm²"),
}
_OPTIONAL |= {"mask": None, "post_diameter_um": None, "post_pitch_um": None}
_REQUIRED = {("strip", "mask")}  # optional elsewhere, not here
_OPTIONAL |= {"batch_size": None}
_STEP_KEYS["print"] |= {
    "aperture_um": ("int", (20, 2000), "aperture width (round: diameter) 20-2000 µm"),
    "aperture_length_um": ("int", (20, 2000), "aperture length 20-2000 µm (slots; optional)"),
    "stencil_thickness_um": ("int", (10, 300), "stencil foil thickness 10-300 µm"),
}
_OPTIONAL |= {"aperture_um": None, "aperture_length_um": None, "stencil_thickness_um": None}
_TOP_KEYS = {"name", "version", "description", "steps"}
MAX_VERSION = 2**31 - 1  # what every database's INTEGER column holds (PostgreSQL's is 32-bit)
NESTED_TOO_DEEP = "arrays or tables nested too deeply (hundreds inside each other)"

_MISSING = object()


def parse_recipe(
    text: str, *, source: str = "<memory>", alloys: AlloyLibrary | None = None
) -> Recipe:
    """A well-formed recipe, or RecipeInvalid listing every problem with the file."""
    recipe, problems = parse_recipe_problems(text, source=source, alloys=alloys)
    if problems or recipe is None:
        raise RecipeInvalid(source, problems)
    return recipe


def parse_recipe_problems(
    text: str, *, source: str = "<memory>", alloys: AlloyLibrary | None = None
) -> tuple[Recipe | None, list[Problem]]:
    """(recipe, problems): the recipe is None when its structure is too broken to build;
    out-of-range values are problems but still give a recipe, so the rules can run too."""
    alloys = alloys or default_alloys()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(source, None, None, "not valid TOML", str(exc))]
    except RecursionError:  # arrays or tables hundreds deep: no recipe, and no traceback
        return None, [Problem(source, None, None, "not valid TOML", NESTED_TOO_DEEP)]
    problems: list[Problem] = []

    def top(rule: str, message: str) -> None:
        problems.append(Problem(source, None, None, rule, message))

    for key in data:
        if key not in _TOP_KEYS:
            top("unknown key", f"'{key}' (known: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        top("name", f"expected 1-40 letters, digits, '.', '-' or '_' (got {name!r})")
    version = data.get("version")
    if (isinstance(version, bool) or not isinstance(version, int)
            or not 1 <= version <= MAX_VERSION):
        top("version", f"expected a whole number 1-{MAX_VERSION} (got {version!r})")
    description = data.get("description", "")
    if not isinstance(description, str):
        top("description", f"expected text (got {description!r})")
    raw_steps = data.get("steps")
    steps: list[Step | None] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        top("steps", "expected at least one [[steps]] table")
    else:
        for number, raw in enumerate(raw_steps, start=1):
            steps.append(_parse_step(number, raw, source, alloys, problems))
    # A bad name or version is a problem above; the isinstance checks tell mypy so.
    if (any(p.rule != "range" for p in problems) or None in steps
            or not isinstance(name, str) or not isinstance(version, int)):
        return None, problems
    built = resolve_tal_thresholds(tuple(s for s in steps if s is not None), alloys)
    recipe = Recipe(name=name, version=version, description=description, steps=built,
                    source=source)
    return recipe, problems


def load_recipe(path: str | Path, *, alloys: AlloyLibrary | None = None) -> Recipe:
    path = Path(path)
    return parse_recipe(read_recipe_text(path), source=path.name, alloys=alloys)


def read_recipe_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (expected UTF-8 TOML)") from None


def shipped_recipe_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.toml"))}


def find_recipe(name_or_path: str, *, alloys: AlloyLibrary | None = None) -> Recipe:
    """A shipped recipe by name, or a recipe file by path."""
    shipped = shipped_recipe_paths()
    if name_or_path in shipped:
        return load_recipe(shipped[name_or_path], alloys=alloys)
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_recipe(path, alloys=alloys)
    raise RecipeError(
        f"no recipe named '{name_or_path}' (shipped: {', '.join(shipped) or 'none'}; "
        "or give a .toml file)"
    )


def _parse_step(
    number: int, raw: Any, source: str, alloys: AlloyLibrary, problems: list[Problem]
) -> Step | None:
    def problem(kind: str | None, rule: str, message: str) -> None:
        problems.append(Problem(source, number, kind, rule, message))

    if not isinstance(raw, dict):
        problem(None, "step", "expected a [[steps]] table")
        return None
    kind = raw.get("kind")
    if kind not in STEP_KINDS:
        problem(None, "unknown step kind",
                f"kind = {kind!r}; expected one of {', '.join(STEP_KINDS)}")
        return None
    spec = _STEP_KEYS[kind]
    allowed = set(spec) | {"kind", "note"}
    for key in raw:
        if key not in allowed:
            problem(kind, "unknown key", f"'{key}' (a {kind} step takes: "
                    f"{', '.join(k for k in spec)}, note)")
    values: dict[str, Any] = {}
    broken = False
    for key, (typ, bounds, what) in spec.items():
        value = raw.get(key, _MISSING)
        if value is _MISSING:
            if key in _OPTIONAL and (kind, key) not in _REQUIRED:
                values[key] = _OPTIONAL[key]
                continue
            problem(kind, "missing key", f"{key}: expected {what}")
            broken = True
            continue
        ok, converted, message = _convert(typ, bounds, value, alloys)
        if converted is None:
            problem(kind, {"alloy": "unknown alloy", "mask": "unknown mask"}.get(typ, "wrong type"),
                    f"{key}: expected {what} (got {value!r}){message}")
            broken = True
            continue
        if not ok:
            problem(kind, "range", f"{key} = {_show(value)}: expected {what}{message}")
        values[key] = converted
    note = raw.get("note", "")
    if not isinstance(note, str):
        problem(kind, "wrong type", f"note: expected text (got {note!r})")
        note = ""
    values["note"] = note
    if broken:
        return None
    if kind == "place":
        if values["pitch_um"] <= values["ball_diameter_um"]:
            problem(kind, "range", f"pitch_um = {values['pitch_um']} must exceed "
                    f"ball_diameter_um = {values['ball_diameter_um']} (balls would touch)")
        if values["max_defects_after_repair"] > values["max_defects"]:
            problem(kind, "range", f"max_defects_after_repair = "
                    f"{values['max_defects_after_repair']} exceeds max_defects = "
                    f"{values['max_defects']} (repair never makes a wafer worse)")
        if (values["post_diameter_um"] is None) != (values["post_pitch_um"] is None):
            problem(kind, "missing key", "Cu posts: give both post_diameter_um and "
                    "post_pitch_um (or neither, for balls on bare pads)")
    stencil = [values.get(k) is not None
               for k in ("aperture_um", "stencil_thickness_um", "aperture_length_um")]
    if kind == "print" and any(stencil) and not all(stencil[:2]):
        problem(kind, "missing key", "stencil: give aperture_um and stencil_thickness_um "
                "together (aperture_length_um only with them), or none of them")
    if kind == "barrier":
        for key, nominal in (("ni_measured_um", "ni_um"), ("au_measured_um", "au_um")):
            low, high = values[key]
            if not low <= values[nominal] <= high:
                problem(kind, "range", f"{key} = [{low:g}, {high:g}] does not hold {nominal} = "
                        f"{values[nominal]:g} (every batch would be refused)")
    if kind == "reflow":
        values["tal_threshold_c"] = 0.0  # filled by resolve_tal_thresholds
        if values["profile_id"] is None:
            values["profile_id"] = 0  # derived in resolve_tal_thresholds
    return STEP_KINDS[kind](**values)


def _convert(
    typ: str, bounds: tuple[float, float] | None, value: Any, alloys: AlloyLibrary
) -> tuple[bool, Any, str]:
    """(in range, converted value or None if the type is wrong, extra message)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if typ == "id":
        if not isinstance(value, str) or not value.strip():
            return False, None, ""
        ok = len(value) <= 16 and not (_HOSTLINK_FORBIDDEN & set(value)) and value.isprintable()
        return ok, value, "" if ok else " (at most 16 printable characters, no $ * ,)"
    if typ == "alloy":
        if not isinstance(value, str) or value not in alloys:
            return False, None, f"; known: {', '.join(alloys.ids())}"
        return True, value, ""
    if typ == "mask":
        if not isinstance(value, str) or value not in alloys.masks:
            return False, None, f"; known: {', '.join(alloys.masks) or 'none'}"
        return True, value, ""
    if bounds is None:  # every number in _STEP_KEYS has its bounds
        raise AssertionError(f"{typ} without bounds")
    lo, hi = bounds
    if typ == "float":
        if not number:
            return False, None, ""
        return lo <= value <= hi, float(value), ""
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return False, None, ""
        return lo <= value <= hi, value, ""
    if typ == "window":
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            return False, None, ""
        low, high = float(value[0]), float(value[1])
        ok = lo <= low < high <= hi
        return ok, (low, high), "" if low < high else " (min below max)"
    if typ == "zones":
        if not (isinstance(value, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            return False, None, ""
        if len(value) != ZONES:
            return False, None, f" ({len(value)} values given)"
        ok = all(lo <= v <= hi for v in value)
        return ok, tuple(float(v) for v in value), ""
    raise AssertionError(typ)


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | str) else f"{value!r}"


def deposits_by_reflow(steps: tuple[Step, ...]) -> dict[int, list[int]]:
    """For each reflow (0-based index), the deposit steps (0-based) it melts."""
    pending: list[int] = []
    out: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        if step.kind in DEPOSIT_KINDS:
            pending.append(i)
        elif step.kind == "reflow":
            out[i] = pending
            pending = []
    return out


def resolve_tal_thresholds(steps: tuple[Step, ...], alloys: AlloyLibrary) -> tuple[Step, ...]:
    """Fill each reflow's TAL threshold and, when not given, its profile id.

    The TAL threshold is the *highest* liquidus among the alloys the reflow melts:
    time above it is time during which every deposit is molten, so the TAL window
    is a full-melt guarantee for all of them. A reflow with nothing to melt keeps
    the lowest liquidus in the library (the validator refuses it anyway).
    """
    melts = deposits_by_reflow(steps)
    out = list(steps)
    for i, deposits in melts.items():
        step = steps[i]
        assert isinstance(step, ReflowStep)
        liquidus = [alloys[steps[d].alloy].liquidus_c for d in deposits]  # type: ignore[union-attr]
        threshold = max(liquidus) if liquidus else min(a.liquidus_c for a in alloys)
        profile_id = step.profile_id or derived_profile_id(step, threshold)
        out[i] = _replace(step, tal_threshold_c=threshold, profile_id=profile_id)
    return tuple(out)


def derived_profile_id(step: ReflowStep, tal_threshold_c: float) -> int:
    """A stable 1-65535 tag from what the oven is told: same setpoints, same id."""
    content = json.dumps([step.zones_c, step.conveyor_mm_min, step.o2_limit_ppm,
                          tal_threshold_c])
    return int.from_bytes(hashlib.sha256(content.encode()).digest()[:4], "big") % 65535 + 1


def _replace(step: ReflowStep, **changes: Any) -> ReflowStep:
    values = {f.name: getattr(step, f.name) for f in fields(step)}
    values.update(changes)
    return ReflowStep(**values)

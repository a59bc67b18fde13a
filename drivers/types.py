"""Typed values the drivers take and return, in engineering units.

This module is the contract between the drivers and everything above them
(sequences, controller, CLI). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


@dataclass(frozen=True)
class Identity:
    vendor: str
    model: str
    serial: str
    firmware: str


@dataclass(frozen=True)
class Alarm:
    code: int
    text: str


# --- Paste printer WP-300 -----------------------------------------------------------------------


class PrinterState(StrEnum):
    IDLE = "IDLE"
    CHANGEOVER = "CHANGEOVER"
    LOADING = "LOADING"
    READY = "READY"
    PRINTING = "PRINTING"
    INSPECTING = "INSPECTING"
    DONE = "DONE"
    UNLOADING = "UNLOADING"
    WIPING = "WIPING"
    FILLING = "FILLING"
    ALARM = "ALARM"


@dataclass(frozen=True)
class PrinterStatus:
    state: PrinterState
    wafer_id: str | None
    alarm_code: int
    prints_since_wipe: int
    paste_level_pct: float
    stencil_id: str
    paste_alloy: str


@dataclass(frozen=True)
class PrintRecipe:
    name: str
    squeegee_kgf: float  # 0.5-10.0
    speed_mm_s: float  # 5-200
    separation_mm_s: float  # 0.1-10.0
    stencil_id: str
    passes: int  # 1-3
    wipe_every: int  # 0-50, 0 = never


class RunStatus(StrEnum):
    """Outcome of one tool cycle as the tool reports it (RES status)."""

    OK = "OK"
    ABORTED = "ABORTED"
    ALARM = "ALARM"


@dataclass(frozen=True)
class PrintResult:
    wafer_id: str
    status: RunStatus
    vol_mean_pct: float
    vol_min_pct: float
    vol_max_pct: float
    bridges: int
    insufficient: int


# --- Ball mounter WBM-300 -----------------------------------------------------------------------


class PlacerState(StrEnum):
    IDLE = "IDLE"
    CHANGEOVER = "CHANGEOVER"
    LOADING = "LOADING"
    READY = "READY"
    FLUXING = "FLUXING"
    PLACING = "PLACING"
    INSPECTING = "INSPECTING"
    DONE = "DONE"
    REPAIRING = "REPAIRING"
    UNLOADING = "UNLOADING"
    ALARM = "ALARM"


@dataclass(frozen=True)
class PlacerStatus:
    state: PlacerState
    wafer_id: str | None
    alarm_code: int
    ball_alloy: str
    ball_diameter_um: float  # as the tool reports it (whole in the spec's example)
    ball_level_pct: float
    flux_level_pct: float


@dataclass(frozen=True)
class PlacementRecipe:
    name: str
    ball_diameter_um: int  # 60-760
    ball_alloy: str
    flux_um: int  # 5-50
    pitch_um: int  # 100-2000
    sites: int  # 1-3,000,000


@dataclass(frozen=True)
class PlacementResult:
    wafer_id: str
    status: RunStatus
    sites: int
    placed: int
    missing: int
    extra: int
    offset_max_um: float  # measured: whole in the spec's example, a tool may send decimals

    @property
    def defects(self) -> int:
        return self.missing + self.extra


# --- Reflow oven RF-10N -------------------------------------------------------------------------


class OvenState(IntEnum):
    OFF = 0
    HEATING = 1
    READY = 2
    PROCESSING = 3
    ALARM = 4
    STANDBY = 5


class ExitFlag(IntEnum):
    """Bits of EXIT_FLAGS."""

    BELT_STOPPED = 1
    O2_HIGH = 2
    ZONE_ALARM = 4


ZONES = 10


@dataclass(frozen=True)
class ReflowProfile:
    zone_setpoints_c: tuple[float, ...]  # 10 values, 0 = zone off, 0.0-400.0
    conveyor_mm_min: int  # 200-1500
    o2_limit_ppm: int  # 10-1000
    tal_threshold_c: float  # 50.0-400.0, the liquidus of the alloy being reflowed
    profile_id: int  # 0-65535, the host's tag

    def __post_init__(self) -> None:
        if len(self.zone_setpoints_c) != ZONES:
            raise ValueError(f"a reflow profile has {ZONES} zone setpoints")


# O2_PPM is one unsigned word: the oven reports anything at or above 65535 ppm (air, no
# purge: about 209,000 ppm) as 65535. The spec is silent; see docs/protocols.md.
O2_OVER_RANGE_PPM = 0xFFFF


@dataclass(frozen=True)
class OvenProcess:
    """The oven's process values (input registers 0-14): one request, for a look at the zones
    while a profile change runs or at O2 while nitrogen purges. Not the interlocks' status:
    that adds the discrete inputs and the coils (``OvenStatus``)."""

    state: OvenState
    zone_pv_c: tuple[float | None, ...]  # None = thermocouple failed (0x7FFF)
    wafers_on_belt: int
    alarm_code: int
    o2_ppm: int
    active_profile_id: int


@dataclass(frozen=True)
class OvenReadiness(OvenProcess):
    """What a wafer's interlock check reads before its LOAD: the process values and the
    coils, two requests. Not the discrete inputs: ENTRANCE_CLEAR is the entrance timing's
    (the oven refuses a LOAD it cannot take, nothing moved), ALARM_ACTIVE repeats
    ALARM_CODE and STATE (docs/protocols.md, "The interlock check of a LOAD")."""

    nitrogen_on: bool
    conveyor_running: bool


@dataclass(frozen=True)
class OvenStatus(OvenReadiness):
    """Everything at a glance: the process values, the coils and the discrete inputs
    (three requests)."""

    entrance_clear: bool
    wafer_at_exit: bool
    zones_stable: bool
    alarm_active: bool


@dataclass(frozen=True)
class OvenSignals:
    """The oven's discrete inputs: one request, for polling the entrance and the exit."""

    entrance_clear: bool
    wafer_at_exit: bool
    zones_stable: bool
    alarm_active: bool


@dataclass(frozen=True)
class ReflowResult:
    wafer_id: str
    peak_c: float
    tal_s: float
    ramp_max_c_s: float
    cool_max_c_s: float
    profile_id: int
    o2_max_ppm: int
    flags: int  # ExitFlag bits
    curve_c: tuple[float, ...] = field(default=())  # wafer temperature every 5 s from LOAD

    CURVE_INTERVAL_S = 5.0

    def has_flag(self, flag: ExitFlag) -> bool:
        return bool(self.flags & flag)


# --- Flux cleaner FC-1 and cleaner/stripper FC-2 -----------------------------------------------


BATH_TOLERANCE_C = 2.0  # START only with the bath (FC-2 strip: the strip tank) within this


class CleanerState(IntEnum):
    IDLE = 0
    READY = 1
    LOADED = 2
    WASHING = 3
    RINSING = 4
    DRYING = 5
    DONE = 6
    ALARM = 7
    STRIPPING = 8  # FC-2 only: the resist strip, in place of WASHING


class CleanMode(StrEnum):
    """What a cleaner cycle does to the wafer (the FC-2's MODE; an FC-1 only cleans flux)."""

    FLUX_CLEAN = "FLUX_CLEAN"
    RESIST_STRIP = "RESIST_STRIP"


class CleanStatus(IntEnum):
    NONE = 0
    OK = 1
    ABORTED = 2
    ALARM = 3


@dataclass(frozen=True)
class CleanRecipe:
    wash_temp_c: float  # 30.0-80.0
    wash_time_s: int  # 10-900
    rinse_time_s: int  # 10-900
    dry_time_s: int  # 10-900
    spray_pressure_bar: float  # 0.5-6.0


@dataclass(frozen=True)
class StripRecipe:
    """An FC-2 resist strip: the strip tank and time in place of the wash's."""

    strip_temp_c: float  # 30.0-80.0
    strip_time_s: int  # 60-1800
    rinse_time_s: int  # 10-900
    dry_time_s: int  # 10-900
    spray_pressure_bar: float  # 0.5-6.0


@dataclass(frozen=True)
class CleanerStatus:
    state: CleanerState
    wash_temp_c: float
    rinse_resistivity_mohm_cm: float
    remaining_s: int
    alarm_code: int
    wafer_present: bool
    chemistry_low: bool
    di_resistivity_low: bool
    door_open: bool
    # FC-2 only (None on a model without them)
    strip_temp_c: float | None = None
    mode_active: CleanMode | None = None  # the mode of the wafer in the chamber
    stripper_low: bool | None = None


@dataclass(frozen=True)
class CleanResult:
    wafer_id: str
    status: CleanStatus
    ionic_ug_cm2: float  # µg NaCl-eq / cm²
    # CYCLE_COUNT: read by ``result()``; a step's ``wait_result`` leaves it out (None), one
    # request fewer per clean (docs/protocols.md, "The cleaner's result")
    cycle_count: int | None
    mask_residue_pct: float | None = None  # FC-2: wafer area with mask left; 0 after a clean


# --- Barrier plater EP-25 -----------------------------------------------------------------------


class PlaterState(StrEnum):
    IDLE = "IDLE"
    LOADED = "LOADED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ALARM = "ALARM"
    MAINT = "MAINT"


class PlaterStep(StrEnum):
    PRECLEAN = "PRECLEAN"
    ACTIVATE = "ACTIVATE"
    NI_PLATE = "NI_PLATE"
    RINSE_1 = "RINSE_1"
    AU_IMMERSION = "AU_IMMERSION"
    RINSE_2 = "RINSE_2"
    DRY = "DRY"


PLATER_BATCH_MAX = 25  # wafers in one carrier
PLATER_BATH_BAND_C = 1.0  # START needs both baths this close to their setpoints
# Codes of the spec's alarm table that are warnings only (741 NI MTO HIGH, "not blocking"):
# never a latched alarm, whatever ALARM? answers (docs/protocols.md).
PLATER_WARNINGS = frozenset({741})


@dataclass(frozen=True)
class BarrierRecipe:
    ni_um: float  # 1.0-8.0
    au_um: float  # 0.02-0.15
    ni_temp_c: float  # 80-90
    au_temp_c: float  # 75-88


@dataclass(frozen=True)
class PlaterStatus:
    state: PlaterState
    batch_id: str | None
    step: PlaterStep | str | None  # str: a step the spec's table does not name
    remaining_s: float | None  # None: the tool printed '-'


@dataclass(frozen=True)
class PlaterBath:
    ni_temp_c: float
    au_temp_c: float
    ni_ph: float
    ni_mto: float  # metal turnovers since the last REPLENISH
    ni_level_pct: float


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    status: RunStatus
    ni_mean_um: float
    ni_min_um: float
    ni_max_um: float
    au_mean_um: float
    wafers: int


@dataclass(frozen=True)
class WaferBarrier:
    """One wafer's barrier as the plater's XRF head measured it at the end of its batch."""

    wafer_id: str
    ni_um: float
    au_um: float


@dataclass(frozen=True)
class PlaterEvent:
    """A pushed event, numbered by the tool (``seq`` survives reconnects and power loss)."""

    seq: int
    name: str  # STATE | STEP | DONE | ALARM | CLEARED | BATH
    fields: tuple[str, ...]

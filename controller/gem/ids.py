"""What the host can name: SVIDs, DVIDs, ECIDs, CEIDs, ALIDs and remote commands, as data.

These tables are the contract with the fab's MES: an id, once published in
docs/gem.md (generated from here by ``bumpline gem tables``), keeps its meaning.
New ids are appended; none is reused.

* Status variables (SV) are read at any time (S1F3); data variables (DV) have a
  value only inside the collection event that carries them; equipment constants
  (EC) are settings the host reads and writes (S2F13/S2F15), persisted.
* Per-tool status variables and tool alarms are numbered from the tool's role
  and unit (``printer-1`` is role 1, unit 1), so a line with two ovens has two
  sets without a table change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.gem.secs2 import Fmt


class VarKind(StrEnum):
    SV = "SV"
    DV = "DV"
    EC = "EC"


@dataclass(frozen=True)
class Variable:
    vid: int
    name: str
    kind: VarKind
    fmt: Fmt  # the item format its value is sent in (L for lists)
    units: str = ""
    description: str = ""
    # equipment constants only: minimum, maximum, default
    minimum: float | None = None
    maximum: float | None = None
    default: float | bool | None = None


@dataclass(frozen=True)
class CollectionEvent:
    ceid: int
    name: str
    description: str
    dvids: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class RemoteCommand:
    rcmd: str
    parameters: tuple[tuple[str, str], ...]  # (CPNAME, what it is)
    description: str


# --- status variables --------------------------------------------------------------------------

SV_CONTROL_STATE = 1
SV_CLOCK = 2
SV_MDLN = 3
SV_SOFTREV = 4
SV_SPOOL_COUNT_ACTUAL = 5
SV_SPOOL_COUNT_TOTAL = 6
SV_SPOOL_FULL = 7
SV_SPOOL_START_TIME = 8
SV_SPOOL_FULL_TIME = 9
SV_LINE_STATE = 10
SV_RUNNING_LOTS = 11
SV_QUEUED_LOTS = 12
SV_WAFERS_GOOD = 13
SV_WAFERS_SCRAPPED = 14
SV_WAFERS_IN_PROCESS = 15
SV_PROCESS_STATE = 16
SV_PREVIOUS_PROCESS_STATE = 17
SV_ALARMS_SET = 20
SV_ALARMS_ENABLED = 21
SV_EVENTS_ENABLED = 22
SV_SPOOL_STATE = 23
SV_PP_SELECTED = 30

_SV = VarKind.SV
LINE_SVS = (
    Variable(SV_CONTROL_STATE, "CONTROLSTATE", _SV, Fmt.U1, "",
             "1 equipment-offline, 2 attempt-online, 3 host-offline, 4 online-local, "
             "5 online-remote"),
    Variable(SV_CLOCK, "CLOCK", _SV, Fmt.A, "",
             "equipment time in TIMEFORMAT: the PC's UTC, or the host's clock once it set it "
             "(S2F31)"),
    Variable(SV_MDLN, "MDLN", _SV, Fmt.A, "", "equipment model name"),
    Variable(SV_SOFTREV, "SOFTREV", _SV, Fmt.A, "", "software revision (bumpline version)"),
    Variable(SV_SPOOL_COUNT_ACTUAL, "SPOOLCOUNTACTUAL", _SV, Fmt.U4, "messages",
             "messages in the spool now"),
    Variable(SV_SPOOL_COUNT_TOTAL, "SPOOLCOUNTTOTAL", _SV, Fmt.U4, "messages",
             "messages spooled since the spool was last emptied, overwritten ones included"),
    Variable(SV_SPOOL_FULL, "SPOOLFULL", _SV, Fmt.BOOLEAN, "", "the spool reached MAXSPOOLSIZE"),
    Variable(SV_SPOOL_START_TIME, "SPOOLSTARTTIME", _SV, Fmt.A, "",
             "when the spool was last activated, in the CLOCK format (TIMEFORMAT); "
             "empty before the first time"),
    Variable(SV_SPOOL_FULL_TIME, "SPOOLFULLTIME", _SV, Fmt.A, "",
             "when the spool last became full, in the CLOCK format (TIMEFORMAT); "
             "empty before the first time"),
    Variable(SV_LINE_STATE, "LINESTATE", _SV, Fmt.A, "", "idle or running"),
    Variable(SV_RUNNING_LOTS, "RUNNINGLOTS", _SV, Fmt.L, "", "ids of lots running or held"),
    Variable(SV_QUEUED_LOTS, "QUEUEDLOTS", _SV, Fmt.L, "", "ids of queued lots"),
    Variable(SV_WAFERS_GOOD, "WAFERSGOOD", _SV, Fmt.U4, "wafers",
             "good wafers in the running lots"),
    Variable(SV_WAFERS_SCRAPPED, "WAFERSSCRAPPED", _SV, Fmt.U4, "wafers",
             "scrapped wafers in the running lots"),
    Variable(SV_WAFERS_IN_PROCESS, "WAFERSINPROCESS", _SV, Fmt.U4, "wafers",
             "unfinished wafers of the running lots"),
    Variable(SV_PROCESS_STATE, "PROCESSSTATE", _SV, Fmt.U1, "",
             "E30 processing state: 1 IDLE (no lot running or held), 2 EXECUTING (a lot "
             "running), 3 PAUSE (lots held, none running)"),
    Variable(SV_PREVIOUS_PROCESS_STATE, "PREVIOUSPROCESSSTATE", _SV, Fmt.U1, "",
             "the processing state before the last change (0 INIT: none yet)"),
    Variable(SV_ALARMS_SET, "ALARMSSET", _SV, Fmt.L, "", "ALIDs of the alarms set now"),
    Variable(SV_ALARMS_ENABLED, "ALARMSENABLED", _SV, Fmt.L, "",
             "ALIDs of the alarms whose S5F1 the host enabled (S5F3)"),
    Variable(SV_EVENTS_ENABLED, "EVENTSENABLED", _SV, Fmt.L, "",
             "CEIDs of the collection events the host enabled (S2F37)"),
    Variable(SV_SPOOL_STATE, "SPOOLSTATE", _SV, Fmt.U1, "",
             "E30 spool state: 1 SPOOL INACTIVE, 2 SPOOL ACTIVE"),
    Variable(SV_PP_SELECTED, "PPSELECTED", _SV, Fmt.A, "",
             "process program chosen by PP-SELECT for the next START without RECIPE"),
)

# Per tool: SVID = 1000 + 100 × role + 10 × unit + offset.
# Role number = index + 1; every role a line configuration may name (drivers/line_config.py).
# A new role is appended, never inserted: the numbers are in the hosts' configurations.
ROLES = ("printer", "placer", "oven", "cleaner", "plater")
TOOL_SV_OFFSETS = (
    (0, "E10STATE", Fmt.A, "", "SEMI E10 state of the tool"),
    (1, "TOOLSTATE", Fmt.A, "", "the tool's own state name"),
    (2, "ZONETEMPS", Fmt.L, "°C", "oven zone temperatures, zone 1 first (ovens only)"),
)


def tool_number(tool: str) -> tuple[int, int] | None:
    """(role number, unit) of a tool named ``<role>-<unit>``; None for other names."""
    role, _, unit = tool.rpartition("-")
    if role not in ROLES or not unit.isdigit() or not 1 <= int(unit) <= 9:
        return None
    return ROLES.index(role) + 1, int(unit)


def tool_svs(tool: str) -> tuple[Variable, ...]:
    number = tool_number(tool)
    if number is None:
        return ()
    role, unit = number
    out = []
    for offset, name, fmt, units, text in TOOL_SV_OFFSETS:
        if name == "ZONETEMPS" and ROLES[role - 1] != "oven":
            continue
        out.append(Variable(1000 + 100 * role + 10 * unit + offset,
                            f"{tool.upper().replace('-', '')}{name}", _SV, fmt, units,
                            f"{tool}: {text}"))
    return tuple(out)


# --- data variables (valid inside the events that carry them) ---------------------------------

DV_LOT_ID = 200
DV_WAFER_ID = 201
DV_RECIPE = 202
DV_STEP = 203
DV_STEP_KIND = 204
DV_OUTCOME = 205
DV_MEASUREMENTS = 206
DV_REASON = 207
DV_TOOL = 208
DV_ALID = 209
DV_ALTX = 210
DV_LOT_STATE = 211
DV_PREVIOUS_CONTROL_STATE = 212
DV_E10_STATE = 213
DV_PREVIOUS_E10_STATE = 214
DV_WAFER_STATE = 215
DV_PPID = 216

_DV = VarKind.DV
DVS = (
    Variable(DV_LOT_ID, "LOTID", _DV, Fmt.A),
    Variable(DV_WAFER_ID, "WAFERID", _DV, Fmt.A),
    Variable(DV_RECIPE, "RECIPE", _DV, Fmt.A, "", "recipe (process program) of the lot"),
    Variable(DV_STEP, "STEP", _DV, Fmt.U2, "", "1-based step number in the recipe"),
    Variable(DV_STEP_KIND, "STEPKIND", _DV, Fmt.A, "", "print, place, reflow or clean"),
    Variable(DV_OUTCOME, "OUTCOME", _DV, Fmt.A, "", "the step's outcome (ok, out-of-window...)"),
    Variable(DV_MEASUREMENTS, "MEASUREMENTS", _DV, Fmt.L, "",
             "L,n of L,2 <A name> <F8 value>: the step's measured results"),
    Variable(DV_REASON, "REASON", _DV, Fmt.A, "", "why (hold, abort, refusal, disposition)"),
    Variable(DV_TOOL, "TOOL", _DV, Fmt.A),
    Variable(DV_ALID, "ALID", _DV, Fmt.U4),
    Variable(DV_ALTX, "ALTX", _DV, Fmt.A),
    Variable(DV_LOT_STATE, "LOTSTATE", _DV, Fmt.A, "", "queued, running, held, complete, aborted"),
    Variable(DV_PREVIOUS_CONTROL_STATE, "PREVIOUSCONTROLSTATE", _DV, Fmt.U1),
    Variable(DV_E10_STATE, "E10STATE", _DV, Fmt.A),
    Variable(DV_PREVIOUS_E10_STATE, "PREVIOUSE10STATE", _DV, Fmt.A),
    Variable(DV_WAFER_STATE, "WAFERSTATE", _DV, Fmt.A, "", "the wafer's state after the event"),
    Variable(DV_PPID, "PPID", _DV, Fmt.A),
)

# --- equipment constants -----------------------------------------------------------------------

EC_ESTABLISH_COMM_DELAY = 50
EC_MAX_SPOOL_SIZE = 51
EC_OVERWRITE_SPOOL = 52
EC_MAX_SPOOL_TRANSMIT = 53
EC_TIME_FORMAT = 54
EC_ENABLE_SPOOL = 55

_EC = VarKind.EC
ECS = (
    Variable(EC_ESTABLISH_COMM_DELAY, "ESTABLISHCOMMUNICATIONSTIMEOUT", _EC, Fmt.U2, "s",
             "wait between S1F13 attempts", 1, 3600, 10),
    Variable(EC_MAX_SPOOL_SIZE, "MAXSPOOLSIZE", _EC, Fmt.U4, "messages",
             "spool limit", 1, 1_000_000, 10_000),
    Variable(EC_OVERWRITE_SPOOL, "OVERWRITESPOOL", _EC, Fmt.BOOLEAN, "",
             "when full: true drops the oldest, false keeps the oldest and counts the rest lost",
             None, None, False),
    Variable(EC_MAX_SPOOL_TRANSMIT, "MAXSPOOLTRANSMIT", _EC, Fmt.U4, "messages",
             "messages sent per S6F23 request; 0 = all", 0, 1_000_000, 0),
    Variable(EC_TIME_FORMAT, "TIMEFORMAT", _EC, Fmt.U1, "",
             "CLOCK format: 0 = YYMMDDhhmmss, 1 = YYYYMMDDhhmmsscc", 0, 1, 1),
    Variable(EC_ENABLE_SPOOL, "ENABLESPOOL", _EC, Fmt.BOOLEAN, "",
             "false: nothing is spooled (a message the host cannot take is lost, logged)",
             None, None, True),
)

# --- collection events -------------------------------------------------------------------------

CE_EQUIPMENT_OFFLINE = 1
CE_CONTROL_LOCAL = 2
CE_CONTROL_REMOTE = 3
CE_HOST_OFFLINE = 4
CE_PROCESS_STATE_CHANGED = 5
CE_LOT_STARTED = 10
CE_LOT_COMPLETED = 11
CE_LOT_ABORTED = 12
CE_LOT_HELD = 13
CE_LOT_RESUMED = 14
CE_STEP_STARTED = 20
CE_STEP_ENDED = 21
CE_DISPOSITION_NEEDED = 22
CE_WAFER_TRANSITION = 23
CE_ALARM_SET = 30
CE_ALARM_CLEARED = 31
CE_E10_STATE_CHANGED = 40
CE_TOOL_NOTE = 41
CE_PP_CHANGED = 50
CE_PP_REFUSED = 51
CE_PP_SELECTED = 52
CE_SPOOLING_ACTIVATED = 60
CE_SPOOLING_DEACTIVATED = 61

_CONTROL_DVS = (DV_PREVIOUS_CONTROL_STATE,)
_LOT_DVS = (DV_LOT_ID, DV_RECIPE, DV_LOT_STATE, DV_REASON)
_STEP_DVS = (DV_LOT_ID, DV_WAFER_ID, DV_STEP, DV_STEP_KIND, DV_TOOL)
EVENTS = (
    CollectionEvent(CE_EQUIPMENT_OFFLINE, "EQUIPMENTOFFLINE", "control state: equipment-offline",
                    _CONTROL_DVS),
    CollectionEvent(CE_CONTROL_LOCAL, "CONTROLSTATELOCAL", "control state: online-local",
                    _CONTROL_DVS),
    CollectionEvent(CE_CONTROL_REMOTE, "CONTROLSTATEREMOTE", "control state: online-remote",
                    _CONTROL_DVS),
    CollectionEvent(CE_HOST_OFFLINE, "HOSTOFFLINE", "control state: host-offline", _CONTROL_DVS),
    CollectionEvent(CE_PROCESS_STATE_CHANGED, "PROCESSSTATECHANGE",
                    "processing state changed (after the lot event that changed it)",
                    (SV_PROCESS_STATE, SV_PREVIOUS_PROCESS_STATE)),
    CollectionEvent(CE_LOT_STARTED, "LOTSTARTED", "a lot started running", _LOT_DVS),
    CollectionEvent(CE_LOT_COMPLETED, "LOTCOMPLETED", "a lot completed", _LOT_DVS),
    CollectionEvent(CE_LOT_ABORTED, "LOTABORTED", "a lot was aborted", _LOT_DVS),
    CollectionEvent(CE_LOT_HELD, "LOTHELD", "a lot was held", _LOT_DVS),
    CollectionEvent(CE_LOT_RESUMED, "LOTRESUMED", "a held lot was resumed", _LOT_DVS),
    CollectionEvent(CE_STEP_STARTED, "WAFERSTEPSTARTED", "a wafer's step started on a tool",
                    _STEP_DVS),
    CollectionEvent(CE_STEP_ENDED, "WAFERSTEPENDED", "a wafer's step ended, with its results",
                    _STEP_DVS + (DV_OUTCOME, DV_MEASUREMENTS, DV_REASON)),
    CollectionEvent(CE_DISPOSITION_NEEDED, "WAFERDISPOSITIONNEEDED",
                    "a held wafer waits for an engineer's disposition", _STEP_DVS + (DV_REASON,)),
    CollectionEvent(CE_WAFER_TRANSITION, "WAFERTRANSITION", "a wafer changed state",
                    (DV_LOT_ID, DV_WAFER_ID, DV_WAFER_STATE, DV_REASON)),
    CollectionEvent(CE_ALARM_SET, "ALARMSET", "any alarm was set (also its own set event)",
                    (DV_ALID, DV_ALTX, DV_TOOL)),
    CollectionEvent(CE_ALARM_CLEARED, "ALARMCLEARED",
                    "any alarm was cleared (also its own clear event)",
                    (DV_ALID, DV_ALTX, DV_TOOL)),
    CollectionEvent(CE_E10_STATE_CHANGED, "E10STATECHANGED", "a tool's SEMI E10 state changed",
                    (DV_TOOL, DV_E10_STATE, DV_PREVIOUS_E10_STATE, DV_REASON)),
    CollectionEvent(CE_TOOL_NOTE, "TOOLNOTE",
                    "what the operator is told of a tool (a setup change, a wait at the "
                    "tool's interlock); REASON is the text",
                    (DV_LOT_ID, DV_WAFER_ID, DV_TOOL, DV_REASON)),
    CollectionEvent(CE_PP_CHANGED, "PPCHANGED", "a process program was stored (S7F3)",
                    (DV_PPID,)),
    CollectionEvent(CE_PP_REFUSED, "PPREFUSED",
                    "a downloaded process program was refused; REASON says why",
                    (DV_PPID, DV_REASON)),
    CollectionEvent(CE_PP_SELECTED, "PPSELECTED", "PP-SELECT chose a process program",
                    (DV_PPID,)),
    CollectionEvent(CE_SPOOLING_ACTIVATED, "SPOOLINGACTIVATED",
                    "spool state: SPOOL ACTIVE (the first message went to the spool; this "
                    "report is spooled ahead of it)"),
    CollectionEvent(CE_SPOOLING_DEACTIVATED, "SPOOLINGDEACTIVATED",
                    "spool state: SPOOL INACTIVE (the spool was emptied by S6F23 transmit or "
                    "purge)"),
)

# --- alarms ------------------------------------------------------------------------------------

# Line alarms (not a tool's own): ALID < 100. Each is one condition of the line:
# 1 is set while at least one tool's link is lost (each tool's own link-lost alarm, below,
# says which), 2 while at least one wafer is held at an interlock, 3 while at least one
# alarm is set that has no ALID of its own (a tool named outside the <role>-<unit> scheme,
# or a code outside 1-999): each set with the first of its conditions, cleared with the last.
ALID_TOOL_LINK_LOST = 1
ALID_INTERLOCK = 2
ALID_UNNUMBERED = 3
LINK_LOST = "link_lost"  # the line alarms' codes on the event stream (docs/events.md)
INTERLOCK = "interlock"
LINE_ALARMS = {
    ALID_TOOL_LINK_LOST: "TOOL LINK LOST",
    ALID_INTERLOCK: "INTERLOCK",
    ALID_UNNUMBERED: "TOOL ALARM WITHOUT ITS OWN ALID",
}

# Tool alarms, ALID = 100000 × role + 1000 × unit + the tool's alarm code (../shared/specs/);
# code 0 (no tool's alarm: "none" in every spec) is the tool's link lost.
LINK_LOST_CODE = 0
TOOL_ALARMS: dict[str, dict[int, str]] = {
    "printer": {102: "PASTE EMPTY", 210: "ALIGNMENT FAILED", 220: "STENCIL CLOGGED",
                300: "SQUEEGEE PRESSURE FAULT", 400: "DOOR OPEN", 900: "EMERGENCY STOP"},
    "placer": {111: "BALL SUPPLY EMPTY", 121: "FLUX EMPTY", 230: "VACUUM FAULT",
               240: "PLACEMENT HEAD FAULT", 400: "DOOR OPEN", 900: "EMERGENCY STOP"},
    "oven": {510: "ZONE OVER TEMPERATURE", 520: "CONVEYOR JAM", 530: "EXIT BLOCKED",
             540: "O2 HIGH", 550: "N2 FLOW LOW", 560: "THERMOCOUPLE FAULT",
             900: "EMERGENCY STOP"},
    # 650 and 660: the FC-2's (a cleaner that also strips masks; flux-cleaner-fc2.md; 660
    # shortened: the ALTX with the tool's name holds 40 characters)
    "cleaner": {400: "DOOR OPEN", 610: "BATH TEMPERATURE OUT OF RANGE",
                620: "SPRAY PRESSURE LOW", 630: "DI RESISTIVITY LOW", 640: "CHEMISTRY LOW",
                650: "STRIPPER LOW", 660: "STRIP TANK TEMP OUT OF RANGE"},
    # 741 NI MTO HIGH is a warning only, an event the line does not raise as an alarm
    # (sequences/kinds/barrier.py WARNING_ONLY): no alarm of the tables
    "plater": {400: "DOOR OPEN", 700: "NI BATH TEMP OUT", 710: "AU BATH TEMP OUT",
               720: "NI PH OUT OF RANGE", 730: "TANK LEVEL LOW", 740: "NI BATH LIFE",
               900: "EMERGENCY STOP"},
}
ALCD_SET = 0x80  # bit 8 of ALCD: the alarm is set
ALCD_EQUIPMENT_SAFETY = 2  # E5 ALCD category: equipment safety
ALCD_ATTENTION = 7  # E5 ALCD category: attention flags (4 is parameter control error)


@dataclass(frozen=True)
class Alarm:
    alid: int
    text: str  # ALTX, at most 40 characters
    tool: str | None
    category: int


def _tool_alid(tool: str, code: int) -> int | None:
    number = tool_number(tool)
    if number is None:
        return None
    return 100_000 * number[0] + 1000 * number[1] + code


def tool_alarms(tool: str) -> tuple[Alarm, ...]:
    """The tool's alarms: its link lost, then its alarm codes; () for a name outside the
    <role>-<unit> scheme."""
    number = tool_number(tool)
    if number is None:
        return ()
    role, unit = number
    base = 100_000 * role + 1000 * unit
    out = [Alarm(base + LINK_LOST_CODE, f"{tool} {LINE_ALARMS[ALID_TOOL_LINK_LOST]}"[:40],
                 tool, ALCD_EQUIPMENT_SAFETY)]
    for code, text in TOOL_ALARMS[ROLES[role - 1]].items():
        category = ALCD_EQUIPMENT_SAFETY if code in (400, 900) else ALCD_ATTENTION
        out.append(Alarm(base + code, f"{tool} {text}"[:40], tool, category))
    return tuple(out)


def line_alarms() -> tuple[Alarm, ...]:
    return tuple(Alarm(alid, text, None,
                       ALCD_ATTENTION if alid == ALID_UNNUMBERED else ALCD_EQUIPMENT_SAFETY)
                 for alid, text in LINE_ALARMS.items())


# Per alarm (E30): its own set and clear collection events, CEID = 1000000 + ALID (set) and
# 2000000 + ALID (cleared). ALIDs stay below 1000000 (at most 509999), so the blocks never
# meet each other or the CEIDs above; like every id, they keep their meaning across releases.
CE_ALARM_SET_BASE = 1_000_000
CE_ALARM_CLEARED_BASE = 2_000_000
ALARM_EVENT_DVS = (DV_ALID, DV_ALTX, DV_TOOL)


def alarm_ceid(alid: int, *, is_set: bool) -> int:
    """The CEID of alarm ``alid``'s own set (or clear) collection event."""
    return (CE_ALARM_SET_BASE if is_set else CE_ALARM_CLEARED_BASE) + alid


def alarm_events(alarm: Alarm) -> tuple[CollectionEvent, CollectionEvent]:
    """Alarm ``alarm``'s set and clear collection events."""
    return (CollectionEvent(alarm_ceid(alarm.alid, is_set=True), f"ALARM{alarm.alid}SET",
                            f"{alarm.text}: set", ALARM_EVENT_DVS),
            CollectionEvent(alarm_ceid(alarm.alid, is_set=False), f"ALARM{alarm.alid}CLEARED",
                            f"{alarm.text}: cleared", ALARM_EVENT_DVS))


def alarms_of(tools: tuple[str, ...] | list[str]) -> tuple[Alarm, ...]:
    """The line alarms and the tools' alarms in the tables, line alarms first."""
    return line_alarms() + tuple(a for tool in tools for a in tool_alarms(tool))


def events_of(tools: tuple[str, ...] | list[str]) -> tuple[CollectionEvent, ...]:
    """Every collection event of a line with ``tools``: EVENTS, then each alarm's set and
    clear events (the alarms in the tables; an alarm code not listed has none)."""
    return EVENTS + tuple(e for a in alarms_of(tools) for e in alarm_events(a))


def alid_for(tool: str | None, code: object) -> int | None:
    """The ALID of the one condition an ALARM_SET/ALARM_CLEARED event names: a tool's
    numeric code or its link lost (``link_lost``) by the tool's own ALID, the line's
    interlock alarm (``interlock``); None when the condition has no ALID of its own (the
    event is then one of ALID_UNNUMBERED's conditions; a lost link is also one of
    ALID_TOOL_LINK_LOST's)."""
    if code == INTERLOCK:
        return ALID_INTERLOCK
    if tool is None:
        return None
    if code == LINK_LOST:
        return _tool_alid(tool, LINK_LOST_CODE)
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 999:
        return None  # a code in 1-999 not in the specs still gets an ALID
    return _tool_alid(tool, code)


# --- remote commands ---------------------------------------------------------------------------

COMMANDS = (
    RemoteCommand("START", (("LOTID", "A: new lot id (≤ 13 characters)"),
                            ("RECIPE", "A: recipe name; omitted: the PP-SELECTed one"),
                            ("SLOTS", "A '1-5,8' or L of U1 slot numbers"),
                            ("PRIORITY", "U1 1 (most urgent) .. 9; default 5")),
                  "queue a lot; the controller starts it (LOTSTARTED follows)"),
    RemoteCommand("HOLD", (("LOTID", "A"), ("REASON", "A, optional")),
                  "hold a lot: no new wafer of it starts"),
    RemoteCommand("RESUME", (("LOTID", "A"), ("REASON", "A, optional")),
                  "resume a held lot"),
    RemoteCommand("ABORT", (("LOTID", "A"), ("REASON", "A, required")),
                  "abort a lot: no more wafers start; wafers in the carrier are aborted"),
    RemoteCommand("PP-SELECT", (("PPID", "A: a recipe name"),),
                  "choose the recipe for the next START without RECIPE"),
)

"""From line events to GEM: which collection event (and alarm) each line event is.

The controller publishes a ``LineEvent`` only after committing it; this module
turns each into the CEID the host knows (ids.EVENTS) with its data values, and
tool/line alarms into S5F1 through the alarms capability. One place, so the
mapping table in docs/gem.md and the code cannot disagree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from controller.gem import ids
from controller.gem.context import Equipment
from controller.gem.secs2 import F8, U2, A, Item, L
from controller.line.events import EventKind, LineEvent

log = logging.getLogger("controller.gem.events")

# (state, previous) of a LOT_STATE event -> CEID; previous None matches any.
_LOT_EVENTS: tuple[tuple[str, str | None, int], ...] = (
    ("running", "held", ids.CE_LOT_RESUMED),
    ("queued", "held", ids.CE_LOT_RESUMED),
    ("running", None, ids.CE_LOT_STARTED),
    ("complete", None, ids.CE_LOT_COMPLETED),
    ("aborted", None, ids.CE_LOT_ABORTED),
    ("held", None, ids.CE_LOT_HELD),
)

# The controller carries out hold/resume/abort (from the host, the CLI or the screen) as
# requests on lots it runs and publishes OPERATOR_REQUEST, not LOT_STATE: the store
# changed the lot's state when the request was made. action -> CEID.
_LOT_REQUESTS: dict[str, int] = {
    "hold_lot": ids.CE_LOT_HELD,
    "resume_lot": ids.CE_LOT_RESUMED,
    "abort_lot": ids.CE_LOT_ABORTED,
}


def on_line_event(eq: Equipment, event: LineEvent) -> None:
    data = event.data
    common: dict[int, Item] = {ids.DV_LOT_ID: A(event.lot_id or ""),
                               ids.DV_WAFER_ID: A(event.wafer_id or ""),
                               ids.DV_TOOL: A(event.tool or "")}
    kind = event.kind
    if kind is EventKind.LOT_STATE:
        state, previous = str(data.get("state", "")), data.get("previous")
        for to, frm, ceid in _LOT_EVENTS:
            if state == to and (frm is None or previous == frm):
                eq.emit(ceid, common | {ids.DV_RECIPE: A(str(data.get("recipe", ""))),
                                        ids.DV_LOT_STATE: A(state),
                                        ids.DV_REASON: A(str(data.get("reason", "")))})
                break
        eq.status.lot_changed(event.lot_id or "", state)
    elif kind is EventKind.WAFER_TRANSITION:
        eq.emit(ids.CE_WAFER_TRANSITION, common | {
            ids.DV_WAFER_STATE: A(str(data.get("to_state", ""))),
            ids.DV_REASON: A(str(data.get("why") or data.get("trigger") or ""))})
    elif kind in (EventKind.STEP_STARTED, EventKind.STEP_ENDED, EventKind.DISPOSITION_NEEDED):
        values = common | {ids.DV_STEP: U2(int(data.get("step", 0))),
                           ids.DV_STEP_KIND: A(str(data.get("step_kind", "")))}
        if kind is EventKind.STEP_STARTED:
            eq.emit(ids.CE_STEP_STARTED, values)
        elif kind is EventKind.STEP_ENDED:
            eq.emit(ids.CE_STEP_ENDED, values | {
                ids.DV_OUTCOME: A(str(data.get("outcome", ""))),
                ids.DV_MEASUREMENTS: _measurements(data.get("measurements") or {}),
                ids.DV_REASON: A(str(data.get("why") or ""))})
        else:
            eq.emit(ids.CE_DISPOSITION_NEEDED,
                    values | {ids.DV_REASON: A(str(data.get("why") or ""))})
    elif kind in (EventKind.ALARM_SET, EventKind.ALARM_CLEARED):
        _alarm(eq, event.tool, data, is_set=kind is EventKind.ALARM_SET)
    elif kind is EventKind.OPERATOR_REQUEST and data.get("action") in _LOT_REQUESTS:
        state, recipe = eq.commands.lot_state(event.lot_id or "")
        eq.emit(_LOT_REQUESTS[data["action"]], common | {
            ids.DV_RECIPE: A(recipe), ids.DV_LOT_STATE: A(state),
            ids.DV_REASON: A(str(data.get("reason") or ""))})
        eq.status.lot_changed(event.lot_id or "", state)
    elif kind is EventKind.TOOL_STATE and event.tool:
        _tool_state(eq, event.tool, data)
    elif kind is EventKind.TOOL_NOTE:
        eq.emit(ids.CE_TOOL_NOTE, common | {ids.DV_REASON: A(str(data.get("text", "")))})


def _alarm(eq: Equipment, tool: str | None, data: Mapping[str, Any], *, is_set: bool) -> None:
    """An alarm condition set or cleared: its own ALID (a tool's code or link lost, the
    line's interlock); a lost link also counts towards the line's TOOL LINK LOST, and a
    condition without an ALID of its own towards the line's ALID_UNNUMBERED."""
    code = data.get("code")
    text = str(data.get("text", code))
    alid = ids.alid_for(tool, code)
    if alid is not None:
        eq.alarms.changed(alid, is_set=is_set, text=text, tool=tool)
    if code == ids.LINK_LOST:
        eq.alarms.grouped(ids.ALID_TOOL_LINK_LOST, tool, is_set=is_set, text=text, tool=tool)
    elif alid is None:
        if is_set:
            log.warning("alarm %r on %s has no ALID of its own (a tool named outside the "
                        "<role>-<unit> scheme, or a code outside 1-999): reported as line "
                        "alarm %d", code, tool, ids.ALID_UNNUMBERED)
        eq.alarms.grouped(ids.ALID_UNNUMBERED, (tool, str(code)), is_set=is_set, text=text,
                          tool=tool)


def _tool_state(eq: Equipment, tool: str, data: Mapping[str, Any]) -> None:
    status = eq.status
    before = status.tool_state.get(tool, ("", ""))
    e10 = str(data.get("e10_state", before[0]))
    status.tool_state[tool] = (e10, str(data.get("tool_state", before[1])))
    zones = data.get("zones_c")
    if isinstance(zones, list | tuple):  # a failed thermocouple (None) reads NaN
        status.zone_temps[tool] = tuple(math.nan if z is None else float(z) for z in zones)
    if e10 != before[0] or "previous" in data:
        eq.emit(ids.CE_E10_STATE_CHANGED, {
            ids.DV_TOOL: A(tool), ids.DV_E10_STATE: A(e10),
            # the controller's first report of a tool has previous None: nothing known before
            ids.DV_PREVIOUS_E10_STATE: A(str(data.get("previous") or before[0])),
            ids.DV_REASON: A(str(data.get("reason", "")))})


def _measurements(values: Mapping[str, Any]) -> Item:
    pairs = []
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # only numbers are measurements; texts travel in REASON
        pairs.append(L(A(str(name)), F8(float(value))))
    return L(*pairs)

"""Status data the host reads: status variables (S1F3/S1F11), equipment constants
(S2F13/S2F15/S2F29), and the values data variables carry inside events.

Line status (lots, wafer counts, tool E10 states) is read from the store when
the host asks, so it is right even after a restart or a missed event; tool
states and oven zone temperatures also follow the line events as they come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.process_state import ProcessStateModel
from controller.gem.secs2 import (
    BOOLEAN,
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    A,
    B,
    Fmt,
    Item,
    L,
    Secs2Error,
)

if TYPE_CHECKING:  # the equipment composes this capability; no import at run time
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.status")

_MAKERS: dict[Fmt, Callable[..., Item]] = {
    Fmt.U1: U1, Fmt.U2: U2, Fmt.U4: U4, Fmt.U8: U8, Fmt.I1: I1, Fmt.I2: I2, Fmt.I4: I4,
    Fmt.I8: I8, Fmt.F4: F4, Fmt.F8: F8, Fmt.BOOLEAN: BOOLEAN,
}
_EMPTY = L()


def make_item(fmt: Fmt, value: Any) -> Item:
    """An item of ``fmt`` holding a Python value (a list of items for L)."""
    if isinstance(value, Item):
        return value
    if fmt is Fmt.A:
        return A(str(value))
    if fmt is Fmt.L:
        return L(*value)
    return _MAKERS[fmt](value)


def ids_of(body: Item | None) -> list[int]:
    """Ids from a list of id items or one id array (E5 allows either; empty = all)."""
    if body is None:
        return []
    if body.fmt is Fmt.L:
        return [item.number for item in body.items]
    if body.fmt in (Fmt.A, Fmt.BOOLEAN, Fmt.F4, Fmt.F8):
        raise Secs2Error(f"expected ids, got {body!r}")
    return [int(v) for v in body.value]


U4_MAX = 2**32 - 1


def id_item(value: int) -> Item:
    """An id as we send it: U4, as docs/gem.md declares every id. An id the host sent that
    no U4 holds (negative, or larger) is no id of ours: echoed, as unknown, in I8 or U8."""
    if 0 <= value <= U4_MAX:
        return U4(value)
    return I8(value) if value < 0 else U8(value)


class StatusCapability:
    def __init__(self, eq: Equipment, tools: list[str] | tuple[str, ...]) -> None:
        self.eq = eq
        self.tools = tuple(tools)
        self.process = ProcessStateModel()  # the lots' states read at start (``read_lots``)
        self.variables: dict[int, ids.Variable] = {}
        for var in ids.LINE_SVS + ids.DVS + ids.ECS:
            self.variables[var.vid] = var
        for tool in self.tools:
            for var in ids.tool_svs(tool):
                self.variables[var.vid] = var
        self.tool_state: dict[str, tuple[str, str]] = {}  # tool -> (E10 state, tool state)
        self.zone_temps: dict[str, tuple[float, ...]] = {}
        self._constants: dict[str, Any] = {}
        for key, value in dict(eq.db.load("constants") or {}).items():
            ec = self.variables.get(int(key)) if str(key).isdigit() else None
            if ec is None or ec.kind is not ids.VarKind.EC or not _fits(ec, value):
                # e.g. an F4 stored before S2F15 checked formats: it broke S2F13 for good
                log.warning("stored equipment constant %s = %r ignored: not a value of it; "
                            "the default applies", key, value)
                continue
            self._constants[str(key)] = value

    def read_lots(self) -> None:
        """The processing state from the lots as stored (the line's running and held ones):
        the equipment's start; line events move it from then on."""
        running = self.eq.commands.snapshot().running_lots  # running and held
        self.process = ProcessStateModel(
            {lot: self.eq.commands.lot_state(lot)[0] for lot in running})

    def lot_changed(self, lot_id: str, state: str) -> None:
        """A lot's new state, heard after its own event was sent: PROCESSSTATECHANGE if the
        line's processing state moved."""
        if self.process.lot(lot_id, state):
            self.eq.emit(ids.CE_PROCESS_STATE_CHANGED, {})

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(1, 3): self._s1f3, (1, 11): self._s1f11, (1, 21): self._s1f21,
                (2, 13): self._s2f13, (2, 15): self._s2f15, (2, 29): self._s2f29}

    # -- values

    def text(self, value: str) -> Item:
        return A(value)

    def constant(self, ecid: int) -> Any:
        var = self.variables[ecid]
        if str(ecid) in self._constants:
            return self._constants[str(ecid)]
        if ecid == ids.EC_MAX_SPOOL_SIZE:
            return self.eq.config.spool_limit
        if ecid == ids.EC_OVERWRITE_SPOOL:
            return self.eq.config.spool_overwrite
        return var.default

    def values(self, vids: list[int], dvs: dict[int, Item] | None = None) -> list[Item]:
        """Each variable's value as an item; an unknown id (or a DV outside its event) is L,0."""
        snapshot = None
        out = []
        for vid in vids:
            var = self.variables.get(vid)
            if var is None:
                out.append(_EMPTY)
            elif var.kind is ids.VarKind.DV:
                out.append((dvs or {}).get(vid, _EMPTY))
            elif var.kind is ids.VarKind.EC:
                out.append(make_item(var.fmt, self.constant(vid)))
            else:
                if snapshot is None and vid in _SNAPSHOT_SVS:
                    snapshot = self.eq.commands.snapshot()
                out.append(self._sv(var, snapshot))
        return out

    def _sv(self, var: ids.Variable, snap: Any) -> Item:
        vid = var.vid
        simple = {
            ids.SV_CONTROL_STATE: lambda: U1(int(self.eq.control.state)),
            ids.SV_CLOCK: lambda: A(self.clock_text(self.eq.db.now())),
            ids.SV_MDLN: lambda: A(self.eq.mdln),
            ids.SV_SOFTREV: lambda: A(self.eq.softrev),
            ids.SV_SPOOL_COUNT_ACTUAL: lambda: U4(self.eq.db.spool_count()),
            ids.SV_SPOOL_COUNT_TOTAL: lambda: U4(self.eq.db.spool_state()["total"]),
            ids.SV_SPOOL_FULL: lambda: BOOLEAN(self.eq.db.spool_state()["full"]),
            ids.SV_SPOOL_START_TIME: lambda: self.eq.spooling.time_item("started_at"),
            ids.SV_SPOOL_FULL_TIME: lambda: self.eq.spooling.time_item("filled_at"),
            ids.SV_SPOOL_STATE: lambda: self.eq.spooling.state_item(),
            ids.SV_ALARMS_SET: lambda: L(*(U4(a) for a in sorted(self.eq.alarms.active))),
            ids.SV_ALARMS_ENABLED: lambda: L(*(U4(a) for a in sorted(self.eq.alarms.known)
                                               if a not in self.eq.alarms.disabled)),
            ids.SV_EVENTS_ENABLED: lambda: L(*(U4(c) for c in sorted(self.eq.reports.enabled))),
            ids.SV_PP_SELECTED: lambda: A(self.eq.remote.pp_selected or ""),
            ids.SV_PROCESS_STATE: lambda: U1(int(self.process.state)),
            ids.SV_PREVIOUS_PROCESS_STATE: lambda: U1(int(self.process.previous)),
        }
        if vid in simple:
            return simple[vid]()
        if vid in _SNAPSHOT_SVS:
            return {
                ids.SV_LINE_STATE: lambda: A("running" if snap.running_lots else "idle"),
                ids.SV_RUNNING_LOTS: lambda: L(*(A(x) for x in snap.running_lots)),
                ids.SV_QUEUED_LOTS: lambda: L(*(A(x) for x in snap.queued_lots)),
                ids.SV_WAFERS_GOOD: lambda: U4(snap.wafers_good),
                ids.SV_WAFERS_SCRAPPED: lambda: U4(snap.wafers_scrapped),
                ids.SV_WAFERS_IN_PROCESS: lambda: U4(snap.wafers_in_process),
            }[vid]()
        return self._tool_sv(var)

    def _tool_sv(self, var: ids.Variable) -> Item:
        offset = var.vid % 10
        tool = next(t for t in self.tools if var in ids.tool_svs(t))
        if offset == 2:
            return L(*(F4(t) for t in self.zone_temps.get(tool, ())))
        state = self.tool_state.get(tool)
        if state is None:
            stored = self.eq.commands.snapshot().tool_states.get(tool)
            state = stored or ("", "")
        return A(state[offset])

    def clock_text(self, when: datetime) -> str:
        """A time as CLOCK sends it (TIMEFORMAT); ``when`` from the database's injected
        UTC clock, shown on the host's clock once it has set it (S2F31)."""
        when = self.eq.clock.shown(when)
        if self.constant(ids.EC_TIME_FORMAT) == 0:
            return when.strftime("%y%m%d%H%M%S")
        return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 10_000:02d}"

    # -- handlers

    async def _s1f3(self, message: Message) -> Reply:
        vids = ids_of(message.body) or [v.vid for v in self._svs()]
        # E5: an SVID that is not one (an ECID, a DVID, unknown) gets a zero-length item
        return 4, L(*(self.values([v])[0] if self._is_sv(v) else _EMPTY for v in vids))

    async def _s1f11(self, message: Message) -> Reply:
        return 12, self._namelist(message, ids.VarKind.SV)

    async def _s1f21(self, message: Message) -> Reply:
        """Data variable namelist (E5 S1F21/S1F22), as S1F11 is for status variables."""
        return 22, self._namelist(message, ids.VarKind.DV)

    def _namelist(self, message: Message, kind: ids.VarKind) -> Item:
        """Each id of ``kind`` asked for (all of them for L,0) with its name and units; an
        id that is not one of them gets an empty name and units (E5)."""
        vids = ids_of(message.body) or [v.vid for v in self.variables.values()
                                         if v.kind is kind]
        out = []
        for vid in vids:
            var = self.variables.get(vid)
            if var is None or var.kind is not kind:
                out.append(L(id_item(vid), A(""), A("")))
            else:
                out.append(L(U4(vid), A(var.name), A(var.units)))
        return L(*out)

    async def _s2f13(self, message: Message) -> Reply:
        ecids = ids_of(message.body) or [v.vid for v in ids.ECS]
        return 14, L(*(self.values([e])[0] if self._is_ec(e) else _EMPTY for e in ecids))

    async def _s2f15(self, message: Message) -> Reply:
        """E30: all or nothing; a value must be of a format its constant's type allows."""
        changes = {}
        for pair in message.body.items if message.body else ():
            ecid_item, value_item = pair.items
            ecid = ecid_item.number
            if not self._is_ec(ecid):
                return 16, B(1)  # EAC 1: no such ECID
            var = self.variables[ecid]
            if value_item.fmt not in _ACCEPTED[var.fmt] or (
                    var.fmt is not Fmt.A and len(value_item.value) != 1):
                log.warning("S2F15: %s %r refused: %s takes %s", var.name, value_item,
                            var.fmt.name, "/".join(f.name for f in _ACCEPTED[var.fmt]))
                return 16, B(3)  # EAC 3: out of range (not a value of the constant)
            value = value_item.value if var.fmt is Fmt.A else value_item.scalar
            if var.fmt in (Fmt.F4, Fmt.F8):
                value = float(value)
            if not _fits(var, value):
                return 16, B(3)
            changes[str(ecid)] = value
        self._constants.update(changes)
        self.eq.db.save("constants", self._constants)
        return 16, B(0)

    async def _s2f29(self, message: Message) -> Reply:
        ecids = ids_of(message.body) or [v.vid for v in ids.ECS]
        out = []
        for ecid in ecids:
            if not self._is_ec(ecid):
                out.append(L(id_item(ecid), A(""), A(""), A(""), A(""), A("")))
                continue
            var = self.variables[ecid]
            # E5: ECMIN/ECMAX/ECDEF are never a list; no value is a zero-length A
            limits = [make_item(var.fmt, x) if x is not None else A("")
                      for x in (var.minimum, var.maximum, self._default(var))]
            out.append(L(U4(ecid), A(var.name), *limits, A(var.units)))
        return 30, L(*out)

    def _default(self, var: ids.Variable) -> Any:
        if var.vid == ids.EC_MAX_SPOOL_SIZE:
            return self.eq.config.spool_limit
        if var.vid == ids.EC_OVERWRITE_SPOOL:
            return self.eq.config.spool_overwrite
        return var.default

    def _is_sv(self, vid: int) -> bool:
        var = self.variables.get(vid)
        return var is not None and var.kind is ids.VarKind.SV

    def _is_ec(self, vid: int) -> bool:
        var = self.variables.get(vid)
        return var is not None and var.kind is ids.VarKind.EC

    def _svs(self) -> list[ids.Variable]:
        return [v for v in self.variables.values() if v.kind is ids.VarKind.SV]


_INTEGERS = frozenset({Fmt.I1, Fmt.I2, Fmt.I4, Fmt.I8, Fmt.U1, Fmt.U2, Fmt.U4, Fmt.U8})
# item formats S2F15 takes for a constant of each type: no F4 for an integer, no
# BOOLEAN for a number (stored, such a value broke S2F13 for good)
_ACCEPTED: dict[Fmt, frozenset[Fmt]] = {
    **{fmt: _INTEGERS for fmt in _INTEGERS},
    Fmt.F4: _INTEGERS | {Fmt.F4, Fmt.F8},
    Fmt.F8: _INTEGERS | {Fmt.F4, Fmt.F8},
    Fmt.A: frozenset({Fmt.A}),
    Fmt.BOOLEAN: frozenset({Fmt.BOOLEAN}),
}


def _fits(var: ids.Variable, value: Any) -> bool:
    """``value`` is one the constant can hold and send (its format, its range)."""
    if var.fmt is Fmt.BOOLEAN:
        return isinstance(value, bool)
    if var.fmt is Fmt.A:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if var.fmt in _INTEGERS and not isinstance(value, int):
        return False
    if var.minimum is not None and not var.minimum <= value:
        return False
    if var.maximum is not None and not value <= var.maximum:
        return False
    try:
        make_item(var.fmt, value)
    except Secs2Error:
        return False
    return True


_SNAPSHOT_SVS = frozenset({ids.SV_LINE_STATE, ids.SV_RUNNING_LOTS, ids.SV_QUEUED_LOTS,
                           ids.SV_WAFERS_GOOD, ids.SV_WAFERS_SCRAPPED,
                           ids.SV_WAFERS_IN_PROCESS})

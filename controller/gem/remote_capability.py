"""Remote commands: S2F41 host command send and S2F49 enhanced remote
command, for START, HOLD, RESUME, ABORT and PP-SELECT (ids.COMMANDS).

E30's rule first: a remote command is carried out only in ONLINE-REMOTE; in
ONLINE-LOCAL it is refused with HCACK 2 (cannot perform now), whoever asks.
Each command becomes the same store request an operator makes, audited with
``host`` as the actor (commands.StoreLineCommands). START is acknowledged with
HCACK 4: the lot is queued and the controller starts it, which LOTSTARTED
reports; HOLD, RESUME and ABORT take effect in the store at once (HCACK 0) and
the running controller carries them out at the wafers' next safe point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.domain import (
    DEFAULT_PRIORITY,
    RuleError,
    check_lot_id,
    check_priority,
    check_reason,
    check_slots,
    parse_slots,
)
from controller.gem import ids
from controller.gem.commands import (
    HCACK_CANNOT_NOW,
    HCACK_DONE,
    HCACK_INVALID_COMMAND,
    HCACK_LATER,
    HCACK_PARAMETER_INVALID,
    CommandRefused,
)
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import A, B, Fmt, Item, L, Secs2Error
from controller.gem.states import ControlState

if TYPE_CHECKING:
    from controller.gem.hsms import Message

log = logging.getLogger("controller.gem.remote")

CPACK_NO_NAME = 1
CPACK_BAD_VALUE = 2
CPACK_BAD_FORMAT = 3
_PARAMETERS = {c.rcmd: {name for name, _ in c.parameters} for c in ids.COMMANDS}


class _Refused(Exception):
    def __init__(self, hcack: int, cpacks: list[tuple[str, int]], reason: str) -> None:
        super().__init__(reason)
        self.hcack, self.cpacks = hcack, cpacks


class RemoteCapability:
    def __init__(self, eq: Equipment) -> None:
        self.eq = eq
        self.pp_selected: str | None = eq.db.load("pp_selected")

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(2, 41): self._s2f41, (2, 49): self._s2f49}

    async def _s2f41(self, message: Message) -> Reply:
        rcmd, params = message.item.items
        return 42, self._answer(_command_name(rcmd), params)

    async def _s2f49(self, message: Message) -> Reply:
        _dataid, _objspec, rcmd, params = message.item.items
        return 50, self._answer(_command_name(rcmd), params)

    def _answer(self, rcmd: str, params: Item) -> Item:
        pairs = []
        for param in params.items:
            name, value = param.items
            pairs.append((name.text, value))
        try:
            hcack = self.execute(rcmd, dict(pairs))
            cpacks: list[tuple[str, int]] = []
            outcome = f"HCACK {hcack}"
        except _Refused as refused:
            log.warning("host command %s refused (HCACK %d): %s", rcmd, refused.hcack, refused)
            hcack, cpacks = refused.hcack, refused.cpacks
            outcome = f"refused, HCACK {hcack}: {refused}"
        shown = ", ".join(f"{name}={_show(value)}" for name, value in pairs)
        self.eq.commands.audit("gem.rcmd", f"{rcmd}({shown}): {outcome}")
        return L(B(hcack), L(*(L(A(name), B(cpack)) for name, cpack in cpacks)))

    def execute(self, rcmd: str, params: dict[str, Item]) -> int:
        """Carry out a remote command; the HCACK, or _Refused with HCACK and CPACKs."""
        known = _PARAMETERS.get(rcmd)
        if known is None:
            raise _Refused(HCACK_INVALID_COMMAND, [], f"no remote command {rcmd!r}")
        if self.eq.control.state is not ControlState.ONLINE_REMOTE:
            raise _Refused(HCACK_CANNOT_NOW, [],
                           f"control state is {self.eq.control.state.label}, not online-remote")
        unknown = [(name, CPACK_NO_NAME) for name in params if name not in known]
        if unknown:
            raise _Refused(HCACK_PARAMETER_INVALID, unknown, "unknown parameter(s)")
        commands = self.eq.commands
        try:
            if rcmd == "START":
                # Each parameter checked on its own first, so a refusal names the right one.
                lot_id = self._checked(params, "LOTID", check_lot_id, self._text(params, "LOTID"))
                slots = self._checked(params, "SLOTS", check_slots, self._slots(params))
                priority = self._checked(params, "PRIORITY", check_priority,
                                         self._priority(params))
                recipe = self._text(params, "RECIPE", self.pp_selected)
                commands.start_lot(lot_id, recipe, slots, priority)
                return HCACK_LATER
            if rcmd == "PP-SELECT":
                ppid = self._text(params, "PPID")
                commands.check_recipe(ppid, parameter="PPID")
                self.pp_selected = ppid
                self.eq.db.save("pp_selected", ppid)
                self.eq.emit(ids.CE_PP_SELECTED, {ids.DV_PPID: A(ppid)})
                return HCACK_DONE
            lot_id = self._text(params, "LOTID")
            reason = self._checked(params, "REASON", check_reason,
                                   self._text(params, "REASON",
                                              None if rcmd == "ABORT" else ""))
            {"HOLD": commands.hold_lot, "RESUME": commands.resume_lot,
             "ABORT": commands.abort_lot}[rcmd](lot_id, reason)
            return HCACK_DONE
        except CommandRefused as exc:
            cpacks = [(exc.parameter, exc.cpack)] if exc.parameter else []
            raise _Refused(exc.hcack, cpacks, str(exc)) from None

    # -- parameters (a wrong one names itself with its CPACK)

    @staticmethod
    def _checked(params: dict[str, Item], name: str, rule: Callable[[Any], Any],
                 value: Any) -> Any:
        """``value`` through the line's own rule for it; refused naming ``name`` (CPACK 2)."""
        try:
            return rule(value)
        except RuleError as exc:
            raise _Refused(HCACK_PARAMETER_INVALID, [(name, CPACK_BAD_VALUE)],
                           str(exc)) from None

    @staticmethod
    def _text(params: dict[str, Item], name: str, default: str | None = None) -> str:
        item = params.get(name)
        if item is None:
            if default is None:
                raise _Refused(HCACK_PARAMETER_INVALID, [(name, CPACK_BAD_VALUE)],
                               f"{name} is required")
            return default
        if item.fmt is not Fmt.A:
            raise _Refused(HCACK_PARAMETER_INVALID, [(name, CPACK_BAD_FORMAT)],
                           f"{name} must be text")
        return item.text

    @staticmethod
    def _slots(params: dict[str, Item]) -> list[int]:
        item = params.get("SLOTS")
        if item is None:
            raise _Refused(HCACK_PARAMETER_INVALID, [("SLOTS", CPACK_BAD_VALUE)],
                           "SLOTS is required")
        try:
            if item.fmt is Fmt.A:
                return parse_slots(item.text)
            if item.fmt is Fmt.L:
                return [i.number for i in item.items]
            if item.fmt in (Fmt.U1, Fmt.U2, Fmt.U4, Fmt.I1, Fmt.I2, Fmt.I4):
                return [int(v) for v in item.value]
        except (RuleError, ValueError) as exc:  # a malformed list like '1-99' or 'abc'
            raise _Refused(HCACK_PARAMETER_INVALID, [("SLOTS", CPACK_BAD_VALUE)],
                           str(exc)) from None
        raise _Refused(HCACK_PARAMETER_INVALID, [("SLOTS", CPACK_BAD_FORMAT)],
                       "SLOTS must be text like '1-5,8' or a list of slot numbers")

    @staticmethod
    def _priority(params: dict[str, Item]) -> int:
        item = params.get("PRIORITY")
        if item is None:
            return DEFAULT_PRIORITY
        try:
            return item.number
        except ValueError:
            raise _Refused(HCACK_PARAMETER_INVALID, [("PRIORITY", CPACK_BAD_FORMAT)],
                           "PRIORITY must be a whole number") from None


def _command_name(rcmd: Item) -> str:
    """RCMD as text. E5 also allows U1 and I1: ours are all named, so a number is a command
    that does not exist here (HCACK 1), not illegal data."""
    if rcmd.fmt is Fmt.A:
        return rcmd.text
    if rcmd.fmt in (Fmt.U1, Fmt.I1):
        return f"#{rcmd.number}"
    raise Secs2Error(f"RCMD must be A, U1 or I1, not {rcmd.fmt.name}")


def _show(value: Item) -> str:
    shown = value.python()
    return repr(shown) if not isinstance(shown, str) else shown

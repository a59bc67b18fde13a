"""The E30 state models the host sees: communication state and control state.

Named after SEMI E30 (GEM). Both are small explicit tables rather than a
library's machine, so the rules E30 sets (which messages each state allows) read
next to the states themselves.

Communication state: DISABLED, or ENABLED and then NOT_COMMUNICATING
(WAIT_CRA after we sent S1F13, WAIT_DELAY between attempts) until an S1F13/S1F14
exchange makes it COMMUNICATING. Losing the HSMS session returns it to
NOT_COMMUNICATING.

Control state: OFFLINE (EQUIPMENT_OFFLINE, ATTEMPT_ONLINE, HOST_OFFLINE)
or ONLINE (LOCAL, REMOTE). The operator switches offline/online and local/remote;
the host asks with S1F15 (go offline) and S1F17 (go online). The control state is
persisted by the equipment (``GemSettings``) so a restart never silently
changes who is in control.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CommState(StrEnum):
    DISABLED = "disabled"
    WAIT_CRA = "wait-cra"  # S1F13 sent, awaiting S1F14
    WAIT_DELAY = "wait-delay"  # between establish attempts
    COMMUNICATING = "communicating"

    @property
    def communicating(self) -> bool:
        return self is CommState.COMMUNICATING


class ControlState(IntEnum):
    """Values as the CONTROLSTATE status variable reports them (E30 Table A.3)."""

    EQUIPMENT_OFFLINE = 1
    ATTEMPT_ONLINE = 2
    HOST_OFFLINE = 3
    ONLINE_LOCAL = 4
    ONLINE_REMOTE = 5

    @property
    def online(self) -> bool:
        return self in (ControlState.ONLINE_LOCAL, ControlState.ONLINE_REMOTE)

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class ControlError(Exception):
    """An operator switch the current control state does not allow (one line for the CLI)."""


# Primaries E30 allows while the equipment is offline: establish communications and the
# request to go online. Every other primary is answered with SxF0 (abort).
OFFLINE_ALLOWED = frozenset({(1, 13), (1, 17)})


def allowed_offline(stream: int, function: int) -> bool:
    return (stream, function) in OFFLINE_ALLOWED


class ControlModel:
    """The control state and its operator/host switches (E30).

    ``remote`` is the operator's LOCAL/REMOTE switch: it decides which ONLINE
    substate going online leads to, and is kept while offline.
    """

    def __init__(self, state: ControlState, *, remote: bool, offline_default: ControlState
                 = ControlState.EQUIPMENT_OFFLINE) -> None:
        if state is ControlState.ATTEMPT_ONLINE:  # a restart mid-attempt: try again
            state = offline_default
        self.state = state
        self.remote = remote
        self._before_attempt = offline_default

    # -- operator

    def operator_online(self) -> ControlState:
        """Start an attempt to go online (the equipment then sends S1F1)."""
        if self.state.online:
            raise ControlError(f"already {self.state.label}")
        if self.state is ControlState.HOST_OFFLINE:  # E30: the host went offline, it decides
            raise ControlError("host-offline: only the host brings it online (S1F17)")
        self._before_attempt = self.state
        self.state = ControlState.ATTEMPT_ONLINE
        return self.state

    def operator_offline(self) -> ControlState:
        if self.state is ControlState.EQUIPMENT_OFFLINE:
            raise ControlError("already equipment-offline")
        self.state = ControlState.EQUIPMENT_OFFLINE
        return self.state

    def operator_switch(self, *, remote: bool) -> ControlState:
        """The LOCAL/REMOTE switch: takes effect now when online, else on going online."""
        self.remote = remote
        if self.state.online:
            self.state = ControlState.ONLINE_REMOTE if remote else ControlState.ONLINE_LOCAL
        return self.state

    # -- outcome of an attempt

    def attempt_succeeded(self) -> ControlState:
        if self.state is ControlState.ATTEMPT_ONLINE:
            self.state = self._online()
        return self.state

    def attempt_failed(self) -> ControlState:
        if self.state is ControlState.ATTEMPT_ONLINE:
            self.state = self._before_attempt
        return self.state

    # -- host (S1F15, S1F17)

    def host_offline(self) -> int:
        """S1F15: OFLACK 0 (done). Only reachable online: offline answers SxF0 before this."""
        self.state = ControlState.HOST_OFFLINE
        return 0

    def host_online(self) -> int:
        """S1F17: ONLACK 0 accepted, 1 not allowed, 2 already online."""
        if self.state.online:
            return 2
        if self.state is not ControlState.HOST_OFFLINE:
            return 1  # equipment-offline: only the operator brings it online
        self.state = self._online()
        return 0

    def _online(self) -> ControlState:
        return ControlState.ONLINE_REMOTE if self.remote else ControlState.ONLINE_LOCAL

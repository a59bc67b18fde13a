"""What a GEM capability sees of the equipment it belongs to, as a type.

The capabilities (``*_capability.py``) and the sender are composed by
``GemEquipment``; they program against this protocol instead of importing the
equipment class, so the package has no import cycle.
"""

from __future__ import annotations

from typing import Any, Protocol

from controller.gem.commands import LineCommands
from controller.gem.config import GemConfig
from controller.gem.secs2 import Item
from controller.gem.spool import GemDatabase
from controller.gem.states import CommState, ControlModel

Reply = tuple[int, Item | None]  # (function of the reply, its body)


class Equipment(Protocol):
    config: GemConfig
    db: GemDatabase
    commands: LineCommands
    control: ControlModel
    comm: CommState
    mdln: str
    softrev: str
    # the other capabilities and the HSMS server (typed in equipment.py)
    status: Any
    alarms: Any
    reports: Any
    remote: Any
    terminal: Any
    spooling: Any
    clock: Any
    trace: Any
    sender: Any
    server: Any

    def communication_failed(self, why: str) -> None: ...

    def streams(self) -> set[int]: ...

    def emit(self, ceid: int, values: dict[int, Item], *, force: bool = False) -> None: ...

    def send_primary(self, stream: int, function: int, body: Item, what: str) -> None: ...

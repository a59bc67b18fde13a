"""What the host may ask of the line, as a small interface, and its adapter on the store.

GEM never drives tools itself: a remote command becomes the same store request
an operator's ``bumpline lot start/hold/resume/abort`` makes (controller/cli/lots.py),
audited with ``host`` as the actor, and the running controller carries it out.
``LineCommands`` is the interface the equipment is written against, so a future
controller API can replace ``StoreLineCommands`` without touching GEM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.programs import StoredRecipes
from controller.store import LotState, Store, StoreError
from sequences.errors import RecipeError
from sequences.recipes.recipe import NAME_PATTERN

HOST = "host"  # the actor in the audit log for everything the factory host asks


class CommandRefused(Exception):
    """The line cannot do what the host asked; ``hcack`` (E5) and the reason."""

    def __init__(self, hcack: int, reason: str, *, parameter: str | None = None,
                 cpack: int = 2) -> None:
        super().__init__(reason)
        self.hcack = hcack
        self.parameter = parameter  # the CPNAME at fault, answered with ``cpack``
        self.cpack = cpack


# HCACK values (E5)
HCACK_DONE = 0
HCACK_INVALID_COMMAND = 1
HCACK_CANNOT_NOW = 2
HCACK_PARAMETER_INVALID = 3
HCACK_LATER = 4  # acknowledged; completion is signalled by an event
HCACK_ALREADY = 5
HCACK_NO_OBJECT = 6


@dataclass(frozen=True)
class LineSnapshot:
    """What the status variables report about lots and tools, read in one go."""

    running_lots: tuple[str, ...] = ()
    queued_lots: tuple[str, ...] = ()
    wafers_good: int = 0
    wafers_scrapped: int = 0
    wafers_in_process: int = 0
    tool_states: dict[str, tuple[str, str]] = field(default_factory=dict)  # E10, tool state


class LineCommands(Protocol):
    def start_lot(self, lot_id: str, recipe: str, slots: Sequence[int], priority: int) -> None:
        ...

    def hold_lot(self, lot_id: str, reason: str) -> None: ...

    def resume_lot(self, lot_id: str, reason: str) -> None: ...

    def abort_lot(self, lot_id: str, reason: str) -> None: ...

    def check_recipe(self, name: str, *, parameter: str = "RECIPE") -> None:
        """Raise CommandRefused (naming ``parameter``) unless ``name`` is a recipe the line
        can run."""

    def snapshot(self) -> LineSnapshot: ...

    def lot_line(self, lot_id: str) -> str | None:
        """The line a lot is for (None: any line, or no such lot)."""

    def lot_state(self, lot_id: str) -> tuple[str, str]:
        """(state, recipe name) of a lot as stored; ("", "") when there is no such lot."""

    def unfinished_lots(self, recipe: str) -> list[str]:
        """Ids of the queued, running or held lots on ``recipe``."""

    def audit(self, action: str, detail: str) -> None:
        """Record something the host did that no lot command records (PP downloads...)."""


class StoreLineCommands:
    """``LineCommands`` on the controller's store: requests the running controller executes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._recipes = StoredRecipes(store.engine)

    def start_lot(self, lot_id: str, recipe: str, slots: Sequence[int], priority: int) -> None:
        checked = self._recipe(recipe)
        try:
            self.store.create_lot(  # for this equipment's line (none: any line that can)
                lot_id, recipe_name=checked.name, recipe_version=checked.version,
                recipe_hash=checked.hash, slots=slots, priority=priority, user=HOST,
                line_id=self.store.line_id,
            )
        except StoreError as exc:
            # The caller checked the id, slots and priority by the same rules: what is left
            # is the lot id already taken (ids are never reused).
            text = str(exc)
            raise CommandRefused(HCACK_PARAMETER_INVALID, text,
                                 parameter="LOTID" if text.startswith("lot ") else None) from None

    def hold_lot(self, lot_id: str, reason: str) -> None:
        self._own(lot_id)
        if self.lot_state(lot_id)[0] == LotState.HELD:  # E5 HCACK 5: already so
            raise CommandRefused(HCACK_ALREADY, f"lot {lot_id} is already held")
        self._change("hold", lot_id, reason)

    def resume_lot(self, lot_id: str, reason: str) -> None:
        self._own(lot_id)
        state = self.lot_state(lot_id)[0]
        if state and state != LotState.HELD:  # E5 HCACK 5 (an unknown lot: 6, below)
            raise CommandRefused(HCACK_ALREADY, f"lot {lot_id} is not held ({state})")
        self._change("resume", lot_id, reason)

    def abort_lot(self, lot_id: str, reason: str) -> None:
        self._own(lot_id)
        if self.lot_state(lot_id)[0] == LotState.ABORTED:
            raise CommandRefused(HCACK_ALREADY, f"lot {lot_id} is already aborted")
        self._change("abort", lot_id, reason)

    def check_recipe(self, name: str, *, parameter: str = "RECIPE") -> None:
        self._recipe(name, parameter)

    def audit(self, action: str, detail: str) -> None:
        self.store.audit(HOST, action, detail)

    def snapshot(self) -> LineSnapshot:
        store = self.store  # this equipment's line's lots (lines may share one database)
        running = store.list_lots([LotState.RUNNING, LotState.HELD], line_id=store.line_id)
        queued = store.list_lots([LotState.QUEUED], line_id=store.line_id)
        outcomes = [w.outcome for lot in running for w in store.wafers(lot.id)]
        return LineSnapshot(
            running_lots=tuple(lot.id for lot in reversed(running)),
            queued_lots=tuple(lot.id for lot in reversed(queued)),
            wafers_good=outcomes.count("good"),
            wafers_scrapped=outcomes.count("scrapped"),
            wafers_in_process=outcomes.count(None),
            tool_states={t.tool: (t.e10_state, t.tool_state)
                         for t in store.tool_states_latest(store.line_id)},
        )

    def unfinished_lots(self, recipe: str) -> list[str]:
        lots = self.store.list_lots([LotState.QUEUED, LotState.RUNNING, LotState.HELD])
        return [lot.id for lot in lots if lot.recipe_name == recipe]

    def lot_line(self, lot_id: str) -> str | None:
        """The line a lot is for (None: any line, or no such lot)."""
        try:
            return self.store.get_lot(lot_id).line_id
        except StoreError:
            return None

    def lot_state(self, lot_id: str) -> tuple[str, str]:
        try:
            lot = self.store.get_lot(lot_id)
        except StoreError:
            return "", ""
        return str(lot.state), lot.recipe_name

    def _recipe(self, name: str, parameter: str = "RECIPE"):  # noqa: ANN202 - a Recipe
        if not NAME_PATTERN.match(name):  # a name from the library, never a path on this host
            raise CommandRefused(HCACK_PARAMETER_INVALID, f"{name!r} is not a recipe name",
                                 parameter=parameter)
        try:
            return self._recipes(name)  # the library's, or a program the host downloaded
        except RecipeError as exc:
            first = str(exc).splitlines()[0]
            raise CommandRefused(HCACK_PARAMETER_INVALID, first, parameter=parameter) from None

    def _own(self, lot_id: str) -> None:
        """Another line's lot is no object of this equipment (lines may share a database):
        its host is that line's."""
        line = self.store.line_id
        owner = self.lot_line(lot_id)
        if line is not None and owner not in (None, line):
            raise CommandRefused(HCACK_NO_OBJECT, f"lot {lot_id} is line {owner}'s, not "
                                 f"{line}'s", parameter="LOTID")

    def _change(self, action: str, lot_id: str, reason: str) -> None:
        try:
            # As `bumpline lot hold/resume/abort`: left for the controller running the lot,
            # else carried out where safe (an abort with wafers in process is refused).
            self.store.act_on_lot(lot_id, action, user=HOST, reason=reason)
        except StoreError as exc:
            text = str(exc)
            if text.startswith("no lot"):
                raise CommandRefused(HCACK_NO_OBJECT, text, parameter="LOTID") from None
            raise CommandRefused(HCACK_CANNOT_NOW, text) from None

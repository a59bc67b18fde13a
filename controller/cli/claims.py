"""Which lots ``bumpline serve`` takes: its own line's unfinished lots, then claimed ones.

Several lines may share one database (docs/deployment.md). A lot is queued for a
line (``lot start --line-id``) or for any line; a line's controller claims a
queued lot only when the line has a tool for every role the recipe's step kinds
need, and the claim binds the lot to the line for good (``Store.claim_lot``:
exactly one controller wins it). Unfinished lots are resumed only by their own
line: a controller killed mid-lot leaves its wafers half-done on its tools, and
no other line may take them over.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from controller.domain import LotState
from sequences.kinds import recipe_roles, steps_no_tool_takes
from sequences.wafer.machine import FINAL_STATES


def in_process_layout(args: argparse.Namespace) -> dict[str, int]:
    """Tools per role of the in-process simulated line (named ``role-N`` by sim/line.py):
    one of each role but the plater, of which ``--platers`` (default none)."""
    return {"printer": 1, "placer": 1, "oven": 1, "cleaner": 1,
            "plater": getattr(args, "platers", 0)}


def line_tool_configs(args: argparse.Namespace) -> list[Any]:
    """The line's tools (``ToolConfig``): its file's, or the in-process line's, named
    ``role-N`` as sim/line.py names them, with the simulator's default models (an FC-1
    cleaner) and addresses never used (nothing is opened from these)."""
    from drivers.line_config import ToolConfig, load_line_config

    if args.line:
        return list(load_line_config(args.line).tools.values())
    transports = {"printer": "serial", "placer": "serial", "oven": "modbus-tcp",
                  "cleaner": "modbus-rtu", "plater": "text-tcp"}
    return [ToolConfig(f"{role}-{n}", role, transports[role], 1, host="127.0.0.1")
            for role, count in in_process_layout(args).items() for n in range(1, count + 1)]


def line_drivers(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(role, driver, not connected) of each tool of the line: what each can take is its
    model's (a strip needs an FC-2 cleaner), known before the line opens."""
    from drivers.clock import ScaledClock
    from drivers.tools import unopened_drivers

    return unopened_drivers(line_tool_configs(args), ScaledClock(1.0))


class LotClaims:
    """The lots this line's controller may run next, claimed in the store."""

    def __init__(
        self, store: Any, line: str, tools: list[tuple[str, Any]], recipes: Callable[[str], Any],
        user: str = "controller",
    ) -> None:
        """``tools``: (role, driver) of each tool of the line (``line_drivers``)."""
        self.store, self.line, self.tools, self.recipes = store, line, tools, recipes
        self.user = user
        self._said: set[str] = set()  # lots this line cannot run: said once
        self._stuck: set[str] = set()  # started lots this line cannot finish: run once

    def can_run(self, lot: Any) -> bool:
        why = self._cannot_run(lot)
        if why is not None:
            if lot.line_id == self.line:  # queued for this very line: a person must know
                self._say(lot.id, f"left queued: {why}")
            return False
        return True

    def _cannot_run(self, lot: Any) -> str | None:
        """Why this line cannot run the lot's recipe (None: it can)."""
        try:
            recipe = self.recipes(lot.recipe_name)
        except Exception as exc:  # a recipe gone or broken: the lot waits, said once
            return f"this line cannot run recipe {lot.recipe_name}: {exc}"
        missing = recipe_roles(recipe) - {role for role, _ in self.tools}
        if missing:
            return f"line {self.line} has no {', '.join(sorted(missing))} tool for its recipe"
        # A tool of each role, and one whose model can take each step (a strip: an FC-2).
        problems = steps_no_tool_takes(recipe, self.tools)
        return f"line {self.line}: {'; '.join(problems)}" if problems else None

    def _say(self, lot_id: str, what: str) -> None:
        if lot_id not in self._said:
            self._said.add(lot_id)
            print(f"bumpline: lot {lot_id} {what}", file=sys.stderr, flush=True)

    def unfinished(self, skip: set[str]) -> list[str]:
        """Running or held lots of this line (and lots from before lots named their line
        that started). A lot for any line that was held while still queued never started:
        it is no line's yet, and goes to the line that claims it once resumed (a line
        without a tool its recipe needs would be stuck with it)."""
        lots = self.store.list_lots([LotState.RUNNING, LotState.HELD])
        return [lot.id for lot in reversed(lots)  # oldest first
                if (lot.line_id == self.line
                    or (lot.line_id is None and lot.started_at is not None))
                and lot.id not in skip and not self._held_and_done(lot)
                and self._first_run_if_stuck(lot)]

    def _first_run_if_stuck(self, lot: Any) -> bool:
        """A started lot whose recipe needs a role this line no longer has (its line file
        changed since): run once, which recovers its wafers on the line's tools, then left
        to a person (its run ends at once with wafers waiting, and serve ran it again and
        again, a core kept busy)."""
        if lot.id in self._stuck:
            return False
        why = self._cannot_run(lot)
        if why is None:
            return True
        self._stuck.add(lot.id)
        self._say(lot.id, f"run once to recover its wafers, then left as it is: {why} "
                          "(serve it on a line that has one, or abort it)")
        return True

    def _held_and_done(self, lot: Any) -> bool:
        """A held lot whose wafers are all finished: nothing for a controller to do until a
        person resumes it (then it is running again, and the next look closes it)."""
        return lot.state == LotState.HELD.value and all(
            w.state in FINAL_STATES for w in self.store.wafers(lot.id))

    def claim(self) -> str | None:
        """Claim the next queued lot this line can run (one already claimed first)."""
        lot = self.store.claim_lot(self.line, self.can_run, user=self.user)
        return None if lot is None else lot.id

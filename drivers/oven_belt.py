"""What the oven driver knows of the belt, so a LOAD whose reply was lost is judged right
whichever way the oven counts.

reflow-oven.md does not say whether IR 11 WAFERS_ON_BELT counts a wafer that waits at
the exit (DI 1 WAFER_AT_EXIT = 1, not yet UNLOADed). An oven may count it (the count
falls at UNLOAD: our simulator by default) or count the tunnel only (the count falls
when the wafer reaches the exit). The driver does not assume either: it keeps every
*guess* that fits what it has read - which model, how many wafers ride the belt or wait
at its exit, whether one is known to wait there - and drops the guesses a read
contradicts. Once the guesses left agree on the model, it is learned for the oven's life.

A wafer that waits at the exit stays until our UNLOAD (a second arrival stops the belt,
alarm 530), so "a wafer waits at the exit" read once holds until our next UNLOAD; "none
waits" holds only at the moment it was read. Only our LOADs and UNLOADs change the
number of wafers on the belt; an arrival moves one from the tunnel to the exit.

Pure: no I/O; ``drivers/oven.py`` feeds it the reads and moves and asks it after a lost
LOAD reply (docs/protocols.md, "The belt count and a lost LOAD reply").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from drivers.errors import LinkError

# ENTRANCE_CLEAR stays 0 until the last wafer loaded has travelled 450 mm; the fastest
# belt the spec allows is 1500 mm/min: no LOAD clears the entrance sooner than this.
ENTRANCE_CLOSED_MIN_S = 450.0 / 1500.0 * 60.0


class LoadUnknown(LinkError):
    """A LOAD's reply was lost and the oven's registers cannot tell whether the wafer went
    on: the LOAD is neither repeated nor called refused. A ``LinkError`` to its callers:
    the step stays open and the wafer is settled by the oven's word later (its result at
    the exit, or a person's decision), never by a second LOAD."""


@dataclass(frozen=True)
class Guess:
    counts_exit: bool  # WAFERS_ON_BELT includes a wafer waiting at the exit
    on_belt: int  # wafers in the tunnel or waiting at the exit
    at_exit: bool  # a wafer is known to wait at the exit (until our next UNLOAD)

    def reads(self, at_exit: bool) -> int:
        """WAFERS_ON_BELT as this oven shows it with WAFER_AT_EXIT = ``at_exit``."""
        return self.on_belt - (at_exit and not self.counts_exit)

    def moved(self, wafers: int) -> Guess:
        return replace(self, on_belt=self.on_belt + wafers,
                       at_exit=self.at_exit and wafers >= 0)  # an UNLOAD empties the exit


Guesses = frozenset[Guess]


def fitting(guesses: Iterable[Guess], count: int, at_exit: bool | None) -> Guesses:
    """The guesses a read of WAFERS_ON_BELT = ``count`` leaves, WAFER_AT_EXIT then being
    ``at_exit`` (None: not known), each updated by what the read tells."""
    kept = set()
    for g in guesses:
        if at_exit is not None:
            if g.reads(at_exit) == count and not (g.at_exit and not at_exit):
                kept.add(replace(g, at_exit=g.at_exit or at_exit))
        elif g.at_exit:
            if g.reads(True) == count:
                kept.add(g)
        elif g.reads(False) == count:
            kept.add(g)
        elif g.reads(True) == count:
            kept.add(replace(g, at_exit=True))  # only a wafer waiting there explains it
    return frozenset(kept)


def from_read(count: int, at_exit: bool | None, model: bool | None) -> Guesses:
    """Every guess one read allows (``model``: the counting model if learned)."""
    models = (True, False) if model is None else (model,)
    return fitting((Guess(m, count + extra, extra > 0) for m in models for extra in (0, 1)),
                   count, at_exit)


class BeltKnowledge:
    """The guesses, valid while no LOAD or UNLOAD is in flight since they were made."""

    def __init__(self) -> None:
        self.moves = 0  # LOADs and UNLOADs sent (a failed one counts twice)
        self.in_flight = False
        self.guesses: Guesses | None = None  # None: nothing known
        self.counts_exit: bool | None = None  # the oven's model, once learned
        self.entrance_clear_at: int | None = None  # ``moves`` when ENTRANCE_CLEAR read 1

    def valid(self, moves: int) -> bool:
        """A read stamped ``moves`` (``stamp``) describes the belt now: no move was in
        flight when it was sent, and none since."""
        return moves == self.moves and not self.in_flight

    def counted(self, count: int, at_exit: bool | None, moves: int) -> None:
        """WAFERS_ON_BELT read by a request sent at ``moves`` (WAFER_AT_EXIT then, if known)."""
        if not self.valid(moves):
            return
        known = self.guesses
        left = fitting(known, count, at_exit) if known is not None else frozenset()
        # Nothing fits (a wafer moved by another host, or nothing known): start from this read.
        self._keep(left or from_read(count, at_exit, self.counts_exit))

    def flags(self, at_exit: bool, entrance_clear: bool, moves: int) -> None:
        """DI 0-1 read by a request sent at ``moves``."""
        if not self.valid(moves):
            return
        if entrance_clear:
            self.entrance_clear_at = moves  # only our LOAD closes it again
        if self.guesses is not None:
            left = frozenset(replace(g, at_exit=True) for g in self.guesses) if at_exit else \
                frozenset(g for g in self.guesses if not g.at_exit)
            self._keep(left or None)

    def exit_seen(self, moves: int) -> None:
        """A wafer was seen waiting at the exit (its id in the EXIT_ registers)."""
        if self.valid(moves) and self.guesses is not None:
            self._keep(frozenset(replace(g, at_exit=True) for g in self.guesses))

    def settled(self) -> bool:
        """A probe's count and exit read after a LOAD can tell the two answers apart: the
        guesses agree on the wafers on the belt, or on the count with a wafer known to wait
        at the exit (it stays there through the LOAD)."""
        g = self.guesses
        return g is not None and (len({x.on_belt for x in g}) == 1 or (
            all(x.at_exit for x in g) and len({x.reads(True) for x in g}) == 1))

    def teaches(self) -> bool:
        """A count read now, a wafer known to wait at the exit, would tell the model."""
        g = self.guesses
        if self.counts_exit is not None or g is None or not all(x.at_exit for x in g):
            return False
        counting = {x.reads(True) for x in g if x.counts_exit}
        tunnel = {x.reads(True) for x in g if not x.counts_exit}
        return bool(counting) and bool(tunnel) and not counting & tunnel

    def stamp(self) -> int:
        """What a read about to be sent is stamped with (-1: a move is in flight, the read
        says nothing certain of the belt)."""
        return -1 if self.in_flight else self.moves

    def sending(self) -> Guesses | None:
        """A LOAD or UNLOAD goes out: the guesses it starts from."""
        self.moves += 1
        self.in_flight = True
        return self.guesses

    def sent(self, wafers: int, guesses: Guesses | None) -> None:
        """It was carried out (``wafers``: +1 LOAD, -1 UNLOAD); ``guesses``: the belt now if
        the lost-reply probe saw it (None: the guesses before, moved)."""
        self.in_flight = False
        if guesses is None and self.guesses is not None:
            guesses = frozenset(g.moved(wafers) for g in self.guesses)
        self._keep(guesses)

    def failed(self) -> None:
        """Not known whether it was carried out: nothing is known of the belt now."""
        self.moves += 1
        self.in_flight = False
        self.guesses = None

    def _keep(self, guesses: Guesses | None) -> None:
        self.guesses = guesses or None
        if guesses and self.counts_exit is None:
            models = {g.counts_exit for g in guesses}
            if len(models) == 1:
                self.counts_exit = models.pop()


def judge_load(before: Guesses, count: int, at_exit: bool | None) -> dict[bool, Guesses]:
    """After a lost LOAD reply: the guesses that fit if the wafer went on (True) and if it
    did not (False); one of them empty is the answer. ``before``: the guesses when LOAD
    was sent; ``count``/``at_exit``: WAFERS_ON_BELT and WAFER_AT_EXIT read as one moment
    now (no UNLOAD since: the driver holds its belt lock)."""
    return {went_on: fitting((g.moved(int(went_on)) for g in before), count, at_exit)
            for went_on in (False, True)}

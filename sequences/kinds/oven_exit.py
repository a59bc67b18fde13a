"""One exit watcher per oven: every riding wafer is taken off the moment it can be there.

A wafer that reaches the exit while the one ahead still waits there stops the belt
(alarm 530, reflow-oven.md). When each riding wafer's step polled the exit for itself,
a wafer could wait there for another's poll, and at 1600x the loop's lateness alone
ate the 27 s between two wafers of the second pass. The watcher knows when each wafer
can arrive (its LOAD time, the belt speed, the 4,000 mm tunnel; wafers leave in load
order), sleeps until the first is due, and then reads the exit: the EXIT_ registers'
wafer id tells in the same read whether it has arrived and what it measured. It
unloads it at once, before its curve is read and before anything else is asked of
the oven (the entrance stands clear while an arrival is near, ``stand_clear``), and
hands the result to the wafer's step, which waits on a future instead of polling.

The oven answering busy at the exit (exception 06) is asked again until the
wafer's deadline; an oven that stops answering (a link error) leaves every
riding wafer's step open for the scheduler, which settles the belt through
``Reflow.settle_all`` once the oven answers again.

While wafers ride, the oven's alarm is known at least every ``ALARM_LOOK_S`` tool seconds:
any read that shows it counts, whoever made it (a LOAD's interlocks read IR 0-14, the
inputs hold ALARM_ACTIVE; ``ReflowOven.alarm_read``), and so does a LOAD the oven took (it
takes none in ALARM); where none did, the watcher reads ALARM_CODE itself - not within
``ALARM_YIELD_S`` of an arrival (then right after that wafer's take), and once more as the
belt empties. UNLOAD is allowed in ALARM, so an alarm that does not stop the belt (510,
540, 550, 560) leaves the riders coming out as usual: without these looks it was heard of
only at the oven's next LOAD or APPLY, naming no wafer.

An alarm the watcher finds while wafers ride (or shown by another's read) is told at once
to whoever listens for this oven (``on_alarm``, the scheduler), with every wafer on the
belt since the oven was last known without an alarm: it reports the alarm naming them,
takes the oven out of service, and clears it as soon as its cause is gone (a jam: so the
belt runs again before the riders' deadlines instead of after them). Each rider is judged
on its own exit values (EXIT_FLAGS, O2 max); an alarm that stops the belt
(``BELT_STOPPING``), and any alarm a rider found late on a look carries, is also named in
the riders' judgments.

A hold or an abort does not stop a riding wafer's step (the belt cannot be
stopped: the runner lets it ride out), so the watcher unloads every wafer whose
step still waits. A step cancelled from outside means the controller is stopping:
the watcher forgets that wafer and recovery settles the belt on the next start. A
wafer that does not come out in time fails its own step; if it shows up later the
watcher still unloads it, so the wafers behind it are not blocked. So are the wafers
recovery could not wait for on a belt an alarm stopped (``strays``), and no LOAD goes
in while they may still be on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drivers.clock import Clock
from drivers.errors import DeviceBusy, LinkError, ToolError, ToolTimeout
from drivers.turns import urgent
from drivers.types import Alarm
from sequences.kinds.base import StepResult, timeout_for

log = logging.getLogger("sequences.kinds.oven_exit")

ARRIVAL_SLACK_S = 1.0  # the belt moves in steps: a wafer may be this much later
# Two wafers reach the exit no closer than the watcher needs to take one off (its
# reaction: from the wafer's due time to its UNLOAD's reply, in tool seconds), or the
# second finds the first still there (alarm 530). The reaction is wall time - the timer
# firing late while the loop is busy or the process waits for a core, the exit read's
# and the UNLOAD's round trips - so in tool time it grows with the clock's scale and
# the machine's load: the LOADs are spaced by what the last takes needed (decision
# 0018). At wall speed it is far below the 450 mm the entrance needs anyway.
# At least: 160 tool s at 1600x, 50 at 500x. Takes measure ~5-50 ms, but a loaded 2-core
# machine stalls the controller ~0.1 s now and then: with 40 ms a 3-wafer test at 500x
# met alarm 530 in a full suite run (session 14). At wall speed it is nothing, and the
# cleaner, not the oven, sets a lot's pace, so the wider floor cost no throughput.
REACTION_WALL_S = 0.1
REACTION_SAFETY = 2.0  # times the slowest of the recent takes
REACTION_TAKES = 8  # recent takes (and LOAD round trips) remembered
# A take is the timer and two round trips (the exit read, UNLOAD): before the first
# take, and while the machine gets slower, the LOADs' own round trips (sent to reply)
# are the freshest measure of what the next take will need.
TRIPS_PER_TAKE = 3.0
REACTION_MAX_WALL_S = 0.5  # a take after a stopped belt says nothing of the next
EXIT_POLL_S = 0.5  # a wafer past its time: look this often (tool seconds)
ALARM_LOOK_AFTER_S = 30.0  # a wafer this late: look at the alarms too
# Alarms that stop the belt (reflow-oven.md: a jam, a blocked exit; an emergency stop
# stops everything): found while wafers ride, each rider's judgment names it beside its
# own EXIT_FLAGS bit 0, as a rider found late on a stopped belt always had. Alarms that
# leave the belt running are not carried: each rider's flags and O2 say what they did.
BELT_STOPPING = frozenset({520, 530, 900})
# While wafers ride, the oven's alarm is known at least this often (tool seconds): a read
# of ours (ALARM_CODE, one request) only where no other read or LOAD told it meanwhile.
ALARM_LOOK_S = 60.0
# No alarm look this close to an arrival (tool s; or the exit's reaction, if more: at
# simulator speed a timer fires late): right after that wafer's take instead.
ALARM_YIELD_S = 10.0
ALARM_RETRY_S = 5.0  # an alarm look the oven refused (06) is tried again this much later
# Wafers whose steps gave up on them (a belt an alarm stopped) ride ahead of the wafers
# loaded since, at no known time: while they do, the exit is looked at this often (tool s),
# not only at the first rider's arrival, when it would find one of them still there (530).
# A rider is loaded 450 mm behind them at least (27 s at the fastest belt, 1000 mm/min).
LATE_LOOK_S = 10.0


@dataclass
class _Rider:
    wafer_id: str
    loaded: float  # tool time of its LOAD
    due: float  # tool time it can first be at the exit
    deadline: float  # tool time its step gives up on it
    arrived: asyncio.Future[StepResult]
    latest: float  # tool time it is at the exit at the latest (from its LOAD's reply)
    alarms: list[Alarm] = field(default_factory=list)  # raised while it rode


class ExitWatch:
    """The exit of one oven. ``ride`` after each LOAD; await the future it returns."""

    def __init__(self, driver: Any, clock: Clock) -> None:
        self.driver = driver
        self.clock = clock
        self._riders: deque[_Rider] = deque()
        self._task: asyncio.Task[None] | None = None
        self._left: str | None = None  # the last wafer taken off (None: not known)
        self._late: dict[str, _Rider] = {}  # given up on by their steps, still on the belt
        self._taken = asyncio.Event()  # set after each take, for entrance work waiting
        self._entered: float | None = None  # tool time the last LOAD's reply came
        self.looks = 0  # exit reads, for the benchmark's curiosity
        self.late_looks = 0  # of which found the wafer not there yet
        self.latencies: list[float] = []  # tool s from each wafer's due time to its UNLOAD
        self._reactions: deque[float] = deque(maxlen=REACTION_TAKES)  # the same, recent
        self._trips: deque[float] = deque(maxlen=REACTION_TAKES)  # LOAD sent to its reply
        self._curve_first = False  # learnt: this oven shows no curve after UNLOAD
        self.alarm_looks = 0  # ALARM_CODE reads of the watcher's own, for the benchmark
        self._alarm_known_at = float("-inf")  # tool time its alarm was last read (or looked for)
        self._alarm_heard_at = float("-inf")  # the latest read (``alarm_read``) looked at
        # The wafers on the belt since the oven was last known without an alarm, load order:
        # the ones an alarm found now may have hit.
        self._exposed: list[str] = []
        self._latched = False  # the last alarm read showed one latched
        self._stray_transit_s = 0.0  # the longest transit of recovery's strays (``strays``)
        self._belt_running_since: float | None = None  # tool time no alarm was seen since

    def ride(self, wafer_id: str, transit_s: float, sent_at: float
             ) -> asyncio.Future[StepResult]:
        """A wafer just went on the belt (its LOAD was sent at tool time ``sent_at``): its
        result (or the step's failure) arrives on the future once it is off the exit.

        Timed from when the LOAD was sent, not from its reply: on a busy machine the
        reply can come many tool seconds after the belt took the wafer."""
        loop = asyncio.get_running_loop()
        self._prune()
        replied = self._entered if self._entered is not None else sent_at
        if replied >= sent_at:  # this LOAD's reply (an older one came before it was sent)
            self._trips.append(replied - sent_at)
        rider = _Rider(wafer_id, sent_at, sent_at + transit_s,
                       sent_at + timeout_for(transit_s), loop.create_future(),
                       max(sent_at, replied) + transit_s)
        self._riders.append(rider)
        # The oven took the LOAD: no alarm was latched when it was sent (LOAD is refused in
        # ALARM), as a read then would have shown.
        self._alarm_free(sent_at)
        if wafer_id not in self._exposed:  # a read since its LOAD was sent told it already
            self._exposed.append(wafer_id)
        rider.arrived.add_done_callback(self._step_gone)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch(), name=f"exit watch {self.driver.name}")
            self._task.add_done_callback(self._watch_ended)
        return rider.arrived

    def strays(self, wafer_ids: Iterable[str], transit_s: float) -> None:
        """Wafers recovery left on a belt it could not wait for (an alarm stopped it, and its
        cause outlasted recovery's wait): taken off whenever they come out, as a late
        rider is, and no LOAD goes in while they may be on the belt (``stand_clear``): the
        next wafer would reach the exit behind one that nobody took off (530). Looked for
        until the oven shows an empty belt, or its belt has run ``transit_s`` twice over
        without them (a person took them off by hand: warned)."""
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        for wafer_id in wafer_ids:
            arrived: asyncio.Future[StepResult] = loop.create_future()
            arrived.cancel()  # no step waits for it
            self._late[wafer_id] = _Rider(wafer_id, now, now, math.inf, arrived, now)
        self._stray_transit_s = max(self._stray_transit_s, transit_s)
        if self._late and (self._task is None or self._task.done()):
            self._task = loop.create_task(self._watch(), name=f"exit watch {self.driver.name}")
            self._task.add_done_callback(self._watch_ended)

    async def stand_clear(self, window_s: float) -> bool:
        """Wait while a wafer is due at the exit within ``window_s`` tool seconds (or is being
        taken off): the exit goes first. The entrance's requests (its look, the LOAD's
        three) share the oven's link; queued in front of a take they are what keeps a
        wafer at the exit, on a busy machine long enough for the next to reach it.
        True when it waited."""
        waited = False
        while self.has_strays or (
                self._riders and self._riders[0].due - self.clock.now() < window_s):
            waited = True
            self._taken.clear()
            await self._taken.wait()
        return waited

    def entered(self, replied_at: float) -> None:
        """A LOAD's reply came at tool time ``replied_at`` (the wafer went on before)."""
        self._entered = replied_at

    def entrance_clears_at(self, occupancy_s: float) -> float:
        """The tool time by which the last wafer loaded has cleared the entrance (the
        belt's travel ``occupancy_s`` after its LOAD's reply: the latest it can have gone
        on); minus infinity when none was loaded here."""
        if self._entered is None:
            return float("-inf")
        return self._entered + occupancy_s

    def next_load_at(self, occupancy_s: float) -> float:
        """The earliest tool time for the next LOAD: the last wafer loaded has cleared the
        entrance, and the next will reach the exit at least ``reaction_s`` after it.

        Counted from the last LOAD's reply (that wafer went on before it) to the next
        LOAD's sending (it goes on after): the belt runs at one speed for every wafer on
        it (APPLY needs an empty belt), so the arrivals are at least as far apart."""
        if self._entered is None:
            return float("-inf")
        return self._entered + max(occupancy_s, self.reaction_s())

    def reaction_s(self) -> float:
        """Tool seconds this exit needs between two arrivals: ``REACTION_SAFETY`` times the
        slowest of the recent takes (or ``TRIPS_PER_TAKE`` recent LOAD round trips, or the
        longest stall the clock's sleeps met lately, if more), at least
        ``REACTION_WALL_S`` of wall time and at most ``REACTION_MAX_WALL_S`` (none on a
        manual clock: no wall time passes). The stalls: a take they missed says nothing of
        them, and a loaded machine stalls again (a 0.29 s stall at 500x, a full suite on
        four workers, left a wafer 146 tool s at the exit: alarm 530 for the next)."""
        scale = self.clock.scale
        if not math.isfinite(scale):
            return 0.0
        seen = REACTION_SAFETY * max(max(self._reactions, default=0.0),
                                     TRIPS_PER_TAKE * max(self._trips, default=0.0),
                                     self.clock.recent_stall_s() * scale)
        return min(max(REACTION_WALL_S * scale, seen), REACTION_MAX_WALL_S * scale)

    @property
    def alarm_latched(self) -> bool:
        """The latest read of the oven's alarm showed one latched (no request: what the reads
        so far said; it may have been cleared since)."""
        return self._latched

    @property
    def has_strays(self) -> bool:
        """Recovery's strays (``strays``) may still be on the belt."""
        return any(r.deadline == math.inf for r in self._late.values())

    @property
    def riding(self) -> list[str]:
        return [r.wafer_id for r in self._riders]

    def on_belt(self, wafer_id: str) -> bool:
        """Is the wafer still riding (its step waiting for it, or given up on it)?"""
        return wafer_id in self._late or wafer_id in self.riding

    @property
    def watching_late(self) -> bool:
        """Wafers whose steps gave up on them (not at the exit in time: a belt an alarm
        stopped) may still come out, and the watcher is looking for them to take them off
        before the next reaches the exit behind them (alarm 530)."""
        return bool(self._late) and self._task is not None and not self._task.done()

    async def _watch(self) -> None:
        urgent()  # the exit's requests go before the entrance's and the status reads
        if self._left is None:
            await self._learn_left()
        while self._riders or self._late:
            if not self._riders:  # only wafers given up on: look now and then, for a while
                now = self.clock.now()
                for wafer_id, r in list(self._late.items()):
                    if now > 2 * r.deadline - r.loaded:
                        del self._late[wafer_id]
                if not self._late:
                    break
                await self.clock.sleep(ALARM_LOOK_AFTER_S)
                try:
                    await self._look()
                    if self.has_strays:
                        await self._strays_gone()
                except ToolError:
                    pass
                continue
            self._prune()
            if not self._riders:
                continue
            first = self._riders[0]
            # The belt moves in whole steps after a LOAD that came after it was sent: a
            # look at ``due`` mostly finds the wafer not there yet (a request for nothing).
            arrival = first.due + ARRIVAL_SLACK_S
            try:
                await self._heard()
                now = self.clock.now()
                # The exit first: no alarm look within the yield before a wafer is due.
                clear_until = arrival - max(ALARM_YIELD_S, self.reaction_s())
                look_at = self._alarm_known_at + ALARM_LOOK_S
                if now < clear_until and look_at <= now:  # overdue (as after a take)
                    await self._look_alarm()
                    continue
                if self._late and now + LATE_LOOK_S < arrival:
                    await self.clock.sleep(LATE_LOOK_S)  # then the exit's look below
                elif now < look_at < clear_until:
                    await self.clock.sleep(look_at - now)
                    continue  # the look, unless a read meanwhile told the alarm
                elif arrival > now:
                    await self.clock.sleep(arrival - now)
            except LinkError:
                pass  # the oven stopped answering: the exit's look below says so to all
            try:
                await self._look()
            except DeviceBusy as exc:
                # Refused at the exit (exception 06 after the link's own resends), the
                # wafer still there: look again; its deadline still bounds the wait.
                log.info("%s: %s at the exit: %s; looking again", self.driver.name,
                         first.wafer_id, exc.detail)
                if self.clock.now() >= first.deadline:
                    self._done(self._riders.popleft(), exc)
                else:
                    await self.clock.sleep(EXIT_POLL_S)
            except LinkError as exc:
                # The oven stopped answering (the link's resends are spent): every rider's
                # step is left open and the scheduler settles the belt once the oven
                # answers again (``Reflow.settle_all``); nothing more is asked here.
                while self._riders:
                    self._done(self._riders.popleft(), exc)
                self._late.clear()
                self._exposed = []  # recovery's settling reads the alarm (``settle_all``)
                # Recovery settles the belt without the watcher (``Reflow.settle_all``
                # unloads what comes out): the last wafer taken off is not known any more.
                self._left = None
            except ToolError as exc:  # the oven refused the read or the UNLOAD for good
                self._done(self._riders.popleft(), exc)

    async def _learn_left(self) -> None:
        """While the first wafer rides: whose values the exit shows. Not a rider's id, it is
        the last wafer taken off, and the first take needs one exit read before its UNLOAD
        instead of three (WAFER_AT_EXIT and a second look tell an id not known to be gone;
        under load those round trips kept the first wafer at the exit until the second
        reached it: alarm 530). A rider's id (a rebump's second pass after a restart, or a
        host held up past the arrival) stays not known: the careful way."""
        try:
            seen = await self.driver.exit_wafer_id()
        except ToolError:  # the exit's own looks report a broken link
            return
        if seen not in {r.wafer_id for r in self._riders} and seen not in self._late:
            self._left = seen

    async def _strays_gone(self) -> None:
        """Forget the strays once the oven shows an empty belt, or once its belt has run
        (no alarm latched, the conveyor on) twice their transit without them coming out.
        An alarm latched meanwhile (the jam that stopped them) is told to the listener: the
        scheduler takes the oven out of service and CLEARs it once its cause is gone, so
        the belt runs again (nobody else asks an oven no wafer rides)."""
        status = await self.driver.status()
        now = self.clock.now()
        if status.alarm_active:
            self._belt_running_since = None
            alarm = await self.driver.alarm()
            if alarm is not None:
                self._latched = True
                self._tell(alarm)
        elif not status.conveyor_running:
            self._belt_running_since = None
        elif self._belt_running_since is None:
            self._belt_running_since = now
        empty = status.wafers_on_belt == 0 and not status.wafer_at_exit
        ran = self._belt_running_since is not None and (
            now - self._belt_running_since > 2 * self._stray_transit_s)
        if not (empty or ran):
            return
        strays = [w for w, r in self._late.items() if r.deadline == math.inf]
        log.warning("%s: %s not seen at the exit (%s): no longer looked for", self.driver.name,
                    ", ".join(strays), "the belt is empty" if empty else
                    "the belt ran twice their transit")
        for wafer_id in strays:
            del self._late[wafer_id]
        self._taken.set()  # the entrance waiting for them goes on

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """The watcher stopped by a fault of its own (not the oven's: those fail the rider
        they concern): every step waiting on it fails now, naming it, instead of waiting
        for a take no one will make - and the entrance work standing clear is let go."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("%s: the exit watcher stopped: %r", self.driver.name, exc, exc_info=exc)
        error = ToolError(self.driver.name, f"the exit watcher stopped ({exc!r}): the wafer "
                          "may still be on the belt")
        while self._riders:
            rider = self._riders.popleft()
            self._late[rider.wafer_id] = rider  # on the belt for all we know (``on_belt``)
            self._done(rider, error)
        # Recovery's strays: nobody looks for them now; the entrance must not wait for them.
        for wafer_id in [w for w, r in self._late.items() if r.deadline == math.inf]:
            del self._late[wafer_id]
        self._taken.set()

    def _step_gone(self, arrived: asyncio.Future[StepResult]) -> None:
        """Every waiting step cancelled (the controller stops): the watcher stops too."""
        if arrived.cancelled() and all(r.arrived.cancelled() for r in self._riders):
            self._riders.clear()
            if self._task is not None and not self._late:
                self._task.cancel()

    def _prune(self) -> None:
        """Forget the wafers whose steps were cancelled: the controller is stopping, and
        recovery settles the belt (``Reflow.settle_all``) when it starts again."""
        if any(r.arrived.cancelled() for r in self._riders):
            self._riders = deque(r for r in self._riders if not r.arrived.cancelled())

    async def _look(self) -> None:
        """One look at the exit: take off the wafer there, or note why it is not."""
        riders = {**self._late, **{r.wafer_id: r for r in self._riders}}
        self.looks += 1
        began = self.clock.now()
        values = await self.driver.exit_values_of(riders, left=self._left)
        if values is not None:
            rider = riders[values.wafer_id]
            if self._late.pop(values.wafer_id, None) is not None:
                # Its step has failed already: off the exit so the next can come out.
                await self.driver.unload(values.wafer_id)
                self._left = values.wafer_id
                self._taken.set()  # the entrance may wait for it (a stray of recovery's)
                log.warning("%s: %s came out after its step gave up on it; unloaded (peak "
                            "%.1f °C, TAL %.1f s, O2 max %s ppm, flags %s)", self.driver.name,
                            values.wafer_id, values.peak_c, values.tal_s, values.o2_max_ppm,
                            values.flags)
                return
            # Off the exit first: the values are in hand, the curve stays until the next
            # wafer arrives (on an oven that keeps it: else read before), and that one must
            # find the exit free.
            curve_first = self._curve_first
            if curve_first:
                curve = await self._curve(rider)
            await self.driver.unload(values.wafer_id)
            self._left = values.wafer_id
            unloaded = self.clock.now()
            self.latencies.append(unloaded - rider.due)
            # Counted from the latest it can have arrived, as ``next_load_at`` counts the
            # next LOAD from this one's reply: a slow LOAD reply is not the exit's.
            self._reactions.append(max(0.0, unloaded - rider.latest))
            if not curve_first:
                curve = await self._curve(rider, after_unload=True)
            following = [r for r in self._riders if r is not rider and r.due > rider.due]
            if (curve and following and not curve_first
                    and self.clock.now() >= following[0].due - ARRIVAL_SLACK_S
                    and await self.driver.exit_wafer_id() != rider.wafer_id):
                # The next wafer reached the exit around the curve read: the curve may be
                # the next's (the EXIT_ registers change together when a wafer arrives).
                log.warning("%s: %s's curve not read before the next wafer arrived",
                            self.driver.name, rider.wafer_id)
                curve = ()
            log.debug("%s: %s due %.1f, looked +%.1f, unloaded +%.1f, curve read +%.1f; next "
                      "due +%s", self.driver.name, rider.wafer_id, rider.due, began - rider.due,
                      unloaded - rider.due, self.clock.now() - rider.due,
                      f"{following[0].due - rider.due:.1f}" if following else "-")
            result = dataclasses.replace(values, curve_c=curve)
            while self._riders[0] is not rider:  # wafers leave in load order
                ahead = self._riders.popleft()
                self._done(ahead, ToolError(self.driver.name, f"wafer {ahead.wafer_id} did "
                                            f"not come out: {rider.wafer_id}, loaded after "
                                            "it, reached the exit first"))
            if len(self._riders) == 1 and not self._late:
                await self._last_off(unloaded)
            self._done(self._riders.popleft(), StepResult(result, rider.alarms))
            return
        self.late_looks += 1
        if not self._riders:  # only wafers given up on: the caller paces the looks
            return
        first = self._riders[0]
        if self.clock.now() < first.due + ALARM_LOOK_AFTER_S:
            await self.clock.sleep(EXIT_POLL_S)
            return
        signals = await self.driver.signals()
        self._alarm_heard_at = max(self._alarm_heard_at, self.clock.now())  # told here
        if signals.alarm_active:  # recorded with every wafer on the belt, not fatal
            alarm = await self.driver.alarm()
            if alarm is not None:
                self._latched = True
                self._carry(alarm)
                self._tell(alarm)
        # Judged by when the exit was read, not by now: a host held up between sending that
        # read and this line (a busy machine: at 2000x, 0.2 s is 400 tool s) has not seen
        # the exit after the deadline, and the wafer may be there now. Look again first.
        if began >= first.deadline:
            self._late[first.wafer_id] = self._riders.popleft()
            alarm_text = "; ".join(f"alarm {a.code} {a.text}" for a in first.alarms)
            self._done(first, ToolTimeout(
                self.driver.name, f"wafer {first.wafer_id} not at the exit after "
                f"{first.deadline - first.loaded:g} s"
                + (f" ({alarm_text})" if alarm_text else "")))
            return
        await self.clock.sleep(EXIT_POLL_S)

    async def _last_off(self, unloaded: float) -> None:
        """The last rider was taken off at tool time ``unloaded`` (its step not yet told, so
        the watch ends with it): an alarm latched since the last read that showed none hit
        the wafers that rode meanwhile, and nothing else would read it before the oven's
        next LOAD or APPLY. One read, unless another's since the UNLOAD told it."""
        try:
            await self._heard()
            if self._alarm_known_at < unloaded:
                await self._look_alarm()
        except LinkError:
            pass  # the next request that needs the oven reports it

    async def _heard(self) -> None:
        """What the reads made since the last call (any caller's, ``alarm_read``) say of the
        alarm: none (the look can wait ``ALARM_LOOK_S`` from then), or one latched (read
        and told, once per read that showed it)."""
        seen = getattr(self.driver, "alarm_read", None)
        if seen is None or seen[0] <= self._alarm_heard_at:
            return
        self._alarm_heard_at = seen[0]
        if seen[1] == 0:
            self._alarm_free(seen[0])
        else:
            await self._look_alarm()  # the code and text (a flag alone has no code)

    async def _look_alarm(self) -> None:
        """Read the oven's alarm (one request) and tell it, if latched. A refusal (06) is
        tried again ALARM_RETRY_S later; a broken link is raised."""
        self.alarm_looks += 1
        sent = self.clock.now()
        try:
            alarm = await self.driver.alarm()
        except LinkError:
            raise
        except ToolError as exc:
            log.info("%s: alarm not read: %s", self.driver.name, exc)
            self._alarm_known_at = max(self._alarm_known_at,
                                       sent - ALARM_LOOK_S + ALARM_RETRY_S)
            return
        self._alarm_heard_at = max(self._alarm_heard_at, sent)
        if alarm is None:  # a flag with no code too: a damaged reply, or cleared since
            self._alarm_free(sent)
        else:
            self._latched = True
            if alarm.code in BELT_STOPPING:  # every rider stood still with it: in its record
                self._carry(alarm)
            self._tell(alarm)
            # Latched: looked at again ALARM_LOOK_S from now (the listener tells each alarm
            # once, and again only after it was cleared).
            self._alarm_known_at = max(self._alarm_known_at, sent)

    def _carry(self, alarm: Alarm) -> None:
        """Every wafer on the belt now has ``alarm`` named in its judgment."""
        for r in self._riders:
            if alarm not in r.alarms:
                r.alarms.append(alarm)

    def _alarm_free(self, at: float) -> None:
        """The oven showed no alarm at tool time ``at``: only the wafers on the belt now
        can be hit by one found later."""
        if at >= self._alarm_known_at:
            self._alarm_known_at = at
            self._latched = False
            self._exposed = [*self._late, *self.riding]

    def _tell(self, alarm: Alarm) -> None:
        """Tell the listener of this oven (the scheduler) of an alarm latched while wafers
        ride, naming every wafer on the belt since the oven was last known without one."""
        listener = _ALARM_LISTENERS.get(self.driver)
        if listener is None:
            return
        hit = list(dict.fromkeys([*self._exposed, *self._late, *self.riding]))
        try:  # each look it is latched: the listener tells once
            listener(alarm, hit)
        except Exception:  # the exit is taken care of before anyone is told
            log.exception("%s: telling of alarm %d failed", self.driver.name, alarm.code)

    async def _curve(self, rider: _Rider, *, after_unload: bool = False) -> tuple[float, ...]:
        """The exit wafer's curve, () when it cannot be read (its values stand without it).
        reflow-oven.md does not say the curve outlives UNLOAD: an oven that shows none after
        it (EXIT_CURVE_LEN 0) has the curves read before the UNLOAD from then on."""
        try:
            curve = await self.driver.exit_curve()
        except ToolError as exc:
            log.warning("%s: %s's curve not read: %s", self.driver.name, rider.wafer_id, exc)
            return ()
        if after_unload and not curve:
            self._curve_first = True
            log.warning("%s: no curve after %s's UNLOAD (this oven keeps none): curves are "
                        "read before the UNLOAD from now on", self.driver.name,
                        rider.wafer_id)
        return curve

    def _done(self, rider: _Rider, outcome: StepResult | Exception) -> None:
        self._taken.set()
        if rider.arrived.done():  # its step was stopped: the wafer is off the belt anyway
            return
        if isinstance(outcome, Exception):
            rider.arrived.set_exception(outcome)
        else:
            rider.arrived.set_result(outcome)


_WATCHES: weakref.WeakKeyDictionary[Any, ExitWatch] = weakref.WeakKeyDictionary()
# Who hears of an alarm found while wafers ride, per oven: (the alarm, the wafers on the belt).
AlarmListener = Callable[[Alarm, list[str]], None]
_ALARM_LISTENERS: weakref.WeakKeyDictionary[Any, AlarmListener] = weakref.WeakKeyDictionary()


def on_alarm(driver: Any, listener: AlarmListener) -> None:
    """Tell ``listener`` of each alarm this oven's exit watcher finds latched while wafers
    ride. One per oven: the controller running the line."""
    _ALARM_LISTENERS[driver] = listener


def off_alarm(driver: Any, listener: AlarmListener) -> None:
    """``listener`` stops listening to this oven (a later run's listener stays)."""
    if _ALARM_LISTENERS.get(driver) is listener:
        del _ALARM_LISTENERS[driver]


def exit_watch(driver: Any, clock: Clock) -> ExitWatch:
    """The one watcher of this oven."""
    watch = _WATCHES.get(driver)
    if watch is None:
        watch = _WATCHES[driver] = ExitWatch(driver, clock)
    return watch


def watch_of(driver: Any) -> ExitWatch | None:
    """This oven's watcher, if it has had wafers (the benchmark reads its latencies)."""
    return _WATCHES.get(driver)

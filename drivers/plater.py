"""Driver for the EP-25 batch barrier plater (text lines over TCP with pushed events;
spec: ../shared/specs/barrier-plater.md).

One batch (1-25 wafers in one carrier)::

    plater = BarrierPlater(link, clock, last_seq=stored_seq)
    plater.on_event(lambda event: store.save_plater_seq(plater.name, event.seq))
    await link.open()                    # handshake, then EVENTS? <last_seq>
    await plater.set_recipe(BarrierRecipe(3.0, 0.08, 85.0, 80.0))
    await plater.wait_bath_ready(timeout_s=3600)
    await plater.load("B0042", ["W01", "W02", "W03"]); await plater.start()
    result = await plater.wait_done(timeout_s=7200)
    per_wafer = [await plater.wafer_result(w) for w in ("W01", "W02", "W03")]
    await plater.unload()

Events: every event is delivered to the ``on_event`` subscribers exactly once,
in the tool's numbering order, with its ``seq``. The caller persists the last
``seq`` it was given and hands it back as ``last_seq`` next time; after any
(re)connection the driver asks ``EVENTS? <last_seq>`` and delivers what it
missed before anything newer. Without a ``last_seq`` the driver starts from the
first event it sees.

Lost replies: the link never resends. A query (``STATE?``, ``RESULT?`` ...) is
harmless to repeat and is repeated; an action (``LOAD``, ``START`` ...) is
resent only after ``STATE?`` (or ``RECIPE?``) shows the first copy was not
carried out, as the spec demands. A dropped connection is reopened on the next
command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

from drivers.clock import Clock
from drivers.errors import CommandRefused, ReplyLost, ToolAlarm, ToolError, ToolTimeout
from drivers.textline_link import EventLine, TextLineLink
from drivers.types import (
    PLATER_BATCH_MAX,
    PLATER_BATH_BAND_C,
    PLATER_WARNINGS,
    Alarm,
    BarrierRecipe,
    BatchResult,
    Identity,
    PlaterBath,
    PlaterEvent,
    PlaterState,
    PlaterStatus,
    PlaterStep,
    RunStatus,
    WaferBarrier,
)

log = logging.getLogger("drivers.plater")

EventCallback = Callable[[PlaterEvent], None]
ID_MAX = 16  # characters of a batch or wafer id
# How far the recipe RECIPE? echoes may be from what was sent and still be it: the spec gives
# no format, so a tool may round to its printed precision (au 0.075 -> "0.08"). Half a
# unit of the last digit of thicknesses printed to 0.01 µm and temperatures to 0.1 °C.
RECIPE_UM_TOLERANCE = 0.005
RECIPE_C_TOLERANCE = 0.05
_FLOAT_NOISE = 1e-9  # |0.08 - 0.075| is 0.0050000000000000044 in floats


def check_id(tool: str, what: str, value: str) -> str:
    """A batch or wafer id the plater takes: 1-16 printable, no space or comma."""
    if not (0 < len(value) <= ID_MAX and value.isprintable() and value.isascii()
            and " " not in value and "," not in value):
        raise ValueError(f"{tool}: {what} {value!r}: expected 1-{ID_MAX} printable characters, "
                         "no space or comma")
    return value


def recipe_matches(told: BarrierRecipe, wanted: BarrierRecipe) -> bool:
    """``told`` (as RECIPE? printed it) is ``wanted``, within the printed precision."""
    um = RECIPE_UM_TOLERANCE + _FLOAT_NOISE
    c = RECIPE_C_TOLERANCE + _FLOAT_NOISE
    return (abs(told.ni_um - wanted.ni_um) <= um and abs(told.au_um - wanted.au_um) <= um
            and abs(told.ni_temp_c - wanted.ni_temp_c) <= c
            and abs(told.au_temp_c - wanted.au_temp_c) <= c)


class BarrierPlater:
    def __init__(
        self,
        link: TextLineLink,
        clock: Clock,
        *,
        last_seq: int | None = None,
        poll_s: float = 30.0,
        retries: int = 2,
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"{link.tool}: poll interval must be > 0 tool seconds, got {poll_s}")
        self.link = link
        self.clock = clock
        self.poll_s = poll_s
        if retries < 0:
            raise ValueError(f"{link.tool}: retries must be >= 0, got {retries!r}")
        self.attempts = retries + 1  # per command; an action only after STATE? says so
        self.events_lost = 0  # numbers the tool no longer held when we asked for them
        self.duplicates = 0  # events seen twice (live and replayed), delivered once
        self.renumbered = 0  # times the tool's numbering went back (a tool reset or swap)
        self.catch_ups_refused = 0  # EVENTS? <last_seq> answered ERR: went on from live events
        self._last_seq = last_seq
        self._subscribers: list[EventCallback] = []
        self._holding = True  # until the first catch-up: events wait, in seq order
        self._held: list[EventLine] = []
        self._history: list[PlaterEvent] | None = None
        self._changed = asyncio.Event()
        self._rebase = False  # after a refused catch-up: the next event sets the numbering
        self._state_events = 0  # ALARM and STATE events delivered (wait_bath_ready)
        link.add_event_handler(self._on_line_event)
        link.add_connect_hook(self._catch_up, before=self._hold)

    @property
    def name(self) -> str:
        return self.link.tool

    @property
    def last_seq(self) -> int | None:
        """The number of the last event delivered (what the caller persists)."""
        return self._last_seq

    def __repr__(self) -> str:
        return f"BarrierPlater({self.name})"

    # --- events ----------------------------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on; returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    @property
    def subscribers(self) -> int:
        """How many callbacks events are delivered to now."""
        return len(self._subscribers)

    def on_link_lost(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(why)`` when the tool drops the connection (no events arrive
        until the next command reopens it); returns the unsubscriber."""
        return self.link.add_lost_handler(callback)

    def _hold(self) -> None:
        self._holding = True

    def _on_line_event(self, line: EventLine) -> None:
        if self._history is not None:
            self._history.append(PlaterEvent(line.seq, line.name, line.fields))
        if self._holding:
            self._held.append(line)
            return
        if self._history is None:
            # Live on a caught-up connection numbers only grow: the tool lost its count.
            self._follow_renumbering(line)
        self._accept(line)

    def _follow_renumbering(self, line: EventLine) -> None:
        """An event numbered at or below the last one delivered, where only new ones can
        come: the tool's numbering went back, and its events from here are new, not
        duplicates to drop."""
        last = self._last_seq
        if last is not None and line.seq <= last:
            self.renumbered += 1
            log.warning("%s: event #%d after #%d: the tool's numbering went back; "
                        "following it from here", self.name, line.seq, last)
            self._last_seq = line.seq - 1

    async def _catch_up(self) -> None:
        """After a (re)connection: what we missed, then what came live meanwhile, in order."""
        try:
            if self._last_seq is not None:
                try:
                    fields = await self._catch_up_request(f"EVENTS? {self._last_seq}")
                except CommandRefused as exc:
                    # The spec lists no error for EVENTS?; a tool that refuses it (ERR 03 for
                    # a number beyond its count: a replaced tool) must not make the link
                    # impossible to open. What we missed is gone, as in a gap: go on from
                    # the events that come, whatever their number.
                    self.catch_ups_refused += 1
                    self._rebase = True
                    log.warning("%s: catch-up refused (%s): events after #%d may be lost; "
                                "going on from live events", self.name, exc.detail,
                                self._last_seq)
                else:
                    log.info("%s: %s event(s) replayed after #%d", self.name,
                             fields[0] if fields else "?", self._last_seq)
        finally:
            held, self._held, self._holding = sorted(self._held, key=lambda e: e.seq), [], False
            for line in held:
                self._accept(line)

    async def _catch_up_request(self, line: str) -> list[str]:
        """EVENTS? on the link itself (it is opening): repeated on a lost reply; a second
        replay only brings numbers that are then dropped as duplicates."""
        for attempt in range(self.attempts):
            try:
                return await self.link.request(line)
            except ReplyLost:
                if attempt + 1 == self.attempts:
                    raise
        raise AssertionError("unreachable")

    def _accept(self, line: EventLine) -> None:
        if self._rebase:  # the first event after a refused catch-up: nothing replayed it
            self._rebase = False
            self._follow_renumbering(line)
        last = self._last_seq
        if last is not None and line.seq <= last:
            self.duplicates += 1
            return
        if last is not None and line.seq > last + 1:
            missing = line.seq - last - 1
            self.events_lost += missing
            log.warning("%s: events #%d-#%d are gone from the tool's log", self.name,
                        last + 1, line.seq - 1)
        self._last_seq = line.seq
        event = PlaterEvent(line.seq, line.name, line.fields)
        if event.name == "STATE" or (event.name == "ALARM" and not (
                event.fields[:1] and event.fields[0].isdigit()
                and int(event.fields[0]) in PLATER_WARNINGS)):
            self._state_events += 1  # the bath wait asks STATE? again (not for a warning)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("%s: event subscriber failed on #%d", self.name, line.seq)
        self._changed.set()

    async def history(self, after_seq: int) -> list[PlaterEvent]:
        """The events after ``after_seq`` the tool still holds (``EVENTS?``), as sent.

        New ones are also delivered to the subscribers as usual."""
        collected: list[PlaterEvent] = []
        self._history = collected
        try:
            count = int((await self._query(f"EVENTS? {after_seq}"))[0])
        finally:
            self._history = None
        replayed = [e for e in collected if e.seq > after_seq]
        return replayed[-count:] if count else []

    # --- requests --------------------------------------------------------------------------------

    async def _send(self, line: str) -> list[str]:
        if not self.link.is_open:
            await self.link.open()  # a dropped connection: reconnect and catch up first
        return await self.link.request(line)

    async def _query(self, line: str) -> list[str]:
        """A query changes nothing on the tool: repeated on a lost reply."""
        for attempt in range(self.attempts):
            try:
                return await self._send(line)
            except ReplyLost:
                if attempt + 1 == self.attempts:
                    raise
        raise AssertionError("unreachable")

    async def _act(self, line: str, carried_out: Callable[[], Awaitable[bool]]) -> None:
        """An action: after a lost reply, resent only if the tool shows it did not happen;
        ReplyLost when every copy's reply was lost and the tool does not show it done."""
        lost: ReplyLost | None = None
        for _ in range(self.attempts):
            try:
                await self._send(line)
                return
            except ReplyLost as exc:
                lost = exc
            if await carried_out():
                log.info("%s: %s was carried out; its reply was lost", self.name, line)
                return
        assert lost is not None
        raise lost

    def _fields(self, command: str, fields: list[str], count: int) -> list[str]:
        if len(fields) < count:
            raise ToolError(self.name, f"{command}: reply has {len(fields)} fields, expected "
                            f"{count}: {' '.join(fields)!r}")
        return fields

    def _number(self, command: str, text: str) -> float:
        """A decimal as the tool printed it. Not ``nan`` nor ``inf``, which Python's float()
        takes: a bath at NaN °C is never in band and made a wait sized from it endless."""
        try:
            value = float(text)
        except ValueError:
            raise ToolError(self.name, f"{command}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ToolError(self.name, f"{command}: {text!r} is not a number")
        return value

    # --- queries ---------------------------------------------------------------------------------

    async def identity(self) -> Identity:
        f = self._fields("*IDN?", (await self._query("*IDN?"))[0].split(","), 4)
        return Identity(vendor=f[0], model=f[1], serial=f[2], firmware=f[3])

    async def status(self) -> PlaterStatus:
        """STATE?. A step the spec's table does not name (an abort's rinse) is kept as its
        text, and ``-`` for the remaining time is None: the spec fixes neither."""
        f = self._fields("STATE?", await self._query("STATE?"), 4)
        try:
            state = PlaterState(f[0])
        except ValueError:
            raise ToolError(self.name, f"STATE?: unknown state in {' '.join(f)!r}") from None
        step: PlaterStep | str | None = None if f[2] == "-" else f[2]
        with contextlib.suppress(ValueError):
            step = PlaterStep(f[2])
        return PlaterStatus(state=state, batch_id=None if f[1] == "-" else f[1], step=step,
                            remaining_s=None if f[3] == "-" else self._number("STATE?", f[3]))

    async def state(self) -> PlaterState:
        return (await self.status()).state

    async def recipe(self) -> BarrierRecipe:
        f = [self._number("RECIPE?", v)
             for v in self._fields("RECIPE?", await self._query("RECIPE?"), 4)]
        return BarrierRecipe(ni_um=f[0], au_um=f[1], ni_temp_c=f[2], au_temp_c=f[3])

    async def bath(self) -> PlaterBath:
        f = [self._number("BATH?", v) for v in self._fields("BATH?", await self._query("BATH?"), 5)]
        return PlaterBath(ni_temp_c=f[0], au_temp_c=f[1], ni_ph=f[2], ni_mto=f[3],
                          ni_level_pct=f[4])

    async def result(self) -> BatchResult:
        """The last finished batch (RefusedUnknown before any has finished)."""
        f = self._fields("RESULT?", await self._query("RESULT?"), 7)
        try:
            status = RunStatus(f[1])
        except ValueError:
            raise ToolError(self.name, f"RESULT?: unknown batch status {f[1]!r}") from None
        n = [self._number("RESULT?", v) for v in f[2:7]]
        return BatchResult(batch_id=f[0], status=status, ni_mean_um=n[0], ni_min_um=n[1],
                           ni_max_um=n[2], au_mean_um=n[3], wafers=int(n[4]))

    async def wafer_result(self, wafer_id: str) -> WaferBarrier:
        """One wafer of the last finished batch, as the XRF head measured it."""
        check_id(self.name, "wafer id", wafer_id)
        f = self._fields("RESULT?", await self._query(f"RESULT? {wafer_id}"), 3)
        return WaferBarrier(wafer_id=f[0], ni_um=self._number("RESULT?", f[1]),
                            au_um=self._number("RESULT?", f[2]))

    async def alarm(self) -> Alarm | None:
        """The latched alarm: the one that holds the tool in ALARM; None when there is none.

        The spec leaves open whether ``ALARM?`` also names a warning (741 NI MTO HIGH, "not
        blocking"): a warning-only code is never a latched alarm. Any other code is one
        only while ``STATE?`` is ALARM (the spec's blocking alarms all put the tool in that
        state, and CLEAR is allowed there only): a code named in another state (a tool that
        keeps its last alarm, or a warning of its own) is not latched, and a CLEAR for it
        would only be refused (04). Taken for one, it kept the tool out of service for good
        (docs/protocols.md)."""
        return await self._latched()

    async def _latched(self, state: PlaterState | None = None) -> Alarm | None:
        """``alarm()``; ``state``: what STATE? just answered (not asked again)."""
        f = await self._query("ALARM?")
        code = int(self._number("ALARM?", self._fields("ALARM?", f, 1)[0]))
        if not code or code in PLATER_WARNINGS:
            return None
        text = " ".join(f[1:])
        if state is None:
            state = await self.state()
        if state is not PlaterState.ALARM:
            log.info("%s: ALARM? names %d %s while the tool is %s: not a latched alarm",
                     self.name, code, text, state)
            return None
        return Alarm(code, text)

    # --- actions ---------------------------------------------------------------------------------

    async def set_recipe(self, recipe: BarrierRecipe) -> None:
        """Store the batch recipe; a new bath setpoint starts that bath heating or cooling."""
        line = (f"RECIPE {recipe.ni_um:g} {recipe.au_um:g} {recipe.ni_temp_c:g} "
                f"{recipe.au_temp_c:g}")

        async def stored() -> bool:
            return recipe_matches(await self.recipe(), recipe)

        await self._act(line, stored)

    async def load(self, batch_id: str, wafer_ids: list[str] | tuple[str, ...]) -> None:
        """The carrier is in the load port: IDLE -> LOADED."""
        check_id(self.name, "batch id", batch_id)
        if not 1 <= len(wafer_ids) <= PLATER_BATCH_MAX:
            raise ValueError(f"{self.name}: a batch holds 1-{PLATER_BATCH_MAX} wafers, "
                             f"got {len(wafer_ids)}")
        for wafer_id in wafer_ids:
            check_id(self.name, "wafer id", wafer_id)

        async def loaded() -> bool:
            s = await self.status()
            return s.state is PlaterState.LOADED and s.batch_id == batch_id

        await self._act(f"LOAD {batch_id} {','.join(wafer_ids)}", loaded)

    async def start(self) -> None:
        """LOADED, both baths at temperature -> RUNNING.

        After a lost reply, RUNNING or DONE says it started; ALARM does not (START may
        have been refused by an alarm it raised), so START goes again and meets that
        alarm's ERR 06."""
        await self._act("START", self._state_is(PlaterState.RUNNING, PlaterState.DONE))

    async def abort(self) -> None:
        """The carrier goes to the rinse tank; the batch ends DONE with status ABORTED."""
        await self._act("ABORT", self._state_is(PlaterState.DONE, PlaterState.ALARM))

    async def unload(self) -> None:
        await self._act("UNLOAD", self._state_is(PlaterState.IDLE))

    async def clear_alarm(self) -> None:
        """Clear an alarm whose cause is gone (a batch it ended stays ended: DONE)."""
        others = tuple(s for s in PlaterState if s is not PlaterState.ALARM)
        await self._act("CLEAR", self._state_is(*others))

    async def replenish(self) -> None:
        """A fresh nickel bath: MAINT for 3,600 tool seconds."""
        await self._act("REPLENISH", self._state_is(PlaterState.MAINT))

    def _state_is(self, *states: PlaterState) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.state() in states

        return check

    # --- waiting ---------------------------------------------------------------------------------

    async def _pause(self, deadline: float, why: str) -> None:
        """Until the next event or one poll interval (tool seconds); ToolTimeout past the
        deadline. The caller clears ``_changed`` before its query, so an event that came
        with the reply still cuts the pause short."""
        remaining = deadline - self.clock.now()
        if not remaining > 0:  # a NaN deadline too (a timeout sized from a NaN): never passed
            raise ToolTimeout(self.name, why)
        sleeper = asyncio.ensure_future(self.clock.sleep(min(self.poll_s, remaining)))
        waker = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def wait_for(self, *states: PlaterState, timeout_s: float) -> PlaterStatus:
        """Until the plater is in one of ``states`` (tool seconds); ToolAlarm on an alarm
        unless ALARM is one of them."""
        if not states:
            raise ValueError(f"{self.name}: wait_for needs at least one state")
        deadline = self.clock.now() + timeout_s
        wanted = ", ".join(states)
        while True:
            self._changed.clear()
            s = await self.status()
            if s.state in states:
                return s
            if s.state is PlaterState.ALARM:
                alarm = await self._latched(s.state)
                raise ToolAlarm(self.name, alarm.code if alarm else 0,
                                alarm.text if alarm else "")
            await self._pause(deadline, f"not {wanted} within {timeout_s:g} s "
                              f"(state {s.state}, step {s.step or '-'})")

    async def wait_done(self, timeout_s: float) -> BatchResult:
        """Until the batch is DONE, then its result. A batch an alarm ended raises
        ToolAlarm (its result, status ALARM, stays readable with ``result()``)."""
        await self.wait_for(PlaterState.DONE, timeout_s=timeout_s)
        return await self.result()

    async def wait_bath_ready(self, timeout_s: float) -> PlaterBath:
        """Until both baths are within ±1 °C of the recipe's setpoints (what START needs);
        ToolAlarm as soon as the plater is in ALARM: START would be refused, and the baths
        go on heating in ALARM, so a wait of up to an hour that looked at the baths only
        waited an alarm out (or was cancelled first) and never reported it. STATE? is
        asked as the wait begins (an alarm latched before, or before we connected) and
        again after each pushed ``ALARM`` or ``STATE`` event (they also cut the pause
        short); the looks in between ask BATH? alone."""
        recipe = await self.recipe()
        deadline = self.clock.now() + timeout_s
        looked: int | None = None  # the state events counted at our last STATE?
        while True:
            self._changed.clear()
            if looked != self._state_events:
                looked = self._state_events
                s = await self.status()
                if s.state is PlaterState.ALARM:
                    alarm = await self._latched(s.state)
                    raise ToolAlarm(self.name, alarm.code if alarm else 0,
                                    alarm.text if alarm else "")
            bath = await self.bath()
            ni_off = abs(bath.ni_temp_c - recipe.ni_temp_c)
            au_off = abs(bath.au_temp_c - recipe.au_temp_c)
            if ni_off <= PLATER_BATH_BAND_C and au_off <= PLATER_BATH_BAND_C:
                return bath
            await self._pause(deadline, (
                f"baths not at temperature in {timeout_s:g} s: nickel {bath.ni_temp_c:g} °C "
                f"(setpoint {recipe.ni_temp_c:g}), gold {bath.au_temp_c:g} °C "
                f"(setpoint {recipe.au_temp_c:g})"))

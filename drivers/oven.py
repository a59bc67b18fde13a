"""Driver for the RF-10N reflow oven (Modbus TCP; spec: reflow-oven.md).

Registers are looked up by name in the oven's register map
(``drivers/maps/rf-10n.toml``), so another oven model is a new map file.
Every value crosses this module in engineering units (°C, s, ppm) as the
types of ``drivers/types.py``. Waits are in tool seconds on the injected clock.

One wafer, as the spec's worked example::

    await oven.stage_profile(profile); await oven.apply(); await oven.set_nitrogen(True)
    await oven.wait_ready(timeout_s=1800)
    await oven.load("LOT42-07")
    result = await oven.wait_exit(timeout_s=900)
    await oven.unload()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container
from typing import Any

from drivers.clock import Clock
from drivers.errors import DeviceBusy, ToolError
from drivers.modbus_link import MAX_READ_REGISTERS, ModbusLink, Probe
from drivers.modbus_tool import REFUSED_AGAIN, ModbusTool
from drivers.oven_belt import ENTRANCE_CLOSED_MIN_S, BeltKnowledge, Guesses, LoadUnknown, judge_load
from drivers.register_map import RegisterMap
from drivers.types import (
    ZONES,
    Alarm,
    OvenProcess,
    OvenReadiness,
    OvenSignals,
    OvenState,
    OvenStatus,
    ReflowProfile,
    ReflowResult,
)

DEFAULT_MODEL = "rf-10n"
# The states APPLY leads away from (to HEATING; HEATING itself is both before and after).
APPLY_LEAVES = (OvenState.READY.name, OvenState.OFF.name, OvenState.STANDBY.name)


class ReflowOven(ModbusTool[OvenState, OvenStatus]):
    DEFAULT_MODEL = DEFAULT_MODEL
    STATE = OvenState

    def __init__(
        self,
        link: ModbusLink,
        clock: Clock,
        *,
        register_map: RegisterMap | str | None = None,
        poll_s: float = 2.0,
    ) -> None:
        super().__init__(link, clock, register_map=register_map, poll_s=poll_s)
        m = self.map
        # LOAD judges a lost reply by the belt count, which an UNLOAD also changes: the two
        # exchanges never interleave (held for the requests only, not for any waiting).
        self._belt = asyncio.Lock()
        # What the reads so far say of the belt (drivers/oven_belt.py): only our LOADs and
        # UNLOADs change the wafers on it, so a count read since the last one (the
        # interlocks' status) or carried through them is LOAD's "before" without a read of
        # its own - whether or not the oven counts a wafer waiting at the exit.
        self.belt = BeltKnowledge()
        self._probed: Guesses | None = None  # the belt after a LOAD, as its probe saw it
        # The alarm as the latest read that shows it told it, whoever made the read (a LOAD's
        # interlocks, the exit watcher, a status for the host): (tool time that read was
        # sent, ALARM_CODE; -1 for ALARM_ACTIVE = 1 read without the code). The exit watcher
        # counts them, so it reads the alarm itself only where no read has told it lately.
        self.alarm_read: tuple[float, int] | None = None
        # The few requests the driver makes, worked out once from the map.
        self._profile = m.block(
            "ZONE_SP", "CONVEYOR_SPEED", "O2_LIMIT", "TAL_THRESHOLD", "PROFILE_ID"
        )
        self._process = m.block(
            "ZONE_PV", "STATE", "WAFERS_ON_BELT", "ALARM_CODE", "O2_PPM", "ACTIVE_PROFILE_ID"
        )
        self._state = m.block("STATE", "WAFERS_ON_BELT", "ALARM_CODE")
        self._watch = self._state
        self._flags = m.block("ENTRANCE_CLEAR", "WAFER_AT_EXIT", "ZONES_STABLE", "ALARM_ACTIVE")
        self._coils = m.block("N2_ON", "CONVEYOR_RUN")
        self._exit = m.block(
            "EXIT_PEAK", "EXIT_TAL", "EXIT_RAMP_MAX", "EXIT_COOL_MAX", "EXIT_PROFILE_ID",
            "EXIT_O2_MAX", "EXIT_FLAGS", "EXIT_WAFER_ID",
        )
        self._exit_values = m.block(
            "EXIT_PEAK", "EXIT_TAL", "EXIT_RAMP_MAX", "EXIT_COOL_MAX", "EXIT_PROFILE_ID",
            "EXIT_O2_MAX", "EXIT_FLAGS",
        )
        self._curve_len = m["EXIT_CURVE_LEN"]
        self._curve = m["EXIT_CURVE"]
        if m["ZONE_SP"].values != ZONES or m["ZONE_PV"].values != ZONES:
            raise ValueError(f"{m.source}: ZONE_SP and ZONE_PV must hold {ZONES} zones")

    # --- profile ---------------------------------------------------------------------------------

    async def stage_profile(self, profile: ReflowProfile) -> None:
        """Write the staging registers in one request; nothing changes on the oven until APPLY."""
        await self.regs.write_block(
            self._profile,
            {
                "ZONE_SP": profile.zone_setpoints_c,
                "CONVEYOR_SPEED": profile.conveyor_mm_min,
                "O2_LIMIT": profile.o2_limit_ppm,
                "TAL_THRESHOLD": profile.tal_threshold_c,
                "PROFILE_ID": profile.profile_id,
            },
        )

    async def staged_profile(self) -> ReflowProfile:
        """The setpoints staged now (read back from the holding registers)."""
        v = await self.regs.read_block(self._profile)
        return ReflowProfile(
            zone_setpoints_c=tuple(v["ZONE_SP"]),
            conveyor_mm_min=v["CONVEYOR_SPEED"],
            o2_limit_ppm=v["O2_LIMIT"],
            tal_threshold_c=v["TAL_THRESHOLD"],
            profile_id=v["PROFILE_ID"],
        )

    async def apply(self) -> None:
        """Make the staged profile active (belt empty, no alarm); the zones start moving."""
        await self._command("APPLY", done=self._applied)
        # An oven may show HEATING only from its next tick: a READY read that soon is the
        # old profile's (drivers/modbus_tool.py, COMMAND_APPLY_S).
        self._commanded(APPLY_LEAVES)

    async def standby(self) -> None:
        """All zones to 100 °C (belt empty)."""
        await self._command("STANDBY", done=self._in_state(OvenState.STANDBY))

    async def set_nitrogen(self, on: bool) -> None:
        await self.regs.write("N2_ON", on)

    async def set_conveyor(self, run: bool) -> None:
        """Stopping the belt flags every wafer on it."""
        await self.regs.write("CONVEYOR_RUN", run)

    # --- readings --------------------------------------------------------------------------------

    async def zone_temperatures(self) -> tuple[float | None, ...]:
        """Zone 1..10 temperatures in °C, None for a failed thermocouple: one request."""
        return await self.regs.read("ZONE_PV")

    async def process_values(self) -> OvenProcess:
        """Zones, state, belt count, alarm code, O2 and the active profile: one request."""
        moves = self.belt.stamp()
        sent = self.clock.now()
        v = await self._read_states(self._process)
        self.belt.counted(v["WAFERS_ON_BELT"], None, moves)
        self._alarm_told(sent, v["ALARM_CODE"])
        return OvenProcess(
            state=self._state_of(v["STATE"]),
            zone_pv_c=tuple(v["ZONE_PV"]),
            wafers_on_belt=v["WAFERS_ON_BELT"],
            alarm_code=v["ALARM_CODE"],
            o2_ppm=v["O2_PPM"],
            active_profile_id=v["ACTIVE_PROFILE_ID"],
        )

    async def status(self) -> OvenStatus:
        """Everything at a glance in three requests: process values, inputs, coils."""
        moves = self.belt.stamp()  # the inputs read after the count: an empty exit then
        process = await self.process_values()  # was empty while the count was read
        flags = await self._read_flags(moves)
        coils = await self.regs.read_block(self._coils)
        return OvenStatus(
            **vars(process),
            nitrogen_on=coils["N2_ON"],
            conveyor_running=coils["CONVEYOR_RUN"],
            entrance_clear=flags["ENTRANCE_CLEAR"],
            wafer_at_exit=flags["WAFER_AT_EXIT"],
            zones_stable=flags["ZONES_STABLE"],
            alarm_active=flags["ALARM_ACTIVE"],
        )

    async def readiness(self) -> OvenReadiness:
        """What a LOAD's interlocks need, in two requests: the process values and the coils
        (N2_ON, CONVEYOR_RUN: a console on another host can switch them)."""
        process = await self.process_values()
        coils = await self.regs.read_block(self._coils)
        return OvenReadiness(**vars(process), nitrogen_on=coils["N2_ON"],
                             conveyor_running=coils["CONVEYOR_RUN"])

    async def _read_flags(self, moves: int | None = None) -> dict[str, Any]:
        """Discrete inputs 0-3, told to the belt knowledge (``moves``: the stamp of an
        earlier read they vouch for; by default their own)."""
        if moves is None:
            moves = self.belt.stamp()
        sent = self.clock.now()
        flags = await self.regs.read_block(self._flags)
        self.belt.flags(flags["WAFER_AT_EXIT"], flags["ENTRANCE_CLEAR"], moves)
        self._alarm_told(sent, -1 if flags["ALARM_ACTIVE"] else 0)
        return flags

    def _alarm_told(self, sent: float, code: int) -> None:
        """A read sent at tool time ``sent`` showed ALARM_CODE ``code`` (-1: ALARM_ACTIVE
        set, the code not read): ``alarm_read``, unless a later read told it already."""
        if self.alarm_read is None or sent >= self.alarm_read[0]:
            self.alarm_read = (sent, code)

    async def alarm(self) -> Alarm | None:
        """The latched alarm, or None (ALARM_CODE: one request)."""
        sent = self.clock.now()
        alarm = await super().alarm()
        self._alarm_told(sent, alarm.code if alarm is not None else 0)
        return alarm

    async def signals(self) -> OvenSignals:
        """Entrance, exit, zones stable and alarm in one request (discrete inputs 0-3)."""
        flags = await self._read_flags()
        return OvenSignals(
            entrance_clear=flags["ENTRANCE_CLEAR"],
            wafer_at_exit=flags["WAFER_AT_EXIT"],
            zones_stable=flags["ZONES_STABLE"],
            alarm_active=flags["ALARM_ACTIVE"],
        )

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_ready(self, timeout_s: float, poll_s: float | None = None) -> None:
        """Until the oven is READY (tool seconds); ToolAlarm if it latches an alarm.

        ``poll_s`` overrides the poll interval: a 20-minute profile change needs no
        look every 2 s.
        """
        deadline = self.clock.now() + timeout_s
        while True:
            moves = self.belt.stamp()
            sent = self.clock.now()
            v = await self._read_states(self._state)
            self.belt.counted(v["WAFERS_ON_BELT"], None, moves)
            self._alarm_told(sent, v["ALARM_CODE"])
            state = self._state_of(v["STATE"])
            if state is OvenState.READY:
                return
            if state is OvenState.ALARM:
                raise self._tool_alarm(v["ALARM_CODE"])
            why = f"not READY within {timeout_s:g} s (state {state.name})"
            await self._pause_until(deadline, why, poll_s)

    async def wait_exit(self, timeout_s: float) -> ReflowResult:
        """Until a wafer waits at the exit (tool seconds), then its result."""
        deadline = self.clock.now() + timeout_s
        while True:
            flags = await self._read_flags()
            if flags["WAFER_AT_EXIT"]:
                return await self.exit_result()
            if flags["ALARM_ACTIVE"]:
                raise self._tool_alarm(await self.regs.read("ALARM_CODE"))
            await self._pause_until(deadline, f"no wafer at the exit within {timeout_s:g} s")

    # --- wafers ----------------------------------------------------------------------------------

    async def name_load(self, wafer_id: str) -> None:
        """LOAD_WAFER_ID = ``wafer_id``: the wafer the next LOAD puts on the belt. Nothing
        moves, so it may be sent before the LOAD's intent is journalled (an oven gone
        silent is found here, with no LOAD possibly sent)."""
        words = self._wafer_id_words("LOAD_WAFER_ID", wafer_id)
        reg = self.map["LOAD_WAFER_ID"]
        await self.link.write_registers(reg.address, words, what="LOAD_WAFER_ID")

    async def load(self, wafer_id: str, *, named: bool = False) -> None:
        """Put a wafer on the belt: LOAD_WAFER_ID (unless ``named``: ``name_load`` was
        just sent for it), then COMMAND = LOAD."""
        # The oven itself refuses a LOAD it cannot take (not READY, entrance not clear, no
        # nitrogen: exception 06, explained by _why_refused), so nothing is checked first.
        async with self._belt:
            belt = self.belt
            if not belt.settled():  # not known since our last LOAD/UNLOAD, or ambiguous: ask
                await self._learn_belt()
            if not named:
                await self.name_load(wafer_id)
            clear = belt.entrance_clear_at == belt.moves  # only a LOAD closes it again
            # Never sent twice: a repeat could put a second wafer on the belt once the
            # entrance clears. After a lost reply the belt count tells whether it went on.
            try:
                await self._move("LOAD", lambda before: self._went_on(
                    before, self.clock.now(), clear), 1)
            except _CannotTell as exc:
                error = LoadUnknown(self.name, f"COMMAND=LOAD of {wafer_id}: reply lost, and "
                                    f"the oven cannot tell whether it went on ({exc}); not "
                                    "sent again: the oven's word settles it later")
                error.after_lost_reply = True  # type: ignore[attr-defined]
                raise error from None

    async def exit_result(self) -> ReflowResult:
        """The exit wafer's measured profile: the EXIT_ registers, then its curve."""
        v = await self.regs.read_block(self._exit)
        return self._result(v, await self.exit_curve())

    async def exit_values(self) -> ReflowResult:
        """The EXIT_ registers as they are now (the last wafer to reach the exit: it may
        have been taken off), without the curve."""
        return self._result(await self.regs.read_block(self._exit), ())

    async def exit_values_of(self, wafer_ids: Container[str], *, left: str | None = None
                             ) -> ReflowResult | None:
        """The exit wafer's measured values, without its curve, if it is one of
        ``wafer_ids``; else None.

        One read tells whether a wafer has arrived: the EXIT_ registers keep the last
        wafer's values until the next reaches the exit, and a wafer waits there until
        UNLOAD, so the id of a wafer the caller has not unloaded means it is at the exit.
        Its curve (``exit_curve``) stays readable after UNLOAD until the next wafer arrives.

        A wafer can pass twice (a rebump's two reflows): ``left`` is the id of the last
        wafer the caller took off this exit (None: not known); when the exit shows that
        id, or ``left`` is not known, WAFER_AT_EXIT tells whether it is there again.
        """
        moves = self.belt.stamp()
        v: dict[str, Any] | None = None
        for look in range(2):
            if self.regs.in_one_read(self._exit):  # the tool lets id and values come in one
                v = await self.regs.read_block(self._exit)
                wafer_id = v["EXIT_WAFER_ID"]
            else:
                wafer_id = await self.regs.read("EXIT_WAFER_ID")
            if wafer_id not in wafer_ids:
                return None
            if look or (left is not None and wafer_id != left):
                break  # an id not yet taken off, or read after WAFER_AT_EXIT said 1
            # The id may be the one taken off last time: only WAFER_AT_EXIT tells, and a
            # wafer arriving between the two reads changes the id, so it is read again.
            if not (await self._read_flags())["WAFER_AT_EXIT"]:
                return None
        self.belt.exit_seen(moves)  # it waits there until our UNLOAD
        if v is not None and self.regs.in_one_read(self._exit):
            return self._result(v, ())
        # The RF-10N's map has a gap (IR 27-29) between the values and the id; a tool that
        # refuses to read across it (02, even in the read just made: the values then came
        # before the id) takes two reads, the id first. The values are read only once the
        # id says the wafer is there (read before, they could be the previous wafer's).
        v = await self.regs.read_block(self._exit_values)
        return self._result({**v, "EXIT_WAFER_ID": wafer_id}, ())

    async def exit_wafer_id(self) -> str:
        """EXIT_WAFER_ID alone: whose values the EXIT_ registers hold now."""
        return str(await self.regs.read("EXIT_WAFER_ID"))

    @staticmethod
    def _result(v: dict[str, Any], curve: tuple[float, ...]) -> ReflowResult:
        return ReflowResult(
            wafer_id=v["EXIT_WAFER_ID"],
            peak_c=v["EXIT_PEAK"],
            tal_s=v["EXIT_TAL"],
            ramp_max_c_s=v["EXIT_RAMP_MAX"],
            cool_max_c_s=v["EXIT_COOL_MAX"],
            profile_id=v["EXIT_PROFILE_ID"],
            o2_max_ppm=v["EXIT_O2_MAX"],
            flags=v["EXIT_FLAGS"],
            curve_c=curve,
        )

    async def exit_curve(self) -> tuple[float, ...]:
        """The exit wafer's temperature every 5 s; the length and the first samples in one read."""
        length_reg, curve = self._curve_len, self._curve
        table = curve.table
        if length_reg.table == table and length_reg.end == curve.address:
            # EXIT_CURVE_LEN sits just before the curve: read it with the first chunk.
            count = min(MAX_READ_REGISTERS, 1 + curve.count)
            first = await self.link.read(table, length_reg.address, count, what="EXIT_CURVE_LEN")
            length = first[0]
            samples = first[1 : 1 + length]
        else:
            length, samples = await self.regs.read("EXIT_CURVE_LEN"), []
        if not 0 <= length <= curve.count:
            raise ToolError(self.name, f"EXIT_CURVE_LEN = {length}: expected 0..{curve.count}")
        if len(samples) < length:
            start = curve.address + len(samples)
            samples += await self.link.read(table, start, length - len(samples), what="EXIT_CURVE")
        return curve.decode_all(samples + [0] * (curve.count - length))[:length]

    async def unload(self, wafer_id: str | None = None) -> None:
        """The host has taken the exit wafer (``wafer_id``: the one ``exit_result`` named;
        read from the exit registers when not given)."""
        if wafer_id is None:
            wafer_id = await self.regs.read("EXIT_WAFER_ID")
        # Never sent twice blindly: a repeat could release the next wafer reaching the exit.
        # After a lost reply the exit tells: our wafer is gone from it, or it is not.
        async with self._belt:
            if self.belt.teaches():
                # Once per oven: the count with a wafer known at the exit says whether the
                # oven counts it (docs/protocols.md); lost-LOAD probes need it.
                moves = self.belt.stamp()
                self.belt.counted(await self.regs.read("WAFERS_ON_BELT"), True, moves)
            await self._move("UNLOAD", lambda _: self._gone_from_exit(wafer_id), -1)

    async def clear_alarm(self) -> None:
        """Clear a latched alarm whose cause is gone (COMMAND = CLEAR)."""
        await self._command("CLEAR", done=self._alarm_gone)
        self._commanded((OvenState.ALARM.name,))  # ALARM read that soon: not applied yet

    # --- commands --------------------------------------------------------------------------------

    async def _command(self, name: str, done: Callable[[], Awaitable[bool]]) -> None:
        """COMMAND = name. ``done`` is the oven's word on whether it was carried out, which
        the link asks after a lost reply instead of sending the command again blindly."""
        for attempt in range(REFUSED_AGAIN + 1):
            try:
                await self.regs.command("COMMAND", name, done=done)
                return
            except DeviceBusy:
                reason, explained = await self._why_refused(name)
                # 06 is the oven's refusal; one nothing in its status explains is a busy
                # moment (the fault campaign's busy= faults): send again, one poll later.
                if explained or attempt == REFUSED_AGAIN:
                    raise DeviceBusy(self.name, f"COMMAND={name} ({reason})") from None
            await self.clock.sleep(self.poll_s)

    async def _move(self, name: str, done: Callable[[Guesses | None], Probe],
                    wafers: int) -> None:
        """LOAD or UNLOAD (the belt lock held), ``wafers`` onto the belt (+1) or off it
        (-1); ``done`` makes its lost-reply probe from the belt as known when it is sent.
        After a failure nothing is known of the belt (the next LOAD reads it)."""
        self._probed = None
        before = self.belt.sending()
        try:
            await self._command(name, done=done(before))
        except BaseException:
            self.belt.failed()
            raise
        self.belt.sent(wafers, self._probed)

    async def _why_refused(self, command: str) -> tuple[str, bool]:
        """What the spec says stops this command, as the oven reports it now; and whether
        that explains the refusal (False: the status allows the command)."""
        s = await self.status()
        state = f"state {s.state.name}"
        if s.alarm_code and command != "CLEAR":
            return f"{state}, alarm {s.alarm_code} latched", True
        if command in ("APPLY", "STANDBY", "UNLOAD"):
            reason = self._refusal_of(command, s, state)
            return reason, reason != f"not allowed in {state}"
        return self._refusal_of(command, s, state), True

    @staticmethod
    def _refusal_of(command: str, s: OvenStatus, state: str) -> str:
        if command == "LOAD":
            blocked = [
                text
                for ok, text in (
                    (s.state in (OvenState.READY, OvenState.PROCESSING), state),
                    (s.entrance_clear, "ENTRANCE_CLEAR = 0"),
                    (s.nitrogen_on, "N2_ON = 0"),
                )
                if not ok
            ]
            return ", ".join(blocked) or state
        if command in ("APPLY", "STANDBY") and s.wafers_on_belt:
            return f"{s.wafers_on_belt} wafer(s) on the belt"
        if command == "UNLOAD" and not s.wafer_at_exit:
            return "no wafer at the exit"
        if command == "CLEAR":
            return "the alarm's cause is still present" if s.alarm_code else "no alarm latched"
        return f"not allowed in {state}"

    def _went_on(self, before: Guesses | None, sent_at: float, entrance_was_clear: bool
                 ) -> Probe:
        """LOAD's probe: did the wafer go on? The count against the belt as known before;
        where the oven's counting model matters, WAFER_AT_EXIT with it (docs/protocols.md,
        "The belt count and a lost LOAD reply"). Raises _CannotTell rather than guess."""

        async def check() -> bool:
            if before is None:
                raise _CannotTell("nothing known of the belt before it")
            at_exit: bool | None = None
            clear: bool | None = None
            read_at = 0.0
            if self.belt.counts_exit:  # the count alone tells, the exit aside
                count = await self.regs.read("WAFERS_ON_BELT")
            else:
                count, at_exit, clear, read_at = await self._count_and_exit()
            fits = judge_load(before, count, at_exit)
            if fits[True] and fits[False] and clear is not None:
                # Both fit (a wafer waits at the exit; the model not known): the entrance
                # tells if it can. Closed after our LOAD on a clear one: it went on. Clear
                # sooner than any belt speed clears it after a LOAD: it did not.
                if not clear and entrance_was_clear:
                    fits[False] = frozenset()
                elif clear and read_at - sent_at < ENTRANCE_CLOSED_MIN_S:
                    fits[True] = frozenset()
            if fits[True] and fits[False]:
                raise _CannotTell(f"WAFERS_ON_BELT = {count} with a wafer at the exit fits "
                                  "either way: whether the oven counts that wafer is not "
                                  "known yet")
            if not (fits[True] or fits[False]):
                raise _CannotTell(f"WAFERS_ON_BELT = {count} fits neither")
            went_on = bool(fits[True])
            # The belt once the LOAD is done: as seen, or as seen plus the LOAD sent again.
            self._probed = fits[True] if went_on else frozenset(g.moved(1) for g in fits[False])
            return went_on

        return check

    async def _count_and_exit(self) -> tuple[int, bool, bool, float]:
        """WAFERS_ON_BELT and WAFER_AT_EXIT as of one moment (the belt lock held: no UNLOAD
        meanwhile), with ENTRANCE_CLEAR and the tool time it was read by. An empty exit
        read after the count was empty while it was read; a wafer there stays, so the
        count is read again after it: two requests, three when a wafer waits there."""
        count = await self.regs.read("WAFERS_ON_BELT")
        flags = await self.regs.read_block(self._flags)
        read_at = self.clock.now()
        if flags["WAFER_AT_EXIT"]:
            count = await self.regs.read("WAFERS_ON_BELT")
        return count, flags["WAFER_AT_EXIT"], flags["ENTRANCE_CLEAR"], read_at

    async def _learn_belt(self) -> None:
        """Before a LOAD, when the reads so far leave the belt ambiguous (at the oven's
        first LOAD, after a failed move): the inputs first (an empty exit settles the
        interlocks' count), then the count and the exit as one moment if still needed."""
        belt = self.belt
        if belt.guesses is not None:
            await self._read_flags()
            if belt.settled():
                return
        moves = belt.stamp()
        count, at_exit, clear, _ = await self._count_and_exit()
        belt.counted(count, at_exit, moves)
        belt.flags(at_exit, clear, moves)

    def _gone_from_exit(self, wafer_id: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            # Results stay until the next wafer reaches the exit: an empty exit, or another
            # wafer's id there, means ours was taken.
            if not (await self.regs.read_block(self._flags))["WAFER_AT_EXIT"]:
                return True
            return await self.regs.read("EXIT_WAFER_ID") != wafer_id

        return check

    async def _applied(self) -> bool:
        # The staged tag is active and the zones are moving to it (or already there). A
        # profile that was active already reads the same: applying it again changes nothing.
        state = self._state_of(await self.regs.read("STATE"))
        active = await self.regs.read("ACTIVE_PROFILE_ID")
        staged = await self.regs.read("PROFILE_ID")
        return active == staged and state in (OvenState.HEATING, OvenState.READY)

    def _in_state(self, state: OvenState) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.state() is state

        return check

    async def _alarm_gone(self) -> bool:
        return not (await self.regs.read_block(self._flags))["ALARM_ACTIVE"]


class _CannotTell(Exception):
    """LOAD's probe cannot tell whether the wafer went on (not a LinkError: the link would
    take it for a silent tool); ``load`` reports it as ``LoadUnknown``."""

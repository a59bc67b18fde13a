"""Driver for the FC-1 flux cleaner and the FC-2 cleaner/stripper (Modbus RTU;
specs: flux-cleaner.md, flux-cleaner-fc2.md).

Registers are looked up by name in the cleaner's register map
(``drivers/maps/fc-1.toml``, ``fc-2.toml``): one driver serves both models, and
the FC-2's extra registers are read wherever its map has them. What a map cannot
say lives here: MODE is written before every LOAD on a model that has it (the
tool reads it at LOAD), a strip is refused on a model without RESIST_STRIP, and a
strip's START waits on the strip tank rather than the wash bath. Values cross
this module in engineering units as the types of ``drivers/types.py``; waits are
in tool seconds on the injected clock.

One wafer::

    await cleaner.set_recipe(recipe)            # FC-2 strip: set_strip_recipe(...)
    await cleaner.wait_bath_ready(timeout_s=1200)  # strip: mode=CleanMode.RESIST_STRIP
    await cleaner.load("LOT42-07"); await cleaner.start()   # strip: load(..., mode=...)
    result = await cleaner.wait_result(timeout_s=1200)  # or wait_done(), then result()
    await cleaner.unload()
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from drivers.clock import Clock
from drivers.errors import DeviceBusy, NotSupported, ToolError
from drivers.modbus_link import ModbusLink
from drivers.modbus_tool import REFUSED_AGAIN, ModbusTool
from drivers.register_map import RegisterMap
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanMode,
    CleanRecipe,
    CleanResult,
    CleanStatus,
    StripRecipe,
)

DEFAULT_MODEL = "fc-1"
CYCLE_STATES = (
    CleanerState.WASHING, CleanerState.STRIPPING, CleanerState.RINSING, CleanerState.DRYING
)
# The states each command is allowed from (../shared/specs/flux-cleaner.md, COMMAND table);
# START also needs its tank within START_BAND_C of the setpoint. The FC-2 keeps the FC-1's
# COMMAND codes, ABORT's row included: a 06 to ABORT while STRIPPING is the spec's refusal,
# not a busy moment to send it again for (a tool may still take it: it is sent).
ALLOWED_FROM = {
    "LOAD": (CleanerState.IDLE, CleanerState.READY),
    "START": (CleanerState.LOADED,),
    "UNLOAD": (CleanerState.DONE,),
    "ABORT": (CleanerState.WASHING, CleanerState.RINSING, CleanerState.DRYING),
}
# The states a command leads away from: a read showing one this soon after it (a tool
# carrying commands out on its next tick) is from before it (COMMAND_APPLY_S). ABORT's are
# the cycle states, STRIPPING too: it is sent there (a tool may take it).
LEAVES = {
    **{name: frozenset(s.name for s in states) for name, states in ALLOWED_FROM.items()},
    "ABORT": frozenset(s.name for s in CYCLE_STATES),
    "CLEAR": frozenset({CleanerState.ALARM.name}),
}
log = logging.getLogger("drivers.cleaner")

START_BAND_C = 2.0
# The tank readings' resolution (IR 1, IR 7: 0.1 °C). START's check may use the tool's own
# finer value, and "within ±2 °C" may or may not take in the edge: a reading of exactly
# setpoint ± 2.0 can be 0.05 °C outside for the tool. Ready means one step inside.
READING_STEP_C = 0.1
EDGE_WAIT_S = 300.0  # a START refused at the band's edge: the tank this long to move in
UNEXPLAINED = " - yet the state allows it"
# What START checks in each mode: (setpoint, reading, what it is called).
_TANKS = {
    CleanMode.FLUX_CLEAN: ("WASH_TEMP_SP", "WASH_TEMP_PV", "bath"),
    CleanMode.RESIST_STRIP: ("STRIP_TEMP_SP", "STRIP_TEMP_PV", "strip tank"),
}
_FC2_PROCESS = ("STRIP_TEMP_PV", "RESULT_MASK_RESIDUE", "MODE_ACTIVE")  # IR 7-9
# After our own UNLOAD of a flux clean whose DONE read showed the bath this close to its
# setpoint and no alarm, the spec says READY: the next status within KNOWN_FOR_S tool
# seconds of that read reads only the inputs (door, chemistry, DI water, wafer present).
# That long the bath cannot have left START's band even unheated: the spec's cooling
# (about 0.01 °C/s), taken twice as fast, from at most KNOWN_BAND_C off (50 s). An alarm
# meanwhile is one of the inputs (400, 630, 640), the bath (610, bounded so), or spray
# pressure (620, only while spraying); the cleaner refuses LOAD in ALARM (06, nothing
# changed) whatever we knew (docs/protocols.md).
KNOWN_BAND_C = BATH_TOLERANCE_C / 2
SPEC_COOL_C_S = 0.01
KNOWN_FOR_S = (BATH_TOLERANCE_C - KNOWN_BAND_C) / (2 * SPEC_COOL_C_S)
# The inputs are read in a cycle's last moments, off the handover's critical path: that
# read goes INPUTS_LEAD_OVER times as long before the cycle's end as the slowest of the last
# INPUTS_LEAD_READS took (tool seconds; a read's time varies 0.4-3 ms of wall on a loaded
# host, and one that ends after the cycle delays the DONE poll by what it overran), at
# most INPUTS_LEAD_MAX_S; the status after our own UNLOAD then needs no request.
INPUTS_LEAD_MAX_S = 10.0
INPUTS_LEAD_READS = 5
INPUTS_LEAD_OVER = 1.5
# A poll that finds the cycle running waits the REMAINING_S it shows (at least this), not
# a whole poll interval: DONE is seen as it comes.
MIN_POLL_S = 0.5


class FluxCleaner(ModbusTool[CleanerState, CleanerStatus]):
    DEFAULT_MODEL = DEFAULT_MODEL
    STATE = CleanerState

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
        self._recipe = m.block(
            "WASH_TEMP_SP", "WASH_TIME", "RINSE_TIME", "DRY_TIME", "SPRAY_PRESSURE"
        )
        # A model's optional registers (the FC-2's) join the blocks wherever its map has them.
        self._process = m.block(
            "STATE", "WASH_TEMP_PV", "RINSE_RESISTIVITY", "REMAINING_S", "ALARM_CODE",
            *m.present(*_FC2_PROCESS),
        )
        self._inputs = m.block(
            "WAFER_PRESENT", "CHEMISTRY_LOW", "DI_RESISTIVITY_LOW", "DOOR_OPEN",
            *m.present("STRIPPER_LOW"),
        )
        self._result = m.block(
            "RESULT_IONIC", "RESULT_STATUS", "RESULT_WAFER_ID", "CYCLE_COUNT",
            *m.present("RESULT_MASK_RESIDUE"),
        )
        # The process values and the last result sit side by side (IR 0-6, FC-2 0-9): one
        # read tells that the cycle is DONE and what it measured.
        self._process_and_result = m.block(
            "STATE", "WASH_TEMP_PV", "RINSE_RESISTIVITY", "REMAINING_S", "ALARM_CODE",
            "RESULT_IONIC", "RESULT_STATUS", *m.present(*_FC2_PROCESS),
        )
        self._result_id = m.block("RESULT_WAFER_ID")
        # The poll that waits for DONE: with the result's id too where the map lists every
        # register between (the FC-2's IR 0-17: one read); the FC-1's IR 7-9 are unlisted
        # (exception 02), so there the id is a read of its own once DONE is seen.
        whole = m.block(*(r.name for r in self._process_and_result.entries),
                        "RESULT_WAFER_ID")
        self._done_poll = whole if len(whole.runs) == 1 else self._process_and_result
        self._strip = (
            m.block("STRIP_TEMP_SP", "STRIP_TIME") if self.supports(CleanMode.RESIST_STRIP)
            else None
        )
        self._rinse_dry = m.block("RINSE_TIME", "DRY_TIME", "SPRAY_PRESSURE")
        self._watch = self._process
        # What the handover after our own UNLOAD already knows (see KNOWN_FOR_S): the
        # commands and writes sent so far, WASH_TEMP_SP as last written or read, the
        # DONE read (values, tool time, writes then) and what it stands for after UNLOAD.
        self._writes = 0
        self._wash_sp: float | None = None
        self._edge_mode: CleanMode | None = None  # the mode of a START refused at the band's edge
        self._done_read: tuple[dict[str, Any], float, int] | None = None
        self._unloaded: tuple[dict[str, Any], float, int] | None = None
        # The inputs read in the cycle's last moments (values, tool time, writes then), and
        # how long the last such reads took (the next one's lead).
        self._inputs_seen: tuple[dict[str, Any], float, int] | None = None
        self._inputs_took_s: deque[float] = deque(maxlen=INPUTS_LEAD_READS)

    # --- what the model can do -------------------------------------------------------------------

    def supports(self, mode: CleanMode) -> bool:
        """Every cleaner cleans flux; a resist strip needs a model whose MODE has it (FC-2)."""
        return mode is CleanMode.FLUX_CLEAN or self.map.has_code("MODE", mode.value)

    def _require(self, mode: CleanMode) -> None:
        if not self.supports(mode):
            raise NotSupported(
                self.name,
                f"the {self.map.model} has no {mode.value} mode; a resist strip needs a "
                f"cleaner/stripper such as the FC-2 (model = \"FC-2\" in the line configuration)",
            )

    # --- recipe ----------------------------------------------------------------------------------

    async def set_recipe(self, recipe: CleanRecipe) -> None:
        """Write the five recipe registers in one request."""
        self._writes += 1
        self._wash_sp = None  # known again once the write is answered
        await self.regs.write_block(
            self._recipe,
            {
                "WASH_TEMP_SP": recipe.wash_temp_c,
                "WASH_TIME": recipe.wash_time_s,
                "RINSE_TIME": recipe.rinse_time_s,
                "DRY_TIME": recipe.dry_time_s,
                "SPRAY_PRESSURE": recipe.spray_pressure_bar,
            },
        )
        self._wash_sp = recipe.wash_temp_c

    async def recipe(self) -> CleanRecipe:
        writes = self._writes
        v = await self.regs.read_block(self._recipe)
        if writes == self._writes:
            self._wash_sp = v["WASH_TEMP_SP"]
        return CleanRecipe(
            wash_temp_c=v["WASH_TEMP_SP"],
            wash_time_s=v["WASH_TIME"],
            rinse_time_s=v["RINSE_TIME"],
            dry_time_s=v["DRY_TIME"],
            spray_pressure_bar=v["SPRAY_PRESSURE"],
        )

    async def set_strip_recipe(self, recipe: StripRecipe) -> None:
        """An FC-2 strip: the strip tank and time, then rinse, dry and spray (two requests)."""
        self._require(CleanMode.RESIST_STRIP)
        assert self._strip is not None
        self._writes += 1
        await self.regs.write_block(
            self._strip,
            {"STRIP_TEMP_SP": recipe.strip_temp_c, "STRIP_TIME": recipe.strip_time_s},
        )
        await self.regs.write_block(
            self._rinse_dry,
            {
                "RINSE_TIME": recipe.rinse_time_s,
                "DRY_TIME": recipe.dry_time_s,
                "SPRAY_PRESSURE": recipe.spray_pressure_bar,
            },
        )

    async def strip_recipe(self) -> StripRecipe:
        self._require(CleanMode.RESIST_STRIP)
        assert self._strip is not None
        strip = await self.regs.read_block(self._strip)
        rest = await self.regs.read_block(self._rinse_dry)
        return StripRecipe(
            strip_temp_c=strip["STRIP_TEMP_SP"],
            strip_time_s=strip["STRIP_TIME"],
            rinse_time_s=rest["RINSE_TIME"],
            dry_time_s=rest["DRY_TIME"],
            spray_pressure_bar=rest["SPRAY_PRESSURE"],
        )

    # --- readings --------------------------------------------------------------------------------

    async def status(self) -> CleanerStatus:
        """Process values and the four inputs: two requests. Straight after our own UNLOAD
        of a clean (KNOWN_FOR_S), none or the inputs alone: the spec says where UNLOAD
        leaves the cleaner, the DONE read just before it gave the bath and the alarm, and
        the inputs read in the cycle's last moments (``wait_result(ends_at=...)``) stand
        for the inputs with the wafer out (docs/protocols.md)."""
        known, self._unloaded = self._unloaded, None  # stands for one status at most
        now = self.clock.now()
        if known is not None and known[2] == self._writes and now - known[1] <= KNOWN_FOR_S:
            inputs = self._inputs_after_unload(known[2], now)
            if inputs is None:
                inputs = await self.regs.read_block(self._inputs)
            if not inputs["WAFER_PRESENT"]:  # else not as UNLOAD leaves it: read it all
                return self._status_of(
                    {**known[0], "STATE": self.map["STATE"].code(CleanerState.READY.name),
                     "REMAINING_S": 0, "MODE_ACTIVE": 0}, inputs)
        v = await self._read_states(self._process)
        inputs = await self.regs.read_block(self._inputs)
        return self._status_of(v, inputs)

    def _inputs_after_unload(self, writes: int, now: float) -> dict[str, Any] | None:
        """The inputs read in the last cycle's last moments, with the wafer taken out by
        our UNLOAD since (the one write after them), if that read is recent (KNOWN_FOR_S)
        and saw the wafer in the chamber, as a running cycle has it; else None (read)."""
        seen, self._inputs_seen = self._inputs_seen, None
        if (seen is None or seen[2] + 1 != writes or now - seen[1] > KNOWN_FOR_S
                or not seen[0]["WAFER_PRESENT"]):
            return None
        return {**seen[0], "WAFER_PRESENT": False}

    def _status_of(self, v: dict[str, Any], inputs: dict[str, Any]) -> CleanerStatus:
        return CleanerStatus(
            state=self._state_of(v["STATE"]),
            wash_temp_c=v["WASH_TEMP_PV"],
            rinse_resistivity_mohm_cm=v["RINSE_RESISTIVITY"],
            remaining_s=v["REMAINING_S"],
            alarm_code=v["ALARM_CODE"],
            wafer_present=inputs["WAFER_PRESENT"],
            chemistry_low=inputs["CHEMISTRY_LOW"],
            di_resistivity_low=inputs["DI_RESISTIVITY_LOW"],
            door_open=inputs["DOOR_OPEN"],
            strip_temp_c=v.get("STRIP_TEMP_PV"),
            mode_active=self._mode_of(v.get("MODE_ACTIVE")),
            stripper_low=inputs.get("STRIPPER_LOW"),
        )

    def _mode_of(self, code: int | None) -> CleanMode | None:
        if not code:
            return None  # no such register, or no wafer in the chamber
        name = self.map["MODE_ACTIVE"].code_name(code)
        try:
            return CleanMode[name]
        except KeyError:
            raise ToolError(self.name, f"MODE_ACTIVE = {code}: unknown") from None

    async def result(self) -> CleanResult:
        """The last finished wafer: residue, outcome, id and the cycle counter."""
        return self._clean_result(await self.regs.read_block(self._result))

    def _clean_result(self, v: dict[str, Any]) -> CleanResult:
        status_name = self.map["RESULT_STATUS"].code_name(v["RESULT_STATUS"])
        try:
            status = CleanStatus[status_name]
        except KeyError:
            raise ToolError(self.name, f"RESULT_STATUS = {v['RESULT_STATUS']}: unknown") from None
        return CleanResult(
            wafer_id=v["RESULT_WAFER_ID"],
            status=status,
            ionic_ug_cm2=v["RESULT_IONIC"],
            cycle_count=v.get("CYCLE_COUNT"),
            mask_residue_pct=v.get("RESULT_MASK_RESIDUE"),
        )

    async def wait_result(self, timeout_s: float, *, ends_at: float | None = None
                          ) -> CleanResult:
        """Until the cycle is DONE (tool seconds), then its result; ToolAlarm on an alarm.

        The state and the residue come in one read, so the poll that sees DONE is also
        the first half of the result; RESULT_WAFER_ID is the second (on the FC-2, whose
        map lists IR 7-9, the same read). Not CYCLE_COUNT (``cycle_count`` None): nothing
        a step does hangs on it, and IR 18-19 between it and the id are unlisted, so it
        would be a request of its own.

        ``ends_at``: the cycle's nominal end (tool time; the step knows it from START).
        The inputs are read just before it, while the chamber still runs, so the status
        after our own UNLOAD asks nothing (the handover's critical path is one request
        shorter), and the first poll goes at the end; ``timeout_s`` counts from there.
        """
        if ends_at is not None:
            await self._inputs_before(ends_at)
        v = await self._poll_until((CleanerState.DONE,), timeout_s, self._done_poll)
        self._done_read = (v, self.clock.now(), self._writes)
        if "RESULT_WAFER_ID" not in v:
            v = v | await self.regs.read_block(self._result_id)
        return self._clean_result(v)

    async def _inputs_before(self, ends_at: float) -> None:
        """Read the inputs as late in the cycle as their read still ends by ``ends_at``
        (see INPUTS_LEAD_OVER), then wait for the end."""
        lead = min(INPUTS_LEAD_OVER * max(self._inputs_took_s, default=0.0), INPUTS_LEAD_MAX_S)
        await self.clock.sleep(ends_at - lead - self.clock.now())
        sent = self.clock.now()
        inputs = await self.regs.read_block(self._inputs)
        now = self.clock.now()
        self._inputs_took_s.append(now - sent)
        self._inputs_seen = (inputs, now, self._writes)
        if ends_at > now:  # else poll at once: no loop turn for other tasks' work first
            await self.clock.sleep(ends_at - now)

    def _poll_pause_s(self, v: dict[str, Any]) -> float | None:
        """A running cycle ends in REMAINING_S: look again then, not a whole poll later."""
        if self._state_of(v["STATE"]) in CYCLE_STATES:
            return min(self.poll_s, max(float(v["REMAINING_S"]), MIN_POLL_S))
        return None

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_done(self, timeout_s: float) -> None:
        await self._poll_until((CleanerState.DONE,), timeout_s, self._process)

    async def wait_bath_ready(
        self, timeout_s: float, mode: CleanMode = CleanMode.FLUX_CLEAN
    ) -> float:
        """Until the tank ``mode`` uses is within ±2 °C of its setpoint (what START needs):
        the wash bath, or an FC-2's strip tank. Its °C."""
        self._require(mode)
        sp_name, pv_name, tank = _TANKS[mode]
        # The bath setpoint as we last wrote or read it (holding registers change only
        # when written): the setup that waits here has just read or written the recipe.
        known = self._wash_sp if mode is CleanMode.FLUX_CLEAN else None
        setpoint = known if known is not None else await self.regs.read(sp_name)
        deadline = self.clock.now() + timeout_s
        while True:
            v = await self.regs.read_block(self._process)
            if self._state_of(v["STATE"]) is CleanerState.ALARM:
                raise self._tool_alarm(v["ALARM_CODE"])
            bath = v[pv_name]
            if _well_inside(bath, setpoint):
                return bath
            why = (
                f"{tank} {bath} °C not {READING_STEP_C} °C inside ±{BATH_TOLERANCE_C} °C of "
                f"{setpoint} °C "
                f"in {timeout_s:g} s"
            )
            await self._pause_until(deadline, why)

    # --- wafers ----------------------------------------------------------------------------------

    async def load(self, wafer_id: str, mode: CleanMode = CleanMode.FLUX_CLEAN) -> None:
        """[MODE,] WAFER_ID, then COMMAND = LOAD: the wafer is in the chamber (LOADED) and
        keeps the mode it was loaded with. MODE is written on every model that has it, so a
        flux clean never inherits the strip mode of the wafer before."""
        self._require(mode)
        words = self._wafer_id_words("WAFER_ID", wafer_id)
        self._writes += 1
        if "MODE" in self.map:
            reg = self.map["MODE"]

            async def mode_set() -> bool:  # MODE reads back what was written
                words = await self.link.read_holding(reg.address, 1, what="MODE")
                return words[0] == reg.code(mode.value)

            for attempt in range(REFUSED_AGAIN + 1):
                try:
                    await self.regs.command("MODE", mode.value, done=mode_set)
                    break
                except DeviceBusy:
                    # Refused outside IDLE/READY: our UNLOAD just answered may not show yet
                    # (written again at once). Refused in IDLE/READY, which allow it: a busy
                    # moment, written again one poll later, as a COMMAND is (_command).
                    late = self._still_applying()
                    state = await self.state()
                    if attempt == REFUSED_AGAIN or state not in ALLOWED_FROM["LOAD"]:
                        raise DeviceBusy(self.name,
                                         f"MODE={mode.value} (state {state.name})") from None
                    if not late:
                        await self.clock.sleep(self.poll_s)
        reg = self.map["WAFER_ID"]
        await self.link.write_registers(reg.address, words, what="WAFER_ID")
        await self._command("LOAD", done=(CleanerState.LOADED,))

    async def loaded_wafer_id(self) -> str:
        """WAFER_ID as the cleaner holds it (HR 10-17): the id the last LOAD took, whatever
        the results say (a tool may write RESULT_WAFER_ID at LOAD or only when a cycle ends)."""
        value: str = await self.regs.read("WAFER_ID")
        return value

    async def start(self) -> None:
        """Wash (FC-2 strip: strip), rinse, dry (LOADED, its tank at temperature). Refused
        with the tank's reading at the edge of START's band (the tool's finer value
        outside it): sent again once the tank is one reading step inside."""
        self._edge_mode = None
        try:
            await self._command("START", done=(*CYCLE_STATES, CleanerState.DONE))
        except DeviceBusy as exc:
            mode = self._edge_mode  # what the refusal's explanation found
            if mode is None:
                raise
            log.info("%s: %s: waiting for the tank to move one reading step in", self.name,
                     exc.detail)
            await self.wait_bath_ready(EDGE_WAIT_S, mode)
            await self._command("START", done=(*CYCLE_STATES, CleanerState.DONE))

    async def unload(self) -> None:
        done, writes = self._done_read, self._writes
        await self._command("UNLOAD", done=(CleanerState.IDLE, CleanerState.READY))
        if done is not None and done[2] == writes and self._ready_after(done[0]):
            self._unloaded = (done[0], done[1], self._writes)

    def _ready_after(self, v: dict[str, Any]) -> bool:
        """Does the spec put the cleaner in READY after UNLOAD, from its DONE read: a flux
        clean (the wash bath is the one UNLOAD looks at), no alarm, the bath well inside
        the band of the setpoint we know."""
        return (self._wash_sp is not None and not v["ALARM_CODE"]
                and self._mode_of(v.get("MODE_ACTIVE")) in (None, CleanMode.FLUX_CLEAN)
                and abs(v["WASH_TEMP_PV"] - self._wash_sp) <= KNOWN_BAND_C)

    async def clear_alarm(self) -> None:
        """Clear a latched alarm whose cause is gone (COMMAND = CLEAR)."""
        non_alarm = tuple(s for s in CleanerState if s is not CleanerState.ALARM)
        await self._command("CLEAR", done=non_alarm)

    async def abort(self) -> None:
        """Stop a running cycle; the wafer ends DONE with RESULT_STATUS ABORTED."""
        await self._command("ABORT", done=(CleanerState.DONE,))

    # --- commands --------------------------------------------------------------------------------

    async def _command(self, name: str, done: tuple[CleanerState, ...]) -> None:
        """COMMAND = name. After a lost reply the link asks the cleaner's state (``done``:
        the states the command leads to) before sending it again or calling it failed."""

        leaves = LEAVES[name]

        async def happened() -> bool:
            return await self.state() in done

        self._writes += 1
        for attempt in range(REFUSED_AGAIN + 1):
            late = self._still_applying()  # our command before this one may not show yet
            try:
                await self.regs.command("COMMAND", name, done=happened)
                self._commanded(leaves)
                return
            except DeviceBusy:
                state = await self.state()  # after the earlier command shows, if it was late
                if late and attempt < REFUSED_AGAIN and (
                        state in ALLOWED_FROM.get(name, (CleanerState.ALARM,))):
                    # Refused while our earlier command waited for the tool's tick (a tool
                    # with one command slot answers 06 then): it shows now; send this again.
                    continue
                why = await self._why_refused(name, state)
                # 06 is the cleaner's refusal; one its own state does not explain is a busy
                # moment (the fault campaign's busy= faults): send again, one poll later.
                if attempt == REFUSED_AGAIN or not why.endswith(UNEXPLAINED):
                    raise DeviceBusy(self.name, f"COMMAND={name} ({why})") from None
            await self.clock.sleep(self.poll_s)

    async def _why_refused(self, command: str, state: CleanerState) -> str:
        """Why the spec would refuse the command now; ending in UNEXPLAINED when the
        cleaner's state allows it."""
        why = f"state {state.name}"
        if state in ALLOWED_FROM.get(command, ()) and command != "START":
            return why + UNEXPLAINED
        if state is CleanerState.ALARM and command != "CLEAR":
            alarm = await self.alarm()
            return f"{why}, alarm {alarm.code} {alarm.text}" if alarm else why
        if command == "CLEAR" and state is CleanerState.ALARM:
            return "the alarm's cause is still present"
        if command == "START" and state is CleanerState.LOADED:
            s = await self.status()
            sp_name, _, tank = _TANKS[s.mode_active or CleanMode.FLUX_CLEAN]
            reading = s.strip_temp_c if sp_name == "STRIP_TEMP_SP" else s.wash_temp_c
            setpoint = await self.regs.read(sp_name)
            why += f", {tank} {reading} °C vs setpoint {setpoint} °C"
            if reading is not None and _well_inside(reading, setpoint):
                why += UNEXPLAINED
            elif reading is not None and abs(reading - setpoint) <= START_BAND_C + 1e-6:
                why += ", at the band's edge"  # ``start`` waits until it is inside
                self._edge_mode = s.mode_active or CleanMode.FLUX_CLEAN
        return why


def _well_inside(reading: float, setpoint: float) -> bool:
    """The tank one reading step inside START's band: inside whatever the tool's own value
    and reading of "within ±2 °C" (the float sum's rounding forgiven)."""
    return abs(reading - setpoint) <= START_BAND_C - READING_STEP_C + 1e-6

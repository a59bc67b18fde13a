"""Driver for the FC-1 flux cleaner (Modbus RTU; spec: flux-cleaner.md).

Registers are looked up by name in the cleaner's register map
(``drivers/maps/fc-1.toml``). Values cross this module in engineering units as
the types of ``drivers/types.py``; waits are in tool seconds on the injected
clock.

One wafer::

    await cleaner.set_recipe(recipe)
    await cleaner.wait_bath_ready(timeout_s=1200)
    await cleaner.load("LOT42-07"); await cleaner.start()
    result = await cleaner.wait_result(timeout_s=1200)  # or wait_done(), then result()
    await cleaner.unload()
"""

from __future__ import annotations

from typing import Any

from drivers.clock import Clock
from drivers.errors import DeviceBusy, ToolError
from drivers.modbus_link import ModbusLink
from drivers.modbus_tool import ModbusTool
from drivers.register_map import RegisterMap
from drivers.types import (
    BATH_TOLERANCE_C,
    CleanerState,
    CleanerStatus,
    CleanRecipe,
    CleanResult,
    CleanStatus,
)

DEFAULT_MODEL = "fc-1"
CYCLE_STATES = (CleanerState.WASHING, CleanerState.RINSING, CleanerState.DRYING)


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
        self._process = m.block(
            "STATE", "WASH_TEMP_PV", "RINSE_RESISTIVITY", "REMAINING_S", "ALARM_CODE"
        )
        self._inputs = m.block("WAFER_PRESENT", "CHEMISTRY_LOW", "DI_RESISTIVITY_LOW", "DOOR_OPEN")
        self._result = m.block("RESULT_IONIC", "RESULT_STATUS", "RESULT_WAFER_ID", "CYCLE_COUNT")
        # The process values and the last result sit side by side (IR 0-6): one read tells
        # that the cycle is DONE and what it measured.
        self._process_and_result = m.block(
            "STATE", "WASH_TEMP_PV", "RINSE_RESISTIVITY", "REMAINING_S", "ALARM_CODE",
            "RESULT_IONIC", "RESULT_STATUS",
        )
        self._result_id = m.block("RESULT_WAFER_ID", "CYCLE_COUNT")
        self._watch = self._process

    # --- recipe ----------------------------------------------------------------------------------

    async def set_recipe(self, recipe: CleanRecipe) -> None:
        """Write the five recipe registers in one request."""
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

    async def recipe(self) -> CleanRecipe:
        v = await self.regs.read_block(self._recipe)
        return CleanRecipe(
            wash_temp_c=v["WASH_TEMP_SP"],
            wash_time_s=v["WASH_TIME"],
            rinse_time_s=v["RINSE_TIME"],
            dry_time_s=v["DRY_TIME"],
            spray_pressure_bar=v["SPRAY_PRESSURE"],
        )

    # --- readings --------------------------------------------------------------------------------

    async def status(self) -> CleanerStatus:
        """Process values and the four inputs: two requests."""
        v = await self.regs.read_block(self._process)
        inputs = await self.regs.read_block(self._inputs)
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
        )

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
            cycle_count=v["CYCLE_COUNT"],
        )

    async def wait_result(self, timeout_s: float) -> CleanResult:
        """Until the cycle is DONE (tool seconds), then its result; ToolAlarm on an alarm.

        The state and the residue come in one read, so the poll that sees DONE is also
        the first half of the result.
        """
        v = await self._poll_until((CleanerState.DONE,), timeout_s, self._process_and_result)
        return self._clean_result(v | await self.regs.read_block(self._result_id))

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_done(self, timeout_s: float) -> None:
        await self._poll_until((CleanerState.DONE,), timeout_s, self._process)

    async def wait_bath_ready(self, timeout_s: float) -> float:
        """Until the bath is within ±2 °C of WASH_TEMP_SP (what START needs); the bath °C."""
        setpoint = await self.regs.read("WASH_TEMP_SP")
        deadline = self.clock.now() + timeout_s
        while True:
            v = await self.regs.read_block(self._process)
            if self._state_of(v["STATE"]) is CleanerState.ALARM:
                raise self._tool_alarm(v["ALARM_CODE"])
            bath = v["WASH_TEMP_PV"]
            if abs(bath - setpoint) <= BATH_TOLERANCE_C:
                return bath
            why = (
                f"bath {bath} °C not within ±{BATH_TOLERANCE_C} °C of {setpoint} °C "
                f"in {timeout_s:g} s"
            )
            await self._pause_until(deadline, why)

    # --- wafers ----------------------------------------------------------------------------------

    async def load(self, wafer_id: str) -> None:
        """WAFER_ID, then COMMAND = LOAD: the wafer is in the chamber (LOADED)."""
        words = self._wafer_id_words("WAFER_ID", wafer_id)
        reg = self.map["WAFER_ID"]
        await self.link.write_registers(reg.address, words, what="WAFER_ID")
        await self._command("LOAD", done=(CleanerState.LOADED,))

    async def start(self) -> None:
        """Wash, rinse, dry (LOADED, bath at temperature)."""
        await self._command("START", done=(*CYCLE_STATES, CleanerState.DONE))

    async def unload(self) -> None:
        await self._command("UNLOAD", done=(CleanerState.IDLE, CleanerState.READY))

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

        async def happened() -> bool:
            return await self.state() in done

        try:
            await self.regs.command("COMMAND", name, done=happened)
        except DeviceBusy:
            state = await self.state()
            why = await self._why_refused(name, state)
            raise DeviceBusy(self.name, f"COMMAND={name} ({why})") from None

    async def _why_refused(self, command: str, state: CleanerState) -> str:
        why = f"state {state.name}"
        if state is CleanerState.ALARM and command != "CLEAR":
            alarm = await self.alarm()
            return f"{why}, alarm {alarm.code} {alarm.text}" if alarm else why
        if command == "CLEAR" and state is CleanerState.ALARM:
            return "the alarm's cause is still present"
        if command == "START" and state is CleanerState.LOADED:
            s = await self.status()
            setpoint = await self.regs.read("WASH_TEMP_SP")
            why += f", bath {s.wash_temp_c} °C vs setpoint {setpoint} °C"
        return why

"""The engineer's console behind ``bumpline tool NAME COMMAND ARGS``: one command table per
tool role, mapping typed strings to the drivers' typed verbs (``drivers/protocols.py``).

The drivers hold no console code: what a command is called, how its arguments
are parsed and how its result reads are the controller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.console.args import ConsoleCommand, ConsoleUsageError, find_command, run_command
from controller.console.hostlink import PLACER_COMMANDS, PRINTER_COMMANDS, explain_wrong_state
from controller.console.modbus import CLEANER_COMMANDS, OVEN_COMMANDS
from controller.console.plater import PLATER_COMMANDS
from drivers.errors import WrongState

COMMANDS: dict[str, tuple[ConsoleCommand, ...]] = {
    "printer": PRINTER_COMMANDS,
    "placer": PLACER_COMMANDS,
    "oven": OVEN_COMMANDS,
    "cleaner": CLEANER_COMMANDS,
    "plater": PLATER_COMMANDS,
}



async def run_tool_command(role: str, driver: Any, name: str, args: Sequence[str]) -> object:
    """Run one console command on a tool of ``role``; a refusal says why the tool refused."""
    try:
        return await run_command(COMMANDS[role], driver, name, args)
    except WrongState as exc:
        raise await explain_wrong_state(driver, role, exc) from None


__all__ = [
    "COMMANDS",
    "CLEANER_COMMANDS",
    "OVEN_COMMANDS",
    "PLACER_COMMANDS",
    "PLATER_COMMANDS",
    "PRINTER_COMMANDS",
    "ConsoleCommand",
    "ConsoleUsageError",
    "find_command",
    "run_command",
    "run_tool_command",
]

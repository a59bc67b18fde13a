"""Every way a tool can say no, as an exception that names the tool.

Callers never parse strings: a NAK code, a Modbus exception code or a latched
alarm each arrive as their own exception type carrying the numbers.
"""

from __future__ import annotations

from typing import TypeVar


class ToolError(Exception):
    """Base class: something went wrong talking to, or inside, a named tool."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool
        self.detail = message


class LinkError(ToolError):
    """No usable reply: the tool is unreachable, silent, or the line is garbled."""


class ToolTimeout(ToolError):
    """A long operation did not reach the expected state in time (tool seconds)."""


class NotSupported(ToolError):
    """The tool's model cannot do what was asked (a resist strip on an FC-1); nothing sent."""


class StateUnreachable(ToolTimeout):
    """A wait that can never end: the tool cannot reach the awaited state by itself from
    the state it is in (per its spec) - it needs a host command first. A ``ToolTimeout``
    known in advance, so callers that handle timeouts handle it alike."""


class ToolAlarm(ToolError):
    """The tool latched an alarm while we waited on it."""

    def __init__(self, tool: str, code: int, text: str) -> None:
        super().__init__(tool, f"alarm {code} {text}".rstrip())
        self.code = code
        self.text = text


# --- refusals: a command the tool answered with a numbered "no" ---------------------------------


class Refused(ToolError):
    """The tool refused a command with a numbered code; nothing was changed on the tool."""

    code = 0
    reply = ""  # what the refusal starts with on the wire

    def __init__(self, tool: str, command: str, code: int, text: str, why: str = "") -> None:
        # ``why``: what the driver found out about the refusal (the state the tool is in
        # and what the command needs); ``text`` stays the tool's own words.
        message = f"{command} refused: {self.reply} {code:02d} {text}"
        super().__init__(tool, f"{message} ({why})" if why else message)
        self.command = command
        self.code = code
        self.text = text
        self.why = why


class NakError(Refused):
    """A HostLink tool's ``NAK <code> <text>`` (the printer, the ball mounter)."""

    reply = "NAK"


class CommandRefused(Refused):
    """A text-line tool's ``ERR <code> <text>`` (the EP-25 plater)."""

    reply = "ERR"


R = TypeVar("R", bound=Refused)


def _per_code(base: type[R], names: dict[int, str]) -> dict[int, type[R]]:
    """One subclass of ``base`` per code of a spec's table, named as the table says."""
    return {code: type(name, (base,), {"code": code, "__module__": __name__,
                                       "__doc__": f"{base.reply} {code:02d}."})
            for code, name in names.items()}


# The codes each spec lists (HostLink/1: paste-printer.md, ball-placer.md; barrier-plater.md).
NAK_ERRORS: dict[int, type[NakError]] = _per_code(NakError, {
    1: "ChecksumNak", 2: "UnknownCommand", 3: "BadParameter", 4: "WrongState",
    5: "AlarmActive", 6: "InterlockActive"})
TEXT_ERRORS: dict[int, type[CommandRefused]] = _per_code(CommandRefused, {
    1: "RefusedSyntax", 2: "RefusedUnknown", 3: "RefusedRange", 4: "RefusedState",
    5: "RefusedNotReady", 6: "RefusedAlarm"})
ChecksumNak, UnknownCommand, BadParameter, WrongState, AlarmActive, InterlockActive = (
    NAK_ERRORS.values())
RefusedSyntax, RefusedUnknown, RefusedRange, RefusedState, RefusedNotReady, RefusedAlarm = (
    TEXT_ERRORS.values())


def nak_error(tool: str, command: str, code: int, text: str) -> NakError:
    """The exception for a NAK reply (an unlisted code still gets a NakError)."""
    return NAK_ERRORS.get(code, NakError)(tool, command, code, text)


def text_error(tool: str, command: str, code: int, text: str) -> CommandRefused:
    """The exception for an ``ERR`` reply (an unlisted code still gets a CommandRefused)."""
    return TEXT_ERRORS.get(code, CommandRefused)(tool, command, code, text)


# --- Modbus tools -------------------------------------------------------------------------------


class ModbusToolError(ToolError):
    """A Modbus exception response; names the register it concerned."""

    code = 0
    meaning = "exception"

    def __init__(self, tool: str, register: str, code: int | None = None) -> None:
        self.register = register
        if code is not None:
            self.code = code
        super().__init__(tool, f"{register}: Modbus exception {self.code:02d} {self.meaning}")


class IllegalAddress(ModbusToolError):
    code = 2
    meaning = "ILLEGAL DATA ADDRESS"


class IllegalValue(ModbusToolError):
    code = 3
    meaning = "ILLEGAL DATA VALUE"


class DeviceBusy(ModbusToolError):
    code = 6
    meaning = "SERVER DEVICE BUSY (not allowed in the tool's current state)"


MODBUS_ERRORS: dict[int, type[ModbusToolError]] = {
    cls.code: cls for cls in (IllegalAddress, IllegalValue, DeviceBusy)
}


def modbus_error(tool: str, register: str, code: int) -> ModbusToolError:
    cls = MODBUS_ERRORS.get(code)
    return cls(tool, register) if cls else ModbusToolError(tool, register, code)


# --- text-line tools (the EP-25 plater) ---------------------------------------------------------


class ReplyLost(LinkError):
    """A command got no reply: timed out or the connection dropped while it was in flight.

    The command may or may not have been carried out; the caller asks the tool's state
    before sending anything again (text-line commands are not idempotent on the wire).
    """

    def __init__(self, tool: str, command: str, why: str) -> None:
        super().__init__(tool, f"{command}: reply lost ({why})")
        self.command = command


class LinkBusy(LinkError):
    """``ERR 09 BUSY LINK``: another host holds the tool's one connection."""

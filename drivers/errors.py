"""Every way a tool can say no, as an exception that names the tool.

Callers never parse strings: a NAK code, a Modbus exception code or a latched
alarm each arrive as their own exception type carrying the numbers.
"""

from __future__ import annotations


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


# --- HostLink (serial tools) -----------------------------------------------------------------


class NakError(ToolError):
    """The tool refused a HostLink command; nothing was changed on the tool."""

    code = 0

    def __init__(self, tool: str, command: str, code: int, text: str, why: str = "") -> None:
        # ``why``: what the driver found out about the refusal (the state the tool is in
        # and what the command needs); ``text`` stays the tool's own words.
        message = f"{command} refused: NAK {code:02d} {text}"
        super().__init__(tool, f"{message} ({why})" if why else message)
        self.command = command
        self.code = code
        self.text = text
        self.why = why


class ChecksumNak(NakError):
    code = 1


class UnknownCommand(NakError):
    code = 2


class BadParameter(NakError):
    code = 3


class WrongState(NakError):
    code = 4


class AlarmActive(NakError):
    code = 5


class InterlockActive(NakError):
    code = 6


NAK_ERRORS: dict[int, type[NakError]] = {
    cls.code: cls
    for cls in (ChecksumNak, UnknownCommand, BadParameter, WrongState, AlarmActive, InterlockActive)
}


def nak_error(tool: str, command: str, code: int, text: str) -> NakError:
    """The exception for a NAK reply (an unlisted code still gets a NakError)."""
    return NAK_ERRORS.get(code, NakError)(tool, command, code, text)


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


class CommandRefused(ToolError):
    """``ERR <code> <text>``: the tool refused a command; nothing was changed."""

    code = 0

    def __init__(self, tool: str, command: str, code: int, text: str) -> None:
        super().__init__(tool, f"{command} refused: ERR {code:02d} {text}")
        self.command = command
        self.code = code
        self.text = text


class RefusedSyntax(CommandRefused):
    code = 1


class RefusedUnknown(CommandRefused):
    code = 2


class RefusedRange(CommandRefused):
    code = 3


class RefusedState(CommandRefused):
    code = 4


class RefusedNotReady(CommandRefused):
    code = 5


class RefusedAlarm(CommandRefused):
    code = 6


TEXT_ERRORS: dict[int, type[CommandRefused]] = {
    cls.code: cls
    for cls in (RefusedSyntax, RefusedUnknown, RefusedRange, RefusedState, RefusedNotReady,
                RefusedAlarm)
}


def text_error(tool: str, command: str, code: int, text: str) -> CommandRefused:
    """The exception for an ``ERR`` reply (an unlisted code still gets a CommandRefused)."""
    return TEXT_ERRORS.get(code, CommandRefused)(tool, command, code, text)

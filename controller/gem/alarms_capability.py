"""Alarm management: every tool and line alarm has an ALID; S5F1 reports
it set and cleared (when the host enabled it), S5F3 enables, S5F5 lists, S5F7
lists the enabled ones. An ALID is one alarm condition (E5): set once, cleared
once. A line alarm that stands for several conditions (ALID 1: some tool's link
lost; 3: some alarm without an ALID of its own) is set with the first of them and
cleared with the last (``grouped``). Each alarm of the tables has its own set and
clear collection event (E30; CEID = 1000000 / 2000000 + ALID, ids.alarm_ceid);
after S5F1 the shared ALARMSET/ALARMCLEARED event is reported, then the alarm's
own. Both follow every change whatever the alarm enables say (they are enabled,
like any event, by S2F37).

An alarm report never blocks the line: it is queued for the equipment's sender
(spooled if the host is away), and nothing waits for the host's S5F2.
Alarm enables are persisted; every alarm is enabled until the host says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.gem import ids
from controller.gem.context import Equipment, Reply
from controller.gem.secs2 import U4, A, B, Fmt, Item, L, ascii_text
from controller.gem.status_capability import id_item, ids_of

if TYPE_CHECKING:
    from controller.gem.hsms import Message


class AlarmsCapability:
    def __init__(self, eq: Equipment, tools: list[str] | tuple[str, ...]) -> None:
        self.eq = eq
        self.known: dict[int, ids.Alarm] = {a.alid: a for a in ids.line_alarms()}
        for tool in tools:
            self.known.update((a.alid, a) for a in ids.tool_alarms(tool))
        self.disabled: set[int] = set(eq.db.load("alarms_disabled") or [])
        self.active: dict[int, ids.Alarm] = {}
        self._members: dict[int, set[object]] = {}  # a grouped line alarm -> its conditions

    def handlers(self) -> dict[tuple[int, int], Callable[[Message], Any]]:
        return {(5, 3): self._s5f3, (5, 5): self._s5f5, (5, 7): self._s5f7}

    def changed(self, alid: int, *, is_set: bool, text: str, tool: str | None) -> None:
        """An alarm was set or cleared on the line: report it (never waits)."""
        alarm = self.known.get(alid)
        if alarm is None:  # a code the tables do not list: still reported, never dropped
            alarm = ids.Alarm(alid, ascii_text(f"{tool} {text}" if tool else text)[:40], tool,
                              ids.ALCD_ATTENTION)
            self.known[alid] = alarm
        if is_set:
            if alid in self.active:
                return  # already set: the host heard of it
            self.active[alid] = alarm
        elif self.active.pop(alid, None) is None:
            return
        if alid not in self.disabled:
            alcd = alarm.category | (ids.ALCD_SET if is_set else 0)
            self.eq.send_primary(5, 1, L(B(alcd), U4(alid), A(alarm.text)),
                                 f"ALID {alid} {'set' if is_set else 'cleared'}")
        values = {ids.DV_ALID: U4(alid), ids.DV_ALTX: A(alarm.text), ids.DV_TOOL: A(tool or "")}
        self.eq.emit(ids.CE_ALARM_SET if is_set else ids.CE_ALARM_CLEARED, values)
        own = ids.alarm_ceid(alid, is_set=is_set)  # E30: the alarm's own set/clear event
        if own in self.eq.reports.events:  # an alarm not in the tables has none
            self.eq.emit(own, values)

    def grouped(self, alid: int, member: object, *, is_set: bool, text: str,
                tool: str | None) -> None:
        """Condition ``member`` of line alarm ``alid`` was set or cleared: the alarm is set
        with its first condition and cleared with its last (reported by ``changed``)."""
        members = self._members.setdefault(alid, set())
        if is_set:
            first = not members
            members.add(member)
            if first:
                self.changed(alid, is_set=True, text=text, tool=tool)
        elif member in members:
            members.discard(member)
            if not members:
                self.changed(alid, is_set=False, text=text, tool=tool)

    def _entry(self, alarm: ids.Alarm) -> Item:
        alcd = alarm.category | (ids.ALCD_SET if alarm.alid in self.active else 0)
        return L(B(alcd), U4(alarm.alid), A(alarm.text))

    async def _s5f3(self, message: Message) -> Reply:
        aled_item, alid_item = message.item.items
        if aled_item.fmt is not Fmt.B:
            raise ValueError(f"ALED must be binary, got {aled_item!r}")
        enable = bool(aled_item.scalar & 0x80)
        alids = ids_of(alid_item) or list(self.known)
        if any(a not in self.known for a in alids):
            return 4, B(1)  # ACKC5 1: error, not accepted
        if enable:
            self.disabled.difference_update(alids)
        else:
            self.disabled.update(alids)
        self.eq.db.save("alarms_disabled", sorted(self.disabled))
        return 4, B(0)

    async def _s5f5(self, message: Message) -> Reply:
        alids = ids_of(message.body) or sorted(self.known)
        return 6, L(*(self._entry(self.known[a]) if a in self.known
                      else L(B(), id_item(a), A("")) for a in alids))  # E5: unknown ALID

    async def _s5f7(self, message: Message) -> Reply:
        return 8, L(*(self._entry(self.known[a]) for a in sorted(self.known)
                      if a not in self.disabled))


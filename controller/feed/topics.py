"""The feed's topic tree and payloads: line events in, MQTT messages out.

Pure bookkeeping, no network: ``FeedState.apply`` turns one line event into the
message for the event topic and the retained state it changes, and keeps that
state so a reconnecting publisher can put the *current* state back on a broker
that lost it (``FeedState.snapshot``). Topics under ``bumpline/<site>/<line>/``
(docs/events.md, "The MQTT feed"):

* ``events``: every event, in order, ``LineEvent.as_dict`` (not retained);
* ``state``: the line now: lots not finished, each tool's E10 state, alarms set;
* ``tool/<tool>``: a tool's last state (E10 state and its own, oven zones);
* ``lot/<lot>``: a lot's progress (its state and each wafer's);
* ``alarm/<source>/<code>``: an alarm while it is set (cleared: deleted);
* ``feed``: the feed itself: online, events published and dropped.

Every payload is a JSON object with ``schema`` (``SCHEMA`` of the event
stream), ``line`` and the ``seq`` of the last event it reflects.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from controller.line.events import SCHEMA, EventKind, LineEvent
from sequences.errors import SequenceError
from sequences.wafer.machine import state_of

FINISHED_LOTS = ("complete", "aborted")
KEEP_FINISHED = 50  # finished lots put back on a broker that restarted (older: forgotten)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes  # b"" on a retained topic deletes what the broker keeps
    retain: bool


def level(text: str) -> str:
    """One topic level: MQTT's separators and wildcards cannot be part of a name."""
    cleaned = "".join("_" if c in "/+#\0" else c for c in text.strip())
    return cleaned or "_"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


class FeedState:
    """The line's current state as retained messages, kept up to date event by event."""

    def __init__(self, site: str, line: str) -> None:
        self.line = line
        self.root = f"bumpline/{level(site)}/{level(line)}"
        self.retained: dict[str, bytes] = {}  # topic -> payload now (b"": deleted)
        self._lots: dict[str, dict[str, Any]] = {}
        self._tools: dict[str, dict[str, Any]] = {}
        self._alarms: dict[str, dict[str, Any]] = {}  # alarm topic -> what the line shows
        self._line: dict[str, Any] = {}
        self._finished: deque[str] = deque()

    def topic(self, *levels: str) -> str:
        return "/".join((self.root, *(level(part) for part in levels)))

    def apply(self, event: LineEvent) -> tuple[Message, list[Message]]:
        """(the event topic's message, the retained messages this event changes)."""
        changed: list[Message] = []
        if event.kind is EventKind.TOOL_STATE and event.tool:
            changed += self._tool(event)
        elif event.kind is EventKind.LOT_STATE and event.lot_id:
            changed += self._lot(event, state=str(event.data.get("state", "")),
                                 recipe=event.data.get("recipe"))
        elif event.kind is EventKind.WAFER_TRANSITION and event.lot_id and event.wafer_id:
            changed += self._lot(event, wafer=(event.wafer_id, event.data.get("to_state")))
        elif event.kind in (EventKind.ALARM_SET, EventKind.ALARM_CLEARED):
            changed += self._alarm(event)
        if changed and event.kind is not EventKind.WAFER_TRANSITION:
            body = self._line_body()
            if body != self._line:  # a tool refresh or a repeated state changes nothing here
                self._line = body
                changed.append(self._keep(self.topic("state"), {**self._head(event), **body}))
        return Message(self.topic("events"), encode(event.as_dict()), False), changed

    def snapshot(self) -> list[Message]:
        """Every retained topic as it is now, deletions included (a broker that restarted)."""
        return [Message(topic, payload, True) for topic, payload in self.retained.items()]

    def _line_body(self) -> dict[str, Any]:
        return {
            "lots": {lot: p["state"] for lot, p in self._lots.items()
                     if p["state"] not in FINISHED_LOTS},
            "tools": {tool: t.get("e10_state") for tool, t in self._tools.items()},
            "alarms": list(self._alarms.values()),
        }

    def _head(self, event: LineEvent) -> dict[str, Any]:
        return {"schema": SCHEMA, "line": self.line, "seq": event.seq,
                "tool_time": event.tool_time,
                "utc": event.utc.isoformat(timespec="milliseconds")}

    def _keep(self, topic: str, payload: dict[str, Any] | None) -> Message:
        body = b"" if payload is None else encode(payload)
        self.retained[topic] = body
        return Message(topic, body, True)

    def _tool(self, event: LineEvent) -> list[Message]:
        assert event.tool is not None
        if "previous" in event.data:  # an E10 change: what the tool said before is not now
            data = self._tools[event.tool] = dict(event.data)
        else:  # a refresh adds the tool's own state (or a setup) to its E10 change
            data = self._tools.setdefault(event.tool, {})
            data.update(event.data)
        payload = {**self._head(event), "tool": event.tool, **data}
        return [self._keep(self.topic("tool", event.tool), payload)]

    def _lot(self, event: LineEvent, *, state: str | None = None, recipe: Any = None,
             wafer: tuple[str, Any] | None = None) -> list[Message]:
        assert event.lot_id is not None
        lot = self._lots.setdefault(event.lot_id, {"state": "running", "recipe": None,
                                                   "wafers": {}})
        if state:
            lot["state"] = state
        if recipe:
            lot["recipe"] = recipe
        if wafer and wafer[1]:
            lot["wafers"][wafer[0]] = str(wafer[1])
        phases: dict[str, int] = {}
        for name in lot["wafers"].values():
            try:
                phase = state_of(name).phase.value
            except SequenceError:  # a state this feed does not know: shown as it is
                phase = name
            phases[phase] = phases.get(phase, 0) + 1
        payload = {**self._head(event), "lot_id": event.lot_id, "state": lot["state"],
                   "recipe": lot["recipe"], "wafers": dict(lot["wafers"]), "phases": phases}
        message = self._keep(self.topic("lot", event.lot_id), payload)
        if lot["state"] in FINISHED_LOTS and event.lot_id not in self._finished:
            self._finished.append(event.lot_id)
            if len(self._finished) > KEEP_FINISHED:  # the broker keeps it; we forget it
                old = self._finished.popleft()
                self._lots.pop(old, None)
                self.retained.pop(self.topic("lot", old), None)
        return [message]

    def _alarm(self, event: LineEvent) -> list[Message]:
        topic = self.topic("alarm", event.tool or "line", str(event.data.get("code", "")))
        if event.kind is EventKind.ALARM_CLEARED:
            # A clear that names no tool clears its code wherever it was set: the interlock
            # alarm is set naming the tool whose interlock held a wafer, and cleared for the
            # whole line once no wafer is held at one (controller/line/journal.py).
            topics = {topic}
            if event.tool is None:
                code = str(event.data.get("code", ""))
                topics |= {t for t in self._alarms if t.rsplit("/", 1)[-1] == level(code)}
            # Deleted even when this feed never heard it set: a controller before this one
            # (stopped, or killed) may have left it retained on the broker.
            for cleared in topics:
                self._alarms.pop(cleared, None)
            return [self._keep(cleared, None) for cleared in sorted(topics)]
        alarm = {"tool": event.tool, "code": event.data.get("code"),
                 "text": event.data.get("text"), "wafers": list(event.data.get("wafers", ())),
                 "lot_id": event.lot_id, "set_utc": event.utc.isoformat(timespec="milliseconds")}
        self._alarms[topic] = alarm
        return [self._keep(topic, {**self._head(event), **alarm})]

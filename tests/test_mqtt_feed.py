"""The MQTT feed (issue 13): real lots on the simulated line, a real mosquitto, real subscribers.

What a fab sees: every event in order on ``events``, the line's current state
retained (a subscriber that comes late gets it at once), and a broker that dies
mid-lot neither slows nor stops the lot: the feed keeps a bounded buffer,
counts what it had to drop, says so in its ``feed`` topic, and puts the current
state back when the broker returns. Waits are on messages and events, bounded
by ``WAIT_S``; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.feed.config import MqttConfigError, mqtt_config, parse_url
from controller.feed.mqtt import MqttFeed, mqtt_feed
from controller.feed.topics import KEEP_FINISHED, FeedState, Message
from controller.line.controller import LineController
from controller.line.events import EventKind, LineEvent, LineEventStream
from sequences.recipes.validate import load_valid_recipe
from tests import mqtt_broker
from tests.mqtt_broker import Broker, Got, gate, mosquitto
from tests.test_lot_run import rig, run_lots

WAIT_S = 30.0  # wall-second bound on any wait (a hang fails, never a pass)
LINE = "bay-A"
ROOT = f"bumpline/plant-1/{LINE}"
TOOLS = ("printer-1", "oven-1", "cleaner-1")  # the recipe's (no balls placed: no placer)
FAST = (0.05, 0.2)  # reconnection backoff for the tests (wall s)
# fed_line runs the simulator at 500x: at 2000x a loaded machine makes the oven's exit late
# (alarm 530), which would stop wafers for reasons that are not the feed's.


class Subscriber(mqtt_broker.Subscriber):
    """The fab's client, full topic names."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker, wait_s=WAIT_S)

    def events(self) -> list[dict[str, Any]]:
        return [g.payload for g in self.got if g.topic == f"{ROOT}/events" and g.payload]

    def last(self, topic: str) -> Got:
        return [g for g in self.got if g.topic == f"{ROOT}/{topic}"][-1]


def feed_says(online: bool, **more: Any) -> Callable[[Got], bool]:
    return lambda g: g.topic == f"{ROOT}/feed" and g.payload is not None and (
        g.payload["online"] is online and all(f(g.payload[k]) for k, f in more.items()))


def event_is(kind: str) -> Callable[[Got], bool]:
    return lambda g: g.topic == f"{ROOT}/events" and g.payload is not None and (
        g.payload["kind"] == kind)


@contextlib.asynccontextmanager
async def fed_line(tmp_path: Path, broker: Broker, *, buffer: int = 10_000,
                   speed: float = 500.0, url: str | None = None
                   ) -> AsyncIterator[tuple[Any, LineEventStream, MqttFeed]]:
    """The simulated line with an event stream and the feed on it (to ``url``: a gate to
    the broker; else the broker itself)."""
    config = mqtt_config({"site": "plant-1", "buffer": buffer}, url or broker.url)
    assert config is not None
    async with rig(f"sqlite:///{tmp_path / 'line.db'}", speed=speed) as r:
        stream = LineEventStream(LINE, r.clock.now)
        async with mqtt_feed(config, stream, LINE, backoff_s=FAST) as feed:
            yield r, stream, feed


def controller(r: Any, stream: LineEventStream) -> LineController:
    return LineController(r.store, r.tools, r.clock, recipes=load_valid_recipe, events=stream)


async def test_a_lot_reaches_a_subscriber_in_order_and_a_late_one_gets_the_state(
        tmp_path: Path) -> None:
    async with mosquitto(tmp_path) as broker, Subscriber(broker) as early:
        heard: list[LineEvent] = []
        async with fed_line(tmp_path, broker) as (r, stream, feed):
            await early.until(feed_says(True))
            stream.listen(heard.append)
            wafers = r.new_lot("L1", 2)
            [outcome] = await run_lots(controller(r, stream), ["L1"])
            assert outcome.state == "complete"
        final = (await early.until(feed_says(False))).payload
        assert final is not None
        # every event, once, in order, as the stream published it
        assert [e["seq"] for e in early.events()] == list(range(1, final["seq"] + 1))
        assert [e["seq"] for e in early.events()][-len(heard):] == [e.seq for e in heard]
        assert early.events()[-1] == json.loads(json.dumps(heard[-1].as_dict()))
        assert final["published"] == final["seq"] and final["dropped"] == 0
        assert feed.dropped == 0 and feed.connections == 1

        async with Subscriber(broker) as late:  # after the line stopped publishing
            lot = await late.until(lambda g: g.topic == f"{ROOT}/lot/L1")
            for tool in TOOLS:
                await late.until(lambda g, t=tool: g.topic == f"{ROOT}/tool/{t}")
            state = await late.until(lambda g: g.topic == f"{ROOT}/state")
            offline = await late.until(feed_says(False))
        assert lot.retain and state.retain and offline.retain
        assert lot.payload is not None and lot.payload["state"] == "complete"
        assert lot.payload["wafers"] == dict.fromkeys(wafers, "complete")
        assert lot.payload["phases"] == {"complete": 2}
        assert state.payload is not None and state.payload["lots"] == {}
        assert set(state.payload["tools"]) == set(TOOLS)
        assert late.last("tool/oven-1").payload["e10_state"] == state.payload["tools"]["oven-1"]
        assert not late.events()  # history is not retained, only state


async def test_a_broker_killed_mid_lot_neither_stops_the_lot_nor_loses_the_state(
        tmp_path: Path) -> None:
    buffer = 20
    async with mosquitto(tmp_path) as broker, gate(broker) as door:
        # The feed reaches the broker through a gate the test holds: events are not
        # retained, so the subscriber after the restart must be there before the feed
        # comes back and sends its buffer (else it would race the feed's reconnection).
        async with fed_line(tmp_path, broker, buffer=buffer, url=door.url) as (r, stream, feed):
            async with Subscriber(broker) as before:
                r.new_lot("L2", 2)
                run = asyncio.create_task(run_lots(controller(r, stream), ["L2"]))
                await before.until(event_is("step_ended"))
                await broker.kill()
                await door.shut()  # the feed's retries are refused until the test opens it
                [outcome] = await run  # the whole lot with no broker
            assert outcome.state == "complete"
            assert all(w.state == "complete" for w in r.store.wafers("L2"))
            sent_before = [e["seq"] for e in before.events()]
            assert sent_before == list(range(1, len(sent_before) + 1))
            assert feed.published < feed.last_seq  # the broker went before the lot ended
            last_seq = feed.last_seq

            await broker.start()  # on the same port
            async with Subscriber(broker) as after:  # subscribed (SUBACK) before the feed
                await door.open()  # is let back in: nothing it sends can pass it by
                back = await after.until(feed_says(True, connections=lambda n: n >= 2))
                lot = await after.until(lambda g: g.topic == f"{ROOT}/lot/L2" and (
                    g.payload is not None and g.payload["state"] == "complete"))
                for tool in TOOLS:
                    await after.until(lambda g, t=tool: g.topic == f"{ROOT}/tool/{t}")
                await after.until(lambda g: g.topic == f"{ROOT}/events" and (
                    g.payload is not None and g.payload["seq"] == last_seq))
        assert lot.payload is not None and lot.payload["phases"] == {"complete": 2}
        assert back.payload is not None and back.payload["dropped"] > 0  # reported
        assert feed.dropped > 0 and feed.published + feed.dropped == last_seq
        seqs = sorted({e["seq"] for e in after.events()})  # at least once: a seq may repeat
        assert seqs == list(range(seqs[0], last_seq + 1))  # in order, nothing skipped
        assert seqs[0] > last_seq - buffer  # nothing older than the buffer survived


def test_feed_settings_refuse_bad_input_in_one_line() -> None:
    assert mqtt_config(None, None) is None
    config = mqtt_config({"url": "mqtt://fab:pw@broker.plant:1884", "site": "p1"}, None)
    assert config is not None and (config.host, config.port, config.site) == (
        "broker.plant", 1884, "p1")
    assert (config.username, config.password) == ("fab", "pw")
    assert dataclasses.replace(parse_url("mqtt://h"), site="s").port == 1883
    bad: list[tuple[dict[str, Any] | None, str | None, str]] = [
        (None, "http://broker", "expected mqtt[s]://"),
        (None, "mqtt://", "expected mqtt[s]://"),
        (None, "mqtt://h:99999", "is not a broker URL"),
        (None, "mqttx://h", "expected mqtt[s]://"),
        ({"site": "x"}, None, "needs url"),
        ({"url": "mqtt://h", "bufer": 3}, None, "bufer: unknown key"),
        ({"url": "mqtt://h", "buffer": 0}, None, "buffer: expected a whole number"),
        ({"url": "mqtt://h", "site": " "}, None, "site: expected a name"),
        ({"url": 5}, None, "url: expected text"),
    ]
    for table, url, says in bad:
        with pytest.raises(MqttConfigError) as caught:
            mqtt_config(table, url)
        assert says in str(caught.value) and "\n" not in str(caught.value)


async def test_serve_once_with_mqtt_feeds_a_queued_lot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``bumpline serve --once --mqtt URL`` on the simulated line (its id: sim)."""
    monkeypatch.setenv("BUMPLINE_USER", "ann")
    db = f"sqlite:///{tmp_path / 'line.db'}"
    assert main(["lot", "start", "--lot", "Q1", "--recipe", "rebump-hipb-snpb", "--wafers",
                 "1", "--db", db]) == 0
    root = "bumpline/site/sim"
    async with mosquitto(tmp_path) as broker, Subscriber(broker) as fab:
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.cli", "serve", "--once", "--mqtt", broker.url,
            "--speed", "1000", "--seed", "1", "--db", db,
            "--report-dir", str(tmp_path / "reports"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        out, _ = await asyncio.wait_for(serve.communicate(), 120)
        assert serve.returncode == 0, out.decode()
        assert f"mqtt: feeding {broker.url} under {root}/" in out.decode()
        final = (await fab.until(lambda g: g.topic == f"{root}/feed" and g.payload is not None
                                 and g.payload["online"] is False)).payload
        lot = await fab.until(lambda g: g.topic == f"{root}/lot/Q1" and g.payload is not None
                              and g.payload["state"] == "complete")
    events = [g.payload["seq"] for g in fab.got if g.topic == f"{root}/events" and g.payload]
    assert final is not None and events == list(range(1, final["seq"] + 1))
    assert final["published"] == final["seq"] and final["dropped"] == 0
    assert lot.payload is not None and lot.payload["wafers"] == {"Q1-01": "complete"}


async def test_run_with_mqtt_feeds_its_lot_as_serve_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bumpline run`` is a controller too: the real process, its lot on the broker from
    the first event to the lot's end, every event in order, nothing dropped."""
    monkeypatch.setenv("BUMPLINE_USER", "ann")
    db = f"sqlite:///{tmp_path / 'line.db'}"
    root = "bumpline/site/sim"
    async with mosquitto(tmp_path) as broker, Subscriber(broker) as fab:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.cli", "run", "--lot", "R1", "--recipe",
            "rebump-hipb-snpb", "--wafers", "1", "--mqtt", broker.url, "--speed", "1000",
            "--seed", "1", "--plain", "--db", db, "--report-dir", str(tmp_path / "reports"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        out, _ = await asyncio.wait_for(run.communicate(), 120)
        assert run.returncode == 0, out.decode()
        assert f"mqtt: feeding {broker.url} under {root}/" in out.decode()
        final = (await fab.until(lambda g: g.topic == f"{root}/feed" and g.payload is not None
                                 and g.payload["online"] is False)).payload
        lot = await fab.until(lambda g: g.topic == f"{root}/lot/R1" and g.payload is not None
                              and g.payload["state"] == "complete")
    events = [g.payload for g in fab.got if g.topic == f"{root}/events" and g.payload]
    assert final is not None and [e["seq"] for e in events] == list(range(1, final["seq"] + 1))
    assert final["published"] == final["seq"] and final["dropped"] == 0
    assert "wafer_transition" in {e["kind"] for e in events}
    assert lot.payload is not None and lot.payload["wafers"] == {"R1-01": "complete"}


def test_serve_refuses_a_bad_feed_setting_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    assert main(["serve", "--once", "--mqtt", "http://broker", "--db", db]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--mqtt: expected mqtt[s]://" in err[0], err
    line = tmp_path / "line.toml"
    line.write_text('[line]\nname = "a"\ntime_scale = 100.0\n\n[mqtt]\nsite = "p1"\n')
    assert main(["serve", "--once", "--line", str(line), "--db", db]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "[mqtt] needs url" in err[0], err
    # run reads the same settings, before it takes the line or queues the lot.
    assert main(["run", "--lot", "B1", "--recipe", "rebump-hipb-snpb", "--wafers", "1",
                 "--mqtt", "mqtt://", "--db", db]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--mqtt: expected mqtt[s]://" in err[0], err
    assert not (tmp_path / "line.db").exists()  # nothing opened, nothing queued


def test_feed_state_keeps_what_is_true_now() -> None:
    """FeedState alone: alarms retained while set and deleted when cleared, a tool's
    refresh adding to its E10 state, a finished lot leaving the line's state, odd names
    kept out of MQTT's wildcards, and only the last finished lots kept for a snapshot."""
    clock = iter(range(1, 10_000))
    stream = LineEventStream("line+1/a", lambda: float(next(clock)))
    state = FeedState("plant #1", "line+1/a")
    stream.listen(lambda e: state.apply(e))
    assert state.root == "bumpline/plant _1/line_1_a"
    alarm = f"{state.root}/alarm/oven-1/530"
    stream.publish(EventKind.ALARM_SET, tool="oven-1", code=530, text="EXIT BLOCKED",
                   wafers=["L1-01"], lot_id="L1")
    assert json.loads(state.retained[alarm])["text"] == "EXIT BLOCKED"
    assert json.loads(state.retained[f"{state.root}/state"])["alarms"][0]["code"] == 530
    stream.publish(EventKind.ALARM_CLEARED, tool="oven-1", code=530, text="")
    assert state.retained[alarm] == b""  # deleted on the broker, in the snapshot too
    assert Message(alarm, b"", True) in state.snapshot()
    assert json.loads(state.retained[f"{state.root}/state"])["alarms"] == []
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                   previous="standby", reason="step")
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="productive",
                   tool_state="RUNNING", zones_c=[150.0, 180.0])
    oven = json.loads(state.retained[f"{state.root}/tool/oven-1"])
    assert (oven["e10_state"], oven["previous"], oven["tool_state"], oven["seq"]) == (
        "productive", "standby", "RUNNING", 4)
    for n in range(KEEP_FINISHED + 2):
        stream.publish(EventKind.LOT_STATE, lot_id=f"L{n}", state="running",
                       previous="queued", recipe="r", reason="")
        stream.publish(EventKind.WAFER_TRANSITION, lot_id=f"L{n}", wafer_id=f"L{n}-01",
                       to_state="step2_running", from_state="step2_waiting")
        assert json.loads(state.retained[f"{state.root}/state"])["lots"] == {f"L{n}": "running"}
        stream.publish(EventKind.LOT_STATE, lot_id=f"L{n}", state="complete",
                       previous="running", recipe="r", reason="")
    lots = [t for t in state.retained if "/lot/" in t]
    assert len(lots) == KEEP_FINISHED and lots[-1].endswith(f"/lot/L{KEEP_FINISHED + 1}")
    last = json.loads(state.retained[lots[-1]])
    assert last["state"] == "complete" and last["phases"] == {"running": 1}
    assert json.loads(state.retained[f"{state.root}/state"])["lots"] == {}

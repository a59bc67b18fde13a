"""The line event stream: order, listeners that fail, subscribers that fall behind."""

import asyncio
import json

from controller.line.controller import Progress
from controller.line.events import EventKind, LineEventStream


def make_stream() -> LineEventStream:
    clock = iter(range(100, 10_000))
    return LineEventStream("line-1", lambda: float(next(clock)))


def test_events_are_numbered_in_order_and_carry_ids_and_times():
    stream = make_stream()
    seen = []
    stream.listen(seen.append)
    stream.publish(EventKind.LOT_STATE, lot_id="L1", state="running", previous="queued")
    stream.publish(EventKind.ALARM_SET, tool="oven-1", code=530, text="EXIT BLOCKED",
                   wafers=["L1-01"])
    assert [e.seq for e in seen] == [1, 2]
    assert seen[0].tool_time == 100.0 and seen[1].tool_time == 101.0
    assert seen[1].data["code"] == 530 and seen[1].tool == "oven-1"
    payload = json.loads(json.dumps(seen[1].as_dict()))
    assert payload["kind"] == "alarm_set" and payload["schema"] == 1
    assert payload["utc"].endswith("+00:00")


def test_a_failing_listener_never_reaches_the_publisher():
    stream = make_stream()
    good = []

    def broken(event):
        raise RuntimeError("display crashed")

    stream.listen(broken)
    stream.listen(good.append)
    stream.publish(EventKind.TOOL_NOTE, tool="printer-1", text="changeover")
    assert len(good) == 1 and stream.listener_failures == 1


def test_unlisten_stops_delivery():
    stream = make_stream()
    seen = []
    undo = stream.listen(seen.append)
    stream.publish(EventKind.TOOL_NOTE, text="a")
    undo()
    stream.publish(EventKind.TOOL_NOTE, text="b")
    assert [e.data["text"] for e in seen] == ["a"]


async def test_a_subscriber_reads_in_order_in_its_own_task():
    stream = make_stream()
    sub = stream.subscribe("gem")
    got = []

    async def reader():
        async for event in sub:
            got.append(event.seq)

    task = asyncio.create_task(reader())
    for _ in range(5):
        stream.publish(EventKind.TOOL_NOTE, text="x")
    sub.close()
    await task
    assert got == [1, 2, 3, 4, 5]


async def test_a_slow_subscriber_loses_the_oldest_and_knows_how_many():
    stream = make_stream()
    sub = stream.subscribe("web", maxsize=3)
    for _ in range(10):  # never blocks the publisher
        stream.publish(EventKind.TOOL_NOTE, text="x")
    assert sub.missed == 7
    assert [(await sub.get()).seq for _ in range(3)] == [8, 9, 10]
    assert sub.get_nowait() is None
    sub.close()
    stream.publish(EventKind.TOOL_NOTE, text="after close")
    assert sub.pending() == 0


def test_the_live_view_reads_a_batch_start_and_end_as_tool_notes():
    notes: list[tuple[str, str]] = []
    stream = make_stream()
    stream.listen(Progress(on_tool_note=lambda tool, text: notes.append((tool, text))).listen)
    stream.publish(EventKind.BATCH_STARTED, tool="plater-1", lot_id="L1", batch_id="B1",
                   step=4, step_kind="barrier", wafers=["L1-01", "L1-02"], parameters={})
    stream.publish(EventKind.BATCH_ENDED, tool="plater-1", lot_id="L1", batch_id="B1", step=4,
                   step_kind="barrier", wafers=["L1-01", "L1-02"], riders=["L1-01", "L1-02"],
                   state="failed", status="ALARM", alarm_code=700, alarm_text="NI BATH TEMP OUT")
    assert notes == [("plater-1", "batch B1 started: 2 wafer(s), L1-01, L1-02"),
                     ("plater-1", "batch B1 ended ALARM, alarm 700")]
    heard = []
    other = make_stream()
    other.listen(heard.append)
    other.publish(EventKind.BATCH_ENDED, tool="plater-1", batch_id="B1", wafers=["L1-01"],
                  state="done", status="OK")
    payload = json.loads(json.dumps(heard[0].as_dict()))
    assert payload["kind"] == "batch_ended" and payload["data"]["status"] == "OK"


def test_a_listener_hears_only_its_kinds_and_an_unheard_event_is_not_built():
    stream = make_stream()
    notes = []
    undo = stream.listen(notes.append, kinds=[EventKind.TOOL_NOTE])
    assert stream.wants(EventKind.TOOL_NOTE) and not stream.wants(EventKind.WAFER_TRANSITION)
    assert stream.publish(EventKind.WAFER_TRANSITION, wafer_id="L1-01") is None  # nobody
    stream.publish(EventKind.TOOL_NOTE, text="a")
    assert [(e.seq, e.data["text"]) for e in notes] == [(1, "a")]  # no number was taken
    sub = stream.subscribe("gem")  # a subscription hears every kind
    assert stream.wants(EventKind.WAFER_TRANSITION)
    stream.publish(EventKind.WAFER_TRANSITION, wafer_id="L1-01")
    assert sub.get_nowait().kind is EventKind.WAFER_TRANSITION and len(notes) == 1
    sub.close()
    undo()
    assert not any(stream.wants(kind) for kind in EventKind)


def test_the_live_view_listens_only_for_what_it_shows():
    assert Progress().kinds() == set()  # no display: the line publishes nothing for it
    shown = Progress(on_event=lambda event: None, on_tool_note=lambda tool, text: None)
    assert shown.kinds() == {EventKind.WAFER_TRANSITION, EventKind.TOOL_NOTE,
                             EventKind.BATCH_STARTED, EventKind.BATCH_ENDED,
                             EventKind.ALARM_SET}

"""The MQTT publisher: the line event stream to a broker, never at the line's expense.

Why it is built this way (docs/decisions/0015-mqtt-feed.md):

* The feed hears events through a synchronous listener that only updates the
  current state (``FeedState``) and appends to a bounded buffer; the network is
  the feed's own task. The line never awaits the broker.
* The buffer holds at most ``buffer`` events. While the broker is away the
  oldest go first, each one counted in ``dropped`` and reported in the
  retained ``feed`` topic, never silently.
* Retained state is not buffered history but the current state: on every
  (re)connection, and after any loss, the feed first puts the whole current
  state back (``FeedState.snapshot``), so a subscriber, early or late, sees the
  line as it is now.
* Events and state go at QoS 1 (at least once: a subscriber drops a ``seq`` it
  has seen). An event whose acknowledgement did not come is sent again after
  the reconnection, in its place.
* Reconnection backs off from 0.5 s to 10 s. These are wall seconds, like the
  leases: they are about a network, not about tools.

aiomqtt (over paho-mqtt 2) does the protocol in the event loop: its connect
runs in an executor thread, publishing and acknowledgements are non-blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt

from controller.feed.config import MqttConfig
from controller.feed.topics import FeedState, Message, encode
from controller.line.events import SCHEMA, LineEvent, LineEventStream

log = logging.getLogger("controller.feed")

QOS = 1
PUBLISH_TIMEOUT_S = 5.0  # an acknowledgement later than this: the broker is taken as gone
BACKOFF_S = (0.5, 10.0)  # first and longest wait between connection attempts
FLUSH_S = 2.0  # at the end of serve, time given to send what is still buffered


@dataclass(frozen=True, slots=True)
class _Item:
    event: Message
    topics: tuple[str, ...]  # retained topics this event changed


class MqttFeed:
    """Publishes one line's events and state; ``run`` is its task (``mqtt_feed`` runs it)."""

    def __init__(self, config: MqttConfig, events: LineEventStream, line: str, *,
                 backoff_s: tuple[float, float] = BACKOFF_S) -> None:
        self.config = config
        self._tls = config.tls_context()  # built once: mqtts:// checks the broker's certificate
        self.backoff_s = backoff_s
        self.state = FeedState(config.site, line)
        self.published = 0  # events the broker acknowledged
        self.dropped = 0  # events lost from a full buffer (reported in the feed topic)
        self.connections = 0
        self.last_seq = 0
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()  # set while the broker is away
        self._pending: deque[_Item] = deque()
        self._resync = True
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._unlisten = events.listen(self._heard)

    # --- the line's side: synchronous, quick, never waits ---------------------------------

    def _heard(self, event: LineEvent) -> None:
        message, changed = self.state.apply(event)
        self.last_seq = event.seq
        if len(self._pending) >= self.config.buffer:
            self._pending.popleft()
            self.dropped += 1
            self._resync = True  # the state it carried goes out with the next snapshot
        self._pending.append(_Item(message, tuple(m.topic for m in changed)))
        self._wake.set()

    # --- the feed's task ---------------------------------------------------------------------

    def feed_status(self, *, online: bool) -> Message:
        payload = {"schema": SCHEMA, "line": self.state.line, "online": online,
                   "seq": self.last_seq, "published": self.published, "dropped": self.dropped,
                   "buffered": len(self._pending), "connections": self.connections,
                   "utc": datetime.now(UTC).isoformat(timespec="milliseconds")}
        return Message(self.state.topic("feed"), encode(payload), True)

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff, until ``close``."""
        backoff = self.backoff_s[0]
        while True:
            # Closing (the lot or serve ended): one more attempt to send what is left, now,
            # not after the backoff; mqtt_feed bounds it (FLUSH_S) and logs what is left.
            last_try = self._closing.is_set()
            will = self.feed_status(online=False)
            client = aiomqtt.Client(
                self.config.host, self.config.port, username=self.config.username,
                password=self.config.password, keepalive=self.config.keepalive_s,
                identifier=self.config.client_id or self.state.root.replace("/", "-"),
                will=aiomqtt.Will(will.topic, will.payload, QOS, True),
                timeout=PUBLISH_TIMEOUT_S, tls_context=self._tls)
            try:
                if self._tls is not None:
                    await self._check_certificate()
                async with client:
                    self.connections += 1
                    self._resync = True
                    if self.lost.is_set():
                        log.warning("mqtt: %s is back; %d events dropped so far",
                                    self.config.where, self.dropped)
                    self.lost.clear()
                    self.connected.set()
                    backoff = self.backoff_s[0]
                    await self._until_drained_or_gone(client)
                    await self._send(client, self.feed_status(online=False))
                    return
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:  # OSError: TLS refused
                self.connected.clear()
                if not self.lost.is_set():
                    log.warning("mqtt: %s unreachable (%s); the line goes on, the feed keeps "
                                "up to %d events and the current state", self.config.where,
                                exc, self.config.buffer)
                self.lost.set()
            if last_try:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, self.backoff_s[1])

    async def _check_certificate(self) -> None:
        """mqtts://: a TLS handshake of our own first, the broker's certificate checked
        (ssl.SSLError when refused). paho leaves the socket of a refused handshake open;
        asyncio closes its own."""
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port, ssl=self._tls),
            PUBLISH_TIMEOUT_S)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _until_drained_or_gone(self, client: aiomqtt.Client) -> None:
        """Drain; a dropped connection ends it at once (MqttError), not after a publish's
        acknowledgement times out: the messages iterator is aiomqtt's way to hear it."""
        drain = asyncio.create_task(self._drain(client))
        gone = asyncio.ensure_future(anext(aiter(client.messages)))  # subscribed to nothing
        try:
            await asyncio.wait({drain, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (drain, gone):
                task.cancel()
            await asyncio.gather(drain, gone, return_exceptions=True)
        if drain.cancelled():
            raise gone.exception() or aiomqtt.MqttError("disconnected")
        failed = drain.exception()
        if failed is not None:
            raise failed

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish in order until closing and nothing is left; MqttError when the broker goes."""
        while True:
            if self._resync:
                self._resync = False
                await self._send(client, self.feed_status(online=True))
                for message in self.state.snapshot():
                    await self._send(client, message)
            if not self._pending:
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()  # an event, or close()
                continue
            item = self._pending[0]
            await self._send(client, item.event)
            self.published += 1
            if self._pending and self._pending[0] is item:
                self._pending.popleft()
            else:  # pushed out of a full buffer while it was on its way: sent, not lost
                self.dropped -= 1
            for topic in item.topics:  # the state now, which may be newer than the event
                payload = self.state.retained.get(topic)
                if payload is not None:
                    await self._send(client, Message(topic, payload, True))

    @staticmethod
    async def _send(client: aiomqtt.Client, message: Message) -> None:
        await client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)

    def close(self) -> None:
        """Stop listening; ``run`` sends what it can and says the feed is offline."""
        self._unlisten()
        self._closing.set()
        self._wake.set()


@contextlib.asynccontextmanager
async def mqtt_feed(config: MqttConfig, events: LineEventStream, line: str, *,
                    backoff_s: tuple[float, float] = BACKOFF_S) -> AsyncIterator[MqttFeed]:
    """Run the feed beside the line; at the end give it ``FLUSH_S`` to send what is left."""
    feed = MqttFeed(config, events, line, backoff_s=backoff_s)
    task = asyncio.create_task(feed.run(), name="mqtt-feed")
    print(f"mqtt: feeding {config.where} under {feed.state.root}/", flush=True)
    try:
        yield feed
    finally:
        feed.close()
        try:
            await asyncio.wait_for(task, FLUSH_S)
        except TimeoutError:
            pass
        except Exception:  # a feed that failed must not turn the end of serve into a crash
            log.exception("mqtt: the feed failed")
        if feed._pending:  # never silently: the broker was away (or too slow) at the end
            log.warning("mqtt: %d events not sent at the end (%s away)", len(feed._pending),
                        feed.config.where)

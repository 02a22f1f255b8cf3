"""One reader of the event log per API process, fanned out to every waiter and SSE stream.

A Kafka consumer per SSE stream (or per waiting request) costs a connection, a
fetch loop and a share of the broker's fetch work each; at hundreds of open
streams that is most of the process. The hub instead assigns itself every
partition of ``events`` and ``deltas`` (read_committed, no group), starts at
their ends, and hands each record to the subscribers of its session, decoding
it once and only when someone listens (keys are compared as bytes first).

Two kinds of subscriber:

* :class:`Waiter` (``Prefer: wait=N``): fed synchronously while the hub reads;
  it sums the session's usage and resolves a future when the session ends, asks
  for approval, or (when it stays open) answers the user. No queue, so it
  cannot fall behind.
* :class:`Stream` (SSE): a bounded queue. A client too slow to drain it is cut
  off (``overflowed``) rather than holding back the hub and everyone else; it
  resumes with ``Last-Event-ID`` and loses nothing, because the log is the truth.

Nothing is missed between subscribing and reading: :meth:`EventHub.subscribe`
and :meth:`EventHub.position` run in one tick, every record at or after that
position reaches the subscriber, and what came before it is in the log
(:meth:`EventHub.backlog` reads it, from a small in-memory window of recent
records when it still holds them). Subscribing before producing a command (the
wait mode) needs no backlog at all: the command's events come after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agentstream.errors import AgentstreamError
from schemas import Codec, SchemaError
from streams.catalogue import Catalogue
from streams.clients import new_consumer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
"""(record name, decoded event)."""

STATUS_OF_END = {
    "SessionCompleted": "completed",
    "SessionFailed": "failed",
    "SessionCancelled": "cancelled",
}


class Subscriber:
    """Someone listening to one session's events (and maybe its token deltas)."""

    deltas = False

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.key = session_id.encode("utf-8")

    def feed(self, name: str, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def feed_delta(self, delta: dict[str, Any]) -> None:
        return None


@dataclass
class Outcome:
    """Where a session stands when a waiter resolves."""

    status: str
    """completed, failed, cancelled, waiting_for_user or waiting_for_approval."""
    seq: int
    """The seq of the event that settled it."""
    output: str | None = None
    """The answer (SessionCompleted.output, or the assistant's message)."""
    reason: str | None = None
    """Why a session failed or was cancelled."""
    usage: dict[str, float] = field(
        default_factory=lambda: {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    )
    """Tokens and cost of the model calls seen while waiting."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "seq": self.seq, "usage": self.usage}
        if self.output is not None:
            body["output"] = self.output
        if self.reason is not None:
            body["reason"] = self.reason
        return body


class Waiter(Subscriber):
    """Resolves when the session ends, waits for approval, or (``keep_open``) answered."""

    def __init__(self, session_id: str, *, keep_open: bool) -> None:
        super().__init__(session_id)
        self.keep_open = keep_open
        self.future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        self._last_answer: str | None = None

    def feed(self, name: str, event: dict[str, Any]) -> None:
        if self.future.done():
            return
        seq = int(event.get("seq", 0))
        if name == "LLMCallCompleted":
            self._usage["input_tokens"] += int(event.get("input_tokens", 0))
            self._usage["output_tokens"] += int(event.get("output_tokens", 0))
            self._usage["cost_usd"] += float(event.get("cost_usd", 0.0))
        elif name == "AssistantMessageAdded":
            self._last_answer = str(event.get("text", ""))
            if self.keep_open:
                self._settle("waiting_for_user", seq, self._last_answer)
        elif name == "ApprovalRequested":
            self._settle("waiting_for_approval", seq, None)
        elif name in STATUS_OF_END:
            output = event.get("output")
            reason = event.get("reason") if name != "SessionCompleted" else None
            self._settle(
                STATUS_OF_END[name],
                seq,
                output if output is not None else self._last_answer,
                reason,
            )

    def _settle(self, status: str, seq: int, output: str | None, reason: str | None = None) -> None:
        self.future.set_result(Outcome(status, seq, output, reason, dict(self._usage)))


class Stream(Subscriber):
    """An SSE stream's queue of events and deltas, bounded; overflow cuts it off."""

    deltas = True

    def __init__(self, session_id: str, *, max_queued: int) -> None:
        super().__init__(session_id)
        self.max_queued = max_queued
        self.overflowed = False
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._ready = asyncio.Event()

    def feed(self, name: str, event: dict[str, Any]) -> None:
        self._put((name, event))

    def feed_delta(self, delta: dict[str, Any]) -> None:
        self._put(("delta", delta))

    def _put(self, item: tuple[str, dict[str, Any]]) -> None:
        if self.overflowed:
            return
        if len(self._queue) >= self.max_queued:
            self.overflowed = True
            self._queue.clear()
        else:
            self._queue.append(item)
        self._ready.set()

    async def next(self, timeout_s: float) -> tuple[str, dict[str, Any]] | None:
        """The next item, or None after ``timeout_s`` without one (or once overflowed)."""
        if not self._queue and not self.overflowed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout_s)
        if self._queue:
            return self._queue.popleft()
        return None


class HubFullError(AgentstreamError):
    """More subscribers than the hub is configured to hold."""


class EventHub:
    """The API process's one reader of ``events`` and ``deltas``; see the module docstring."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalogue: Catalogue,
        codec: Codec,
        *,
        max_subscribers: int,
        recent_per_partition: int = 1024,
    ) -> None:
        self.kafka = kafka
        self.codec = codec
        self.max_subscribers = max_subscribers
        self._events = catalogue.events.name
        self._deltas = catalogue.deltas.name
        self._partitions = catalogue.partitions
        self._subscribers: dict[bytes, set[Subscriber]] = {}
        self._count = 0
        self._next: dict[int, int] = {}
        self._recent: dict[int, deque[tuple[int, bytes | None, bytes | None]]] = {
            p: deque(maxlen=recent_per_partition) for p in range(self._partitions)
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return self._count

    async def start(self) -> None:
        consumer = new_consumer(self.kafka, fetch_max_wait_ms=20)
        await consumer.start()
        events = [TopicPartition(self._events, p) for p in range(self._partitions)]
        deltas = [TopicPartition(self._deltas, p) for p in range(self._partitions)]
        consumer.assign(events + deltas)
        await consumer.seek_to_end(*events, *deltas)
        for tp in events:
            self._next[tp.partition] = await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    # ------------------------------------------------------------ subscribers

    def subscribe(self, subscriber: Subscriber) -> None:
        """From now on every record of its session reaches it (see :meth:`position`)."""
        if self._count >= self.max_subscribers:
            raise HubFullError(f"{self._count} subscribers already")
        self._subscribers.setdefault(subscriber.key, set()).add(subscriber)
        self._count += 1

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = self._subscribers.get(subscriber.key)
        if group is not None and subscriber in group:
            group.discard(subscriber)
            self._count -= 1
            if not group:
                del self._subscribers[subscriber.key]

    def position(self, partition: int) -> int:
        """Offset of the next events record of ``partition`` the hub hands out."""
        return self._next[partition]

    async def backlog(self, session_id: str, partition: int, first: int, end: int) -> list[Event]:
        """The session's events at offsets ``first`` .. ``end - 1`` of ``partition``, in order.

        From the window of recent records when it reaches back far enough, else
        read from Kafka with a short-lived consumer (a projector far behind).
        """
        if first >= end:
            return []
        key = session_id.encode("utf-8")
        window = self._recent[partition]
        if window and window[0][0] <= first:
            raw = [(k, v) for offset, k, v in list(window) if first <= offset < end]
        else:
            raw = await self._read_range(partition, first, end)
        return [event for k, v in raw if k == key and (event := self._decode(v)) is not None]

    async def _read_range(
        self, partition: int, first: int, end: int
    ) -> list[tuple[bytes | None, bytes | None]]:
        tp = TopicPartition(self._events, partition)
        consumer = new_consumer(self.kafka)
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, max(0, first))
            found: list[tuple[bytes | None, bytes | None]] = []
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for message in batches.get(tp, ()):
                    if message.offset < end:
                        found.append((message.key, message.value))
            return found
        finally:
            await consumer.stop()

    # ----------------------------------------------------------------- reading

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            except Exception as error:  # the consumer reconnects by itself: keep reading
                log.warning("event hub: fetch failed (%s); retrying", error)
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                if tp.topic == self._events:
                    self._dispatch_events(tp.partition, messages)
                else:
                    self._dispatch_deltas(messages)

    def _dispatch_events(self, partition: int, messages: Iterable[Any]) -> None:
        recent = self._recent[partition]
        subscribers = self._subscribers
        last = -1
        for message in messages:
            last = message.offset
            recent.append((message.offset, message.key, message.value))
            listening = subscribers.get(message.key)
            if not listening:
                continue
            event = self._decode(message.value)
            if event is None:
                continue
            for subscriber in list(listening):
                subscriber.feed(*event)
        if last >= 0:
            self._next[partition] = last + 1

    def _dispatch_deltas(self, messages: Iterable[Any]) -> None:
        for message in messages:
            listening = self._subscribers.get(message.key)
            if not listening or message.value is None:
                continue
            try:
                name, delta = self.codec.decode(message.value)
            except SchemaError:
                continue
            if name != "TokenDelta":
                continue
            data = {"call_id": delta["call_id"], "index": delta["index"], "text": delta["text"]}
            for subscriber in list(listening):
                if subscriber.deltas:
                    subscriber.feed_delta(data)

    def _decode(self, value: bytes | None) -> Event | None:
        if value is None:
            return None
        try:
            return self.codec.decode(value)
        except SchemaError:
            return None  # the projector dead-letters it; listeners skip it

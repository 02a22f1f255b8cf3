"""Work executors: thousands of LLM or tool calls in flight per process.

An executor consumes a work topic (``llm-calls`` or ``tool-calls``) in its own
consumer group and starts a task per work item without waiting for the ones
before it, so a slow call never blocks another session. Each task turns the
item into a result command (LLMCallResult / ToolCallResult) produced to the
inbox, keyed by session id. Offsets are committed only up to the lowest record
not yet done (``PartitionProgress``), so a crash re-runs unfinished calls and
never skips one; a re-run's duplicate result is ignored by the engine by
``call_id``. No Kafka transaction is held open across a call.

What an executor does with an item is its ``handler``; see ``handlers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from processors import metrics
from processors.executors.commit_offsets import PartitionProgress
from processors.settings import ExecutorSettings
from schemas import Codec, SchemaError
from streams.catalogue import Catalogue, TopicSpec
from streams.clients import new_group_consumer, new_producer
from streams.dlq import dead_letter_of
from streams.lag import fetch_position
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

Record = tuple[str, dict[str, Any]]
Handler = Callable[[str, dict[str, Any]], Awaitable[Record | None]]
"""(work item name, work item) → result command to produce to the inbox, or None."""


@dataclass(frozen=True, slots=True)
class ExecutorStats:
    """Counters of one executor."""

    started: int
    finished: int
    in_flight: int
    peak_in_flight: int


class ResultProducer:
    """The producer an executor sends its results to the inbox with, shareable by
    every executor of a process (started by the first, stopped by the last).

    Shared, the LLM and tool results bound for one inbox partition leave in one
    request instead of two: on a 2-core machine every request between processes
    costs CPU in the sender, the kernel and the broker, and that CPU is what the
    latency under load is made of.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._users = 0
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                # Our producer settings without linger: aiokafka sends one request per
                # broker at a time, so results that finish while one is in flight batch
                # up anyway, and linger would add its full wait to every step at light
                # load (the result-produce histogram of bench_engine shows it).
                producer = new_producer(self._kafka, linger_ms=0)
                await producer.start()
                self._producer = producer
            self._users += 1
            return self._producer

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0 and self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, executor: WorkExecutor) -> None:
        self._executor = executor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Until the new assignment, nothing is ours (rebalances revoke everything first).
        self._executor._assigned([])
        await self._executor._commit(final=True)
        for tp in revoked:
            self._executor._progress.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._executor._assigned(assigned)


class WorkExecutor:
    """Runs ``handler`` for every record of ``topic`` with bounded concurrency."""

    def __init__(
        self,
        *,
        name: str,
        kafka: KafkaSettings,
        topic: TopicSpec,
        handler: Handler,
        settings: ExecutorSettings | None = None,
        codec: Codec | None = None,
        results: ResultProducer | None = None,
    ) -> None:
        self.name = name
        self._results = results or ResultProducer(kafka)
        self.kafka = kafka
        self.catalogue = Catalogue.from_settings(kafka)
        self.topic = topic
        self.handler = handler
        self.settings = settings or ExecutorSettings()
        self.codec = codec or Codec()
        self.group_id = f"{kafka.topic_prefix}.{name}"
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._slots = asyncio.Semaphore(self.settings.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.started_count = 0
        self.finished_count = 0
        self.peak_in_flight = 0
        # Read at scrape time: a gauge set only when records arrive would keep its
        # last value once the executor went idle.
        metrics.WORK_IN_FLIGHT.labels(name).set_function(
            lambda: self.started_count - self.finished_count
        )
        self._item_age = metrics.WORK_ITEM_AGE.labels(name)
        self._result_send = metrics.RESULT_SEND_SECONDS.labels(name)
        self._lag = metrics.LagGauge(self.group_id)
        metrics.EXECUTOR_SLOTS.labels(name).set(self.settings.max_in_flight)

    def stats(self) -> ExecutorStats:
        in_flight = self.started_count - self.finished_count
        return ExecutorStats(
            self.started_count, self.finished_count, in_flight, self.peak_in_flight
        )

    def assignment_changed(self, owned: int, total: int) -> None:
        """At every rebalance: ``owned`` of the topic's ``total`` partitions are ours
        (0 from the revocation until the new assignment).

        Sessions spread over partitions by key, so this is the executor's share
        of the work; the LLM executor takes the same share of every rate limit.
        """
        return None

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        known = consumer.partitions_for_topic(self.topic.name) if consumer is not None else None
        total = len(known) if known else self.topic.partitions
        owned = sum(1 for tp in assigned if tp.topic == self.topic.name)
        self.assignment_changed(owned, total)

    async def start(self) -> None:
        self._producer = await self._results.acquire()
        self._consumer = new_group_consumer(self.kafka, self.group_id)
        self._consumer.subscribe([self.topic.name], listener=_Rebalance(self))
        await self._consumer.start()
        self._loops = [
            asyncio.create_task(self._run(), name=f"{self.name}-run"),
            asyncio.create_task(self._commit_loop(), name=f"{self.name}-commit"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        if self._tasks:  # let calls under way finish briefly; the rest re-run elsewhere
            await asyncio.wait(self._tasks, timeout=2.0)
        with contextlib.suppress(Exception):
            await self._commit(final=True)
        for task in self._tasks:
            task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            self._producer = None
            await self._results.release()

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=2000)
            for tp, records in batches.items():
                progress = self._progress.setdefault(tp, PartitionProgress())
                for record in records:
                    await self._slots.acquire()
                    progress.started(record.offset)
                    self.started_count += 1
                    task = asyncio.create_task(self._handle(tp, progress, record))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                in_flight = self.started_count - self.finished_count
                self.peak_in_flight = max(self.peak_in_flight, in_flight)

    async def _handle(self, tp: TopicPartition, progress: PartitionProgress, record: Any) -> None:
        started = time.perf_counter()
        age = time.time() - record.timestamp / 1000
        self._item_age.observe(max(0.0, age))
        outcome = "ok"
        try:
            result = await self._result_of(record)
            if result is not None:
                name, command = result
                assert self._producer is not None
                sending = time.perf_counter()
                await self._producer.send_and_wait(
                    self.catalogue.inbox.name,
                    self.codec.encode(name, command),
                    key=record.key,
                    partition=tp.partition,
                    headers=[("type", name.encode())],
                )
                self._result_send.observe(time.perf_counter() - sending)
            else:
                outcome = "skipped"
        except Exception as error:  # a poison item must not stop the executor
            outcome = "dlq"
            log.exception("%s: work item %s@%d failed", self.name, tp.topic, record.offset)
            await self._dead_letter(record, "error", repr(error))
        finally:
            progress.finished(record.offset)
            self.finished_count += 1
            self._slots.release()
            items, seconds = metrics.work_outcome(self.name, outcome)
            items.inc()
            seconds.observe(time.perf_counter() - started)

    async def _result_of(self, record: Any) -> Record | None:
        try:
            name, item = self.codec.decode(record.value)
        except SchemaError as error:
            await self._dead_letter(record, "undecodable", str(error))
            return None
        return await self.handler(name, item)

    async def _dead_letter(self, record: Any, reason: str, error: str) -> None:
        letter = dead_letter_of(record, reason=reason, error=error, source=self.name)
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.catalogue.dlq.name, letter.value, key=letter.key, headers=letter.headers
        )
        metrics.DLQ_RECORDS.labels(self.name, reason).inc()

    async def _commit_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.commit_interval_s)
            try:
                await self._commit()
                if self._lag.due():
                    await self._lag.update(self._consumer, await self._done_positions())
            except Exception:
                log.exception("%s: offset commit failed (will retry)", self.name)

    async def _done_positions(self) -> dict[TopicPartition, int]:
        """Per owned partition, the offset this executor is done up to: its lowest
        unfinished item or, with none under way, the fetch position, which is past the
        marker that ends the engine's transaction (a committed offset stops before it).

        The fetch position counts as done only while no slot is awaited: ``_run`` starts
        every fetched record without suspending unless it waits for a slot, so then
        every record handed out is started and, with none in flight, finished.
        """
        consumer = self._consumer
        if consumer is None:
            return {}
        fetched_all_started = not self._slots.locked()
        done: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            progress = self._progress.get(tp)
            lowest = progress.committable() if progress is not None else None
            if progress is not None and progress.in_flight and lowest is not None:
                done[tp] = lowest
            elif fetched_all_started:
                position = await fetch_position(consumer, tp)
                if position is not None:  # none yet: just assigned, measured next time
                    done[tp] = position
            elif lowest is not None:
                done[tp] = lowest
        return done

    async def _commit(self, final: bool = False) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        offsets: dict[TopicPartition, int] = {}
        for tp, progress in self._progress.items():
            offset = progress.committable()
            if offset is not None and offset != self._committed.get(tp):
                offsets[tp] = offset
        if offsets:
            await consumer.commit(offsets)
            self._committed.update(offsets)

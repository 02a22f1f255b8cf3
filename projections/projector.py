"""The projector: ``agentstream.events`` -> Postgres read models, exactly once.

One aiokafka consumer in the group ``<prefix>.projector`` reads the events
topic (read_committed, so events of aborted engine transactions never show).
The position of each partition is the ``projection_tracking`` row written in
the same Postgres transaction as the rows (see :mod:`projections.writer`); the
group's Kafka offsets only mirror it every few seconds, for lag tools (a reset
of them with Kafka's own tool is reported at assignment, not applied). On
assignment the consumer seeks to that position + 1; after any failure it rolls
back, seeks back there and retries, so a crash or restart anywhere applies each
event once.

Per batch (``getmany``), its partitions are dealt into ``parallel`` groups,
each applied in its own transaction, concurrently (disjoint partitions hold
disjoint sessions). Per group: decode, lock its tracking rows, drop records
at or below the stored offsets (another owner got there first), load the
touched sessions, fold (:mod:`projections.fold`), write, move the tracking
rows, commit. A record that does not decode, or an event the fold refuses,
goes to the DLQ (``streams.dlq``) before the commit and the partition moves
on; should the commit then fail, the retry may dead-letter it again (the DLQ
is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.db import driver
from projections.fold import BatchFold, PoisonEvent
from projections.writer import load_sessions, lock_positions, positions, set_positions, write_fold
from schemas import EVENT_NAMES, Codec, SchemaError
from streams.catalogue import Catalogue
from streams.clients import new_consumer
from streams.dlq import dead_letter_of
from streams.lag import LagGauge, fetch_positions
from streams.offsets import MIRROR_METADATA, warn_foreign_offsets
from streams.producer import OutgoingRecord, Producer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

EVENTS_APPLIED = Counter(
    "agentstream_projector_events_total", "Events applied to the read models.", ["stream"]
)
DEAD_LETTERS = Counter(
    "agentstream_projector_dead_letters_total", "Events the projector sent to the DLQ.", ["stream"]
)
BATCH_SECONDS = Histogram(
    "agentstream_projector_batch_seconds",
    "Time to apply one batch to Postgres, in seconds.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_EVENT_NAMES = frozenset(EVENT_NAMES)
SOURCE = "projector"


def _message(batches: Mapping[TopicPartition, Sequence[Any]], partition: int, offset: int) -> Any:
    """The record at (partition, offset) of ``batches`` (only looked up for poison)."""
    for tp, messages in batches.items():
        if tp.partition == partition:
            for message in messages:
                if message.offset == offset:
                    return message
    raise KeyError((partition, offset))


def _split(
    batches: Mapping[TopicPartition, Sequence[Any]], groups: int
) -> list[dict[TopicPartition, Sequence[Any]]]:
    """Partitions dealt into at most ``groups`` groups of about equal record counts."""
    parts: list[dict[TopicPartition, Sequence[Any]]] = [{} for _ in range(groups)]
    sizes = [0] * groups
    for tp in sorted(batches, key=lambda tp: -len(batches[tp])):
        smallest = sizes.index(min(sizes))
        parts[smallest][tp] = batches[tp]
        sizes[smallest] += len(batches[tp])
    return [part for part in parts if part]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._projector._sought.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._projector.seek_to_tracked(assigned)


class Projector:
    """Keeps the read models of one events topic up to date; see the module docstring."""

    def __init__(
        self,
        kafka: KafkaSettings,
        engine: AsyncEngine,
        *,
        max_batch_records: int = 5000,
        codec: Codec | None = None,
        group_id: str | None = None,
        parallel: int = 2,
        dead_letters: bool = True,
    ) -> None:
        self.kafka = kafka
        self.parallel = max(1, parallel)
        """Partition groups applied concurrently per batch (each in its own transaction)."""
        self.engine = engine
        self.catalogue = Catalogue.from_settings(kafka)
        self.stream = self.catalogue.events.name
        self.max_batch_records = max_batch_records
        self.codec = codec or Codec()
        self.group_id = group_id or f"{kafka.topic_prefix}.projector"
        self.dead_letters = dead_letters
        """Send refused events to the DLQ; a rebuild beside the live projector (a shadow
        backfill) logs them instead: the live projector dead-lettered them already."""
        self.applied = 0
        """Events applied by this instance."""
        self.batches = 0
        """Batches committed by this instance."""
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: Producer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._applied_counter = EVENTS_APPLIED.labels(self.stream)
        self._batch_timer = BATCH_SECONDS.labels(self.stream)
        DEAD_LETTERS.labels(self.stream)  # at 0, so the first dead letter shows in increase()
        self._lag = LagGauge(self.group_id)
        self._sought: set[TopicPartition] = set()
        """Partitions positioned from ``projection_tracking`` (and checked) since assigned."""

    async def start(self) -> None:
        self._dlq = Producer(self.kafka, self.codec)
        await self._dlq.start()
        self._consumer = new_consumer(
            self.kafka,
            group_id=self.group_id,
            max_poll_records=self.max_batch_records,
            fetch_max_wait_ms=20,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._consumer.subscribe([self.stream], listener=_Rebalance(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="projector")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the batch under way (up to ``grace_s``), then stop.

        Cancelling in the middle of a Postgres transaction can leave its pooled
        connection inside that transaction, holding the tracking rows' locks, so a
        projector started next in the same process waits on them; a graceful stop
        never does that. :meth:`kill` is the crash.
        """
        if self._task is not None:
            self._stopping.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        await self.kill()

    async def kill(self) -> None:
        """Stop at once, wherever the projector is (a crash, for tests). A crashed
        process loses its Postgres connections; in process, dispose the engine's pool."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._dlq is not None:
            await self._dlq.stop()
            self._dlq = None

    async def __aenter__(self) -> Projector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def seek_to_tracked(self, tps: Iterable[TopicPartition]) -> None:
        """Position the consumer right after the last applied offset of each partition."""
        consumer = self._consumer
        tps = list(tps)
        if consumer is None or not tps:
            return
        async with self.engine.connect() as connection:
            stored = await positions(
                await driver(connection), self.stream, [tp.partition for tp in tps]
            )
        self._sought.difference_update(tps)
        resumes: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = stored.get(tp.partition, -1)
            if offset < 0:
                await consumer.seek_to_beginning(tp)
                resumes[tp] = int((await consumer.beginning_offsets([tp]))[tp])
            else:
                consumer.seek(tp, offset + 1)
                resumes[tp] = offset + 1
        # Group offsets only mirror these positions: a reset made with Kafka's own tool
        # is reported, not silently ignored (`agentstream offsets reset` moves the rows).
        await warn_foreign_offsets(
            self.kafka, self.group_id, resumes, component="projector",
            kept_in="Postgres projection_tracking",
        )  # fmt: skip
        self._sought.update(tps)

    async def _mirror(self, consumer: AIOKafkaConsumer, done: Mapping[TopicPartition, int]) -> None:
        """Commit the positions stored in Postgres as the group's offsets, for lag tools
        (never read back: the projector resumes from ``projection_tracking``)."""
        # Only positions sought from Postgres: before that, a just assigned partition's
        # position comes from the group offsets themselves (and would hide a reset).
        mirrored = {tp: (o, MIRROR_METADATA) for tp, o in done.items() if tp in self._sought}
        if not mirrored:
            return
        try:
            await consumer.commit(mirrored)
        except Exception as error:  # a rebalance under way: the next round commits
            log.debug("projector offset mirror skipped: %r", error)

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            if self._lag.due():  # between batches, what is fetched is stored in Postgres
                done = await fetch_positions(consumer)
                await self._lag.update(consumer, done)
                await self._mirror(consumer, done)
            batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch_records)
            if not batches:
                continue
            # Disjoint partition groups hold disjoint sessions: their transactions never
            # touch the same rows, so they run concurrently, and the decoding and folding
            # of one overlaps the other's wait on Postgres.
            groups = _split(batches, self.parallel)
            results = await asyncio.gather(
                *(self._apply_or_isolate(group) for group in groups), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for failure in failures:
                if isinstance(failure, asyncio.CancelledError):
                    raise failure
            if failures:
                log.error("projector batch failed; retrying from the tracked offsets: %r",
                          failures[0])  # fmt: skip
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.seek_to_tracked(consumer.assignment())

    async def _apply_or_isolate(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        try:
            await self.apply(batches)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            log.warning("a batch holds a value Postgres refuses; applying it record by record")
            await self._apply_isolated(batches)

    async def apply(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> int:
        """Apply one ``getmany`` result in one Postgres transaction; events applied."""
        started = time.perf_counter()
        decoded: list[tuple[int, int, str, dict[str, Any]]] = []
        poison: list[tuple[Any, str]] = []
        last: dict[int, int] = {}
        for tp in sorted(batches):
            for message in batches[tp]:
                last[tp.partition] = message.offset
                try:
                    if message.value is None:
                        raise SchemaError("value is null")
                    name, event = self.codec.decode(message.value)
                    if name not in _EVENT_NAMES:
                        raise SchemaError(f"{name} is not an event")
                except SchemaError as error:
                    poison.append((message, f"undecodable: {error}"))
                    continue
                decoded.append((message.partition, message.offset, name, event))
        if not last:
            return 0
        async with self.engine.connect() as connection:
            raw = await driver(connection)
            async with raw.transaction():
                stored = await lock_positions(raw, self.stream, list(last))
                fresh = [d for d in decoded if d[1] > stored.get(d[0], -1)]
                poison = [p for p in poison if p[0].offset > stored.get(p[0].partition, -1)]
                sessions = {str(e.get("session_id")) for _, _, _, e in fresh}
                fold = BatchFold(await load_sessions(raw, self.stream, sessions))
                for partition, offset, name, event in fresh:
                    try:
                        fold.apply(partition, offset, name, event)
                    except PoisonEvent as error:
                        poison.append((_message(batches, partition, offset), f"rejected: {error}"))
                await write_fold(raw, self.stream, fold)
                moved = {p: o for p, o in last.items() if o > stored.get(p, -1)}
                if moved:
                    await set_positions(raw, self.stream, moved)
                if poison:
                    await self._dead_letter(poison)
        self.applied += fold.applied
        self.batches += 1
        self._applied_counter.inc(fold.applied)
        self._batch_timer.observe(time.perf_counter() - started)
        return fold.applied

    async def _apply_isolated(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Apply a refused batch one record at a time; what Postgres refuses goes to the DLQ.

        Only after a data or constraint error (a value no table can hold, a row
        that should not exist), so one bad event cannot stop its partition.
        Events after it apply normally.
        """
        for tp in sorted(batches):
            for message in batches[tp]:
                try:
                    await self.apply({tp: [message]})
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
                    async with self.engine.connect() as connection:
                        raw = await driver(connection)
                        async with raw.transaction():
                            stored = await lock_positions(raw, self.stream, [tp.partition])
                            if message.offset > stored.get(tp.partition, -1):
                                await set_positions(
                                    raw, self.stream, {tp.partition: message.offset}
                                )
                                await self._dead_letter([(message, f"rejected: {error}")])

    async def _dead_letter(self, poison: list[tuple[Any, str]]) -> None:
        if not self.dead_letters:
            for message, why in poison:
                log.warning("skipped %s[%d]@%d: %s", message.topic, message.partition,
                            message.offset, why)  # fmt: skip
            return
        assert self._dlq is not None
        records = []
        for message, why in poison:
            reason, _, error = why.partition(": ")
            letter = dead_letter_of(message, reason=reason, error=error, source=SOURCE)
            log.warning(
                "dead letter %s[%d]@%d: %s", message.topic, message.partition, message.offset, why
            )
            records.append(
                OutgoingRecord(
                    self.catalogue.dlq.name, letter.key or b"", letter.value or b"", letter.headers
                )
            )
        await self._dlq.send_many(records)
        DEAD_LETTERS.labels(self.stream).inc(len(records))

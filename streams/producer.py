"""Producing our records: idempotent, acks=all, keyed by session id, batched.

Two ways in, one configuration (:func:`producer_config`):

* :class:`Producer` wraps ``AIOKafkaProducer`` for the gateway, the CLI and the
  executors. ``send`` encodes one record; ``send_many`` takes already-encoded
  :class:`OutgoingRecord` values and writes them through aiokafka's batch API
  (``create_batch`` / ``send_batch``), one open batch per partition, then
  awaits every batch. That skips aiokafka's per-record ``send`` coroutine,
  future and accumulator lookup, which dominate the per-record cost; per-record
  ordering within a partition is kept because a partition's batches are queued
  in order and aiokafka keeps one request in flight per broker.
* :func:`transactional_producer` builds a transactional ``Producer`` for the
  session engine. The transactional id is the engine's concern (one per input
  partition, since aiokafka has no KIP-447 fencing).

Every record carries the header ``type`` = its record name (UTF-8), so a
consumer can route or skip it without decoding, and its key is the session id
as UTF-8, partitioned with Java's murmur2 (:mod:`streams.partitioner`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata, TopicPartition

from schemas import Codec
from streams.errors import TopicMismatchError
from streams.partitioner import murmur2_partitioner, partition_for_key
from streams.security import start_failure
from streams.settings import KafkaSettings

Headers = Sequence[tuple[str, bytes]]

LINGER_MS = 5
"""Wait up to 5 ms to fill a batch: invisible next to an LLM call, and it lets a
burst of single sends share requests."""
MAX_BATCH_BYTES = 256 * 1024
"""Per-partition batch size. Large enough that a 200-byte record costs ~1/1000 of
a request; below the broker's 1 MiB message.max.bytes."""
MAX_REQUEST_BYTES = 1024 * 1024
"""aiokafka's default max_request_size, enforced for the batch path too."""
MAX_RECORD_BYTES = MAX_REQUEST_BYTES - 1024
"""Largest key + value accepted: room is left for the batch and request headers."""

_TYPE_HEADERS: dict[str, list[tuple[str, bytes]]] = {}


def type_headers(name: str) -> list[tuple[str, bytes]]:
    """``[("type", name)]``, built once per record name (it is on every record)."""
    headers = _TYPE_HEADERS.get(name)
    if headers is None:
        headers = _TYPE_HEADERS[name] = [("type", name.encode("utf-8"))]
    return headers


class OutgoingRecord(NamedTuple):
    """One encoded record ready for :meth:`Producer.send_many`."""

    topic: str
    """Full topic name."""
    key: bytes
    """The session id as UTF-8; murmur2 of it picks the partition."""
    value: bytes
    """Confluent wire-format bytes from :class:`schemas.Codec`."""
    headers: Headers
    """At least ``("type", record name)``; see :func:`type_headers`."""
    partition: int | None = None
    """Precomputed murmur2 partition, or None to compute it when sending. Lets
    validation workers do the hashing in parallel; see ``send_many(partition_count=)``."""


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments every producer of ours gets (tests and benchmarks reuse them)."""
    config: dict[str, Any] = {
        **settings.client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": LINGER_MS,
        "max_batch_size": MAX_BATCH_BYTES,
        "max_request_size": MAX_REQUEST_BYTES,
        "partitioner": murmur2_partitioner,
    }
    config.update(overrides)
    return config


class Producer:
    """An idempotent, batched, session-keyed producer of our records.

    Use as ``async with Producer(settings) as producer: ...``; the context
    flushes and closes. ``aiokafka`` exposes the underlying producer for what
    this class does not wrap.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: Codec | None = None,
        *,
        transactional_id: str | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings
        self.codec = codec or Codec()
        if transactional_id is not None:
            overrides["transactional_id"] = transactional_id
        self._overrides = overrides
        self._producer: AIOKafkaProducer | None = None
        self._partition_counts: dict[str, int] = {}

    @property
    def aiokafka(self) -> AIOKafkaProducer:
        """The started ``AIOKafkaProducer``."""
        if self._producer is None:
            raise RuntimeError("producer not started; use `async with Producer(...)`")
        return self._producer

    async def start(self) -> None:
        # Created here, not in __init__: AIOKafkaProducer binds the running loop.
        producer = AIOKafkaProducer(**producer_config(self.settings, **self._overrides))
        try:
            await producer.start()
        except Exception as error:
            await producer.stop()
            explained = await start_failure(self.settings.bootstrap, self.settings.security, error)
            if explained is None:
                raise
            raise explained from error
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is queued and close."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def encode(
        self,
        topic: str,
        name: str,
        record: Mapping[str, Any],
        *,
        headers: Headers = (),
    ) -> OutgoingRecord:
        """Encode ``record`` (of type ``name``) for ``topic``, keyed by its session id."""
        value = self.codec.encode(name, dict(record))
        all_headers = type_headers(name) + list(headers) if headers else type_headers(name)
        return OutgoingRecord(topic, str(record["session_id"]).encode("utf-8"), value, all_headers)

    async def send(
        self,
        topic: str,
        name: str,
        record: Mapping[str, Any],
        *,
        headers: Headers = (),
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the returned future resolves when Kafka has acked it (acks=all).

        Raises ``SchemaError`` (nothing queued) if the record does not encode.
        """
        out = self.encode(topic, name, record, headers=headers)
        future: asyncio.Future[RecordMetadata] = await self.aiokafka.send(
            out.topic, out.value, key=out.key, headers=list(out.headers)
        )
        return future

    async def send_and_wait(
        self,
        topic: str,
        name: str,
        record: Mapping[str, Any],
        *,
        headers: Headers = (),
    ) -> RecordMetadata:
        """:meth:`send` and wait for the ack."""
        return await (await self.send(topic, name, record, headers=headers))

    async def partition_count(self, topic: str) -> int:
        """Partitions of ``topic`` per the cluster metadata (cached: ours never change)."""
        count = self._partition_counts.get(topic)
        if count is None:
            partitions = await self.aiokafka.partitions_for(topic)
            count = self._partition_counts[topic] = len(partitions)
        return count

    async def send_many(
        self,
        records: Iterable[OutgoingRecord],
        *,
        progress: Callable[[int], None] | None = None,
        partition_count: int | None = None,
    ) -> int:
        """Send every record and wait until all are acked; return how many were sent.

        Records for one partition keep their order. The batches are pipelined:
        this only waits when a partition already has a full batch queued.
        ``progress`` is called with the running count each time a batch is queued.
        Records with a precomputed ``partition`` were hashed for
        ``partition_count`` partitions; a topic with any other count raises
        ``TopicMismatchError`` (without ``partition_count`` they always do), so a
        stale precomputation can never scatter sessions.
        On failure the exception of the first failed batch is raised after the
        others have settled; records in earlier batches may have been written.
        """
        producer = self.aiokafka
        builders: dict[TopicPartition, Any] = {}
        pending: list[Awaitable[Any]] = []
        counts: dict[str, int] = self._partition_counts
        queued = 0

        async def flush(tp: TopicPartition) -> None:
            nonlocal queued
            builder = builders.pop(tp)
            queued += builder.record_count()
            pending.append(await producer.send_batch(builder, tp.topic, partition=tp.partition))
            if progress is not None:
                progress(queued)

        for topic, key, value, headers, partition in records:
            if len(value) + len(key) > MAX_RECORD_BYTES:
                await _settle(pending)
                raise ValueError(
                    f"record of {len(value)} bytes for {topic} exceeds {MAX_RECORD_BYTES} bytes"
                )
            n = counts.get(topic)
            if n is None:
                n = await self.partition_count(topic)
            if partition is None:
                partition = partition_for_key(key, n)
            elif n != partition_count:
                await _settle(pending)
                raise TopicMismatchError(
                    f"{topic} has {n} partitions; the records were partitioned for "
                    f"{partition_count}"
                )
            tp = TopicPartition(topic, partition)
            builder = builders.get(tp)
            if builder is None:
                builder = builders[tp] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                await flush(tp)
                builder = builders[tp] = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value, headers=headers)
        for tp in list(builders):
            await flush(tp)
        await _settle(pending)
        return queued


async def _settle(pending: list[Awaitable[Any]]) -> None:
    """Wait for every batch; then raise the first failure, if any."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def transactional_producer(
    settings: KafkaSettings,
    transactional_id: str,
    codec: Codec | None = None,
    **overrides: Any,
) -> Producer:
    """A not-yet-started transactional :class:`Producer` (idempotent, acks=all).

    Use ``producer.aiokafka.transaction()`` and
    ``producer.aiokafka.send_offsets_to_transaction(...)`` for the
    consume-transform-produce loop; ``send_many`` works inside a transaction.
    """
    return Producer(settings, codec, transactional_id=transactional_id, **overrides)

"""Consuming our topics: read_committed consumers, end offsets, and tailing.

Consumers default to ``isolation_level="read_committed"``: the session engine
writes events and work items in Kafka transactions, and a reader must never see
records of an aborted transaction. Offsets are committed by hand
(``enable_auto_commit=False``) because a processor may commit an offset only
once every record before it is done.

:func:`tail` reads without a consumer group (manual assignment), so watching a
topic never joins, rebalances or commits anything of a real group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import TopicPartition

from schemas import Codec, SchemaError, record_to_json
from streams.errors import TopicNotFoundError
from streams.partitioner import session_partition
from streams.security import start_failure
from streams.settings import KafkaSettings


def consumer_config(
    settings: KafkaSettings,
    *,
    group_id: str | None = None,
    from_beginning: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``: read_committed, manual commit."""
    config: dict[str, Any] = {
        **settings.client_config(),
        "group_id": group_id,
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest" if from_beginning else "latest",
    }
    config.update(overrides)
    return config


GROUP_SESSION_TIMEOUT_MS = 10_000
"""How soon a group forgets a member that stopped heartbeating (crashed, or left
without a LeaveGroup): the time its partitions stand still."""
GROUP_HEARTBEAT_INTERVAL_MS = 1_000


def group_consumer_config(
    settings: KafkaSettings, group_id: str, **overrides: Any
) -> dict[str, Any]:
    """``consumer_config`` for a hot-path consumer group member (engine, executors).

    Fetches wait at most ``settings.fetch_max_wait_ms`` at the broker; a dead member
    is noticed within 10 s (heartbeat every second), which bounds how long its
    partitions stand still after a crash.
    """
    config = consumer_config(
        settings,
        group_id=group_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=GROUP_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=GROUP_HEARTBEAT_INTERVAL_MS,
    )
    config.update(overrides)
    return config


def create_consumer(
    settings: KafkaSettings,
    *topics: str,
    group_id: str | None = None,
    from_beginning: bool = True,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A not-yet-started consumer (read_committed, manual commit), subscribed to ``topics``.

    Pass no topics to ``assign`` partitions yourself. Must be called inside a
    running event loop (aiokafka binds it).
    """
    config = consumer_config(
        settings, group_id=group_id, from_beginning=from_beginning, **overrides
    )
    return AIOKafkaConsumer(*topics, **config)


async def _start(consumer: AIOKafkaConsumer, settings: KafkaSettings) -> None:
    try:
        await consumer.start()
    except Exception as error:
        explained = await start_failure(settings.bootstrap, settings.security, error)
        if explained is None:
            raise
        raise explained from error


async def topic_partitions(settings: KafkaSettings, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``, in order; ``TopicNotFoundError`` if it does not exist.

    Asks through the admin client: a consumer without a subscription holds no
    topic metadata, and its public ``topics()`` returns names only.
    """
    from streams.admin import partition_counts

    count = (await partition_counts(settings, [topic])).get(topic)
    if not count:
        raise TopicNotFoundError(topic)
    return [TopicPartition(topic, p) for p in range(count)]


async def end_offsets(
    settings: KafkaSettings, topic: str, *, committed_only: bool = False
) -> dict[int, int]:
    """Partition -> offset the next record will get (the high watermark).

    With ``committed_only`` it is the last stable offset instead: records of
    open transactions are not counted.
    """
    isolation = "read_committed" if committed_only else "read_uncommitted"
    tps = await topic_partitions(settings, topic)
    consumer = create_consumer(settings, isolation_level=isolation)
    await _start(consumer, settings)
    try:
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: int(offsets[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def read_to_end(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int] | None = None,
    **overrides: Any,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` there is now: partition by partition (all of
    them, or ``partitions``), oldest first, without a consumer group.

    Each partition is read up to its end offset as of the start; records written
    after that are left for a tail. ``overrides`` go to the consumer (e.g. larger
    fetches for a whole-partition replay).
    """
    if partitions is None:
        tps = await topic_partitions(settings, topic)
    else:
        tps = [TopicPartition(topic, p) for p in partitions]
    consumer = create_consumer(settings, **overrides)
    await _start(consumer, settings)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            end = ends[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batch.get(tp, []):
                    if record.offset < end:
                        yield record
    finally:
        await consumer.stop()


async def last_record_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """Partition -> offset of its newest committed record (-1: none).

    Not ``end_offsets() - 1``: on a topic written in transactions the last
    offsets hold commit markers, which no consumer ever sees as records, so a
    reader waiting for ``end - 1`` waits forever. Reads back from the end (a
    widening window) until it finds a record.
    """
    tps = await topic_partitions(settings, topic)
    consumer = create_consumer(settings)
    await _start(consumer, settings)
    newest: dict[int, int] = {}
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            start, end = int(starts[tp]), int(ends[tp])
            found, window = -1, 64
            while found < 0:
                first = max(start, end - window)
                consumer.seek(tp, first)
                while await consumer.position(tp) < end:
                    for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                        if record.offset < end:
                            found = max(found, record.offset)
                if first == start:
                    break
                window *= 8
            newest[tp.partition] = found
    finally:
        await consumer.stop()
    return newest


@dataclass(frozen=True, slots=True)
class TailedRecord:
    """One record read by :func:`tail`, decoded when possible."""

    topic: str
    """Topic it was read from."""
    partition: int
    """Partition it was read from."""
    offset: int
    """Its offset in the partition."""
    key: str | None
    """The key as text (session id); undecodable bytes are backslash-escaped."""
    headers: tuple[tuple[str, bytes], ...]
    """Kafka headers in order."""
    timestamp_ms: int
    """Record timestamp, epoch milliseconds."""
    type: str | None
    """Record name: the decoded schema's name, else the ``type`` header."""
    value: dict[str, Any] | None
    """The decoded record; None if the value could not be decoded (see ``error``)."""
    error: str | None = None
    """Why decoding failed; None when it worked."""

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form; ``value`` is the record's JSON form (what produce reads)."""
        obj: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "timestamp_ms": self.timestamp_ms,
            "headers": {k: v.decode("utf-8", "backslashreplace") for k, v in self.headers},
            "type": self.type,
            "value": (
                record_to_json(self.type, self.value)
                if self.value is not None and self.type is not None
                else None
            ),
        }
        if self.error is not None:
            obj["error"] = self.error
        return obj


def decode_record(codec: Codec, message: Any) -> TailedRecord:
    """A :class:`TailedRecord` from an aiokafka ``ConsumerRecord``; decode errors are kept."""
    headers = tuple((str(k), bytes(v)) for k, v in (message.headers or ()))
    header_type = next((v.decode("utf-8", "replace") for k, v in headers if k == "type"), None)
    key = None if message.key is None else message.key.decode("utf-8", "backslashreplace")
    value: dict[str, Any] | None = None
    error: str | None = None
    name = header_type
    if message.value is None:
        error = "value is null"
    else:
        try:
            name, value = codec.decode(message.value)
        except SchemaError as exc:
            error = str(exc)
        else:
            if header_type is not None and header_type != name:
                error = f"type header {header_type!r} but the value is a {name}"
    return TailedRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        headers=headers,
        timestamp_ms=message.timestamp,
        type=name,
        value=value,
        error=error,
    )


async def tail(
    settings: KafkaSettings,
    topic: str,
    *,
    from_beginning: bool = False,
    session_id: str | None = None,
    limit: int | None = None,
    idle_timeout: float | None = None,
    codec: Codec | None = None,
) -> AsyncGenerator[TailedRecord, None]:
    """Yield ``topic``'s records, decoded, in per-partition order (committed records only).

    Starts at the end (new records only) unless ``from_beginning``. With
    ``session_id`` only that session's partition is read (murmur2 tells which)
    and only its records are yielded. Stops after ``limit`` records, or once
    no record has arrived for ``idle_timeout`` seconds; with neither it runs
    until cancelled. Close it with ``contextlib.aclosing`` to stop promptly.
    """
    codec = codec or Codec()
    tps = await topic_partitions(settings, topic)
    consumer = create_consumer(settings, from_beginning=from_beginning)
    await _start(consumer, settings)
    try:
        if session_id is not None:
            tps = [tps[session_partition(session_id, len(tps))]]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        key_filter = None if session_id is None else session_id.encode("utf-8")
        yielded = 0
        last_seen = time.monotonic()
        while limit is None or yielded < limit:
            wait_s = 1.0
            if idle_timeout is not None:
                wait_s = min(wait_s, max(0.0, idle_timeout - (time.monotonic() - last_seen)))
            batches = await consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=1000)
            if not batches:
                if idle_timeout is not None and time.monotonic() - last_seen >= idle_timeout:
                    return
                await asyncio.sleep(0)
                continue
            last_seen = time.monotonic()
            for tp in sorted(batches):
                for message in batches[tp]:
                    if key_filter is not None and message.key != key_filter:
                        continue
                    yield decode_record(codec, message)
                    yielded += 1
                    if limit is not None and yielded >= limit:
                        return
    finally:
        await consumer.stop()

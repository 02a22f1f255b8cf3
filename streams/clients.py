"""Every Kafka client agentstream builds, made here from one :class:`KafkaSettings`.

Components never call ``AIOKafkaProducer(...)`` or ``AIOKafkaConsumer(...)``
themselves: how to reach the cluster (bootstrap servers, and the security
settings a secured cluster needs) is decided once, in
:meth:`KafkaSettings.client_config`, and every client below starts from it. The kinds::

    new_producer               idempotent, acks=all, murmur2 (the gateway, the CLI, results)
    new_transactional_producer the engine's per-partition transactional producers
    new_consumer               read_committed, manual commit, no group (replay, SSE, tail)
    new_group_consumer         a hot-path consumer group member (engine, executors, projector)
    new_admin                  topic admin, group descriptions, lag
    started_client             a bare, bootstrapped client for requests none of those wrap (ACLs)

All return clients that are not started yet; aiokafka binds the running event
loop when a client is made, so call them inside one. Their ``start`` raises a
:class:`~streams.errors.StreamsError` when no broker lets them in: which setting
to fix when the cluster refused the login (:func:`~streams.security.start_failure`),
:class:`~streams.errors.KafkaUnavailableError` when nothing answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.consumer import consumer_config, group_consumer_config
from streams.producer import producer_config
from streams.security import start_failure
from streams.settings import KafkaSettings


# aiokafka ships no type hints, so its classes are Any to mypy (hence the ignores).
class _Producer(AIOKafkaProducer):  # type: ignore[misc]
    def __init__(self, settings: KafkaSettings, **config: Any) -> None:
        super().__init__(**config)
        self._agentstream_settings = settings

    async def start(self) -> None:
        await _start(super().start, self.stop, self._agentstream_settings)


class _Consumer(AIOKafkaConsumer):  # type: ignore[misc]
    def __init__(self, settings: KafkaSettings, *topics: str, **config: Any) -> None:
        super().__init__(*topics, **config)
        self._agentstream_settings = settings

    async def start(self) -> None:
        await _start(super().start, self.stop, self._agentstream_settings)


class _Admin(AIOKafkaAdminClient):  # type: ignore[misc]
    def __init__(self, settings: KafkaSettings, **config: Any) -> None:
        super().__init__(**config)
        self._agentstream_settings = settings

    async def start(self) -> None:
        await _start(super().start, self.close, self._agentstream_settings)


async def _start(
    start: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    settings: KafkaSettings,
) -> None:
    """``start()``; if the cluster refuses, close and raise what to fix instead."""
    try:
        await start()
    except Exception as error:
        explained = await start_failure(settings.bootstrap, settings.security, error)
        if explained is None:
            raise
        with contextlib.suppress(Exception):
            await close()
        raise explained from error


ENGINE_BATCH_BYTES = 1024 * 1024
"""Largest batch of one engine transaction per partition: a batch is one request."""
ENGINE_REQUEST_BYTES = 4 * 1024 * 1024


def new_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer with our settings (:func:`~streams.producer.producer_config`)."""
    return _Producer(settings, **producer_config(settings, **overrides))


def new_transactional_producer(
    settings: KafkaSettings, transactional_id: str, **overrides: Any
) -> AIOKafkaProducer:
    """A transactional producer shaped for the engine: one batch per partition, no linger.

    The engine writes each transaction's records straight into per-partition
    batches, so the batch limits are its transaction size. aiokafka retries a
    refused AddPartitionsToTxn after ``retry_backoff_ms`` once the transaction
    holds a partition (the second topic of a batch), and the default 100 ms
    became the engine's p99 hop latency (the hot-path histograms of
    ``bench_engine`` show it): the coordinator is near, so retry soon.
    """
    config = producer_config(
        settings,
        transactional_id=transactional_id,
        max_batch_size=ENGINE_BATCH_BYTES,
        max_request_size=ENGINE_REQUEST_BYTES,
        linger_ms=0,
        retry_backoff_ms=5,
    )
    config.pop("partitioner")  # the engine places every record itself
    config.update(overrides)
    return _Producer(settings, **config)


def new_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """A read_committed consumer with manual commits; no topics: ``assign`` yourself."""
    return _Consumer(settings, *topics, **consumer_config(settings, group_id=group_id, **overrides))


def new_group_consumer(
    settings: KafkaSettings, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A hot-path consumer group member (:func:`~streams.consumer.group_consumer_config`)."""
    return _Consumer(settings, **group_consumer_config(settings, group_id, **overrides))


def new_admin(settings: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client (topics, consumer groups, offsets)."""
    return _Admin(settings, **{**settings.client_config(), **overrides})


@contextlib.asynccontextmanager
async def started_client(settings: KafkaSettings, **overrides: Any) -> AsyncIterator[Any]:
    """A bootstrapped ``AIOKafkaClient`` (``send(node, request)``), closed on exit."""
    config = {**settings.client_config(), "request_timeout_ms": 30_000, **overrides}
    client = AIOKafkaClient(**config)
    await _start(client.bootstrap, client.close, settings)
    try:
        yield client
    finally:
        await client.close()

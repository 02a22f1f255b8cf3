"""The session engine service: owns inbox partitions and drives PartitionEngines.

One consumer in the engine group reads ``inbox`` (read_committed, no auto
commit: offsets are committed inside each partition's transaction). On
assignment of partition p the engine starts p's transactional producer (its
transactional id belongs to inbox partition p, so the previous owner is fenced
and its open transaction aborted: aiokafka has no KIP-447), rebuilds p's
sessions from checkpoint + events tail, then consumes. Background loops flush
snapshots and fire due durable timers (a timer firing is a TimerFired command
produced to the inbox, so replay stays deterministic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from processors import metrics
from processors.agents import AgentCatalog
from processors.core import timer_command, timers_of
from processors.partition import PartitionEngine
from processors.recovery import RecoveryStats, recover_partition
from processors.settings import EngineSettings
from processors.snapshots import SnapshotStore
from schemas import Codec
from streams.catalogue import Catalogue
from streams.consumer import group_consumer_config
from streams.producer import type_headers
from streams.settings import KafkaSettings
from streams.tuning import shorten_transaction_backoff

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: SessionEngine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._engine._on_revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._engine._on_assigned([tp.partition for tp in assigned])


class SessionEngine:
    """Consumes the inbox and appends the event log; see the module docstring."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        settings: EngineSettings,
        agents: AgentCatalog,
        codec: Codec | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.catalogue = Catalogue.from_settings(kafka)
        self.agents = agents
        self.codec = codec or Codec()
        self.group_id = f"{kafka.topic_prefix}.engine"
        self.partitions: dict[int, PartitionEngine] = {}
        self.recoveries: list[RecoveryStats] = []
        self._pool = pool
        self._own_pool = pool is None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._replay_consumer: AIOKafkaConsumer | None = None
        self._timer_producer: AIOKafkaProducer | None = None
        self._store: SnapshotStore | None = None
        self.started = asyncio.Event()
        """Set once the first assignment has been recovered."""

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        shorten_transaction_backoff()
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.settings.database_url, min_size=1, max_size=4
            )
        await SnapshotStore.create_schema(self._pool)
        self._store = SnapshotStore(self._pool, self.catalogue.events.name)
        self._replay_consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._replay_consumer.start()
        self._timer_producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap, enable_idempotence=True, acks="all"
        )
        await self._timer_producer.start()
        self._consumer = AIOKafkaConsumer(
            **group_consumer_config(
                self.kafka, self.group_id, max_poll_records=self.settings.max_batch_records
            )
        )
        self._consumer.subscribe([self.catalogue.inbox.name], listener=_Rebalance(self))
        await self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._run(), name="engine-run"),
            asyncio.create_task(self._flush_loop(), name="engine-snapshots"),
            asyncio.create_task(self._timer_loop(), name="engine-timers"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self._lock:
            for engine in self.partitions.values():
                with contextlib.suppress(Exception):
                    await engine.flush_snapshots()
        if self._consumer is not None:
            await self._consumer.stop()
        async with self._lock:
            for engine in list(self.partitions.values()):
                await engine.producer.stop()
            self.partitions.clear()
        for client in (self._replay_consumer, self._timer_producer):
            if client is not None:
                await client.stop()
        if self._own_pool and self._pool is not None:
            await self._pool.close()

    # ------------------------------------------------------------ rebalance

    async def _on_revoked(self, partitions: list[int]) -> None:
        # Eager rebalancing revokes everything, then re-assigns: keep the partitions'
        # state and producers until we know which ones really move (_on_assigned).
        async with self._lock:
            for p in partitions:
                engine = self.partitions.get(p)
                if engine is not None:
                    with contextlib.suppress(Exception):
                        await engine.flush_snapshots()

    async def _on_assigned(self, partitions: list[int]) -> None:
        async with self._lock:
            for p in [p for p in self.partitions if p not in partitions]:
                await self.partitions.pop(p).producer.stop()
            for p in partitions:
                if p not in self.partitions:
                    await self._recover(p)
            metrics.OWNED_PARTITIONS.set(len(self.partitions))
        self.started.set()

    async def _recover(self, p: int) -> None:
        """Fence the previous owner, rebuild p from checkpoint + events tail."""
        assert self._store is not None and self._replay_consumer is not None
        old = self.partitions.pop(p, None)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.producer.stop()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap,
            transactional_id=f"{self.catalogue.inbox.name}.engine.{p}",
            enable_idempotence=True,
            acks="all",
            max_batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
            linger_ms=0,
        )
        await producer.start()  # init_transactions: fences the old owner, aborts its txn
        engine = PartitionEngine(
            partition=p,
            producer=producer,
            catalogue=self.catalogue,
            codec=self.codec,
            agents=self.agents,
            store=self._store,
            group_id=self.group_id,
            max_sessions=self.settings.max_sessions_per_partition,
        )
        stats = await recover_partition(
            consumer=self._replay_consumer,
            events_topic=self.catalogue.events.name,
            partition=p,
            store=self._store,
            cache=engine.cache,
            codec=self.codec,
        )
        engine.committed_events_offset = stats.end_offset - 1
        for entry in engine.cache.dirty_entries():
            engine.arm(entry.state)
        engine.arm_stored(await self._store.due_sessions(p))
        self.partitions[p] = engine
        self.recoveries.append(stats)
        metrics.RECOVERY_SECONDS.observe(stats.seconds)
        metrics.REPLAYED_EVENTS.inc(stats.events_replayed)
        log.info(
            "partition %d recovered: checkpoint %d, %d events replayed (%d skipped), "
            "%d sessions, %.3f s",
            p,
            stats.checkpoint,
            stats.events_replayed,
            stats.events_skipped,
            stats.sessions_touched,
            stats.seconds,
        )

    # ------------------------------------------------------------------ loops

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=100, max_records=self.settings.max_batch_records
            )
            if not batches:
                continue
            async with self._lock:
                await asyncio.gather(
                    *(self._process(tp, records) for tp, records in batches.items())
                )

    async def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        engine = self.partitions.get(tp.partition)
        if engine is None or not records:
            return  # revoked between fetch and now: the new owner will read them
        try:
            await engine.process(records)
        except Exception:
            log.exception("partition %d: transaction failed; rebuilding from the log", tp.partition)
            assert self._consumer is not None
            try:
                await self._recover(tp.partition)
                committed = await self._consumer.committed(tp)
                self._consumer.seek(tp, committed if committed is not None else 0)
            except Exception:
                log.exception(
                    "partition %d: rebuild failed; leaving the group to retry", tp.partition
                )
                self.partitions.pop(tp.partition, None)
                raise

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.snapshot_interval_s)
            async with self._lock:
                engines = list(self.partitions.values())
            for engine in engines:
                try:
                    await engine.flush_snapshots()
                except Exception:
                    log.exception("snapshot flush of partition %d failed", engine.partition)

    async def _timer_loop(self) -> None:
        producer = self._timer_producer
        assert producer is not None
        fired: dict[str, float] = {}
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.timer_interval_s)
            now_ms = int(time.time() * 1000)
            for engine in list(self.partitions.values()):
                for session_id in engine.due_sessions(now_ms):
                    state = await engine.state_of(session_id)
                    if state is None:
                        continue
                    for timer in timers_of(state):
                        if timer.deadline_ms > now_ms:
                            engine.arm(state)
                            continue
                        # Re-fire a timer only if its TimerFired seems lost (5 s).
                        if time.monotonic() - fired.get(timer.timer_id, 0.0) < 5.0:
                            engine.arm_at(session_id, now_ms + 5_000)
                            continue
                        fired[timer.timer_id] = time.monotonic()
                        name, record = timer_command(state, timer, now_ms)
                        await producer.send(
                            self.catalogue.inbox.name,
                            self.codec.encode(name, record),
                            key=session_id.encode(),
                            partition=engine.partition,
                            headers=type_headers(name),
                        )
                        metrics.TIMERS_FIRED.labels(timer.kind).inc()
                        engine.arm_at(session_id, now_ms + 5_000)
            if len(fired) > 100_000:
                cutoff = time.monotonic() - 60
                fired = {k: v for k, v in fired.items() if v > cutoff}

"""The session engine service: owns inbox partitions and drives PartitionEngines.

One consumer in the engine group reads ``inbox`` (read_committed, no auto
commit: how far each partition is applied is a record of its transactions on
``engine-progress``, see progress.py; group offsets only mirror it). On
assignment of partition p the engine starts p's two transactional producers
(their transactional ids belong to inbox partition p, so the previous owner is
fenced and its open transactions aborted: aiokafka has no KIP-447), rebuilds p's
sessions from checkpoint + events tail, then consumes. A lane with a backlog
pipelines: batch n+1 is prepared and written on one producer while batch n's
commit completes on the other, and committed only after n's; a lane without one
waits for the commit and takes what queued meanwhile as one batch (fewer, larger
transactions: ``EngineSettings.pipeline_min_records``). Background loops flush
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
from processors.agents.catalog import AgentCatalog
from processors.core import timer_command, timers_of
from processors.engine.inbox_progress import read_progress
from processors.engine.lane import Lane
from processors.engine.partition import PartitionEngine
from processors.engine.recovery import RecoveryStats, recover_partition
from processors.engine.snapshot_store import SnapshotStore
from processors.engine.watchdog import nag_while, task_stack
from processors.postgres import create_pool
from processors.settings import EngineSettings
from schemas import Codec
from streams.catalogue import Catalogue
from streams.clients import (
    new_consumer,
    new_group_consumer,
    new_producer,
    new_transactional_producer,
)
from streams.producer import type_headers
from streams.settings import KafkaSettings
from streams.tuning import producer_fenced, shorten_transaction_backoff

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
        self._lag = metrics.LagGauge(self.group_id)
        self.lanes: dict[int, Lane] = {}
        self.recoveries: list[RecoveryStats] = []
        self._pool = pool
        self._own_pool = pool is None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._replay_consumer: AIOKafkaConsumer | None = None
        self._replay_lock = asyncio.Lock()
        """One partition at a time on the replay consumer: a rebuild after a failed
        transaction (a lane's task) may run while a rebalance recovers another."""
        self._timer_producer: AIOKafkaProducer | None = None
        self._store: SnapshotStore | None = None
        self.started = asyncio.Event()
        """Set once the first assignment has been recovered."""

    @property
    def partitions(self) -> dict[int, PartitionEngine]:
        """The partitions this engine owns, and their engines."""
        return {p: lane.engine for p, lane in self.lanes.items()}

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        shorten_transaction_backoff()
        if self._pool is None:
            self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=4)
        await SnapshotStore.create_schema(self._pool)
        self._store = SnapshotStore(self._pool, self.catalogue.events.name)
        self._replay_consumer = new_consumer(
            self.kafka,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._replay_consumer.start()
        self._timer_producer = new_producer(self.kafka, linger_ms=0)
        await self._timer_producer.start()
        self._consumer = new_group_consumer(
            self.kafka, self.group_id, max_poll_records=self.settings.max_batch_records
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
            for lane in list(self.lanes.values()):
                await lane.close()
                with contextlib.suppress(Exception):
                    await lane.engine.flush_snapshots()
        if self._consumer is not None:
            await self._consumer.stop()
        async with self._lock:
            for lane in self.lanes.values():
                await lane.engine.stop()
            self.lanes.clear()
        for client in (self._replay_consumer, self._timer_producer):
            if client is not None:
                await client.stop()
        if self._own_pool and self._pool is not None:
            await self._pool.close()

    # ------------------------------------------------------------ rebalance

    async def _on_revoked(self, partitions: list[int]) -> None:
        # Eager rebalancing revokes everything, then re-assigns: finish the batches
        # under way and flush snapshots, but keep state and producers until we know
        # which partitions really move (_on_assigned).
        async with self._lock:
            for p in partitions:
                lane = self.lanes.get(p)
                if lane is not None:
                    async with (
                        nag_while(f"revoking partition {p}", lane.stack),
                        lane.between_batches(),
                    ):
                        with contextlib.suppress(Exception):
                            await lane.engine.flush_snapshots()

    async def _on_assigned(self, partitions: list[int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            for p in [p for p in self.lanes if p not in partitions]:
                await self._drop_lane(p)
            for p in [p for p, lane in self.lanes.items() if lane.fenced]:
                await self._drop_lane(p)  # fenced: whatever it holds is stale
                if p in partitions:  # ours again: make sure it is fetched
                    with contextlib.suppress(Exception):
                        consumer.resume(self._inbox_tp(p))
            callback = asyncio.current_task()  # aiokafka's coordinator, running us
            for p in partitions:
                kept = self.lanes.get(p)
                if kept is not None:
                    lane = kept
                else:
                    async with nag_while(f"taking partition {p}", lambda: task_stack(callback)):
                        lane = await self._recover(p)
                # Consume from the engine's own progress, never from the group's
                # (advisory) offsets: a kept lane resumes after what it queued.
                position = lane.position if lane.position is not None else 0
                consumer.seek(self._inbox_tp(p), position)
            metrics.OWNED_PARTITIONS.set(len(self.lanes))
        self.started.set()

    async def _drop_lane(self, p: int) -> None:
        lane = self.lanes.pop(p)
        async with nag_while(f"giving up partition {p}", lane.stack):
            await lane.close()
            await lane.engine.stop()

    def _inbox_tp(self, p: int) -> TopicPartition:
        return TopicPartition(self.catalogue.inbox.name, p)

    async def _recover(self, p: int) -> Lane:
        """Take partition p: rebuild it and start its lane at the recorded progress."""
        engine = await self._build_engine(p)
        lane = Lane(engine, self._process, self.settings.max_batch_records)
        lane.reset(engine.next_inbox_offset or 0)
        self.lanes[p] = lane
        return lane

    async def _inbox_position(self, p: int) -> int:
        """Where partition p's inbox is applied up to: the newest progress record
        (read after init_transactions aborted any open transaction of ours)."""
        assert self._replay_consumer is not None and self._consumer is not None
        progress = await read_progress(
            self._replay_consumer, self.catalogue.engine_progress.name, p
        )
        if progress is not None:
            return progress.next_offset
        # No progress record yet: an engine from before they existed committed its
        # position as group offsets inside its transactions.
        committed = await self._consumer.committed(self._inbox_tp(p))
        return committed if committed is not None else 0

    async def _rebuild(self, p: int, old: PartitionEngine) -> PartitionEngine:
        """Replace ``old`` (after a failed transaction) by an engine rebuilt from the log."""
        await old.stop()
        return await self._build_engine(p)

    async def _transactional_producer(self, p: int, suffix: str) -> AIOKafkaProducer:
        """A started producer with one of partition p's transactional ids.

        Both ids of p belong to whoever owns p: a new owner starts both, which fences
        the previous owner's and aborts any transaction it left open. The first id
        is the one engines used before partitions had two producers, so an owner
        still fences an engine of that version.
        """
        producer = new_transactional_producer(
            self.kafka, f"{self.catalogue.inbox.name}.engine.{p}{suffix}"
        )
        await producer.start()
        return producer

    async def _build_engine(self, p: int) -> PartitionEngine:
        """Fence the previous owner, rebuild p from checkpoint + events tail."""
        assert self._store is not None and self._replay_consumer is not None
        producers = (
            await self._transactional_producer(p, ""),
            await self._transactional_producer(p, ".b"),
        )  # started: init_transactions fenced the old owner's and aborted its transactions
        engine = PartitionEngine(
            partition=p,
            producers=producers,
            catalogue=self.catalogue,
            codec=self.codec,
            agents=self.agents,
            store=self._store,
            max_sessions=self.settings.max_sessions_per_partition,
        )
        async with self._replay_lock:
            stats = await recover_partition(
                consumer=self._replay_consumer,
                events_topic=self.catalogue.events.name,
                partition=p,
                store=self._store,
                cache=engine.cache,
                codec=self.codec,
            )
            engine.committed_events_offset = stats.end_offset - 1
            engine.next_inbox_offset = await self._inbox_position(p)
        for entry in engine.cache.dirty_entries():
            engine.arm(entry.state)
        engine.arm_stored(await self._store.due_sessions(p))
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
        return engine

    # ------------------------------------------------------------------ loops

    async def _run(self) -> None:
        """Hand fetched records to the lanes; pause a partition whose queue runs long."""
        consumer = self._consumer
        assert consumer is not None
        limit = 4 * self.settings.max_batch_records
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=100, max_records=self.settings.max_batch_records
            )
            # The lock waits out a rebalance callback: aiokafka's fetcher may return
            # records of a partition whose lane is still being rebuilt.
            async with self._lock:
                for tp, records in batches.items():
                    lane = self.lanes.get(tp.partition)
                    if lane is None:
                        continue  # revoked since the fetch: the new owner reads them
                    lane.push(records)
                    if lane.pending > limit and not lane.paused:
                        consumer.pause(tp)
                        lane.paused = True
                for p, lane in self.lanes.items():
                    if lane.paused and lane.pending <= limit // 2:
                        consumer.resume(TopicPartition(self.catalogue.inbox.name, p))
                        lane.paused = False

    async def _process(self, lane: Lane, records: list[Any]) -> None:
        """Commit ``records`` and, while a backlog lasts, what queues behind them, one
        transaction per batch, preparing each batch while the one before commits; on
        failure rebuild the partition from the log (every prepared batch is dropped with
        its engine)."""
        if lane.fenced:
            return  # another engine owns p now; the next rebalance settles it
        engine = lane.engine
        try:
            sent = await engine.send(await engine.prepare(records))
            while True:
                ending = asyncio.ensure_future(engine.end(sent))
                following = None
                try:
                    if (
                        lane.pending >= self.settings.pipeline_min_records
                        and not lane.wanted
                        and not self._stopping.is_set()
                    ):
                        # On the other producer, while this commit completes.
                        following = await engine.send(await engine.prepare(lane.take()))
                finally:
                    # Always learn the commit's outcome before anything else: a batch
                    # sent on top of a failed transaction must never be committed.
                    await ending
                if following is None:
                    return
                sent = following
        except Exception as error:
            p = lane.partition
            if any(producer_fenced(producer, error) for producer in lane.engine.producers):
                # Only a new owner's init_transactions fences p's transactional id:
                # it is theirs now (we missed a rebalance). Rebuilding would fence
                # them in turn; stand still until the group says who owns p.
                log.warning("partition %d: fenced by a new owner; waiting for the rebalance", p)
                lane.fenced = True
                lane.reset(0)
                if self._consumer is not None:
                    self._consumer.pause(self._inbox_tp(p))
                return
            log.exception("partition %d: transaction failed; rebuilding from the log", p)
            consumer = self._consumer
            assert consumer is not None
            # A new producer (same transactional id: our open transaction is aborted)
            # and state rebuilt from the log, exactly as a new owner would; the lane
            # keeps running on the new engine, from the recorded progress.
            lane.engine = await self._rebuild(p, lane.engine)
            position = lane.engine.next_inbox_offset or 0
            # No lock (a revocation holds it while waiting for this lane): reset and
            # seek run without a suspension point between them.
            lane.reset(position)
            consumer.seek(self._inbox_tp(p), position)

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
            await self._commit_group_offsets(engines)

    async def _commit_group_offsets(self, engines: list[PartitionEngine]) -> None:
        """Mirror the progress into the group's offsets, for lag dashboards and the
        gateway's admission control; advisory (recovery reads engine-progress)."""
        consumer = self._consumer
        offsets = {
            self._inbox_tp(e.partition): e.next_inbox_offset
            for e in engines
            if e.next_inbox_offset is not None
        }
        await self._lag.update(consumer, offsets)
        if consumer is None or not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as error:  # a rebalance under way: the next round commits
            log.debug("advisory offset commit skipped: %s", error)

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

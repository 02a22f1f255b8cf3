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

Self-healing: a rebalance callback never waits more than
``EngineSettings.rebalance_wait_s`` for a lane (revocation) or for partitions to
be rebuilt (assignment): a lane stuck in its batch is cancelled and its partition
rebuilt from the log, and a partition not rebuilt in time goes on rebuilding in
the background, paused, while the group moves on. A rebuild that fails (Kafka
or Postgres away) is retried with backoff (takeover.py). What the engine cannot
heal shows on the worker's ``/livez`` (health.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError

from processors import metrics
from processors.agents.catalog import AgentCatalog
from processors.core import timer_command, timers_of
from processors.engine.health import task_problems
from processors.engine.lane import Lane
from processors.engine.ownership import Ownership
from processors.engine.partition import PartitionEngine
from processors.engine.recovery import RecoveryStats
from processors.engine.snapshot_store import SnapshotStore
from processors.engine.takeover import PartitionTaker
from processors.postgres import create_pool
from processors.settings import EngineSettings
from schemas import Codec
from streams.catalogue import Catalogue
from streams.clients import new_consumer, new_group_consumer, new_producer
from streams.offsets import MIRROR_METADATA, warn_foreign_offsets
from streams.producer import type_headers
from streams.settings import KafkaSettings
from streams.tuning import producer_fenced, shorten_transaction_backoff

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owned: Ownership) -> None:
        self._owned = owned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._owned.on_revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._owned.on_assigned([tp.partition for tp in assigned])


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
        self._mirrored: set[TopicPartition] = set()
        """Partitions whose group offset was compared before this process first mirrored it."""
        self.owned = Ownership(settings, self.catalogue.inbox.name, self._process)
        self.lanes = self.owned.lanes
        """The lanes of the partitions this engine owns (rebalances change it in place)."""
        self.started = self.owned.started
        """Set once the first assignment has been taken (or handed to rebuilds)."""
        self.recoveries: list[RecoveryStats] = []
        self._pool = pool
        self._own_pool = pool is None
        self._lock = self.owned.lock
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._replay_consumer: AIOKafkaConsumer | None = None
        self._taker: PartitionTaker | None = None
        self._timer_producer: AIOKafkaProducer | None = None
        self._store: SnapshotStore | None = None

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
        self._taker = PartitionTaker(
            kafka=self.kafka,
            catalogue=self.catalogue,
            codec=self.codec,
            agents=self.agents,
            store=self._store,
            replay_consumer=self._replay_consumer,
            group_consumer=self._consumer,
            max_sessions=self.settings.max_sessions_per_partition,
            backoff_max_s=self.settings.rebuild_backoff_max_s,
            recoveries=self.recoveries,
        )
        self.owned.consumer, self.owned.taker = self._consumer, self._taker
        self._consumer.subscribe([self.catalogue.inbox.name], listener=_Rebalance(self.owned))
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
        await self.owned.close_lanes()
        if self._consumer is not None:
            await self._consumer.stop()
        await self.owned.stop_engines()
        for client in (self._replay_consumer, self._timer_producer):
            if client is not None:
                await client.stop()
        if self._own_pool and self._pool is not None:
            await self._pool.close()

    # ---------------------------------------------------------------- health

    def liveness(self, now: float | None = None) -> list[str]:
        """Why the engine cannot make progress by itself (empty: it can); health.py."""
        problems = self.owned.liveness(time.monotonic() if now is None else now)
        if not self._stopping.is_set():
            problems += task_problems(self._tasks)
        return problems

    def readiness(self) -> list[str]:
        """Why the engine does not process all its partitions now (empty: it does)."""
        return self.owned.readiness()

    async def check_kafka(self) -> None:
        """Raise unless a broker answers a metadata request."""
        assert self._timer_producer is not None
        await self._timer_producer.client.fetch_all_metadata()

    async def check_postgres(self) -> None:
        """Raise unless Postgres answers."""
        assert self._pool is not None
        await self._pool.fetchval("SELECT 1")

    def _inbox_tp(self, p: int) -> TopicPartition:
        return TopicPartition(self.catalogue.inbox.name, p)

    # ------------------------------------------------------------------ loops

    async def _run(self) -> None:
        """Hand fetched records to the lanes; pause a partition whose queue runs long."""
        consumer = self._consumer
        assert consumer is not None
        limit = 4 * self.settings.max_batch_records
        while not self._stopping.is_set():
            try:
                batches = await consumer.getmany(
                    timeout_ms=100, max_records=self.settings.max_batch_records
                )
            except Exception as error:  # the broker away, a group error: fetch again
                log.warning("inbox fetch failed: %r; again in 1 s", error)
                await asyncio.sleep(1.0)
                continue
            # The lock waits out a rebalance callback: aiokafka's fetcher may return
            # records of a partition whose lane is still being rebuilt.
            async with self._lock:
                for tp, records in batches.items():
                    lane = self.lanes.get(tp.partition)
                    if lane is None:
                        continue  # revoked or being rebuilt: sought again before fetched
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
                except asyncio.CancelledError:
                    # The lane is given up: the commit's outcome is no longer ours to
                    # learn (whoever starts p's producers next settles it).
                    ending.cancel()
                    raise
                finally:
                    # Always learn the commit's outcome before anything else: a batch
                    # sent on top of a failed transaction must never be committed.
                    await ending
                lane.committed()
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
                    with contextlib.suppress(IllegalStateError):
                        self._consumer.pause(self._inbox_tp(p))
                return
            log.exception("partition %d: transaction failed; rebuilding from the log", p)
            consumer, taker = self._consumer, self._taker
            assert consumer is not None and taker is not None
            # New producers (same transactional ids: our open transaction is aborted)
            # and state rebuilt from the log, exactly as a new owner would; retried
            # until it works (Kafka or Postgres may be away right now). The lane keeps
            # running on the new engine, from the recorded progress.
            await lane.engine.stop()

            def failed(reason: str | None) -> None:
                lane.rebuild_error = reason

            lane.engine = await taker.take_until_done(p, failed)
            position = lane.engine.next_inbox_offset or 0
            # No lock (a revocation holds it while waiting for this lane): reset and
            # seek run without a suspension point between them.
            lane.reset(position)
            with contextlib.suppress(IllegalStateError):  # the assignment seeks it
                consumer.seek(self._inbox_tp(p), position)

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.snapshot_interval_s)
            await self.owned.revive_stopped_lanes()
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
        gateway's admission control; advisory (recovery reads engine-progress).

        Never between a revocation and the assignment after it: a commit sent while
        our JoinGroup waits is answered only after it (one connection to the
        coordinator), with the old generation, so ILLEGAL_GENERATION; aiokafka then
        forgets its member id and rejoins as a new member, which starts another
        rebalance, and with commits every snapshot interval the group never settles.
        """
        consumer = self._consumer
        offsets = {
            self._inbox_tp(e.partition): e.next_inbox_offset
            for e in engines
            if e.next_inbox_offset is not None
        }
        await self._lag.update(consumer, offsets)
        if consumer is None or not offsets or not self.owned.settled:
            return
        first = {tp: o for tp, o in offsets.items() if tp not in self._mirrored}
        if first:  # a reset made with Kafka's own tool is about to be overwritten: say so
            await warn_foreign_offsets(
                self.kafka, self.group_id, first, component="engine",
                kept_in=self.catalogue.engine_progress.name,
            )  # fmt: skip
            self._mirrored.update(first)
        try:
            await consumer.commit({tp: (o, MIRROR_METADATA) for tp, o in offsets.items()})
        except Exception as error:  # a rebalance under way: the next round commits
            log.debug("advisory offset commit skipped: %s", error)

    async def _timer_loop(self) -> None:
        fired: dict[str, float] = {}
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.timer_interval_s)
            try:
                await self._fire_due_timers(fired)
            except Exception:  # Kafka or Postgres away: the timers stay due, try again
                log.exception("firing due timers failed")
                await asyncio.sleep(1.0)
            if len(fired) > 100_000:
                cutoff = time.monotonic() - 60
                fired = {k: v for k, v in fired.items() if v > cutoff}

    async def _fire_due_timers(self, fired: dict[str, float]) -> None:
        """Produce a TimerFired for every due timer (``fired``: when each was last fired)."""
        producer = self._timer_producer
        assert producer is not None
        now_ms = int(time.time() * 1000)
        for engine in list(self.partitions.values()):
            for session_id in engine.due_sessions(now_ms):
                try:
                    state = await engine.state_of(session_id)
                except Exception:  # Postgres away: keep the session due
                    engine.arm_at(session_id, now_ms + 5_000)
                    raise
                if state is None:
                    continue
                for timer in timers_of(state):
                    if timer.deadline_ms > now_ms:
                        engine.arm(state)
                        continue
                    # Re-fire a timer only if its TimerFired seems lost (5 s).
                    # Looked at again in 5 s (armed before sending: a failed send
                    # leaves the timer due, not forgotten).
                    engine.arm_at(session_id, now_ms + 5_000)
                    if time.monotonic() - fired.get(timer.timer_id, 0.0) < 5.0:
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

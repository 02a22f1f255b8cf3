"""Take an inbox partition: fence its previous owner, rebuild its sessions from the log.

Taking partition p starts p's two transactional producers (their
``init_transactions`` fences whoever held p's transactional ids before and
aborts, or waits out, any transaction they left open), then rebuilds p's
sessions from checkpoint + events tail and reads how far p's inbox is applied.
The order matters: the log is read only once no earlier producer of p can still
add to it, so a new owner, or this engine after a failed transaction, starts
from exactly what was committed.

A take can fail (Kafka or Postgres away at that moment, a stuck read):
:meth:`PartitionTaker.take_until_done` retries with doubling pauses instead of
leaving the partition without a lane until the process restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors import metrics
from processors.agents.catalog import AgentCatalog
from processors.engine.inbox_progress import read_progress
from processors.engine.partition import PartitionEngine, stop_producers
from processors.engine.recovery import RecoveryStats, recover_partition
from processors.engine.snapshot_store import SnapshotStore
from schemas import Codec
from streams.catalogue import Catalogue
from streams.clients import new_transactional_producer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5


@dataclass
class PartitionTaker:
    """Builds :class:`PartitionEngine` s for the partitions a :class:`SessionEngine` takes."""

    kafka: KafkaSettings
    catalogue: Catalogue
    codec: Codec
    agents: AgentCatalog
    store: SnapshotStore
    replay_consumer: AIOKafkaConsumer
    """Group-less; reads the events tail and the progress records."""
    group_consumer: AIOKafkaConsumer
    """The engine group's consumer (committed offsets of engines without progress records)."""
    max_sessions: int
    backoff_max_s: float
    recoveries: list[RecoveryStats] = field(default_factory=list)
    _replay_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One partition at a time on the replay consumer: a rebuild after a failed
    transaction (a lane's task) may run while a rebalance recovers another."""

    async def take_until_done(
        self, p: int, failed: Callable[[str | None], None] = lambda _: None
    ) -> PartitionEngine:
        """:meth:`take` p, retrying after 0.5 s, 1 s, 2 s, … (at most ``backoff_max_s``)
        until it works; ``failed`` hears why each attempt failed, and None once one worked."""
        pause = FIRST_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            try:
                engine = await self.take(p)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                failed(reason)
                log.warning(
                    "partition %d: rebuild failed (attempt %d): %s; again in %.1f s",
                    p,
                    attempt,
                    reason,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff_max_s)
                continue
            failed(None)
            if attempt > 1:
                log.info("partition %d: rebuilt at attempt %d", p, attempt)
            return engine

    async def take(self, p: int) -> PartitionEngine:
        """Fence the previous owner of p, rebuild p from checkpoint + events tail."""
        producers: list[AIOKafkaProducer] = []
        try:
            for suffix in ("", ".b"):
                producers.append(self._transactional_producer(p, suffix))
                await producers[-1].start()
            # Started: init_transactions fenced the old owner's producers and aborted
            # (or waited out) their transactions, so the log below is final.
            engine = PartitionEngine(
                partition=p,
                producers=(producers[0], producers[1]),
                catalogue=self.catalogue,
                codec=self.codec,
                agents=self.agents,
                store=self.store,
                max_sessions=self.max_sessions,
            )
            async with self._replay_lock:
                stats = await recover_partition(
                    consumer=self.replay_consumer,
                    events_topic=self.catalogue.events.name,
                    partition=p,
                    store=self.store,
                    cache=engine.cache,
                    codec=self.codec,
                )
                engine.committed_events_offset = stats.end_offset - 1
                engine.next_inbox_offset = await self._inbox_position(p)
            for entry in engine.cache.dirty_entries():
                engine.arm(entry.state)
            engine.arm_stored(await self.store.due_sessions(p))
        except BaseException:
            # Failed or cancelled (a rebalance gave p away): nothing may keep p's ids.
            await stop_producers(producers)
            raise
        self.recoveries.append(stats)
        del self.recoveries[:-256]
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

    def _transactional_producer(self, p: int, suffix: str) -> AIOKafkaProducer:
        """A producer with one of partition p's transactional ids (not started).

        Both ids of p belong to whoever owns p: a new owner starts both, which fences
        the previous owner's and aborts any transaction it left open. The first id
        is the one engines used before partitions had two producers, so an owner
        still fences an engine of that version.
        """
        return new_transactional_producer(
            self.kafka, f"{self.catalogue.inbox.name}.engine.{p}{suffix}"
        )

    async def _inbox_position(self, p: int) -> int:
        """Where partition p's inbox is applied up to: the newest progress record
        (read after init_transactions aborted any open transaction of ours)."""
        progress = await read_progress(self.replay_consumer, self.catalogue.engine_progress.name, p)
        if progress is not None:
            return progress.next_offset
        # No progress record yet: an engine from before they existed committed its
        # position as group offsets inside its transactions.
        committed = await self.group_consumer.committed(
            TopicPartition(self.catalogue.inbox.name, p)
        )
        return committed if committed is not None else 0

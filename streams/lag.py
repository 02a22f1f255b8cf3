"""Consumer lag as each component sees it: ``agentstream_consumer_lag_records``.

Kafka's tools compute a group's lag from its committed offsets, which are not what
every component goes by: the engine resumes from its progress records (its group
offsets are an advisory mirror), the projector from positions stored in Postgres
(nothing in Kafka), and an executor's committed offset stops one short of the marker
that ends the engine's last transaction, so it reads 1 when idle. Each component
therefore reports the position it is done up to, and the end is the partition's last
stable offset from a ListOffsets request with read_committed isolation (past every
committed transaction's marker, and measured even while a partition is paused, when
the fetch responses that carry the high watermark stop).

One gauge for every component (engine, executors, projector), so one query shows the
whole pipeline per group and partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import Gauge

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "agentstream_consumer_lag_records",
    "Records of a partition its component has not finished: the last stable offset"
    " (read_committed end) minus the position the component is done up to (engine:"
    " inbox applied; executors: lowest unfinished work item; projector: events stored"
    " in Postgres). Set every few seconds by the consumer group's member that owns it.",
    ["group", "topic", "partition"],
)


class LagGauge:
    """One consumer group member's lag per owned partition, measured at most every
    ``interval_s`` (one ListOffsets request each time)."""

    def __init__(self, group: str, interval_s: float = 5.0) -> None:
        self.group = group
        self.interval_s = interval_s
        self._last = float("-inf")
        self._labels: set[tuple[str, str, str]] = set()

    def due(self) -> bool:
        """True when the next :meth:`update` would measure (lets a caller skip
        computing positions in between)."""
        return time.monotonic() - self._last >= self.interval_s

    async def update(
        self, consumer: AIOKafkaConsumer | None, done: Mapping[TopicPartition, int]
    ) -> None:
        """Set the lag of every partition in ``done`` (position done up to); partitions
        reported last time and missing now (given up) lose their series."""
        if not self.due():
            return
        self._last = time.monotonic()
        ends: dict[TopicPartition, int] = {}
        if done and consumer is not None:
            try:
                ends = await consumer.end_offsets(list(done))
            except Exception as error:  # a rebalance or the broker away: next round
                log.debug("%s: lag not measured: %r", self.group, error)
                return
        seen: set[tuple[str, str, str]] = set()
        for tp, position in done.items():
            end = ends.get(tp)
            if end is None:
                continue
            labels = (self.group, tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(max(0, end - position))
            seen.add(labels)
        for labels in self._labels - seen:
            CONSUMER_LAG.remove(*labels)
        self._labels = seen


async def fetch_position(
    consumer: AIOKafkaConsumer, tp: TopicPartition, timeout_s: float = 0.5
) -> int | None:
    """The consumer's fetch position of ``tp`` (past any transaction marker it read);
    None while it has none (just assigned) or no longer owns ``tp``."""
    try:
        position: int = await asyncio.wait_for(consumer.position(tp), timeout_s)
    except (TimeoutError, IllegalStateError):
        return None
    return position


async def fetch_positions(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """:func:`fetch_position` of every partition the consumer owns that has one."""
    positions: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        position = await fetch_position(consumer, tp)
        if position is not None:
            positions[tp] = position
    return positions

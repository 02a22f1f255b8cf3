"""Where every component of one deployment stands, per partition, and where that is kept.

Kafka's tools read a group's committed offsets, which are the truth only for the
executors. The engine resumes from its progress records on ``engine-progress``
(its group offsets mirror them), the projector from ``projection_tracking`` in
Postgres (its group offsets mirror that too, for lag tools). :func:`read_positions`
reads each component's real position beside its group offset, and says when the
two disagree because something other than agentstream wrote the group offset.

Lag is the read_committed end minus the position; when the records between them are
only transaction markers (or aborted records), it is 0, as no consumer will ever be
handed anything there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.catalogue import Catalogue
from streams.clients import new_consumer
from streams.consumer import topic_partitions
from streams.offsets import (
    Bounds,
    OffsetResetError,
    group_offsets,
    holds_records,
    list_groups,
    partition_bounds,
    written_by_us,
)
from streams.settings import KafkaSettings

COMPONENT_NAMES: tuple[str, ...] = ("engine", "llm", "tools", "projector")


@dataclass(frozen=True, slots=True)
class Component:
    """One consuming component: its group, the topic it consumes, where its position lives."""

    name: str
    group: str
    topic: str
    kept_in: str


def components(settings: KafkaSettings) -> dict[str, Component]:
    """The components of the deployment ``settings`` names, by name."""
    catalogue = Catalogue.from_settings(settings)
    prefix = settings.topic_prefix
    return {
        "engine": Component(
            "engine", f"{prefix}.engine", catalogue.inbox.name,
            f"progress topic {catalogue.engine_progress.name}",
        ),
        "llm": Component("llm", f"{prefix}.llm", catalogue.llm_calls.name, "group offsets"),
        "tools": Component("tools", f"{prefix}.tools", catalogue.tool_calls.name, "group offsets"),
        "projector": Component(
            "projector", f"{prefix}.projector", catalogue.events.name,
            "Postgres projection_tracking",
        ),
    }  # fmt: skip


@dataclass
class PartitionPosition:
    """One partition of one component."""

    component: str
    group: str
    topic: str
    partition: int
    position: int | None
    """The next offset the component consumes; None: it has none (starts at the log start)."""
    start: int
    end: int
    lag: int
    kept_in: str
    group_offset: int | None = None
    group_metadata: str | None = None

    @property
    def effective(self) -> int:
        """Where it resumes: the position, or the log start without one."""
        return self.start if self.position is None else max(self.position, self.start)

    @property
    def foreign(self) -> bool:
        """The group offset disagrees and was written by another tool (a Kafka reset)."""
        return (
            self.group_offset is not None
            and self.group_offset != self.effective
            and not written_by_us(self.group_metadata)
            and self.kept_in != "group offsets"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "position": self.position,
            "log_start": self.start,
            "end": self.end,
            "lag": self.lag,
            "kept_in": self.kept_in,
            "group_offset": self.group_offset,
            "group_offset_set_elsewhere": self.foreign,
        }


async def projector_positions(
    database_url: str, stream: str, partitions: Sequence[int]
) -> dict[int, int | None]:
    """Events partition -> the projector's next offset (None: nothing applied)."""
    import asyncpg

    from projections.db import libpq_url
    from projections.writer import positions

    try:
        connection = await asyncpg.connect(libpq_url(database_url))
    except (OSError, asyncpg.PostgresError) as error:
        raise OffsetResetError(f"Postgres at {database_url} did not answer: {error}") from error
    try:
        stored = await positions(connection, stream, list(partitions))
    except asyncpg.UndefinedTableError:
        stored = {}
    finally:
        await connection.close()
    return {p: (stored[p] + 1 if stored.get(p, -1) >= 0 else None) for p in partitions}


async def true_positions(
    settings: KafkaSettings,
    component: Component,
    partitions: Sequence[int],
    committed: dict[int, int],
    database_url: str,
) -> dict[int, int | None]:
    """Where ``component`` resumes each partition, read where it keeps that."""
    if component.name == "engine":
        from processors.engine.inbox_reset import progress_positions

        found = await progress_positions(settings, Catalogue.from_settings(settings), partitions)
        # Without a progress record the engine falls back to the group offset.
        return {p: found[p] if found[p] is not None else committed.get(p) for p in partitions}
    if component.name == "projector":
        return await projector_positions(database_url, component.topic, partitions)
    return {p: committed.get(p) for p in partitions}


async def _lag(
    consumer: AIOKafkaConsumer, tp: TopicPartition, position: int, bounds: Bounds
) -> int:
    lag = max(0, bounds.end - position)
    if lag and not await holds_records(consumer, tp, position, bounds.end):
        return 0  # only markers (or aborted records) left
    return lag


async def read_positions(
    settings: KafkaSettings,
    database_url: str,
    names: Iterable[str] = COMPONENT_NAMES,
    *,
    other_groups: bool = False,
) -> list[PartitionPosition]:
    """Every partition of the named components (and, with ``other_groups``, of any other
    consumer group under the deployment's prefix, by its group offsets)."""
    known = components(settings)
    wanted = [known[n] for n in names]
    extra: list[Component] = []
    if other_groups:
        ours = {c.group for c in known.values()}
        for group in await list_groups(settings, f"{settings.topic_prefix}."):
            if group not in ours:
                extra.append(Component(group, group, "", "group offsets"))
    rows: list[PartitionPosition] = []
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        for component in wanted:
            tps = await topic_partitions(settings, component.topic)
            committed_md = await group_offsets(settings, component.group, tps)
            committed = {tp.partition: om.offset for tp, om in committed_md.items()}
            partitions = [tp.partition for tp in tps]
            real: dict[int, int | None] = await true_positions(
                settings, component, partitions, committed, database_url
            )
            rows += await _rows(consumer, component, tps, real, committed_md)
        for component in extra:
            committed_md = await group_offsets(settings, component.group)
            tps = sorted(committed_md)
            for topic in sorted({tp.topic for tp in tps}):
                topic_tps = [tp for tp in tps if tp.topic == topic]
                real = {tp.partition: committed_md[tp].offset for tp in topic_tps}
                named = Component(component.name, component.group, topic, component.kept_in)
                rows += await _rows(consumer, named, topic_tps, real, committed_md)
    finally:
        await consumer.stop()
    return rows


async def _rows(
    consumer: AIOKafkaConsumer,
    component: Component,
    tps: Sequence[TopicPartition],
    real: dict[int, int | None],
    committed: dict[TopicPartition, Any],
) -> list[PartitionPosition]:
    bounds = await partition_bounds(consumer, tps)
    consumer.assign(list(tps))
    rows = []
    for tp in tps:
        b = bounds[tp]
        om = committed.get(tp)
        row = PartitionPosition(
            component.name, component.group, tp.topic, tp.partition, real.get(tp.partition),
            b.start, b.end, 0, component.kept_in,
            om.offset if om is not None else None, om.metadata if om is not None else None,
        )  # fmt: skip
        row.lag = await _lag(consumer, tp, row.effective, b)
        rows.append(row)
    return rows

"""``agentstream topics grow --partitions N``: more partitions, never a split session.

A session's partition is ``murmur2(session id) mod P`` on every session-keyed
topic. Adding partitions to topics that hold records changes P under the
records already written: most sessions would map to another partition, so
their new events would land on a partition whose engine has never seen their
history, while their old events stay where they were; ``engine-progress``
(keyed by inbox partition) and the Postgres checkpoints (events offsets per
partition) would describe partitions that now hold other sessions. So:

* topics that hold no record yet (a deployment created with the wrong count)
  are grown in place, every catalogue topic to N;
* topics that hold records are refused, with how many sessions would move and
  what a migration involves. ``--migrate`` (a new generation of topics with the
  sessions' events copied over) is not implemented yet; the plan it would
  follow is printed and in docs/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from dataclasses import dataclass

from streams.catalogue import Catalogue
from streams.settings import KafkaSettings


def staying_share(old: int, new: int) -> float:
    """Share of session ids whose partition is the same under ``new`` as under ``old``.

    murmur2's positive 31-bit value is uniform, so the share is that of the
    residues r of one period (lcm of the counts) with ``r % old == r % new``.
    """
    if old < 1 or new < 1:
        raise ValueError("partition counts must be at least 1")
    period = math.lcm(old, new)
    return sum(1 for r in range(period) if r % old == r % new) / period


@dataclass(frozen=True)
class GrowState:
    """What the cluster holds for the catalogue's topics."""

    partitions: dict[str, int]
    """Partition count of each existing catalogue topic."""
    records: dict[str, int]
    """Records (end minus start offsets) of each existing catalogue topic."""

    @property
    def current(self) -> int:
        return max(self.partitions.values(), default=0)

    @property
    def live(self) -> list[str]:
        """Topics holding records (their sessions would move)."""
        return sorted(name for name, count in self.records.items() if count > 0)


def migration_plan(catalogue: Catalogue, old: int, new: int) -> list[str]:
    """The steps of a migration from ``old`` to ``new`` partitions, as lines to print."""
    target = f"{catalogue.prefix}-p{new}"
    return [
        f"1. Create a new generation of topics with {new} partitions under another prefix "
        f"(e.g. AGENTSTREAM_TOPIC_PREFIX={target}, `agentstream topics create --partitions "
        f"{new}`).",
        "2. Stop accepting commands (API processes answer 503) and let the engine drain "
        f"{catalogue.inbox.name}: every command applied, work items answered or timed out.",
        f"3. Copy {catalogue.events.name} session by session, in order, under the same key, "
        f"to partition murmur2(session id) mod {new} of the new events topic, with the same "
        "event ids and seq; resumable by the last copied seq of each session.",
        "4. Move progress: the new inbox starts empty (engine-progress of the new generation "
        "starts at 0); snapshots and checkpoints are keyed by the events topic, so rewrite "
        "them for the new one (new partition, offsets of the copied events) or let the "
        "engine rebuild them from the copied log.",
        "5. Point every worker and API process at the new prefix and partition count; "
        "in-flight sessions carry on from their copied events (the engine re-arms their "
        "timers and re-issues unanswered calls on recovery); the projector builds the read "
        "models of the new stream.",
        "6. `agentstream replay` on the new topics (every log whole, contiguous, one terminal "
        "event) before the old topics are deleted.",
    ]


async def inspect(settings: KafkaSettings, catalogue: Catalogue) -> GrowState:
    from aiokafka import TopicPartition

    from streams.admin import partition_counts
    from streams.clients import new_consumer

    names = [spec.name for spec in catalogue.all()]
    counts = await partition_counts(settings, names)
    if not counts:
        return GrowState({}, {})
    consumer = new_consumer(settings)
    await consumer.start()
    records: dict[str, int] = {}
    try:
        for name, count in counts.items():
            tps = [TopicPartition(name, p) for p in range(count)]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            records[name] = sum(int(ends[tp]) - int(starts[tp]) for tp in tps)
    finally:
        await consumer.stop()
    return GrowState(counts, records)


async def grow_in_place(settings: KafkaSettings, names: list[str], count: int) -> None:
    from aiokafka.admin import NewPartitions

    from streams.admin import admin_client

    async with admin_client(settings) as client:
        await client.create_partitions({name: NewPartitions(total_count=count) for name in names})


def run_grow(args: argparse.Namespace, settings: KafkaSettings) -> int:
    """See the module docstring; ``settings.partitions`` is the count asked for."""
    catalogue = Catalogue.from_settings(settings)
    wanted = settings.partitions
    state = asyncio.run(inspect(settings, catalogue))
    if not state.partitions:
        hint = f"`agentstream topics create --partitions {wanted}` creates them at that count"
        print(f"error: none of the catalogue's topics exists; {hint}", file=sys.stderr)
        return 1
    old = state.current
    if wanted <= old:
        hint = f"Kafka only adds partitions, so ask for more than {old}"
        print(f"error: the topics have {old} partitions; {hint}", file=sys.stderr)
        return 1
    if state.live:
        return _refuse(args, catalogue, state, old, wanted)
    names = sorted(state.partitions)
    if args.dry_run:
        print(f"would grow {len(names)} empty topics from {old} to {wanted} partitions")
        return 0
    asyncio.run(grow_in_place(settings, names, wanted))
    for name in names:
        print(f"grown    {name}: {state.partitions[name]} -> {wanted} partitions")
    print(f"Set AGENTSTREAM_PARTITIONS={wanted} for every process before starting them.")
    return 0


def _refuse(
    args: argparse.Namespace, catalogue: Catalogue, state: GrowState, old: int, new: int
) -> int:
    moving = 1.0 - staying_share(old, new)
    err = sys.stderr
    held = ", ".join(f"{n} ({state.records[n]} records)" for n in state.live)
    print(f"refused: these topics hold records: {held}.", file=err)
    print(
        f"A session's partition is murmur2(session id) mod the partition count: from "
        f"{old} to {new} partitions, {moving:.0%} of sessions map to another partition. "
        "Their new events would land where the engine has never seen their history and "
        "their old events would stay behind: each such session's log would be split, "
        "and engine-progress and the snapshots' checkpoints would name offsets of "
        "partitions that now hold other sessions.",
        file=err,
    )
    if args.migrate:
        print("--migrate is not implemented yet. A migration would:", file=err)
    else:
        print("What a migration involves (`--migrate`, not implemented yet):", file=err)
    for line in migration_plan(catalogue, old, new):
        print(f"  {line}", file=err)
    return 2

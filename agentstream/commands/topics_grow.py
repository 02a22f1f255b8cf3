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
  what a migration involves; with ``--migrate --to-prefix NEW`` the sessions are
  copied to a new generation of topics (:mod:`agentstream.commands.topics_migrate`),
  and every process is then started on the new prefix and count.
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
        "1. Stop every worker and API process: nothing may write to the old topics meanwhile "
        "(the migration refuses while a worker is in the engine or executor groups).",
        f"2. Create a new generation of topics with {new} partitions under another prefix "
        f"(e.g. --to-prefix {target}).",
        f"3. Copy {catalogue.events.name} whole, each session's records in order under the "
        f"same key to partition murmur2(session id) mod {new}, the same bytes (event ids, "
        "seq); then the inbox commands not yet applied (from engine-progress) and the work "
        "items not yet finished (from the executors' committed offsets). In transactions, "
        "resumable: a new run skips what earlier runs copied.",
        "4. Check every session's events: the same records in the same order. The new "
        "generation has no engine progress, snapshots or checkpoints yet: its engines "
        "rebuild each partition from the copied log.",
        "5. Start every process with the new prefix and partition count: sessions in flight "
        "carry on (timers re-armed, copied commands applied, copied calls answered); the "
        "projector builds the read models of the new stream.",
        "6. `agentstream replay` on the new topics before the old ones are deleted.",
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
    if state.live and args.migrate:
        return _migrate(args, settings, old, wanted)
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
    print(
        "What a migration involves (`--migrate --to-prefix NEW` does 1 to 4 with every "
        "process stopped; you do 5 and 6):",
        file=err,
    )
    for line in migration_plan(catalogue, old, new):
        print(f"  {line}", file=err)
    return 2


def _migrate(args: argparse.Namespace, settings: KafkaSettings, old: int, new: int) -> int:
    import dataclasses

    from agentstream.commands.topics_migrate import MigrationError, migrate

    if not args.to_prefix:
        print(
            "error: --migrate needs --to-prefix NEW (the new generation's prefix)", file=sys.stderr
        )
        return 2
    before = dataclasses.replace(settings, partitions=old)
    after = dataclasses.replace(settings, topic_prefix=args.to_prefix, partitions=new)
    try:
        asyncio.run(migrate(before, after))
    except MigrationError as error:
        print(f"error: {error} (run again to resume)", file=sys.stderr)
        return 1
    print(
        f"Start every worker and API process with AGENTSTREAM_TOPIC_PREFIX={args.to_prefix} "
        f"and AGENTSTREAM_PARTITIONS={new}; keep the old topics until `agentstream replay` "
        "passes on the new ones."
    )
    return 0

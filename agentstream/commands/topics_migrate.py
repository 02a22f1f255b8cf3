"""``agentstream topics grow --partitions N --migrate --to-prefix NEW``: sessions to new topics.

Adding partitions in place would split sessions' logs (see
:mod:`agentstream.commands.topics_grow`), so a migration copies them to a new
generation of topics, under another prefix, with N partitions:

1. Refuses while any worker is a member of the old engine or executor groups
   (stop every worker and API process first: nothing may write meanwhile).
2. Creates the new topics (or checks those a previous run created).
3. Copies, each under the same key to partition ``murmur2(key) mod N``, in the
   order of the old partition (a session lives in one old partition, so its
   records keep their order), with the same bytes and headers (same event ids,
   seq, call ids): the whole ``events`` log; the inbox commands the engine had
   not applied (from its ``engine-progress``); the work items the executors had
   not finished (from their groups' committed offsets; a call answered just
   before the stop may run again, and the engine keeps the first result).
4. Checks every session's events: the same records, in the same order.

Resumable: the copy goes in Kafka transactions, and a run counts what earlier
runs committed to each new topic by key and skips that many of the session's
records (copies are in order, so they are the first ones). The new generation
starts without engine progress, snapshots or checkpoints: its engines rebuild
each partition from the copied log, re-arm the sessions' timers, and apply the
copied commands; sessions that waited for a result or an approval carry on.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from agentstream.errors import AgentstreamError
from streams.catalogue import Catalogue, TopicSpec
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)
BATCH = 500
"""Records per transaction: a crash re-copies at most this many."""


class MigrationError(AgentstreamError):
    """A migration that must not go on (workers running, a log that does not match)."""


class MigrationInterrupted(MigrationError):
    """Raised by ``stop_after`` (tests): the run stops as a crash would, mid-transaction."""


@dataclass
class MigrationReport:
    copied: Counter[str] = field(default_factory=Counter)
    """Records copied by this run, by role."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Records an earlier run had copied, by role."""
    sessions: int = 0
    """Sessions whose events were checked whole and in order."""


def _describe_groups_v1(groups: list[str]) -> Any:
    """A DescribeGroups request that only speaks v1.

    aiokafka's ``describe_consumer_groups`` asks for v3 but decodes the answer as
    v2, which fails on a group with members; v1 answers what we need.
    """
    from aiokafka.protocol.admin import DescribeGroupsRequest_v1
    from aiokafka.protocol.api import Request

    class DescribeGroupsV1(Request[DescribeGroupsRequest_v1]):  # type: ignore[misc]
        API_KEY = 15

        def build(self, request_struct_class: type[Any]) -> Any:
            return request_struct_class(groups)

    return DescribeGroupsV1()


async def _members(settings: KafkaSettings, groups: list[str]) -> dict[str, int]:
    """Members of each of ``groups`` that has any."""
    from streams.clients import new_admin

    admin = new_admin(settings)
    await admin.start()
    try:
        found: dict[str, int] = {}
        for group_id in groups:
            node = await admin.find_coordinator(group_id)
            response = await admin._send_request(_describe_groups_v1([group_id]), node)
            # (error, group, state, protocol type, protocol, members)
            for group in response.groups:
                if group[5]:
                    found[str(group[1])] = len(group[5])
        return found
    finally:
        await admin.close()


async def _records(
    settings: KafkaSettings, topic: str, partition: int, start: int
) -> AsyncIterator[Any]:
    """Committed records of one partition from ``start`` to its end as of now."""
    from streams.clients import new_consumer

    consumer = new_consumer(settings, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = max(start, (await consumer.beginning_offsets([tp]))[tp])
        if first >= end:
            return
        consumer.seek(tp, first)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset < end:
                    yield record
    finally:
        await consumer.stop()


async def _by_key(settings: KafkaSettings, topic: str) -> dict[bytes, list[Any]]:
    from streams.consumer import read_to_end

    found: dict[bytes, list[Any]] = defaultdict(list)
    async for record in read_to_end(settings, topic):
        found[record.key or b""].append(record)
    return found


async def _starts(old: KafkaSettings, catalogue: Catalogue) -> dict[str, dict[int, int]]:
    """Where each copied topic's copy begins, per old partition."""
    from aiokafka.admin import AIOKafkaAdminClient

    from processors.engine.inbox_progress import read_progress
    from streams.clients import new_admin, new_consumer

    partitions = range(old.partitions)
    starts: dict[str, dict[int, int]] = {catalogue.events.role: dict.fromkeys(partitions, 0)}
    consumer = new_consumer(old)
    await consumer.start()
    try:
        inbox: dict[int, int] = {}
        for p in partitions:
            progress = await read_progress(consumer, catalogue.engine_progress.name, p)
            inbox[p] = progress.next_offset if progress is not None else 0
        starts[catalogue.inbox.role] = inbox
    finally:
        await consumer.stop()
    admin: AIOKafkaAdminClient = new_admin(old)
    await admin.start()
    try:
        for spec, group in (
            (catalogue.llm_calls, f"{old.topic_prefix}.llm"),
            (catalogue.tool_calls, f"{old.topic_prefix}.tools"),
        ):
            committed = await admin.list_consumer_group_offsets(group)
            starts[spec.role] = {
                p: max(0, committed[tp].offset) if (tp := TopicPartition(spec.name, p)) in committed
                else 0
                for p in partitions
            }  # fmt: skip
    finally:
        await admin.close()
    return starts


async def _copy(
    old: KafkaSettings,
    new: KafkaSettings,
    source: TopicSpec,
    target: TopicSpec,
    starts: dict[int, int],
    producer: AIOKafkaProducer,
    report: MigrationReport,
    budget: list[int | None],
) -> None:
    from streams.partitioner import partition_for_key

    done = Counter({k: len(v) for k, v in (await _by_key(new, target.name)).items()})
    seen: Counter[bytes] = Counter()
    pending = 0
    await producer.begin_transaction()
    for partition, start in sorted(starts.items()):
        async for record in _records(old, source.name, partition, start):
            key = record.key
            if key is None:
                raise MigrationError(f"{source.name}[{partition}]@{record.offset} has no key")
            seen[key] += 1
            if seen[key] <= done[key]:
                report.skipped[source.role] += 1
                continue
            if budget[0] is not None:
                if budget[0] <= 0:
                    raise MigrationInterrupted(f"stopped in {source.name} as asked")
                budget[0] -= 1
            await producer.send(
                target.name,
                record.value,
                key=key,
                partition=partition_for_key(key, target.partitions),
                headers=list(record.headers),
            )
            report.copied[source.role] += 1
            pending += 1
            if pending >= BATCH:
                await producer.commit_transaction()
                await producer.begin_transaction()
                pending = 0
    await producer.commit_transaction()


async def _verify(
    old: KafkaSettings, new: KafkaSettings, old_cat: Catalogue, new_cat: Catalogue
) -> int:
    from streams.partitioner import partition_for_key

    before = await _by_key(old, old_cat.events.name)
    after = await _by_key(new, new_cat.events.name)
    if set(before) != set(after):
        raise MigrationError(f"sessions differ: {len(before)} before, {len(after)} after")
    for key, records in before.items():
        copies = after[key]
        if [r.value for r in records] != [r.value for r in copies]:
            raise MigrationError(f"session {key!r}: its events differ after the copy")
        wanted = partition_for_key(key, new.partitions)
        if any(r.partition != wanted for r in copies):
            raise MigrationError(f"session {key!r}: not all on partition {wanted}")
    return len(before)


async def migrate(
    old: KafkaSettings,
    new: KafkaSettings,
    *,
    say: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> MigrationReport:
    """See the module docstring. ``old.partitions`` must be the old topics' count."""
    from streams.admin import ensure_topics, require_ok
    from streams.clients import new_transactional_producer

    if new.topic_prefix == old.topic_prefix:
        raise MigrationError("the new generation needs a prefix of its own (--to-prefix)")
    old_cat, new_cat = Catalogue.from_settings(old), Catalogue.from_settings(new)
    groups = [f"{old.topic_prefix}.{role}" for role in ("engine", "llm", "tools")]
    running = await _members(old, groups)
    if running:
        listed = ", ".join(f"{g} ({n})" for g, n in sorted(running.items()))
        raise MigrationError(f"workers still run ({listed}): stop every worker and API first")
    require_ok(await ensure_topics(new, new_cat))
    starts = await _starts(old, old_cat)
    report = MigrationReport()
    producer = new_transactional_producer(new, f"{new.topic_prefix}.migrate")
    await producer.start()
    budget: list[int | None] = [stop_after]
    try:
        for role in ("events", "inbox", "llm-calls", "tool-calls"):
            source, target = old_cat.resolve(role), new_cat.resolve(role)
            await _copy(old, new, source, target, starts[role], producer, report, budget)
            say(f"copied   {source.name} -> {target.name}: {report.copied[role]} records"
                f" ({report.skipped[role]} copied before)")  # fmt: skip
    finally:
        await producer.stop()
    report.sessions = await _verify(old, new, old_cat, new_cat)
    say(f"checked  {report.sessions} sessions: every log whole, in order, same event ids")
    return report

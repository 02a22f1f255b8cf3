"""How far the engine consumed each inbox partition, recorded inside its transactions.

Each engine transaction appends one small record to ``engine-progress``
partition p: "inbox partition p is applied up to (not including) offset N".
It commits or aborts with the events it accompanies, so the inbox position
and the log can never disagree, which is what exactly-once needs.

Why not ``send_offsets_to_transaction`` (consumer-group offsets in the
transaction)? In aiokafka it adds two serial round trips to every
transaction (AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator,
whose partition of ``__consumer_offsets`` then also takes a commit marker);
a record on a topic the transaction already writes rides in the same
AddPartitionsToTxn and ProduceRequest as the events. ``benchmarks/bench_txn``
compares the two (figures in docs/benchmarks.md).

The engine still commits the group's offsets outside the transactions, now
and then, for lag dashboards and the gateway's admission control; they are
advisory. On assignment the engine resumes from the newest committed progress
record (read_committed), falling back to the group offset for a partition that
has none yet (an engine that ran before this record existed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from agentstream.errors import AgentstreamError

HEADER_TYPE = [("type", b"EngineProgress")]
"""The ``type`` header of every progress record (Kafka UI shows it)."""


class ProgressError(AgentstreamError):
    """A progress record cannot be read (the topic holds something else)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One engine transaction's position."""

    inbox_partition: int
    next_offset: int
    """The first inbox offset the transaction did not consume."""

    def key(self) -> bytes:
        return str(self.inbox_partition).encode()

    def value(self) -> bytes:
        return json.dumps(
            {"inbox_partition": self.inbox_partition, "next_offset": self.next_offset},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def parse(cls, value: bytes | None) -> Progress:
        try:
            data = json.loads(value or b"")
            return cls(int(data["inbox_partition"]), int(data["next_offset"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ProgressError(f"not a progress record: {value!r}: {error}") from error


async def read_progress(
    consumer: AIOKafkaConsumer, topic: str, partition: int, *, timeout_s: float = 30.0
) -> Progress | None:
    """The newest committed progress record of ``partition``, or None if it has none.

    ``consumer`` is a group-less read_committed consumer; this assigns it the
    one progress partition and leaves it paused. Each transaction adds a record
    and a commit marker, so the newest record sits within the last few offsets;
    the window widens (to the whole partition at worst) while it finds none,
    e.g. behind aborted transactions.
    """
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.resume(tp)
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        start = (await consumer.beginning_offsets([tp]))[tp]
        window = 64
        while True:
            first = max(start, end - window)
            newest = await _newest_in(consumer, tp, first, end, timeout_s)
            if newest is not None or first == start:
                return newest
            window *= 8
    finally:
        consumer.pause(tp)


async def _newest_in(
    consumer: AIOKafkaConsumer, tp: TopicPartition, first: int, end: int, timeout_s: float
) -> Progress | None:
    consumer.seek(tp, first)
    newest: Progress | None = None
    waited = 0.0
    while await consumer.position(tp) < end:
        records = (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
        if not records:
            waited += 0.2
            if waited > timeout_s:
                raise ProgressError(f"{tp.topic}[{tp.partition}]: no progress read in {timeout_s}s")
        for record in records:
            if record.offset < end:
                newest = Progress.parse(record.value)
    return newest

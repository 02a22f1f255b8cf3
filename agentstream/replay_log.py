"""Reading the event log for ``agentstream replay``: one partition, from an offset or a
time, decoded, and the window audit built on it.

Replay reads the log only (read_committed, no consumer group): it never calls a model
or a tool and never writes anywhere. One consumer reads each partition with large
fetches up to its end as of the start; a session's records are picked by key before
anything is decoded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from processors.core import SessionState
from processors.engine.log_audit import RESULT_EVENTS, LoggedEvent, SessionAudit
from processors.engine.window_audit import ShapeAuditor, TailAudit, WindowAuditor
from schemas import Codec, SchemaError
from schemas.envelope import EnvelopeReader
from streams.clients import new_consumer
from streams.settings import KafkaSettings

FETCH: dict[str, Any] = {"fetch_max_bytes": 32 << 20, "max_partition_fetch_bytes": 16 << 20}
"""Large fetches: a replay reads whole partitions."""


async def read_events(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    *,
    from_ms: int | None = None,
    key: bytes | None = None,
    codec: Codec | None = None,
) -> AsyncIterator[LoggedEvent]:
    """The committed events of one partition, oldest first: from the first record at or
    after ``from_ms`` (Kafka timestamps; all of them without it), only ``key``'s if set.

    A record that does not decode yields an ``Undecodable`` event naming its session.
    """
    codec = codec or Codec()
    tp = TopicPartition(topic, partition)
    consumer = new_consumer(settings, **FETCH)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = int((await consumer.end_offsets([tp]))[tp])
        consumer.seek(tp, await _start(consumer, tp, from_ms, end))
        decode = codec.decode
        while await consumer.position(tp) < end:
            records = (await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)).get(tp, [])
            for record in records:
                if record.offset >= end:
                    return
                if key is not None and record.key != key:
                    continue
                try:
                    name, event = decode(record.value)
                except SchemaError as error:
                    who = record.key.decode(errors="replace") if record.key else "?"
                    name, event = "Undecodable", {"session_id": who, "error": str(error)}
                yield record.offset, name, event
    finally:
        await consumer.stop()


@dataclass
class WindowReport:
    """A window audit of some partitions."""

    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    full: dict[str, SessionAudit] = field(default_factory=dict)
    """Sessions folded and audited in full (with ``fold``: those started in the window)."""
    tails: dict[str, TailAudit] = field(default_factory=dict)
    """Sessions checked for their shape (without ``fold``: all of them)."""
    undecodable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[tuple[str, str]]:
        found = [(a.session_id, p) for a in self.full.values() for p in a.problems]
        found += [(t.session_id, p) for t in self.tails.values() for p in t.problems]
        return found + self.undecodable

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds else 0.0


async def _shape(
    settings: KafkaSettings, topic: str, partitions: list[int], from_ms: int | None, codec: Codec
) -> tuple[ShapeAuditor, list[tuple[str, str]]]:
    """The fast path: envelopes only (a record without one is decoded in full), every
    partition on one consumer, one after the other."""
    auditor = ShapeAuditor(whole_log=from_ms is None)
    undecodable: list[tuple[str, str]] = []
    envelope = EnvelopeReader(codec).read
    add = auditor.add
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer = new_consumer(settings, **FETCH)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.pause(*(other for other in tps if other != tp))
            consumer.resume(tp)
            end = int(ends[tp])
            consumer.seek(tp, await _start(consumer, tp, from_ms, end))
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)
                for record in batch.get(tp, []):
                    offset = record.offset
                    if offset >= end:
                        break
                    try:
                        found = envelope(record.value)
                        if found is None:
                            name, event = codec.decode(record.value)
                            call = event.get("call_id") if name in RESULT_EVENTS else None
                            found = (name, str(event["event_id"]).encode(),
                                     str(event["session_id"]).encode(), int(event["seq"]),
                                     int(event["time_ms"]),
                                     None if call is None else str(call).encode())  # fmt: skip
                    except (SchemaError, KeyError, ValueError, TypeError) as error:
                        who = record.key.decode(errors="replace") if record.key else "?"
                        undecodable.append((who, f"offset {offset}: undecodable: {error}"))
                        continue
                    name, event_id, session_id, seq, _, call_id = found
                    add(offset, name, event_id, session_id, seq, call_id)
    finally:
        await consumer.stop()
    return auditor, undecodable


async def _start(consumer: Any, tp: TopicPartition, from_ms: int | None, end: int) -> int:
    if from_ms is None:
        return int((await consumer.beginning_offsets([tp]))[tp])
    found = (await consumer.offsets_for_times({tp: from_ms}))[tp]
    return end if found is None else int(found.offset)


async def audit_window(
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    from_ms: int | None,
    *,
    fold: bool = True,
    snapshots: Mapping[int, Mapping[str, SessionState]] | None = None,
) -> WindowReport:
    """Audit each partition's events from ``from_ms`` on (all of them without it):
    folded (``fold``, with ``snapshots`` compared) or by their shape only."""
    report = WindowReport()
    codec = Codec()  # registers every schema: set-up, not per event
    started, cpu = time.perf_counter(), time.process_time()
    if not fold:
        shape, report.undecodable = await _shape(settings, topic, partitions, from_ms, codec)
        report.events = shape.events
        report.tails = {t.session_id: t for t in shape.sessions.values()}
    for partition in partitions if fold else []:
        auditor = WindowAuditor((snapshots or {}).get(partition), whole_log=from_ms is None)
        add = auditor.add
        async for offset, name, event in read_events(
            settings, topic, partition, from_ms=from_ms, codec=codec
        ):
            add(offset, name, event)
        full, tails = auditor.finish()
        report.events += auditor.events
        report.full.update(full)
        report.tails.update(tails)
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu
    return report


def summary(report: WindowReport, partitions: list[int], from_ms: int | None) -> dict[str, Any]:
    """The JSON summary line of a window audit."""
    full, tails = report.full.values(), report.tails.values()
    return {
        "partitions": partitions,
        "from_ms": from_ms,
        "events": report.events,
        "sessions": len(report.full) + len(report.tails),
        "folded": len(report.full),
        "shape_only": len(report.tails),
        "started_before_window": sum(not t.started for t in tails),
        "ended": sum(a.state is not None and a.state.terminal for a in full)
        + sum(t.terminal_at is not None for t in tails),
        "snapshots_checked": sum(a.snapshot_agrees is not None for a in full),
        "with_problems": sum(not a.ok for a in full)
        + sum(not t.ok for t in tails)
        + len({who for who, _ in report.undecodable}),
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.events_per_s),
        "events_per_cpu_s": round(report.events_per_cpu_s),
    }

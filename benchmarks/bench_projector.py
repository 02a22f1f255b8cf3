"""The projector's events/s into Postgres, against a bare consume + COPY of the same events.

Events: real session logs (the in-memory runtime: decide, the simulated model,
the built-in tools), cloned under fresh session ids to N sessions, produced to
a fresh events topic. Then, same run, same broker and database:

* baseline: a bare aiokafka consumer reads every event (read_committed),
  decodes it and COPYs one row per event (session, seq, type, JSON body) into
  an unlogged table: the least any projector must do;
* ours: :class:`projections.projector.Projector` from an empty tracking table
  until it has applied everything (sessions, events, messages, LLM and tool
  calls, usage, tracking, all in one transaction per batch).

Target: >= 20,000 events/s. Rows of the run are deleted afterwards.

Run: ``python -m benchmarks.bench_projector [--sessions N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, TopicPartition

from agentstream.gateway.testkit import database_url
from processors.agents.loader import load_agents
from processors.testing.inline_runtime import InlineRuntime
from projections.db import create_engine, raw_connection
from projections.migrate import upgrade
from projections.projector import Projector
from schemas import Codec
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.producer import Producer
from streams.settings import KafkaSettings

INPUTS = (
    "What is 6*7?",
    "What is 2+3 and the weather in Oslo?",
    "hello there",
    "weather in Lima",
    "Compute (4+5)*2 please.",
)
TABLES = ("sessions", "events", "messages", "llm_calls", "tool_calls", "usage_daily",
          "projection_tracking")  # fmt: skip


async def templates() -> list[list[tuple[str, dict[str, Any]]]]:
    runtime = InlineRuntime(load_agents(None))
    for i, text in enumerate(INPUTS):
        await runtime.start(f"template-{i}", "demo", text, tenant_id="tenant")
    return list(runtime.logs.values())


def clone(log: list[tuple[str, dict[str, Any]]], n: int) -> list[tuple[str, dict[str, Any]]]:
    session_id, tenant = str(uuid.uuid4()), f"tenant-{n % 20}"
    return [
        (name, {**event, "session_id": session_id, "tenant_id": tenant,
                "event_id": f"{session_id}:{event['seq']}"})
        for name, event in log
    ]  # fmt: skip


async def produce(kafka: KafkaSettings, sessions: int) -> int:
    logs = await templates()
    topic = Catalogue.from_settings(kafka).events.name
    total = 0
    async with Producer(kafka, Codec()) as producer:
        chunk = []
        for i in range(sessions):
            for name, event in clone(logs[i % len(logs)], i):
                chunk.append(producer.encode(topic, name, event))
            if len(chunk) >= 20_000:
                total += await producer.send_many(chunk)
                chunk = []
        total += await producer.send_many(chunk)
    return total


async def baseline(kafka: KafkaSettings, total: int) -> float:
    """Bare consume + decode + COPY of one row per event; events/s."""
    codec = Codec()
    engine = create_engine(database_url(), pool_size=2)
    table = f"bench_events_{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        topic = Catalogue.from_settings(kafka).events.name
        tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with raw_connection(engine) as connection:
            await connection.execute(
                f"CREATE UNLOGGED TABLE {table} (session_id text, seq bigint, type text, body text)"
            )
            try:
                seen = 0
                started = time.perf_counter()
                while seen < total:
                    batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                    rows = []
                    for records in batches.values():
                        for record in records:
                            name, event = codec.decode(record.value)
                            rows.append(
                                (event["session_id"], event["seq"], name, json.dumps(event))
                            )
                    seen += len(rows)
                    if rows:
                        await connection.copy_records_to_table(table, records=rows)
                return total / (time.perf_counter() - started)
            finally:
                await connection.execute(f"DROP TABLE {table}")
    finally:
        await consumer.stop()
        await engine.dispose()


async def ours(kafka: KafkaSettings, total: int, batch: int, parallel: int) -> tuple[float, float]:
    """The projector's events/s: (steady, from start including the group join)."""
    engine = create_engine(database_url())
    projector = Projector(kafka, engine, max_batch_records=batch, parallel=parallel)
    try:
        started = time.perf_counter()
        await projector.start()
        first: tuple[float, int] | None = None
        while projector.applied < total:
            await asyncio.sleep(0.02)
            if first is None and projector.applied > 0:
                first = (time.perf_counter(), projector.applied)
        done = time.perf_counter()
        assert first is not None
        steady = (total - first[1]) / max(1e-9, done - first[0])
        return steady, total / (done - started)
    finally:
        await projector.stop()
        async with raw_connection(engine) as connection:
            stream = Catalogue.from_settings(kafka).events.name
            for table in TABLES:
                await connection.execute(f"DELETE FROM {table} WHERE stream = $1", stream)
        await engine.dispose()


async def run(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    kafka = KafkaSettings(bootstrap, f"bench{uuid.uuid4().hex[:6]}", args.partitions)
    catalogue = Catalogue.from_settings(kafka)
    await upgrade(database_url())
    require_ok(await ensure_topics(kafka, catalogue))
    try:
        total = await produce(kafka, args.sessions)
        print(f"projector benchmark: {total:,} events of {args.sessions:,} sessions, "
              f"{args.partitions} partitions, batch {args.batch}, parallel {args.parallel}")  # fmt: skip
        base = await baseline(kafka, total)
        print(f"  baseline consume + COPY       {base:>9,.0f} events/s")
        steady, overall = await ours(kafka, total, args.batch, args.parallel)
        print(f"  projector (read models)       {steady:>9,.0f} events/s "
              f"({overall:,.0f}/s including start and group join)")  # fmt: skip
        print(f"ratio projector/baseline (same run): {steady / base:.2f}x")
        ok = steady >= 20_000
        print(f"projector: {'PASS' if ok else 'FAIL'} (>= 20,000 events/s)")
        return 0 if ok else 1
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=2, help="partition groups per batch")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

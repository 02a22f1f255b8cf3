"""Kafka transactions as the engine writes them, against the group-offsets baseline.

Four transactional producers (one per inbox partition, as the engine has)
commit back to back, each transaction carrying what an engine transaction
carries: one event, one work item, and how far the inbox is consumed —

    progress  as a record on ``engine-progress`` (what the engine does), against
    offsets   as consumer-group offsets (``send_offsets_to_transaction``, the
              baseline), in the same run, alternating, after a warm-up.

Prints transactions/s, p50/p99 per transaction and client CPU per transaction,
and the ratio. This is the ceiling the engine's per-step latency sits on: on a
small machine the transactions alone fill it (docs/benchmarks.md).

Run: ``python -m benchmarks.bench_txn [--transactions N] [--producers P]``.
Needs the local Kafka (``agentstream infra up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer, TopicPartition

from agentstream.process_tuning import install_event_loop_policy
from processors.engine.inbox_progress import HEADER_TYPE, Progress
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from streams.tuning import shorten_transaction_backoff


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def engine_like_producer(kafka: KafkaSettings, transactional_id: str) -> AIOKafkaProducer:
    """A transactional producer configured as the engine's are."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        retry_backoff_ms=5,  # as the engine's producers
    )


async def send_progress(
    producer: AIOKafkaProducer, catalogue: Catalogue, p: int, next_offset: int
) -> asyncio.Future[Any]:
    """Append the engine's progress record for inbox partition ``p`` to the transaction."""
    progress = Progress(p, next_offset)
    future: asyncio.Future[Any] = await producer.send(
        catalogue.engine_progress.name,
        progress.value(),
        key=progress.key(),
        partition=p,
        headers=HEADER_TYPE,
    )
    return future


async def _producer(
    kafka: KafkaSettings, catalogue: Catalogue, p: int, mode: str, count: int, out: list[float]
) -> None:
    producer = engine_like_producer(kafka, f"{catalogue.prefix}.bench.{mode}.{p}")
    await producer.start()
    group = f"{catalogue.prefix}.bench"
    inbox = TopicPartition(catalogue.inbox.name, p)
    event, work = b"e" * 400, b"w" * 600
    try:
        for i in range(count):
            started = time.perf_counter()
            async with producer.transaction():
                sent = [
                    await producer.send(catalogue.events.name, event, partition=p),
                    await producer.send(catalogue.llm_calls.name, work, partition=p),
                ]
                if mode == "progress":
                    sent.append(await send_progress(producer, catalogue, p, i + 1))
                    await asyncio.gather(*sent)
                else:
                    await asyncio.gather(
                        asyncio.gather(*sent),
                        producer.send_offsets_to_transaction({inbox: i + 1}, group),
                    )
            out.append(time.perf_counter() - started)
    finally:
        await producer.stop()


async def _round(
    kafka: KafkaSettings, catalogue: Catalogue, mode: str, count: int, producers: int
) -> tuple[float, list[float], float]:
    latencies: list[float] = []
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(
        *(_producer(kafka, catalogue, p, mode, count, latencies) for p in range(producers))
    )
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return len(latencies) / wall, latencies, cpu / len(latencies)


async def bench(count: int, producers: int) -> None:
    kafka = KafkaSettings.from_env()
    kafka = KafkaSettings(
        bootstrap=kafka.bootstrap,
        topic_prefix=f"bench-txn-{uuid.uuid4().hex[:6]}",
        partitions=max(producers, 1),
    )
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    shorten_transaction_backoff()
    try:
        await _round(kafka, catalogue, "progress", max(50, count // 5), producers)  # warm-up
        await _round(kafka, catalogue, "offsets", max(50, count // 5), producers)
        results: dict[str, list[tuple[float, list[float], float]]] = {"progress": [], "offsets": []}
        for _ in range(2):
            for mode in ("offsets", "progress"):
                results[mode].append(await _round(kafka, catalogue, mode, count, producers))
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])
    rates: dict[str, float] = {}
    for mode, rounds in results.items():
        rate = sum(r[0] for r in rounds) / len(rounds)
        latencies = [x for r in rounds for x in r[1]]
        cpu = sum(r[2] for r in rounds) / len(rounds)
        rates[mode] = rate
        label = "progress record (engine)" if mode == "progress" else "group offsets (baseline)"
        print(
            f"  {label:<26} {rate:7,.0f} transactions/s  p50 {_p(latencies, 0.5) * 1000:5.1f} ms"
            f"  p99 {_p(latencies, 0.99) * 1000:5.1f} ms  client CPU {cpu * 1e6:4.0f} µs/transaction"
        )
    print(f"  ratio progress / offsets: {rates['progress'] / rates['offsets']:.2f}x transactions/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=1000, help="per producer per round")
    parser.add_argument("--producers", type=int, default=4)
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}; {args.producers} producers"
    )
    install_event_loop_policy(os.environ)
    asyncio.run(bench(args.transactions, args.producers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

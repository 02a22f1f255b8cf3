"""Engine-shaped Kafka transactions through aiokafka and through confluent-kafka.

Is a compiled client a way to cheaper transactions? Two transactional producers
(one per inbox partition) commit back to back, each transaction carrying what an
engine transaction carries at light load: three events, one work item and the
progress record. Prints transactions/s, p50/p99 per transaction, and the CPU per
transaction of the client process and of the broker (from /proc), per round, after
a warm-up round of each (a broker's CPU per transaction halves as its JIT warms).

confluent-kafka (librdkafka) is not a dependency of agentstream; install it to run
this: ``pip install confluent-kafka``. Its producers run in threads (its blocking
transactional calls release the GIL).

Run: ``python -m benchmarks.bench_txn_clients [--transactions N] [--producers P]``.
Needs the local Kafka (``agentstream infra up``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_txn import engine_like_producer, send_progress
from benchmarks.hot_path import broker_cpu_seconds
from processors.engine.inbox_progress import HEADER_TYPE, Progress
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from streams.tuning import shorten_transaction_backoff

EVENT, WORK = b"e" * 400, b"w" * 600


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _aiokafka(kafka: KafkaSettings, cat: Catalogue, p: int, n: int, out: list[float]) -> None:
    producer = engine_like_producer(kafka, f"{cat.prefix}.aiokafka.{p}")
    await producer.start()
    try:
        for i in range(n):
            started = time.perf_counter()
            async with producer.transaction():
                sent = [await producer.send(cat.events.name, EVENT, partition=p) for _ in range(3)]
                sent.append(await producer.send(cat.llm_calls.name, WORK, partition=p))
                sent.append(await send_progress(producer, cat, p, i + 1))
                await asyncio.gather(*sent)
            out.append(time.perf_counter() - started)
    finally:
        await producer.stop()


def _confluent(
    module: Any, kafka: KafkaSettings, cat: Catalogue, p: int, n: int, out: list[float]
) -> None:
    producer = module.Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "transactional.id": f"{cat.prefix}.confluent.{p}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
        }
    )
    producer.init_transactions(30)
    for i in range(n):
        started = time.perf_counter()
        progress = Progress(p, i + 1)
        producer.begin_transaction()
        for _ in range(3):
            producer.produce(cat.events.name, EVENT, partition=p)
        producer.produce(cat.llm_calls.name, WORK, partition=p)
        producer.produce(
            cat.engine_progress.name,
            progress.value(),
            key=progress.key(),
            partition=p,
            headers=HEADER_TYPE,
        )
        producer.commit_transaction(30)
        out.append(time.perf_counter() - started)


async def _round(
    client: str, module: Any, kafka: KafkaSettings, cat: Catalogue, n: int, producers: int
) -> str:
    latencies: list[float] = []
    cpu, broker, wall = time.process_time(), broker_cpu_seconds(), time.perf_counter()
    if client == "aiokafka":
        await asyncio.gather(*(_aiokafka(kafka, cat, p, n, latencies) for p in range(producers)))
    else:
        threads = [
            threading.Thread(target=_confluent, args=(module, kafka, cat, p, n, latencies))
            for p in range(producers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
    wall = time.perf_counter() - wall
    cpu = (time.process_time() - cpu) / len(latencies)
    broker = (broker_cpu_seconds() - broker) / len(latencies)
    return (
        f"  {client:<16} {len(latencies) / wall:6,.0f} transactions/s"
        f"  p50 {_p(latencies, 0.5) * 1000:5.1f} ms  p99 {_p(latencies, 0.99) * 1000:5.1f} ms"
        f"  CPU per transaction: client {cpu * 1e6:5.0f} µs, broker {broker * 1e6:5.0f} µs"
    )


async def bench(count: int, producers: int) -> None:
    try:
        module = importlib.import_module("confluent_kafka")
    except ImportError:
        raise SystemExit("confluent-kafka is not installed: pip install confluent-kafka") from None
    base = KafkaSettings.from_env()
    kafka = KafkaSettings(
        bootstrap=base.bootstrap,
        topic_prefix=f"bench-clients-{uuid.uuid4().hex[:6]}",
        partitions=producers,
    )
    cat = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, cat))
    shorten_transaction_backoff()
    try:
        for client in ("aiokafka", "confluent-kafka"):  # warm-up, not printed
            await _round(client, module, kafka, cat, count, producers)
        for _ in range(3):
            for client in ("aiokafka", "confluent-kafka"):
                print(await _round(client, module, kafka, cat, count, producers), flush=True)
    finally:
        await delete_topics(kafka, [spec.name for spec in cat.all()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=3000, help="per producer per round")
    parser.add_argument("--producers", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}; {args.producers} producers"
    )
    asyncio.run(bench(args.transactions, args.producers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``agentstream produce`` against a bare aiokafka producer sending the same bytes.

100,000 StartSession JSON lines go through exactly what ``agentstream produce
--file`` does (read, validate every line, encode, check the topic, produce
with the idempotent batched producer, wait for every ack). The baseline is a
bare ``AIOKafkaProducer`` with the same guarantees (acks=all, idempotent, same
linger and batch size, aiokafka's default partitioner) sending the already
encoded records one ``send()`` at a time and awaiting every future. Target:
ours >= 0.7x the bare producer's records/s.

For reference it also times aiokafka's batch API (``create_batch`` /
``send_batch``) on the encoded records: the fastest a bare producer gets.

Run: ``python -m benchmarks.bench_produce [--records N] [--rounds R]``
(needs the local Kafka; topics get a unique prefix and are deleted after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from agentstream.cli import main as cli_main
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue, TopicSpec
from streams.jsonlines import split_lines, validate_lines
from streams.partitioner import partition_for_key
from streams.producer import OutgoingRecord, producer_config
from streams.settings import KafkaSettings


def write_lines(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            out.write(
                json.dumps(
                    {
                        "type": "StartSession",
                        "session_id": str(uuid.uuid4()),
                        "tenant_id": f"tenant-{i % 50}",
                        "agent": "demo",
                        "input": f"What is 6*7? (request {i})",
                    }
                )
                + "\n"
            )


def run_ours(settings: KafkaSettings, spec: TopicSpec, path: Path) -> float:
    """Seconds for `agentstream produce --file` from start to the last ack."""
    args = [
        "produce",
        "--topic",
        spec.role,
        "--file",
        str(path),
        "--quiet",
        "--bootstrap",
        settings.bootstrap,
        "--prefix",
        settings.topic_prefix,
        "--partitions",
        str(settings.partitions),
    ]
    started = time.perf_counter()
    code = cli_main(args)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"agentstream produce exited {code}")
    return elapsed


async def _bare_send(settings: KafkaSettings, records: list[OutgoingRecord]) -> float:
    config = producer_config(settings)
    del config["partitioner"]  # bare: aiokafka's own (murmur2) partitioner
    started = time.perf_counter()
    producer = AIOKafkaProducer(**config)
    await producer.start()
    try:
        futures = [
            await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _bare_batches(settings: KafkaSettings, records: list[OutgoingRecord]) -> float:
    started = time.perf_counter()
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    try:
        count = len(await producer.partitions_for(records[0].topic))
        builders: dict[int, Any] = {}
        futures = []
        for r in records:
            p = partition_for_key(r.key, count)
            builder = builders.get(p)
            if builder is None:
                builder = builders[p] = producer.create_batch()
            if builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers) is None:
                futures.append(await producer.send_batch(builder, r.topic, partition=p))
                builder = builders[p] = producer.create_batch()
                builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers)
        for p, builder in builders.items():
            futures.append(await producer.send_batch(builder, records[0].topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians count")
    parser.add_argument("--bootstrap", default=KafkaSettings.from_env().bootstrap)
    args = parser.parse_args(argv)

    settings = KafkaSettings(
        bootstrap=args.bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}", partitions=12
    )
    catalogue = Catalogue.from_settings(settings)
    require_ok(asyncio.run(ensure_topics(settings, catalogue)))
    ours: list[float] = []
    bare: list[float] = []
    batches: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "start_sessions.jsonl"
            write_lines(path, args.records)
            # The baseline sends exactly the bytes ours would (encoded once, untimed).
            encoded = validate_lines(split_lines(path.read_bytes()), catalogue.inbox)
            assert encoded.ok
            for _ in range(args.rounds):
                bare.append(asyncio.run(_bare_send(settings, encoded.records)))
                ours.append(run_ours(settings, catalogue.inbox, path))
                batches.append(asyncio.run(_bare_batches(settings, encoded.records)))
    finally:
        asyncio.run(delete_topics(settings, [spec.name for spec in catalogue.all()]))

    n = args.records
    rate_ours = n / statistics.median(ours)
    rate_bare = n / statistics.median(bare)
    rate_batches = n / statistics.median(batches)
    size = sum(len(r.value) for r in encoded.records) / n
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    print(
        f"{n:,} StartSession records ({size:.0f}-byte values), 12 partitions, "
        f"median of {args.rounds} rounds"
    )
    print(
        f"agentstream produce (validate+encode+produce) {rate_ours:>10,.0f} records/s  "
        f"rounds: {', '.join(f'{n / t:,.0f}' for t in ours)}"
    )
    print(
        f"bare aiokafka send(), pre-encoded           {rate_bare:>10,.0f} records/s  "
        f"rounds: {', '.join(f'{n / t:,.0f}' for t in bare)}"
    )
    print(
        f"bare aiokafka batch API, pre-encoded        {rate_batches:>10,.0f} records/s  (reference)"
    )
    ratio = rate_ours / rate_bare
    print(f"ratio ours / bare send(): {ratio:.2f} (target >= 0.70)")
    return 0 if ratio >= 0.7 else 1


if __name__ == "__main__":
    sys.exit(main())

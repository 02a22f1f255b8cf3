"""``agentstream replay``'s audit speed in events/s, per second and per CPU second.

Events: real session logs (the in-memory runtime), cloned to N sessions and produced
to a fresh events topic (as bench_projector). Then, same run, same broker:

* baseline: a bare consumer reading every record (read_committed) and decoding it:
  the least any audit must do;
* ours, whole log: ``audit_window`` from the log start (every session folded and
  checked, as ``agentstream replay --partition P``);
* ours, window: ``audit_window`` from the time of the middle record of each partition
  (``agentstream replay --from-datetime T``): older sessions' tails are checked, the
  others folded.

Per CPU second is this process's CPU time (the broker's is not counted): the figure
the target is stated in. Target: >= 50,000 events per CPU second.

Run: ``python -m benchmarks.bench_replay [--sessions N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import TopicPartition

from agentstream.replay_log import FETCH, audit_window
from benchmarks.bench_projector import produce
from schemas import Codec
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.clients import new_consumer
from streams.settings import KafkaSettings

TARGET = 50_000


async def baseline(kafka: KafkaSettings, topic: str) -> tuple[int, float, float, int]:
    """Read and decode every record: (events, seconds, CPU seconds, middle timestamp ms)."""
    codec = Codec()
    tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
    consumer = new_consumer(kafka, **FETCH)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        started, cpu, seen, stamps = time.perf_counter(), time.process_time(), 0, []
        for tp in tps:
            await consumer.seek_to_beginning(tp)
            while await consumer.position(tp) < ends[tp]:
                records = (await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)).get(
                    tp, []
                )
                for record in records:
                    codec.decode(record.value)
                    seen += 1
                    stamps.append(record.timestamp)
        middle = sorted(stamps)[len(stamps) // 2] if stamps else 0
        return seen, time.perf_counter() - started, time.process_time() - cpu, middle
    finally:
        await consumer.stop()


async def run(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    kafka = KafkaSettings(bootstrap, f"bench{uuid.uuid4().hex[:6]}", args.partitions)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    try:
        total = await produce(kafka, args.sessions)
        topic = catalogue.events.name
        partitions = list(range(args.partitions))
        print(f"replay benchmark: {total:,} events of {args.sessions:,} sessions, "
              f"{args.partitions} partitions")  # fmt: skip
        seen, seconds, cpu, middle = await baseline(kafka, topic)
        print(f"  baseline read + decode   {seen / seconds:>9,.0f} events/s"
              f"  {seen / cpu:>9,.0f} events/CPU s")  # fmt: skip
        whole = await audit_window(kafka, topic, partitions, None, fold=False)
        assert whole.events == total and not whole.problems, whole.problems[:3]
        print(f"  audit, whole log         {whole.events_per_s:>9,.0f} events/s"
              f"  {whole.events_per_cpu_s:>9,.0f} events/CPU s")  # fmt: skip
        window = await audit_window(kafka, topic, partitions, middle, fold=False)
        assert not window.problems, window.problems[:3]
        print(f"  audit, window (half)     {window.events_per_s:>9,.0f} events/s"
              f"  {window.events_per_cpu_s:>9,.0f} events/CPU s"
              f"  ({window.events:,} events, {len(window.tails):,} older sessions' tails)")  # fmt: skip
        ratio = whole.events_per_cpu_s / (seen / cpu)
        print(f"ratio audit/baseline per CPU second (same run): {ratio:.2f}x")
        ok = min(whole.events_per_cpu_s, window.events_per_cpu_s) >= TARGET
        print(f"replay audit: {'PASS' if ok else 'FAIL'} (>= {TARGET:,} events per CPU second)")
        return 0 if ok else 1
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

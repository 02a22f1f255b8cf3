"""Session engine benchmarks (issue 3), each printing figures and a same-run ratio.

    throughput  steps/s end to end: N demo sessions (zero-latency simulated model)
                through two `agentstream worker` processes, against the same loop
                written as plain faust agents (benchmarks.faust_baseline) on the
                same broker in the same run. Targets: >= 3,000 steps/s, >= 5x faust.
    overhead    p99 per-step overhead (everything but model time) at half the
                maximum load (--fraction), offered open loop (sessions started at a
                fixed rate), from the events' broker timestamps. Target <= 25 ms.
    inflight    LLM calls in flight in one executor at 1 s simulated latency,
                against the ideal (every call started at once). Target >= 5,000.
    rebuild     one session rebuilt from its snapshot + 1,000 Avro events, p99,
                against decoding alone. Target p99 <= 50 ms.
    replay      partition recovery (read + decode + fold) events/s against a bare
                aiokafka read of the same partition, in a process tuned as a worker
                is (agentstream.process_tuning). Target >= 50,000 events/s.
    latency     hop latencies at a fixed load (--concurrency): inbox command -> its
                events, and work item -> its result, from broker timestamps.

Run: ``python -m benchmarks.bench_engine [which ...] [--sessions N] [--concurrency C]
[--partitions P] [--fraction F]`` (default: all but latency).

The engine runs are two worker processes on topics of ``--partitions`` partitions,
by default one per worker (``WORKERS``): the sizing the settings recommend, since
each partition is its own Kafka transaction stream, which costs CPU at any load
(compare with ``--partitions 4``; figures in docs/benchmarks.md).
Needs the local Kafka and Postgres (``agentstream infra up``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agentstream.loadgen import LoadReport, run_sessions
from agentstream.process_tuning import (
    freeze_startup_objects,
    gc_threshold_from_env,
    install_event_loop_policy,
    tune_gc,
)
from agentstream.worker_processes import start_worker, wait_until_owned
from benchmarks import hot_path
from processors.agents.loader import load_agents
from processors.core import decode_state, encode_state, evolve, rebuild
from processors.engine.recovery import recover_partition
from processors.engine.session_cache import SessionCache
from processors.engine.snapshot_store import SnapshotStore
from processors.executors.llm_executor import LLMExecutor
from processors.settings import DEFAULT_DATABASE_URL, ExecutorSettings
from processors.testing.inline_runtime import InlineRuntime
from schemas import Codec
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.consumer import read_to_end
from streams.producer import type_headers
from streams.settings import KafkaSettings

CODEC = Codec()
WORKERS = 2
"""Worker processes of the engine benchmarks (and the default partition count)."""


def _settings(tag: str, partitions: int) -> KafkaSettings:
    base = KafkaSettings.from_env()
    return KafkaSettings(
        bootstrap=base.bootstrap,
        topic_prefix=f"bench-{tag}-{uuid.uuid4().hex[:6]}",
        partitions=partitions,
    )


async def _topics(kafka: KafkaSettings) -> Catalogue:
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    return catalogue


async def _drop(kafka: KafkaSettings) -> None:
    await delete_topics(kafka, [spec.name for spec in Catalogue.from_settings(kafka)])


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------ throughput


def _faust_baseline(kafka: KafkaSettings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        AGENTSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap,
        AGENTSTREAM_TOPIC_PREFIX=kafka.topic_prefix,
        AGENTSTREAM_PARTITIONS=str(kafka.partitions),
        BASELINE_DATADIR=tempfile.mkdtemp(prefix="faust-baseline-"),
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.faust_baseline", "worker", "-l", "warn"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip


def _wait_faust(partitions: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:6199/healthz", timeout=1) as r:
                if b'"assigned"' in r.read():
                    time.sleep(3.0)  # let faust settle its four topics' assignment
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("faust baseline did not come up")


def _line(label: str, report: LoadReport) -> str:
    return (
        f"  {label:<28} {report.steps / report.seconds:>8,.0f} steps/s"
        f" {report.sessions / report.seconds:>7,.0f} sessions/s"
        f"  p50 {report.percentile(0.5) * 1000:6.0f} ms  p99 {report.percentile(0.99) * 1000:6.0f} ms"
        f"  ({report.outcomes}, timed out {report.timed_out})"
    )


class _Workers:
    """The benchmark's worker processes, seen through their /metrics."""

    def __init__(self, ports: list[int], pids: list[int]) -> None:
        self.ports = ports
        self.pids = pids
        self._mark = hot_path.Histograms()
        self._cpu = hot_path.CpuSplit()
        self._requests: dict[str, float] | None = None
        self._marked_at = 0.0

    def mark(self) -> None:
        """Count the hot path and the CPU from here on (after a warm-up)."""
        self._mark = hot_path.scrape(self.ports)
        self._cpu.start(self.pids)
        self._requests = hot_path.broker_requests()
        self._marked_at = time.monotonic()

    def print_hot_path(self, steps: int) -> None:
        print("  where the time went since the mark (the workers' /metrics, /proc, the broker's):")
        print(self._cpu.report(steps))
        seconds = time.monotonic() - self._marked_at
        print(hot_path.requests_report(self._requests, hot_path.broker_requests(), steps, seconds))
        for line in hot_path.report(hot_path.scrape(self.ports).minus(self._mark)):
            print(line)


@contextlib.asynccontextmanager
async def _two_workers(
    kafka: KafkaSettings, first_port: int, logs: Path
) -> AsyncIterator[_Workers]:
    """``WORKERS`` ``agentstream worker`` processes sharing ``kafka``'s partitions, stopped
    on exit."""
    workers = [start_worker(kafka, first_port + i, logs) for i in range(WORKERS)]
    try:
        await asyncio.to_thread(wait_until_owned, workers, kafka.partitions)
        yield _Workers(
            [first_port + i for i in range(len(workers))], [w.process.pid for w in workers]
        )
    finally:
        for worker in workers:
            worker.stop()


async def bench_throughput(sessions: int, concurrency: int, partitions: int) -> dict[str, float]:
    logs = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    ours = _settings("ours", partitions)
    await _topics(ours)
    try:
        async with _two_workers(ours, 6180, logs):
            # Warm the workers' caches and the broker's code paths first. (With C2 a fresh
            # broker ran at two thirds speed; the local broker now runs C1 only, see
            # infra/kafka.py, and the warm-up matters less.)
            await run_sessions(ours, min(2000, sessions), concurrency=concurrency, timeout_s=600)
            mine = await run_sessions(ours, sessions, concurrency=concurrency, timeout_s=600)
    finally:
        await _drop(ours)
    print(_line("agentstream (2 workers)", mine), flush=True)

    theirs = _settings("faust", partitions)
    await _topics(theirs)
    baseline = _faust_baseline(theirs, logs / "faust.log")
    try:
        await asyncio.to_thread(_wait_faust, theirs.partitions)
        faust_sessions = max(concurrency * 4, sessions // 10)
        faust = await run_sessions(theirs, faust_sessions, concurrency=concurrency, timeout_s=600)
    finally:
        baseline.terminate()
        baseline.wait(30)
        await _drop(theirs)
    print(_line("plain faust agents", faust), flush=True)
    ours_rate = mine.steps / mine.seconds
    faust_rate = faust.steps / faust.seconds
    print(
        f"  ratio agentstream / faust: {ours_rate / faust_rate:.1f}x  (target >= 5x; >= 3,000 steps/s)"
    )
    return {
        "ours_steps_s": ours_rate,
        "faust_steps_s": faust_rate,
        "steps_per_session": mine.steps / mine.sessions,
    }


# -------------------------------------------------------------------- overhead


async def _timestamped(kafka: KafkaSettings, topic: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Every committed record of ``topic``: (broker timestamp ms, record name, record)."""
    out: list[tuple[int, str, dict[str, Any]]] = []
    async for record in read_to_end(kafka, topic):
        name, value = CODEC.decode(record.value)
        out.append((record.timestamp, name, value))
    return out


async def _step_gaps(kafka: KafkaSettings, catalogue: Catalogue, run_id: str) -> list[float]:
    """Per step of run ``run_id``: broker time from one request event to the next in a session."""
    gaps: list[float] = []
    last: dict[str, int] = {}
    for timestamp, name, event in await _timestamped(kafka, catalogue.events.name):
        sid = event["session_id"]
        if f"-{run_id}-" not in sid:
            continue
        if name in ("LLMCallRequested", "ToolCallRequested", "SessionCompleted"):
            if sid in last and timestamp != last[sid]:
                gaps.append((timestamp - last[sid]) / 1000)
            last[sid] = timestamp
    return gaps


async def bench_latency(sessions: int, concurrency: int, partitions: int) -> None:
    """Hop latencies at a fixed load, from broker timestamps of the inbox and the log."""
    logs = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    kafka = _settings("latency", partitions)
    catalogue = await _topics(kafka)
    async with _two_workers(kafka, 6194, logs) as workers:
        await run_sessions(kafka, 200, concurrency=concurrency, timeout_s=600)  # warm-up
        workers.mark()
        report = await run_sessions(kafka, sessions, concurrency=concurrency, timeout_s=600)
        workers.print_hot_path(report.steps)
    run = f"-{report.run_id}-"
    inbox = [
        r for r in await _timestamped(kafka, catalogue.inbox.name) if run in r[2]["session_id"]
    ]
    events = [
        r for r in await _timestamped(kafka, catalogue.events.name) if run in r[2]["session_id"]
    ]
    gaps = await _step_gaps(kafka, catalogue, report.run_id)
    await _drop(kafka)
    first_event_of: dict[str, int] = {}
    # A call id is unique within its session only (tool call ids are the model's).
    requested: dict[tuple[str, str], int] = {}
    for timestamp, name, event in events:
        first_event_of.setdefault(event["causation_id"], timestamp)
        if name in ("LLMCallRequested", "ToolCallRequested"):
            requested[event["session_id"], event["call_id"]] = timestamp
    engine = [
        first_event_of[c["event_id"]] - t for t, _, c in inbox if c["event_id"] in first_event_of
    ]
    executor = [
        t - requested[c["session_id"], c["call_id"]]
        for t, n, c in inbox
        if n in ("LLMCallResult", "ToolCallResult") and (c["session_id"], c["call_id"]) in requested
    ]
    print(
        f"  {concurrency} sessions in flight, {kafka.partitions} partitions:"
        f" {report.steps / report.seconds:,.0f} steps/s; session p50 {report.percentile(0.5) * 1000:.0f} ms,"
        f" p99 {report.percentile(0.99) * 1000:.0f} ms"
    )
    print(
        f"  per-step overhead (request event -> next request event): p50 {_p(gaps, 0.5) * 1000:.0f} ms,"
        f" p90 {_p(gaps, 0.9) * 1000:.0f} ms, p99 {_p(gaps, 0.99) * 1000:.0f} ms ({len(gaps)} steps)"
    )
    for label, hops in (
        ("inbox command -> its events", engine),
        ("work item -> its result", executor),
    ):
        print(
            f"  {label}: p50 {_p(hops, 0.5):.0f} ms, p90 {_p(hops, 0.9):.0f} ms, p99 {_p(hops, 0.99):.0f} ms ({len(hops)} hops)"
        )


async def bench_overhead(
    sessions: int, partitions: int, fraction: float, measured: dict[str, float]
) -> None:
    """Per-step overhead at ``fraction`` (half) of the maximum load, offered open loop
    (a fixed rate of session starts, as a latency target at a given load is defined)."""
    logs = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    kafka = _settings("overhead", partitions)
    catalogue = await _topics(kafka)
    try:
        async with _two_workers(kafka, 6190, logs) as workers:
            if "ours_steps_s" in measured:  # the throughput run just measured the maximum
                max_steps_s = measured["ours_steps_s"]
                steps_per_session = measured["steps_per_session"]
                await run_sessions(kafka, 500, concurrency=256, timeout_s=600)  # warm-up
            else:
                probe = await run_sessions(kafka, sessions, concurrency=512, timeout_s=600)
                max_steps_s = probe.steps / probe.seconds
                steps_per_session = probe.steps / probe.sessions
            rate = max_steps_s * fraction / steps_per_session
            count = int(rate * 20)  # about 20 s of load
            print(
                f"  offering {rate:,.0f} sessions/s ({max_steps_s * fraction:,.0f} steps/s) for 20 s ...",
                flush=True,
            )
            workers.mark()
            report = await run_sessions(kafka, count, rate=rate, timeout_s=600)
            workers.print_hot_path(report.steps)
        gaps = await _step_gaps(kafka, catalogue, report.run_id)
    finally:
        await _drop(kafka)
    print(
        f"  at {report.steps / report.seconds:,.0f} steps/s ({fraction:g} of max {max_steps_s:,.0f},"
        f" {partitions} partitions;"
        f" {rate:,.0f} sessions/s open loop): per-step overhead p50 {_p(gaps, 0.5) * 1000:.0f} ms,"
        f" p90 {_p(gaps, 0.9) * 1000:.0f} ms, p99 {_p(gaps, 0.99) * 1000:.0f} ms over {len(gaps)} steps;"
        f" session p50 {report.percentile(0.5) * 1000:.0f} ms, p99 {report.percentile(0.99) * 1000:.0f} ms"
        f" (target per-step p99 <= 25 ms)"
    )


# -------------------------------------------------------------------- in flight


async def bench_inflight(calls: int) -> None:
    kafka = _settings("inflight", partitions=4)
    catalogue = await _topics(kafka)
    runtime = InlineRuntime(load_agents(None))
    decision = await runtime.start("seed", "demo", "What is 1+1?")
    _, template = next(w.record for w in decision.work if w.kind == "llm")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
    await producer.start()
    for i in range(calls):
        work = dict(template, call_id=f"c{i}", session_id=f"s{i}", deadline_ms=0)
        await producer.send(
            catalogue.llm_calls.name,
            CODEC.encode("LLMCallWork", work),
            key=f"s{i}".encode(),
            headers=type_headers("LLMCallWork"),
        )
    await producer.flush()
    await producer.stop()
    agents_file = Path(tempfile.mkdtemp(prefix="bench-inflight-")) / "agents.yaml"
    agents_file.write_text(
        "models:\n  sim:\n    endpoints:\n"
        "      - {provider: sim, model: sim, options: {latency: {kind: fixed, fixed_s: 1.0}}}\n"
    )
    executor = LLMExecutor(
        kafka=kafka,
        agents=load_agents(str(agents_file)),
        settings=ExecutorSettings(max_in_flight=calls),
    )
    started = time.perf_counter()
    await executor.start()
    while executor.stats().finished < calls and time.perf_counter() - started < 120:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await executor.stop()
    await _drop(kafka)

    ideal_start = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(1.0) for _ in range(calls)))
    ideal = time.perf_counter() - ideal_start
    stats = executor.stats()
    print(
        f"  {calls:,} calls at 1 s latency: peak {stats.peak_in_flight:,} in flight,"
        f" all done in {elapsed:.2f} s (ideal {ideal:.2f} s; ratio {ideal / elapsed:.2f});"
        f" target >= 5,000 in flight"
    )


# --------------------------------------------------------------- rebuild/replay


async def _long_session(events: int) -> list[tuple[str, dict[str, Any]]]:
    runtime = InlineRuntime(load_agents(None))
    await runtime.start("long", "demo", "What is 2*3?", keep_open=True)
    i = 0
    while len(runtime.logs["long"]) < events + 50:
        await runtime.say("long", f"What is {i}+{i} and the weather in Oslo?")
        i += 1
    return runtime.logs["long"]


async def bench_rebuild(events: int, rounds: int) -> None:
    log = await _long_session(events)
    head, tail = log[:50], log[50 : 50 + events]
    snapshot = encode_state(rebuild(head))  # type: ignore[arg-type]
    encoded = [CODEC.encode(name, event) for name, event in tail]
    full, decode_only = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        state = decode_state(snapshot)
        for value in encoded:
            name, event = CODEC.decode(value)
            state = evolve(state, name, event)
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        for value in encoded:
            CODEC.decode(value)
        decode_only.append(time.perf_counter() - t)
    print(
        f"  snapshot + {events} events: p50 {_p(full, 0.5) * 1000:.1f} ms, p99 {_p(full, 0.99) * 1000:.1f} ms"
        f" (decoding alone p99 {_p(decode_only, 0.99) * 1000:.1f} ms; ratio {_p(full, 0.99) / _p(decode_only, 0.99):.1f}x);"
        f" target p99 <= 50 ms"
    )


async def bench_replay(sessions: int) -> None:
    import asyncpg

    kafka = _settings("replay", partitions=1)
    catalogue = await _topics(kafka)
    runtime = InlineRuntime(load_agents(None))
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, linger_ms=10, max_batch_size=512 * 1024
    )
    await producer.start()
    count = 0
    for i in range(sessions):
        await runtime.start(f"r{i}", "demo", f"What is {i}*2 and the weather in Lima?")
        for name, event in runtime.logs.pop(f"r{i}"):
            await producer.send(
                catalogue.events.name, CODEC.encode(name, event), key=f"r{i}".encode(), partition=0
            )
            count += 1
        runtime.states.pop(f"r{i}")
    await producer.flush()
    await producer.stop()

    bare = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    await bare.start()
    tp = TopicPartition(catalogue.events.name, 0)
    bare.assign([tp])
    await bare.seek_to_beginning(tp)
    t = time.perf_counter()
    seen = 0
    while seen < count:
        seen += len((await bare.getmany(tp, timeout_ms=500, max_records=5000)).get(tp, []))
    bare_s = time.perf_counter() - t
    await bare.stop()

    pool = await asyncpg.create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=2)
    await SnapshotStore.create_schema(pool)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    cache = SessionCache(10**7)
    stats = await recover_partition(
        consumer=consumer, events_topic=catalogue.events.name, partition=0,
        store=SnapshotStore(pool, catalogue.events.name), cache=cache, codec=CODEC,
    )  # fmt: skip
    await consumer.stop()
    await pool.close()
    await _drop(kafka)
    assert stats.events_replayed == count, (stats, count)
    print(
        f"  {count:,} events of {sessions:,} sessions: recovery {count / stats.seconds:,.0f} events/s"
        f" (bare aiokafka read {count / bare_s:,.0f} events/s; ratio {bare_s / stats.seconds:.2f});"
        f" target >= 50,000 events/s"
    )


# ------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "which", nargs="*", default=["throughput", "overhead", "inflight", "rebuild", "replay"]
    )
    parser.add_argument(
        "--sessions", type=int, help="sessions per run (default 10,000; latency: 2,000)"
    )
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--calls", type=int, default=10_000, help="in-flight benchmark calls")
    parser.add_argument(
        "--partitions",
        type=int,
        default=WORKERS,
        help=f"partitions of the engine runs' topics (default {WORKERS}: one per worker)",
    )
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="overhead: the load, as a fraction of the max"
    )
    args = parser.parse_args(argv)
    sessions = args.sessions or 10_000
    # The bench process runs the load generator and the replay; it runs on the
    # event loop and collector settings of a worker, as what it measures does.
    install_event_loop_policy(os.environ)
    tune_gc(gc_threshold_from_env(os.environ))
    freeze_startup_objects()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    results: dict[str, float] = {}
    for which in args.which:
        print(f"== {which}", flush=True)
        if which == "throughput":
            results = asyncio.run(bench_throughput(sessions, args.concurrency, args.partitions))
        elif which == "overhead":
            asyncio.run(bench_overhead(sessions, args.partitions, args.fraction, results))
        elif which == "latency":
            asyncio.run(bench_latency(args.sessions or 2000, args.concurrency, args.partitions))
        elif which == "inflight":
            asyncio.run(bench_inflight(args.calls))
        elif which == "rebuild":
            asyncio.run(bench_rebuild(1000, 200))
        elif which == "replay":
            asyncio.run(bench_replay(max(1000, sessions // 2)))
        else:
            parser.error(f"unknown benchmark {which!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

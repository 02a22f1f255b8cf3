"""The LLM pool and its executor against the local OpenAI-protocol server.

Figures, each with a same-run baseline:

* **pool over HTTP**: CPU per call of ``LLMPool.complete`` against a bare
  aiohttp call loop posting the same body to the same server (0 s latency);
  httpx's bare loop is timed too, as the reason the transport is aiohttp.
* **routing overhead**: ``LLMPool.complete`` on a zero-latency simulated model
  minus the same provider called directly: what routing, breaker, admission,
  retries bookkeeping and metrics cost per call.
* **cache hits**: latency of an L1 hit, and of an L2 hit (Postgres, L1 off).
* **executor overhead**: CPU per call of the LLM executor (Kafka in, pool,
  Kafka out) against the bare aiohttp loop, with token deltas off and on.
* **in-flight capacity**: N work items at 1 s server latency: the peak of
  calls the executor held and of requests the server held at once (target
  >= 5,000 per process), and the wall time against the 1 s floor.

The fake server runs in its own process (``python -m tests.pool_servers``),
so the CPU figures are the client's alone; both share the machine's cores.

Run: ``python -m benchmarks.bench_pool [--calls N] [--inflight N]`` (needs the
local Kafka and Postgres; topics get a unique prefix and are deleted after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import asyncpg
import httpx

from processors.agents.catalog import AgentCatalog, EndpointConfig, ModelConfig, builtin_catalog
from processors.agents.model_types import ChatMessage, LLMRequest, prompt_hash
from processors.executors.llm_executor import LLMExecutor
from processors.executors.pool import CallContext, LLMPool, PoolSettings
from processors.executors.pool.cache import PostgresCache
from processors.executors.pool.http import Timeouts
from processors.settings import DEFAULT_DATABASE_URL, ExecutorSettings
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.producer import OutgoingRecord, Producer
from streams.settings import KafkaSettings

BODY = {"model": "fake", "messages": [{"role": "user", "content": "Hello, how are you?"}]}


class Server:
    """The fake OpenAI server in a child process."""

    def __init__(self, latency_s: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.pool_servers", "--latency", str(latency_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        self.port = int(line[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def stats(self) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.port}/stats"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return dict(await response.json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def _catalog(server: Server) -> AgentCatalog:
    base = builtin_catalog()
    remote = ModelConfig(
        "remote",
        "least_inflight",
        (EndpointConfig(provider="openai", model="fake", base_url=server.base_url),),
    )
    return AgentCatalog(base.agents, {**base.models, "remote": remote}, base.tools)


async def _bounded(count: int, concurrency: int, one: Any) -> float:
    """Run ``one(i)`` for i < count, ``concurrency`` at a time; CPU seconds used."""
    slots = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with slots:
            await one(i)

    cpu = time.process_time()
    await asyncio.gather(*(run(i) for i in range(count)))
    return time.process_time() - cpu


async def bare_aiohttp(server: Server, calls: int, concurrency: int) -> float:
    url = server.base_url + "/chat/completions"
    data = json.dumps(BODY).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            async with session.post(
                url, data=data, headers={"content-type": "application/json"}
            ) as r:
                json.loads(await r.read())

        await _bounded(50, 50, one)  # warm the connections
        return await _bounded(calls, concurrency, one) / calls


async def bare_httpx(server: Server, calls: int, concurrency: int) -> float:
    url = server.base_url + "/chat/completions"
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> None:
            (await client.post(url, json=BODY)).json()

        await _bounded(20, 20, one)
        return await _bounded(calls, concurrency, one) / calls


async def pool_http(server: Server, calls: int, concurrency: int) -> float:
    pool = LLMPool(_catalog(server), PoolSettings(stream_deltas=False))
    request = LLMRequest(model="remote", messages=(ChatMessage("user", "Hello, how are you?"),))
    try:

        async def one(i: int) -> None:
            await pool.complete(request)

        await _bounded(50, 50, one)
        return await _bounded(calls, concurrency, one) / calls
    finally:
        await pool.aclose()


async def routing_overhead(calls: int) -> tuple[float, float]:
    """(seconds per call through the pool, directly through the provider): zero-latency sim."""
    pool = LLMPool(builtin_catalog())
    provider = pool.models["sim"].endpoints[0].provider
    request = LLMRequest(model="sim", messages=(ChatMessage("user", "Tell me something."),))
    timeouts = Timeouts()
    for _ in range(200):
        await pool.complete(request)
        await provider.complete(request, timeouts)
    started = time.perf_counter()
    for _ in range(calls):
        await provider.complete(request, timeouts)
    direct = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    for _ in range(calls):
        await pool.complete(request)
    pooled = (time.perf_counter() - started) / calls
    await pool.aclose()
    return pooled, direct


async def cache_hits(server: Server, calls: int) -> tuple[float, float, float]:
    """(p50 L1 hit, p50 L2 hit, p99 L2 hit), seconds."""
    request = LLMRequest(model="remote", messages=(ChatMessage("user", "cache me"),))
    cacheable = CallContext(cacheable=True)
    pool = LLMPool(_catalog(server))
    await pool.complete(request, cacheable)
    l1: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        await pool.complete(request, cacheable)
        l1.append(time.perf_counter() - started)
    await pool.aclose()
    table = f"bench_llm_cache_{uuid.uuid4().hex[:8]}"
    db = await asyncpg.create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=2)
    try:
        pool = LLMPool(_catalog(server), PoolSettings(cache_entries=0), l2=PostgresCache(db, table))
        await pool.start()
        await pool.complete(request, cacheable)
        l2: list[float] = []
        for _ in range(max(100, calls // 10)):
            started = time.perf_counter()
            result = await pool.complete(request, cacheable)
            l2.append(time.perf_counter() - started)
            assert result.cache == "l2"
        await pool.aclose()
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.close()
    return statistics.median(l1), statistics.median(l2), statistics.quantiles(l2, n=100)[98]


def _work(session_id: str) -> dict[str, Any]:
    messages = (ChatMessage("user", "Hello, how are you?"),)
    return {
        "event_id": str(uuid.uuid4()), "session_id": session_id, "tenant_id": "bench",
        "time_ms": int(time.time() * 1000), "causation_id": None, "correlation_id": None,
        "call_id": f"call-{session_id}", "agent": "demo", "model": "remote", "step": 1,
        "prompt_hash": prompt_hash("remote", messages),
        "messages": [m.to_record() for m in messages], "tools": [], "deadline_ms": 0,
    }  # fmt: skip


async def executor_run(
    kafka_bootstrap: str,
    server: Server,
    calls: int,
    *,
    deltas: bool,
    in_flight: int,
    sample: bool = False,
) -> dict[str, float]:
    """Produce ``calls`` work items, run an LLM executor until all are answered."""
    kafka = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}", partitions=4
    )
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    try:
        async with Producer(kafka) as producer:
            records = [
                producer.encode(catalogue.llm_calls.name, "LLMCallWork", _work(f"s{i}"))
                for i in range(calls)
            ]
            await producer.send_many(OutgoingRecord(*r[:4]) for r in records)
        executor = LLMExecutor(
            kafka=kafka,
            agents=_catalog(server),
            settings=ExecutorSettings(max_in_flight=in_flight),
            pool_settings=PoolSettings(stream_deltas=deltas),
        )
        started, cpu = time.perf_counter(), time.process_time()
        await executor.start()
        peak_server = 0
        while executor.stats().finished < calls and time.perf_counter() - started < 300:
            await asyncio.sleep(0.05 if not sample else 0.2)
            if sample:
                peak_server = max(peak_server, (await server.stats())["peak_in_flight"])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        stats = executor.stats()
        await executor.stop()
        return {
            "wall_s": wall,
            "cpu_per_call_s": cpu / calls,
            "peak_in_flight": float(stats.peak_in_flight),
            "server_peak": float(peak_server),
            "finished": float(stats.finished),
        }
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


async def main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    fast, slow = Server(0.0), Server(1.0)
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: str, ratio: str = "") -> None:
        rows.append((name, value, ratio))

    try:
        bare = await bare_aiohttp(fast, args.calls, 100)
        pooled = await pool_http(fast, args.calls, 100)
        row("bare aiohttp loop, CPU per call", _us(bare), "1.00x (baseline)")
        row("LLMPool.complete over HTTP, CPU per call", _us(pooled), f"{pooled / bare:.2f}x")
        httpx_cpu = await bare_httpx(fast, max(200, args.calls // 10), 100)
        row("bare httpx loop, CPU per call", _us(httpx_cpu), f"{httpx_cpu / bare:.2f}x")

        through, direct = await routing_overhead(args.calls * 2)
        row("sim provider called directly", _us(direct), "1.00x (baseline)")
        row("the same through LLMPool.complete", _us(through), f"{through / direct:.2f}x")
        row("pool routing overhead per call", _us(through - direct))

        l1, l2, l2_p99 = await cache_hits(fast, args.calls)
        row("cache hit L1 (p50)", _us(l1), f"{l1 / bare:.3f}x a bare HTTP call's CPU")
        row("cache hit L2 Postgres (p50 / p99)", f"{_us(l2)} / {_us(l2_p99)}")

        # the same concurrency as the bare loop, so both reuse ~100 warm connections
        plain = await executor_run(bootstrap, fast, args.calls, deltas=False, in_flight=100)
        streamed = await executor_run(bootstrap, fast, args.calls, deltas=True, in_flight=100)
        cpu, cpu_streamed = plain["cpu_per_call_s"], streamed["cpu_per_call_s"]
        row("LLM executor, CPU per call (no deltas)", _us(cpu), f"{cpu / bare:.2f}x")
        row("executor overhead per call over bare HTTP", _us(cpu - bare))
        streamed_ratio = f"{cpu_streamed / bare:.2f}x"
        row("LLM executor, CPU per call (streamed, deltas)", _us(cpu_streamed), streamed_ratio)
        throughput = f"{args.calls / plain['wall_s']:,.0f} calls/s"
        row("LLM executor throughput at 0 s latency", throughput)

        held = await executor_run(
            bootstrap, slow, args.inflight, deltas=False, in_flight=10_000, sample=True
        )
        target = f"target >= 5,000 (of {args.inflight:,})"
        row("in flight at 1 s latency: executor peak", f"{held['peak_in_flight']:,.0f}", target)
        row("in flight at 1 s latency: server-held peak", f"{held['server_peak']:,.0f}")
        wall = held["wall_s"]
        row("wall time for all of them", f"{wall:.2f} s", f"{wall:.2f}x the 1 s floor")
        row("executor CPU per call there (a new connection each)", _us(held["cpu_per_call_s"]))
    finally:
        fast.stop()
        slow.stop()
    print(
        f"\nLLM pool benchmark: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{args.calls:,} calls per CPU figure"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"  {name:<{width}}  {value:>22}  {ratio}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per CPU figure")
    parser.add_argument("--inflight", type=int, default=6000, help="work items at 1 s latency")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()

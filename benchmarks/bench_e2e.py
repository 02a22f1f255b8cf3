"""The user's path: HTTP request -> the agent's answer, against Restate in the same run.

The peers' workload: the ``demo`` agent on a zero-latency simulated model asks
for ``calculator(6*7)``, the tool answers, the model answers; done. Each
request is ``POST /v1/sessions`` with ``Prefer: wait=60``, so its latency is one
whole session, as a Restate ingress call is. Processes: ``agentstream api``
(with its projector, as users run it), two ``agentstream worker`` processes,
and the load generator (this process: aiohttp, closed loop, C in flight, after
a warm-up). Then, when a Restate harness is given, Restate runs the same
workload with the same N and C, and the ratio is printed.

* ``closed``: closed loop at each ``--concurrency`` (default 64 and 256);
* ``realistic``: the model takes log-normal time (median 400 ms, p99 3 s) and
  ``--inflight`` sessions (default 2,000) run at once; sessions/s against the
  ideal (in flight / mean model time per session) and the latency percentiles.

Run: ``python -m benchmarks.bench_e2e [closed] [realistic] [--sessions N]
[--concurrency C ...] [--restate PATH/run.sh]`` (or ``RESTATE_PEER_RUN``);
needs the local Kafka and Postgres (``agentstream infra up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gateway import _free_port, _serve, _stop, _tenant, _wait_ready

WORKERS = 2
REALISTIC_AGENTS = textwrap.dedent("""
    models:
      sim:
        endpoints:
          - provider: sim
            model: sim
            options: {latency: {kind: lognormal, median_s: 0.4, p99_s: 3.0}}
""")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _drive(port: int, key: str, sessions: int, concurrency: int) -> dict[str, Any]:
    """Closed loop: ``sessions`` requests, ``concurrency`` in flight; latency per request."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/sessions"
    headers = {"Authorization": f"Bearer {key}", "Prefer": "wait=60"}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = iter(range(sessions))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one_client() -> None:
            for i in started:
                body = {"agent": "demo", "input": f"What is {i % 90 + 2}*7?"}
                began = time.perf_counter()
                async with client.post(url, json=body, headers=headers) as answer:
                    payload = await answer.json()
                latencies.append(time.perf_counter() - began)
                status = payload.get("status", str(answer.status))
                statuses[status] = statuses.get(status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    return {
        "sessions": sessions,
        "per_s": sessions / seconds,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "p999_ms": _percentile(latencies, 0.999) * 1000,
        "latencies": latencies,
        "statuses": statuses,
    }


def _restate(script: str, sessions: int, concurrency: int) -> dict[str, float] | None:
    """Restate's one result line for the same N and C, parsed; None when it failed."""
    done = subprocess.run(
        ["bash", script, str(sessions), str(concurrency)],
        capture_output=True,
        text=True,
        check=False,
    )
    last = next(
        (line for line in reversed(done.stdout.splitlines()) if line.startswith("restate:")), ""
    )
    print(f"  {last or 'restate failed: ' + done.stderr[-300:]}")
    if not last:
        return None
    fields = last.replace(",", " ").split()
    per_s = float(fields[fields.index("sessions/s") - 1])
    p99 = float(fields[fields.index("p99") + 1])
    return {"per_s": per_s, "p99_ms": p99}


class Stack:
    """The API and the workers on topics of their own; stopped and deleted on exit."""

    def __init__(self, bootstrap: str, partitions: int, agents_file: Path | None) -> None:
        from agentstream.gateway.testkit import database_url
        from streams.catalogue import Catalogue
        from streams.settings import KafkaSettings

        self.prefix = f"e2e{uuid.uuid4().hex[:6]}"
        self.kafka = KafkaSettings(bootstrap, self.prefix, partitions)
        self.catalogue = Catalogue.from_settings(self.kafka)
        self.database_url = database_url()
        self.agents_file = agents_file
        self.port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.key = ""

    def __enter__(self) -> Stack:
        from streams.admin import ensure_topics, require_ok

        require_ok(asyncio.run(ensure_topics(self.kafka, self.catalogue)))
        self.key = asyncio.run(_tenant(self.database_url))
        env = {**os.environ, "AGENTSTREAM_DATABASE_URL": self.database_url}
        if self.agents_file is not None:
            env["AGENTSTREAM_AGENTS"] = str(self.agents_file)
        kafka_args = [
            "--bootstrap", self.kafka.bootstrap, "--prefix", self.prefix,
            "--partitions", str(self.kafka.partitions),
        ]  # fmt: skip
        for _ in range(WORKERS):
            worker = [sys.executable, "-m", "agentstream.cli", "worker", "--port",
                      str(_free_port()), *kafka_args]  # fmt: skip
            self.processes.append(_serve(worker, env))
        api = [
            sys.executable,
            "-m",
            "agentstream.cli",
            "api",
            "--port",
            str(self.port),
            *kafka_args,
        ]
        self.processes.append(_serve(api, env))
        _wait_ready(self.port, "/readyz", timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        from streams.admin import delete_topics

        for process in self.processes:
            _stop(process)
        asyncio.run(delete_topics(self.kafka, [spec.name for spec in self.catalogue.all()]))


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"  {name:<34} {r['per_s']:>8,.1f} sessions/s  p50 {r['p50_ms']:>7.0f} ms  "
        f"p99 {r['p99_ms']:>7.0f} ms  p99.9 {r['p999_ms']:>7.0f} ms  {r['statuses']}"
    )


def bench_closed(args: argparse.Namespace, restate: str | None) -> None:
    with Stack(args.bootstrap, args.partitions, None) as stack:
        asyncio.run(_drive(stack.port, stack.key, args.warmup, 16))
        ours = {
            c: asyncio.run(_drive(stack.port, stack.key, args.sessions, c))
            for c in args.concurrency
        }
    for c, result in ours.items():
        print(_line(f"agentstream (HTTP, wait) C={c}", result))
        if restate:
            theirs = _restate(restate, args.sessions, c)
            if theirs:
                print(
                    f"  ratio agentstream / Restate at C={c}: {result['per_s'] / theirs['per_s']:.2f}x "
                    f"sessions/s (target >= 2x); p99 {result['p99_ms']:.0f} vs {theirs['p99_ms']:.0f} ms"
                )


def bench_realistic(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        agents = Path(folder) / "agents.yaml"
        agents.write_text(REALISTIC_AGENTS)
        with Stack(args.bootstrap, args.partitions, agents) as stack:
            asyncio.run(_drive(stack.port, stack.key, min(args.inflight, 500), 100))
            result = asyncio.run(_drive(stack.port, stack.key, args.inflight * 2, args.inflight))
    # Two model calls per session, each log-normal with median 0.4 s and p99 3 s:
    # mean = median * exp(sigma^2 / 2), sigma = ln(p99 / median) / z99.
    import math

    sigma = math.log(3.0 / 0.4) / 2.3263
    mean_call_s = 0.4 * math.exp(sigma * sigma / 2)
    ideal = args.inflight / (2 * mean_call_s)
    print(_line(f"realistic model, {args.inflight} in flight", result))
    print(
        f"  ideal {ideal:,.0f} sessions/s (in flight / {2 * mean_call_s:.2f} s of model time); "
        f"achieved {result['per_s'] / ideal:.0%} of it (target >= 90 %)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("which", nargs="*", default=["closed"], help="closed, realistic")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--inflight", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=WORKERS)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--restate",
        default=os.environ.get("RESTATE_PEER_RUN"),
        help="the Restate peer harness's run.sh (prints one 'restate:' line for N and C)",
    )
    args = parser.parse_args(argv)
    print(f"e2e benchmark: {os.cpu_count()} CPUs, {args.sessions} sessions per run")
    for which in args.which:
        print(f"== {which}", flush=True)
        if which == "closed":
            bench_closed(args, args.restate)
        elif which == "realistic":
            bench_realistic(args)
        else:
            parser.error(f"unknown benchmark {which!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

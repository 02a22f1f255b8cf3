"""What a target load needs: partitions, workers, brokers, Postgres, network.

Inputs are per-step costs measured by the benchmarks (a step is one model or
tool call round: the engine's decision, the work item, the call, its result);
each default names the benchmark line it comes from (docs/benchmarks.md), or
says it is an estimate no benchmark prints yet and how to measure it. The
target is concurrent sessions, steps/s and model latency. Every output names
the inputs that drive it. Run::

    python -m benchmarks.capacity --sessions 1000000 --steps 10000 --latency 2
    python -m benchmarks.capacity --inputs measured.json --set worker_cpu_us_per_step=600
    python -m benchmarks.capacity --json            # machine-readable

The arithmetic is in :func:`plan`; docs/capacity.md explains each line.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

MEASURED = "measured"
ESTIMATE = "estimate"


@dataclass(frozen=True)
class Inputs:
    """Per-step costs and per-process capacities (see docs/capacity.md for each source)."""

    worker_cpu_us_per_step: float = 473.0
    """Worker CPU per step (engine + executors): bench_engine overhead, half load, 1.1
    worker cores at 2,327 steps/s."""
    requests_per_step_curve: tuple[tuple[float, float], ...] = (
        (62.0, 9.85),
        (261.0, 4.39),
        (533.0, 1.65),
        (1163.0, 0.71),
    )
    """(steps/s per partition, broker requests per step): bench_engine's 'Requests and CPU
    per step, by load' table (2 partitions). Fewer steps per partition, smaller batches."""
    broker_cpu_us_per_request: float = 364.0
    """Broker CPU per request: 0.6 broker cores for about 1,650 requests/s (same table)."""
    max_steps_per_partition: float = 2300.0
    """Steps/s one partition's transaction stream sustains: bench_engine throughput, 4,674
    steps/s on 2 partitions."""
    calls_in_flight_per_executor: float = 10_000.0
    """bench_engine inflight: 10,000 of 10,000 at 1 s simulated latency
    (AGENTSTREAM_MAX_IN_FLIGHT)."""
    bytes_produced_per_step: float = 6_000.0
    """Estimate: a work item with its prompt (grows with the conversation), about three
    events, a result command, the progress record; before compression."""
    consumer_fanout: float = 3.0
    """Estimate: times each produced byte is read (engine replay and executors, projector,
    each API process's event hub)."""
    pg_rows_per_step: float = 4.0
    """Estimate: read-model rows per step (events, sessions, messages or calls) plus
    snapshot upserts (one per dirty session per flush)."""
    pg_rows_per_s_per_projector: float = 25_885.0
    """bench_projector: events into the read models, one projector process."""
    memory_per_session_bytes: float = 16_384.0
    """Estimate: one session's state in the engine's cache (its conversation)."""
    max_sessions_per_partition: int = 50_000
    """AGENTSTREAM_MAX_SESSIONS: sessions an engine keeps in memory per owned partition."""
    snapshot_bytes_per_session: float = 4_096.0
    """Estimate: one compressed snapshot row in Postgres."""
    replication_factor: int = 3
    cores_per_broker: int = 8
    broker_network_bytes_per_s: float = 1.25e9 * 0.5
    """Half of a 10 Gbit/s link: the rest for bursts and catch-up reads."""
    utilisation: float = 0.6
    """Share of a core or link planned busy; the rest absorbs bursts and rebalances."""
    growth: float = 2.0
    """Partitions are fixed at creation (growing them later means a migration): room to grow."""

    def sources(self) -> dict[str, str]:
        estimates = {
            "bytes_produced_per_step",
            "consumer_fanout",
            "pg_rows_per_step",
            "memory_per_session_bytes",
            "snapshot_bytes_per_session",
        }
        choices = {"replication_factor", "cores_per_broker", "broker_network_bytes_per_s"}
        choices |= {"max_sessions_per_partition"}
        choices |= {"utilisation", "growth"}
        return {
            f.name: ESTIMATE if f.name in estimates else "choice" if f.name in choices else MEASURED
            for f in fields(self)
        }


@dataclass(frozen=True)
class Target:
    sessions: float = 1_000_000
    """Sessions alive at once (most wait for a user, a tool or an approval)."""
    steps_per_s: float = 10_000
    model_latency_s: float = 2.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    drivers: tuple[str, ...]
    """Inputs (and target fields) this figure follows."""
    note: str = ""
    cores: str = ""
    """How a measurement on more cores would change it ('' when it would not)."""


@dataclass
class Plan:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> float:
        self.figures.append(figure)
        return figure.value

    def __getitem__(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)


def requests_per_step(curve: Sequence[tuple[float, float]], steps_per_partition: float) -> float:
    """Broker requests per step at this load per partition: log-log between measured points.

    Below the lightest point the lightest point's figure (batches do not get
    smaller than one record); above the heaviest, the heaviest's (no credit for
    batching never measured).
    """
    points = sorted(curve)
    if steps_per_partition <= points[0][0]:
        return points[0][1]
    if steps_per_partition >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= steps_per_partition <= x1:
            t = math.log(steps_per_partition / x0) / math.log(x1 / x0)
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    raise AssertionError("unreachable")


def plan(i: Inputs, t: Target) -> Plan:
    p = Plan()
    u = i.utilisation
    in_flight = p.add(Figure(
        "calls in flight", t.steps_per_s * t.model_latency_s, "calls",
        ("steps_per_s", "model_latency_s"), "Little's law: every step waits for its model",
    ))  # fmt: skip
    worker_cores = p.add(Figure(
        "worker cores", t.steps_per_s * i.worker_cpu_us_per_step / 1e6 / u, "cores",
        ("steps_per_s", "worker_cpu_us_per_step", "utilisation"),
        cores="measured with the broker on the same 2 cores: on a machine of its own the "
        "worker waits less for CPU, and its CPU per step may fall",
    ))  # fmt: skip
    by_flight = in_flight / i.calls_in_flight_per_executor
    workers = p.add(Figure(
        "worker processes", math.ceil(max(worker_cores, by_flight / u)), "processes",
        ("steps_per_s", "worker_cpu_us_per_step", "model_latency_s",
         "calls_in_flight_per_executor", "utilisation"),
        "a worker's hot path is one Python thread: one core per process at most, so more "
        "cores per machine mean more processes per machine, not faster ones",
    ))  # fmt: skip
    by_load = t.steps_per_s / (i.max_steps_per_partition * u)
    partitions = p.add(Figure(
        "partitions", math.ceil(max(workers, by_load) * i.growth), "per topic",
        ("steps_per_s", "max_steps_per_partition", "worker_cpu_us_per_step", "growth"),
        "one engine owner per partition; more partitions than needed cost a transaction "
        "stream each",
        cores="max_steps_per_partition was measured CPU-bound on 2 cores; with more cores "
        "a partition's transaction stream sustains more",
    ))  # fmt: skip
    per_partition = t.steps_per_s / partitions
    rps = requests_per_step(i.requests_per_step_curve, per_partition)
    requests = p.add(Figure(
        "broker requests", t.steps_per_s * rps, "requests/s",
        ("steps_per_s", "requests_per_step_curve", "partitions"),
        f"{per_partition:,.0f} steps/s per partition: {rps:.2f} requests per step",
        cores="the curve was measured CPU-saturated: with idle cores clients send sooner, "
        "in smaller batches, so more requests per step at the same load",
    ))  # fmt: skip
    produced = t.steps_per_s * i.bytes_produced_per_step
    replicated = produced * (i.replication_factor - 1)
    network = p.add(Figure(
        "broker network", produced + produced * i.consumer_fanout + 2 * replicated, "bytes/s",
        ("steps_per_s", "bytes_produced_per_step", "consumer_fanout", "replication_factor"),
        "in: produce + replicas fetched; out: consumers + replicas sent",
    ))  # fmt: skip
    broker_cores = p.add(Figure(
        "broker cores", requests * i.broker_cpu_us_per_request / 1e6
        * (1 + 0.5 * (i.replication_factor - 1)) / u, "cores",
        ("steps_per_s", "requests_per_step_curve", "broker_cpu_us_per_request",
         "replication_factor", "utilisation"),
        "each follower's replica fetch counted as half a client request",
        cores="broker_cpu_us_per_request includes loopback TCP on a 2-core machine shared "
        "with the workers; on brokers of their own it is lower",
    ))  # fmt: skip
    p.add(Figure(
        "brokers", max(i.replication_factor, math.ceil(max(
            broker_cores / i.cores_per_broker, network / i.broker_network_bytes_per_s))),
        "brokers",
        ("broker cores", "broker network", "cores_per_broker", "broker_network_bytes_per_s",
         "replication_factor"),
    ))  # fmt: skip
    rows = p.add(Figure(
        "Postgres rows written", t.steps_per_s * i.pg_rows_per_step, "rows/s",
        ("steps_per_s", "pg_rows_per_step"),
    ))  # fmt: skip
    p.add(Figure(
        "projector processes", math.ceil(rows / (i.pg_rows_per_s_per_projector * u)),
        "processes", ("steps_per_s", "pg_rows_per_step", "pg_rows_per_s_per_projector"),
        "the projector runs in the API processes; each owns events partitions",
        cores="bench_projector shared 2 cores with Postgres: on a database of its own a "
        "projector writes more rows/s",
    ))  # fmt: skip
    p.add(Figure(
        "Postgres snapshot storage", t.sessions * i.snapshot_bytes_per_session, "bytes",
        ("sessions", "snapshot_bytes_per_session"), "one row per live session",
    ))  # fmt: skip
    resident = p.add(Figure(
        "session memory, all resident", t.sessions * i.memory_per_session_bytes, "bytes",
        ("sessions", "memory_per_session_bytes"),
        "AGENTSTREAM_MAX_SESSIONS bounds it per partition; evicted sessions are rebuilt "
        "from their snapshot on their next step",
    ))  # fmt: skip
    p.add(Figure(
        "session memory per worker", resident / workers, "bytes",
        ("sessions", "memory_per_session_bytes", "worker processes"),
    ))  # fmt: skip
    kept = p.add(Figure(
        "sessions kept in memory", min(t.sessions, partitions * i.max_sessions_per_partition),
        "sessions", ("sessions", "partitions", "max_sessions_per_partition"),
        "the rest are rebuilt from their snapshot (bench_engine rebuild) at their next step",
    ))  # fmt: skip
    p.add(Figure(
        "session memory per worker, as capped", kept * i.memory_per_session_bytes / workers,
        "bytes", ("sessions kept in memory", "memory_per_session_bytes", "worker processes"),
    ))  # fmt: skip
    return p


def _human(value: float, unit: str) -> str:
    if unit in ("bytes", "bytes/s"):
        for scale, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= scale:
                return f"{value / scale:,.1f} {name}{unit[5:]}"
        return f"{value:,.0f} {unit}"
    if value >= 10 or value == int(value):
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f} {unit}"


def _inputs(path: str | None, settings: Sequence[str]) -> Inputs:
    values: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            values.update(json.load(handle))
    for item in settings:
        key, _, raw = item.partition("=")
        values[key] = json.loads(raw)
    known = {f.name for f in fields(Inputs)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(
            f"unknown input(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    if "requests_per_step_curve" in values:
        values["requests_per_step_curve"] = tuple(
            tuple(p) for p in values["requests_per_step_curve"]
        )
    return Inputs(**values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=float, default=Target.sessions)
    parser.add_argument("--steps", type=float, default=Target.steps_per_s, help="steps/s")
    parser.add_argument("--latency", type=float, default=Target.model_latency_s, help="model s")
    parser.add_argument("--inputs", help="JSON object of inputs (names as in --json's inputs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true", help="inputs, target and figures as JSON")
    args = parser.parse_args(argv)
    inputs = _inputs(args.inputs, args.set)
    target = Target(args.sessions, args.steps, args.latency)
    result = plan(inputs, target)
    if args.json:
        print(json.dumps({
            "inputs": dataclasses.asdict(inputs), "sources": inputs.sources(),
            "target": dataclasses.asdict(target),
            "figures": [dataclasses.asdict(f) for f in result.figures],
        }, indent=2))  # fmt: skip
        return 0
    print(f"target: {target.sessions:,.0f} sessions, {target.steps_per_s:,.0f} steps/s, "
          f"model latency {target.model_latency_s:g} s")  # fmt: skip
    sources = inputs.sources()
    for figure in result.figures:
        print(f"{figure.name:<38} {_human(figure.value, figure.unit)}")
        marked = [d + (" (estimate)" if sources.get(d) == ESTIMATE else "") for d in figure.drivers]
        print(f"{'':<38} driven by: {', '.join(marked)}")
        if figure.note:
            print(f"{'':<38} {figure.note}")
        if figure.cores:
            print(f"{'':<38} more cores: {figure.cores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

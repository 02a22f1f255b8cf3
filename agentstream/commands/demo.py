"""``agentstream demo --sessions N``: the whole system end to end, with a summary.

Brings Kafka and Postgres up if needed, creates the topics, starts two worker
processes (engine + LLM + tool executors each, sharing the partitions), runs N
sessions of the built-in ``demo`` agent (simulated model, calculator and
weather tools) C at a time, and prints what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run N demo sessions across two workers and print a summary",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--sessions", type=int, default=1000, help="sessions to run (1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="sessions in flight (64)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--port", type=int, default=6066, help="first worker's health port")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(message, flush=True)


@guarded
def run(args: argparse.Namespace) -> int:
    from agentstream.loadgen import run_sessions
    from agentstream.worker_processes import start_worker, wait_until_owned
    from infra.local import InfraError, ensure_up, home
    from streams.admin import ensure_topics, require_ok
    from streams.catalogue import Catalogue

    if args.sessions < 1 or args.concurrency < 1 or args.workers < 1:
        print("error: --sessions, --concurrency and --workers must be >= 1", file=sys.stderr)
        return 2
    _say("== infrastructure")
    try:
        ensure_up(1, progress=lambda line: _say(f"  {line}"))
    except InfraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    kafka = settings_from_args(args)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(asyncio.run(ensure_topics(kafka, catalogue)))
    _say(f"  topics: {', '.join(spec.name for spec in catalogue)} ({kafka.partitions} partitions)")

    _say(f"== starting {args.workers} workers")
    started = time.perf_counter()
    workers = [start_worker(kafka, args.port + i, home() / "logs") for i in range(args.workers)]
    try:
        wait_until_owned(workers, kafka.partitions)
        for worker in workers:
            _say(
                f"  worker pid {worker.process.pid}: partitions {worker.engine_partitions()},"
                f" http://127.0.0.1:{worker.port}/healthz and /metrics"
            )
        _say(f"  ready in {time.perf_counter() - started:.1f} s")
        _say(f"== running {args.sessions} sessions of agent 'demo', {args.concurrency} at a time")
        report = asyncio.run(
            run_sessions(
                kafka,
                args.sessions,
                concurrency=args.concurrency,
                timeout_s=args.timeout,
                progress=_say,
            )
        )
    finally:
        for worker in workers:
            worker.stop()
    completed = report.outcomes.get("SessionCompleted", 0)
    failed = report.sessions - completed
    _say("== summary")
    _say(f"  sessions:   {report.sessions} started, {completed} completed, {failed} not completed")
    for name, count in sorted(report.outcomes.items()):
        _say(f"    {name}: {count}")
    if report.timed_out:
        _say(f"    no terminal event within {args.timeout:.0f} s: {report.timed_out}")
    _say(
        f"  throughput: {report.sessions / report.seconds:,.0f} sessions/s,"
        f" {report.steps / report.seconds:,.0f} steps/s"
        f" ({report.llm_steps} model calls + {report.tool_steps} tool calls"
        f" in {report.seconds:.2f} s; {report.events} events)"
    )
    _say(
        f"  latency:    p50 {report.percentile(0.50) * 1000:.0f} ms,"
        f" p95 {report.percentile(0.95) * 1000:.0f} ms,"
        f" p99 {report.percentile(0.99) * 1000:.0f} ms (start → terminal event)"
    )
    if report.sample is not None:
        session_id, output = report.sample
        _say(f"  example:    {session_id}: {output}")
        _say("== look at it")
        _say(
            f"  agentstream tail --topic events --session {session_id} --from-beginning --timeout 2"
        )
        _say(f"  agentstream replay --session {session_id}   # its state, rebuilt from the log")
    _say("  agentstream replay                 # rebuild and audit every session of the log")
    _say("  agentstream topics describe        # offsets of every topic")
    return 0 if completed == report.sessions else 1

"""``agentstream worker``: run the session engine and/or executors in one process.

Several workers share the partitions (Kafka consumer groups) and hand them over
on rebalance; health at ``http://127.0.0.1:PORT/healthz``, Prometheus metrics
at ``/metrics``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the session engine and executors (faust worker)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--role",
        default="engine,llm,tools",
        help="comma-separated roles: engine, llm, tools (default: all three)",
    )
    parser.add_argument(
        "--agents", help="agents file (default: $AGENTSTREAM_AGENTS, else built-ins)"
    )
    parser.add_argument("--port", type=int, default=6066, help="health and metrics port")
    parser.add_argument(
        "--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"]
    )
    parser.add_argument(
        "--fail-tools",
        action="store_true",
        help="make every tool call fail (tests: proves replay never calls tools)",
    )
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


@guarded
def run(args: argparse.Namespace) -> int:
    import asyncio

    from agentstream.worker_app import Components, run_worker
    from infra.local import home
    from processors.agents.catalog import AgentsFileError
    from processors.agents.loader import load_agents
    from streams.admin import ensure_topics, require_ok
    from streams.catalogue import Catalogue

    try:
        agents = load_agents(args.agents)
    except AgentsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    roles = [role.strip() for role in args.role.split(",") if role.strip()]
    kafka = settings_from_args(args)
    require_ok(asyncio.run(ensure_topics(kafka, Catalogue.from_settings(kafka))))
    try:
        components = Components.build(kafka, agents, roles, fail_tools=args.fail_tools)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data_dir = home() / "faust" / f"{kafka.topic_prefix}-{args.port}"
    return run_worker(components, web_port=args.port, data_dir=data_dir, loglevel=args.loglevel)

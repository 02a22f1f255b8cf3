"""``agentstream api``: the HTTP API (gateway, SSE, query API) and the projector.

Runs the Alembic migrations of the read models first, makes sure the topics
exist, then serves until SIGINT/SIGTERM. ``--no-projector`` leaves the read
models to another process (several API processes can share one projector
group: Kafka splits the partitions, the tracking rows keep it exactly once).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve the HTTP API (commands, SSE, queries) and run the projector",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--host", help="listen address (AGENTSTREAM_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (AGENTSTREAM_API_PORT, 8080)")
    parser.add_argument(
        "--no-projector", action="store_true", help="do not build the read models here"
    )
    parser.add_argument(
        "--agents", help="agents file (default: $AGENTSTREAM_AGENTS, else built-ins)"
    )
    parser.add_argument("--database-url", help="Postgres URL (AGENTSTREAM_DATABASE_URL)")
    parser.add_argument("--migrate-only", action="store_true", help="run the migrations and exit")
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


@guarded
def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import logging

    from aiohttp import web

    from agentstream.gateway import Gateway, GatewaySettings, build_app
    from processors.agents.catalog import AgentsFileError
    from processors.agents.loader import load_agents
    from projections.migrate import upgrade
    from streams.admin import ensure_topics, require_ok
    from streams.catalogue import Catalogue

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = GatewaySettings.from_env()
    overrides = {
        "host": args.host,
        "port": args.port,
        "database_url": args.database_url,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v})
    if args.migrate_only:
        asyncio.run(upgrade(settings.database_url))
        print("migrations at head")
        return 0
    try:
        agents = load_agents(args.agents)
    except AgentsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kafka = settings_from_args(args)
    require_ok(asyncio.run(ensure_topics(kafka, Catalogue.from_settings(kafka))))
    gateway = Gateway(settings, kafka, agents, projector=not args.no_projector)
    loop = _new_loop()
    print(f"agentstream api on http://{settings.host}:{settings.port} (stream {gateway.stream})")
    web.run_app(
        build_app(gateway),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        loop=loop,
    )
    return 0


def _new_loop() -> Any:
    """uvloop when installed (it is a dependency; it roughly halves the per-request cost)."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

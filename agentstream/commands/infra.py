"""``agentstream infra up|down|status``: local Kafka, Postgres and schema registry, no Docker.

A thin shell over :mod:`infra.local`, which test fixtures call directly; keeping the
logic there means the CLI and the tests bring up exactly the same servers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="start/stop local Kafka, Postgres and schema registry (no Docker)",
        description=(
            "Local Apache Kafka 4.1.1 (KRaft), Postgres 15 and Apicurio Registry 3.3.3 "
            "(Confluent schema registry API on 127.0.0.1:8081; needs Java 21+) for development "
            "and tests. Jars, the registry's app and Kafka data live in $AGENTSTREAM_HOME "
            "(default <repo>/.agentstream)."
        ),
    )
    actions = parser.add_subparsers(dest="infra_action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser(
        "up",
        help="start what is not running (idempotent)",
        description=(
            "Start Kafka, Postgres and the schema registry if they do not run yet, and wait "
            "until they answer. Every component then uses that registry unless "
            "AGENTSTREAM_SCHEMA_REGISTRY_URL says otherwise (`local`: none)."
        ),
    )
    up.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        default=1,
        help="Kafka nodes: 1 (127.0.0.1:9092) or 3 (127.0.0.1:9092,9094,9096; RF 3, min ISR 2)",
    )
    up.add_argument(
        "--fresh",
        action="store_true",
        help="stop everything and delete Kafka and Postgres data (and so the registry's) first",
    )
    up.set_defaults(func=_up)

    down = actions.add_parser("down", help="stop what `infra up` started")
    down.add_argument("--wipe", action="store_true", help="also delete Kafka and Postgres data")
    down.set_defaults(func=_down)

    status = actions.add_parser(
        "status",
        help="what runs where (exit 0 only when Kafka, Postgres and the registry in use answer)",
    )
    status.set_defaults(func=_status)


def _progress(message: str) -> None:
    print(message, flush=True)


def _up(args: argparse.Namespace) -> int:
    from infra.local import InfraError, ensure_up

    try:
        endpoints = ensure_up(args.brokers, fresh=args.fresh, progress=_progress)
    except InfraError as exc:
        print(f"infra up failed: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka     {endpoints.bootstrap_servers}")
    print(f"Postgres  {endpoints.database_url}")
    registry = endpoints.schema_registry_url
    print(f"Registry  {registry or 'none (local fingerprint ids)'}")
    print(f"export AGENTSTREAM_KAFKA_BOOTSTRAP={endpoints.bootstrap_servers}")
    print(f"export AGENTSTREAM_DATABASE_URL={endpoints.database_url}")
    # Optional: components find the registry `up` started without it (schemas.settings).
    print(f"export AGENTSTREAM_SCHEMA_REGISTRY_URL={registry or 'local'}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from infra.local import InfraError, down

    try:
        down(wipe=args.wipe, progress=_progress)
    except InfraError as exc:
        print(f"infra down failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from infra.status import format_status, status

    st = status()
    print(format_status(st))
    return 0 if st.ok else 1

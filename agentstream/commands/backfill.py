"""``agentstream backfill``: rebuild the Postgres read models from the event log.

``--shadow`` rebuilds them beside the live ones while the projector and the query API
keep serving, then swaps them in (one transaction); the rows replaced are kept until
``backfill --drop-old``. Progress (events/s, ETA) goes to stderr; a crash leaves the
live read models untouched and a re-run resumes (agentstream/shadow_backfill.py).

In place (``--yes``), it deletes this stream's rows from the read models
(sessions, messages, calls, events, daily usage) and the projector's stored
positions in one transaction, then projects the events topic from its first
retained offset up to its end (as of the start), printing progress, and stops.
Use it after a projection bug fix, or to build the read models of a new
database. The gateway's projector must not run meanwhile: a projector that is a
member of the group refuses the backfill (exit 1), and without ``--yes`` nothing
is deleted (it says what would be). Tenants, API keys and idempotency keys are
not read models and are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from streams.settings import KafkaSettings

READ_MODEL_TABLES: tuple[str, ...] = (
    "sessions",
    "messages",
    "llm_calls",
    "tool_calls",
    "events",
    "usage_daily",
    "projection_tracking",
)
"""Tables rebuilt from the log (each has a ``stream`` column)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="rebuild the Postgres read models from the event log",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--yes", action="store_true", help="really delete and rebuild")
    parser.add_argument(
        "--shadow", action="store_true",
        help="rebuild beside the live read models, then swap (they keep serving)",
    )  # fmt: skip
    parser.add_argument(
        "--drop-old", action="store_true", help="drop the rows the last --shadow swap replaced"
    )
    parser.add_argument("--database-url", help="Postgres (AGENTSTREAM_DATABASE_URL)")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="give up after this many seconds (3600)"
    )
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


async def _projector_members(settings: KafkaSettings, group_id: str) -> int:
    from streams.clients import new_admin

    admin = new_admin(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    groups = getattr(described, "groups", None) or []
    # DescribeGroups response: (error, group, state, protocol type, protocol, members, ...)
    return sum(len(group[5]) for group in groups if len(group) > 5)


async def _shadow(args: argparse.Namespace, settings: KafkaSettings, database_url: str) -> int:
    from agentstream.shadow_backfill import drop_old, shadow_backfill
    from streams.catalogue import Catalogue

    stream = Catalogue.from_settings(settings).events.name
    if args.drop_old:
        dropped = await drop_old(database_url, stream)
        print(json.dumps({"dropped_old_copy": dropped, "stream": stream}))
        return 0
    result = await shadow_backfill(
        settings, database_url, timeout_s=args.timeout,
        progress=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(
        json.dumps(
            {"swapped": result.swapped, "events_applied": result.events_applied,
             "seconds": round(result.seconds, 3), "events_per_s": round(result.events_per_s),
             "old_copy": result.old_copy, "stream": stream}
        )
    )  # fmt: skip
    return 0


async def _backfill(args: argparse.Namespace, settings: KafkaSettings) -> int:
    from projections.db import create_engine, raw_connection
    from projections.migrate import upgrade
    from projections.projector import Projector
    from projections.settings import ProjectionSettings
    from projections.writer import positions
    from streams.catalogue import Catalogue
    from streams.consumer import last_record_offsets

    projection = ProjectionSettings.from_env()
    database_url = args.database_url or projection.database_url
    if args.shadow or args.drop_old:
        return await _shadow(args, settings, database_url)
    stream = Catalogue.from_settings(settings).events.name
    group_id = f"{settings.topic_prefix}.projector"
    members = await _projector_members(settings, group_id)
    if members:
        print(
            f"error: a projector is running ({members} member(s) in group {group_id});"
            " stop `agentstream api` first",
            file=sys.stderr,
        )
        return 1
    await upgrade(database_url)
    engine = create_engine(database_url, pool_size=4)
    try:
        async with raw_connection(engine) as connection:
            counts = {
                table: int(
                    await connection.fetchval(
                        f"SELECT count(*) FROM {table} WHERE stream = $1", stream
                    )
                )
                for table in READ_MODEL_TABLES
            }
            if not args.yes:
                print(json.dumps({"would_delete": counts, "stream": stream}))
                print("nothing deleted: add --yes to rebuild", file=sys.stderr)
                return 0
            async with connection.transaction():
                for table in READ_MODEL_TABLES:
                    await connection.execute(f"DELETE FROM {table} WHERE stream = $1", stream)
        # What "caught up" means: each partition's newest committed event, as of now.
        ends = await last_record_offsets(settings, stream)
        started = time.perf_counter()
        projector = Projector(
            settings, engine, max_batch_records=projection.max_batch_records, group_id=group_id
        )
        await projector.start()
        try:
            while True:
                await asyncio.sleep(1.0)
                async with raw_connection(engine) as connection:
                    done = await positions(connection, stream, list(ends))
                rate = projector.applied / (time.perf_counter() - started)
                print(f"  {projector.applied:,} events applied ({rate:,.0f}/s)", file=sys.stderr)
                # A partition with nothing to project (-1) is done as it is.
                if all(done[p] >= newest for p, newest in ends.items()):
                    break
                if time.perf_counter() - started > args.timeout:
                    behind = {
                        p: (done[p], newest) for p, newest in ends.items() if done[p] < newest
                    }
                    print(
                        f"error: not caught up after {args.timeout:.0f} s"
                        f" (partition: (applied, newest) {behind})",
                        file=sys.stderr,
                    )
                    return 1
        finally:
            await projector.stop()
        print(
            json.dumps(
                {
                    "deleted": counts,
                    "events_applied": projector.applied,
                    "seconds": round(time.perf_counter() - started, 3),
                    "stream": stream,
                }
            )
        )
        return 0
    finally:
        await engine.dispose()


@guarded
def run(args: argparse.Namespace) -> int:
    return asyncio.run(_backfill(args, settings_from_args(args)))

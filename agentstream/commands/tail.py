"""``agentstream tail --topic T``: print a topic's records, decoded, as JSON lines.

One JSON object per record on stdout: topic, partition, offset, key, headers,
timestamp_ms, type and value (the record's JSON form, which ``produce`` reads
back). Undecodable records are printed with ``value: null`` and an ``error``.
Reads committed records only, without a consumer group, so tailing never
disturbs a real consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from streams.settings import KafkaSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print a topic's records as JSON lines",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--topic", required=True, help="short name (events) or full name (agentstream.events)"
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record (default: new)"
    )
    parser.add_argument("--session", help="only this session's records (reads one partition)")
    parser.add_argument("--limit", type=int, help="stop after this many records")
    parser.add_argument(
        "--timeout", type=float, help="stop after this many seconds without a record"
    )
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


async def _tail(settings: KafkaSettings, topic: str, args: argparse.Namespace) -> int:
    from streams.consumer import tail

    out = sys.stdout
    count = 0
    records = tail(
        settings,
        topic,
        from_beginning=args.from_beginning,
        session_id=args.session,
        limit=args.limit,
        idle_timeout=args.timeout,
    )
    async with contextlib.aclosing(records):
        async for record in records:
            out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            out.flush()  # a reader (pipe, test) sees each record as it arrives
            count += 1
    return count


@guarded
def run(args: argparse.Namespace) -> int:
    from streams.catalogue import Catalogue

    settings = settings_from_args(args)
    try:
        spec = Catalogue.from_settings(settings).resolve(args.topic)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        asyncio.run(_tail(settings, spec.name, args))
    except BrokenPipeError:  # e.g. piped into `head`
        with contextlib.suppress(OSError):
            sys.stdout.close()
    return 0

"""``agentstream produce --topic T [--file F]``: JSON lines onto a topic, all or nothing.

Each line is a record's JSON form (its schema's fields plus ``"type"``). Every
line is validated and encoded before the first record is sent; one bad line
means nothing is produced and the exit code is 1, with ``line N: reason`` on
stderr for each bad line (the first 20). Records are keyed by their session
id and sent with the idempotent, batched producer; progress goes to stderr
about once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from streams.settings import KafkaSettings

if TYPE_CHECKING:
    from streams.catalogue import TopicSpec
    from streams.producer import OutgoingRecord


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="validate JSON lines and produce them (all or nothing)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--topic", required=True, help="short name (inbox) or full name (agentstream.inbox)"
    )
    parser.add_argument("--file", help="JSON-lines file (default: standard input)")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


class Progress:
    """Prints ``sent N/M records (R/s)`` to ``out`` at most once per ``interval`` seconds."""

    def __init__(self, total: int, out: TextIO, interval: float = 1.0) -> None:
        self.total = total
        self.out = out
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = sent / (now - self.started)
            print(f"sent {sent:,}/{self.total:,} records ({rate:,.0f}/s)", file=self.out)


async def _send(
    settings: KafkaSettings,
    spec: TopicSpec,
    records: list[OutgoingRecord],
    progress: Progress | None,
) -> int:
    from streams.admin import compare, describe_topics
    from streams.errors import TopicMismatchError, TopicNotFoundError
    from streams.producer import Producer

    # Never produce into a topic that is missing (auto-creation would give it the
    # broker's partition count) or laid out differently from the catalogue.
    description = (await describe_topics(settings, [spec.name])).get(spec.name)
    if description is None:
        raise TopicNotFoundError(spec.name)
    mismatches = compare(spec, description)
    if mismatches:
        raise TopicMismatchError("; ".join(str(m) for m in mismatches))
    async with Producer(settings) as producer:
        return await producer.send_many(records, progress=progress, partition_count=spec.partitions)


@guarded
def run(args: argparse.Namespace) -> int:
    from streams.catalogue import Catalogue
    from streams.jsonlines import split_lines, validate_lines_parallel

    err: TextIO = sys.stderr
    settings = settings_from_args(args)
    try:
        spec = Catalogue.from_settings(settings).resolve(args.topic)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=err)
        return 2
    if not spec.value_types:
        print(f"error: {spec.name} carries raw records; produce writes JSON records only", file=err)
        return 2

    started = time.monotonic()
    try:
        if args.file:
            with open(args.file, "rb") as source:
                data = source.read()
        else:
            data = sys.stdin.buffer.read()
    except OSError as error:
        print(f"error: {error}", file=err)
        return 1
    validated = validate_lines_parallel(split_lines(data), spec)
    del data
    if not validated.ok:
        for line_error in validated.errors:
            print(line_error, file=err)
        more = validated.error_count - len(validated.errors)
        if more:
            print(f"... and {more:,} more bad lines", file=err)
        print(
            f"error: {validated.error_count:,} of {validated.line_count:,} lines are invalid; "
            f"nothing was produced to {spec.name}",
            file=err,
        )
        return 1
    total = len(validated.records)
    if not args.quiet and total:
        elapsed = time.monotonic() - started
        print(f"validated {total:,} records in {elapsed:.2f} s", file=err)
    progress = None if args.quiet else Progress(total, err)
    sent = asyncio.run(_send(settings, spec, validated.records, progress)) if total else 0
    if not args.quiet:
        elapsed = time.monotonic() - started
        print(
            f"produced {sent:,} records to {spec.name} in {elapsed:.2f} s "
            f"({sent / elapsed if elapsed else 0:,.0f} records/s)",
            file=err,
        )
    return 0

"""``agentstream dlq list | redrive``: inspect dead letters and send them back.

A dead letter keeps its original key, value and headers plus ``dlq.*`` headers
(origin topic, partition and offset, reason, error, which consumer refused it).
``list`` prints one JSON object per dead letter. ``redrive`` re-produces the
selected ones, untouched, to the topic they came from (after the cause is
fixed, e.g. a missing agent added to the agents file); the engine treats them
as new commands and refuses them again, to the DLQ, if the cause remains.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from streams.settings import KafkaSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list dead letters, or send them back to where they came from",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="one JSON object per dead letter")
    listing.add_argument("--reason", help="only this reason (undecodable, rejected, error)")
    add_kafka_arguments(listing)
    listing.set_defaults(func=run_list)
    redrive = actions.add_parser("redrive", help="re-produce dead letters to their origin")
    redrive.add_argument("--reason", help="only this reason")
    redrive.add_argument(
        "--at", action="append", default=[], metavar="PARTITION:OFFSET",
        help="only this dead letter (repeatable); default: all that match --reason",
    )  # fmt: skip
    redrive.add_argument("--dry-run", action="store_true", help="say what would be sent")
    add_kafka_arguments(redrive)
    redrive.set_defaults(func=run_redrive)


async def _read(settings: KafkaSettings) -> list[Any]:
    from streams.catalogue import Catalogue
    from streams.consumer import read_to_end
    from streams.dlq import StoredDeadLetter

    topic = Catalogue.from_settings(settings).dlq.name
    return [
        StoredDeadLetter(r.partition, r.offset, r.key, r.value, tuple(r.headers))
        async for r in read_to_end(settings, topic)
    ]


def _selected(letters: list[Any], args: argparse.Namespace) -> list[Any]:
    wanted = set(args.at or [])
    chosen = [
        letter
        for letter in letters
        if (not args.reason or letter.header("dlq.reason") == args.reason)
        and (not wanted or f"{letter.partition}:{letter.offset}" in wanted)
    ]
    return chosen


@guarded
def run_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    for letter in _selected(
        asyncio.run(_read(settings)), argparse.Namespace(reason=args.reason, at=[])
    ):
        print(json.dumps(letter.describe(), ensure_ascii=False))
    return 0


async def _redrive(settings: KafkaSettings, letters: list[Any]) -> None:
    from streams.producer import Producer

    async with Producer(settings) as producer:
        futures = [
            await producer.aiokafka.send(
                letter.header("dlq.origin.topic"),
                letter.value,
                key=letter.key,
                headers=letter.original_headers,
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)


def unsendable(letters: list[Any], events_topic: str) -> str | None:
    """Why these dead letters may not go back to their origin, or None when they may.

    The events topic is the log, and only the engine that owns a partition may
    append to it (one writer per session, contiguous seq): re-producing an event
    the projector refused would append a second copy outside the engine. Fix the
    projector and rebuild the read models (``agentstream backfill``) instead.
    """
    unknown = [letter for letter in letters if not letter.header("dlq.origin.topic")]
    if unknown:
        return f"{len(unknown)} dead letters name no origin topic"
    logged = [letter for letter in letters if letter.header("dlq.origin.topic") == events_topic]
    if logged:
        at = ", ".join(f"{letter.partition}:{letter.offset}" for letter in logged[:5])
        return (
            f"{len(logged)} dead letters came from the event log {events_topic} ({at}); "
            "only the engine writes it: fix the projector and run `agentstream backfill` "
            "instead (select others with --reason or --at)"
        )
    return None


@guarded
def run_redrive(args: argparse.Namespace) -> int:
    from streams.catalogue import Catalogue

    settings = settings_from_args(args)
    letters = _selected(asyncio.run(_read(settings)), args)
    refusal = unsendable(letters, Catalogue.from_settings(settings).events.name)
    if refusal is not None:
        print(f"error: {refusal}; nothing sent", file=sys.stderr)
        return 1
    for letter in letters:
        origin = letter.describe()["origin"]
        verb = "would send" if args.dry_run else "sending"
        print(
            f"{verb} {letter.partition}:{letter.offset} → {origin['topic']}"
            f" (was {origin['partition']}:{origin['offset']}, {letter.header('dlq.reason')})"
        )
    if letters and not args.dry_run:
        asyncio.run(_redrive(settings, letters))
    print(
        f"{len(letters)} dead letters {'selected' if args.dry_run else 'sent back'}",
        file=sys.stderr,
    )
    return 0

"""``agentstream topics create | list | describe | grow``: the catalogue's topics on the cluster.

Existing topics whose partition count, replication or configs differ from the
catalogue are reported as mismatches and make the command exit 1: a topic
with the wrong partition count would put sessions on other partitions than
their co-partitioned topics, so it must be fixed by hand, never used.

Also home of the Kafka options every streams command shares
(:func:`add_kafka_arguments`). Heavy imports (aiokafka, fastavro) happen inside
the command functions so that building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streams.settings import KafkaSettings

if TYPE_CHECKING:
    from streams.admin import Mismatch, TopicDescription, TopicsReport
    from streams.catalogue import Catalogue, TopicSpec


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The Kafka options every streams command shares; each overrides its AGENTSTREAM_ variable.

    ``--bootstrap``, ``--prefix``, ``--partitions`` and the security settings of
    :mod:`streams.security` (``--security-protocol``, ``--sasl-*``, ``--ssl-*``).
    """
    group = parser.add_argument_group("Kafka (defaults from AGENTSTREAM_* variables)")
    group.add_argument("--bootstrap", help="host:port list (AGENTSTREAM_KAFKA_BOOTSTRAP)")
    group.add_argument("--prefix", help="topic name prefix (AGENTSTREAM_TOPIC_PREFIX)")
    group.add_argument(
        "--partitions", type=int, help="partitions of every topic (AGENTSTREAM_PARTITIONS)"
    )
    from streams.security import MECHANISMS, PROTOCOLS, SETTING_NAMES

    helps = {
        "protocol": f"{' | '.join(PROTOCOLS)} (default PLAINTEXT)",
        "sasl_mechanism": f"{' | '.join(MECHANISMS)} (default PLAIN)",
        "sasl_username": "SASL user name",
        "sasl_password": "SASL password (prefer the variable: flags show in `ps`)",
        "ssl_cafile": "PEM file of the CA that signed the brokers' certificates",
        "ssl_certfile": "PEM client certificate (mutual TLS)",
        "ssl_keyfile": "PEM private key of the client certificate",
        "ssl_key_password": "password of the private key",
    }
    metavars = {"protocol": "PROTOCOL", "sasl_mechanism": "MECHANISM", "sasl_username": "USER"}
    security = parser.add_argument_group("Kafka security (defaults from AGENTSTREAM_KAFKA_*)")
    for name, (variable, flag) in SETTING_NAMES.items():
        metavar = metavars.get(name, "PASSWORD" if name.endswith("password") else "FILE")
        security.add_argument(
            flag, dest=f"kafka_{name}", metavar=metavar, help=f"{helps[name]} ({variable})"
        )


def settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """Settings from the environment, with the command-line options on top.

    A security flag stands in for its variable before the settings are checked,
    so a password may come from the environment and the user name from a flag;
    a contradiction (a CA file with PLAINTEXT, say) raises ``KafkaSettingsError``.
    """
    import os

    from streams.security import SETTING_NAMES

    environ = dict(os.environ)
    for name, (variable, _flag) in SETTING_NAMES.items():
        value = getattr(args, f"kafka_{name}", None)
        if value is not None:
            environ[variable] = value
    settings = KafkaSettings.from_env(environ)
    return dataclasses.replace(
        settings,
        bootstrap=args.bootstrap or settings.bootstrap,
        topic_prefix=args.prefix or settings.topic_prefix,
        partitions=args.partitions or settings.partitions,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="create, list and describe the catalogue's topics",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="create missing topics; report mismatches")
    add_kafka_arguments(create)
    create.set_defaults(func=run_create)

    list_ = actions.add_parser("list", help="each catalogue topic and whether it is as specified")
    add_kafka_arguments(list_)
    list_.add_argument("--json", action="store_true", help="one JSON object per topic")
    list_.set_defaults(func=run_list)

    describe = actions.add_parser(
        "describe", help="partitions, replication, configs and end offsets of each topic"
    )
    add_kafka_arguments(describe)
    describe.add_argument("--topic", help="only this topic (short or full name)")
    describe.add_argument("--json", action="store_true", help="one JSON object per topic")
    describe.set_defaults(func=run_describe)

    grow = actions.add_parser(
        "grow",
        help="more partitions: empty topics grow in place; topics with records are refused",
        description="--partitions is the count to grow every catalogue topic to. Topics "
        "holding records are refused with how many sessions would move and what a "
        "migration involves (agentstream/commands/topics_grow.py).",
    )
    add_kafka_arguments(grow)
    grow.add_argument("--dry-run", action="store_true", help="say what would be done")
    grow.add_argument(
        "--migrate",
        action="store_true",
        help="copy the sessions to a new generation of topics (every process stopped)",
    )
    grow.add_argument("--to-prefix", help="the new generation's topic prefix (with --migrate)")
    grow.set_defaults(func=run_grow)


def _catalogue(settings: KafkaSettings) -> Catalogue:
    from streams.catalogue import Catalogue

    return Catalogue.from_settings(settings)


def _print_problems(report: TopicsReport) -> None:
    for name in report.missing:
        print(f"MISSING  {name} (run `agentstream topics create`)", file=sys.stderr)
    for mismatch in report.mismatches:
        print(f"MISMATCH {mismatch}", file=sys.stderr)


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a ``StreamsError`` (no broker, missing topic...) into one line on stderr and exit 1."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from streams.errors import StreamsError

        try:
            return func(args)
        except StreamsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run


@guarded
def run_create(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics

    settings = settings_from_args(args)
    catalogue = _catalogue(settings)
    report: TopicsReport = asyncio.run(ensure_topics(settings, catalogue))
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    _print_problems(report)
    if not report.ok:
        print(
            "error: existing topics differ from the catalogue; fix or delete them by hand "
            "(they are never used as they are)",
            file=sys.stderr,
        )
        return 1
    return 0


@guarded
def run_grow(args: argparse.Namespace) -> int:
    from agentstream.commands.topics_grow import run_grow as grow

    if not args.partitions:
        print("error: say how many partitions with --partitions N", file=sys.stderr)
        return 2
    return grow(args, settings_from_args(args))


@guarded
def run_list(args: argparse.Namespace) -> int:
    from streams.admin import check_topics

    settings = settings_from_args(args)
    catalogue = _catalogue(settings)
    report: TopicsReport = asyncio.run(check_topics(settings, catalogue))
    bad = {m.topic for m in report.mismatches}
    for spec in catalogue.all():
        status = "ok"
        if spec.name in report.missing:
            status = "missing"
        elif spec.name in bad:
            status = "MISMATCH"
        if args.json:
            print(json.dumps({"topic": spec.name, "role": spec.role, "status": status}))
        else:
            print(f"{spec.name:<40} {status}")
    if not args.json:
        _print_problems(report)
    return 0 if report.ok else 1


async def _describe(
    settings: KafkaSettings, names: list[str]
) -> tuple[TopicsReport, dict[str, dict[int, int]]]:
    from streams.admin import check_topics
    from streams.consumer import end_offsets

    report = await check_topics(settings, _catalogue(settings))
    offsets = {
        name: await end_offsets(settings, name) for name in names if name in report.descriptions
    }
    return report, offsets


@guarded
def run_describe(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    catalogue = _catalogue(settings)
    specs = catalogue.all()
    if args.topic:
        try:
            specs = (catalogue.resolve(args.topic),)
        except KeyError as error:
            print(f"error: {error.args[0]}", file=sys.stderr)
            return 2
    report, offsets = asyncio.run(_describe(settings, [s.name for s in specs]))
    ok = True
    for spec in specs:
        description = report.descriptions.get(spec.name)
        mismatches = [m for m in report.mismatches if m.topic == spec.name]
        ok = ok and description is not None and not mismatches
        ends = offsets.get(spec.name, {})
        if args.json:
            print(json.dumps(_describe_json(spec, description, mismatches, ends)))
            continue
        _print_description(spec, description, mismatches, ends)
    return 0 if ok else 1


def _print_description(
    spec: TopicSpec,
    description: TopicDescription | None,
    mismatches: list[Mismatch],
    ends: dict[int, int],
) -> None:
    print(spec.name)
    if description is None:
        print("  MISSING (run `agentstream topics create`)")
        return
    print(f"  partitions   {description.partitions}   (catalogue: {spec.partitions})")
    print(f"  replication  {description.replication}   (catalogue: {spec.replication})")
    for key, expected in spec.config.items():
        print(f"  {key:<14} {description.configs.get(key)}   (catalogue: {expected})")
    print(f"  key          {spec.key}")
    print(f"  values       {spec.value}")
    per_partition = ", ".join(f"{p}={o}" for p, o in sorted(ends.items()))
    print(f"  end offsets  {sum(ends.values())} total: {per_partition}")
    for m in mismatches:
        print(f"  MISMATCH     {m.setting} is {m.actual}, the catalogue says {m.expected}")


def _describe_json(
    spec: TopicSpec,
    description: TopicDescription | None,
    mismatches: list[Mismatch],
    ends: dict[int, int],
) -> dict[str, Any]:
    return {
        "topic": spec.name,
        "role": spec.role,
        "exists": description is not None,
        "partitions": None if description is None else description.partitions,
        "replication": None if description is None else description.replication,
        "configs": None
        if description is None
        else {key: description.configs.get(key) for key in spec.config},
        "end_offsets": {str(p): o for p, o in sorted(ends.items())},
        "mismatches": [
            {"setting": m.setting, "expected": m.expected, "actual": m.actual} for m in mismatches
        ],
        "catalogue": {
            "partitions": spec.partitions,
            "replication": spec.replication,
            "configs": spec.config,
        },
    }

"""Create and check topics against the catalogue.

A topic that exists with another partition count than the catalogue's would
put a session on a different partition than the co-partitioned topics do, and
a wrong retention silently loses (or keeps) data. So an existing topic is
always described and compared: any difference is a :class:`Mismatch`, reported
and refused, never used silently. We do not alter topics automatically either:
shrinking partitions is impossible and growing them moves sessions.

Talks to Kafka through aiokafka's ``AIOKafkaAdminClient``. With Kafka 4.x it
negotiates CreateTopics v2-v3, DescribeConfigs v1-v2, DeleteTopics v1-v3 and
Metadata v4-v5, all still supported after KIP-896 removed the oldest versions.
Topics are described from an all-topics Metadata request, because a Metadata
request that names a missing topic asks the broker to auto-create it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.catalogue import Catalogue, TopicSpec
from streams.errors import StreamsError
from streams.security import start_failure
from streams.settings import KafkaSettings

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """What the cluster says about one topic."""

    name: str
    """Full topic name."""
    partitions: int
    """Partition count."""
    replication: int
    """Replication factor (the smallest replica count over its partitions)."""
    configs: Mapping[str, str]
    """Every topic config as the broker reports it (defaults included)."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One way an existing topic differs from its catalogue spec."""

    topic: str
    """Full topic name."""
    setting: str
    """``partitions``, ``replication`` or a config name such as ``retention.ms``."""
    expected: str
    """The catalogue's value."""
    actual: str
    """The cluster's value."""

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, the catalogue says {self.expected}"


@dataclass(frozen=True, slots=True)
class TopicsReport:
    """The outcome of :func:`ensure_topics` or :func:`check_topics`."""

    created: tuple[str, ...] = ()
    """Topics created by this call."""
    existing: tuple[str, ...] = ()
    """Topics that were already there (compared against the catalogue)."""
    missing: tuple[str, ...] = ()
    """Catalogue topics that do not exist (only :func:`check_topics` leaves any)."""
    mismatches: tuple[Mismatch, ...] = ()
    """Differences between existing topics and the catalogue."""
    descriptions: Mapping[str, TopicDescription] = field(default_factory=dict)
    """Descriptions of every topic that exists now."""

    @property
    def ok(self) -> bool:
        """True when every catalogue topic exists exactly as specified."""
        return not self.missing and not self.mismatches


def compare(spec: TopicSpec, description: TopicDescription) -> list[Mismatch]:
    """Every difference between ``spec`` and the topic as described (pure)."""
    found: list[Mismatch] = []
    if description.partitions != spec.partitions:
        found.append(
            Mismatch(spec.name, "partitions", str(spec.partitions), str(description.partitions))
        )
    if description.replication != spec.replication:
        found.append(
            Mismatch(spec.name, "replication", str(spec.replication), str(description.replication))
        )
    for name, expected in spec.config.items():
        actual = description.configs.get(name)
        if actual != expected:
            found.append(Mismatch(spec.name, name, expected, "unset" if actual is None else actual))
    return found


@asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit; ``KafkaUnavailableError`` if no broker answers."""
    client = AIOKafkaAdminClient(**settings.client_config(), request_timeout_ms=30_000)
    try:
        await client.start()
    except Exception as error:
        await client.close()
        explained = await start_failure(settings.bootstrap, settings.security, error)
        if explained is None:
            raise
        raise explained from error
    try:
        yield client
    finally:
        await client.close()


async def _describe(
    client: AIOKafkaAdminClient, names: Iterable[str]
) -> dict[str, TopicDescription]:
    wanted = set(names)
    metadata = [t for t in await client.describe_topics() if t["topic"] in wanted]
    layout: dict[str, tuple[int, int]] = {}
    for topic in metadata:
        if topic["error_code"] == _UNKNOWN_TOPIC:
            continue
        partitions = topic["partitions"]
        replication = min((len(p["replicas"]) for p in partitions), default=0)
        layout[topic["topic"]] = (len(partitions), replication)
    if not layout:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(layout)]
    configs: dict[str, dict[str, str]] = {}
    for response in await client.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise StreamsError(
                    f"describe configs of {resource['resource_name']}: "
                    f"error {resource['error_code']} {resource['error_message']}"
                )
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_value"] is not None
            }
    return {
        name: TopicDescription(name, count, replication, configs.get(name, {}))
        for name, (count, replication) in sorted(layout.items())
    }


async def describe_topics(
    settings: KafkaSettings, names: Iterable[str]
) -> dict[str, TopicDescription]:
    """Descriptions of those of ``names`` that exist (missing ones are simply absent)."""
    async with admin_client(settings) as client:
        return await _describe(client, names)


async def partition_counts(settings: KafkaSettings, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists (metadata only, no configs)."""
    wanted = set(names)
    async with admin_client(settings) as client:
        topics = await client.describe_topics()
    return {
        t["topic"]: len(t["partitions"])
        for t in topics
        if t["topic"] in wanted and t["error_code"] != _UNKNOWN_TOPIC
    }


def _report(
    catalogue: Catalogue,
    descriptions: dict[str, TopicDescription],
    created: Iterable[str] = (),
) -> TopicsReport:
    created = tuple(created)
    mismatches: list[Mismatch] = []
    existing: list[str] = []
    missing: list[str] = []
    for spec in catalogue.all():
        description = descriptions.get(spec.name)
        if description is None:
            missing.append(spec.name)
            continue
        if spec.name not in created:
            existing.append(spec.name)
        mismatches.extend(compare(spec, description))
    return TopicsReport(created, tuple(existing), tuple(missing), tuple(mismatches), descriptions)


async def check_topics(settings: KafkaSettings, catalogue: Catalogue) -> TopicsReport:
    """Describe the catalogue's topics and compare them; creates nothing."""
    names = [spec.name for spec in catalogue.all()]
    return _report(catalogue, await describe_topics(settings, names))


async def ensure_topics(settings: KafkaSettings, catalogue: Catalogue) -> TopicsReport:
    """Create the catalogue's missing topics; describe and compare the existing ones.

    Idempotent and safe to race: a topic created meanwhile by someone else
    counts as existing and is compared like any other. Check ``report.ok`` (or
    call :func:`require_ok`): mismatches are reported, not fixed.
    """
    names = [spec.name for spec in catalogue.all()]
    async with admin_client(settings) as client:
        before = await _describe(client, names)
        to_create = [spec for spec in catalogue.all() if spec.name not in before]
        created: list[str] = []
        if to_create:
            new_topics = [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
                for s in to_create
            ]
            response: Any = await client.create_topics(new_topics)
            errors = []
            for topic, code, message in response.topic_errors:
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_ALREADY_EXISTS:
                    errors.append(f"{topic}: error {code} {message or ''}".rstrip())
            if errors:
                raise StreamsError("could not create topics: " + "; ".join(errors))
        after = await _await_metadata(client, names, created)
    return _report(catalogue, after, created)


async def _await_metadata(
    client: AIOKafkaAdminClient, names: list[str], created: list[str], timeout_s: float = 15.0
) -> dict[str, TopicDescription]:
    """Describe ``names`` once every topic in ``created`` shows in the metadata.

    CreateTopics returns when the controller has the topics; the broker that
    answers Metadata and DescribeConfigs may learn of them a moment later.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            described = await _describe(client, names)
        except StreamsError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        else:
            if all(name in described for name in created):
                return described
            if asyncio.get_running_loop().time() > deadline:
                return described  # reported as missing
        await asyncio.sleep(0.05)


def require_ok(report: TopicsReport) -> None:
    """Raise ``TopicMismatchError`` listing every missing topic and mismatch."""
    from streams.errors import TopicMismatchError

    if report.ok:
        return
    lines = [f"{name}: missing" for name in report.missing]
    lines += [str(m) for m in report.mismatches]
    found = sorted({m.actual for m in report.mismatches if m.setting == "partitions"})
    if len(found) == 1:
        # The usual cause: topics made under another AGENTSTREAM_PARTITIONS. Partitions
        # cannot shrink and growing them would move sessions, so say how to match them.
        lines.append(
            f"the topics have {found[0]} partitions: set AGENTSTREAM_PARTITIONS={found[0]} to"
            " use them as they are, or another AGENTSTREAM_TOPIC_PREFIX for new topics"
        )
    raise TopicMismatchError("topics differ from the catalogue:\n  " + "\n  ".join(lines))


async def delete_topics(settings: KafkaSettings, names: Iterable[str]) -> None:
    """Delete ``names``; ones that do not exist are ignored (tests clean up with it)."""
    names = list(names)
    if not names:
        return
    async with admin_client(settings) as client:
        response: Any = await client.delete_topics(names)
        errors = [
            f"{topic}: error {code}"
            for topic, code, *_ in response.topic_error_codes
            if code not in (0, _UNKNOWN_TOPIC)
        ]
        if errors:
            raise StreamsError("could not delete topics: " + "; ".join(errors))

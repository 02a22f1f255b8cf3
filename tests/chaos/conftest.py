"""The chaos suite's cluster: three local KRaft brokers (RF 3, min ISR 2) for the module.

Run by name, not in the default test run (``scripts/chaos.sh``; CI runs it after the
tests). The single local node is stopped first (the clusters share port 9092) and
brought back at the end, so a developer's ``infra up`` state is as before.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra import kafka, local
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

PARTITIONS = 4
REPLICATION = 3


@pytest.fixture(scope="session")
def three_brokers() -> Iterator[str]:
    """The bootstrap list of a running 3-node cluster."""
    kafka.stop_cluster(local.kafka_cluster(1), print)
    three = local.kafka_cluster(3)
    try:
        yield local.ensure_up(brokers=3).bootstrap_servers
    finally:
        kafka.stop_cluster(three, print)
        local.ensure_up(brokers=1)


@pytest.fixture(scope="session")
async def kafka_bootstrap(three_brokers: str) -> str:  # overrides the suite-wide fixture
    return three_brokers


@pytest.fixture
async def catalogue(three_brokers: str) -> AsyncIterator[Catalogue]:
    """This scenario's topics, replicated on all three brokers; deleted afterwards."""
    from streams.admin import delete_topics, ensure_topics, require_ok

    settings = KafkaSettings(
        bootstrap=three_brokers,
        topic_prefix=f"c{uuid.uuid4().hex[:8]}",
        partitions=PARTITIONS,
        replication_factor=REPLICATION,
    )
    cat = Catalogue.from_settings(settings)
    try:
        require_ok(await ensure_topics(settings, cat))
        yield cat
    finally:
        await delete_topics(settings, [spec.name for spec in cat.all()])

"""Fixtures shared by every test tier.

Integration tests talk to the real Kafka that ``.ci/run`` (or
``agentstream infra up``) starts. If it does not answer they fail with a clear
error rather than skip: CI must never go green by testing nothing.

Isolation: each test gets its own topic prefix (``t<8 hex>``), so tests can run
against one shared broker without seeing each other's records.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

TEST_PARTITIONS = 4
"""Partitions of test topics: enough to exercise partitioning, cheap to create."""
_WAIT_FOR_KAFKA_S = 30.0


@pytest.fixture(scope="session")
async def kafka_bootstrap() -> str:
    """``AGENTSTREAM_KAFKA_BOOTSTRAP`` or ``127.0.0.1:9092``, once a broker there answers.

    Waits up to 30 s (the broker may still be starting), then fails every test
    that needs Kafka with the address and how to start it.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    bootstrap = os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    deadline = asyncio.get_running_loop().time() + _WAIT_FOR_KAFKA_S
    last_error: BaseException | None = None
    while asyncio.get_running_loop().time() < deadline:
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.start()
            await client.list_topics()
            return bootstrap
        except Exception as error:  # any failure means "not usable yet"
            last_error = error
            await asyncio.sleep(1.0)
        finally:
            await client.close()
    raise RuntimeError(
        f"Kafka at {bootstrap} did not answer within {_WAIT_FOR_KAFKA_S:.0f} s "
        f"({last_error!r}). Integration tests need it: run `agentstream infra up` "
        "or set AGENTSTREAM_KAFKA_BOOTSTRAP."
    )


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to this test, e.g. ``t1a2b3c4d``."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def catalogue(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Catalogue]:
    """This test's catalogue (4 partitions), its topics created; deleted afterwards."""
    from streams.admin import delete_topics, ensure_topics, require_ok

    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=TEST_PARTITIONS
    )
    cat = Catalogue.from_settings(settings)
    try:
        require_ok(await ensure_topics(settings, cat))
        yield cat
    finally:
        await delete_topics(settings, [spec.name for spec in cat.all()])

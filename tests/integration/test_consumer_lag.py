"""Consumer lag as each component sees it, on the real broker: transaction markers are
not lag, an open transaction is not lag yet, and after a run every component (engine,
LLM and tool executors, projector) reports 0 on every partition, where Kafka's
committed-offset view of the executors shows 1 (the marker). The run also feeds the
engine's seed-view metrics: session durations, steps, limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from agentstream.gateway.testkit import database_url
from processors import metrics
from processors.settings import EngineSettings, ExecutorSettings
from projections.db import create_engine
from projections.migrate import upgrade
from projections.projector import Projector
from streams.catalogue import Catalogue
from streams.lag import LagGauge, fetch_positions
from tests.integration.engine_kit import (
    kafka_settings,
    new_ids,
    produce,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration


def _lag(group: str, topic: str, partition: int) -> float | None:
    labels = {"group": group, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("agentstream_consumer_lag_records", labels)


async def test_markers_and_open_transactions_are_not_lag(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    topic = catalogue.llm_calls.name
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"lag-{uuid.uuid4().hex[:8]}"
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    gauge = LagGauge(f"{catalogue.prefix}.lag-test", interval_s=0)
    await producer.start()
    await consumer.start()
    try:
        async with producer.transaction():  # offsets 0-9, its commit marker at 10
            for i in range(10):
                await producer.send(topic, b"x%d" % i, partition=0)
        await producer.begin_transaction()  # 11-13, not committed yet
        for i in range(3):
            await producer.send(topic, b"y%d" % i, partition=0)
        await producer.flush()

        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        await gauge.update(consumer, {tp: 0})
        assert _lag(gauge.group, topic, 0) == 11  # up to the last stable offset only

        seen = 0
        while seen < 10:
            seen += sum(len(r) for r in (await consumer.getmany(timeout_ms=1000)).values())
        # The fetch position is past the marker: nothing is left to do. (A committed
        # offset of last record + 1 = 10 is what shows as lag 1 in Kafka's tools.)
        assert await fetch_positions(consumer) == {tp: 11}
        await gauge.update(consumer, await fetch_positions(consumer))
        assert _lag(gauge.group, topic, 0) == 0

        await producer.commit_transaction()  # 11-13 and a marker at 14 become readable
        await gauge.update(consumer, {tp: 11})
        assert _lag(gauge.group, topic, 0) == 4

        await gauge.update(consumer, {})  # partition given up: its series goes
        assert _lag(gauge.group, topic, 0) is None
    finally:
        await consumer.stop()
        await producer.stop()


async def _eventually_empty(find: Callable[[], list[str]], timeout_s: float) -> None:
    """Wait until ``find`` returns nothing; fail naming what it still returns."""
    deadline = time.monotonic() + timeout_s
    while found := find():
        if time.monotonic() > deadline:
            raise AssertionError(", ".join(found))
        await asyncio.sleep(0.5)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_every_component_reports_its_lag_and_the_engine_its_seed_metrics(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(20)
    durations = _sample(
        "agentstream_session_duration_seconds_count", agent="demo", outcome="completed"
    )
    steps = metrics.steps_done(["engine"])
    steps_before = steps()
    await upgrade(database_url())
    db = create_engine(database_url(), pool_size=2)
    projector = Projector(kafka, db)
    try:
        async with running(kafka) as components, projector:
            await produce(
                kafka,
                catalogue.inbox.name,
                [
                    start_session(s, f"What is {i}*6 and the weather in Oslo?")
                    for i, s in enumerate(ids)
                ],
            )
            await wait_for_terminal(kafka, catalogue, ids)
            assert components.engine is not None
            owned = [
                (components.engine.group_id, catalogue.inbox.name),
                *((e.group_id, e.topic.name) for e in components.executors),
                (projector.group_id, catalogue.events.name),
            ]
            assert {group.rsplit(".", 1)[1] for group, _ in owned} == {
                "engine", "llm", "tools", "projector"
            }  # fmt: skip

            def lagging() -> list[str]:
                return [
                    f"{group} p{p} lag {_lag(group, topic, p)}"
                    for group, topic in owned
                    for p in range(catalogue.partitions)
                    if _lag(group, topic, p) != 0
                ]

            await _eventually_empty(lagging, 30)  # each component measures every 5 s
    finally:
        await db.dispose()

    # Durations of the sessions that ended, and their steps (2 model + 2 tool results).
    after = _sample("agentstream_session_duration_seconds_count", agent="demo", outcome="completed")
    assert after - durations == len(ids)
    assert steps() - steps_before == 4 * len(ids)
    # What ownership and memory are measured against.
    assert _sample("agentstream_engine_inbox_partitions") == catalogue.partitions
    assert (
        _sample("agentstream_engine_sessions_limit") == EngineSettings().max_sessions_per_partition
    )
    slots = ExecutorSettings.from_env().max_in_flight
    assert _sample("agentstream_executor_slots", executor="llm") == slots

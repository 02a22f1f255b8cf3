"""Keyed records produced through aiokafka with our partitioner land on the
partition the Java client computes (vectors from kafka-clients 4.1.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.structs import TopicPartition

from streams.admin import admin_client, delete_topics
from streams.catalogue import Catalogue
from streams.consumer import end_offsets
from streams.errors import TopicMismatchError
from streams.partitioner import murmur2_partitioner, partition_for_key
from streams.producer import OutgoingRecord, Producer
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "unit" / "data" / "murmur2_java_vectors.json").read_text("utf-8")
)


async def _produce_and_read(bootstrap: str, topic: str, count: int) -> dict[bytes, int]:
    """Produce every vector key (value = its index) and return key -> partition read back."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        partitioner=murmur2_partitioner,
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, str(i).encode(), key=bytes.fromhex(case["key_hex"]))
            for i, case in enumerate(VECTORS["vectors"])
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    landed: dict[bytes, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(count)])
        while len(landed) < len(VECTORS["vectors"]):
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, f"only {len(landed)} records came back"
            for tp, messages in batches.items():
                for message in messages:
                    assert message.key is not None
                    landed[message.key] = tp.partition
    finally:
        await consumer.stop()
    return landed


@pytest.mark.parametrize("count", [4, 7, 12])
async def test_records_land_where_java_puts_them(
    kafka_bootstrap: str, topic_prefix: str, count: int
) -> None:
    topic = f"{topic_prefix}.murmur2-{count}"
    column = VECTORS["partition_counts"].index(count)
    settings = KafkaSettings(bootstrap=kafka_bootstrap)
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(topic, count, 1)])
    try:
        landed = await _produce_and_read(kafka_bootstrap, topic, count)
    finally:
        await delete_topics(settings, [topic])
    mismatched = [
        (case["key"], landed[bytes.fromhex(case["key_hex"])], case["partitions"][column])
        for case in VECTORS["vectors"]
        if landed[bytes.fromhex(case["key_hex"])] != case["partitions"][column]
    ]
    assert not mismatched, f"landed elsewhere than Java says: {mismatched[:5]}"
    assert len(set(landed.values())) == count  # and the keys do spread


async def test_send_many_lands_where_java_puts_them(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    """The batch path computes partitions itself; check it against Java too."""
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=catalogue.prefix, partitions=catalogue.partitions
    )
    column = VECTORS["partition_counts"].index(catalogue.partitions)
    topic = catalogue.dlq.name  # takes raw values
    cases = VECTORS["vectors"]
    async with Producer(settings) as producer:
        await producer.send_many(
            OutgoingRecord(topic, bytes.fromhex(c["key_hex"]), str(i).encode(), [("type", b"raw")])
            for i, c in enumerate(cases)
        )
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    landed: dict[int, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(catalogue.partitions)])
        while len(landed) < len(cases):
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches
            for tp, messages in batches.items():
                for message in messages:
                    landed[int(message.value)] = tp.partition
    finally:
        await consumer.stop()
    assert [landed[i] for i in range(len(cases))] == [c["partitions"][column] for c in cases]


async def test_partitions_precomputed_for_another_count_are_refused(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=catalogue.prefix, partitions=catalogue.partitions
    )
    topic = catalogue.dlq.name
    records = [OutgoingRecord(topic, b"s1", b"v", [("type", b"raw")], partition_for_key(b"s1", 12))]
    async with Producer(settings) as producer:
        with pytest.raises(TopicMismatchError, match="partitioned for 12"):
            await producer.send_many(records, partition_count=12)
        with pytest.raises(TopicMismatchError):
            await producer.send_many(records)  # preset partitions need partition_count
        assert await producer.send_many([records[0]._replace(partition=None)]) == 1
    assert sum((await end_offsets(settings, topic)).values()) == 1

"""Producer configuration and record encoding (sending is in the integration tests)."""

from __future__ import annotations

from schemas import Codec, command_from_json
from streams.partitioner import murmur2_partitioner
from streams.producer import (
    MAX_BATCH_BYTES,
    MAX_REQUEST_BYTES,
    Producer,
    producer_config,
    type_headers,
)
from streams.settings import KafkaSettings


def test_every_producer_is_idempotent_acks_all_batched_and_murmur2() -> None:
    config = producer_config(KafkaSettings(bootstrap="k:9092"))
    assert config["bootstrap_servers"] == "k:9092"
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert 0 < config["linger_ms"] <= 10
    assert config["max_batch_size"] == MAX_BATCH_BYTES < MAX_REQUEST_BYTES
    assert config["partitioner"] is murmur2_partitioner
    assert producer_config(KafkaSettings(), linger_ms=0)["linger_ms"] == 0


def test_transactional_producer_keeps_the_guarantees() -> None:
    producer = Producer(KafkaSettings(), transactional_id="engine-inbox-3")
    assert producer._overrides == {"transactional_id": "engine-inbox-3"}


def test_type_headers_are_built_once_per_name() -> None:
    assert type_headers("Cancel") == [("type", b"Cancel")]
    assert type_headers("Cancel") is type_headers("Cancel")


def test_encode_keys_by_session_and_sets_the_type_header() -> None:
    codec = Codec()
    producer = Producer(KafkaSettings(), codec)
    name, record = command_from_json({"type": "Cancel", "session_id": "sé", "tenant_id": "acme"})
    out = producer.encode("t.inbox", name, record, headers=[("trace", b"1")])
    assert out.topic == "t.inbox"
    assert out.key == "sé".encode()
    assert list(out.headers) == [("type", b"Cancel"), ("trace", b"1")]
    assert codec.decode(out.value) == (name, record)
    assert type_headers("Cancel") == [("type", b"Cancel")]  # the cached list is untouched

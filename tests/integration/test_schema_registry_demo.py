"""An independent client decodes everything a demo wrote, through the registry alone.

After ``agentstream demo`` (worker processes, the load generator, one command the
engine dead-letters), every record of ``inbox``, ``events``, ``llm-calls``,
``tool-calls``, ``deltas`` and ``dlq`` is read with confluent-kafka (librdkafka) and
decoded with its ``AvroDeserializer`` + ``SchemaRegistryClient``: magic byte, schema
id, ``GET /schemas/ids/{id}``, what Kafka UI and Kafka Connect do. Not our codec.

The demo runs with the environment the tests have: with
``AGENTSTREAM_SCHEMA_REGISTRY_URL`` unset, that is the default this checks, the
registry ``agentstream infra up`` started and recorded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import RegistrySettings
from streams.catalogue import Catalogue

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = 12


def _cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"agentstream {args[0]}: {done.stdout}{done.stderr}"
    return done.stdout


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the demo's workers take one each)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + count < 65535 and all(_free(first + i) for i in range(count)):
            return first
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes | None, bytes]]:
    """Every committed record of ``topic`` (key, value), read with librdkafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"independent-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 60
        while any(
            consumer.position([TopicPartition(topic, p)])[0].offset < end
            for p, end in ends.items()
            if end > 0
        ):
            assert time.monotonic() < deadline, f"{topic}: did not reach the end offsets {ends}"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value = message.value()
            assert value is not None, f"{topic}: a record without a value"
            records.append((message.key(), value))
        return records
    finally:
        consumer.close()


def test_confluent_kafka_decodes_every_record_of_a_demo_through_the_registry(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    registry = RegistrySettings.from_env()
    assert registry.url is not None, (
        "no schema registry: run `agentstream infra up` (Java 21+) or set "
        "AGENTSTREAM_SCHEMA_REGISTRY_URL"
    )
    env = dict(
        os.environ,
        AGENTSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        AGENTSTREAM_TOPIC_PREFIX=catalogue.prefix,
        AGENTSTREAM_PARTITIONS=str(catalogue.partitions),
    )
    # A start for an agent that does not exist: the engine dead-letters it.
    refused = {"type": "StartSession", "session_id": f"refused-{uuid.uuid4().hex[:6]}"}
    refused |= {"tenant_id": "acme", "agent": "nobody", "input": "hello"}
    _cli(["produce", "--topic", "inbox"], env, stdin=json.dumps(refused) + "\n")
    out = _cli(
        ["demo", "--sessions", str(SESSIONS), "--concurrency", "6", "--port", str(_free_ports(2))],
        env,
    )
    assert f"{SESSIONS} started, {SESSIONS} completed" in out

    config: dict[str, Any] = {"url": registry.url}
    if registry.user:
        config["basic.auth.user.info"] = f"{registry.user}:{registry.password or ''}"
    client = SchemaRegistryClient(config)
    deserialize = AvroDeserializer(client)
    types: dict[str, Counter[str]] = {}
    dlq: list[dict[str, Any]] = []
    topics = (catalogue.inbox, catalogue.events, catalogue.llm_calls, catalogue.tool_calls)
    for spec in (*topics, catalogue.deltas, catalogue.dlq):
        seen: Counter[str] = Counter()
        records = _read_all(kafka_bootstrap, spec.name, catalogue.partitions)
        if spec is catalogue.dlq and not records:  # the engine may still be writing it
            time.sleep(2)
            records = _read_all(kafka_bootstrap, spec.name, catalogue.partitions)
        for key, value in records:
            assert value[0] == 0, f"{spec.name}: not the Confluent wire format"
            schema_id = int.from_bytes(value[1:5], "big")
            decoded = deserialize(value, SerializationContext(spec.name, MessageField.VALUE))
            assert isinstance(decoded, dict) and decoded["session_id"] == (key or b"").decode()
            name = json.loads(client.get_schema(schema_id).schema_str or "{}")["name"]
            seen[str(name).rsplit(".", 1)[-1]] += 1
            if spec is catalogue.dlq:
                dlq.append(decoded)
        types[spec.role] = seen

    assert types["inbox"]["StartSession"] == SESSIONS + 1, types["inbox"]
    assert types["events"]["SessionStarted"] == types["events"]["SessionCompleted"] == SESSIONS
    assert types["llm-calls"]["LLMCallWork"] >= SESSIONS, types["llm-calls"]
    assert types["tool-calls"]["ToolCallWork"] >= 1, types["tool-calls"]
    assert set(types["events"]) <= {
        "SessionStarted", "UserMessageAdded", "LLMCallRequested", "LLMCallCompleted",
        "ToolCallRequested", "ToolCallCompleted", "AssistantMessageAdded", "SessionCompleted",
    }, types["events"]  # fmt: skip
    assert [record["agent"] for record in dlq] == ["nobody"], dlq
    assert dlq[0]["session_id"] == refused["session_id"]

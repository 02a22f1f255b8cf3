"""One contract suite for both schema registries.

``LocalSchemaRegistry`` runs in process; ``ConfluentSchemaRegistry`` talks REST
to ``tests.registry_server`` on loopback. Both must give a codec the same
behaviour: stable ids for the same schema, any past version decodable, and a
breaking change refused by the compatibility check.
"""

from __future__ import annotations

import asyncio
import copy
import struct
import threading
from collections.abc import Iterator
from io import BytesIO

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import Codec, ConfluentSchemaRegistry, LocalSchemaRegistry, SchemaError, record_type
from schemas.records import history
from schemas.registry import SchemaRegistry
from tests.registry_server import RegistryState, start_registry
from tests.unit.avro_samples import sample


@pytest.fixture(scope="module")
def confluent_url() -> Iterator[tuple[str, RegistryState]]:
    """The protocol server in a thread of its own (the client is synchronous)."""
    state = RegistryState()
    ready = threading.Event()
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner, url = loop.run_until_complete(start_registry(state))
        holder["runner"], holder["url"] = runner, url
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield str(holder["url"]), state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(params=["local", "confluent"])
def registry(
    request: pytest.FixtureRequest, confluent_url: tuple[str, RegistryState]
) -> Iterator[SchemaRegistry]:
    if request.param == "local":
        yield LocalSchemaRegistry()
    else:
        client = ConfluentSchemaRegistry(confluent_url[0])
        yield client
        client.close()


def test_register_is_idempotent_and_get_returns_the_schema(registry: SchemaRegistry) -> None:
    schema = record_type("Cancel").schema
    first = registry.register("dev.agentstream.Cancel", schema)
    assert registry.register("dev.agentstream.Cancel", schema) == first
    assert registry.get(first)["name"] == "Cancel"


def test_unknown_id_is_a_schema_error(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaError):
        registry.get(987_654)


def test_codec_round_trips_through_the_registry(registry: SchemaRegistry) -> None:
    writer, reader = Codec(registry), Codec(registry)
    record = sample(record_type("LLMCallResult").schema)
    assert reader.decode(writer.encode("LLMCallResult", record)) == ("LLMCallResult", record)


def test_old_versions_written_by_others_decode(registry: SchemaRegistry) -> None:
    # SessionStarted v1 (before the timeout fields) registered by an older writer
    old = history("SessionStarted")[0]
    old_id = registry.register("dev.agentstream.SessionStarted", old)

    body = BytesIO()
    body.write(struct.pack(">bI", 0, old_id))
    schemaless_writer(body, parse_schema(old), sample(old))
    name, record = Codec(registry).decode(body.getvalue())
    assert name == "SessionStarted" and record["llm_timeout_ms"] == 0


def test_a_breaking_change_is_not_compatible(registry: SchemaRegistry) -> None:
    subject = "dev.agentstream.UserMessage"
    current = record_type("UserMessage").schema
    registry.register(subject, current)
    broken = copy.deepcopy(current)
    broken["fields"].append({"name": "urgent", "type": "boolean"})
    assert not registry.is_compatible(subject, broken)
    fine = copy.deepcopy(current)
    fine["fields"].append({"name": "urgent", "type": "boolean", "default": False})
    assert registry.is_compatible(subject, fine)


def test_the_rest_client_uses_the_registry_protocol(
    confluent_url: tuple[str, RegistryState],
) -> None:
    url, state = confluent_url
    before = len(state.requests)  # other tests' codecs registered every type already
    client = ConfluentSchemaRegistry(url)
    try:
        schema_id = client.register("dev.agentstream.Approval", record_type("Approval").schema)
        client.register("dev.agentstream.Approval", record_type("Approval").schema)  # cached
        fresh = ConfluentSchemaRegistry(url)
        assert fresh.get(schema_id)["name"] == "Approval"
        fresh.close()
    finally:
        client.close()
    approval = [r for r in state.requests[before:] if "Approval" in r]
    assert approval == ["POST /subjects/dev.agentstream.Approval/versions"]
    assert f"GET /schemas/ids/{schema_id}" in state.requests

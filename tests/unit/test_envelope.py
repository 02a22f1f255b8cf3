"""An event's envelope read without decoding the rest equals the fully decoded fields
(``call_id`` too where it follows ``seq``, as in every result event), for every event
type and every past version of its schema; other records are left to the full decoder;
bytes that end inside the envelope are refused."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import EVENT_NAMES, Codec, SchemaError, record_type
from schemas.envelope import EnvelopeReader
from schemas.records import history
from tests.unit.avro_samples import sample

RESULTS = {"LLMCallCompleted", "LLMCallFailed", "ToolCallCompleted", "ToolCallFailed"}


def _variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    base = sample(schema)
    long_text = "x" * 300  # lengths past one varint byte
    return [
        base,
        {**base, "causation_id": None, "correlation_id": None, "seq": 1},
        {**base, "event_id": long_text, "session_id": "é" * 100, "tenant_id": long_text,
         "causation_id": long_text, "seq": 2**40, "time_ms": 1_700_000_000_123},
        {**base, "correlation_id": "c", "causation_id": None, "seq": 63},
        {**base, "seq": 64},
    ]  # fmt: skip


def _encode(codec: Codec, name: str, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    schema_id = codec.registry.register(record_type(name).full_name, schema)
    buffer = BytesIO()
    buffer.write(struct.pack(">bI", 0, schema_id))
    schemaless_writer(buffer, parse_schema(schema), record)
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(EVENT_NAMES))
def test_the_envelope_equals_the_decoded_fields(name: str) -> None:
    codec = Codec()
    reader = EnvelopeReader(codec)
    for schema in (record_type(name).schema, *history(name)):
        for record in _variants(schema):
            value = _encode(codec, name, schema, record)
            decoded_name, decoded = codec.decode(value)
            envelope = reader.read(value)
            assert envelope is not None, name
            follows = schema["fields"][7]["name"] if len(schema["fields"]) > 7 else None
            call = decoded["call_id"].encode() if follows == "call_id" else None
            assert follows == "call_id" or name not in RESULTS  # results carry their call
            assert envelope == (
                decoded_name, decoded["event_id"].encode(), decoded["session_id"].encode(),
                decoded["seq"], decoded["time_ms"], call,
            )  # fmt: skip


def test_records_without_the_envelope_are_left_to_the_decoder() -> None:
    codec = Codec()
    command = sample(record_type("StartSession").schema)
    value = codec.encode("StartSession", command)
    assert EnvelopeReader(codec).read(value) is None


def test_bytes_that_are_not_an_event_are_refused() -> None:
    codec = Codec()
    reader = EnvelopeReader(codec)
    value = codec.encode("LLMCallCompleted", sample(record_type("LLMCallCompleted").schema))
    with pytest.raises(SchemaError):
        reader.read(value[:12])
    with pytest.raises(SchemaError):
        reader.read(b"\x01" + value[1:])

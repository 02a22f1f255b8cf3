"""Codec round trips, the wire format, and the JSON form's validation."""

from __future__ import annotations

import struct

import pytest

from schemas import (
    COMMAND_NAMES,
    RECORD_NAMES,
    Codec,
    LocalSchemaRegistry,
    RecordValidationError,
    SchemaError,
    command_from_json,
    record_from_json,
    record_to_json,
    record_type,
)
from schemas.registry import local_schema_id
from tests.unit.avro_samples import sample

ENVELOPE = ("event_id", "session_id", "tenant_id", "time_ms", "causation_id", "correlation_id")


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(LocalSchemaRegistry())  # these tests are about the fingerprint ids


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_record_round_trips_in_wire_format(codec: Codec, name: str) -> None:
    record = sample(record_type(name).schema)
    value = codec.encode(name, record)
    magic, schema_id = struct.unpack(">bI", value[:5])
    assert magic == 0
    assert schema_id == codec.schema_id(name) == local_schema_id(record_type(name).schema)
    assert codec.decode(value) == (name, record)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_record_carries_the_envelope(name: str) -> None:
    fields = [f["name"] for f in record_type(name).schema["fields"]]
    assert fields[: len(ENVELOPE)] == list(ENVELOPE)
    if record_type(name).kind == "event":
        assert "seq" in fields
    if ("Call" in name and name not in ("LLMCallWork",)) or name in ("Approval",):
        assert "call_id" in fields


def test_ids_are_stable_across_codecs_and_registries() -> None:
    first, second = Codec(LocalSchemaRegistry()), Codec(LocalSchemaRegistry())
    assert [first.schema_id(n) for n in RECORD_NAMES] == [second.schema_id(n) for n in RECORD_NAMES]
    assert len({first.schema_id(n) for n in RECORD_NAMES}) == len(RECORD_NAMES)


def test_decode_refuses_other_wire_formats(codec: Codec) -> None:
    with pytest.raises(SchemaError, match="wire format"):
        codec.decode(b'{"type": "StartSession"}')
    with pytest.raises(SchemaError, match="unknown schema id"):
        codec.decode(b"\x00\x00\x00\x00\x05abc")


def test_decode_of_truncated_body_is_a_schema_error(codec: Codec) -> None:
    value = codec.encode("UserMessage", sample(record_type("UserMessage").schema))
    with pytest.raises(SchemaError, match="cannot decode UserMessage"):
        codec.decode(value[:12])


def test_encode_of_bad_record_is_a_schema_error(codec: Codec) -> None:
    with pytest.raises(SchemaError, match="cannot encode Cancel"):
        codec.encode("Cancel", {"session_id": 3})


def test_json_form_fills_generated_fields_and_defaults() -> None:
    name, record = command_from_json(
        {
            "type": "StartSession",
            "session_id": "s1",
            "tenant_id": "acme",
            "agent": "demo",
            "input": "hi",
        }
    )
    assert name == "StartSession"
    assert len(record["event_id"]) == 36 and record["time_ms"] > 1_600_000_000_000
    assert record["keep_open"] is False and record["metadata"] == {}
    assert record_to_json(name, record)["type"] == "StartSession"
    assert Codec().decode(Codec().encode(name, record)) == (name, record)


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ([1, 2], "", "expected a JSON object"),
        ({"session_id": "s"}, "type", "missing record type"),
        ({"type": "SessionStarted", "session_id": "s"}, "type", "is not one of"),
        ({"type": "StartSession", "session_id": "s", "tenant_id": "t", "agent": "a"}, "input", "missing required"),
        ({"type": "StartSession", "session_id": "s", "tenant_id": "t", "agent": "a", "input": 1}, "input", "expected a string"),
        ({"type": "StartSession", "session_id": "", "tenant_id": "t", "agent": "a", "input": "x"}, "session_id", "must not be empty"),
        ({"type": "StartSession", "session_id": "s", "tenant_id": "t", "agent": "a", "input": "x", "keep_opn": True}, "keep_opn", "unknown field"),
        ({"type": "Cancel", "session_id": "s", "tenant_id": "t", "time_ms": "now"}, "time_ms", "expected an integer"),
        ({"type": "Approval", "session_id": "s", "tenant_id": "t", "call_id": "c", "approved": "yes"}, "approved", "expected true or false"),
        ({"type": "LLMCallResult", "session_id": "s", "tenant_id": "t", "call_id": "c", "ok": True, "tool_calls": [{"call_id": "x", "name": "n"}]}, "tool_calls[0].arguments_json", "missing required"),
    ],
)  # fmt: skip
def test_json_form_names_the_bad_field(obj: object, field: str, reason: str) -> None:
    with pytest.raises(RecordValidationError) as caught:
        command_from_json(obj)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_record_from_json_accepts_events_when_asked() -> None:
    obj = sample(record_type("SessionStarted").schema)
    name, record = record_from_json({"type": "SessionStarted", **obj})
    assert name == "SessionStarted" and record == obj
    assert "SessionStarted" not in COMMAND_NAMES

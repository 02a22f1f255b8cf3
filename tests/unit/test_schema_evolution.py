"""Every past version of every schema must read as the current version."""

from __future__ import annotations

import copy
import io
import struct
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import RECORD_NAMES, Codec, LocalSchemaRegistry, record_type
from schemas.evolution import backward_problems, check_all
from schemas.records import history
from tests.unit.avro_samples import sample

MATRIX = [(name, v, old) for name in RECORD_NAMES for v, old in enumerate(history(name), start=1)]


def test_every_record_has_a_history() -> None:
    assert all(history(name) for name in RECORD_NAMES)
    assert check_all() == []


@pytest.mark.parametrize(
    ("name", "version", "old"), MATRIX, ids=[f"{n}-v{v}" for n, v, _ in MATRIX]
)
def test_old_version_reads_as_current(name: str, version: int, old: dict[str, Any]) -> None:
    codec = Codec(LocalSchemaRegistry())
    registry = codec.registry
    assert isinstance(registry, LocalSchemaRegistry)
    old_id = registry.register(record_type(name).full_name, old)
    record = sample(old)
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", 0, old_id))
    schemaless_writer(buffer, parse_schema(old), record)
    decoded_name, decoded = codec.decode(buffer.getvalue())
    assert decoded_name == name
    current_fields = {f["name"] for f in record_type(name).schema["fields"]}
    assert set(decoded) == current_fields
    for field in current_fields & set(record):
        assert decoded[field] == record[field]


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return changed


def test_a_field_added_without_default_is_named() -> None:
    current = record_type("StartSession").schema
    broken = _with_field(current, {"name": "priority", "type": "int"})
    assert backward_problems(current, broken) == [
        "StartSession.priority: field added without a default"
    ]
    assert (
        backward_problems(
            current, _with_field(current, {"name": "priority", "type": "int", "default": 0})
        )
        == []
    )


def test_a_type_change_is_named() -> None:
    current = record_type("UserMessage").schema
    changed = copy.deepcopy(current)
    for field in changed["fields"]:
        if field["name"] == "text":
            field["type"] = "long"
    assert backward_problems(current, changed) == [
        "UserMessage.text: type changed from string to long"
    ]


def test_promotions_and_nested_records_are_checked() -> None:
    current = record_type("LLMCallResult").schema
    promoted = copy.deepcopy(current)
    for field in promoted["fields"]:
        if field["name"] == "attempts":
            field["type"] = "long"  # int -> long is a legal promotion
    assert backward_problems(current, promoted) == []
    nested = copy.deepcopy(current)
    for field in nested["fields"]:
        if field["name"] == "tool_calls":
            field["type"]["items"]["fields"].append({"name": "index", "type": "int"})
    assert backward_problems(current, nested) == [
        "LLMCallResult.tool_calls[].index: field added without a default"
    ]


def test_local_registry_compatibility_check_uses_history() -> None:
    registry = LocalSchemaRegistry()
    subject = record_type("Cancel").full_name
    registry.register(subject, record_type("Cancel").schema)
    broken = _with_field(record_type("Cancel").schema, {"name": "by", "type": "string"})
    assert not registry.is_compatible(subject, broken)
    mended = _with_field(
        record_type("Cancel").schema, {"name": "by", "type": "string", "default": ""}
    )
    assert registry.is_compatible(subject, mended)

"""Avro schemas of every command, event and work item, and their wire format.

What other packages import from here::

    Codec                    encode/decode in the Confluent wire format
    SchemaRegistry           the registry contract; LocalSchemaRegistry (default,
                             stable ids) and ConfluentSchemaRegistry (REST client)
    record_from_json,        JSON form (fields + "type") -> validated record
    command_from_json
    record_to_json           record -> JSON form
    COMMAND_NAMES, EVENT_NAMES, WORK_NAMES, RECORD_NAMES, TERMINAL_EVENT_NAMES
    SchemaError, RecordValidationError

This package imports nothing of ours (it is the bottom of the dependency graph).
"""

from schemas.codec import Codec
from schemas.errors import RecordValidationError, SchemaError
from schemas.jsonform import command_from_json, record_from_json, record_to_json
from schemas.records import (
    COMMAND_NAMES,
    EVENT_NAMES,
    RECORD_NAMES,
    TERMINAL_EVENT_NAMES,
    WORK_NAMES,
    RecordType,
    record_type,
    record_types,
)
from schemas.registry import ConfluentSchemaRegistry, LocalSchemaRegistry, SchemaRegistry

__all__ = [
    "COMMAND_NAMES",
    "EVENT_NAMES",
    "RECORD_NAMES",
    "TERMINAL_EVENT_NAMES",
    "WORK_NAMES",
    "Codec",
    "ConfluentSchemaRegistry",
    "LocalSchemaRegistry",
    "RecordType",
    "RecordValidationError",
    "SchemaError",
    "SchemaRegistry",
    "command_from_json",
    "record_from_json",
    "record_to_json",
    "record_type",
    "record_types",
]

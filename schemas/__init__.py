"""Avro schemas of every command, event and work item, and their wire format.

What other packages import from here::

    Codec                    encode/decode in the Confluent wire format
    SchemaRegistry           the registry contract; LocalSchemaRegistry (no registry:
                             stable fingerprint ids) and ConfluentSchemaRegistry (REST client)
    RegistrySettings,        which registry every component uses
    default_registry         (AGENTSTREAM_SCHEMA_REGISTRY_URL, else `infra up`'s; schemas.settings)
    record_from_json,        JSON form (fields + "type") -> validated record
    command_from_json
    record_to_json           record -> JSON form
    COMMAND_NAMES, EVENT_NAMES, WORK_NAMES, RECORD_NAMES, TERMINAL_EVENT_NAMES
    SchemaError, RecordValidationError, SchemaNotFoundError,
    SchemaRegistryUnavailableError   (not a SchemaError: retry, never dead-letter)

This package imports nothing of ours (it is the bottom of the dependency graph).
"""

from schemas.codec import Codec
from schemas.errors import (
    RecordValidationError,
    SchemaError,
    SchemaNotFoundError,
    SchemaRegistryUnavailableError,
)
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
from schemas.settings import RegistrySettings, default_registry

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
    "RegistrySettings",
    "SchemaError",
    "SchemaNotFoundError",
    "SchemaRegistry",
    "SchemaRegistryUnavailableError",
    "command_from_json",
    "default_registry",
    "record_from_json",
    "record_to_json",
    "record_type",
    "record_types",
]

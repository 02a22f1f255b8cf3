"""Encode and decode our records in the Confluent wire format.

A value on our topics is ``0x00`` (magic byte), the writer schema's id as a
4-byte big-endian integer, then the fastavro *schemaless* body. Decoding looks
the writer's schema up by id and resolves it to the current (reader) schema, so
records written by any past version read as the current version.

This is on the per-event hot path: everything that can be computed once per
record type (parsed schemas, the 5-byte prefix) is cached.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.errors import SchemaError, SchemaNotFoundError
from schemas.records import history, record_type, record_types
from schemas.registry import LocalSchemaRegistry, SchemaRegistry
from schemas.settings import default_registry

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


@dataclass(frozen=True, slots=True)
class _Writer:
    prefix: bytes
    """Magic byte and schema id, written before every body."""
    parsed: Any
    """The fastavro-parsed current schema."""


@dataclass(frozen=True, slots=True)
class _Reader:
    name: str
    """Simple record name of the writer's schema."""
    writer: Any
    """fastavro-parsed writer schema."""
    reader: Any
    """fastavro-parsed current schema, or None when it equals the writer's."""


def _simple_name(schema: dict[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


_local_ids: LocalSchemaRegistry | None = None


def _local_ids_fallback(schema_id: int) -> dict[str, Any]:
    """The schema behind a local fingerprint id (every version of every record type);
    ``SchemaNotFoundError`` when ``schema_id`` is not one of them either."""
    global _local_ids
    if _local_ids is None:
        local = LocalSchemaRegistry()
        for name, rtype in record_types().items():
            for version in (*history(name), rtype.schema):
                local.register(rtype.full_name, version)
        _local_ids = local
    try:
        return _local_ids.get(schema_id)
    except SchemaNotFoundError:
        raise SchemaNotFoundError(
            f"unknown schema id {schema_id}: neither the schema registry nor our local "
            "fingerprint ids know it"
        ) from None


class Codec:
    """Encodes records of our types; decodes any version of them.

    Without an explicit ``registry`` it uses the one the environment selects
    (:func:`schemas.settings.default_registry`), so every component of a process
    makes the same choice. With the local registry every current and past schema
    is registered up front, so decoding never misses. With a Confluent-API registry,
    every current schema is registered when the codec is made, and ids of other
    versions are fetched once when met; an id the registry does not know is then
    looked up among our local fingerprint ids, so a log written before a registry was
    configured stays readable.
    """

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self._registry: SchemaRegistry = registry or default_registry()
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._current_parsed: dict[str, Any] = {}
        if isinstance(self._registry, LocalSchemaRegistry):
            for name, rtype in record_types().items():
                for old in history(name):
                    self._registry.register(rtype.full_name, old)
                self._writer(name)
        else:
            # Every current schema now, once per process (the client caches): a registry
            # that is away or refuses a schema fails the component as it starts, not a
            # record in flight, and encoding never waits on HTTP afterwards.
            for name in record_types():
                self._writer(name)

    @property
    def registry(self) -> SchemaRegistry:
        return self._registry

    def _current(self, name: str) -> Any:
        parsed = self._current_parsed.get(name)
        if parsed is None:
            parsed = parse_schema(record_type(name).schema)
            self._current_parsed[name] = parsed
        return parsed

    def _writer(self, name: str) -> _Writer:
        writer = self._writers.get(name)
        if writer is None:
            rtype = record_type(name)
            schema_id = self._registry.register(rtype.full_name, rtype.schema)
            writer = _Writer(_HEADER.pack(MAGIC_BYTE, schema_id), self._current(name))
            self._writers[name] = writer
            self._readers[schema_id] = _Reader(name, writer.parsed, None)
        return writer

    def schema_id(self, name: str) -> int:
        """The id the current schema of ``name`` is written with."""
        return int(_HEADER.unpack(self._writer(name).prefix)[1])

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Wire-format bytes of ``record`` as the current version of ``name``."""
        writer = self._writer(name)
        buffer = BytesIO()
        buffer.write(writer.prefix)
        try:
            schemaless_writer(buffer, writer.parsed, record)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise SchemaError(f"cannot encode {name}: {error}") from error
        return buffer.getvalue()

    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is None:
            try:
                writer_schema = self._registry.get(schema_id)
            except SchemaNotFoundError:
                if isinstance(self._registry, LocalSchemaRegistry):
                    raise
                writer_schema = _local_ids_fallback(schema_id)
            name = _simple_name(writer_schema)
            reader = _Reader(name, parse_schema(writer_schema), self._current(name))
            self._readers[schema_id] = reader
        return reader

    def decode(self, value: bytes) -> tuple[str, dict[str, Any]]:
        """The record name and the record, resolved to the current schema."""
        if len(value) < 5 or value[0] != MAGIC_BYTE:
            raise SchemaError("not in the Confluent wire format (magic byte 0 + schema id)")
        schema_id = _HEADER.unpack_from(value)[1]
        reader = self._reader(schema_id)
        buffer = BytesIO(value)
        buffer.seek(5)
        try:
            record = schemaless_reader(buffer, reader.writer, reader.reader)
        except Exception as error:  # fastavro raises many types on corrupt bodies
            raise SchemaError(
                f"cannot decode {reader.name} (schema id {schema_id}): {error}"
            ) from error
        if not isinstance(record, dict):
            raise SchemaError(f"{reader.name} did not decode to a record")
        return reader.name, record

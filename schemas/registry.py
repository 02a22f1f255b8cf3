"""Schema registries: where a schema id in the Confluent wire format comes from.

Two implementations share one contract (``SchemaRegistry``), and one test suite
runs against both:

* ``LocalSchemaRegistry``: used when no registry is configured. A schema's id is
  derived from the Rabin fingerprint of its Parsing Canonical Form, so every
  process on every machine agrees on the ids without talking to anyone, and ids
  are stable across runs.
* ``ConfluentSchemaRegistry``: a client of the Confluent Schema Registry REST API
  (register, fetch by id, compatibility check), so Kafka UI, Kafka Connect and any
  Confluent-compatible consumer can read our topics.

Subjects follow the RecordNameStrategy (the full record name), because one topic
carries several record types.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

import httpx
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.errors import SchemaError


class SchemaRegistry(Protocol):
    """Maps schemas to ids and back."""

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id."""
        ...

    def get(self, schema_id: int) -> dict[str, Any]:
        """The schema with this id; SchemaError when there is none."""
        ...

    def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        """Whether ``schema`` may be registered as the next version of ``subject``."""
        ...


def canonical_form(schema: dict[str, Any]) -> str:
    """The Avro Parsing Canonical Form: what two equal schemas share, docs aside."""
    return str(to_parsing_canonical_form(schema))


def local_schema_id(schema: dict[str, Any]) -> int:
    """A stable id in 1..2**31-1 from the schema's CRC-64-AVRO fingerprint."""
    digest = int(fingerprint(canonical_form(schema), "CRC-64-AVRO"), 16)
    return (digest & 0x7FFFFFFF) or 1


class LocalSchemaRegistry:
    """An in-process registry whose ids every process derives the same way."""

    def __init__(self) -> None:
        self._by_id: dict[int, dict[str, Any]] = {}
        self._subjects: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        schema_id = local_schema_id(schema)
        with self._lock:
            known = self._by_id.get(schema_id)
            if known is not None and canonical_form(known) != canonical_form(schema):
                raise SchemaError(f"schema id collision for {subject} (id {schema_id})")
            self._by_id[schema_id] = schema
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
        return schema_id

    def get(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise SchemaError(f"unknown schema id {schema_id} in the local registry") from None

    def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        from schemas.evolution import backward_problems

        with self._lock:
            ids = list(self._subjects.get(subject, ()))
        return all(not backward_problems(self._by_id[i], schema) for i in ids)


class ConfluentSchemaRegistry:
    """A small synchronous client of the Confluent Schema Registry REST API.

    Synchronous on purpose: it is called when a codec first meets a record type
    or an unknown id, then never again for that schema (results are cached).
    """

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=timeout_s,
            headers={"Content-Type": self._CONTENT_TYPE, "Accept": self._CONTENT_TYPE},
        )
        self._by_id: dict[int, dict[str, Any]] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._client.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            raise SchemaError(
                f"schema registry {method} {path}: HTTP {response.status_code}: {detail}"
            )
        return response.json()

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        key = (subject, canonical_form(schema))
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})
        schema_id = int(answer["id"])
        self._ids[key] = schema_id
        self._by_id[schema_id] = schema
        return schema_id

    def get(self, schema_id: int) -> dict[str, Any]:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        schema: dict[str, Any] = json.loads(answer["schema"])
        self._by_id[schema_id] = schema
        return schema

    def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        try:
            answer = self._call(
                "POST",
                f"/compatibility/subjects/{subject}/versions/latest",
                {"schema": json.dumps(schema)},
            )
        except SchemaError as error:
            if "HTTP 404" in str(error):  # no version yet: anything is compatible
                return True
            raise
        return bool(answer.get("is_compatible", False))

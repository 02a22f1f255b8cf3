"""Schema registries: where a schema id in the Confluent wire format comes from.

Two implementations share one contract (``SchemaRegistry``), and one test suite
runs against both:

* ``LocalSchemaRegistry``: used when no registry is configured. A schema's id is
  derived from the Rabin fingerprint of its Parsing Canonical Form, so every
  process on every machine agrees on the ids without talking to anyone, and ids
  are stable across runs.
* ``ConfluentSchemaRegistry``: a client of the Confluent Schema Registry REST API
  (register, fetch by id, compatibility check), so Kafka UI, Kafka Connect and any
  Confluent-compatible consumer can read our topics. It speaks to any registry with
  that API: Confluent's, Apicurio's ``/apis/ccompat/v7``, Karapace, Redpanda's.

Which one a process uses is decided in one place, :mod:`schemas.settings`.

Subjects follow the **RecordNameStrategy**: the subject is the record's full name
(``dev.agentstream.SessionStarted``), not the topic. One topic carries several
record types (the inbox carries every command, ``events`` every event), so the
default TopicNameStrategy (one subject per topic) cannot hold them. We do not use
TopicRecordNameStrategy (``<topic>-<record>``) either, because a record's bytes are
not tied to one topic: the DLQ keeps the original bytes of a record from any topic
and ``dlq redrive`` sends them back, and topic names carry a deployment prefix, so a
topic-bound subject would split one record type into as many unrelated
compatibility histories as there are prefixes. With the record name, each type has
one evolution line, checked by the registry wherever the type is written.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

import httpx
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.errors import SchemaError, SchemaNotFoundError, SchemaRegistryUnavailableError


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
            raise SchemaNotFoundError(
                f"unknown schema id {schema_id}: no version of our schemas has it. Records "
                "written through a schema registry are read by setting "
                "AGENTSTREAM_SCHEMA_REGISTRY_URL to that registry"
            ) from None

    def is_compatible(self, subject: str, schema: dict[str, Any]) -> bool:
        from schemas.evolution import backward_problems

        with self._lock:
            ids = list(self._subjects.get(subject, ()))
        return all(not backward_problems(self._by_id[i], schema) for i in ids)


class ConfluentSchemaRegistry:
    """A small synchronous client of the Confluent Schema Registry REST API.

    Synchronous on purpose: it is called when a codec first meets a record type
    or an unknown id, then never again for that schema (results are cached).

    Errors say what the caller should do with them: an unknown id is a
    :class:`SchemaNotFoundError` (the record cannot be read: a poison record), an
    incompatible schema or a bad request a :class:`SchemaError`; a registry that does
    not answer (connection refused, timeout, HTTP 5xx, retried for about
    ``retry_for_s`` seconds) or refuses our credentials is a
    :class:`SchemaRegistryUnavailableError`, which is not a ``SchemaError``, so no
    record is dead-lettered because the registry was briefly away.
    """

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        retry_for_s: float = 5.0,
        source: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self._named = f"{self.url} ({source})" if source else self.url
        self._client = httpx.Client(
            base_url=self.url,
            timeout=timeout_s,
            auth=(user, password or "") if user else None,
            headers={"Content-Type": self._CONTENT_TYPE, "Accept": self._CONTENT_TYPE},
        )
        self._retry_for_s = retry_for_s
        self._by_id: dict[int, dict[str, Any]] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        """One request, retried with backoff while the registry is away (or overloaded)."""
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.2
        while True:
            try:
                response = self._client.request(method, path, json=body)
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            if time.monotonic() + delay > deadline:
                raise SchemaRegistryUnavailableError(
                    f"schema registry {self._named} did not answer {method} {path} "
                    f"({problem}); is it running? (`agentstream infra status`; set "
                    "AGENTSTREAM_SCHEMA_REGISTRY_URL=local to use none)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._send(method, path, body)
        if response.status_code in (401, 403):
            raise SchemaRegistryUnavailableError(
                f"schema registry {self._named} refused our credentials "
                f"(HTTP {response.status_code}); check AGENTSTREAM_SCHEMA_REGISTRY_USER "
                "and AGENTSTREAM_SCHEMA_REGISTRY_PASSWORD"
            )
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            message = (
                f"schema registry {method} {self.url}{path}: HTTP {response.status_code}: {detail}"
            )
            if response.status_code == 404:
                raise SchemaNotFoundError(message)
            raise SchemaError(message)
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
        except SchemaNotFoundError:  # no version yet: anything is compatible
            return True
        return bool(answer.get("is_compatible", False))

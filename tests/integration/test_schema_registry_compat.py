"""The real registry `agentstream infra up` starts (Apicurio Registry, Confluent API) enforces
our evolution rule itself, and keeps every id across a restart.

Every ``schemas/avsc/history/`` version of every record type is registered in order
under BACKWARD compatibility (the registry's global default, set by ``infra up``); a
breaking change is refused by the registry with HTTP 409. Subjects are named
``<test prefix>-<record name>`` so runs never meet each other or the product's own
subjects, and are deleted afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from schemas import (
    RECORD_NAMES,
    ConfluentSchemaRegistry,
    RegistrySettings,
    SchemaError,
    record_type,
)
from schemas.records import history

pytestmark = pytest.mark.integration

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@pytest.fixture(scope="module")
def registry() -> RegistrySettings:
    """The registry every component would use here; fails (never skips) when there is none."""
    settings = RegistrySettings.from_env()
    if settings.url is None:
        raise RuntimeError(
            "these tests need a schema registry: run `agentstream infra up` (it starts "
            "Apicurio Registry; Java 21+) or set AGENTSTREAM_SCHEMA_REGISTRY_URL"
        )
    return settings


@pytest.fixture
def http(registry: RegistrySettings) -> Iterator[httpx.Client]:
    auth = (registry.user, registry.password or "") if registry.user else None
    with httpx.Client(
        base_url=str(registry.url), auth=auth, timeout=30, headers={"Content-Type": CONTENT_TYPE}
    ) as client:
        yield client


@pytest.fixture
def subjects(http: httpx.Client) -> Iterator[list[str]]:
    """Subjects the test registers; each is deleted (soft, then permanently) afterwards."""
    made: list[str] = []
    yield made
    for subject in made:
        http.delete(f"/subjects/{subject}")
        http.delete(f"/subjects/{subject}", params={"permanent": "true"})


def _client(registry: RegistrySettings) -> ConfluentSchemaRegistry:
    assert registry.url is not None
    return ConfluentSchemaRegistry(registry.url, user=registry.user, password=registry.password)


def _register(http: httpx.Client, subject: str, schema: dict[str, Any]) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": json.dumps(schema)})


def test_the_registry_defaults_to_backward_compatibility(http: httpx.Client) -> None:
    config = http.get("/config").json()
    assert config["compatibilityLevel"] in ("BACKWARD", "BACKWARD_TRANSITIVE", "FULL")


def test_every_history_version_registers_in_order_and_a_breaking_change_is_refused(
    registry: RegistrySettings, http: httpx.Client, subjects: list[str]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    client = _client(registry)
    try:
        for name in RECORD_NAMES:
            subject = f"{prefix}-{record_type(name).full_name}"
            subjects.append(subject)
            ids = [client.register(subject, version) for version in history(name)]
            assert len(set(ids)) == len(ids), f"{name}: two versions got one id"
            # The current schema is the last history version: the same id, no new version.
            assert client.register(subject, record_type(name).schema) == ids[-1]
            versions = http.get(f"/subjects/{subject}/versions")
            assert len(versions.json()) == len(history(name))
            assert [client.get(i) for i in ids] == list(history(name))
    finally:
        client.close()
    assert len(subjects) == len(RECORD_NAMES)

    subject = f"{prefix}-{record_type('StartSession').full_name}"
    current = record_type("StartSession").schema
    breaking: dict[str, dict[str, Any]] = {}
    breaking["a field without a default"] = copy.deepcopy(current)
    breaking["a field without a default"]["fields"].append({"name": "priority", "type": "int"})
    breaking["a field's type narrowed"] = copy.deepcopy(current)
    for field in breaking["a field's type narrowed"]["fields"]:
        if field["name"] == "time_ms":
            field["type"] = "int"  # long data cannot be read as int
    for why, schema in breaking.items():
        refused = _register(http, subject, schema)
        assert refused.status_code == 409, f"{why}: {refused.status_code} {refused.text}"
        check = http.post(
            f"/compatibility/subjects/{subject}/versions/latest",
            json={"schema": json.dumps(schema)},
        )
        assert check.json()["is_compatible"] is False, why
    with pytest.raises(SchemaError, match="HTTP 409"):
        _client(registry).register(subject, breaking["a field's type narrowed"])

    # The rule refuses what breaks, not every change: a field with a default is fine.
    fine = copy.deepcopy(current)
    fine["fields"].append({"name": "priority", "type": "int", "default": 0})
    assert _register(http, subject, fine).status_code == 200


def test_a_restart_keeps_every_id(
    registry: RegistrySettings, http: httpx.Client, subjects: list[str]
) -> None:
    """Durable storage: ids are what readers of old records ask for, forever."""
    from infra import local
    from infra import registry as infra_registry

    reg = local.local_registry()
    if registry.url != reg.url or reg.pid() is None:
        pytest.skip(f"the registry at {registry.url} is not one `agentstream infra up` started")
    subject = f"t{uuid.uuid4().hex[:8]}-dev.agentstream.Restart"
    subjects.append(subject)
    fields = [{"name": "at", "type": "string", "default": uuid.uuid4().hex}]  # new content
    schema = {"type": "record", "name": "Restart", "namespace": "dev.agentstream", "fields": fields}
    before = _register(http, subject, schema).json()["id"]

    infra_registry.stop(reg, print)
    assert reg.pid() is None and not infra_registry.ready(reg.ready_url)
    database_url = os.environ.get(
        "AGENTSTREAM_DATABASE_URL",
        "postgresql://agentstream:agentstream@127.0.0.1:55432/agentstream",
    )
    infra_registry.start(reg, database_url, print)
    infra_registry.wait_ready(reg, print)

    stored = json.loads(http.get(f"/schemas/ids/{before}").json()["schema"])
    assert stored["fields"] == schema["fields"]
    assert _register(http, subject, schema).json()["id"] == before
    assert reg.record.exists()  # components find it again

"""Which schema registry every component uses: decided here, and only here.

``Codec()`` (and so every producer, consumer, engine, executor, projector, the
gateway and the CLI) asks :func:`default_registry`, which reads, in this order:

1. ``AGENTSTREAM_SCHEMA_REGISTRY_URL``: the base URL of any registry with the
   Confluent REST API (Confluent Schema Registry, Apicurio's
   ``http://host:8081/apis/ccompat/v7``, Karapace, Redpanda), with
   ``AGENTSTREAM_SCHEMA_REGISTRY_USER`` / ``_PASSWORD`` for HTTP basic auth (managed
   registries: the API key and secret). The value ``local`` means no registry: the
   local fingerprint ids (:class:`schemas.registry.LocalSchemaRegistry`).
2. Unset: the registry ``agentstream infra up`` started, if it recorded one in
   ``<home>/registry/registry.json`` (``<home>`` is ``$AGENTSTREAM_HOME`` or
   ``<repo>/.agentstream``, as for the rest of the local infra). ``infra down``
   removes the record, so after it components fall back to the local ids; a record
   left by a crash or a reboot names a registry that does not answer, and the first
   encode then fails with an error saying so rather than silently writing ids no
   other client can resolve.
3. Otherwise the local fingerprint registry (unit tests, a laptop without Java 21).

So on one machine every process, whether started by the CLI, a test or a script,
makes the same choice. Readers also decode records written with the local ids while
a registry is configured (a log that predates the registry), see
:class:`schemas.codec.Codec`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import SchemaError
from schemas.registry import ConfluentSchemaRegistry, LocalSchemaRegistry, SchemaRegistry

URL_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_URL"
USER_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_USER"
PASSWORD_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_PASSWORD"
NO_REGISTRY = "local"
"""The value of ``AGENTSTREAM_SCHEMA_REGISTRY_URL`` that selects the local fingerprint ids."""


def infra_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``agentstream infra`` keeps its state: the same rule as ``infra.local.home``
    (repeated here because ``schemas`` imports nothing of ours; a unit test keeps the
    two in step)."""
    env = os.environ if environ is None else environ
    configured = env.get("AGENTSTREAM_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".agentstream"


def infra_record(environ: Mapping[str, str] | None = None) -> Path:
    """The file in which ``agentstream infra up`` records the registry it started."""
    return infra_home(environ) / "registry" / "registry.json"


@dataclass(frozen=True)
class RegistrySettings:
    """Where the schema registry is; ``url`` None means the local fingerprint ids."""

    url: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = ""
    """Where ``url`` came from (the variable or the infra record), for messages."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RegistrySettings:
        env = os.environ if environ is None else environ
        user = env.get(USER_ENV, "").strip() or None
        password = env.get(PASSWORD_ENV) or None
        configured = env.get(URL_ENV, "").strip()
        if configured.lower() == NO_REGISTRY:
            return cls(source=f"{URL_ENV}={NO_REGISTRY}")
        if configured:
            if not configured.startswith(("http://", "https://")):
                raise SchemaError(
                    f"{URL_ENV}={configured!r} is neither an http(s) URL nor {NO_REGISTRY!r}"
                )
            return cls(configured.rstrip("/"), user, password, URL_ENV)
        record = infra_record(env)
        try:
            url = str(json.loads(record.read_text())["url"])
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SchemaError(
                f"unreadable schema registry record {record} ({error}); run "
                f"`agentstream infra up`, or set {URL_ENV}"
            ) from error
        return cls(
            url.rstrip("/"), user, password, f"recorded by `agentstream infra up` in {record}"
        )


_clients: dict[tuple[str, str | None, str | None], ConfluentSchemaRegistry] = {}
_clients_lock = threading.Lock()


def registry_for(settings: RegistrySettings) -> SchemaRegistry:
    """The registry ``settings`` names; one shared client per URL and user per process, so
    every codec of a process shares its id cache (one HTTP call per schema per process)."""
    if settings.url is None:
        return LocalSchemaRegistry()
    key = (settings.url, settings.user, settings.password)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = ConfluentSchemaRegistry(
                settings.url,
                user=settings.user,
                password=settings.password,
                source=settings.source,
            )
            _clients[key] = client
    return client


def default_registry(environ: Mapping[str, str] | None = None) -> SchemaRegistry:
    """The registry the environment selects (see the module docstring for the order)."""
    return registry_for(RegistrySettings.from_env(environ))

"""A small Confluent Schema Registry speaking its REST protocol, for tests (loopback only).

The real Confluent registry is not in the package registries this project can
reach, so the REST client is checked against this server: the endpoints the
client uses (register under a subject, fetch by id, compatibility against the
latest version) with the registry's status codes and error bodies. Ids are
assigned 1, 2, 3... as the real registry does, unlike our local registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

from schemas.evolution import backward_problems
from schemas.registry import canonical_form

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class RegistryState:
    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _error(status: int, code: int, message: str) -> web.Response:
    body = json.dumps({"error_code": code, "message": message})
    return web.Response(status=status, text=body, content_type="application/json")


def registry_app(state: RegistryState) -> web.Application:
    async def register(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        state.requests.append(f"POST /subjects/{subject}/versions")
        try:
            schema = json.loads((await request.json())["schema"])
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Invalid schema")
        canonical = canonical_form(schema)
        for schema_id, text in state.schemas.items():
            if canonical_form(json.loads(text)) == canonical:
                state.subjects.setdefault(subject, [])
                if schema_id not in state.subjects[subject]:
                    state.subjects[subject].append(schema_id)
                return web.json_response({"id": schema_id})
        versions = state.subjects.get(subject, [])
        if versions and backward_problems(json.loads(state.schemas[versions[-1]]), schema):
            return _error(
                409, 409, "Schema being registered is incompatible with an earlier schema"
            )
        schema_id = len(state.schemas) + 1
        state.schemas[schema_id] = json.dumps(schema)
        state.subjects.setdefault(subject, []).append(schema_id)
        return web.json_response({"id": schema_id})

    async def by_id(request: web.Request) -> web.Response:
        schema_id = int(request.match_info["id"])
        state.requests.append(f"GET /schemas/ids/{schema_id}")
        text = state.schemas.get(schema_id)
        if text is None:
            return _error(404, 40403, "Schema not found")
        return web.json_response({"schema": text})

    async def compatibility(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        state.requests.append(f"POST /compatibility/subjects/{subject}/versions/latest")
        versions = state.subjects.get(subject)
        if not versions:
            return _error(404, 40401, "Subject not found")
        schema = json.loads((await request.json())["schema"])
        ok = not backward_problems(json.loads(state.schemas[versions[-1]]), schema)
        return web.json_response({"is_compatible": ok})

    app = web.Application()
    app.router.add_post("/subjects/{subject}/versions", register)
    app.router.add_get("/schemas/ids/{id}", by_id)
    app.router.add_post("/compatibility/subjects/{subject}/versions/latest", compatibility)
    return app


async def start_registry(state: RegistryState) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(registry_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"

"""Unauthenticated operations endpoints: /healthz, /readyz, /metrics, /openapi.json.

/healthz says the process answers (liveness); /readyz that it can do its job
now: Kafka answers a metadata request and Postgres a ``SELECT 1``, each within
two seconds (503 otherwise, so a load balancer stops sending it commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from agentstream.gateway.context import Gateway, json_response
from agentstream.gateway.openapi import openapi_document

CHECK_TIMEOUT_S = 2.0


async def healthz(gw: Gateway, request: web.Request) -> web.StreamResponse:
    return json_response(200, {"ok": True})


async def _kafka(gw: Gateway) -> None:
    await gw.producer.aiokafka.client.fetch_all_metadata()


async def _postgres(gw: Gateway) -> None:
    async with gw.db.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def readyz(gw: Gateway, request: web.Request) -> web.StreamResponse:
    checks: dict[str, str] = {}
    for name, check in (("kafka", _kafka), ("postgres", _postgres)):
        try:
            await asyncio.wait_for(check(gw), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"unavailable: {type(error).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return json_response(200 if ok else 503, {"ok": ok, "checks": checks, **gw.status()})


async def metrics(gw: Gateway, request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=generate_latest(),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def openapi(gw: Gateway, request: web.Request) -> web.StreamResponse:
    return json_response(200, openapi_document(gw.settings, sorted(gw.agent_names)))


ROUTES: list[tuple[str, str, str, Callable[[Gateway, web.Request], Awaitable[Any]]]] = [
    ("GET", "/healthz", "healthz", healthz),
    ("GET", "/readyz", "readyz", readyz),
    ("GET", "/metrics", "metrics", metrics),
    ("GET", "/openapi.json", "openapi", openapi),
]

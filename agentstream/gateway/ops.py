"""Unauthenticated operations endpoints: /livez, /healthz, /readyz, /metrics, /openapi.json.

/livez says whether the process should be restarted: 503 naming the reason once
its event loop has not run for ``AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S`` (the request
that waited through the block gets it; :class:`LoopWatch`). /healthz says the
process answers. /readyz that it can do its job now: Kafka answers a metadata
request and Postgres a ``SELECT 1``, each within two seconds (503 otherwise, so
a load balancer stops sending it commands).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from agentstream.gateway.context import Gateway, json_response
from agentstream.gateway.openapi import openapi_document
from agentstream.process_tuning import LoopWatch, loop_blocked_after_from_env, watch_event_loop_lag

CHECK_TIMEOUT_S = 2.0

LOOP_WATCH = web.AppKey("loop_watch", LoopWatch)


def loop_watch(env: Mapping[str, str] | None = None) -> LoopWatch:
    """The API process's loop watch (``AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S``)."""
    return LoopWatch(loop_blocked_after_from_env(os.environ if env is None else env))


async def watch_the_loop(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: heartbeats of ``app[LOOP_WATCH]`` and its watchdog thread."""
    watch = app[LOOP_WATCH]
    beating = asyncio.create_task(watch_event_loop_lag(beats=watch), name="loop-lag")
    watch.start_thread()
    yield
    beating.cancel()
    watch.stop_thread()


async def livez(gw: Gateway, request: web.Request) -> web.StreamResponse:
    problem = request.app[LOOP_WATCH].problem()
    if problem is None:
        return json_response(200, {"ok": True})
    return json_response(503, {"ok": False, "problems": [problem]})


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
    ("GET", "/livez", "livez", livez),
    ("GET", "/healthz", "healthz", healthz),
    ("GET", "/readyz", "readyz", readyz),
    ("GET", "/metrics", "metrics", metrics),
    ("GET", "/openapi.json", "openapi", openapi),
]

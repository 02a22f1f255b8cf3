"""The aiohttp application of the HTTP API: every route, wrapped once, and the lifecycle.

Why bare aiohttp and not a framework: a POST that produces to Kafka and waits
for the ack is the hot path, and a framework's middleware stack costs more
than the handler; ``benchmarks/bench_gateway.py`` measures this stack against
a bare aiohttp handler producing the same record, in the same run (figures in
docs/benchmarks.md). So: no middleware on the hot path (each route is wrapped
once by :func:`route`, which also does errors and metrics), keys cached in
memory, limits checked before the body is parsed, and the OpenAPI document
written by hand (:mod:`agentstream.gateway.openapi`).

The process's parts are in :mod:`agentstream.gateway.context` (:class:`Gateway`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentstream.gateway import commands, ops, read_api, sse
from agentstream.gateway.context import GATEWAY, Gateway
from agentstream.gateway.errors import ApiError, api_error_for
from agentstream.gateway.metrics import INBOX_LAG, REJECTIONS, REQUEST_SECONDS, REQUESTS

log = logging.getLogger(__name__)

Handler = Callable[[Gateway, web.Request], Awaitable[web.StreamResponse]]


def route(name: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler: its errors -> their JSON answers (:func:`api_error_for`); metrics."""
    timer = REQUEST_SECONDS.labels(name)
    # 5xx at 0 from the start, so the first one shows in increase() and rate().
    counters: dict[int, Any] = {code: REQUESTS.labels(name, str(code)) for code in (500, 503)}

    async def wrapped(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request.app[GATEWAY], request)
        except Exception as error:
            api_error = api_error_for(error, name)
            if api_error is None:
                counters[500].inc()  # aiohttp answers 500 for what escapes
                raise
            if api_error is error:  # refused on purpose, not a dependency away
                REJECTIONS.labels(api_error.code).inc()
            response = api_error.response()
        timer.observe(time.perf_counter() - started)
        counter = counters.get(response.status)
        if counter is None:
            counter = counters[response.status] = REQUESTS.labels(name, str(response.status))
        counter.inc()
        return response

    return wrapped


def build_app(gateway: Gateway) -> web.Application:
    """The aiohttp application: every route, and the gateway's lifecycle."""
    # Bodies are capped by aiohttp too (413), also when sent chunked.
    app = web.Application(client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY] = gateway
    app[ops.LOOP_WATCH] = ops.loop_watch()

    async def lifecycle(app: web.Application) -> Any:
        await gateway.start()
        gauge = asyncio.create_task(_lag_gauge(gateway))
        yield
        gauge.cancel()
        await gateway.stop()

    app.cleanup_ctx.append(ops.watch_the_loop)  # first: a slow start shows on /livez
    app.cleanup_ctx.append(lifecycle)
    for module in (commands, read_api, sse, ops):
        for method, path, name, handler in module.ROUTES:
            app.router.add_route(method, path, route(name, handler), name=name)
    # Last: anything unmatched (path or method) gets a JSON error like every other answer.
    app.router.add_route("*", "/{tail:.*}", route("unmatched", _unmatched), name="unmatched")
    return app


async def _unmatched(gateway: Gateway, request: web.Request) -> web.StreamResponse:
    """404 for a path we do not have; 405 with ``Allow`` for a method a path does not have.

    The catch-all route hides aiohttp's own 405 (it matches every method), so
    the path is looked up here among the other routes, as aiohttp would.
    """
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name != "unmatched":
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        methods = ", ".join(sorted(allowed))
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path} (allowed: {methods})",
            headers={"Allow": methods},
        )
    raise ApiError(404, "not_found", f"no route {request.method} {request.path}")


async def _lag_gauge(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(gateway.settings.lag_interval_s)
        if gateway.lag.lag is not None:
            INBOX_LAG.set(gateway.lag.lag)

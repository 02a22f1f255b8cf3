"""The HTTP API process: its parts, their lifecycle, and the aiohttp application.

Why bare aiohttp: on the 2-core reference machine a POST that produces to
Kafka and waits for the ack ran at 10,600 req/s in a bare aiohttp handler and
4,600 in FastAPI on uvicorn (ARCHITECTURE.md); ``benchmarks/bench_gateway.py``
measures this stack against a bare handler producing the same record in the
same run. So: no middleware on the hot path (each route is wrapped once by
:func:`route`, which also does errors and metrics), keys cached in memory,
limits checked before the body is parsed, and the OpenAPI document written
by hand (:mod:`agentstream.gateway.openapi`).

What runs in one ``agentstream api`` process (:class:`Gateway`)::

    Producer          idempotent, acks=all, to the inbox (keyed by session id)
    Authenticator     Bearer keys -> tenants (cached; revocations via NOTIFY)
    RateLimiter       per-tenant token buckets (429)
    LagMonitor        engine consumer-group lag (503)
    IdempotencyStore  Idempotency-Key claims and answers in Postgres
    SessionDirectory  session -> owning tenant (404 for everyone else)
    QueryService      the read models
    Projector         events -> read models (unless --no-projector)
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError

from agentstream.gateway.auth import Authenticator
from agentstream.gateway.encoding import StartSessionEncoder
from agentstream.gateway.errors import ApiError, retry_later
from agentstream.gateway.idempotency import IdempotencyStore
from agentstream.gateway.limits import LagMonitor, RateLimiter
from agentstream.gateway.metrics import INBOX_LAG, REJECTIONS, REQUEST_SECONDS, REQUESTS
from agentstream.gateway.ownership import SessionDirectory
from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.tenants import Tenant, TenantStore
from processors.agents import AgentCatalog
from projections.db import create_engine
from projections.migrate import upgrade
from projections.projector import Projector
from projections.queries import QueryService
from schemas import Codec
from streams.catalogue import Catalogue
from streams.errors import StreamsError
from streams.producer import Producer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

Handler = Callable[["Gateway", web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """Everything the routes need; started and stopped with the aiohttp app."""

    def __init__(
        self,
        settings: GatewaySettings,
        kafka: KafkaSettings,
        agents: AgentCatalog,
        *,
        projector: bool = True,
        migrate: bool = True,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.agents = agents
        self.agent_names = frozenset(agents.agents)
        self.catalogue = Catalogue.from_settings(kafka)
        self.inbox = self.catalogue.inbox.name
        self.stream = self.catalogue.events.name
        self.codec = Codec()
        self.start_encoder = StartSessionEncoder(self.codec)
        self.with_projector = projector
        self.migrate = migrate
        self.db = create_engine(settings.database_url)
        self.tenants = TenantStore(self.db)
        self.auth = Authenticator(self.tenants, cache_s=settings.key_cache_s)
        self.rates = RateLimiter(settings.rate_per_s, settings.burst)
        self.lag = LagMonitor(
            kafka,
            self.inbox,
            group_id=f"{kafka.topic_prefix}.engine",
            max_lag=settings.max_lag,
            interval_s=settings.lag_interval_s,
        )
        self.idempotency = IdempotencyStore(self.db, self.stream, ttl_s=settings.idempotency_ttl_s)
        self.queries = QueryService(self.db, self.stream)
        self.directory = SessionDirectory(self.queries)
        self.producer = Producer(kafka, self.codec)
        self.projector: Projector | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.streams_open = 0
        """SSE streams being served (each holds a Kafka consumer)."""

    async def start(self) -> None:
        if self.migrate:
            await upgrade(self.settings.database_url)
        await self.producer.start()
        await self.auth.listen(self.settings.database_url)
        await self.lag.start()
        if self.with_projector:
            self.projector = Projector(self.kafka, self.db)
            await self.projector.start()
        self._janitor = asyncio.create_task(self._expire_idempotency_keys())
        # Everything allocated so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise rescan every module's objects.
        gc.collect()
        gc.freeze()

    async def _expire_idempotency_keys(self) -> None:
        """Every ten minutes, forget Idempotency-Keys older than their TTL."""
        while True:
            await asyncio.sleep(600)
            try:
                await self.idempotency.expire()
            except Exception as error:  # Postgres away: next time
                log.warning("cannot expire idempotency keys: %s", error)

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        if self.projector is not None:
            await self.projector.stop()
        await self.lag.stop()
        await self.auth.close()
        await self.producer.stop()
        await self.db.dispose()

    async def tenant(self, request: web.Request) -> Tenant:
        """The caller's tenant (401 otherwise)."""
        return await self.auth.authenticate(request.headers.get("Authorization"))

    def admit(self, request: web.Request, tenant: Tenant, n: int = 1) -> None:
        """Checks every command request passes before its body is read: 413, 429, 503."""
        length = request.content_length
        if length is not None and length > self.settings.max_body_bytes:
            raise body_too_large(self.settings.max_body_bytes)
        self.rates.check(tenant.tenant_id, n, rate_per_s=tenant.rate_per_s, burst=tenant.burst)
        self.lag.check()

    async def body(self, request: web.Request) -> bytes:
        """The request body, at most ``max_body_bytes`` (413 beyond, also when chunked)."""
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise body_too_large(self.settings.max_body_bytes) from None

    def status(self) -> dict[str, Any]:
        """What /readyz reports besides reachability."""
        return {
            "engine_lag_records": self.lag.lag,
            "projector": None
            if self.projector is None
            else {"running": self.projector.running, "applied": self.projector.applied},
        }


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the body exceeds {limit} bytes")


GATEWAY = web.AppKey("gateway", Gateway)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        headers=headers,
    )


def route(name: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler: ApiError -> its JSON answer; Kafka trouble -> 503; metrics."""
    timer = REQUEST_SECONDS.labels(name)
    counters: dict[int, Any] = {}

    async def wrapped(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request.app[GATEWAY], request)
        except ApiError as error:
            REJECTIONS.labels(error.code).inc()
            response = error.response()
        except (KafkaError, StreamsError) as error:
            log.warning("%s: Kafka unavailable: %s", name, error)
            response = retry_later(503, "kafka_unavailable", "Kafka is unavailable", 1.0).response()
        except (
            OSError,
            asyncpg.PostgresConnectionError,
            OperationalError,
            InterfaceError,
        ) as error:
            log.warning("%s: Postgres unavailable: %s", name, error)
            response = retry_later(
                503, "postgres_unavailable", "Postgres is unavailable", 1.0
            ).response()
        timer.observe(time.perf_counter() - started)
        counter = counters.get(response.status)
        if counter is None:
            counter = counters[response.status] = REQUESTS.labels(name, str(response.status))
        counter.inc()
        return response

    return wrapped


def build_app(gateway: Gateway) -> web.Application:
    """The aiohttp application: every route, and the gateway's lifecycle."""
    from agentstream.gateway import commands, ops, read_api, sse

    # Bodies are capped by aiohttp too (413), also when sent chunked.
    app = web.Application(client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY] = gateway

    async def lifecycle(app: web.Application) -> Any:
        await gateway.start()
        gauge = asyncio.create_task(_lag_gauge(gateway))
        yield
        gauge.cancel()
        await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    for module in (commands, read_api, sse, ops):
        for method, path, name, handler in module.ROUTES:
            app.router.add_route(method, path, route(name, handler), name=name)
    # Last: anything unmatched (path or method) gets a JSON error like every other answer.
    app.router.add_route("*", "/{tail:.*}", route("unmatched", _unmatched), name="unmatched")
    return app


async def _unmatched(gateway: Gateway, request: web.Request) -> web.StreamResponse:
    raise ApiError(404, "not_found", f"no route {request.method} {request.path}")


async def _lag_gauge(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(gateway.settings.lag_interval_s)
        if gateway.lag.lag is not None:
            INBOX_LAG.set(gateway.lag.lag)

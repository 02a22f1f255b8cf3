"""The gateway's parts and what every route handler shares.

:class:`Gateway` holds what one ``agentstream api`` process runs::

    Producer          idempotent, acks=all, to the inbox (keyed by session id)
    Authenticator     Bearer keys -> tenants (cached; revocations via NOTIFY)
    RateLimiter       per-tenant token buckets (429), shared out over the live API processes
    LagMonitor        engine consumer-group lag (503)
    IdempotencyStore  Idempotency-Key claims and answers in Postgres
    SessionDirectory  session -> owning tenant (404 for everyone else)
    QueryService      the read models
    Projector         events -> read models (unless --no-projector)

Route modules (``commands``, ``read_api``, ``sse``, ``ops``) take the gateway
and :func:`json_response` from here; :mod:`agentstream.gateway.app` wires them
into the aiohttp application, so no route module imports the app back.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

from aiohttp import web

from agentstream.gateway.auth import Authenticator
from agentstream.gateway.encoding import StartSessionEncoder
from agentstream.gateway.errors import ApiError
from agentstream.gateway.event_hub import EventHub
from agentstream.gateway.idempotency import IdempotencyStore
from agentstream.gateway.limits import ApiPeers, LagMonitor, RateLimiter
from agentstream.gateway.ownership import SessionDirectory
from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.tenants import Tenant, TenantStore
from processors.agents.catalog import AgentCatalog
from projections.db import create_engine
from projections.migrate import upgrade
from projections.projector import Projector
from projections.queries import QueryService
from schemas import Codec
from streams.catalogue import Catalogue
from streams.producer import Producer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


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
        self.peers = ApiPeers(self.db, kafka.topic_prefix)
        self.rates = RateLimiter(settings.rate_per_s, settings.burst, self.peers)
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
        self.hub = EventHub(
            kafka,
            self.catalogue,
            self.codec,
            max_subscribers=settings.max_streams + settings.max_waiters,
        )
        self.waiters_open = 0
        """Requests waiting for their session's answer."""
        self.projector: Projector | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.streams_open = 0
        """SSE streams being served."""

    async def start(self) -> None:
        if self.migrate:
            await upgrade(self.settings.database_url)
        await self.peers.start()
        await self.producer.start()
        await self.hub.start()
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
        await self.hub.stop()
        await self.lag.stop()
        await self.auth.close()
        await self.producer.stop()
        await self.peers.stop()
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

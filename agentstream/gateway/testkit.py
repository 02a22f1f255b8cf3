"""Run the HTTP API in-process on a free loopback port: for tests, benchmarks and users' tests.

::

    async with serving(settings, kafka, agents) as api:
        key = await api.new_tenant()          # (tenant id, API key)
        async with httpx.AsyncClient(base_url=api.url) as client: ...

The gateway runs its migrations at start, so a fresh database works.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from agentstream.gateway.app import Gateway, build_app
from agentstream.gateway.settings import GatewaySettings
from processors.agents import AgentCatalog, load_agents
from streams.settings import KafkaSettings


@dataclass
class RunningApi:
    """A gateway serving on ``url``."""

    gateway: Gateway
    url: str
    """``http://127.0.0.1:<port>``."""

    async def new_tenant(
        self, prefix: str = "t", *, rate_per_s: float | None = None, burst: int | None = None
    ) -> tuple[str, str]:
        """A fresh tenant with a unique name: (tenant id, API key)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        _, key = await self.gateway.tenants.create(name, rate_per_s=rate_per_s, burst=burst)
        return name, key


@asynccontextmanager
async def serving(
    settings: GatewaySettings,
    kafka: KafkaSettings,
    agents: AgentCatalog | None = None,
    *,
    projector: bool = True,
    host: str = "127.0.0.1",
) -> AsyncIterator[RunningApi]:
    """The API on ``host`` and a free port until the block exits."""
    gateway = Gateway(settings, kafka, agents or load_agents(None), projector=projector)
    runner = web.AppRunner(build_app(gateway), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await gateway.auth.listening.wait()
        yield RunningApi(gateway, f"http://{host}:{port}")
    finally:
        await runner.cleanup()

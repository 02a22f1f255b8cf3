"""Run the HTTP API in-process on a free loopback port: for tests, benchmarks and users' tests.

::

    async with serving(settings, kafka, agents) as api:
        key = await api.new_tenant()          # (tenant id, API key)
        async with httpx.AsyncClient(base_url=api.url) as client: ...

The gateway runs its migrations at start, so a fresh database works.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from agentstream.gateway.app import build_app
from agentstream.gateway.context import Gateway
from agentstream.gateway.settings import GatewaySettings
from processors.agents.catalog import AgentCatalog
from processors.agents.loader import load_agents
from projections.settings import DEFAULT_DATABASE_URL
from streams.consumer import end_offsets
from streams.settings import KafkaSettings

T = TypeVar("T")


def database_url() -> str:
    """``AGENTSTREAM_DATABASE_URL`` or the local default."""
    return os.environ.get("AGENTSTREAM_DATABASE_URL") or DEFAULT_DATABASE_URL


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


@asynccontextmanager
async def workers(
    kafka: KafkaSettings,
    agents: AgentCatalog | None = None,
    roles: Sequence[str] = ("engine", "llm", "tools"),
) -> AsyncIterator[object]:
    """The session engine and executors in this process; the engine owns every partition."""
    from agentstream.worker_app import Components
    from processors.settings import EngineSettings

    components = Components.build(
        kafka,
        agents or load_agents(None),
        list(roles),
        engine_settings=EngineSettings(database_url=database_url(), snapshot_interval_s=0.2),
    )
    await components.start()
    try:
        if components.engine is not None:
            await asyncio.wait_for(components.engine.started.wait(), 60)
        yield components
    finally:
        await components.stop()


async def inbox_end(kafka: KafkaSettings) -> dict[int, int]:
    """The inbox's end offset per partition (what a refused request must not move)."""
    from streams.catalogue import Catalogue

    return await end_offsets(kafka, Catalogue.from_settings(kafka).inbox.name)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30.0, every_s: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something other than None (or fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(every_s)

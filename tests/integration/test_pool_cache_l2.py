"""The response cache's second level in the real Postgres: shared by pools, survives restarts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from processors.agents.catalog import AgentCatalog, EndpointConfig, ModelConfig, builtin_catalog
from processors.agents.model_types import ChatMessage, LLMRequest
from processors.executors.pool import CallContext, LLMPool, PoolSettings
from processors.executors.pool.cache import PostgresCache
from processors.settings import DEFAULT_DATABASE_URL
from tests.pool_servers import FakeModelServer, Reply

pytestmark = pytest.mark.integration


@pytest.fixture
async def db() -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=2)
    yield pool
    await pool.close()


def _catalog(server: FakeModelServer) -> AgentCatalog:
    base = builtin_catalog()
    remote = ModelConfig(
        "remote",
        "round_robin",
        (EndpointConfig(provider="openai", model="fake", base_url=server.base_url),),
    )
    return AgentCatalog(base.agents, {**base.models, "remote": remote}, base.tools)


async def test_l2_hits_across_pools_and_l1_after_it(db: asyncpg.Pool) -> None:
    table = f"t_llm_cache_{uuid.uuid4().hex[:8]}"
    server = await FakeModelServer("openai", default=Reply("stored", usage=(9, 3, 0))).start()
    request = LLMRequest(model="remote", messages=(ChatMessage("user", "cache me"),))
    cacheable = CallContext(cacheable=True)
    try:
        first = LLMPool(_catalog(server), l2=PostgresCache(db, table))
        await first.start()
        answered = await first.complete(request, cacheable)
        await first.aclose()
        second = LLMPool(_catalog(server), l2=PostgresCache(db, table))  # a fresh L1
        await second.start()
        from_l2 = await second.complete(request, cacheable)
        from_l1 = await second.complete(request, cacheable)
        await second.aclose()
        stored = await db.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await server.stop()
    assert answered.cache == "" and answered.response.input_tokens == 9
    assert (from_l2.cache, from_l1.cache) == ("l2", "l1")
    assert from_l2.response.content == "stored" and from_l2.response.input_tokens == 0
    assert server.count == 1 and stored == 1


async def test_postgres_trouble_is_a_miss_not_a_failure(db: asyncpg.Pool) -> None:
    server = await FakeModelServer("openai").start()
    broken = await asyncpg.create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=1)
    await broken.close()  # every query on it fails
    pool = LLMPool(_catalog(server), PoolSettings(), l2=PostgresCache(broken, "never_created"))
    request = LLMRequest(model="remote", messages=(ChatMessage("user", "hi"),))
    try:
        result = await pool.complete(request, CallContext(cacheable=True))
        again = await pool.complete(request, CallContext(cacheable=True))
    finally:
        await pool.aclose()
        await server.stop()
    assert result.response.content and result.cache == ""
    assert again.cache == "l1"  # L1 still works

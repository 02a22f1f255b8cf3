"""Limits that hold for the whole deployment, on the real broker and Postgres.

* Three LLM executors in one consumer group against one loopback provider
  whose limit is 1800 requests a minute: over every 2 s window the provider
  gets at most the limit plus one burst, also while one executor stops and its
  partitions move to the others, and every call is answered.
* Three gateways' rate limiters sharing out a tenant's rate through their
  heartbeat rows: within the rate plus one burst while all run, after one
  leaves and after one dies (its row expires), each taking over the share.
* Two API processes on one inbox let a tenant's burst through once, not twice.
* A tenant's LLM limits set in the tenants table reach the executor's pool.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from bisect import bisect_left
from typing import Any

import httpx
import pytest

from agentstream.gateway.limits import ApiPeers, RateLimiter
from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.tenants import TenantStore
from agentstream.gateway.testkit import database_url, eventually, serving
from processors.agents.catalog import (
    AgentCatalog,
    AgentConfig,
    EndpointConfig,
    ModelConfig,
    builtin_catalog,
)
from processors.agents.model_types import ChatMessage, prompt_hash
from processors.executors.llm_executor import LLMExecutor
from processors.executors.pool import LLMPool, PoolSettings
from processors.executors.pool.tenant_limits import TenantLimitsWatch
from projections.db import create_engine
from projections.migrate import upgrade
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from tests.integration.engine_kit import kafka_settings, produce, read_topic
from tests.pool_servers import FakeModelServer, Reply

pytestmark = pytest.mark.integration

RPM = 1800
"""The provider's limit: 30 requests a second."""
BURST_S = 0.5
"""Each bucket holds half a second of its share: 15 requests over the deployment."""
WINDOW_S = 2.0
JITTER_S = 0.2
"""How much more than the window a window of arrivals may span in admissions: a wave
admitted at once is serialised through one event loop on its way to the server, so its
first request arrives later than the ones admitted after it, relatively (a 2-core box
shared with Kafka). Without the shares the busiest window would hold three times the rate."""


def _catalog(server: FakeModelServer) -> AgentCatalog:
    base = builtin_catalog()
    endpoint = EndpointConfig(provider="openai", model="fake", base_url=server.base_url, rpm=RPM)
    remote = ModelConfig("remote", "round_robin", (endpoint,))
    agents = {**base.agents, "talker": AgentConfig(name="talker", model="remote")}
    return AgentCatalog(agents, {**base.models, "remote": remote}, base.tools)


def _work(session_id: str) -> tuple[str, dict[str, Any]]:
    messages = (ChatMessage("user", "hello"),)
    return "LLMCallWork", {
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "tenant_id": "acme",
        "time_ms": int(time.time() * 1000),
        "causation_id": None,
        "correlation_id": "corr",
        "call_id": f"call-{session_id}",
        "agent": "talker",
        "model": "remote",
        "step": 1,
        "prompt_hash": prompt_hash("remote", messages),
        "messages": [m.to_record() for m in messages],
        "tools": [],
        "deadline_ms": 0,
    }


def _busiest_window(times: list[float], window_s: float) -> int:
    ordered = sorted(times)
    return max((bisect_left(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0)


async def _answered(kafka: KafkaSettings, catalogue: Catalogue, count: int) -> set[str] | None:
    log = await read_topic(kafka, catalogue.inbox.name)
    done = {r["call_id"] for _, _, (_, r), _, _ in log.records if r["ok"]}
    return done if len(done) >= count else None


async def _settled(executors: list[LLMExecutor], partitions: int) -> bool | None:
    """Every partition owned by one executor, and each executor's share taken."""
    owned = [
        {tp.partition for tp in e._consumer.assignment()} if e._consumer else set()
        for e in executors
    ]
    every = set().union(*owned)
    shares = [e.pool.share.value * partitions for e in executors]
    taken = all(abs(s - len(o)) < 1e-9 for s, o in zip(shares, owned, strict=True))
    return True if taken and len(every) == partitions == sum(map(len, owned)) else None


async def test_executors_share_a_providers_limit_also_while_partitions_move(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    server = await FakeModelServer("openai", default=Reply("hi")).start()
    settings = PoolSettings(
        burst_s=BURST_S, max_wait_normal_s=120, stream_deltas=False, tenant_limits_s=0
    )
    executors = [
        LLMExecutor(kafka=kafka, agents=_catalog(server), pool_settings=settings) for _ in range(3)
    ]
    calls = 200
    try:
        for executor in executors:
            await executor.start()
        await eventually(lambda: _settled(executors, catalogue.partitions), timeout_s=60)
        shares = [e.pool.share.value for e in executors]
        assert sum(shares) == pytest.approx(1.0), shares
        # Warm up: the first calls open the HTTP connections, and a wave admitted while
        # they open would reach the server bunched with the next ones. Then the buckets
        # refill to their burst and the measured run begins.
        await produce(kafka, catalogue.llm_calls.name, [_work(f"w{i}") for i in range(30)])
        await eventually(lambda: _answered(kafka, catalogue, 30), timeout_s=30, every_s=0.2)
        await asyncio.sleep(BURST_S + 0.2)
        server.seen.clear()
        await produce(kafka, catalogue.llm_calls.name, [_work(f"s{i}") for i in range(calls)])

        async def going() -> bool | None:
            return True if len(server.seen) >= 40 else None

        await eventually(going, timeout_s=30, every_s=0.02)
        leaving = executors.pop()
        await leaving.stop()  # mid-run: its partitions go to the other two
        await eventually(lambda: _settled(executors, catalogue.partitions), timeout_s=60)
        assert sum(e.pool.share.value for e in executors) == pytest.approx(1.0)

        done = await eventually(
            lambda: _answered(kafka, catalogue, 30 + calls), timeout_s=90, every_s=0.5
        )
    finally:
        for executor in executors:
            await executor.stop()
        await server.stop()
    assert done >= {f"call-s{i}" for i in range(calls)}
    times = [seen.at for seen in server.seen]
    rate, burst = RPM / 60, RPM / 60 * BURST_S
    busiest = _busiest_window(times, WINDOW_S)
    assert busiest <= rate * (WINDOW_S + JITTER_S) + burst, (busiest, len(times))
    # Not starved either: the whole run went at a good part of the limit.
    span = max(times) - min(times)
    assert len(times) / span >= 0.4 * rate, (len(times), span)


async def _drive(limiters: list[RateLimiter], seconds: float) -> int:
    """Requests of one tenant spread round-robin over ``limiters``, far above its rate."""
    admitted, turn = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(len(limiters)):
            admitted += limiters[turn % len(limiters)].wait_s("acme") == 0.0
            turn += 1
        await asyncio.sleep(0.004)
    return admitted


async def test_api_processes_share_a_tenants_rate_through_their_heartbeats() -> None:
    await upgrade(database_url())
    db = create_engine(database_url(), pool_size=4)
    deployment = f"t{uuid.uuid4().hex[:8]}"
    peers = [ApiPeers(db, deployment, interval_s=0.1, ttl_s=0.6) for _ in range(3)]
    rate, burst, phase_s = 50.0, 10, 2.0
    bound = rate * phase_s + burst + 1  # + 1: the token that refills while a round runs
    try:
        for peer in peers:
            await peer.start()
        await eventually(lambda: _all_see(peers, 3), timeout_s=5)
        limiters = [RateLimiter(rate, burst, peer) for peer in peers]
        all_three = await _drive(limiters, phase_s)
        assert 0.7 * rate * phase_s <= all_three <= bound, all_three

        await peers[2].stop()  # leaves: its row goes at once
        await eventually(lambda: _all_see(peers[:2], 2), timeout_s=5)
        two = await _drive(limiters[:2], phase_s)
        assert 0.7 * rate * phase_s <= two <= bound, two

        task = peers[1]._task  # dies: no goodbye, its row expires after ttl_s
        assert task is not None
        task.cancel()
        one_left = await _drive(limiters[:1], phase_s)
        assert one_left <= bound, one_left
        assert peers[0].live == 1
        alone = await _drive(limiters[:1], phase_s)
        assert 0.7 * rate * phase_s <= alone <= bound, alone
    finally:
        for peer in peers:
            await peer.stop()
        await db.dispose()


async def _all_see(peers: list[ApiPeers], live: int) -> bool | None:
    return True if all(p.live == live for p in peers) else None


async def test_two_api_processes_let_a_tenants_burst_through_once(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    settings = GatewaySettings(database_url=database_url())
    async with (
        serving(settings, kafka, projector=False) as one,
        serving(settings, kafka, projector=False) as two,
    ):
        await eventually(lambda: _all_see([one.gateway.peers, two.gateway.peers], 2), timeout_s=10)
        _, key = await one.new_tenant(rate_per_s=0.01, burst=10)
        statuses: list[int] = []
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            for i in range(20):
                url = (one if i % 2 else two).url + "/v1/sessions"
                answer = await client.post(url, json={"agent": "demo", "input": "hi"})
                statuses.append(answer.status_code)
    assert statuses.count(202) == 10 and statuses.count(429) == 10, statuses


async def test_a_tenants_llm_limits_come_from_the_tenants_table() -> None:
    await upgrade(database_url())
    db = create_engine(database_url(), pool_size=2)
    store = TenantStore(db)
    name = f"llm-{uuid.uuid4().hex[:10]}"
    pool = LLMPool(builtin_catalog(), PoolSettings(tenant_limits_s=0))
    watch = TenantLimitsWatch(database_url(), pool.set_tenant_limits, interval_s=0.1)
    try:
        await store.create(name)
        await store.set_limits(name, {"llm_rpm": 120, "llm_tpm": 60_000})
        await watch.start()
        assert watch.reads == 1
        limits = pool.tenants.limits(name)
        assert (limits.rpm, limits.tpm) == (120, 60_000)
        assert pool.tenants.counts_tokens
        [(rpm, _, _), _] = pool.tenants.needs(name, 10)
        assert rpm.rate == pytest.approx(2.0)
        await store.set_limits(name, {"llm_rpm": None, "llm_tpm": None})

        async def cleared() -> bool | None:
            return True if pool.tenants.limits(name).rpm is None else None

        await eventually(cleared, timeout_s=5)
        assert pool.tenants.needs(name, 10) == []
    finally:
        await watch.stop()
        await store.revoke(name)
        await db.dispose()

"""Request -> answer in one call (``Prefer: wait=N``), and SSE on the shared event hub.

Real Kafka, Postgres, engine and executors in this process; the API over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.testkit import RunningApi, database_url, inbox_end, serving, workers
from processors.agents.catalog import (
    DEMO_AGENT,
    SIM_MODEL,
    AgentCatalog,
    EndpointConfig,
    builtin_catalog,
)
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

GATED = replace(DEMO_AGENT, name="gated", approval=frozenset({"calculator"}))


SLOW_MODEL = replace(
    SIM_MODEL,
    name="slow",
    endpoints=(
        EndpointConfig(
            provider="sim", model="sim", options={"latency": {"kind": "fixed", "fixed_s": 8.0}}
        ),
    ),
)
SLOW = replace(DEMO_AGENT, name="slow", model="slow")


def agents() -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog(
        agents={**base.agents, "gated": GATED, "slow": SLOW},
        models={**base.models, "slow": SLOW_MODEL},
        tools=base.tools,
    )


@dataclass
class Stack:
    kafka: KafkaSettings
    api: RunningApi
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str) -> AsyncIterator[Stack]:
    kafka = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=4)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    settings = GatewaySettings(database_url=database_url(), max_waiters=3)
    try:
        async with workers(kafka, agents()), serving(settings, kafka, agents()) as api:
            _, key = await api.new_tenant()
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
                yield Stack(kafka, api, client)
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


async def test_wait_answers_with_the_outcome_and_usage(stack: Stack) -> None:
    answer = await stack.client.post(
        "/v1/sessions",
        json={"agent": "demo", "input": "What is 6*7?"},
        headers={"Prefer": "wait=20"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Preference-Applied"] == "wait=20"
    body = answer.json()
    assert body["status"] == "completed"
    assert "42" in body["output"]
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    session = (await stack.client.get(f"/v1/sessions/{body['session_id']}")).json()
    assert session["status"] in ("completed", "running")  # the read model may still lag


async def test_wait_on_an_open_session_settles_when_it_answers(stack: Stack) -> None:
    first = await stack.client.post(
        "/v1/sessions",
        json={"agent": "demo", "input": "What is 2+3?", "keep_open": True},
        headers={"Prefer": "wait=20"},
    )
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "waiting_for_user"
    assert "5" in first.json()["output"]
    session_id = first.json()["session_id"]
    second = await stack.client.post(
        f"/v1/sessions/{session_id}/messages",
        json={"text": "And what is 4*4?"},
        headers={"Prefer": "wait=20"},
    )
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "waiting_for_user"
    assert "16" in second.json()["output"]
    assert second.json()["seq"] > first.json()["seq"]


async def test_wait_stops_at_an_approval(stack: Stack) -> None:
    answer = await stack.client.post(
        "/v1/sessions",
        json={"agent": "gated", "input": "What is 6*7?"},
        headers={"Prefer": "wait=20"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "waiting_for_approval"


async def test_without_prefer_or_past_the_wait_it_is_a_202(stack: Stack) -> None:
    plain = await stack.client.post("/v1/sessions", json={"agent": "demo", "input": "What is 1+1?"})
    assert plain.status_code == 202 and "status" not in plain.json()
    # The slow model takes 8 s: the wait runs out and the answer is the 202.
    short = await stack.client.post(
        "/v1/sessions", json={"agent": "slow", "input": "Hello"}, headers={"Prefer": "wait=1"}
    )
    assert short.status_code == 202
    assert short.headers["Preference-Applied"] == "wait=1"


async def test_too_many_waiters_get_503_and_nothing_is_produced(stack: Stack) -> None:
    slow = {"agent": "slow", "input": "Hello"}  # its model takes 8 s
    holders = [
        asyncio.create_task(
            stack.client.post("/v1/sessions", json=slow, headers={"Prefer": "wait=3"})
        )
        for _ in range(3)
    ]
    await asyncio.sleep(1.0)  # the three wait (max_waiters=3)
    before = await inbox_end(stack.kafka)
    refused = await stack.client.post("/v1/sessions", json=slow, headers={"Prefer": "wait=3"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "too_many_waiters"
    assert await inbox_end(stack.kafka) == before
    assert [r.status_code for r in await asyncio.gather(*holders)] == [202, 202, 202]
    assert stack.api.gateway.waiters_open == 0  # every wait let go of its subscription
    assert stack.api.gateway.hub.subscribers == 0


async def test_many_streams_share_one_reader_and_each_gets_its_own_session(stack: Stack) -> None:
    ids = []
    for i in range(20):
        started = await stack.client.post(
            "/v1/sessions", json={"agent": "demo", "input": f"What is {i}+1?"}
        )
        ids.append(started.json()["session_id"])

    async def read(session_id: str) -> list[str]:
        seen = []
        async with stack.client.stream("GET", f"/v1/sessions/{session_id}/stream") as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    seen.append(line)
        return seen

    streams = await asyncio.wait_for(asyncio.gather(*(read(s) for s in ids)), 60)
    for i, (session_id, lines) in enumerate(zip(ids, streams, strict=True)):
        assert all(session_id in line for line in lines), session_id
        assert "SessionCompleted" in lines[-1] and f"{i + 1}" in lines[-1]
    assert stack.api.gateway.hub.subscribers == 0

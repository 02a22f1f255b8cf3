"""End to end over HTTP: real Kafka, Postgres, the engine and executors in-process.

A session goes from POST to completed as the query API shows it; an approval
gate is passed through /approvals; an open conversation is steered with
/messages and ended with /cancel; the same Idempotency-Key produces one
command however often (and however concurrently) it is sent; an SSE stream
resumed with Last-Event-ID misses and repeats nothing, also when the events
after the resume point exist only in Kafka (projector stopped).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.testkit import (
    RunningApi,
    database_url,
    eventually,
    inbox_end,
    serving,
    workers,
)
from processors.agents.catalog import DEMO_AGENT, AgentCatalog, builtin_catalog
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

GATED = replace(DEMO_AGENT, name="gated", approval=frozenset({"calculator"}))


def agents() -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog(
        agents={**base.agents, "gated": GATED}, models=base.models, tools=base.tools
    )


@dataclass
class Stack:
    kafka: KafkaSettings
    api: RunningApi
    client: httpx.AsyncClient
    tenant: str


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str) -> AsyncIterator[Stack]:
    kafka = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=4)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    settings = GatewaySettings(database_url=database_url())
    try:
        async with workers(kafka, agents()), serving(settings, kafka, agents()) as api:
            tenant, key = await api.new_tenant()
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
                yield Stack(kafka, api, client, tenant)
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


async def status_of(client: httpx.AsyncClient, session_id: str, wanted: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        answer = await client.get(f"/v1/sessions/{session_id}")
        if answer.status_code == 200 and answer.json()["status"] == wanted:
            body: dict[str, Any] = answer.json()
            return body
        return None

    return await eventually(probe, timeout_s=30)


async def test_a_session_from_post_to_completed(stack: Stack) -> None:
    started = await stack.client.post(
        "/v1/sessions", json={"agent": "demo", "input": "What is 6*7?", "metadata": {"k": "v"}}
    )
    assert started.status_code == 202, started.text
    session_id = started.json()["session_id"]
    session = await status_of(stack.client, session_id, "completed")
    assert session["tenant_id"] == stack.tenant
    assert session["output"] and "42" in session["output"]
    assert session["metadata"] == {"k": "v"}
    assert session["steps"] == 2 and session["usage"]["tokens"] > 0
    events = (await stack.client.get(f"/v1/sessions/{session_id}/events")).json()
    assert [e["seq"] for e in events["items"]] == list(range(1, len(events["items"]) + 1))
    assert events["items"][-1]["type"] == "SessionCompleted" and events["next"] is None
    page = (await stack.client.get(f"/v1/sessions/{session_id}/events?limit=3")).json()
    second = await stack.client.get(f"/v1/sessions/{session_id}/events?cursor={page['next']}")
    assert second.json()["items"][0]["seq"] == 4
    listed = (await stack.client.get("/v1/sessions?status=completed&agent=demo")).json()
    assert session_id in [s["session_id"] for s in listed["items"]]
    late = await stack.client.post(f"/v1/sessions/{session_id}/messages", json={"text": "more?"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "session_ended"
    usage = (await stack.client.get("/v1/usage?group_by=agent")).json()["items"]
    assert usage and usage[0]["agent"] == "demo" and usage[0]["llm_calls"] >= 2


async def test_approval_gate_through_the_api(stack: Stack) -> None:
    started = await stack.client.post("/v1/sessions", json={"agent": "gated", "input": "6*7?"})
    session_id = started.json()["session_id"]
    await status_of(stack.client, session_id, "waiting_for_approval")
    events = (await stack.client.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    call_id = next(e["data"]["call_id"] for e in events if e["type"] == "ApprovalRequested")
    approved = await stack.client.post(
        f"/v1/sessions/{session_id}/approvals", json={"call_id": call_id, "approved": True}
    )
    assert approved.status_code == 202, approved.text
    assert "42" in (await status_of(stack.client, session_id, "completed"))["output"]


async def test_idempotency_key_produces_one_command(stack: Stack) -> None:
    body = {"agent": "demo", "input": "What is 2+2?"}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    before = sum((await inbox_end(stack.kafka)).values())
    answers = await asyncio.gather(
        *(stack.client.post("/v1/sessions", json=body, headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} <= {202, 409}
    again = await stack.client.post("/v1/sessions", json=body, headers=headers)
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    accepted = {a.json()["session_id"] for a in [*answers, again] if a.status_code == 202}
    assert len(accepted) == 1
    other = await stack.client.post(
        "/v1/sessions", json={**body, "input": "different"}, headers=headers
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    await asyncio.sleep(0.2)  # anything produced twice would be acked by now
    # One StartSession; the session's own results also land in the inbox, so count starts.
    after = sum((await inbox_end(stack.kafka)).values())
    assert after > before
    session_id = accepted.pop()
    await status_of(stack.client, session_id, "completed")
    listed = (await stack.client.get("/v1/sessions?limit=200")).json()["items"]
    assert [s["session_id"] for s in listed].count(session_id) == 1
    from tests.integration.engine_kit import read_topic

    log = await read_topic(stack.kafka, Catalogue.from_settings(stack.kafka).inbox.name)
    starts = [r for _, _, (name, r), _, _ in log.records if name == "StartSession"]
    assert sum(1 for r in starts if r["session_id"] == session_id) == 1
    from agentstream.gateway.idempotency import IdempotencyStore

    gateway = stack.api.gateway
    assert await IdempotencyStore(gateway.db, gateway.stream, ttl_s=0).expire() >= 1


async def read_sse(
    client: httpx.AsyncClient,
    session_id: str,
    *,
    last: int | None,
    until: str | None,
    after: int = 0,
) -> list[dict[str, Any]]:
    """Events of the stream until one of type ``until`` past seq ``after`` (or the end)."""
    import json

    headers = {} if last is None else {"Last-Event-ID": str(last)}
    received: list[dict[str, Any]] = []
    async with client.stream(
        "GET", f"/v1/sessions/{session_id}/stream", headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line:
                field, _, value = line.partition(": ")
                frame[field] = value
                continue
            if frame.get("event") not in (None, "delta") and "id" in frame:
                event = json.loads(frame["data"])
                assert int(frame["id"]) == event["seq"]
                received.append(event)
                if event["type"] == until and event["seq"] > after:
                    break
            frame = {}
    return received


async def test_sse_resume_misses_and_repeats_nothing(stack: Stack) -> None:
    # A gateway of its own, so stopping its projector leaves the others alone.
    settings = GatewaySettings(database_url=database_url())
    async with serving(settings, stack.kafka, agents()) as api:
        _, key = await api.new_tenant()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
            started = await client.post(
                "/v1/sessions", json={"agent": "demo", "input": "What is 3*5?", "keep_open": True}
            )
            session_id = started.json()["session_id"]
            first = await read_sse(client, session_id, last=None, until="AssistantMessageAdded")
            assert [e["seq"] for e in first] == list(range(1, len(first) + 1))
            await status_of(client, session_id, "waiting_for_user")
            # From now on the new events exist in Kafka only.
            assert api.gateway.projector is not None
            await api.gateway.projector.stop()
            said = await client.post(
                f"/v1/sessions/{session_id}/messages", json={"text": "And 2+2?"}
            )
            assert said.status_code == 202
            resume = first[-3]["seq"]
            second = await read_sse(
                client,
                session_id,
                last=resume,
                until="AssistantMessageAdded",
                after=first[-1]["seq"],
            )
            cancel = await client.post(f"/v1/sessions/{session_id}/cancel", json={})
            assert cancel.status_code == 202
            last = second[-1]["seq"]
            third = await read_sse(client, session_id, last=last, until=None)
    seqs = [e["seq"] for e in first[:resume] + second + third]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert third[-1]["type"] == "SessionCancelled"
    assert [e["type"] for e in second].count("UserMessageAdded") == 1


async def test_nul_in_filters_and_cursors_is_answered_not_500(stack: Stack) -> None:
    from projections.cursors import encode_cursor

    assert (await stack.client.get("/v1/sessions", params={"agent": "de\x00mo"})).json() == {
        "items": [],
        "next": None,
    }
    cursor = encode_cursor("sessions", [0, "a\x00b"])
    answer = await stack.client.get("/v1/sessions", params={"cursor": cursor})
    assert answer.status_code == 200

"""A tenant sees only its own sessions, through every endpoint, guessing ids or not.

Tenant A runs a session to the end. Tenant B, holding A's session id, gets
exactly what it gets for an id that never existed (404, same body) on every
session endpoint, never sees A's session in a list or A's usage, and cannot
take the id for a new session of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.testkit import database_url, eventually, serving, workers
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def clients(
    kafka_bootstrap: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    kafka = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=4)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    try:
        async with (
            workers(kafka),
            serving(GatewaySettings(database_url=database_url()), kafka) as api,
        ):
            _, key_a = await api.new_tenant("a")
            _, key_b = await api.new_tenant("b")
            async with (
                httpx.AsyncClient(
                    base_url=api.url, headers={"Authorization": f"Bearer {key_a}"}, timeout=30
                ) as a,
                httpx.AsyncClient(
                    base_url=api.url, headers={"Authorization": f"Bearer {key_b}"}, timeout=30
                ) as b,
            ):
                yield a, b
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


def session_requests(session_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        ("GET", f"/v1/sessions/{session_id}", None),
        ("GET", f"/v1/sessions/{session_id}/events", None),
        ("GET", f"/v1/sessions/{session_id}/stream", None),
        ("POST", f"/v1/sessions/{session_id}/messages", {"text": "hi"}),
        ("POST", f"/v1/sessions/{session_id}/approvals", {"call_id": "c1", "approved": True}),
        ("POST", f"/v1/sessions/{session_id}/cancel", {}),
    ]


async def test_tenant_isolation_on_every_endpoint(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    chosen = f"mine-{uuid.uuid4().hex[:8]}"
    started = await a.post(
        "/v1/sessions", json={"agent": "demo", "input": "What is 6*7?", "session_id": chosen}
    )
    assert started.status_code == 202 and started.json()["session_id"] == chosen

    async def completed() -> bool | None:
        answer = await a.get(f"/v1/sessions/{chosen}")
        return (
            True if answer.status_code == 200 and answer.json()["status"] == "completed" else None
        )

    await eventually(completed)
    guessed = str(uuid.uuid4())
    for (method, path, body), (_, guess_path, _) in zip(
        session_requests(chosen), session_requests(guessed), strict=True
    ):
        theirs = await b.request(method, path, json=body)
        nothing = await b.request(method, guess_path, json=body)
        assert theirs.status_code == 404, (path, theirs.text)
        assert nothing.status_code == 404
        assert theirs.json()["error"]["code"] == nothing.json()["error"]["code"] == "not_found"
        assert theirs.json()["error"]["message"] == nothing.json()["error"]["message"]
    # The owner sees it on the read endpoints.
    for method, path, _ in session_requests(chosen)[:3]:
        assert (await a.request(method, path)).status_code == 200, path
    listed = (await b.get("/v1/sessions?limit=200")).json()
    assert listed == {"items": [], "next": None}
    assert chosen in [s["session_id"] for s in (await a.get("/v1/sessions")).json()["items"]]
    for group in ("agent", "model", "day"):
        assert (await b.get(f"/v1/usage?group_by={group}")).json()["items"] == []
        assert (await a.get(f"/v1/usage?group_by={group}")).json()["items"]
    taken = await b.post("/v1/sessions", json={"agent": "demo", "input": "x", "session_id": chosen})
    assert taken.status_code == 409
    batch = await b.post(
        "/v1/sessions:batch",
        json={"sessions": [{"agent": "demo", "input": "x", "session_id": chosen}]},
    )
    assert batch.status_code == 409
    # Ended sessions stay A's: its events are unchanged by B's attempts.
    events = (await a.get(f"/v1/sessions/{chosen}/events")).json()["items"]
    assert events[-1]["type"] == "SessionCompleted"
    assert all(e["data"]["tenant_id"] == events[0]["data"]["tenant_id"] for e in events)

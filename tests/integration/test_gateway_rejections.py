"""Every refusal produces nothing: the inbox's end offsets are the same before and after.

No engine runs here, so nothing else writes to the inbox while we watch it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from agentstream.gateway.settings import MIB, GatewaySettings
from agentstream.gateway.testkit import RunningApi, database_url, inbox_end, serving
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

START = {"agent": "demo", "input": "What is 6*7?"}


@dataclass
class Quiet:
    kafka: KafkaSettings
    api: RunningApi
    key: str

    def client(self, key: str | None = None, url: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.AsyncClient(base_url=url or self.api.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
async def quiet(kafka_bootstrap: str) -> AsyncIterator[Quiet]:
    kafka = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=4)
    catalogue = Catalogue.from_settings(kafka)
    require_ok(await ensure_topics(kafka, catalogue))
    try:
        async with serving(GatewaySettings(database_url=database_url()), kafka) as api:
            _, key = await api.new_tenant()
            yield Quiet(kafka, api, key)
    finally:
        await delete_topics(kafka, [spec.name for spec in catalogue.all()])


async def refused(
    quiet: Quiet, request: Callable[[], Awaitable[httpx.Response]], status: int
) -> dict[str, Any]:
    """Send, check the status, check the inbox did not move; the error body."""
    before = await inbox_end(quiet.kafka)
    answer = await request()
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert await inbox_end(quiet.kafka) == before
    error: dict[str, Any] = answer.json()["error"]
    return error


async def test_401_missing_invalid_and_revoked_keys(quiet: Quiet) -> None:
    async with httpx.AsyncClient(base_url=quiet.api.url) as anonymous:
        error = await refused(quiet, lambda: anonymous.post("/v1/sessions", json=START), 401)
        assert error["code"] == "unauthorized"
    fake = "ask_0123456789ab_" + "A" * 43
    for key in ("nonsense", fake):
        async with quiet.client(key) as client:
            await refused(quiet, functools.partial(client.post, "/v1/sessions", json=START), 401)
    tenant, key = await quiet.api.new_tenant()
    async with quiet.client(key) as client:
        assert (await client.get("/v1/usage")).status_code == 200  # the key is cached now
        assert await quiet.api.gateway.tenants.revoke(tenant)
        await refused(quiet, lambda: client.post("/v1/sessions", json=START), 401)
        await refused(quiet, lambda: client.get("/v1/sessions"), 401)


async def test_413_400_and_422(quiet: Quiet) -> None:
    async with quiet.client() as client:
        big = {"agent": "demo", "input": "x" * MIB}
        await refused(quiet, lambda: client.post("/v1/sessions", json=big), 413)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(17):
                yield b" " * 65536

        await refused(quiet, lambda: client.post("/v1/sessions", content=chunks()), 413)
        error = await refused(quiet, lambda: client.post("/v1/sessions", content=b"{nope"), 400)
        assert error["code"] == "malformed_json"
        cases: list[tuple[Any, str, str]] = [
            ({"agent": "demo", "input": 7}, "input", "invalid_field"),
            ({"input": "hi"}, "agent", "invalid_field"),
            ({**START, "colour": "red"}, "colour", "invalid_field"),
            ({**START, "tenant_id": "someone-else"}, "tenant_id", "invalid_field"),
            ({**START, "metadata": {"a": 1}}, "metadata.a", "invalid_field"),
            ({**START, "session_id": "bad id/with slash"}, "session_id", "invalid_field"),
            ({**START, "session_id": None}, "session_id", "invalid_field"),
            ({**START, "metadata": None}, "metadata", "invalid_field"),
            ({"agent": "no-such-agent", "input": "hi"}, "agent", "unknown_agent"),
        ]
        for body, field, code in cases:
            post = functools.partial(client.post, "/v1/sessions", json=body)
            error = await refused(quiet, post, 422)
            assert (error.get("field"), error["code"]) == (field, code), error
        batch = {"sessions": [START, {"agent": "demo", "input": None}, START]}
        error = await refused(quiet, lambda: client.post("/v1/sessions:batch", json=batch), 422)
        assert error["field"] == "sessions[1].input"
        error = await refused(
            quiet, lambda: client.post("/v1/sessions/nobody/messages", json={"text": "hi"}), 404
        )
        await refused(
            quiet, lambda: client.post(f"/v1/sessions/{uuid.uuid4()}/cancel", json={}), 404
        )


async def test_405_with_allow_and_404_without(quiet: Quiet) -> None:
    async with quiet.client() as client:
        for method, path, allow in (
            ("PUT", "/v1/sessions", "GET, POST"),
            ("DELETE", "/v1/sessions", "GET, POST"),
            ("PATCH", "/v1/sessions", "GET, POST"),
            ("TRACE", "/v1/sessions", "GET, POST"),
            ("TRACE", "/healthz", "GET"),
            ("DELETE", f"/v1/sessions/{uuid.uuid4()}", "GET"),
        ):
            send = functools.partial(client.request, method, path, json=START)
            error = await refused(quiet, send, 405)
            assert error["code"] == "method_not_allowed"
            assert (await send()).headers["allow"] == allow
        missing = await client.put("/v1/nowhere", json=START)
        assert missing.status_code == 404 and "allow" not in missing.headers


async def test_429_with_retry_after(quiet: Quiet) -> None:
    _, key = await quiet.api.new_tenant(rate_per_s=0.01, burst=2)
    async with quiet.client(key) as client:
        for _ in range(2):
            assert (await client.post("/v1/sessions", json=START)).status_code == 202
        before = await inbox_end(quiet.kafka)
        answer = await client.post("/v1/sessions", json=START)
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "rate_limited"
        assert int(answer.headers["Retry-After"]) >= 1
        batch = await client.post("/v1/sessions:batch", json={"sessions": [START] * 3})
        assert batch.status_code == 429
        assert await inbox_end(quiet.kafka) == before


async def test_503_when_the_engine_lags(quiet: Quiet) -> None:
    async with quiet.client() as client:
        assert (await client.post("/v1/sessions", json=START)).status_code == 202
    settings = GatewaySettings(database_url=database_url(), max_lag=0, max_streams=0)
    async with serving(settings, quiet.kafka, projector=False) as strict:
        assert await strict.gateway.lag.refresh() > 0  # no engine consumes this inbox
        async with quiet.client(url=strict.url) as client:
            error = await refused(quiet, lambda: client.post("/v1/sessions", json=START), 503)
            assert error["code"] == "overloaded"
            answer = await client.post("/v1/sessions:batch", json={"sessions": [START]})
            assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
            assert (await client.get("/v1/sessions")).status_code == 200  # reads still served
            streamed = await client.get(f"/v1/sessions/{uuid.uuid4()}/stream")
            assert streamed.status_code == 503 and streamed.json()["error"]["code"] == (
                "too_many_streams"
            )

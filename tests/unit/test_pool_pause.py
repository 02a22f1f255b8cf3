"""A server's "come back later" holds every call of the process to it, over real HTTP.

Each test runs many calls at once against a fake server on 127.0.0.1 that
refuses the first request with a 429 (in one of the forms servers use to say
how long to wait). The pool's real transport is wrapped to note when each
request leaves the pool and when the 429 came back to it: requests already
sent then cannot be called back, but none may leave after it and before the
moment the server asked for. (Judging by arrival times at the server instead
would need a tolerance for requests still in the socket, which a loaded
machine stretches without bound.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from processors.agents.catalog import ModelConfig
from processors.executors.pool import CallContext, LLMPool, PoolSettings
from processors.executors.pool.http import HttpReply, StreamReply, Timeouts, make_transport
from tests.pool_servers import FakeModelServer, Protocol, Reply, Status
from tests.unit.test_pool_calls import QUICK, _catalog, _endpoint, _model, _request

EARLY = 0.01
"""Slack for comparing the server's monotonic clock with a deadline given in wall time."""

Headers = Callable[[float], tuple[dict[str, str], float]]
"""Wall time now -> the 429's headers and the seconds they ask for."""


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat()


def _http_date(wall: float) -> tuple[dict[str, str], float]:
    when = int(wall) + 2  # HTTP dates have whole seconds: wait 1-2 s
    return {"Retry-After": email.utils.formatdate(when, usegmt=True)}, when - wall


FORMS: dict[str, tuple[Protocol, Headers]] = {
    "retry-after seconds": ("openai", lambda wall: ({"Retry-After": "1"}, 1.0)),
    "retry-after date": ("openai", _http_date),
    "retry-after-ms": ("openai", lambda wall: ({"retry-after-ms": "1000"}, 1.0)),
    "anthropic reset headers": (
        "anthropic",
        lambda wall: (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": _iso(wall + 1.0),
                # tokens left: their later reset is not what the server waits for
                "anthropic-ratelimit-tokens-remaining": "90000",
                "anthropic-ratelimit-tokens-reset": _iso(wall + 40.0),
            },
            1.0,
        ),
    ),
    "openai reset headers": (
        "openai",
        lambda wall: (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "5000",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            1.0,
        ),
    ),
}


class RefuseFirst:
    """A responder: the first request gets a 429 with ``headers``, every other one "ok"."""

    def __init__(self, headers: Headers) -> None:
        self.headers = headers
        self.deadline = 0.0
        """Monotonic time the 429 asked to wait until."""
        self.refused = asyncio.Event()

    def __call__(self, body: dict[str, Any]) -> Status | Reply:
        if self.refused.is_set():
            return Reply("ok", delay_s=0.02)
        wall, now = time.time(), time.monotonic()
        headers, wait = self.headers(wall)
        self.deadline = now + wait
        self.refused.set()
        return Status(429, headers=headers)


class Watched:
    """The pool's real transport, noting when requests leave and when the 429 comes back."""

    def __init__(self) -> None:
        self.inner = make_transport("aiohttp", max_connections=0)
        self.sent: list[float] = []
        self.refusal_seen = 0.0
        self.refusal = asyncio.Event()

    def _back(self, status: int) -> None:
        if status == 429 and not self.refusal_seen:
            self.refusal_seen = time.monotonic()
            self.refusal.set()

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpReply:
        self.sent.append(time.monotonic())
        reply = await self.inner.post(url, headers, body, timeouts)
        self._back(reply.status)
        return reply

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> AsyncIterator[StreamReply]:
        self.sent.append(time.monotonic())
        async with self.inner.stream(url, headers, body, timeouts) as reply:
            self._back(reply.status)
            yield reply

    async def aclose(self) -> None:
        await self.inner.aclose()

    def held_back_too_late(self, refuse: RefuseFirst) -> list[float]:
        """Requests sent after the pool had the 429 and before its deadline (seconds after)."""
        assert self.refusal_seen, "the 429 never came back"
        return [
            at - self.refusal_seen
            for at in self.sent
            if self.refusal_seen < at < refuse.deadline - EARLY
        ]


@contextlib.asynccontextmanager
async def _pool(
    models: dict[str, ModelConfig], **settings: Any
) -> AsyncIterator[tuple[LLMPool, Watched]]:
    watched = Watched()
    pool = LLMPool(_catalog(models), PoolSettings(**{**QUICK, **settings}), transport=watched)
    await pool.start()
    try:
        yield pool, watched
    finally:
        await pool.aclose()
        await watched.aclose()


def _pauses(label: str) -> float:
    found = REGISTRY.get_sample_value("agentstream_llm_endpoint_pauses_total", {"endpoint": label})
    return found or 0.0


async def _run(pool: LLMPool, calls: int, ctx: CallContext | None = None) -> list[str | None]:
    results = await asyncio.gather(
        *(pool.complete(_request(), ctx or CallContext()) for _ in range(calls))
    )
    return [r.response.content for r in results]


@pytest.mark.parametrize("form", list(FORMS))
async def test_a_429_holds_every_call_waiting_for_capacity(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """300 calls through an endpoint with an RPM limit: 50 go at once, the rest queue for
    capacity; the queue must not drain into the server while it asked for a pause."""
    protocol, headers = FORMS[form]
    refuse = RefuseFirst(headers)
    server = await FakeModelServer(protocol, responder=refuse).start()
    try:
        models = {"m": _model("m", [_endpoint(server, rpm=12_000)])}
        async with _pool(models, burst_s=0.25) as (pool, watched):
            label = pool.models["m"].endpoints[0].label
            pauses_before = _pauses(label)
            with caplog.at_level(logging.WARNING, logger="processors.executors.pool.pause"):
                answers = await _run(pool, 300)
    finally:
        await server.stop()
    assert answers == ["ok"] * 300
    assert watched.held_back_too_late(refuse) == []
    assert len(server.seen) == 301  # every call once, the refused one twice
    assert max(s.at for s in server.seen) >= refuse.deadline - EARLY
    assert _pauses(label) == pauses_before + 1
    lines = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(lines) == 1 and label in lines[0] and "HTTP 429" in lines[0]


async def test_300_calls_at_once_then_all_succeed_after_the_pause() -> None:
    """No limits: all 300 go at once; the refused one waits out the pause and succeeds."""
    refuse = RefuseFirst(FORMS["retry-after seconds"][1])
    server = await FakeModelServer("openai", responder=refuse).start()
    try:
        async with _pool({"m": _model("m", [_endpoint(server)])}) as (pool, watched):
            answers = await _run(pool, 300)
            health = pool.health()["m"][0]
    finally:
        await server.stop()
    assert answers == ["ok"] * 300
    assert watched.held_back_too_late(refuse) == []
    assert len(server.seen) == 301
    assert server.seen[-1].at >= refuse.deadline - EARLY
    assert health["retry_after_s"] == 0.0


async def test_batch_calls_queued_for_a_slot_wait_too() -> None:
    refuse = RefuseFirst(FORMS["retry-after seconds"][1])
    server = await FakeModelServer("openai", responder=refuse).start()
    try:
        models = {"m": _model("m", [_endpoint(server)])}
        async with _pool(models, batch_concurrency=2) as (pool, watched):
            answers = await _run(pool, 40, CallContext(priority="batch"))
    finally:
        await server.stop()
    assert answers == ["ok"] * 40
    assert watched.held_back_too_late(refuse) == []


async def test_two_model_names_on_one_server_share_its_pause() -> None:
    refuse = RefuseFirst(FORMS["retry-after seconds"][1])
    server = await FakeModelServer("openai", responder=refuse).start()
    other = await FakeModelServer("openai").start()
    models = {
        "a": _model("a", [_endpoint(server)]),
        "b": _model("b", [_endpoint(server)]),
        "c": _model("c", [_endpoint(other)]),  # another server: not paused
    }
    try:
        async with _pool(models) as (pool, watched):
            first = asyncio.create_task(pool.complete(_request("a")))
            await watched.refusal.wait()
            through_c = await pool.complete(_request("c"))
            through_b = await pool.complete(_request("b"))
            assert (await first).response.content == "ok"
    finally:
        await server.stop()
        await other.stop()
    assert through_b.response.content == "ok" and through_c.response.content
    assert [s.at >= refuse.deadline - EARLY for s in server.seen[1:]] == [True, True]
    assert len(other.seen) == 1 and other.seen[0].at < refuse.deadline  # c did not wait

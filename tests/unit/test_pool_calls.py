"""The pool over real HTTP on 127.0.0.1: Retry-After, breaker and failover, timeouts,
malformed answers, fallbacks, rate and token limits, the L1 cache, the batch lane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from processors.agents.catalog import (
    AgentCatalog,
    EndpointConfig,
    ModelConfig,
    Prices,
    builtin_catalog,
)
from processors.agents.model_types import ChatMessage, LLMRequest
from processors.executors.pool import (
    CallContext,
    LLMPool,
    PoolError,
    PoolSettings,
    ShedError,
    TenantLimits,
)
from processors.executors.pool.breaker import CircuitBreaker
from tests.pool_servers import FakeModelServer, Hang, Protocol, Raw, Reply, Status

QUICK: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "seed": 7}


def _catalog(models: dict[str, ModelConfig]) -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog(base.agents, {**base.models, **models}, base.tools)


def _endpoint(server: FakeModelServer, **extra: Any) -> EndpointConfig:
    options = extra.pop("options", {})
    return EndpointConfig(
        provider=server.protocol, model="fake", base_url=server.base_url, options=options, **extra
    )


def _model(
    name: str,
    endpoints: Sequence[EndpointConfig],
    strategy: str = "round_robin",
    fallbacks: tuple[str, ...] = (),
    prices: Prices | None = None,
) -> ModelConfig:
    return ModelConfig(name, strategy, tuple(endpoints), fallbacks, prices or Prices())  # type: ignore[arg-type]


def _state(breaker: CircuitBreaker) -> str:
    return breaker.state  # a call, so mypy does not narrow it across awaits


def _request(model: str = "m", text: str = "Hello there") -> LLMRequest:
    return LLMRequest(model=model, messages=(ChatMessage("user", text),), call_id="c")


@pytest.fixture
async def servers() -> AsyncIterator[list[FakeModelServer]]:
    started = [await FakeModelServer("openai").start() for _ in range(3)]
    yield started
    for server in started:
        await server.stop()


async def _pool(models: dict[str, ModelConfig], **settings: Any) -> LLMPool:
    pool = LLMPool(_catalog(models), PoolSettings(**{**QUICK, **settings}))
    await pool.start()
    return pool


async def test_429_retry_after_is_honoured(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    one.push(Status(429, headers={"Retry-After": "1"}))
    pool = await _pool({"m": _model("m", [_endpoint(one)])})
    try:
        result = await pool.complete(_request())
    finally:
        await pool.aclose()
    assert result.attempts == 2 and result.response.content
    first, second = one.seen
    assert second.at - first.at >= 1.0  # no call to that endpoint before Retry-After


async def test_429_sends_traffic_elsewhere_until_retry_after_ms(
    servers: list[FakeModelServer],
) -> None:
    one, two = servers[0], servers[1]
    one.push(Status(429, headers={"retry-after-ms": "600"}))
    pool = await _pool({"m": _model("m", [_endpoint(one), _endpoint(two)])})
    try:
        started = time.monotonic()
        for _ in range(6):
            await pool.complete(_request())
        assert time.monotonic() - started < 0.5
        assert len(one.seen) == 1 and len(two.seen) == 6
        await asyncio.sleep(0.65)
        for _ in range(4):
            await pool.complete(_request())
        assert len(one.seen) == 3  # back in the rotation
    finally:
        await pool.aclose()


async def test_5xx_burst_opens_the_breaker_fails_over_and_probes_close_it(
    servers: list[FakeModelServer],
) -> None:
    sick, healthy = servers[0], servers[1]
    sick.default = Status(500)
    pool = await _pool(
        {"m": _model("m", [_endpoint(sick), _endpoint(healthy)])},
        breaker_window=10,
        breaker_min_calls=4,
        breaker_open_s=0.3,
        breaker_probes=2,
    )
    endpoint = pool.models["m"].endpoints[0]
    try:
        for _ in range(20):
            result = await pool.complete(_request())
            assert (
                result.endpoint == pool.models["m"].endpoints[1].label
            )  # failover inside the call
        assert _state(endpoint.breaker) == "open"
        assert len(sick.seen) == 4  # nothing more once open
        sick.default = Reply("recovered")
        await asyncio.sleep(0.35)
        answers = [(await pool.complete(_request())).response.content for _ in range(8)]
        assert _state(endpoint.breaker) == "closed"
        assert endpoint.breaker.transitions == ["open", "half_open", "closed"]
        assert "recovered" in answers
        health = pool.health()["m"]
        assert [h["breaker"] for h in health] == ["closed", "closed"]
        assert health[0]["ewma_s"] is not None and "127.0.0.1" in health[0]["endpoint"]
    finally:
        await pool.aclose()


async def test_a_hang_times_out_and_the_call_moves_on(servers: list[FakeModelServer]) -> None:
    stuck, good = servers[0], servers[1]
    stuck.default = Hang()
    pool = await _pool(
        {"m": _model("m", [_endpoint(stuck, options={"timeout_s": 0.3}), _endpoint(good)])}
    )
    try:
        started = time.monotonic()
        result = await pool.complete(_request())
        elapsed = time.monotonic() - started
        assert result.response.content and result.attempts == 2
        assert 0.3 <= elapsed < 1.5
        only_stuck = await _pool(
            {"h": _model("h", [_endpoint(stuck, options={"timeout_s": 0.2})])},
            max_attempts_per_model=2,
        )
        try:
            with pytest.raises(PoolError, match="no answer within"):
                await only_stuck.complete(_request("h"))
        finally:
            await only_stuck.aclose()
    finally:
        await pool.aclose()


async def test_malformed_json_is_retried_then_reported(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    one.push(Raw(b"{not json"))
    pool = await _pool({"m": _model("m", [_endpoint(one)])}, max_attempts_per_model=3)
    try:
        result = await pool.complete(_request())
        assert result.attempts == 2 and result.response.content
        one.default = Raw(b'{"choices": []}')
        with pytest.raises(PoolError) as caught:
            await pool.complete(_request())
        assert caught.value.attempts == 3 and "no choices" in str(caught.value)
        assert not caught.value.retryable  # the retrying is done
    finally:
        await pool.aclose()


async def test_fallbacks_in_declared_order_with_their_prices(
    servers: list[FakeModelServer],
) -> None:
    first, second, third = servers
    first.default = Status(503)
    second.default = Status(400, body='{"error": {"message": "context too long"}}')
    third.default = Reply("from third", usage=(1000, 500, 0))
    pool = await _pool(
        {
            "primary": _model("primary", [_endpoint(first)], fallbacks=("second", "third")),
            "second": _model("second", [_endpoint(second)]),
            "third": _model("third", [_endpoint(third)], prices=Prices(2.0, 4.0)),
        },
        max_attempts_per_model=2,
    )
    try:
        result = await pool.complete(_request("primary"))
    finally:
        await pool.aclose()
    assert result.model == "third" and result.response.content == "from third"
    assert len(first.seen) == 2  # retried: 503 is retryable
    assert len(second.seen) == 1  # 400 is not: straight to the next fallback
    assert result.cost_usd == pytest.approx((1000 * 2.0 + 500 * 4.0) / 1e6)
    assert result.attempts == 4


async def test_auth_failure_skips_that_endpoint_without_retrying_it(
    servers: list[FakeModelServer],
) -> None:
    locked, good = servers[0], servers[1]
    locked.default = Status(401)
    pool = await _pool({"m": _model("m", [_endpoint(locked), _endpoint(good)])})
    try:
        result = await pool.complete(_request())
    finally:
        await pool.aclose()
    assert result.attempts == 2 and len(locked.seen) == 1


async def test_unknown_model_is_not_retryable() -> None:
    pool = LLMPool(builtin_catalog())
    with pytest.raises(Exception, match="unknown model") as caught:
        await pool.complete(_request("nope"))
    assert not getattr(caught.value, "retryable", True)
    await pool.aclose()


async def test_endpoint_rpm_spreads_calls_out(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    pool = await _pool(
        {"m": _model("m", [_endpoint(one, rpm=600)])}, burst_s=0.2
    )  # 10/s, 2 at once
    try:
        await asyncio.gather(*(pool.complete(_request()) for _ in range(6)))
    finally:
        await pool.aclose()
    arrivals = sorted(s.at for s in one.seen)
    assert arrivals[1] - arrivals[0] < 0.05
    assert arrivals[-1] - arrivals[0] >= 0.35  # calls 3..6 waited 0.1 s each


async def test_endpoint_tpm_waits_and_settles_on_real_usage(
    servers: list[FakeModelServer],
) -> None:
    one = servers[0]
    one.default = Reply("ok", usage=(10, 5, 0))
    pool = await _pool(
        {"m": _model("m", [_endpoint(one, tpm=6000, options={"max_tokens": 40})])}, burst_s=1.0
    )  # 100 tokens/s, holds 100; each call reserves ~43
    bucket = pool.models["m"].endpoints[0].tpm
    assert bucket is not None
    try:
        started = time.monotonic()
        await asyncio.gather(*(pool.complete(_request()) for _ in range(3)))
        assert time.monotonic() - started >= 0.2  # the third waited for tokens
        await asyncio.sleep(0.05)
        assert bucket.level > 100 - 3 * 43 + 3 * (43 - 15) - 1  # refunds of the over-estimate
    finally:
        await pool.aclose()


async def test_a_tenant_over_its_limit_slows_only_itself(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    pool = await _pool(
        {"m": _model("m", [_endpoint(one)])},
        burst_s=0.2,
        tenants={"busy": TenantLimits(rpm=600)},
    )
    try:
        busy = [
            asyncio.create_task(pool.complete(_request(), CallContext(tenant_id="busy")))
            for _ in range(8)
        ]
        await asyncio.sleep(0.02)
        started = time.monotonic()
        await pool.complete(_request(), CallContext(tenant_id="quiet"))
        assert time.monotonic() - started < 0.2
        assert sum(task.done() for task in busy) < 8
        await asyncio.gather(*busy)
    finally:
        await pool.aclose()


async def test_shedding_by_priority(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    pool = await _pool(
        {"m": _model("m", [_endpoint(one)])},
        burst_s=1.0,
        tenants={"t": TenantLimits(rpm=120)},  # 2/s, holds 2
        max_wait_normal_s=0.1,
        max_wait_interactive_s=5.0,
    )
    try:
        normal = CallContext(tenant_id="t", priority="normal")
        await pool.complete(_request(), normal)
        await pool.complete(_request(), normal)
        with pytest.raises(ShedError, match="tenant t"):
            await pool.complete(_request(), normal)
        result = await pool.complete(_request(), CallContext(tenant_id="t", priority="interactive"))
        assert result.waited_s > 0.2
    finally:
        await pool.aclose()


async def test_l1_cache_hits_and_single_flight(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    one.default = Reply("cached answer", usage=(50, 10, 0), delay_s=0.05)
    pool = await _pool({"m": _model("m", [_endpoint(one)], prices=Prices(1.0, 1.0))})
    cacheable = CallContext(cacheable=True)
    try:
        first = await pool.complete(_request(), cacheable)
        second = await pool.complete(_request(), cacheable)
        assert (first.cache, second.cache) == ("", "l1")
        assert second.response.content == "cached answer"
        assert second.response.input_tokens == 0 and second.cost_usd == 0
        assert first.cost_usd > 0
        assert len(one.seen) == 1
        await pool.complete(_request())  # not cacheable: goes to the server
        assert len(one.seen) == 2
        burst = await asyncio.gather(
            *(pool.complete(_request(text="same new question"), cacheable) for _ in range(5))
        )
        assert len(one.seen) == 3
        assert sorted(r.cache for r in burst) == ["", "flight", "flight", "flight", "flight"]
    finally:
        await pool.aclose()


async def test_streamed_deltas_are_indexed_and_add_up(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    one.default = Reply("a streamed answer in pieces", chunk_chars=5)
    pool = await _pool({"m": _model("m", [_endpoint(one)])})
    got: list[tuple[int, str]] = []

    async def on_delta(index: int, text: str) -> None:
        got.append((index, text))

    try:
        result = await pool.complete(_request(), CallContext(on_delta=on_delta))
    finally:
        await pool.aclose()
    assert [i for i, _ in got] == list(range(len(got)))
    assert "".join(t for _, t in got) == result.response.content
    assert one.seen[0].body["stream"] is True


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_server_that_answers_streamed_requests_whole_serves_every_call(
    protocol: Protocol,
) -> None:
    server = await FakeModelServer(protocol, stream_as_json=True).start()
    server.default = Reply("whole, not streamed")
    pool = await _pool({"m": _model("m", [_endpoint(server)])}, breaker_min_calls=2)
    got: list[tuple[int, str]] = []

    async def on_delta(index: int, text: str) -> None:
        got.append((index, text))

    try:
        results = [
            await pool.complete(_request(), CallContext(on_delta=on_delta)) for _ in range(5)
        ]
    finally:
        await pool.aclose()
        await server.stop()
    assert [(r.response.content, r.attempts) for r in results] == [("whole, not streamed", 1)] * 5
    assert got == [(0, "whole, not streamed")] * 5
    assert all(seen.body["stream"] is True for seen in server.seen)


async def test_batch_lane_micro_batches_the_simulated_model() -> None:
    pool = LLMPool(builtin_catalog(), PoolSettings(batch_max_size=8, batch_max_delay_s=0.01))
    endpoint = pool.models["sim"].endpoints[0]
    requests = [_request("sim", f"question {i}") for i in range(16)]
    batch = CallContext(priority="batch")
    try:
        results = await asyncio.gather(*(pool.complete(r, batch) for r in requests))
        assert endpoint.batcher is not None and endpoint.batcher.batches == 2
        direct = [await pool.complete(r) for r in requests]
    finally:
        await pool.aclose()
    assert [r.response.content for r in results] == [r.response.content for r in direct]


async def test_sim_failures_go_through_the_retry_layer() -> None:
    from processors.agents.sim_model import SimulatedModel

    pool = LLMPool(
        builtin_catalog(),
        PoolSettings(**QUICK, max_attempts_per_model=6, breaker_failure_rate=0.9),
        sim=SimulatedModel(failure_rate=0.3, seed=3),
    )
    try:
        results = [await pool.complete(_request("sim", f"q{i}")) for i in range(20)]
    finally:
        await pool.aclose()
    assert any(r.attempts > 1 for r in results)  # some first attempts failed, retries answered


async def test_the_simulated_model_streams_only_when_asked() -> None:
    got: list[str] = []

    async def on_delta(index: int, text: str) -> None:
        got.append(text)

    request = _request("sim", "Tell me a story, please.")
    for stream_sim in (False, True):
        pool = LLMPool(builtin_catalog(), PoolSettings(stream_sim=stream_sim))
        try:
            result = await pool.complete(request, CallContext(on_delta=on_delta))
        finally:
            await pool.aclose()
        assert ("".join(got) == result.response.content) is stream_sim
        got.clear()


async def test_a_cancelled_probe_leaves_the_breaker_usable(servers: list[FakeModelServer]) -> None:
    one = servers[0]
    one.default = Status(500)
    pool = await _pool(
        {"m": _model("m", [_endpoint(one)])},
        breaker_min_calls=2,
        breaker_open_s=0.1,
        max_attempts_per_model=1,
        max_retry_after_s=0.5,
    )
    try:
        for _ in range(2):
            with pytest.raises(PoolError):
                await pool.complete(_request())
        await asyncio.sleep(0.15)  # half-open now
        one.default = Hang()
        probe = asyncio.create_task(pool.complete(_request()))
        await asyncio.sleep(0.1)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        one.default = Reply("back")
        assert (await pool.complete(_request())).response.content == "back"
    finally:
        await pool.aclose()


async def test_an_unusable_model_fails_over_at_once(servers: list[FakeModelServer]) -> None:
    primary, spare = servers[0], servers[1]
    primary.push(Status(429, headers={"Retry-After": "5"}))
    pool = await _pool(
        {
            "m": _model("m", [_endpoint(primary)], fallbacks=("spare",)),
            "spare": _model("spare", [_endpoint(spare)]),
        }
    )
    try:
        started = time.monotonic()
        result = await pool.complete(_request())
        assert result.model == "spare" and time.monotonic() - started < 1.0
        again = await pool.complete(_request())  # primary still sits out its Retry-After
        assert again.model == "spare" and len(primary.seen) == 1
    finally:
        await pool.aclose()

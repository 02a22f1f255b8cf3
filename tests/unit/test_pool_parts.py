"""The pool's parts alone: breaker, strategies, buckets, L1 cache, micro-batcher, settings."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from processors.agents.model_types import ChatMessage, LLMRequest, LLMResponse, ModelError
from processors.executors.pool.admission import Admission, TokenBucket
from processors.executors.pool.balance import LeastInflight, RoundRobin, Weighted, make_strategy
from processors.executors.pool.batching import MicroBatcher
from processors.executors.pool.breaker import CircuitBreaker
from processors.executors.pool.cache import L1Cache, cache_key, decode_response, encode_response
from processors.executors.pool.errors import ShedError
from processors.executors.pool.http import split_lines, sse_events
from processors.executors.pool.pause import rate_limit_reset, retry_after, server_wait
from processors.executors.pool.settings import PoolSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(breaker: CircuitBreaker) -> str:
    return breaker.state


# -- breaker ------------------------------------------------------------------------------------


def test_breaker_opens_on_failure_rate_and_probes_close_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        window=10, min_calls=4, failure_rate=0.5, open_s=5, probes=2, clock=clock
    )
    for ok in (True, False, True):
        assert breaker.acquire()
        breaker.record(ok)
    assert _state(breaker) == "closed"  # 3 outcomes: below min_calls
    assert breaker.acquire()
    breaker.record(False)  # 2 of 4 failed
    assert _state(breaker) == "open" and not breaker.available() and not breaker.acquire()
    assert breaker.reopens_in() == pytest.approx(5)
    clock.now += 5
    assert _state(breaker) == "half_open"
    assert breaker.acquire()
    assert not breaker.acquire()  # one probe at a time
    breaker.record(True)
    assert _state(breaker) == "half_open"
    assert breaker.acquire()
    breaker.record(True)
    assert _state(breaker) == "closed"
    assert breaker.transitions == ["open", "half_open", "closed"]


def test_a_failed_probe_reopens_for_longer() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=4, min_calls=2, failure_rate=0.5, open_s=1, clock=clock)
    for _ in range(2):
        breaker.acquire()
        breaker.record(False)
    clock.now += 1
    assert breaker.acquire()
    breaker.record(False)
    assert _state(breaker) == "open"
    assert breaker.reopens_in() == pytest.approx(2)
    clock.now += 1.5
    assert _state(breaker) == "open"
    clock.now += 0.5
    assert _state(breaker) == "half_open"


def test_old_failures_leave_the_window() -> None:
    breaker = CircuitBreaker(window=4, min_calls=4, failure_rate=0.75, clock=Clock())
    for ok in (False, False, True, True, True, True, False, False):
        breaker.record(ok)
    assert _state(breaker) == "closed"  # never 3 failures among the last 4


# -- strategies ----------------------------------------------------------------------------------


@dataclass
class Fake:
    index: int
    weight: float = 1.0
    inflight: int = 0
    ewma_s: float | None = None


def test_round_robin_and_least_inflight() -> None:
    endpoints = [Fake(0), Fake(1), Fake(2)]
    rr = RoundRobin()
    assert [rr.pick(endpoints) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    endpoints[0].inflight, endpoints[1].inflight, endpoints[2].inflight = 5, 1, 3
    assert {LeastInflight().pick(endpoints) for _ in range(5)} == {1}


def test_weighted_follows_weights_evenly() -> None:
    endpoints = [Fake(0, weight=3), Fake(1, weight=1)]
    strategy = Weighted()
    picks = [strategy.pick(endpoints) for _ in range(40)]
    assert Counter(picks) == {0: 30, 1: 10}
    assert all(picks[i : i + 4].count(1) == 1 for i in range(0, 40, 4))


def test_latency_prefers_the_fast_and_the_unknown() -> None:
    strategy = make_strategy("latency", explore=0.0, rng=random.Random(1))
    endpoints = [Fake(0, ewma_s=0.5), Fake(1, ewma_s=0.1), Fake(2, ewma_s=None)]
    assert strategy.pick(endpoints) == 2
    endpoints[2].ewma_s = 0.3
    assert strategy.pick(endpoints) == 1
    endpoints[1].inflight = 5  # 0.1 x 6 > 0.3 x 1
    assert strategy.pick(endpoints) == 2
    exploring = make_strategy("latency", explore=1.0, rng=random.Random(1))
    assert len({exploring.pick(endpoints) for _ in range(30)}) == 3


# -- buckets and admission ---------------------------------------------------------------------------


def test_bucket_reserves_into_debt_and_refills() -> None:
    clock = Clock()
    bucket = TokenBucket("b", per_minute=60, burst_s=2, clock=clock)  # 1/s, holds 2
    assert bucket.reserve(1) == 0 and bucket.reserve(1) == 0
    assert bucket.reserve(1) == pytest.approx(1.0)
    assert bucket.reserve(1) == pytest.approx(2.0)
    clock.now += 2
    assert bucket.wait_for(1) == pytest.approx(1.0)
    bucket.give(5)
    assert bucket.level == pytest.approx(2)  # never above capacity


async def test_admission_sheds_past_max_wait_and_gives_back() -> None:
    bucket = TokenBucket("b", per_minute=60, burst_s=1)
    admission = Admission()
    need = [(bucket, 1.0, False)]
    await admission.admit(need, priority="normal", max_wait_s=0.1, what="x")
    level = bucket.level
    with pytest.raises(ShedError, match="would wait"):
        await admission.admit(need, priority="normal", max_wait_s=0.1, what="x")
    assert bucket.level == pytest.approx(level, abs=0.05)


async def test_batch_only_takes_spare_capacity() -> None:
    bucket = TokenBucket("b", per_minute=600, burst_s=1)  # 10/s, holds 10
    admission = Admission(batch_headroom=0.5)
    for _ in range(6):
        bucket.reserve(1)  # 4 left: below the 5 kept for live traffic
    with pytest.raises(ShedError, match="spare capacity"):
        await admission.admit([(bucket, 1.0, False)], priority="batch", max_wait_s=0.05, what="x")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await admission.admit([(bucket, 1.0, False)], priority="batch", max_wait_s=2, what="x")
    assert loop.time() - started >= 0.15  # waited for the level to pass 5 + 1


async def test_a_cancelled_waiter_gives_its_reservation_back() -> None:
    bucket = TokenBucket("b", per_minute=60, burst_s=1)
    admission = Admission()
    bucket.reserve(1)
    waiter = asyncio.create_task(
        admission.admit([(bucket, 1.0, False)], priority="normal", max_wait_s=5, what="x")
    )
    await asyncio.sleep(0.01)
    assert bucket.level < 0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.level >= 0


# -- cache -------------------------------------------------------------------------------------------


def _request(text: str) -> LLMRequest:
    return LLMRequest(model="m", messages=(ChatMessage("user", text),))


def test_cache_key_covers_model_messages_and_parameters() -> None:
    base = cache_key("m", _request("hi"), "p")
    assert base == cache_key("m", _request("hi"), "p")
    assert base != cache_key("m2", _request("hi"), "p")
    assert base != cache_key("m", _request("hi!"), "p")
    assert base != cache_key("m", _request("hi"), "p2")


def test_l1_is_an_lru_with_ttl() -> None:
    clock = Clock()
    cache = L1Cache(entries=2, ttl_s=10, clock=clock)
    one, two, three = LLMResponse("1"), LLMResponse("2"), LLMResponse("3")
    cache.put("a", one)
    cache.put("b", two)
    assert cache.get("a") is one  # a is now the most recent
    cache.put("c", three)
    assert cache.get("b") is None and cache.get("a") is one
    clock.now += 11
    assert cache.get("a") is None and len(cache) == 1


def test_cached_responses_round_trip() -> None:
    from processors.agents.model_types import ToolCall

    response = LLMResponse(
        None, (ToolCall("c", "calc", '{"x":1}'),), 5, 6, 1, "tool_calls", "openai/m"
    )
    assert decode_response(encode_response(response)) == response


# -- micro-batching ----------------------------------------------------------------------------------


async def test_micro_batcher_groups_and_isolates_failures() -> None:
    calls: list[int] = []

    async def flush(requests: object) -> list[LLMResponse | ModelError]:
        batch = list(requests)  # type: ignore[call-overload]
        calls.append(len(batch))
        return [
            ModelError("no", retryable=True)
            if r.messages[0].content == "bad"
            else LLMResponse(r.messages[0].content)
            for r in batch
        ]

    batcher = MicroBatcher(flush, max_size=4, max_delay_s=0.01)
    texts = ["a", "b", "bad", "c", "d", "e"]
    results = await asyncio.gather(
        *(batcher.submit(_request(t)) for t in texts), return_exceptions=True
    )
    assert calls == [4, 2]
    assert [r.content if isinstance(r, LLMResponse) else "error" for r in results] == [
        "a", "b", "error", "c", "d", "e",
    ]  # fmt: skip


# -- protocol helpers and settings ----------------------------------------------------------------


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "2"}) == 2
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470) == 10
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_rate_limit_reset_headers() -> None:
    now = 1_700_000_000.0
    anthropic = {
        "Anthropic-RateLimit-Requests-Remaining": "0",
        "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:22.5Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2023-11-14T22:13:25Z",
        "anthropic-ratelimit-input-tokens-remaining": "4000",
        "anthropic-ratelimit-input-tokens-reset": "2023-11-14T22:14:20Z",
    }
    assert rate_limit_reset(anthropic, now=now) == pytest.approx(5.0)  # the later exhausted one
    openai = {"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "1m2.5s"}
    assert rate_limit_reset(openai, now=now) == pytest.approx(0.02)  # none says empty: earliest
    openai["x-ratelimit-remaining-tokens"] = "0"
    assert rate_limit_reset(openai, now=now) == pytest.approx(62.5)
    assert rate_limit_reset({"x-ratelimit-reset-requests": "soon"}, now=now) is None
    assert rate_limit_reset({"x-ratelimit-limit-requests": "60"}, now=now) is None
    # Retry-After wins; the reset headers speak only for a 429 (a 200 carries them too).
    assert server_wait(429, {"retry-after": "3", **openai}) == 3
    assert server_wait(429, {"x-ratelimit-reset-requests": "2s"}) == 2
    assert server_wait(503, {"x-ratelimit-reset-requests": "2s"}) is None


async def test_sse_parsing_across_odd_chunks() -> None:
    async def chunks() -> object:
        for piece in (b"event: a\r\nda", b"ta: 1\n", b"data: 2\n\n: comment\n\ndata: x", b"\n\n"):
            yield piece

    events = [e async for e in sse_events(split_lines(chunks()))]  # type: ignore[arg-type]
    assert events == [("a", "1\n2"), ("", "x")]


def test_settings_from_env() -> None:
    settings = PoolSettings.from_env(
        {
            "AGENTSTREAM_POOL_MAX_ATTEMPTS": "9",
            "AGENTSTREAM_POOL_CACHE_L2": "yes",
            "AGENTSTREAM_POOL_BREAKER_OPEN_S": "0.5",
            "AGENTSTREAM_POOL_HTTP": "httpx",
            "AGENTSTREAM_POOL_TENANT_RPM": "120",
            "AGENTSTREAM_DATABASE_URL": "postgresql://x/y",
        }
    )
    assert settings.max_attempts == 9 and settings.cache_l2 is True
    assert settings.breaker_open_s == 0.5 and settings.http == "httpx"
    assert settings.tenant("anyone").rpm == 120 and settings.tenant("anyone").tpm is None
    assert settings.database_url == "postgresql://x/y"
    with pytest.raises(ValueError, match="AGENTSTREAM_POOL_MAX_ATTEMPTS"):
        PoolSettings.from_env({"AGENTSTREAM_POOL_MAX_ATTEMPTS": "many"})

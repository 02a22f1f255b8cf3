"""The per-tenant token bucket (429) and the lag gate (503), without Kafka."""

from __future__ import annotations

import pytest

from agentstream.gateway.errors import ApiError
from agentstream.gateway.limits import LagMonitor, RateLimiter
from streams.settings import KafkaSettings


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=3)
    assert [limiter.wait_s("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_s("a", now=0.0) == pytest.approx(0.1)
    assert limiter.wait_s("a", now=0.1) == 0.0
    assert limiter.wait_s("b", now=0.0) == 0.0  # tenants do not share a bucket


def test_a_refused_request_takes_no_tokens() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=2)
    assert limiter.wait_s("a", 2, now=0.0) == 0.0
    assert limiter.wait_s("a", 2, now=1.0) == pytest.approx(1.0)
    assert limiter.wait_s("a", 2, now=2.0) == 0.0


def test_tenant_overrides_and_oversized_batches() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    assert limiter.wait_s("a", 5, rate_per_s=100, burst=10, now=0.0) == 0.0
    assert limiter.wait_s("b", 5, now=0.0) == float("inf")


def test_429_carries_retry_after_in_whole_seconds() -> None:
    limiter = RateLimiter(rate_per_s=0.5, burst=1)
    limiter.check("a")
    with pytest.raises(ApiError) as refused:
        limiter.check("a")
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "2"


def test_lag_gate() -> None:
    monitor = LagMonitor(KafkaSettings(), "x.inbox", group_id="x.engine", max_lag=100)
    monitor.check()  # not measured yet: let traffic through
    monitor.lag = 100
    monitor.check()
    monitor.lag, monitor.catch_up_per_s = 400, 100.0
    with pytest.raises(ApiError) as refused:
        monitor.check()
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == "3"  # 300 excess at 100/s

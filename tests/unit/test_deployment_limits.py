"""Limits for the whole deployment, without services: shares of buckets and their arithmetic.

The tests with several executors and API processes on the real broker and
Postgres are in tests/integration/test_deployment_limits.py.
"""

from __future__ import annotations

import pytest

from agentstream.gateway.limits import ApiPeers, RateLimiter
from processors.agents.catalog import builtin_catalog
from processors.executors.llm_executor import LLMExecutor
from processors.executors.pool import PoolSettings, TenantLimits
from processors.executors.pool.admission import Share, TenantBuckets, TokenBucket
from projections.db import create_engine
from streams.settings import KafkaSettings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_fills_at_its_share_of_the_limit() -> None:
    clock, share = Clock(), Share(0.25)
    bucket = TokenBucket("b", per_minute=600, burst_s=2, clock=clock, share=share)
    assert bucket.rate == pytest.approx(2.5) and bucket.capacity == pytest.approx(5)
    for _ in range(5):
        assert bucket.reserve(1) == 0
    assert bucket.reserve(1) == pytest.approx(0.4)  # one token at 2.5/s


def test_a_shrinking_share_cuts_the_burst_and_a_growing_one_never_adds_to_it() -> None:
    clock, share = Clock(), Share(1.0)
    bucket = TokenBucket("b", per_minute=600, burst_s=1, clock=clock, share=share)
    assert bucket.level == pytest.approx(10)
    share.set(0.5)  # partitions handed over: the unspent burst goes down with them
    assert bucket.wait_for(1) == 0
    assert (bucket.rate, bucket.capacity, bucket.level) == pytest.approx((5, 5, 5))
    for _ in range(5):
        bucket.reserve(1)
    share.set(1.0)  # partitions taken over: a faster refill, not a fresh burst
    assert bucket.wait_for(1) == pytest.approx(0.1)
    clock.now += 0.5
    assert bucket.level == pytest.approx(0.0)  # not refilled until used
    bucket.give(0)
    assert bucket.level == pytest.approx(5.0)  # 0.5 s at 10/s


def test_shares_of_every_executor_add_up_to_the_limit() -> None:
    clock = Clock()
    owned = {"a": 2, "b": 1, "c": 1}
    buckets = [
        TokenBucket("b", 1200, 1, clock, Share(n / sum(owned.values()))) for n in owned.values()
    ]
    assert sum(b.rate for b in buckets) == pytest.approx(20)
    assert sum(b.capacity for b in buckets) == pytest.approx(20)


def test_a_share_is_in_zero_to_one() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            Share(bad)


def test_tenant_limits_configured_beat_code_and_default_and_rebuild_buckets() -> None:
    clock, share = Clock(), Share(0.5)
    tenants = TenantBuckets(
        TenantLimits(rpm=60),
        {"acme": TenantLimits(rpm=600)},
        burst_s=1,
        share=share,
        clock=clock,
    )
    assert not tenants.counts_tokens
    assert tenants.needs("", 10) == []
    [(acme, _, _)] = tenants.needs("acme", 10)
    assert acme.rate == pytest.approx(5)  # 600/min, half of it here
    [(other, _, _)] = tenants.needs("other", 10)
    assert other.rate == pytest.approx(0.5)
    tenants.update({"acme": TenantLimits(rpm=120, tpm=6000)})
    assert tenants.counts_tokens
    (rpm, _, _), (tpm, amount, counts) = tenants.needs("acme", 10)
    assert rpm.rate == pytest.approx(1) and tpm.rate == pytest.approx(50)
    assert (amount, counts) == (10.0, True)
    assert tenants.needs("other", 10)[0][0] is other  # unchanged tenants keep their bucket
    tenants.update({})
    assert tenants.needs("acme", 1)[0][0].rate == pytest.approx(5)  # back to the code's


def test_the_llm_executor_takes_the_share_of_its_partitions() -> None:
    executor = LLMExecutor(
        kafka=KafkaSettings(topic_prefix="tshare"),
        agents=builtin_catalog(),
        pool_settings=PoolSettings(tenant_limits_s=0),
    )
    share = executor.pool.share
    executor.assignment_changed(3, 12)
    assert share.value == pytest.approx(0.25)
    executor.assignment_changed(12, 12)
    assert share.value == 1.0
    executor.assignment_changed(0, 12)  # calls still under way get one partition's share
    assert share.value == pytest.approx(1 / 12)
    assert executor.tenant_limits is None


def _peers(live: int) -> ApiPeers:
    peers = ApiPeers(create_engine("postgresql://nobody@127.0.0.1:1/none"), "tpeers")
    peers.live = live
    return peers


def test_the_gateway_divides_rate_and_burst_by_the_live_processes() -> None:
    peers = _peers(1)
    limiter = RateLimiter(rate_per_s=30, burst=9, peers=peers)
    assert sum(limiter.wait_s("a", now=0.0) == 0 for _ in range(20)) == 9
    peers.live = 3
    limiter = RateLimiter(rate_per_s=30, burst=9, peers=peers)
    assert sum(limiter.wait_s("a", now=0.0) == 0 for _ in range(20)) == 3
    assert limiter.wait_s("a", now=0.0) == pytest.approx(0.1)  # one token at 10/s
    assert sum(limiter.wait_s("a", now=1.0) == 0 for _ in range(20)) == 3  # capped at 9/3


def test_a_batch_above_the_share_of_the_burst_leaves_a_debt() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=9, peers=_peers(3))
    assert limiter.wait_s("a", 6, now=0.0) == 0.0  # 6 > 9/3, the bucket was full
    assert limiter.wait_s("a", 1, now=0.0) == pytest.approx(1.2)  # debt 3, then 1, at 10/3 a s
    assert limiter.wait_s("a", 10, now=0.0) == float("inf")  # above the whole burst


def test_a_debt_keeps_its_schedule_when_the_share_grows() -> None:
    clock, share = Clock(), Share(0.25)
    bucket = TokenBucket("b", per_minute=600, burst_s=1, clock=clock, share=share)
    for _ in range(2 + 5):  # 2.5 in the bucket at 2.5/s: 4.5 owed, the last goes at 1.8 s
        last = bucket.reserve(1)
    assert last == pytest.approx(1.8)
    share.set(0.5)  # 5/s from now: the next call queues behind the 1.8 s, not beside them
    assert bucket.reserve(1) == pytest.approx(1.8 + 0.2)
    share.set(0.25)  # slower: the debt stays in tokens and takes longer
    assert bucket.reserve(1) == pytest.approx((10 + 1) / 2.5)  # 10 owed at 5/s, now at 2.5/s

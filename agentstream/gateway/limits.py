"""Push-back: a per-tenant rate limit (429) and the engine's consumer lag (503).

Both are checked before a body is parsed, so a refused request costs little
and produces nothing.

* :class:`RateLimiter`: a token bucket per tenant in each gateway process,
  filling at the tenant's rate divided by the number of live API processes
  (:class:`ApiPeers`), so the configured rate is the deployment's. The hot
  path never waits on a shared store: the count comes from a heartbeat row per
  process in Postgres, refreshed in the background. A batch of n sessions
  takes n tokens. The refusal says when enough tokens will be back.

  How the share behaves: a load balancer spreads a tenant's requests over the
  processes, so each sees about 1/N of them against 1/N of the rate. A process
  that dies keeps its row until ``ttl_s`` passes, and the others admit less
  meanwhile (never more); a process that starts is counted by the others
  within one heartbeat, the only window in which the deployment may admit up to
  (N+1)/N of the rate. A client pinned to one process (one keep-alive
  connection, no balancing) gets 1/N of its rate, never more than all of it.
* :class:`LagMonitor`: every ``interval`` it measures how far the engine's
  consumer group (``<prefix>.engine``) is behind the inbox end offsets. Past
  ``max_lag`` records, commands get 503 with a Retry-After estimated from the
  rate at which the engine is catching up. Reads are never refused for lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.gateway.errors import retry_later
from projections.db import raw_connection
from streams.clients import new_admin, new_consumer
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


_BEAT = """
WITH beat AS (
    INSERT INTO api_instances (deployment, instance_id) VALUES ($1, $2)
    ON CONFLICT (deployment, instance_id) DO UPDATE SET seen_at = now()
), gone AS (
    DELETE FROM api_instances WHERE seen_at < now() - interval '1 hour' AND instance_id <> $2
)
SELECT count(*) + 1 FROM api_instances
WHERE deployment = $1 AND instance_id <> $2 AND seen_at > now() - $3 * interval '1 second'
"""
"""Our heartbeat, the old rows' cleanup and the count of live processes, in one round trip
(Postgres's clock decides who is live, so hosts' clocks need not agree)."""


class ApiPeers:
    """How many API processes of ``deployment`` are live: a heartbeat row each in Postgres.

    ``deployment`` is the topic prefix: the processes feeding one inbox share its
    tenants' rates; another deployment on the same Postgres counts apart.
    """

    def __init__(
        self, db: AsyncEngine, deployment: str, *, interval_s: float = 2.0, ttl_s: float = 6.0
    ) -> None:
        self.db = db
        self.deployment = deployment
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        """A process whose row is older than this counts as gone."""
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.live = 1
        """Live API processes, this one included; kept as it was while Postgres fails."""
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Register before serving, so the others count this process from their next beat."""
        with contextlib.suppress(Exception):
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="api-peers")

    async def stop(self) -> None:
        """Leave at once (the others take our share at their next beat)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with raw_connection(self.db) as connection:
                await connection.execute(
                    "DELETE FROM api_instances WHERE deployment = $1 AND instance_id = $2",
                    self.deployment,
                    self.instance_id,
                )

    async def beat(self) -> int:
        async with raw_connection(self.db) as connection:
            live = int(
                await connection.fetchval(_BEAT, self.deployment, self.instance_id, self.ttl_s)
            )
        if live != self.live:
            log.info("%d API processes live: each admits 1/%d of every tenant's rate", live, live)
        self.live = live
        return live

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep the last count rather than claim the whole rate
                if not self._failing:
                    log.warning("API heartbeat failed (keeping %d live): %s", self.live, error)
                self._failing = True


class RateLimiter:
    """Token buckets keyed by tenant; see the module docstring."""

    def __init__(self, rate_per_s: float, burst: int, peers: ApiPeers | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.peers = peers
        self._buckets: dict[str, _Bucket] = {}

    def wait_s(
        self,
        tenant: str,
        n: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
        now: float | None = None,
    ) -> float:
        """Take ``n`` tokens and return 0.0, or take none and return the seconds to wait.

        Rate and bucket are this process's share of the tenant's. A batch larger
        than the share of the bucket (not than the whole) is let through when the
        bucket is full, leaving a debt that later requests wait out.
        """
        live = self.peers.live if self.peers is not None else 1
        rate = (rate_per_s or self.rate_per_s) / live
        whole = burst or self.burst
        size = max(1.0, whole / live)
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(size, now)
        else:
            bucket.tokens = min(size, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if n > whole:
            return float("inf")
        if bucket.tokens >= min(n, size):
            bucket.tokens -= n
            return 0.0
        return (min(n, size) - bucket.tokens) / rate

    def check(
        self, tenant: str, n: int = 1, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        """Raise 429 (with Retry-After) unless ``n`` tokens are available."""
        wait = self.wait_s(tenant, n, rate_per_s=rate_per_s, burst=burst)
        if wait > 0.0:
            if wait == float("inf"):
                raise retry_later(
                    429, "rate_limited", f"{n} commands exceed this tenant's burst", 60.0
                )
            raise retry_later(429, "rate_limited", "rate limit exceeded for this tenant", wait)


class LagMonitor:
    """How far the engine group is behind the inbox; see the module docstring."""

    def __init__(
        self,
        kafka: KafkaSettings,
        inbox: str,
        *,
        group_id: str,
        max_lag: int,
        interval_s: float = 1.0,
    ) -> None:
        self.kafka = kafka
        self.inbox = inbox
        self.group_id = group_id
        self.max_lag = max_lag
        self.interval_s = interval_s
        self.lag: int | None = None
        """Records behind at the last measurement; None until measured or when Kafka fails."""
        self.catch_up_per_s: float = 0.0
        """Records per second the lag shrank by, at the last two measurements."""
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._last: tuple[float, int] | None = None

    async def start(self) -> None:
        self._admin = new_admin(self.kafka)
        await self._admin.start()
        self._consumer = new_consumer(self.kafka)
        await self._consumer.start()
        with contextlib.suppress(Exception):
            await self.refresh()
        self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.lag = None
                log.warning("cannot measure the engine's lag: %s", error)

    async def refresh(self) -> int:
        """Measure now; returns the lag in records."""
        assert self._admin is not None and self._consumer is not None
        tps = [TopicPartition(self.inbox, p) for p in range(self.kafka.partitions)]
        ends = await self._consumer.end_offsets(tps)
        starts = await self._consumer.beginning_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group_id)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            # A partition the group never committed counts from its first retained record.
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, int(ends[tp]) - max(done, int(starts[tp])))
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            shrink = (self._last[1] - lag) / (now - self._last[0])
            self.catch_up_per_s = max(0.0, shrink)
        self._last = (now, lag)
        self.lag = lag
        return lag

    def check(self) -> None:
        """Raise 503 (with Retry-After) while the engine is more than ``max_lag`` behind."""
        lag = self.lag
        if lag is None or lag <= self.max_lag:
            return
        excess = lag - self.max_lag
        wait = excess / self.catch_up_per_s if self.catch_up_per_s > 0 else 5.0
        raise retry_later(
            503,
            "overloaded",
            f"the session engine is {lag} commands behind; retry later",
            min(60.0, wait),
        )

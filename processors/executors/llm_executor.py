"""The LLM executor: a ``WorkExecutor`` whose handler is the LLM pool.

It owns the lifecycle of what the pool needs around the executor loop: the
pool itself (L2 cache connection, HTTP sessions) and the token-delta
producer, started before the first work item and closed after the last.
Everything else (thousands of calls in flight, committing the lowest
unfinished offset, results to the inbox) is the plain WorkExecutor's.

Rate limits are the deployment's: after every rebalance the pool takes the
share of ``llm-calls`` partitions this executor owns, and per-tenant limits
are re-read from the tenants table. From a revocation to the next assignment
(and with no partition at all) the share is one partition's: calls still under
way from partitions just handed over are admitted slowly rather than shed, and
no executor keeps a share sized for partitions another one is taking.
"""

from __future__ import annotations

import logging

from processors.agents.catalog import AgentCatalog
from processors.executors.pool.deltas import DeltaPublisher
from processors.executors.pool.handler import pool_llm_handler
from processors.executors.pool.pool import LLMPool
from processors.executors.pool.settings import PoolSettings
from processors.executors.pool.tenant_limits import TenantLimitsWatch
from processors.executors.work_executor import ResultProducer, WorkExecutor
from processors.settings import ExecutorSettings
from schemas import Codec
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


class LLMExecutor(WorkExecutor):
    """Consumes ``llm-calls`` and answers through the pool (see the module docstring)."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        agents: AgentCatalog,
        settings: ExecutorSettings | None = None,
        pool_settings: PoolSettings | None = None,
        pool: LLMPool | None = None,
        stream_deltas: bool | None = None,
        codec: Codec | None = None,
        name: str = "llm",
        results: ResultProducer | None = None,
    ) -> None:
        catalogue = Catalogue.from_settings(kafka)
        self.pool = pool or LLMPool(agents, pool_settings or PoolSettings.from_env())
        if stream_deltas is None:
            stream_deltas = self.pool.settings.stream_deltas
        self.deltas = DeltaPublisher(kafka, catalogue.deltas.name, codec) if stream_deltas else None
        s = self.pool.settings
        self.tenant_limits = (
            TenantLimitsWatch(
                s.database_url, self.pool.set_tenant_limits, interval_s=s.tenant_limits_s
            )
            if s.tenant_limits_s > 0
            else None
        )
        super().__init__(
            name=name,
            kafka=kafka,
            topic=catalogue.llm_calls,
            handler=pool_llm_handler(self.pool, agents, deltas=self.deltas),
            settings=settings,
            codec=codec,
            results=results,
        )

    def assignment_changed(self, owned: int, total: int) -> None:
        share = max(1, owned) / max(1, total, owned)
        if share != self.pool.share.value:
            log.info(
                "%s: %d of %d partitions, %.3g of every LLM rate limit",
                self.name,
                owned,
                total,
                share,
            )
        self.pool.share.set(share)

    async def start(self) -> None:
        await self.pool.start()
        if self.tenant_limits is not None:
            await self.tenant_limits.start()
        if self.deltas is not None:
            await self.deltas.start()
        await super().start()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            if self.tenant_limits is not None:
                await self.tenant_limits.stop()
            if self.deltas is not None:
                await self.deltas.stop()
            await self.pool.aclose()

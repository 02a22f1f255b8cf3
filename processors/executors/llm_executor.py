"""The LLM executor: a ``WorkExecutor`` whose handler is the LLM pool.

It owns the lifecycle of what the pool needs around the executor loop: the
pool itself (L2 cache connection, HTTP sessions) and the token-delta
producer, started before the first work item and closed after the last.
Everything else (thousands of calls in flight, committing the lowest
unfinished offset, results to the inbox) is the plain WorkExecutor's.
"""

from __future__ import annotations

from processors.agents.catalog import AgentCatalog
from processors.executors.pool.deltas import DeltaPublisher
from processors.executors.pool.handler import pool_llm_handler
from processors.executors.pool.pool import LLMPool
from processors.executors.pool.settings import PoolSettings
from processors.executors.work_executor import ResultProducer, WorkExecutor
from processors.settings import ExecutorSettings
from schemas import Codec
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings


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
        super().__init__(
            name=name,
            kafka=kafka,
            topic=catalogue.llm_calls,
            handler=pool_llm_handler(self.pool, agents, deltas=self.deltas),
            settings=settings,
            codec=codec,
            results=results,
        )

    async def start(self) -> None:
        await self.pool.start()
        if self.deltas is not None:
            await self.deltas.start()
        await super().start()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            if self.deltas is not None:
                await self.deltas.stop()
            await self.pool.aclose()

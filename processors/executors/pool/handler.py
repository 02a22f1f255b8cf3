"""The LLM executor's handler on the pool: ``LLMCallWork`` in, ``LLMCallResult`` out.

It reads who is calling from the work item's envelope and agent (tenant,
priority, cacheable, deadline), lets the pool answer, and writes the result
with its accounting: input, output and cached tokens, cost from the answering
model's price table (a fallback's own prices when a fallback answered),
latency and provider attempts. It never raises for a model's failure or a
malformed work item: those become a failed result with the reason, which the
engine records and the session's owner can read. A call whose deadline has
passed is skipped (None): the engine's durable timer has already failed it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from processors import metrics as engine_metrics
from processors.agents.catalog import AgentCatalog
from processors.agents.model_types import LLMRequest, ModelError, llm_result_record
from processors.executors.pool.deltas import DeltaPublisher
from processors.executors.pool.errors import PoolError
from processors.executors.pool.pool import LLMPool
from processors.executors.pool.records import CallContext
from processors.executors.work_executor import Handler, Record


def _now_ms() -> int:
    return int(time.time() * 1000)


def pool_llm_handler(
    pool: LLMPool, agents: AgentCatalog, *, deltas: DeltaPublisher | None = None
) -> Handler:
    """See the module docstring."""

    async def handle(name: str, item: dict[str, Any]) -> Record | None:
        if name != "LLMCallWork":
            raise ValueError(f"{name} is not an LLM work item")
        now_ms = _now_ms()
        deadline_ms = int(item.get("deadline_ms") or 0)
        if deadline_ms and now_ms >= deadline_ms:
            return None
        started = time.perf_counter()
        agent = agents.agent(str(item.get("agent", "")))
        try:
            request = LLMRequest.from_work(item)
        except (KeyError, ValueError, TypeError) as error:
            return _failed(item, f"bad work item: {error}", 0, started)
        ctx = CallContext(
            tenant_id=str(item["tenant_id"]),
            priority=agent.priority if agent is not None else "normal",
            cacheable=agent.cacheable if agent is not None else False,
            deadline=time.monotonic() + (deadline_ms - now_ms) / 1000 if deadline_ms else None,
            on_delta=deltas.sink(item) if deltas is not None else None,
        )
        try:
            result = await pool.complete(request, ctx)
        except ModelError as error:
            if deadline_ms and _now_ms() >= deadline_ms:
                return None
            attempts = error.attempts if isinstance(error, PoolError) else 0
            return _failed(item, str(error), attempts, started)
        response = result.response
        for token_type, count in (
            ("input", response.input_tokens),
            ("output", response.output_tokens),
            ("cached", response.cached_tokens),
        ):
            if count:
                engine_metrics.TOKENS.labels(result.model, token_type).inc(count)
        record = llm_result_record(
            item,
            response,
            event_id=str(uuid.uuid4()),
            time_ms=_now_ms(),
            cost_usd=result.cost_usd,
            latency_s=time.perf_counter() - started,
            attempts=result.attempts,
        )
        record["model"] = response.model or result.model
        return "LLMCallResult", record

    return handle


def _failed(item: dict[str, Any], error: str, attempts: int, started: float) -> Record:
    record = llm_result_record(
        item,
        None,
        event_id=str(uuid.uuid4()),
        time_ms=_now_ms(),
        error=error[:2000],
        latency_s=time.perf_counter() - started,
        attempts=attempts,
    )
    record["model"] = str(item.get("model", ""))
    return "LLMCallResult", record

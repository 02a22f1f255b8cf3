"""What the LLM and tool executors do with one work item.

Each handler turns a work item into the result command the engine waits for
(``LLMCallResult`` / ``ToolCallResult``), never raising for a model's or a
tool's failure: a failure is a result the engine records and the model sees.
A work item whose deadline passed is skipped: the engine's durable timer has
timed the call out already, and a late result would be ignored anyway.

The LLM handler asks a :class:`Model` by the model name in the work item.
:class:`ModelRouter` hands out the LLM pool's models (``processors.pool``) for
every provider, the simulated one included, so routing, breakers, limits and
the cache apply to all alike. The worker's LLM role uses the pool's own
handler (``processors.pool.handler``), which adds tenant limits, priorities,
the response cache and token deltas to what this one does.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from processors import metrics
from processors.agents import AgentCatalog
from processors.executors import Handler, Record
from processors.llm_types import LLMRequest, LLMResponse, ModelError
from processors.pool import LLMPool, PoolSettings
from processors.sim import SimulatedModel
from processors.tools import ToolRegistry, run_tool


class Model(Protocol):
    """Anything that answers an LLMRequest (the simulated model, a provider, the pool)."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


class ModelRouter:
    """Model name (from the agents file) → the Model that serves it: the LLM pool's.

    ``sim`` answers ``provider: sim`` endpoints that set no options. The pool is
    built at once, so an endpoint that cannot work (say, its ``api_key_env`` is
    unset) is refused here, at start. ``await router.pool.aclose()`` when done.
    """

    def __init__(
        self,
        agents: AgentCatalog,
        *,
        sim: SimulatedModel | None = None,
        pool: LLMPool | None = None,
    ) -> None:
        self._agents = agents
        self.pool = pool or LLMPool(agents, PoolSettings.from_env(), sim=sim)
        self._models: dict[str, Model] = {}

    def model(self, name: str) -> Model:
        found = self._models.get(name)
        if found is None:
            found = self._models[name] = self.pool.model(name)
        return found


def _now_ms() -> int:
    return int(time.time() * 1000)


def _envelope(item: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": item["session_id"],
        "tenant_id": item["tenant_id"],
        "time_ms": now_ms,
        "causation_id": item["event_id"],
        "correlation_id": item["correlation_id"],
        "call_id": item["call_id"],
    }


def llm_handler(router: ModelRouter, agents: AgentCatalog, *, max_attempts: int = 3) -> Handler:
    """Handler of ``LLMCallWork``: ask the model, retrying retryable errors with jitter."""

    async def handle(name: str, item: dict[str, Any]) -> Record | None:
        if name != "LLMCallWork":
            raise ValueError(f"{name} is not an LLM work item")
        deadline = item["deadline_ms"]
        started = time.perf_counter()
        attempt, error = 0, "no attempt"
        response: LLMResponse | None = None
        while attempt < max_attempts:
            if deadline and _now_ms() >= deadline:
                return None
            attempt += 1
            try:
                request = LLMRequest.from_work(item, attempt=attempt)
                response = await router.model(item["model"]).complete(request)
                break
            except ModelError as failure:
                error = str(failure)
                if not failure.retryable:
                    break
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
        result: dict[str, Any] = _envelope(item, _now_ms())
        latency = time.perf_counter() - started
        if response is None:
            result.update(ok=False, model=item["model"], content=None, tool_calls=[],
                          input_tokens=0, output_tokens=0, cached_tokens=0, cost_usd=0.0,
                          latency_s=latency, error=error, attempts=attempt)  # fmt: skip
            return "LLMCallResult", result
        config = agents.model(item["model"])
        cost = (
            config.prices.cost(
                response.input_tokens, response.output_tokens, response.cached_tokens
            )
            if config is not None
            else 0.0
        )
        model_name = response.model or item["model"]
        for token_type, count in (
            ("input", response.input_tokens),
            ("output", response.output_tokens),
            ("cached", response.cached_tokens),
        ):
            metrics.TOKENS.labels(model_name, token_type).inc(count)
        result.update(
            ok=True,
            model=model_name,
            content=response.content,
            tool_calls=[call.to_record() for call in response.tool_calls],
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            cached_tokens=response.cached_tokens,
            cost_usd=cost,
            latency_s=latency,
            error=None,
            attempts=attempt,
        )
        return "LLMCallResult", result

    return handle


def tool_handler(registry: ToolRegistry) -> Handler:
    """Handler of ``ToolCallWork``: run the tool with its call id as idempotency key."""

    async def handle(name: str, item: dict[str, Any]) -> Record | None:
        if name != "ToolCallWork":
            raise ValueError(f"{name} is not a tool work item")
        deadline = item["deadline_ms"]
        if deadline and _now_ms() >= deadline:
            return None
        started = time.perf_counter()
        run = run_tool(registry, item["tool"], item["arguments_json"], item["call_id"])
        if deadline:
            try:
                outcome = await asyncio.wait_for(run, max(0.001, (deadline - _now_ms()) / 1000))
            except TimeoutError:
                return None  # the engine's tool_timeout timer records the failure
        else:
            outcome = await run
        result = _envelope(item, _now_ms())
        result.update(
            ok=outcome.ok,
            output=outcome.output,
            error=outcome.error,
            latency_s=time.perf_counter() - started,
        )
        return "ToolCallResult", result

    return handle

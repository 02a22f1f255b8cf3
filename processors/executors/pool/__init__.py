"""The LLM pool: providers, routing, breakers, admission control, cache, batching, accounting.

Layers, each its own module::

    handler.py                 LLMCallWork -> LLMCallResult, deltas to the deltas topic
                               (the executor around it: processors.executors.llm_executor)
    pool.py                    one call: cache -> admission -> route -> attempt -> retry/failover
    endpoint.py                an endpoint's live state (breaker, buckets, load, EWMA)
    balance.py  breaker.py  admission.py  cache.py  batching.py
    providers/                 openai, anthropic, sim: one request each, no retries
    http.py                    the transport seam (aiohttp default, httpx), SSE, Retry-After
    errors.py                  what can fail and what the retry layer does about it

Users declare models and endpoints in the agents file; everything here is
runtime behind ``LLMPool.complete`` and the executors' ``Model`` protocol.
"""

from __future__ import annotations

from processors.executors.pool.errors import (
    PoolConfigError,
    PoolError,
    ProviderError,
    ShedError,
)
from processors.executors.pool.pool import LLMPool, PooledModel
from processors.executors.pool.records import CallContext, PoolResult
from processors.executors.pool.settings import PoolSettings, TenantLimits

__all__ = [
    "CallContext",
    "LLMPool",
    "PoolConfigError",
    "PoolError",
    "PoolResult",
    "PoolSettings",
    "PooledModel",
    "ProviderError",
    "ShedError",
    "TenantLimits",
]

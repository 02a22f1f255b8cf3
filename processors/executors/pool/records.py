"""The records of one pool call: who calls and how (:class:`CallContext`), what came back
(:class:`PoolResult`). Frozen, one line of docstring per field, no behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processors.agents.catalog import Priority
from processors.agents.model_types import LLMResponse

DeltaCallback = Callable[[int, str], Awaitable[None]]
"""Receives (index, text) of each streamed piece; index restarts at 0 when a call restarts."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and how: what the work item's envelope and agent say."""

    tenant_id: str = ""
    """Whose per-tenant limits apply ("" = none)."""
    priority: Priority = "normal"
    """interactive | normal | batch (see processors.executors.pool.admission)."""
    cacheable: bool = False
    """The agent allows answers from the response cache."""
    deadline: float | None = None
    """time.monotonic() after which the call is pointless (the engine has timed it out)."""
    on_delta: DeltaCallback | None = None
    """Someone listens for streamed text (the deltas topic)."""


@dataclass(frozen=True, slots=True)
class PoolResult:
    """An answer and what it took."""

    response: LLMResponse
    """Zero tokens when it came from the cache (no provider call)."""
    model: str
    """The agents-file model that answered: the one asked for, or a fallback."""
    endpoint: str
    """Label of the endpoint that answered ("" for a cache hit)."""
    attempts: int
    """Provider requests made for this call."""
    cost_usd: float
    """From the answering model's price table."""
    cache: str = ""
    """"" (provider), "l1", "l2", or "flight" (shared a concurrent identical call)."""
    waited_s: float = 0.0
    """Time spent waiting for rate-limit capacity."""

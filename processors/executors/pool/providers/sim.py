"""The simulated model as a pool provider, so routing, breaker, limits and cache apply to it.

Its failures (``failure_rate``, ``fail_all``) are ``model`` errors carrying the
simulated model's own ``retryable`` flag, and the pool numbers attempts so a
retry draws a fresh, still deterministic, outcome. It is the one provider that
accepts batches: :meth:`complete_batch` answers several requests after a
single latency (the longest of theirs), the way a batching server would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from processors.agents.model_types import LLMRequest, LLMResponse, ModelError
from processors.agents.sim_model import SimulatedModel
from processors.executors.pool.errors import ProviderError
from processors.executors.pool.http import Timeouts
from processors.executors.pool.providers.base import DEFAULT_MAX_TOKENS, DeltaSink


def _model_error(error: ModelError) -> ProviderError:
    return ProviderError("model", str(error), retryable=error.retryable)


class SimProvider:
    """A :class:`~processors.agents.sim_model.SimulatedModel` behind the provider interface."""

    supports_batch = True
    max_output_tokens = DEFAULT_MAX_TOKENS

    def __init__(self, model: SimulatedModel, *, label: str = "sim/sim") -> None:
        self.model = model
        self.label = label

    async def complete(
        self, request: LLMRequest, timeouts: Timeouts, on_delta: DeltaSink | None = None
    ) -> LLMResponse:
        try:
            if on_delta is None:
                return await self.model.complete(request)
            async for piece in self.model.stream(request):
                if isinstance(piece, LLMResponse):
                    return piece
                await on_delta(piece)
        except ProviderError:
            raise
        except ModelError as error:
            raise _model_error(error) from None
        raise ProviderError("malformed", "the simulated stream ended without a response")

    async def complete_batch(
        self, requests: Sequence[LLMRequest], timeouts: Timeouts
    ) -> list[LLMResponse | ModelError]:
        delay = max((self.model.latency_of(r) for r in requests), default=0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        out: list[LLMResponse | ModelError] = []
        for request in requests:
            try:
                out.append(self.model.decide_reply(request))
            except ModelError as error:
                out.append(_model_error(error))
        return out

    async def aclose(self) -> None:
        return None

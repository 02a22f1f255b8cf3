"""Micro-batching: gather requests for a few milliseconds, answer them with one provider call.

Used by the batch lane (priority ``batch``) for providers that accept
batches (``supports_batch``: the simulated model; a server with a batch
endpoint would be another). The first request of a batch waits at most
``max_delay_s`` for company; ``max_size`` requests flush at once. A failure of
the whole batch call fails each of its requests with that error; a per-request
failure fails only that request.

OpenAI-compatible Chat Completions and Anthropic Messages take one
conversation per request, so for them the batch lane means low priority and
bounded concurrency, not fewer requests: the server's own continuous
batching (vLLM, TGI) merges concurrent requests on the GPU. OpenAI's and
Anthropic's asynchronous Batch APIs (file upload, results within 24 hours)
do not fit a live agent loop and are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from processors.agents.model_types import LLMRequest, LLMResponse, ModelError

Flush = Callable[[Sequence[LLMRequest]], Awaitable[list[LLMResponse | ModelError]]]


class MicroBatcher:
    """Batches :meth:`submit` calls into ``flush`` calls (see the module docstring)."""

    def __init__(self, flush: Flush, *, max_size: int = 16, max_delay_s: float = 0.005) -> None:
        self._flush = flush
        self.max_size = max(1, max_size)
        self.max_delay_s = max_delay_s
        self._pending: list[tuple[LLMRequest, asyncio.Future[LLMResponse]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Provider batch calls made (for tests and metrics)."""

    async def submit(self, request: LLMRequest) -> LLMResponse:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LLMResponse] = loop.create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self.max_size:
            self._start_flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay_s, self._start_flush)
        return await future

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.batches += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[LLMRequest, asyncio.Future[LLMResponse]]]) -> None:
        try:
            results = await self._flush([request for request, _ in batch])
            if len(results) != len(batch):
                raise ModelError(
                    f"batch answered {len(results)} of {len(batch)} requests", retryable=True
                )
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, ModelError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._running):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

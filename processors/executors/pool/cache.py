"""The response cache: L1 in-process LRU with TTL, L2 in Postgres, for cacheable agents only.

An answer is reusable when the model, the messages, the tools and the
parameters (every endpoint's provider, model and generation options) are the
same: :func:`cache_key` is the sha256 of their canonical JSON. Only agents
that declare ``cacheable: true`` use it: a cached answer repeats itself,
which suits FAQ-style agents and tests, not creative ones.

L1 answers in microseconds and dies with the process; L2 (table
``agentstream_llm_cache``, created IF NOT EXISTS) is shared by every worker
and survives restarts. A miss in L1 that hits L2 fills L1. L2 is best effort:
when Postgres fails, the call goes to the provider and the error is counted,
never raised. Concurrent identical misses share one provider call
(single flight), so a burst of the same question costs one answer.

A hit made no provider call, so its result reports zero tokens and zero cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from processors.agents.model_types import LLMRequest, LLMResponse, ToolCall, canonical_json
from processors.executors.pool import metrics

log = logging.getLogger(__name__)

TABLE = "agentstream_llm_cache"


def cache_key(model: str, request: LLMRequest, parameters: str) -> str:
    """sha256 (hex) of the canonical JSON of (model, parameters, messages, tools)."""
    document = {
        "model": model,
        "parameters": parameters,
        "messages": [m.to_record() for m in request.messages],
        "tools": [t.to_record() for t in request.tools],
    }
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def encode_response(response: LLMResponse) -> str:
    return json.dumps(
        {
            "content": response.content,
            "tool_calls": [[c.call_id, c.name, c.arguments_json] for c in response.tool_calls],
            "input_tokens": response.input_tokens,
            "output_tokens": response.output_tokens,
            "cached_tokens": response.cached_tokens,
            "finish_reason": response.finish_reason,
            "model": response.model,
        },
        ensure_ascii=False,
    )


def decode_response(text: str) -> LLMResponse:
    raw: dict[str, Any] = json.loads(text)
    return LLMResponse(
        content=raw.get("content"),
        tool_calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in raw.get("tool_calls", [])),
        input_tokens=int(raw.get("input_tokens", 0)),
        output_tokens=int(raw.get("output_tokens", 0)),
        cached_tokens=int(raw.get("cached_tokens", 0)),
        finish_reason=raw.get("finish_reason", "stop"),
        model=str(raw.get("model", "")),
    )


class L1Cache:
    """An LRU of at most ``entries`` answers, each valid for ``ttl_s``."""

    def __init__(
        self, entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.entries = entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, LLMResponse]] = OrderedDict()

    def get(self, key: str) -> LLMResponse | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, response = found
        if expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return response

    def put(self, key: str, response: LLMResponse) -> None:
        if self.entries <= 0:
            return
        self._items[key] = (self._clock() + self.ttl_s, response)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class PostgresCache:
    """L2: answers in Postgres with an expiry, shared by every worker."""

    def __init__(self, pool: Any, table: str = TABLE) -> None:
        self.pool = pool
        """An asyncpg pool."""
        self.table = table

    async def create_schema(self) -> None:
        await self.pool.execute(
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    key text PRIMARY KEY,
                    model text NOT NULL,
                    response text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    expires_at timestamptz NOT NULL
                )"""
        )

    async def get(self, key: str) -> LLMResponse | None:
        text = await self.pool.fetchval(
            f"SELECT response FROM {self.table} WHERE key = $1 AND expires_at > now()", key
        )
        return None if text is None else decode_response(str(text))

    async def put(self, key: str, model: str, response: LLMResponse, ttl_s: float) -> None:
        await self.pool.execute(
            f"""INSERT INTO {self.table} (key, model, response, expires_at)
                VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                ON CONFLICT (key) DO UPDATE
                SET response = EXCLUDED.response, expires_at = EXCLUDED.expires_at,
                    created_at = now()""",
            key,
            model,
            encode_response(response),
            float(ttl_s),
        )


class ResponseCache:
    """L1 then L2, with hit/miss metrics and single flight (see the module docstring)."""

    def __init__(self, l1: L1Cache, l2: PostgresCache | None = None) -> None:
        self.l1 = l1
        self.l2 = l2
        self._flights: dict[str, asyncio.Future[LLMResponse]] = {}

    async def get(self, key: str, model: str) -> tuple[LLMResponse, str] | None:
        """(answer, "l1" | "l2") or None."""
        found = self.l1.get(key)
        if found is not None:
            metrics.CACHE.labels(model, "l1", "hit").inc()
            return found, "l1"
        metrics.CACHE.labels(model, "l1", "miss").inc()
        if self.l2 is None:
            return None
        try:
            found = await self.l2.get(key)
        except Exception as error:  # best effort: Postgres trouble is a miss
            metrics.CACHE.labels(model, "l2", "error").inc()
            log.warning("LLM cache L2 read failed: %r", error)
            return None
        metrics.CACHE.labels(model, "l2", "hit" if found is not None else "miss").inc()
        if found is None:
            return None
        self.l1.put(key, found)
        return found, "l2"

    async def put(self, key: str, model: str, response: LLMResponse) -> None:
        self.l1.put(key, response)
        if self.l2 is None:
            return
        try:
            await self.l2.put(key, model, response, self.l1.ttl_s)
        except Exception as error:
            metrics.CACHE.labels(model, "l2", "error").inc()
            log.warning("LLM cache L2 write failed: %r", error)

    async def once(
        self, key: str, compute: Callable[[], Awaitable[LLMResponse]]
    ) -> tuple[LLMResponse, bool]:
        """``(compute(), True)`` for the first caller of a key; concurrent callers with the
        same key get ``(that answer, False)`` instead of calling too. A failed or
        cancelled first call leaves the others to compute on their own."""
        running = self._flights.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running), False
            except Exception:
                return await compute(), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if running.cancelled() and task is not None and not task.cancelling():
                    return await compute(), True
                raise
        future: asyncio.Future[LLMResponse] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            result = await compute()
        except BaseException as error:
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved here; followers compute on their own
            else:
                future.cancel()
            raise
        else:
            future.set_result(result)
            return result, True
        finally:
            del self._flights[key]

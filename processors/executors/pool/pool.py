"""The LLM pool: every model of the agents file, served through its endpoints.

One call, :meth:`LLMPool.complete`, goes::

    cache (cacheable agents)  ->  tenant admission  ->  for the model, then each fallback:
        pick a usable endpoint (breaker, server pause, capacity, strategy)
        -> endpoint admission (paused meanwhile? back to picking)
        -> one provider attempt, bounded by its timeout
        -> success: account (tokens, cost, latency), feed breaker and EWMA, done
        -> failure: feed the breaker; a 429 or Retry-After pauses that server for
           every call of the process (processors.executors.pool.pause); then the next
           endpoint, or back off (jittered, exponential) once every usable one failed

This is the one retry layer: providers never retry, and the pool's final
failure (:class:`~processors.executors.pool.errors.PoolError`) says the retrying is done.
Limits: ``max_attempts`` provider requests per call in all and
``max_attempts_per_model`` per model; a server-asked wait longer than
``max_retry_after_s`` moves on to the fallback rather than sit it out; and
nothing waits past the call's deadline (the engine's timer would fail the
call anyway). Deltas of a streamed answer go to ``ctx.on_delta(index, text)``;
if an attempt fails after streaming some text, the retry streams from
index 0 again, which tells a listener to start over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from collections.abc import Mapping
from typing import Any

from processors.agents.catalog import AgentCatalog
from processors.agents.model_types import LLMRequest, LLMResponse, ModelError
from processors.agents.sim_model import SimulatedModel
from processors.executors.pool import metrics
from processors.executors.pool.admission import (
    Admission,
    Clock,
    Need,
    Share,
    TenantBuckets,
    Ticket,
)
from processors.executors.pool.cache import L1Cache, PostgresCache, ResponseCache, cache_key
from processors.executors.pool.endpoint import Endpoint, ModelEntry, build_model
from processors.executors.pool.errors import PoolError, ProviderError, ShedError
from processors.executors.pool.http import Timeouts, Transport, make_transport
from processors.executors.pool.pause import ServerPause
from processors.executors.pool.providers import SimProvider, estimate_tokens
from processors.executors.pool.records import CallContext, PoolResult
from processors.executors.pool.settings import PoolSettings, TenantLimits
from processors.postgres import create_pool

_ANONYMOUS = CallContext()
"""No tenant, normal priority, not cacheable, no deadline, no listener."""


class PooledModel:
    """The pool serving one model name, behind the executor's ``Model`` protocol."""

    def __init__(self, pool: LLMPool, name: str) -> None:
        self.pool = pool
        self.name = name

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if request.model != self.name:
            request = dataclasses.replace(request, model=self.name)
        return (await self.pool.complete(request)).response


class LLMPool:
    """See the module docstring. Build once per process; ``start`` before, ``aclose`` after."""

    def __init__(
        self,
        agents: AgentCatalog,
        settings: PoolSettings | None = None,
        *,
        sim: SimulatedModel | None = None,
        transport: Transport | None = None,
        l2: PostgresCache | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = s = settings or PoolSettings()
        self._clock = clock
        self._rng = random.Random(s.seed)
        self._own_transport = transport is None
        self.transport = transport or make_transport(s.http, max_connections=s.max_connections)
        default_sim = sim or SimulatedModel()
        self.share = Share()
        """This process's share of every limit (processors.executors.pool.admission)."""
        self._pauses: dict[tuple[str, ...], ServerPause] = {}
        self.models = {
            name: build_model(
                config,
                s,
                transport=self.transport,
                sim=default_sim,
                environ=environ,
                clock=clock,
                rng=self._rng,
                pauses=self._pauses,
                share=self.share,
            )
            for name, config in agents.models.items()
        }
        self.admission = Admission(batch_headroom=s.batch_headroom, clock=clock)
        self.cache = ResponseCache(L1Cache(s.cache_entries, s.cache_ttl_s, clock), l2)
        self.tenants = TenantBuckets(
            s.tenant_default, s.tenants, burst_s=s.burst_s, share=self.share, clock=clock
        )
        self._endpoints_count_tokens = any(
            e.tpm is not None for m in self.models.values() for e in m.endpoints
        )
        self._db: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the L2 cache when asked to (the HTTP transport connects lazily)."""
        if self.settings.cache_l2 and self.cache.l2 is None:
            self._db = await create_pool(self.settings.database_url, min_size=1, max_size=4)
            self.cache.l2 = PostgresCache(self._db)
        if self.cache.l2 is not None:
            await self.cache.l2.create_schema()

    async def aclose(self) -> None:
        for model in self.models.values():
            for endpoint in model.endpoints:
                if endpoint.batcher is not None:
                    await endpoint.batcher.aclose()
                await endpoint.provider.aclose()
        if self._own_transport:
            await self.transport.aclose()
        if self._db is not None:
            await self._db.close()
            self._db = None

    def health(self) -> dict[str, list[dict[str, Any]]]:
        """Every endpoint's live state by model: for /healthz pages and operators."""
        report: dict[str, list[dict[str, Any]]] = {}
        for name, model in self.models.items():
            report[name] = [e.health() for e in model.endpoints]
        return report

    # -- the public call ----------------------------------------------------------------------

    def model(self, name: str) -> PooledModel:
        """The ``Model`` for ``name``; ModelError (not retryable) if there is none."""
        self.chain(name)
        return PooledModel(self, name)

    def chain(self, name: str) -> list[ModelEntry]:
        """``name`` then its fallbacks, depth first, in declared order, each once."""
        if name not in self.models:
            raise ModelError(f"unknown model {name!r}", retryable=False)
        order: list[ModelEntry] = []
        stack = [name]
        while stack:
            current = stack.pop()
            entry = self.models.get(current)
            if entry is None or entry in order:
                continue
            order.append(entry)
            stack.extend(reversed(entry.config.fallbacks))
        return order

    async def complete(self, request: LLMRequest, ctx: CallContext = _ANONYMOUS) -> PoolResult:
        """Answer ``request`` (see the module docstring); raises ModelError subclasses."""
        chain = self.chain(request.model)
        first = chain[0]
        if not ctx.cacheable or (self.cache.l1.entries <= 0 and self.cache.l2 is None):
            return await self._serve(chain, request, ctx)
        key = cache_key(first.name, request, first.parameters)
        hit = await self.cache.get(key, first.name)
        if hit is not None:
            return await self._from_cache(hit[0], first.name, hit[1], ctx)
        served: list[PoolResult] = []

        async def compute() -> LLMResponse:
            result = await self._serve(chain, request, ctx)
            served.append(result)
            return result.response

        response, leader = await self.cache.once(key, compute)
        if not leader:
            return await self._from_cache(response, first.name, "flight", ctx)
        result = served[0]
        if result.model == first.name and response.finish_reason != "length":
            await self.cache.put(key, first.name, response)
        return result

    async def _from_cache(
        self, response: LLMResponse, model: str, level: str, ctx: CallContext
    ) -> PoolResult:
        if ctx.on_delta is not None and response.content:
            await ctx.on_delta(0, response.content)
        free = dataclasses.replace(response, input_tokens=0, output_tokens=0, cached_tokens=0)
        return PoolResult(free, model, "", 0, 0.0, cache=level)

    # -- serving ----------------------------------------------------------------------------

    def _left(self, ctx: CallContext) -> float:
        return float("inf") if ctx.deadline is None else float(ctx.deadline - self._clock())

    def _backoff(self, retry: int) -> float:
        s = self.settings
        ceiling: float = min(s.backoff_max_s, s.backoff_base_s * 2.0 ** max(0, retry - 1))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def set_tenant_limits(self, configured: Mapping[str, TenantLimits]) -> None:
        """Per-tenant limits from configuration (the tenants table), replacing the last ones."""
        self.tenants.update(configured)

    async def _admit_tenant(self, ctx: CallContext, tokens: int) -> Ticket:
        needs = self.tenants.needs(ctx.tenant_id, tokens)
        return await self._admit(needs, ctx, f"tenant {ctx.tenant_id}")

    async def _admit(self, needs: list[Need], ctx: CallContext, what: str) -> Ticket:
        if not needs:
            return Ticket()
        max_wait = min(self.settings.max_wait(ctx.priority), self._left(ctx))
        try:
            ticket = await self.admission.admit(
                needs, priority=ctx.priority, max_wait_s=max_wait, what=what
            )
        except ShedError:
            metrics.SHED.labels(ctx.priority).inc()
            raise
        if needs:
            metrics.ADMISSION_WAIT_SECONDS.labels(ctx.priority).observe(ticket.waited_s)
        return ticket

    def _wait_estimate(self, endpoint: Endpoint, tokens: int, priority: str) -> float:
        needs = endpoint.needs(tokens + endpoint.provider.max_output_tokens)
        return self.admission.wait_estimate(needs, priority)

    def _pick(
        self, model: ModelEntry, fresh: list[Endpoint], ctx: CallContext, tokens: int
    ) -> Endpoint:
        if any(e.rpm is not None or e.tpm is not None for e in fresh):
            priority = ctx.priority
            waits = [
                self.admission.wait_estimate(
                    e.needs(tokens + e.provider.max_output_tokens), priority
                )
                for e in fresh
            ]
            ready = [e for e, wait in zip(fresh, waits, strict=True) if wait == 0]
            if not ready:
                return fresh[min(range(len(fresh)), key=waits.__getitem__)]
            fresh = ready
        return fresh[model.strategy.pick(fresh)]

    async def _serve(
        self, chain: list[ModelEntry], request: LLMRequest, ctx: CallContext
    ) -> PoolResult:
        s = self.settings
        # Token estimates only matter to TPM buckets; skip the walk over the prompt otherwise.
        prompt_tokens = (
            estimate_tokens(request.messages, request.tools)
            if self._endpoints_count_tokens or self.tenants.counts_tokens
            else 0
        )
        first_output = chain[0].endpoints[0].provider.max_output_tokens
        tenant = await self._admit_tenant(ctx, prompt_tokens + first_output)
        attempts, waited = 0, tenant.waited_s
        errors: list[str] = []
        shed: ShedError | None = None
        try:
            for position, model in enumerate(chain):
                tried: set[int] = set()
                excluded: set[int] = set()
                per_model, paused = 0, 0.0
                while per_model < s.max_attempts_per_model and attempts < s.max_attempts:
                    candidates = [e for e in model.endpoints if e.index not in excluded]
                    if not candidates:
                        break
                    usable = [e for e in candidates if e.available()]
                    if not usable:
                        # With a fallback left, fail over now; the last model waits for its
                        # endpoints (Retry-After, breaker cool-down), up to max_retry_after_s.
                        last = position == len(chain) - 1
                        # Sleep until the first pause or cool-down ends (every waiter wakes
                        # then, not before); 0 means a half-open breaker's probe is out,
                        # with no time to wait for, so look again shortly.
                        ready = min(e.ready_in() for e in candidates)
                        pause = ready + 0.001 if ready > 0 else 0.05
                        if (
                            not last
                            or paused + pause > s.max_retry_after_s
                            or pause >= self._left(ctx)
                        ):
                            errors.append(f"[{model.name}] no endpoint usable for {pause:.2g}s")
                            break
                        await asyncio.sleep(pause)
                        paused += pause
                        continue
                    fresh = [e for e in usable if e.index not in tried]
                    if not fresh:
                        delay = self._backoff(per_model)
                        if delay >= self._left(ctx):
                            errors.append("deadline reached")
                            break
                        await asyncio.sleep(delay)
                        tried.clear()
                        continue
                    endpoint = self._pick(model, fresh, ctx, prompt_tokens)
                    tokens = prompt_tokens + endpoint.provider.max_output_tokens
                    try:
                        ticket = await self._admit(endpoint.needs(tokens), ctx, endpoint.label)
                    except ShedError as error:
                        shed = error
                        errors.append(f"[{endpoint.label}] {error}")
                        break
                    waited += ticket.waited_s
                    if endpoint.paused():
                        # The server asked for a pause while this call waited for capacity:
                        # it waits for the pause (or goes elsewhere) like every other call.
                        ticket.give_back()
                        continue
                    if not endpoint.breaker.acquire():
                        ticket.give_back()
                        continue
                    attempts += 1
                    per_model += 1
                    tried.add(endpoint.index)
                    started = self._clock()
                    try:
                        response = await self._attempt(model, endpoint, request, ctx, attempts)
                    except BaseException as error:
                        if not isinstance(error, ProviderError):  # cancelled: no verdict
                            endpoint.breaker.release()
                            ticket.give_back()
                            raise
                        ticket.settle(0)
                        endpoint.failed(error, functools.partial(self._backoff, per_model))
                        errors.append(f"[{endpoint.label}] {error}")
                        if not error.endpoint_specific:
                            break
                        if not error.retryable:
                            excluded.add(endpoint.index)
                        continue
                    endpoint.record(True)
                    endpoint.observe(self._clock() - started)
                    used = response.input_tokens + response.output_tokens
                    ticket.settle(used)
                    tenant.settle(used)
                    if position > 0:
                        metrics.FAILOVERS.labels(chain[0].name, model.name).inc()
                    cost = model.config.prices.cost(
                        response.input_tokens, response.output_tokens, response.cached_tokens
                    )
                    if cost:
                        metrics.COST.labels(model.name).inc(cost)
                    return PoolResult(
                        response, model.name, endpoint.label, attempts, cost, "", waited
                    )
        except BaseException:
            tenant.give_back() if attempts == 0 else tenant.settle(0)
            raise
        if attempts == 0:
            tenant.give_back()
        else:
            tenant.settle(0)
        if shed is not None and attempts == 0:
            raise shed
        names = " -> ".join(m.name for m in chain)
        detail = "; ".join(errors[-4:]) or "no endpoint could be tried"
        raise PoolError(
            f"model {names} failed after {attempts} attempt(s): {detail}"[:2000], attempts=attempts
        )

    async def _attempt(
        self,
        model: ModelEntry,
        endpoint: Endpoint,
        request: LLMRequest,
        ctx: CallContext,
        number: int,
    ) -> LLMResponse:
        s = self.settings
        timeout = min(endpoint.options.timeout_s or s.request_timeout_s, self._left(ctx))
        if timeout <= 0:
            raise ProviderError("timeout", "the call's deadline passed", retryable=False)
        timeouts = Timeouts(
            min(endpoint.options.connect_timeout_s or s.connect_timeout_s, timeout), timeout
        )
        sink = None
        if ctx.on_delta is not None and (
            s.stream_sim or not isinstance(endpoint.provider, SimProvider)
        ):
            on_delta, counter = ctx.on_delta, [0]

            async def sink(text: str) -> None:
                counter[0] += 1
                await on_delta(counter[0] - 1, text)

        # The constructor, not dataclasses.replace: this runs on every attempt.
        attempt = LLMRequest(
            request.model,
            request.messages,
            request.tools,
            request.call_id,
            request.prompt_hash,
            number,
        )
        gauges = endpoint.gauges
        endpoint.inflight += 1
        gauges.inflight.inc()
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with asyncio.timeout(timeout):
                if ctx.priority == "batch" and endpoint.batch_slots is not None:
                    async with endpoint.batch_slots:
                        # The slot may have taken a while: a pause that began meanwhile
                        # holds this call too (within the attempt's timeout).
                        await endpoint.pause.wait()
                        if endpoint.batcher is not None and sink is None:
                            return await endpoint.batched(attempt)
                        return await endpoint.provider.complete(attempt, timeouts, sink)
                return await endpoint.provider.complete(attempt, timeouts, sink)
        except ProviderError as error:
            outcome = error.kind
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except TimeoutError:
            outcome = "timeout"
            raise ProviderError("timeout", f"no answer within {timeout:.3g}s") from None
        except ModelError as error:
            outcome = "model"
            raise ProviderError("model", str(error), retryable=error.retryable) from None
        except Exception as error:  # a provider bug must not take the executor down
            outcome = "malformed"
            raise ProviderError("malformed", f"{type(error).__name__}: {error}") from None
        finally:
            endpoint.inflight -= 1
            gauges.inflight.dec()
            gauges.outcome(outcome).inc()
            gauges.seconds.observe(time.perf_counter() - started)

"""One endpoint's live state in the pool: provider, breaker, limits, load and speed.

The declaration (``EndpointConfig`` in the agents file) says what the
endpoint is; this says how it is doing right now, which is what routing
reads: whether it may be called (breaker, a server-asked pause shared with
every endpoint that reaches the same server),
how loaded it is (calls in flight), how fast it has been (EWMA of call
times), and its own RPM/TPM buckets.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.agents.catalog import EndpointConfig, ModelConfig
from processors.agents.model_types import LLMRequest, LLMResponse, ModelError, canonical_json
from processors.agents.sim_model import SimulatedModel
from processors.executors.pool import metrics
from processors.executors.pool.admission import Clock, Need, Share, TokenBucket
from processors.executors.pool.balance import Strategy, make_strategy
from processors.executors.pool.batching import MicroBatcher
from processors.executors.pool.breaker import CircuitBreaker
from processors.executors.pool.errors import ProviderError
from processors.executors.pool.http import Timeouts, Transport
from processors.executors.pool.pause import ServerPause
from processors.executors.pool.providers import EndpointOptions, Provider, build_provider
from processors.executors.pool.settings import PoolSettings

EWMA_ALPHA = 0.3
"""Weight of the newest call time in the latency estimate."""
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class EndpointMetrics:
    """This endpoint's metric children, looked up once (``labels()`` is costly per call)."""

    def __init__(self, model: str, label: str) -> None:
        self._labels = (model, label)
        self.inflight = metrics.INFLIGHT.labels(model, label)
        self.seconds = metrics.REQUEST_SECONDS.labels(model, label)
        self._outcomes: dict[str, Any] = {}

    def outcome(self, outcome: str) -> Any:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = metrics.REQUESTS.labels(*self._labels, outcome)
        return child


@dataclass(eq=False)
class Endpoint:
    """See the module docstring. ``eq=False``: endpoints compare by identity."""

    model_name: str
    index: int
    config: EndpointConfig
    provider: Provider
    options: EndpointOptions
    breaker: CircuitBreaker
    clock: Clock
    pause: ServerPause
    """The server's Retry-After, shared with every endpoint that reaches the same server."""
    rpm: TokenBucket | None = None
    tpm: TokenBucket | None = None
    inflight: int = 0
    ewma_s: float | None = None
    batcher: MicroBatcher | None = None
    batch_slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _seen_transitions: int = 0
    _gauges: EndpointMetrics | None = field(default=None, repr=False)

    @property
    def gauges(self) -> EndpointMetrics:
        if self._gauges is None:
            self._gauges = EndpointMetrics(self.model_name, self.label)
        return self._gauges

    @property
    def label(self) -> str:
        return self.provider.label

    @property
    def weight(self) -> float:
        return self.config.weight

    @property
    def parameters(self) -> str:
        """What, besides the prompt, shapes this endpoint's answers (for the cache key)."""
        generation = {
            k: v
            for k, v in self.config.options.items()
            if k not in ("timeout_s", "connect_timeout_s", "stream", "headers")
        }
        return canonical_json([self.config.provider, self.config.model, generation])

    def available(self) -> bool:
        """Whether a call may go here now."""
        return self.clock() >= self.pause.until and self.breaker.available()

    def paused(self) -> bool:
        """Whether the server asked for a pause that is not over."""
        return self.clock() < self.pause.until

    def ready_in(self) -> float:
        """Seconds until :meth:`available` may turn true (0 = now or soon)."""
        return max(self.pause.remaining(), self.breaker.reopens_in())

    def needs(self, tokens: int) -> list[Need]:
        """What one call of about ``tokens`` tokens takes from this endpoint's buckets."""
        found: list[Need] = []
        if self.rpm is not None:
            found.append((self.rpm, 1.0, False))
        if self.tpm is not None:
            found.append((self.tpm, float(tokens), True))
        return found

    def observe(self, seconds: float) -> None:
        self.ewma_s = (
            seconds
            if self.ewma_s is None
            else EWMA_ALPHA * seconds + (1 - EWMA_ALPHA) * self.ewma_s
        )

    def record(self, success: bool) -> None:
        """Feed the breaker and publish any state change."""
        self.breaker.record(success)
        self.publish_breaker()

    def failed(self, error: ProviderError, backoff: Callable[[], float]) -> None:
        """An attempt here failed: feed the breaker; a 429 or an asked wait pauses the server.

        A 429 that says nothing of how long still pauses, for ``backoff()``:
        the server is over its limit for everyone, not only for that call.
        """
        if error.counts_as_failure:
            self.record(False)
        else:
            self.breaker.release()
        if error.kind == "rate_limited" or error.retry_after_s is not None:
            asked = error.retry_after_s is not None
            status = f"HTTP {error.status}" if error.status is not None else error.kind
            self.pause.extend(
                error.retry_after_s if error.retry_after_s is not None else backoff(),
                status + (" asked to wait" if asked else ", no wait given"),
            )

    def health(self) -> dict[str, Any]:
        """Live state for /healthz pages and operators."""
        return {
            "endpoint": self.label,
            "breaker": self.breaker.state,
            "inflight": self.inflight,
            "ewma_s": self.ewma_s,
            "retry_after_s": self.pause.remaining(),
        }

    def publish_breaker(self) -> None:
        transitions = self.breaker.transitions
        if len(transitions) == self._seen_transitions:
            return
        for state in transitions[self._seen_transitions :]:
            metrics.BREAKER_TRANSITIONS.labels(self.model_name, self.label, state).inc()
        self._seen_transitions = len(transitions)
        metrics.BREAKER_STATE.labels(self.model_name, self.label).set(_STATE_VALUE[transitions[-1]])

    async def batched(self, request: LLMRequest) -> LLMResponse:
        """Through the micro-batcher (batch lane, providers that accept batches)."""
        assert self.batcher is not None
        return await self.batcher.submit(request)


@dataclass(eq=False)
class ModelEntry:
    """A model name's endpoints and strategy."""

    name: str
    config: ModelConfig
    endpoints: list[Endpoint]
    strategy: Strategy
    parameters: str
    """Every endpoint's provider, model and generation options (part of the cache key)."""


def _batch_flush(
    provider: Provider, timeouts: Timeouts
) -> Callable[[Sequence[LLMRequest]], Awaitable[list[LLMResponse | ModelError]]]:
    async def flush(requests: Sequence[LLMRequest]) -> list[LLMResponse | ModelError]:
        return await provider.complete_batch(requests, timeouts)

    return flush


def _pause_for(
    declared: EndpointConfig,
    key: str,
    label: str,
    pauses: dict[tuple[str, ...], ServerPause],
    clock: Clock,
) -> ServerPause:
    # The same server and key behind two model names has one rate limit, so one pause;
    # a simulated endpoint has no server to share (its key is its agents-file path).
    server: tuple[str, ...] = ("sim", key)
    if declared.provider != "sim":
        url, credential = declared.base_url or "", declared.api_key_env or ""
        server = (declared.provider, url, declared.model, credential)
    found = pauses.get(server)
    if found is None:
        found = pauses[server] = ServerPause(label, clock)
    return found


def build_model(
    config: ModelConfig,
    settings: PoolSettings,
    *,
    transport: Transport,
    sim: SimulatedModel,
    environ: Mapping[str, str] | None,
    clock: Clock,
    rng: random.Random,
    pauses: dict[tuple[str, ...], ServerPause],
    share: Share,
) -> ModelEntry:
    """The live form of one model of the agents file; PoolConfigError for bad endpoints.

    ``pauses`` holds the process's server pauses by server; endpoints of any
    model that reach a server already in it share its pause. ``share`` is the
    process's share of every endpoint's RPM and TPM.
    """
    s = settings

    def bucket(name: str, per_minute: int | None) -> TokenBucket | None:
        return TokenBucket(name, per_minute, s.burst_s, clock, share) if per_minute else None

    endpoints: list[Endpoint] = []
    for index, declared in enumerate(config.endpoints):
        key = f"models.{config.name}.endpoints[{index}]"
        provider, options = build_provider(
            declared, key=key, transport=transport, default_sim=sim, environ=environ
        )
        endpoint = Endpoint(
            model_name=config.name,
            index=index,
            config=declared,
            provider=provider,
            options=options,
            breaker=CircuitBreaker(
                window=s.breaker_window,
                min_calls=s.breaker_min_calls,
                failure_rate=s.breaker_failure_rate,
                open_s=s.breaker_open_s,
                probes=s.breaker_probes,
                clock=clock,
            ),
            clock=clock,
            pause=_pause_for(declared, key, provider.label, pauses, clock),
            rpm=bucket(f"{key}.rpm", declared.rpm),
            tpm=bucket(f"{key}.tpm", declared.tpm),
            batch_slots=asyncio.Semaphore(s.batch_concurrency),
        )
        if provider.supports_batch and s.batch_max_size > 1:
            endpoint.batcher = MicroBatcher(
                _batch_flush(provider, Timeouts(s.connect_timeout_s, s.request_timeout_s)),
                max_size=s.batch_max_size,
                max_delay_s=s.batch_max_delay_s,
            )
        endpoints.append(endpoint)
    strategy = make_strategy(config.strategy, explore=s.latency_explore, rng=rng)
    parameters = "|".join(e.parameters for e in endpoints)
    return ModelEntry(config.name, config, endpoints, strategy, parameters)

"""What can go wrong between the pool and a model, and what the pool does about it.

Every failure a provider reports is a :class:`ProviderError` with a ``kind``;
the kind alone decides what the pool's one retry layer does next, so no
provider (and no SDK) retries on its own::

    ModelError                      (processors.agents.model_types; the executor's contract)
    ├── ProviderError               one provider request failed
    │     kind            retry here?  other endpoint?  counts for the breaker?
    │     rate_limited    after Retry-After   yes          no  (capacity, not health)
    │     overloaded      yes (backoff)       yes          yes (503 / 529)
    │     server          yes (backoff)       yes          yes (5xx)
    │     timeout         yes (backoff)       yes          yes
    │     connect         yes (backoff)       yes          yes
    │     malformed       yes (backoff)       yes          yes (not JSON, missing fields)
    │     auth            no                  yes          yes (401/403: this endpoint's key)
    │     bad_request     no                  no; a fallback model may fit (400/404/413/422)
    │     model           as ``retryable`` says            yes (the simulated model's failures)
    ├── ShedError           admission control refused to wait that long (not retried)
    └── PoolError           the pool gave up: every attempt and fallback failed (not retried)

:class:`PoolConfigError` is raised at start for endpoint options that cannot
work; it names the model, the endpoint and the key, like the agents file does.
"""

from __future__ import annotations

from typing import Literal

from agentstream.errors import AgentstreamError
from processors.agents.model_types import ModelError

ErrorKind = Literal[
    "rate_limited",
    "overloaded",
    "server",
    "timeout",
    "connect",
    "malformed",
    "auth",
    "bad_request",
    "model",
]

_RETRYABLE: dict[str, bool] = {
    "rate_limited": True,
    "overloaded": True,
    "server": True,
    "timeout": True,
    "connect": True,
    "malformed": True,
    "auth": False,
    "bad_request": False,
    "model": True,
}
_BREAKER_NEUTRAL = frozenset({"rate_limited", "bad_request"})


class ProviderError(ModelError):
    """One provider request failed; ``kind`` says how (see the module docstring)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, retryable=_RETRYABLE[kind] if retryable is None else retryable)
        self.kind: ErrorKind = kind
        self.retry_after_s = retry_after_s
        """What the server asked for (Retry-After / retry-after-ms), in seconds."""
        self.status = status
        """The HTTP status, when there was one."""

    @property
    def counts_as_failure(self) -> bool:
        """Whether this says something about the endpoint's health (the breaker's input)."""
        return self.kind not in _BREAKER_NEUTRAL

    @property
    def endpoint_specific(self) -> bool:
        """Whether another endpoint of the same model may well succeed."""
        return self.kind != "bad_request"


class ShedError(ModelError):
    """Admission control refused a call rather than keep it waiting past its limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class PoolError(ModelError):
    """Every attempt on every endpoint of the model and its fallbacks failed.

    Not retryable: the pool's retry layer has already done the retrying, and
    a second layer above it would multiply the attempts.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message, retryable=False)
        self.attempts = attempts


class PoolConfigError(AgentstreamError, ValueError):
    """Endpoint settings the pool cannot use; ``key`` is the agents-file path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason

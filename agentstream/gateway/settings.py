"""Settings of the HTTP API (gateway + query API), from ``AGENTSTREAM_API_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from projections.settings import DEFAULT_DATABASE_URL
from streams.settings import env_number as _number

MIB = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    """How the API listens, what it accepts, and when it pushes back."""

    host: str = "127.0.0.1"
    """Listen address (``AGENTSTREAM_API_HOST``)."""
    port: int = 8080
    """Listen port (``AGENTSTREAM_API_PORT``; ``agentstream api --port``)."""
    database_url: str = DEFAULT_DATABASE_URL
    """Postgres of tenants, keys and read models (``AGENTSTREAM_DATABASE_URL``)."""
    max_body_bytes: int = MIB
    """Largest request body; larger ones get 413 (``AGENTSTREAM_API_MAX_BODY_BYTES``)."""
    rate_per_s: float = 1000.0
    """Default commands per second per tenant (``AGENTSTREAM_API_RATE``); a tenant may override."""
    burst: int = 2000
    """Default bucket size per tenant (``AGENTSTREAM_API_BURST``); a tenant may override."""
    max_lag: int = 100_000
    """Inbox records the engine group may be behind before commands get 503
    (``AGENTSTREAM_API_MAX_LAG``)."""
    lag_interval_s: float = 1.0
    """How often the engine group's lag is measured."""
    batch_max: int = 1000
    """Most sessions in one ``POST /v1/sessions:batch`` (``AGENTSTREAM_API_BATCH_MAX``)."""
    key_cache_s: float = 30.0
    """How long a looked-up API key is trusted without asking Postgres again; revocations
    also reach running gateways at once through LISTEN/NOTIFY."""
    idempotency_ttl_s: float = 86_400.0
    """How long an Idempotency-Key is remembered."""
    max_streams: int = 1000
    """SSE streams open at once per process (``AGENTSTREAM_API_MAX_STREAMS``); past this a
    new stream gets 503. They share the process's one events reader (the event hub)."""
    max_waiters: int = 10_000
    """Requests waiting for their session's answer (``Prefer: wait``) at once per process
    (``AGENTSTREAM_API_MAX_WAITERS``); past this such a request gets 503 before anything
    is produced."""
    max_wait_s: float = 60.0
    """The longest ``Prefer: wait=N`` honoured (``AGENTSTREAM_API_MAX_WAIT_S``); a larger
    N waits this long."""
    stream_queue: int = 1000
    """Events and deltas an SSE stream may have queued; a client that falls further behind
    is cut off and resumes with Last-Event-ID, so it never holds back the others."""
    sse_heartbeat_s: float = 15.0
    """Idle time after which an SSE stream sends a comment line (keeps proxies from closing it)."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        if self.batch_max < 1:
            raise ValueError(f"batch_max must be >= 1, got {self.batch_max}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            host=env.get("AGENTSTREAM_API_HOST") or base.host,
            port=int(_number(env, "AGENTSTREAM_API_PORT", base.port)),
            database_url=env.get("AGENTSTREAM_DATABASE_URL") or base.database_url,
            max_body_bytes=int(_number(env, "AGENTSTREAM_API_MAX_BODY_BYTES", base.max_body_bytes)),
            rate_per_s=_number(env, "AGENTSTREAM_API_RATE", base.rate_per_s),
            burst=int(_number(env, "AGENTSTREAM_API_BURST", base.burst)),
            max_lag=int(_number(env, "AGENTSTREAM_API_MAX_LAG", base.max_lag)),
            batch_max=int(_number(env, "AGENTSTREAM_API_BATCH_MAX", base.batch_max)),
            max_streams=int(_number(env, "AGENTSTREAM_API_MAX_STREAMS", base.max_streams)),
            max_waiters=int(_number(env, "AGENTSTREAM_API_MAX_WAITERS", base.max_waiters)),
            max_wait_s=_number(env, "AGENTSTREAM_API_MAX_WAIT_S", base.max_wait_s),
        )

"""Settings of the LLM pool, from ``AGENTSTREAM_POOL_*`` variables.

What an endpoint is (URL, model, rpm, tpm, weight) lives in the agents file;
how the pool behaves around every endpoint (retries, breaker, waits, cache)
lives here, one small typed object, read from the environment in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from processors.settings import DEFAULT_DATABASE_URL

_PREFIX = "AGENTSTREAM_POOL_"


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """Requests and tokens per minute one tenant may use across all models; None = unlimited."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class PoolSettings:
    """How the pool retries, trips breakers, admits, caches and batches."""

    # attempts and timeouts
    request_timeout_s: float = 60.0
    """One provider attempt, end to end, unless the endpoint sets ``timeout_s``."""
    connect_timeout_s: float = 5.0
    max_attempts: int = 6
    """Provider requests per call, over the model and all its fallbacks."""
    max_attempts_per_model: int = 3
    backoff_base_s: float = 0.1
    """First retry waits up to this (full jitter), doubling each time."""
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    """Longest server-asked wait (Retry-After) a call sits out; longer ones fail over or give up."""

    # circuit breaker
    breaker_window: int = 20
    """Outcomes remembered per endpoint."""
    breaker_min_calls: int = 10
    """No verdict on fewer outcomes than this."""
    breaker_failure_rate: float = 0.5
    """Open at this failure share of the window."""
    breaker_open_s: float = 5.0
    """How long an open breaker refuses calls before letting a probe through."""
    breaker_probes: int = 2
    """Successful probes in a row that close a half-open breaker."""

    # admission control
    burst_s: float = 10.0
    """A bucket holds this many seconds' worth of its per-minute limit (the burst)."""
    max_wait_interactive_s: float = 60.0
    max_wait_normal_s: float = 30.0
    max_wait_batch_s: float = 600.0
    batch_headroom: float = 0.5
    """Batch calls take capacity only while this share of a bucket stays free for the others."""
    tenant_default: TenantLimits = TenantLimits()
    """Limits of every tenant not listed in ``tenants`` (``AGENTSTREAM_POOL_TENANT_RPM/TPM``)."""
    tenants: Mapping[str, TenantLimits] = field(default_factory=dict)
    """Per-tenant limits given in code; the tenants table's ``llm_rpm``/``llm_tpm`` win."""
    tenant_limits_s: float = 30.0
    """How often the LLM executor re-reads per-tenant limits from the tenants table
    (``agentstream tenants limits``); 0 = never, only the variables and code apply."""

    # response cache
    cache_entries: int = 10_000
    """L1 (in-process LRU) size; 0 turns L1 off."""
    cache_ttl_s: float = 3600.0
    cache_l2: bool = False
    """Also keep answers in Postgres (``AGENTSTREAM_POOL_CACHE_L2=1``)."""
    database_url: str = DEFAULT_DATABASE_URL

    # batch lane
    batch_max_size: int = 16
    """Most requests per provider batch call (providers that accept batches)."""
    batch_max_delay_s: float = 0.005
    """How long the first request of a micro-batch waits for company."""
    batch_concurrency: int = 64
    """Batch-lane calls in flight per endpoint."""

    # streaming
    stream_deltas: bool = True
    """Stream answers, publishing token deltas while calls run (``..._STREAM_DELTAS``)."""
    stream_sim: bool = False
    """Stream the simulated model too. Off by default: its answers take no real time,
    and its deltas would cost the executor much more CPU per call (``bench_pool``) for
    nothing to watch."""

    # transport
    http: str = "aiohttp"
    """aiohttp | httpx (see processors.executors.pool.http)."""
    max_connections: int = 0
    """Per process; 0 = unlimited."""
    latency_explore: float = 0.05
    """Share of calls the ``latency`` strategy sends anywhere, to keep estimates fresh."""
    seed: int | None = None
    """Seed of the jitter and exploration RNG (tests); None = random."""

    def max_wait(self, priority: str) -> float:
        return {
            "interactive": self.max_wait_interactive_s,
            "batch": self.max_wait_batch_s,
        }.get(priority, self.max_wait_normal_s)

    def tenant(self, tenant_id: str) -> TenantLimits:
        return self.tenants.get(tenant_id, self.tenant_default)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PoolSettings:
        """Every field as ``AGENTSTREAM_POOL_<FIELD>``; a malformed value names its variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name in ("tenant_default", "tenants"):
                continue
            name = _PREFIX + spec.name.upper()
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
            values[spec.name] = _parse(name, raw.strip(), kind)
        if "database_url" not in values and env.get("AGENTSTREAM_DATABASE_URL"):
            values["database_url"] = env["AGENTSTREAM_DATABASE_URL"]
        rpm, tpm = env.get(_PREFIX + "TENANT_RPM"), env.get(_PREFIX + "TENANT_TPM")
        values["tenant_default"] = TenantLimits(
            rpm=int(_parse(_PREFIX + "TENANT_RPM", rpm, "int")) if rpm else None,
            tpm=int(_parse(_PREFIX + "TENANT_TPM", tpm, "int")) if tpm else None,
        )
        return cls(**values)


def _parse(name: str, raw: str, kind: str) -> Any:
    try:
        if kind.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.split()[0]}") from None
    return raw

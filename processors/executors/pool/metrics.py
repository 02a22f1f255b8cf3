"""Prometheus metrics of the LLM pool (base units, ``agentstream_`` prefix, ``_total`` counters).

Labels name models and endpoints by their agents-file names and
``provider/model@host`` labels, never a credential.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "agentstream_llm_requests_total",
    "Provider requests the pool made, by outcome (ok or the error kind).",
    ["model", "endpoint", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "agentstream_llm_request_seconds",
    "Wall time of one provider request (one attempt).",
    ["model", "endpoint"],
    buckets=_BUCKETS,
)
INFLIGHT = Gauge("agentstream_llm_inflight", "Provider requests under way.", ["model", "endpoint"])
BREAKER_STATE = Gauge(
    "agentstream_llm_breaker_state",
    "Circuit breaker state per endpoint: 0 closed, 1 half-open, 2 open.",
    ["model", "endpoint"],
)
BREAKER_TRANSITIONS = Counter(
    "agentstream_llm_breaker_transitions_total",
    "Circuit breaker state changes per endpoint, by state entered.",
    ["model", "endpoint", "state"],
)
FAILOVERS = Counter(
    "agentstream_llm_failovers_total",
    "Calls answered by a fallback model instead of the one asked for.",
    ["model", "fallback"],
)
ADMISSION_WAIT_SECONDS = Histogram(
    "agentstream_llm_admission_wait_seconds",
    "Time a call waited for rate-limit capacity, by priority.",
    ["priority"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
SHED = Counter(
    "agentstream_llm_shed_total",
    "Calls refused by admission control rather than kept waiting, by priority.",
    ["priority"],
)
CACHE = Counter(
    "agentstream_llm_cache_requests_total",
    "Response cache look-ups by level (l1, l2) and outcome (hit, miss, error).",
    ["model", "level", "outcome"],
)
COST = Counter(
    "agentstream_llm_cost_usd_total",
    "Cost of model calls in US dollars from the agents file's price table.",
    ["model"],
)
DELTAS = Counter(
    "agentstream_llm_deltas_total",
    "Token deltas queued for the deltas topic (sent) or given up on (dropped).",
    ["outcome"],
)
PAUSES = Counter(
    "agentstream_llm_endpoint_pauses_total",
    "Times a server asked to be left alone (429/503 with Retry-After or rate-limit reset "
    "headers) and every call of the process to it was held back.",
    ["endpoint"],
)
PAUSED_UNTIL = Gauge(
    "agentstream_llm_endpoint_paused_until_timestamp_seconds",
    "Unix time until which the endpoint's server asked not to be called (in the past: not paused).",
    ["endpoint"],
)

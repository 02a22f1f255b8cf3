"""Prometheus metrics of the HTTP API (``agentstream_`` prefix, base units, ``_total`` counters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "agentstream_api_requests_total",
    "HTTP requests answered, by route (the route's name, one per path template) and"
    ' status code (a status class is a regex away: status=~"5.."; the codes the API'
    " answers with are few).",
    ["route", "status"],
)
REQUEST_SECONDS = Histogram(
    "agentstream_api_request_seconds",
    "Time to answer an HTTP request (SSE streams: until the headers), in seconds.",
    ["route"],
    # Up to 30 s: the p99 alert's 5 s threshold must fall inside a bucket.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMANDS = Counter(
    "agentstream_api_commands_total",
    "Commands produced to the inbox, by record type.",
    ["type"],
)
REJECTIONS = Counter(
    "agentstream_api_rejections_total",
    "Requests refused before producing anything, by error code.",
    ["code"],
)
INBOX_LAG = Gauge(
    "agentstream_api_engine_lag_records",
    "Inbox records the engine consumer group is behind, at the last measurement.",
)
SSE_STREAMS = Gauge(
    "agentstream_api_sse_streams",
    "Server-Sent Events streams open.",
)

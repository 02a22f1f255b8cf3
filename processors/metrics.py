"""Prometheus metrics of the engine and executors.

Base units (seconds, bytes), ``agentstream_`` prefix, ``_total`` counters, and
OpenTelemetry GenAI naming for tokens (``token_type`` = input | output | cached).
All live in the default registry that ``/metrics`` of the worker serves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from schemas import COMMAND_NAMES, EVENT_NAMES
from streams.lag import LagGauge as LagGauge  # the engine's and executors' lag, one gauge

if TYPE_CHECKING:
    from processors.core import SessionState

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Sessions last from tens of milliseconds (simulated model) to the idle timeout of
# an open conversation.
_SESSION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
COMMAND_OUTCOMES = ("applied", "duplicate", "rejected", "error")
DLQ_SOURCES: dict[str, tuple[str, ...]] = {
    "engine": ("undecodable", "rejected", "error"),
    "llm": ("undecodable", "error"),
    "tools": ("undecodable", "error"),
}
"""The (source, reason) pairs the engine and the executors dead-letter with."""

COMMANDS = Counter(
    "agentstream_engine_commands_total",
    "Inbox records the engine handled, by record type and outcome.",
    ["type", "outcome"],  # outcome: applied | duplicate | rejected | undecodable | error
)
EVENTS = Counter(
    "agentstream_engine_events_total", "Events the engine appended to the log.", ["type"]
)
BATCH_SECONDS = Histogram(
    "agentstream_engine_batch_seconds",
    "Time to decide and commit one batch of one partition (one Kafka transaction).",
    buckets=_LATENCY_BUCKETS,
)
INBOX_AGE = Histogram(
    "agentstream_engine_inbox_age_seconds",
    "Age of a batch's oldest inbox record when the engine starts on it (producer"
    " timestamp to decide): transport, fetch, and the wait behind the partition's"
    " transaction under way.",
    buckets=_LATENCY_BUCKETS,
)
TRANSACTION_PHASE = Histogram(
    "agentstream_engine_transaction_phase_seconds",
    "Time of each phase of one engine transaction: decide (decode, load, decide,"
    " encode), produce (until the broker acknowledged every record), commit (EndTxn).",
    ["phase"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_RECORDS = Histogram(
    "agentstream_engine_batch_records",
    "Inbox records per engine transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
SESSIONS_IN_MEMORY = Gauge(
    "agentstream_engine_sessions_in_memory", "Live sessions held in memory.", ["partition"]
)
DIRTY_SESSIONS = Gauge(
    "agentstream_engine_dirty_sessions",
    "Live sessions whose state is newer than their durable snapshot.",
    ["partition"],
)
SNAPSHOT_SECONDS = Histogram(
    "agentstream_engine_snapshot_flush_seconds",
    "Time to write one batch of snapshots and its checkpoint to Postgres.",
    buckets=_LATENCY_BUCKETS,
)
SNAPSHOTS = Counter("agentstream_engine_snapshots_total", "Session snapshots written.")
RECOVERY_SECONDS = Histogram(
    "agentstream_engine_recovery_seconds",
    "Time to rebuild one partition on assignment (checkpoint + replay).",
    buckets=_LATENCY_BUCKETS,
)
REPLAYED_EVENTS = Counter(
    "agentstream_engine_replayed_events_total", "Events folded during partition recovery."
)
TIMERS_FIRED = Counter(
    "agentstream_engine_timers_fired_total", "Durable timers that came due.", ["kind"]
)
DLQ_RECORDS = Counter(
    "agentstream_dlq_records_total", "Records sent to the dead-letter topic.", ["source", "reason"]
)
OWNED_PARTITIONS = Gauge("agentstream_engine_partitions", "Inbox partitions this engine owns.")
INBOX_PARTITIONS = Gauge(
    "agentstream_engine_inbox_partitions",
    "Partitions of the inbox topic, as an engine knows them (0 in a worker without an"
    " engine): more than the sum of agentstream_engine_partitions means some partition"
    " has no engine and its sessions stand still.",
)
SESSIONS_LIMIT = Gauge(
    "agentstream_engine_sessions_limit",
    "Most live sessions an engine keeps in memory per owned partition"
    " (AGENTSTREAM_MAX_SESSIONS); beyond it the least recently used are evicted and"
    " re-read from their snapshots when next needed.",
)
SESSION_SECONDS = Histogram(
    "agentstream_session_duration_seconds",
    "Time from a session's start to its terminal event (event times), by agent and"
    " outcome (completed, failed, cancelled); observed when the terminal event commits.",
    ["agent", "outcome"],
    buckets=_SESSION_BUCKETS,
)
WORK_IN_FLIGHT = Gauge(
    "agentstream_executor_in_flight", "Work items started and not finished.", ["executor"]
)
EXECUTOR_SLOTS = Gauge(
    "agentstream_executor_slots",
    "Calls an executor may have in flight at once (AGENTSTREAM_MAX_IN_FLIGHT);"
    " agentstream_executor_in_flight of them are in use.",
    ["executor"],
)
WORK_SECONDS = Histogram(
    "agentstream_executor_call_seconds",
    "Wall time of one LLM or tool call, retries included.",
    ["executor", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
WORK_ITEM_AGE = Histogram(
    "agentstream_executor_item_age_seconds",
    "Age of a work item when its call starts (the engine's timestamp to the start):"
    " the engine's commit, the fetch, and any wait for a free slot.",
    ["executor"],
    buckets=_LATENCY_BUCKETS,
)
RESULT_SEND_SECONDS = Histogram(
    "agentstream_executor_result_send_seconds",
    "Time to produce one result to the inbox until the broker acknowledged it.",
    ["executor"],
    buckets=_LATENCY_BUCKETS,
)
WORK_ITEMS = Counter(
    "agentstream_executor_items_total", "Work items handled.", ["executor", "outcome"]
)
TOKENS = Counter(
    "agentstream_gen_ai_tokens_total",
    "Tokens used by model calls (OpenTelemetry gen_ai.usage.*).",
    ["model", "token_type"],
)


# ``labels()`` validates and locks on every call (visible in py-spy of a busy worker);
# the hot path takes each labelled child once. Label values are bounded (record
# names, outcomes, executor names), so the caches are too.


@functools.cache
def command_counter(name: str, outcome: str) -> Counter:
    """``COMMANDS`` for one record type and outcome."""
    return COMMANDS.labels(name, outcome)


@functools.cache
def event_counter(name: str) -> Counter:
    """``EVENTS`` for one event type."""
    return EVENTS.labels(name)


def engine_limits(inbox_partitions: int, max_sessions: int) -> None:
    """Set what an engine's ownership and memory are measured against."""
    INBOX_PARTITIONS.set(inbox_partitions)
    SESSIONS_LIMIT.set(max_sessions)


@functools.cache
def _session_duration(agent: str, outcome: str) -> Histogram:
    return SESSION_SECONDS.labels(agent, outcome)


def session_ended(state: SessionState) -> None:
    """Observe ``state``'s duration if it is terminal (agents come from the agents
    file and outcomes are three, so the label values are bounded)."""
    if state.terminal:
        seconds = max(0, state.updated_ms - state.started_ms) / 1000
        _session_duration(state.agent, state.status).observe(seconds)


@functools.cache
def work_outcome(executor: str, outcome: str) -> tuple[Counter, Histogram]:
    """``WORK_ITEMS`` and ``WORK_SECONDS`` for one executor and outcome."""
    return WORK_ITEMS.labels(executor, outcome), WORK_SECONDS.labels(executor, outcome)


STEP_RESULTS = ("LLMCallResult", "ToolCallResult")
"""A step is a model or tool call that came back (as the load generator counts them)."""


def _total(counter: Counter, **labels: str) -> float:
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def steps_done(roles: Collection[str]) -> Callable[[], float]:
    """The steps a worker with ``roles`` moved so far: results its engine applied, or,
    without an engine, calls its executors finished (in a worker with both, each step
    passes through both, and the engine's count is the session's)."""
    if "engine" in roles:
        return lambda: sum(_total(COMMANDS, type=t, outcome="applied") for t in STEP_RESULTS)
    return lambda: _total(WORK_ITEMS)


def _initialise() -> None:
    """Create the labelled series alerts and ratios read, at 0: a series that first
    appears at 1 makes ``increase()`` read 0, so the first dead letter went unseen."""
    for name in COMMAND_NAMES:
        for outcome in COMMAND_OUTCOMES:
            command_counter(name, outcome)
    for name in EVENT_NAMES:
        event_counter(name)
    for source, reasons in DLQ_SOURCES.items():
        for reason in reasons:
            DLQ_RECORDS.labels(source, reason)


_initialise()

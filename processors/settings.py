"""Settings of the session engine and executors, from ``AGENTSTREAM_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from streams.settings import env_number as _number

DEFAULT_DATABASE_URL = "postgresql://agentstream:agentstream@127.0.0.1:55432/agentstream"


@dataclass(frozen=True)
class EngineSettings:
    """How the session engine batches, snapshots and bounds memory."""

    database_url: str = DEFAULT_DATABASE_URL
    """Postgres for snapshots and checkpoints (``AGENTSTREAM_DATABASE_URL``)."""
    max_batch_records: int = 2000
    """Most inbox records per partition per Kafka transaction."""
    snapshot_interval_s: float = 1.0
    """How often dirty sessions are snapshotted (``AGENTSTREAM_SNAPSHOT_INTERVAL_S``)."""
    max_sessions_per_partition: int = 50_000
    """LRU bound of live sessions per owned partition (``AGENTSTREAM_MAX_SESSIONS``)."""
    timer_interval_s: float = 0.05
    """How often due durable timers are looked for."""
    pipeline_min_records: int = 32
    """Records waiting in a partition's lane before its next batch is prepared and
    written while the previous transaction commits (``AGENTSTREAM_PIPELINE_MIN_RECORDS``);
    with fewer, the lane waits for the commit and takes them all in one transaction.

    Pipelining only pays when there is a backlog: each transaction costs broker and
    client CPU whatever it carries, so without one, fewer and larger transactions win;
    with one, pipelining raises the maximum. Measured with ``bench_engine latency
    --partitions 4`` with this variable set to 1 (always) and 10**9 (never), and
    ``bench_engine throughput`` (docs/benchmarks.md)."""
    rebalance_wait_s: float = 5.0
    """How long a rebalance callback waits for a lane's batch under way (revocation,
    giving up a partition) or for partitions to be rebuilt (assignment) before it gives
    up on them (``AGENTSTREAM_REBALANCE_WAIT_S``). A lane given up on is cancelled and,
    if the partition stays, rebuilt from the log; whoever starts the partition's
    producers next aborts its open transaction, so nothing of it is applied twice.
    Shorter than the group's rebalance timeout (its session timeout, 10 s), so a
    member that gives up still rejoins the same generation."""
    rebuild_backoff_max_s: float = 10.0
    """Longest pause between two attempts to rebuild a partition whose rebuild failed
    (Kafka or Postgres away); the pauses double from 0.5 s up to it
    (``AGENTSTREAM_REBUILD_BACKOFF_MAX_S``)."""
    stall_after_s: float = 60.0
    """A lane with records waiting that has not committed for this long, or a partition
    assigned and not rebuilt for this long, makes the worker's ``/livez`` fail
    (``AGENTSTREAM_LIVEZ_STALL_S``)."""
    rebalance_stuck_after_s: float = 30.0
    """A rebalance callback running this long makes ``/livez`` fail
    (``AGENTSTREAM_LIVEZ_REBALANCE_S``); callbacks give up on what they wait for after
    ``rebalance_wait_s``, so this means that bound did not hold."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            database_url=env.get("AGENTSTREAM_DATABASE_URL", base.database_url),
            snapshot_interval_s=_number(
                env, "AGENTSTREAM_SNAPSHOT_INTERVAL_S", base.snapshot_interval_s
            ),
            max_sessions_per_partition=int(
                _number(env, "AGENTSTREAM_MAX_SESSIONS", base.max_sessions_per_partition)
            ),
            pipeline_min_records=int(
                _number(env, "AGENTSTREAM_PIPELINE_MIN_RECORDS", base.pipeline_min_records)
            ),
            rebalance_wait_s=_number(env, "AGENTSTREAM_REBALANCE_WAIT_S", base.rebalance_wait_s),
            rebuild_backoff_max_s=_number(
                env, "AGENTSTREAM_REBUILD_BACKOFF_MAX_S", base.rebuild_backoff_max_s
            ),
            stall_after_s=_number(env, "AGENTSTREAM_LIVEZ_STALL_S", base.stall_after_s),
            rebalance_stuck_after_s=_number(
                env, "AGENTSTREAM_LIVEZ_REBALANCE_S", base.rebalance_stuck_after_s
            ),
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """How many calls an executor keeps in flight and how often it commits."""

    max_in_flight: int = 10_000
    """Calls started and not finished, per executor process (``AGENTSTREAM_MAX_IN_FLIGHT``)."""
    commit_interval_s: float = 0.2
    """How often the lowest finished offsets are committed."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExecutorSettings:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(max_in_flight=int(_number(env, "AGENTSTREAM_MAX_IN_FLIGHT", base.max_in_flight)))

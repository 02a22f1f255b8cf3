"""The session engine runtime: inbox partitions in, events and work items out, exactly once.

One :class:`SessionEngine` per worker owns inbox partitions (a consumer group);
for each it runs a :class:`~processors.engine.lane.Lane` that batches records
into one Kafka transaction each. The parts, from the outside in::

    service         SessionEngine: the group consumer, the fetch loop, transactions, timers
    ownership       the owned partitions' lanes: bounded revocation and assignment, rebuilds
    takeover        take a partition: fence its previous owner, rebuild it (retried)
    lane            one partition's queue and task; pipelines batches when there is a backlog
    partition       PartitionEngine: decode, decide, append, commit, for one partition
    txn_writer      a transaction's records appended straight into per-partition batches
    inbox_progress  how far inbox p is applied, written inside each transaction
    session_cache   the live sessions of a partition (bounded LRU, dirty tracking)
    snapshot_store  session snapshots and partition checkpoints in Postgres
    recovery        rebuild a partition from checkpoint + events tail on assignment
    watchdog        say what a rebalance callback waits for when it takes long
    health          what makes the engine unhealthy (the worker's /livez and /readyz)
    log_audit       fold a session's log and check the engine's invariants (replay CLI)
    window_audit    audit a time window of the log by its envelopes (replay --from-datetime)
    inbox_reset     what moving the engine's inbox position means (offsets reset)

The decisions themselves are the pure core's (:mod:`processors.core`).
"""

from __future__ import annotations

from processors.engine.log_audit import LogAuditor, SessionAudit, audit_sessions
from processors.engine.recovery import RecoveryError
from processors.engine.service import SessionEngine
from processors.engine.snapshot_store import SnapshotStore

__all__ = [
    "LogAuditor",
    "RecoveryError",
    "SessionAudit",
    "SessionEngine",
    "SnapshotStore",
    "audit_sessions",
]

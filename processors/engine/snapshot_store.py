"""Session snapshots and partition checkpoints in Postgres.

The engine folds events into state in memory; this store makes that state
durable off the hot path so recovery does not replay the whole log:

* ``session_snapshots``: one row per session: its last ``seq``, the offset on
  the events topic of the last event folded in, the encoded state, and the
  earliest pending timer (so a new owner re-arms timers of sessions it has not
  loaded).
* ``partition_checkpoints``: "every session of partition p is in Postgres up to
  events offset X". A new owner of p replays the events topic from X+1.

Snapshots and the checkpoint that covers them are written in one Postgres
transaction, so a checkpoint never claims more than the rows hold. Rows are
keyed by the events topic name (``stream``) as well, so several deployments
(or test runs with their own topic prefix) can share one database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

SCHEMA_DDL = """
CREATE TABLE IF NOT EXISTS session_snapshots (
    stream           text   NOT NULL,
    session_id       text   NOT NULL,
    tenant_id        text   NOT NULL,
    partition        int    NOT NULL,
    seq              bigint NOT NULL,
    events_offset    bigint NOT NULL,
    next_deadline_ms bigint,
    state            bytea  NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, session_id)
);
CREATE INDEX IF NOT EXISTS session_snapshots_deadlines
    ON session_snapshots (stream, partition, next_deadline_ms)
    WHERE next_deadline_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS partition_checkpoints (
    stream        text   NOT NULL,
    partition     int    NOT NULL,
    events_offset bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, partition)
);
"""

_UPSERT = """
INSERT INTO session_snapshots
    (stream, session_id, tenant_id, partition, seq, events_offset, next_deadline_ms, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (stream, session_id) DO UPDATE SET
    tenant_id = EXCLUDED.tenant_id, partition = EXCLUDED.partition, seq = EXCLUDED.seq,
    events_offset = EXCLUDED.events_offset, next_deadline_ms = EXCLUDED.next_deadline_ms,
    state = EXCLUDED.state, updated_at = now()
WHERE session_snapshots.seq <= EXCLUDED.seq
"""

_CHECKPOINT = """
INSERT INTO partition_checkpoints (stream, partition, events_offset) VALUES ($1, $2, $3)
ON CONFLICT (stream, partition) DO UPDATE SET
    events_offset = GREATEST(partition_checkpoints.events_offset, EXCLUDED.events_offset),
    updated_at = now()
"""


_SNAPSHOT_COLUMNS = "session_id, tenant_id, partition, seq, events_offset, next_deadline_ms, state"
"""The columns of :class:`Snapshot`, in its field order."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One session's durable state."""

    session_id: str
    """The session."""
    tenant_id: str
    """Its tenant."""
    partition: int
    """The partition (agent shard) the session lives on."""
    seq: int
    """seq of the last event folded into ``state``."""
    events_offset: int
    """Offset on the events topic of that last event."""
    next_deadline_ms: int | None
    """Earliest pending timer of the session, epoch ms, or None."""
    state: bytes
    """The encoded state (processors.core.encode_state)."""


class SnapshotStore:
    """Reads and writes snapshots and checkpoints of one events topic."""

    def __init__(self, pool: asyncpg.Pool, stream: str) -> None:
        self._pool = pool
        self._stream = stream

    @staticmethod
    async def create_schema(pool: asyncpg.Pool) -> None:
        """Create the tables if missing (safe to run from every worker at start)."""
        # Serialise concurrent starts: CREATE ... IF NOT EXISTS can still race.
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(827311)")
            await connection.execute(SCHEMA_DDL)

    async def checkpoint(self, partition: int) -> int:
        """Events offset up to which every session of ``partition`` is stored; -1 if none."""
        value = await self._pool.fetchval(
            "SELECT events_offset FROM partition_checkpoints WHERE stream = $1 AND partition = $2",
            self._stream,
            partition,
        )
        return -1 if value is None else int(value)

    async def load(self, session_ids: Sequence[str]) -> dict[str, Snapshot]:
        """Snapshots of those sessions that have one."""
        if not session_ids:
            return {}
        rows = await self._pool.fetch(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM session_snapshots"
            " WHERE stream = $1 AND session_id = ANY($2::text[])",
            self._stream,
            list(session_ids),
        )
        return {row["session_id"]: Snapshot(**dict(row)) for row in rows}

    async def load_partition(self, partition: int) -> dict[str, Snapshot]:
        """Every snapshot of ``partition`` (for audits; the engine loads them lazily)."""
        rows = await self._pool.fetch(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM session_snapshots"
            " WHERE stream = $1 AND partition = $2",
            self._stream,
            partition,
        )
        return {row["session_id"]: Snapshot(**dict(row)) for row in rows}

    async def save(
        self, partition: int, snapshots: Iterable[Snapshot], checkpoint_offset: int | None
    ) -> None:
        """Upsert snapshots and, in the same transaction, advance the checkpoint.

        An upsert never moves a session backwards (``seq`` only grows), so a slow
        flush from a fenced-off former owner cannot overwrite newer state.
        """
        rows = [
            (
                self._stream,
                s.session_id,
                s.tenant_id,
                s.partition,
                s.seq,
                s.events_offset,
                s.next_deadline_ms,
                s.state,
            )
            for s in snapshots
        ]
        async with self._pool.acquire() as connection, connection.transaction():
            if rows:
                await connection.executemany(_UPSERT, rows)
            if checkpoint_offset is not None and checkpoint_offset >= 0:
                await connection.execute(_CHECKPOINT, self._stream, partition, checkpoint_offset)

    async def due_sessions(self, partition: int) -> list[tuple[str, int]]:
        """(session id, earliest deadline) of every stored session with a pending timer."""
        rows = await self._pool.fetch(
            "SELECT session_id, next_deadline_ms FROM session_snapshots"
            " WHERE stream = $1 AND partition = $2 AND next_deadline_ms IS NOT NULL",
            self._stream,
            partition,
        )
        return [(row["session_id"], int(row["next_deadline_ms"])) for row in rows]

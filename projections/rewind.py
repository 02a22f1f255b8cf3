"""Move the projector's position of an events partition, keeping the read models consistent.

The projector's position is the ``projection_tracking`` row of (stream, partition),
written in the same transaction as the rows (writer.py). Moving it back to offset N
(the next event it will apply) must leave the read models as if the events at N and
after had never been applied; then the projector, started again, re-applies them.
:func:`move_position` does that in the caller's transaction, so the rows and the
position change together or not at all:

* the sessions with an event at or after N in that partition are the affected ones
  (a session lives in one partition, so no other partition is touched);
* their ``usage_daily`` contributions from those events are subtracted (computed in
  SQL from the stored events, before anything is deleted);
* their events at or after N are deleted, and their sessions, messages, LLM-call and
  tool-call rows are rebuilt by folding the events they keep (``BatchFold``, the
  projector's own fold; a session started at or after N disappears);
* the tracking row is set to N - 1.

Moving forward deletes nothing: the events passed over never reach the read models
(the caller asks for an explicit skip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from projections.fold import BatchFold
from projections.writer import lock_positions, set_positions, write_fold


@dataclass(frozen=True, slots=True)
class Moved:
    """What moving one partition's position did."""

    partition: int
    before: int
    """Last applied offset before (-1: none)."""
    after: int
    """Last applied offset now (the projector resumes at ``after + 1``)."""
    events_removed: int = 0
    sessions_rebuilt: int = 0
    """Affected sessions that keep some events (their rows folded again)."""
    sessions_removed: int = 0
    """Affected sessions with no event before the new position (their rows deleted)."""


_AFFECTED = """
SELECT DISTINCT session_id FROM events
WHERE stream = $1 AND partition = $2 AND kafka_offset >= $3
"""
_SUBTRACT_USAGE = """
WITH removed AS (
    SELECT e.tenant_id, (e.time AT TIME ZONE 'UTC')::date AS day, s.agent,
           COALESCE(NULLIF(e.body->>'model', ''), 'unknown') AS model,
           count(*) AS calls,
           COALESCE(sum((e.body->>'input_tokens')::bigint), 0) AS input_tokens,
           COALESCE(sum((e.body->>'output_tokens')::bigint), 0) AS output_tokens,
           COALESCE(sum((e.body->>'cached_tokens')::bigint), 0) AS cached_tokens,
           COALESCE(sum((e.body->>'cost_usd')::float8), 0) AS cost_usd
    FROM events e JOIN sessions s ON s.stream = e.stream AND s.session_id = e.session_id
    WHERE e.stream = $1 AND e.partition = $2 AND e.kafka_offset >= $3
      AND e.type = 'LLMCallCompleted'
    GROUP BY 1, 2, 3, 4
)
UPDATE usage_daily AS u SET
    llm_calls = u.llm_calls - r.calls,
    input_tokens = u.input_tokens - r.input_tokens,
    output_tokens = u.output_tokens - r.output_tokens,
    cached_tokens = u.cached_tokens - r.cached_tokens,
    cost_usd = u.cost_usd - r.cost_usd
FROM removed AS r
WHERE u.stream = $1 AND u.tenant_id = r.tenant_id AND u.day = r.day AND u.agent = r.agent
  AND u.model = r.model
"""
_DROP_EMPTY_USAGE = "DELETE FROM usage_daily WHERE stream = $1 AND llm_calls <= 0"
_KEPT_EVENTS = """
SELECT session_id, seq, type, partition, kafka_offset, body FROM events
WHERE stream = $1 AND session_id = ANY($2::text[]) AND kafka_offset < $3
ORDER BY kafka_offset
"""
_DELETE_EVENTS = """
DELETE FROM events WHERE stream = $1 AND session_id = ANY($2::text[]) AND kafka_offset >= $3
"""
_DELETE_ROWS = "DELETE FROM {table} WHERE stream = $1 AND session_id = ANY($2::text[])"
_FOLDED_TABLES = ("messages", "llm_calls", "tool_calls", "sessions")


def _body(value: Any) -> dict[str, Any]:
    """A jsonb value: text from a bare asyncpg connection, decoded under SQLAlchemy's codec."""
    decoded = json.loads(value) if isinstance(value, str | bytes) else value
    return dict(decoded)


async def move_position(connection: Any, stream: str, partition: int, next_offset: int) -> Moved:
    """Set the projector's position of ``partition`` so it applies ``next_offset`` next;
    moving back removes what lies past it (see the module docstring). Runs inside the
    caller's transaction and locks the tracking row, so a projector applying a batch
    of that partition meanwhile waits for the commit."""
    before = (await lock_positions(connection, stream, [partition]))[partition]
    after = next_offset - 1
    moved = Moved(partition, before, after)
    if after < before:
        moved = await _remove_from(connection, stream, partition, next_offset, moved)
    await set_positions(connection, stream, {partition: after})
    return moved


async def _remove_from(
    connection: Any, stream: str, partition: int, first: int, moved: Moved
) -> Moved:
    rows = await connection.fetch(_AFFECTED, stream, partition, first)
    affected = [str(r["session_id"]) for r in rows]
    if not affected:
        return moved
    await connection.execute(_SUBTRACT_USAGE, stream, partition, first)
    await connection.execute(_DROP_EMPTY_USAGE, stream)
    kept = await connection.fetch(_KEPT_EVENTS, stream, affected, first)
    status = await connection.execute(_DELETE_EVENTS, stream, affected, first)
    removed = int(str(status).rsplit(" ", 1)[-1])
    for table in _FOLDED_TABLES:
        await connection.execute(_DELETE_ROWS.format(table=table), stream, affected)
    fold = BatchFold({})
    for r in kept:
        fold.apply(int(r["partition"]), int(r["kafka_offset"]), str(r["type"]), _body(r["body"]))
    # The kept events stay in their table and their usage stays counted: write the
    # rows the fold derives from them, nothing else.
    fold.events = []
    fold.usage = {}
    await write_fold(connection, stream, fold)
    rebuilt = len(fold.sessions)
    return Moved(partition, moved.before, moved.after, removed, rebuilt, len(affected) - rebuilt)

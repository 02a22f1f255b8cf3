"""Batched writes of a :class:`~projections.fold.BatchFold`, and the tracking rows.

Every table is written with one statement per batch: the events with COPY
(binary), the others with ``INSERT ... SELECT FROM unnest($2::text[], ...)``
over typed arrays, upserting where a later batch adds to a row. That is a
handful of round trips per batch of thousands of events.

Tracking (like eventsourcing's ProcessRecorder): the offset
of the last event applied per (stream, partition) lives in
``projection_tracking`` and is written in the same transaction as the rows.
:func:`lock_positions` takes those rows ``FOR UPDATE`` first, so two
projectors that both believe they own a partition (a rebalance in flight)
serialise, and the second one skips what the first applied: exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projections.fold import BatchFold, SessionRow

_ENSURE_TRACKING = """
INSERT INTO projection_tracking (stream, partition, kafka_offset)
SELECT $1, p, -1 FROM unnest($2::int[]) AS p
ON CONFLICT (stream, partition) DO NOTHING
"""
_LOCK_TRACKING = """
SELECT partition, kafka_offset FROM projection_tracking
WHERE stream = $1 AND partition = ANY($2::int[])
ORDER BY partition
FOR UPDATE
"""
_SET_TRACKING = """
UPDATE projection_tracking AS t SET kafka_offset = u.o, updated_at = now()
FROM unnest($2::int[], $3::bigint[]) AS u(p, o)
WHERE t.stream = $1 AND t.partition = u.p
"""
_POSITIONS = """
SELECT partition, kafka_offset FROM projection_tracking
WHERE stream = $1 AND partition = ANY($2::int[])
"""

_LOAD_SESSIONS = """
SELECT session_id, tenant_id, agent, status, keep_open, awaiting, pending_tools, partition,
       seq, steps, input, last_message, last_message_role, output, end_reason, tokens,
       cost_usd, metadata, created_at, updated_at
FROM sessions WHERE stream = $1 AND session_id = ANY($2::text[])
"""
_UPSERT_SESSIONS = """
INSERT INTO sessions (stream, session_id, tenant_id, agent, status, keep_open, awaiting,
    pending_tools, partition, seq, steps, input, last_message, last_message_role, output,
    end_reason, tokens, cost_usd, metadata, created_at, updated_at)
SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
    $7::jsonb[], $8::jsonb[], $9::int[], $10::bigint[], $11::int[], $12::text[], $13::text[],
    $14::text[], $15::text[], $16::text[], $17::bigint[], $18::float8[], $19::jsonb[],
    $20::timestamptz[], $21::timestamptz[]) AS u
ON CONFLICT (stream, session_id) DO UPDATE SET
    status = EXCLUDED.status, awaiting = EXCLUDED.awaiting,
    pending_tools = EXCLUDED.pending_tools, seq = EXCLUDED.seq, steps = EXCLUDED.steps,
    last_message = EXCLUDED.last_message, last_message_role = EXCLUDED.last_message_role,
    output = EXCLUDED.output, end_reason = EXCLUDED.end_reason, tokens = EXCLUDED.tokens,
    cost_usd = EXCLUDED.cost_usd, updated_at = EXCLUDED.updated_at
"""
_EVENT_COLUMNS = (
    "stream", "session_id", "seq", "tenant_id", "type", "partition", "kafka_offset", "time",
    "body",
)  # fmt: skip
_INSERT_MESSAGES = """
INSERT INTO messages (stream, session_id, seq, tenant_id, role, text, created_at)
SELECT $1, u.* FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
    $7::timestamptz[]) AS u
ON CONFLICT (stream, session_id, seq) DO NOTHING
"""
_UPSERT_LLM = """
INSERT INTO llm_calls (stream, session_id, call_id, tenant_id, agent, model, step, status,
    input_tokens, output_tokens, cached_tokens, cost_usd, latency_s, error, requested_at,
    finished_at)
SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::int[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::float8[],
    $13::float8[], $14::text[], $15::timestamptz[], $16::timestamptz[]) AS u
ON CONFLICT (stream, session_id, call_id) DO UPDATE SET
    agent = COALESCE(EXCLUDED.agent, llm_calls.agent),
    model = COALESCE(EXCLUDED.model, llm_calls.model),
    step = COALESCE(EXCLUDED.step, llm_calls.step),
    status = EXCLUDED.status,
    input_tokens = COALESCE(EXCLUDED.input_tokens, llm_calls.input_tokens),
    output_tokens = COALESCE(EXCLUDED.output_tokens, llm_calls.output_tokens),
    cached_tokens = COALESCE(EXCLUDED.cached_tokens, llm_calls.cached_tokens),
    cost_usd = COALESCE(EXCLUDED.cost_usd, llm_calls.cost_usd),
    latency_s = COALESCE(EXCLUDED.latency_s, llm_calls.latency_s),
    error = COALESCE(EXCLUDED.error, llm_calls.error),
    requested_at = COALESCE(EXCLUDED.requested_at, llm_calls.requested_at),
    finished_at = COALESCE(EXCLUDED.finished_at, llm_calls.finished_at)
"""
_UPSERT_TOOLS = """
INSERT INTO tool_calls (stream, session_id, call_id, tenant_id, tool, arguments_json,
    llm_call_id, status, output, error, latency_s, requested_at, finished_at)
SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::timestamptz[],
    $13::timestamptz[]) AS u
ON CONFLICT (stream, session_id, call_id) DO UPDATE SET
    tool = COALESCE(EXCLUDED.tool, tool_calls.tool),
    arguments_json = COALESCE(EXCLUDED.arguments_json, tool_calls.arguments_json),
    llm_call_id = COALESCE(EXCLUDED.llm_call_id, tool_calls.llm_call_id),
    status = EXCLUDED.status,
    output = COALESCE(EXCLUDED.output, tool_calls.output),
    error = COALESCE(EXCLUDED.error, tool_calls.error),
    latency_s = COALESCE(EXCLUDED.latency_s, tool_calls.latency_s),
    requested_at = COALESCE(EXCLUDED.requested_at, tool_calls.requested_at),
    finished_at = COALESCE(EXCLUDED.finished_at, tool_calls.finished_at)
"""
_UPSERT_USAGE = """
INSERT INTO usage_daily (stream, tenant_id, day, agent, model, llm_calls, input_tokens,
    output_tokens, cached_tokens, cost_usd)
SELECT $1, u.* FROM unnest($2::text[], $3::date[], $4::text[], $5::text[], $6::bigint[],
    $7::bigint[], $8::bigint[], $9::bigint[], $10::float8[]) AS u
ON CONFLICT (stream, tenant_id, day, agent, model) DO UPDATE SET
    llm_calls = usage_daily.llm_calls + EXCLUDED.llm_calls,
    input_tokens = usage_daily.input_tokens + EXCLUDED.input_tokens,
    output_tokens = usage_daily.output_tokens + EXCLUDED.output_tokens,
    cached_tokens = usage_daily.cached_tokens + EXCLUDED.cached_tokens,
    cost_usd = usage_daily.cost_usd + EXCLUDED.cost_usd
"""

_LLM_COLUMNS = (
    "tenant_id", "agent", "model", "step", "status", "input_tokens", "output_tokens",
    "cached_tokens", "cost_usd", "latency_s", "error", "requested_at", "finished_at",
)  # fmt: skip
_TOOL_COLUMNS = (
    "tenant_id", "tool", "arguments_json", "llm_call_id", "status", "output", "error",
    "latency_s", "requested_at", "finished_at",
)  # fmt: skip


def _loaded(value: Any) -> Any:
    """A jsonb value: decoded already by SQLAlchemy's asyncpg codec, or text from a bare pool."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _ms(value: dt.datetime) -> int:
    return round(value.timestamp() * 1000)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Row tuples -> one list per column (what ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def lock_positions(connection: Any, stream: str, partitions: Sequence[int]) -> dict[int, int]:
    """Lock and return the tracking rows of ``partitions``: partition -> last applied offset.

    Must run inside the transaction that writes the batch; -1 means nothing applied yet.
    """
    ordered = sorted(set(partitions))
    await connection.execute(_ENSURE_TRACKING, stream, ordered)
    rows = await connection.fetch(_LOCK_TRACKING, stream, ordered)
    return {int(r["partition"]): int(r["kafka_offset"]) for r in rows}


async def positions(connection: Any, stream: str, partitions: Sequence[int]) -> dict[int, int]:
    """Tracking positions without locking (-1 for partitions never applied)."""
    rows = await connection.fetch(_POSITIONS, stream, sorted(set(partitions)))
    found = {int(r["partition"]): int(r["kafka_offset"]) for r in rows}
    return {p: found.get(p, -1) for p in partitions}


async def set_positions(connection: Any, stream: str, offsets: Mapping[int, int]) -> None:
    """Record the last applied offset per partition (rows exist: lock_positions made them)."""
    parts = sorted(offsets)
    await connection.execute(_SET_TRACKING, stream, parts, [offsets[p] for p in parts])


async def load_sessions(
    connection: Any, stream: str, session_ids: Iterable[str]
) -> dict[str, SessionRow]:
    """The stored rows of those sessions that have one."""
    rows = await connection.fetch(_LOAD_SESSIONS, stream, list(session_ids))
    loaded: dict[str, SessionRow] = {}
    for r in rows:
        loaded[r["session_id"]] = SessionRow(
            session_id=r["session_id"],
            tenant_id=r["tenant_id"],
            agent=r["agent"],
            status=r["status"],
            keep_open=r["keep_open"],
            awaiting=set(_loaded(r["awaiting"])),
            pending_tools=set(_loaded(r["pending_tools"])),
            partition=r["partition"],
            seq=r["seq"],
            steps=r["steps"],
            input=r["input"],
            last_message=r["last_message"],
            last_message_role=r["last_message_role"],
            output=r["output"],
            end_reason=r["end_reason"],
            tokens=r["tokens"],
            cost_usd=r["cost_usd"],
            metadata=dict(_loaded(r["metadata"])),
            created_ms=_ms(r["created_at"]),
            updated_ms=_ms(r["updated_at"]),
        )
    return loaded


def _session_tuple(row: SessionRow) -> tuple[Any, ...]:
    return (
        row.session_id, row.tenant_id, row.agent, row.status, row.keep_open,
        json.dumps(sorted(row.awaiting)), json.dumps(sorted(row.pending_tools)),
        row.partition, row.seq, row.steps, row.input, row.last_message,
        row.last_message_role, row.output, row.end_reason, row.tokens, row.cost_usd,
        json.dumps(row.metadata), dt.datetime.fromtimestamp(row.created_ms / 1000, dt.UTC),
        dt.datetime.fromtimestamp(row.updated_ms / 1000, dt.UTC),
    )  # fmt: skip


async def write_fold(connection: Any, stream: str, fold: BatchFold) -> None:
    """Write every row ``fold`` collected (inside the caller's transaction)."""
    if fold.events:
        # COPY: a third of the time of a multi-row insert for the widest table. The fold
        # hands over only seq above the session's stored seq, so no row can already exist.
        await connection.copy_records_to_table(
            "events", records=[(stream, *row) for row in fold.events], columns=_EVENT_COLUMNS
        )
    if fold.dirty:
        rows = [_session_tuple(fold.sessions[s]) for s in sorted(fold.dirty)]
        await connection.execute(_UPSERT_SESSIONS, stream, *_columns(rows, 20))
    if fold.messages:
        await connection.execute(_INSERT_MESSAGES, stream, *_columns(fold.messages, 6))
    if fold.llm_calls:
        tenants = {sid: fold.sessions[sid].tenant_id for sid, _ in fold.llm_calls}
        rows = [
            (sid, cid, *[
                tenants[sid] if c == "tenant_id" else cols.get(c) for c in _LLM_COLUMNS
            ])
            for (sid, cid), cols in fold.llm_calls.items()
        ]  # fmt: skip
        await connection.execute(_UPSERT_LLM, stream, *_columns(rows, 15))
    if fold.tool_calls:
        tenants = {sid: fold.sessions[sid].tenant_id for sid, _ in fold.tool_calls}
        rows = [
            (sid, cid, *[
                tenants[sid] if c == "tenant_id" else cols.get(c) for c in _TOOL_COLUMNS
            ])
            for (sid, cid), cols in fold.tool_calls.items()
        ]  # fmt: skip
        await connection.execute(_UPSERT_TOOLS, stream, *_columns(rows, 12))
    if fold.usage:
        rows = [
            (tenant, day, agent, model, int(t[0]), int(t[1]), int(t[2]), int(t[3]), float(t[4]))
            for (tenant, day, agent, model), t in fold.usage.items()
        ]
        await connection.execute(_UPSERT_USAGE, stream, *_columns(rows, 9))

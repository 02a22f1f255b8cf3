"""The query side: what the HTTP API reads from the read models.

Every method takes the caller's tenant and filters by it (and by the stream),
so another tenant's session is indistinguishable from one that does not
exist: the API answers 404 for both. Lists use keyset cursors
(:mod:`projections.cursors`) and answer ``(items, next)``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from projections import tables as t
from projections.cursors import CursorError, decode_cursor, encode_cursor
from projections.fold import clean

GroupBy = Literal["agent", "model", "day"]
INTERNAL_METADATA_PREFIX = "agentstream."
"""SessionStarted.metadata keys the engine adds for itself (timeouts); not shown to users."""


def iso(value: dt.datetime | dt.date) -> str:
    """RFC 3339 / ISO 8601 text, ``Z`` for UTC."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


@dataclass(frozen=True, slots=True)
class Replay:
    """What an SSE stream sends before going live (one consistent read)."""

    events: list[dict[str, Any]]
    """Events after the requested seq that the read model holds, in seq order."""
    partition: int
    """The session's partition (of the events topic)."""
    tracked_offset: int
    """Every event of that partition up to this offset is in the read model (-1: none)."""
    final_seq: int | None = None
    """The seq of the session's terminal event when the read model holds it, else None."""


def session_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The API form of a sessions row."""
    last = (
        {"role": row["last_message_role"], "text": row["last_message"]}
        if row["last_message"] is not None
        else None
    )
    metadata = row["metadata"]
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    return {
        "session_id": row["session_id"],
        "tenant_id": row["tenant_id"],
        "agent": row["agent"],
        "status": row["status"],
        "keep_open": row["keep_open"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "seq": row["seq"],
        "steps": row["steps"],
        "input": row["input"],
        "last_message": last,
        "output": row["output"],
        "end_reason": row["end_reason"],
        "usage": {"tokens": row["tokens"], "cost_usd": row["cost_usd"]},
        "metadata": {
            k: v for k, v in metadata.items() if not k.startswith(INTERNAL_METADATA_PREFIX)
        },
    }


def event_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The API form of an events row: seq, type, time and the event's fields."""
    body = row["body"]
    if isinstance(body, str):
        body = json.loads(body)
    return {"seq": row["seq"], "type": row["type"], "time": iso(row["time"]), "data": body}


_SESSION_COLUMNS = [
    c for c in t.sessions.c if c.name not in ("stream", "awaiting", "pending_tools", "partition")
]


class QueryService:
    """Tenant-scoped reads of one stream's read models."""

    def __init__(self, engine: AsyncEngine, stream: str) -> None:
        self.engine = engine
        self.stream = stream

    async def owner(self, session_id: str) -> str | None:
        """The tenant of ``session_id`` per the read model; None if it is not there (yet)."""
        query = select(t.sessions.c.tenant_id).where(
            t.sessions.c.stream == self.stream, t.sessions.c.session_id == session_id
        )
        async with self.engine.connect() as connection:
            value = await connection.scalar(query)
        return None if value is None else str(value)

    async def status(self, session_id: str) -> str | None:
        """The session's status per the read model; None if it is not there (yet)."""
        query = select(t.sessions.c.status).where(
            t.sessions.c.stream == self.stream, t.sessions.c.session_id == session_id
        )
        async with self.engine.connect() as connection:
            value = await connection.scalar(query)
        return None if value is None else str(value)

    async def get_session(self, tenant: str, session_id: str) -> dict[str, Any] | None:
        query = select(*_SESSION_COLUMNS).where(
            t.sessions.c.stream == self.stream,
            t.sessions.c.session_id == session_id,
            t.sessions.c.tenant_id == tenant,
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return None if row is None else session_json(row)

    async def list_sessions(
        self,
        tenant: str,
        *,
        status: str | None = None,
        agent: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``created_after`` inclusive, ``created_before`` exclusive."""
        s = t.sessions.c
        conditions = [s.stream == self.stream, s.tenant_id == tenant]
        if status is not None:
            conditions.append(s.status == status)
        if agent is not None:
            conditions.append(s.agent == agent)
        if created_after is not None:
            conditions.append(s.created_at >= created_after)
        if created_before is not None:
            conditions.append(s.created_at < created_before)
        if cursor is not None:
            created_us, session_id = decode_cursor("sessions", cursor, (int, str))
            session_id = clean(session_id)  # stored ids never hold NUL; Postgres refuses it
            try:
                at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=created_us)
            except OverflowError:
                raise CursorError("malformed cursor") from None
            conditions.append(tuple_(s.created_at, s.session_id) < tuple_(at, session_id))
        query = (
            select(*_SESSION_COLUMNS)
            .where(and_(*conditions))
            .order_by(s.created_at.desc(), s.session_id.desc())
            .limit(limit + 1)
        )
        async with self.engine.connect() as connection:
            rows = list((await connection.execute(query)).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more:
            last = rows[-1]
            delta = last["created_at"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            next_cursor = encode_cursor("sessions", [micros, last["session_id"]])
        return [session_json(r) for r in rows], next_cursor

    async def list_events(
        self, tenant: str, session_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Events of one of the tenant's sessions by seq; the caller checked ownership."""
        after = 0
        if cursor is not None:
            (after,) = decode_cursor("events", cursor, (int,))
        e = t.events.c
        query = (
            select(e.seq, e.type, e.time, e.body)
            .where(
                e.stream == self.stream,
                e.session_id == session_id,
                e.tenant_id == tenant,
                e.seq > after,
            )
            .order_by(e.seq)
            .limit(limit + 1)
        )
        async with self.engine.connect() as connection:
            rows = list((await connection.execute(query)).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor("events", [int(rows[-1]["seq"])]) if more else None
        return [event_json(r) for r in rows], next_cursor

    async def usage(
        self,
        tenant: str,
        group_by: GroupBy,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> list[dict[str, Any]]:
        """Token and cost totals of the tenant's LLM calls, per agent, model or UTC day.

        ``start`` and ``end`` are inclusive days.
        """
        u = t.usage_daily.c
        key = {"agent": u.agent, "model": u.model, "day": u.day}[group_by]
        conditions = [u.stream == self.stream, u.tenant_id == tenant]
        if start is not None:
            conditions.append(u.day >= start)
        if end is not None:
            conditions.append(u.day <= end)
        query = (
            select(
                key.label("key"),
                func.sum(u.llm_calls).label("llm_calls"),
                func.sum(u.input_tokens).label("input_tokens"),
                func.sum(u.output_tokens).label("output_tokens"),
                func.sum(u.cached_tokens).label("cached_tokens"),
                func.sum(u.cost_usd).label("cost_usd"),
            )
            .where(and_(*conditions))
            .group_by(key)
            .order_by(key)
        )
        async with self.engine.connect() as connection:
            rows = list((await connection.execute(query)).mappings())
        return [
            {
                group_by: iso(r["key"]) if group_by == "day" else r["key"],
                "llm_calls": int(r["llm_calls"]),
                "input_tokens": int(r["input_tokens"]),
                "output_tokens": int(r["output_tokens"]),
                "cached_tokens": int(r["cached_tokens"]),
                "cost_usd": float(r["cost_usd"]),
            }
            for r in rows
        ]

    async def replay(self, session_id: str, partition: int, after_seq: int) -> Replay:
        """Events after ``after_seq`` and the partition's tracked offset, in one snapshot.

        REPEATABLE READ makes both reads see the same committed projector
        batch, so "everything up to ``tracked_offset`` is in ``events``" holds
        for what is returned: the live tail can start right after it.
        """
        e = t.events.c
        query = (
            select(e.seq, e.type, e.time, e.body)
            .where(e.stream == self.stream, e.session_id == session_id, e.seq > after_seq)
            .order_by(e.seq)
        )
        tracked = select(t.projection_tracking.c.kafka_offset).where(
            t.projection_tracking.c.stream == self.stream,
            t.projection_tracking.c.partition == partition,
        )
        s = t.sessions.c
        ended = select(s.seq).where(
            s.stream == self.stream,
            s.session_id == session_id,
            s.status.in_(("completed", "failed", "cancelled")),
        )
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                await connection.execute(text("SET TRANSACTION READ ONLY"))
                offset = await connection.scalar(tracked)
                final = await connection.scalar(ended)
                rows = list((await connection.execute(query)).mappings())
        return Replay(
            [event_json(r) for r in rows],
            partition,
            -1 if offset is None else int(offset),
            None if final is None else int(final),
        )

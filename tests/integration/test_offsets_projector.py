"""Moving the projector keeps the read models consistent, and a reset made with Kafka's
own ``ConsumerGroupCommand`` is honoured (executors) or reported (engine, projector).

* Back to an offset in the middle of a partition: the rows are exactly those of the
  events before it (sessions equal to the fold of what is kept, usage equal to the
  LLM calls left), in the same transaction as the position; projected again, every
  table equals what it was.
* Back to the earliest: the partition's sessions are gone until projected again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.gateway.testkit import database_url, eventually
from processors.core import rebuild
from projections.db import create_engine, raw_connection
from projections.migrate import upgrade
from projections.projector import Projector
from projections.writer import positions
from streams.catalogue import Catalogue
from streams.consumer import last_record_offsets
from streams.settings import KafkaSettings
from tests.integration.engine_kit import (
    kafka_settings,
    new_ids,
    produce,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)
from tests.integration.offsets_kit import Outcome, kafka_reset, offsets

pytestmark = pytest.mark.integration

TABLES = {
    "sessions": "session_id", "messages": "session_id, seq", "llm_calls": "session_id, call_id",
    "tool_calls": "session_id, call_id", "events": "session_id, seq",
    "usage_daily": "tenant_id, day, agent, model",
}  # fmt: skip


@pytest.fixture
async def db() -> AsyncIterator[AsyncEngine]:
    await upgrade(database_url())
    engine = create_engine(database_url(), pool_size=4)
    try:
        yield engine
    finally:
        await engine.dispose()


async def project_to_end(kafka: KafkaSettings, db: AsyncEngine) -> None:
    stream = Catalogue.from_settings(kafka).events.name
    newest = await last_record_offsets(kafka, stream)

    async def caught_up() -> bool | None:
        async with raw_connection(db) as connection:
            done = await positions(connection, stream, list(newest))
        return True if all(done[p] >= o for p, o in newest.items()) else None

    async with Projector(kafka, db):
        await eventually(caught_up, timeout_s=60)


def _plain(value: Any) -> Any:
    return round(value, 9) if isinstance(value, float) else value


async def tables(stream: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(database_url())
    try:
        return {
            table: [
                tuple(_plain(v) for v in row.values())
                for row in await connection.fetch(
                    f"SELECT * FROM {table} WHERE stream = $1 ORDER BY {order}", stream
                )
            ]
            for table, order in TABLES.items()
        }
    finally:
        await connection.close()


async def scalar(sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(database_url())
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def test_moving_the_projector_back_keeps_the_read_models_consistent(
    kafka_bootstrap: str, catalogue: Catalogue, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    stream = catalogue.events.name
    ids = new_ids(16)
    async with running(kafka):
        await produce(kafka, catalogue.inbox.name,
                      [start_session(s, f"What is {i}*7?") for i, s in enumerate(ids)])  # fmt: skip
        await wait_for_terminal(kafka, catalogue, ids)
    await project_to_end(kafka, db)
    original = await tables(stream)
    log = await read_topic(kafka, stream)
    by_partition: dict[int, list[Any]] = {}
    for partition, offset, (name, event), _, _ in log.records:
        by_partition.setdefault(partition, []).append((offset, name, event))
    p = max(by_partition, key=lambda q: len(by_partition[q]))
    events = by_partition[p]
    x = events[len(events) // 2][0]

    async def run(*a: str) -> Outcome:
        return await offsets(capsys, catalogue, kafka_bootstrap, *a)

    group = f"{catalogue.prefix}.projector"

    dry = await run("reset", "--component", "projector", "--partition", str(p),
                    "--to-offset", str(x))  # fmt: skip
    assert dry.code == 0 and dry.plan(group) == {p: x} and "removed from the read models" in dry.out
    assert await tables(stream) == original

    async with Projector(kafka, db):  # a live projector: --execute names it and refuses
        live = await run("reset", "--component", "projector", "--partition", str(p),
                         "--to-offset", str(x), "--execute")  # fmt: skip
        assert live.code == 1 and "live member" in live.err
    assert await tables(stream) == original

    done = await run("reset", "--component", "projector", "--partition", str(p),
                     "--to-offset", str(x), "--execute")  # fmt: skip
    assert done.code == 0, done.err
    tracked = await scalar("SELECT kafka_offset FROM projection_tracking"
                           " WHERE stream = $1 AND partition = $2", stream, p)  # fmt: skip
    assert tracked == x - 1
    assert await scalar("SELECT max(kafka_offset) FROM events WHERE stream = $1"
                        " AND partition = $2", stream, p) < x  # fmt: skip
    kept: dict[str, list[Any]] = {}
    for offset, name, event in events:
        if offset < x:
            kept.setdefault(event["session_id"], []).append((name, event))
    connection = await asyncpg.connect(database_url())
    try:
        rows = {r["session_id"]: r for r in await connection.fetch(
            "SELECT session_id, seq, status FROM sessions WHERE stream = $1 AND partition = $2",
            stream, p)}  # fmt: skip
        counts = await connection.fetchrow(
            "SELECT (SELECT coalesce(sum(llm_calls), 0) FROM usage_daily WHERE stream = $1) AS u,"
            " (SELECT count(*) FROM events WHERE stream = $1 AND type = 'LLMCallCompleted') AS c,"
            " (SELECT count(*) FROM messages WHERE stream = $1) AS m,"
            " (SELECT count(*) FROM events WHERE stream = $1 AND type IN"
            "   ('UserMessageAdded', 'AssistantMessageAdded')) AS me,"
            " (SELECT count(*) FROM llm_calls WHERE stream = $1) AS l,"
            " (SELECT count(*) FROM events WHERE stream = $1 AND type = 'LLMCallRequested') AS le,"
            " (SELECT count(*) FROM llm_calls c WHERE stream = $1 AND status = 'completed'"
            "   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream = $1"
            "   AND e.type = 'LLMCallCompleted' AND e.body->>'call_id' = c.call_id)) AS orphan",
            stream,
        )
    finally:
        await connection.close()
    assert set(rows) == set(kept)  # sessions started at or after x are gone
    for session_id, row in rows.items():
        folded = rebuild(kept[session_id])
        assert folded is not None
        assert (row["seq"], row["status"]) == (folded.seq, folded.status), session_id
    assert counts["u"] == counts["c"] and counts["m"] == counts["me"]
    assert counts["l"] == counts["le"] and counts["orphan"] == 0
    assert await tables(stream) != original

    await project_to_end(kafka, db)
    assert await tables(stream) == original

    earliest = await run("reset", "--component", "projector", "--partition", str(p),
                         "--to-earliest", "--execute")  # fmt: skip
    assert earliest.code == 0, earliest.err
    assert await scalar("SELECT count(*) FROM sessions WHERE stream = $1 AND partition = $2",
                        stream, p) == 0  # fmt: skip
    skip = await run("reset", "--component", "projector", "--partition", str(p), "--to-latest")
    assert (
        skip.code == 1
        and "--force-skip" in skip.err
        and "never reach the read models" in (skip.err)
    )
    await project_to_end(kafka, db)
    assert await tables(stream) == original


async def test_a_reset_with_kafkas_own_tool_is_honoured_or_reported(
    kafka_bootstrap: str,
    catalogue: Catalogue,
    db: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(8)
    async with running(kafka):
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 5*5?") for s in ids])
        await wait_for_terminal(kafka, catalogue, ids)
    await project_to_end(kafka, db)
    before = await read_topic(kafka, catalogue.events.name)
    prefix = catalogue.prefix
    kafka_reset(
        kafka_bootstrap,
        [f"{prefix}.engine", f"{prefix}.llm", f"{prefix}.projector"],
        [catalogue.inbox.name, catalogue.llm_calls.name, catalogue.events.name],
        "--to-earliest",
    )
    shown = await offsets(capsys, catalogue, kafka_bootstrap, "show", "--json")
    rows = {(r["component"], r["partition"]): r for r in shown.json()["partitions"]}
    busy = [p for p in range(catalogue.partitions) if rows[("engine", p)]["end"] > 0]
    assert busy
    for p in busy:
        engine, projector = rows[("engine", p)], rows[("projector", p)]
        # Kept elsewhere: the Kafka reset is visible and named, the position unchanged.
        assert engine["group_offset"] == 0 and engine["group_offset_set_elsewhere"] is True
        assert engine["position"] == engine["end"] and engine["lag"] == 0
        assert projector["group_offset"] == 0 and projector["group_offset_set_elsewhere"]
        assert projector["lag"] == 0
    # Kept in the group offsets: the executors' position is what Kafka's tool set.
    llm = [rows[("llm", p)] for p in range(catalogue.partitions)]
    assert all(r["position"] == 0 for r in llm) and any(r["lag"] > 0 for r in llm)
    text = await offsets(capsys, catalogue, kafka_bootstrap, "show")
    assert "set by another tool" in text.out
    assert "agentstream offsets reset --component engine" in text.out

    with caplog.at_level(logging.WARNING, logger="streams.offsets"):
        async with running(kafka, roles=("engine",)):  # warns before its first mirror commit
            await eventually(
                lambda: _async("component engine" in caplog.text or None), timeout_s=30
            )
        async with Projector(kafka, db):
            await eventually(
                lambda: _async("component projector" in caplog.text or None), timeout_s=30
            )
    for component in ("engine", "projector"):
        assert f"the {component} is at" in caplog.text
        assert f"agentstream offsets reset --component {component}" in caplog.text
    assert "NOT applied" in caplog.text
    after = await read_topic(kafka, catalogue.events.name)
    assert after.names() == before.names()  # the engine re-applied nothing


async def _async(value: Any) -> Any:
    return value

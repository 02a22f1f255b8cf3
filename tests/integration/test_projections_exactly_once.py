"""The read models in Postgres equal a fold over the event log, exactly once.

* Sessions run by the real engine (started over HTTP): every sessions row
  equals ``processors.core.rebuild`` of that session's events read back from
  Kafka, and the events, messages, LLM-call and usage tables agree with the log.
* Events produced directly (logs from the in-memory runtime): a projector
  stopped mid-stream and a new one started apply every event once; two
  projectors racing over the same partitions (different groups) too; poison
  records go to the DLQ and the partitions move on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.testkit import database_url, eventually, serving, workers
from processors.agents.catalog import DEMO_AGENT, AgentCatalog, builtin_catalog
from processors.core import SessionState, rebuild
from processors.testing.inline_runtime import InlineRuntime
from projections.db import create_engine
from projections.migrate import upgrade
from projections.projector import Projector
from schemas import Codec
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.consumer import last_record_offsets
from streams.producer import OutgoingRecord, Producer, transactional_producer, type_headers
from streams.settings import KafkaSettings
from tests.integration.engine_kit import read_topic

pytestmark = pytest.mark.integration

Record = tuple[str, dict[str, Any]]
GATED = replace(DEMO_AGENT, name="gated", approval=frozenset({"calculator"}))
CODEC = Codec()


def agents() -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog(
        agents={**base.agents, "gated": GATED}, models=base.models, tools=base.tools
    )


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaSettings]:
    settings = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=4)
    catalogue = Catalogue.from_settings(settings)
    require_ok(await ensure_topics(settings, catalogue))
    try:
        yield settings
    finally:
        await delete_topics(settings, [spec.name for spec in catalogue.all()])


@pytest.fixture
async def db() -> AsyncIterator[AsyncEngine]:
    await upgrade(database_url())
    engine = create_engine(database_url(), pool_size=4)
    try:
        yield engine
    finally:
        await engine.dispose()


async def rows(db: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with db.connect() as connection:
        result = await connection.execute(text(sql), params)
        return [dict(r) for r in result.mappings()]


def assert_row_is_fold(row: dict[str, Any], state: SessionState) -> None:
    assert row["status"] == state.status, row["session_id"]
    assert row["seq"] == state.seq
    assert row["steps"] == state.llm_steps
    assert row["tenant_id"] == state.tenant_id and row["agent"] == state.agent
    assert row["tokens"] == state.tokens_used
    assert abs(row["cost_usd"] - state.cost_usd) < 1e-9
    assert row["output"] == state.output and row["end_reason"] == state.end_reason
    assert round(row["created_at"].timestamp() * 1000) == state.started_ms
    assert round(row["updated_at"].timestamp() * 1000) == state.updated_ms


async def check_against_log(db: AsyncEngine, stream: str, log: dict[str, list[Record]]) -> None:
    """Every read-model table agrees with the events of ``log`` (session -> events)."""
    sessions = {
        r["session_id"]: r
        for r in await rows(db, "SELECT * FROM sessions WHERE stream = :s", s=stream)
    }
    assert set(sessions) == set(log)
    for session_id, events in log.items():
        state = rebuild(events)
        assert state is not None
        assert_row_is_fold(sessions[session_id], state)
    stored = await rows(
        db, "SELECT session_id, seq, type FROM events WHERE stream = :s ORDER BY 1, 2", s=stream
    )
    expected = sorted((sid, e["seq"], name) for sid, evs in log.items() for name, e in evs)
    assert [(r["session_id"], r["seq"], r["type"]) for r in stored] == expected
    messages = await rows(db, "SELECT count(*) AS n FROM messages WHERE stream = :s", s=stream)
    wanted = sum(
        1
        for evs in log.values()
        for n, _ in evs
        if n in ("UserMessageAdded", "AssistantMessageAdded")
    )
    assert messages[0]["n"] == wanted
    calls = await rows(db, "SELECT count(*) AS n FROM llm_calls WHERE stream = :s", s=stream)
    assert calls[0]["n"] == sum(
        1 for evs in log.values() for n, _ in evs if n == "LLMCallRequested"
    )
    usage = await rows(
        db,
        "SELECT coalesce(sum(llm_calls), 0) AS calls, coalesce(sum(input_tokens), 0) AS tin "
        "FROM usage_daily WHERE stream = :s",
        s=stream,
    )
    completed = [e for evs in log.values() for n, e in evs if n == "LLMCallCompleted"]
    assert usage[0]["calls"] == len(completed)
    assert usage[0]["tin"] == sum(e["input_tokens"] for e in completed)


async def test_projection_equals_fold_of_the_engines_events(
    kafka: KafkaSettings, db: AsyncEngine
) -> None:
    settings = GatewaySettings(database_url=database_url())
    inputs = ["What is 6*7?", "What is 2+3 and the weather in Oslo?", "hello", "weather in Lima"]
    async with workers(kafka, agents()), serving(settings, kafka, agents()) as api:
        _, key = await api.new_tenant()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
            batch: list[dict[str, Any]] = [
                {"agent": "demo", "input": inputs[i % 4]} for i in range(24)
            ]
            batch += [{"agent": "demo", "input": "What is 1+1?", "keep_open": True}] * 3
            answer = await client.post("/v1/sessions:batch", json={"sessions": batch})
            assert answer.status_code == 202, answer.text
            ids = answer.json()["session_ids"]
            open_ids = ids[-3:]

            async def all_settled() -> bool | None:
                found = await client.get("/v1/sessions?limit=200")
                statuses = {s["session_id"]: s["status"] for s in found.json()["items"]}
                done = all(statuses.get(i) == "completed" for i in ids[:-3]) and all(
                    statuses.get(i) == "waiting_for_user" for i in open_ids
                )
                return True if done else None

            await eventually(all_settled)
            for session_id in open_ids:
                await client.post(f"/v1/sessions/{session_id}/cancel", json={"reason": "done"})

            async def cancelled() -> bool | None:
                found = await client.get("/v1/sessions?status=cancelled")
                return True if len(found.json()["items"]) == 3 else None

            await eventually(cancelled)
            # Cursor pagination walks every session once, newest first.
            seen: list[str] = []
            cursor: str | None = None
            while True:
                params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
                page = (await client.get("/v1/sessions", params=params)).json()
                seen += [s["session_id"] for s in page["items"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
            first = (await client.get("/v1/sessions", params={"limit": "200"})).json()["items"]
            assert [s["session_id"] for s in first] == seen
            created = [s["created_at"] for s in first]
            assert created == sorted(created, reverse=True)
            middle = created[len(created) // 2]
            window = await client.get(
                "/v1/sessions", params={"created_after": middle, "created_before": created[0]}
            )
            assert all(middle <= s["created_at"] < created[0] for s in window.json()["items"])
    catalogue = Catalogue.from_settings(kafka)
    log = (await read_topic(kafka, catalogue.events.name)).by_session()
    await check_against_log(db, catalogue.events.name, log)


async def synthetic_logs(n: int) -> dict[str, list[Record]]:
    runtime = InlineRuntime(agents())
    inputs = ["What is 6*7?", "What is 2+3 and the weather in Oslo?", "hello", "weather in Lima"]
    for i in range(n):
        session_id = f"s{i}-{uuid.uuid4().hex[:6]}"
        if i % 5 == 4:
            await runtime.start(session_id, "gated", "What is 4*4?", tenant_id=f"tenant{i % 3}")
            pending = runtime.states[session_id].pending_tools
            await runtime.approve(session_id, pending[0].call_id, approved=i % 2 == 0)
        else:
            await runtime.start(session_id, "demo", inputs[i % 4], tenant_id=f"tenant{i % 3}")
    return runtime.logs


async def produce_logs(kafka: KafkaSettings, logs: dict[str, list[Record]]) -> None:
    topic = Catalogue.from_settings(kafka).events.name
    async with Producer(kafka, CODEC) as producer:
        await producer.send_many(
            producer.encode(topic, name, event)
            for events in logs.values()
            for name, event in events
        )


async def caught_up(db: AsyncEngine, kafka: KafkaSettings) -> None:
    topic = Catalogue.from_settings(kafka).events.name
    newest = await last_record_offsets(kafka, topic)  # end - 1 may be a commit marker

    async def probe() -> bool | None:
        found = await rows(
            db, "SELECT partition, kafka_offset FROM projection_tracking WHERE stream = :s", s=topic
        )
        at = {r["partition"]: r["kafka_offset"] for r in found}
        return True if all(at.get(p, -1) >= last for p, last in newest.items()) else None

    await eventually(probe, timeout_s=60)


async def test_projector_restarted_mid_stream_applies_each_event_once(
    kafka: KafkaSettings, db: AsyncEngine
) -> None:
    logs = await synthetic_logs(150)
    await produce_logs(kafka, logs)
    total = sum(len(e) for e in logs.values())
    first = Projector(kafka, db, max_batch_records=37)
    await first.start()
    await eventually(lambda: asyncio.sleep(0, True if first.applied > total // 4 else None))
    await first.kill()  # cancelled wherever it is, possibly inside a transaction
    await db.dispose()  # ... and, like a dead process, its Postgres connections are gone
    assert first.applied < total
    async with Projector(kafka, db, max_batch_records=37):
        await caught_up(db, kafka)
    await check_against_log(db, Catalogue.from_settings(kafka).events.name, logs)


async def test_two_projectors_racing_apply_each_event_once(
    kafka: KafkaSettings, db: AsyncEngine
) -> None:
    logs = await synthetic_logs(100)
    await produce_logs(kafka, logs)
    # Different groups: both read every partition; the tracking lock must serialise them.
    a = Projector(kafka, db, max_batch_records=23, group_id=f"{kafka.topic_prefix}.pa")
    b = Projector(kafka, db, max_batch_records=29, group_id=f"{kafka.topic_prefix}.pb")
    async with a, b:
        await caught_up(db, kafka)
    assert a.applied + b.applied == sum(len(e) for e in logs.values())
    await check_against_log(db, Catalogue.from_settings(kafka).events.name, logs)


async def test_poison_records_go_to_the_dlq_and_the_partition_moves_on(
    kafka: KafkaSettings, db: AsyncEngine
) -> None:
    catalogue = Catalogue.from_settings(kafka)
    logs = await synthetic_logs(8)
    orphan_id = "orphan-1"
    orphan = {**logs[next(iter(logs))][3][1], "session_id": orphan_id}
    async with Producer(kafka, CODEC) as producer:
        await producer.send_many(
            [
                OutgoingRecord(
                    catalogue.events.name,
                    orphan_id.encode(),
                    b"\x00garbage",
                    type_headers("SessionStarted"),
                ),
                producer.encode(catalogue.events.name, logs[next(iter(logs))][3][0], orphan),
            ]
        )
    await produce_logs(kafka, logs)
    async with Projector(kafka, db, max_batch_records=50):
        await caught_up(db, kafka)
    await check_against_log(db, catalogue.events.name, logs)
    dead = await read_topic(kafka, catalogue.dlq.name, decode=False)
    assert len(dead.records) == 2
    reasons: defaultdict[str, int] = defaultdict(int)
    for _, _, _, headers, _ in dead.records:
        found = dict(headers)
        assert found["dlq.source"] == b"projector"
        assert found["dlq.origin.topic"] == catalogue.events.name.encode()
        reasons[found["dlq.reason"].decode()] += 1
    assert reasons == {"undecodable": 1, "rejected": 1}
    orphans = await rows(
        db,
        "SELECT 1 FROM sessions WHERE stream = :s AND session_id = :o",
        s=catalogue.events.name,
        o=orphan_id,
    )
    assert orphans == []


def _backfill_args(kafka: KafkaSettings) -> list[str]:
    return ["backfill", "--bootstrap", kafka.bootstrap, "--prefix", kafka.topic_prefix,
            "--partitions", str(kafka.partitions), "--database-url", database_url(),
            "--timeout", "60"]  # fmt: skip


async def test_backfill_rebuilds_damaged_read_models_from_the_log(
    kafka: KafkaSettings, db: AsyncEngine
) -> None:
    from agentstream.cli import main as cli

    stream = Catalogue.from_settings(kafka).events.name
    logs = await synthetic_logs(60)
    # In transactions, as the engine writes: each partition then ends in commit markers,
    # which a backfill waiting for "end offset - 1" would wait for forever.
    async with transactional_producer(kafka, f"{kafka.topic_prefix}.test", CODEC) as producer:
        for first in range(0, len(logs), 20):
            async with producer.aiokafka.transaction():
                await producer.send_many(
                    producer.encode(stream, name, event)
                    for session_id in sorted(logs)[first : first + 20]
                    for name, event in logs[session_id]
                )
    assert await asyncio.to_thread(cli, [*_backfill_args(kafka), "--yes"]) == 0
    await check_against_log(db, stream, logs)

    victim = sorted(logs)[0]
    async with db.begin() as connection:
        await connection.execute(
            text("UPDATE sessions SET status = 'failed' WHERE stream = :s AND session_id = :v"),
            {"s": stream, "v": victim},
        )
        await connection.execute(text("DELETE FROM messages WHERE stream = :s"), {"s": stream})
    # Without --yes nothing changes.
    assert await asyncio.to_thread(cli, _backfill_args(kafka)) == 0
    (row,) = await rows(db, "SELECT status FROM sessions WHERE stream = :s AND session_id = :v",
                        s=stream, v=victim)  # fmt: skip
    assert row["status"] == "failed"

    # A running projector refuses the backfill, and nothing is deleted.
    async with Projector(kafka, db):
        await caught_up(db, kafka)
        assert await asyncio.to_thread(cli, [*_backfill_args(kafka), "--yes"]) == 1
        count = await rows(db, "SELECT count(*) AS n FROM sessions WHERE stream = :s", s=stream)
        assert count[0]["n"] == len(logs)

    assert await asyncio.to_thread(cli, [*_backfill_args(kafka), "--yes"]) == 0
    await check_against_log(db, stream, logs)

"""``agentstream backfill --shadow``: the read models are rebuilt beside the live ones
under live traffic, the query API answers 200 throughout, and after the swap they equal
a fold of the log; the rows replaced stay until ``--drop-old``. A crash mid-backfill
leaves the live read models untouched and a re-run resumes where the shadow stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.cli import main as cli
from agentstream.gateway.settings import GatewaySettings
from agentstream.gateway.testkit import database_url, eventually, serving, workers
from agentstream.shadow_backfill import shadow_backfill
from projections.db import create_engine
from projections.migrate import upgrade
from projections.projector import Projector
from projections.shadow import positions, schema_names
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from tests.integration.engine_kit import kafka_settings, read_topic
from tests.integration.test_offsets_projector import project_to_end, scalar, tables
from tests.integration.test_projections_exactly_once import (
    agents,
    caught_up,
    check_against_log,
    produce_logs,
    synthetic_logs,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def db() -> AsyncIterator[AsyncEngine]:
    await upgrade(database_url())
    engine = create_engine(database_url(), pool_size=4)
    try:
        yield engine
    finally:
        await engine.dispose()


def _args(kafka: KafkaSettings, *more: str) -> list[str]:
    return ["backfill", "--bootstrap", kafka.bootstrap, "--prefix", kafka.topic_prefix,
            "--partitions", str(kafka.partitions), "--database-url", database_url(),
            "--timeout", "120", *more]  # fmt: skip


async def test_a_shadow_backfill_under_live_traffic(
    kafka_bootstrap: str, catalogue: Catalogue, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    stream = catalogue.events.name
    settings = GatewaySettings(database_url=database_url())
    async with workers(kafka, agents()), serving(settings, kafka, agents()) as api:
        _, key = await api.new_tenant()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
            batch = [{"agent": "demo", "input": f"What is {i}*3?"} for i in range(20)]
            answer = await client.post("/v1/sessions:batch", json={"sessions": batch})
            ids = list(answer.json()["session_ids"])

            async def settled() -> bool | None:
                found = (await client.get("/v1/sessions?limit=200")).json()["items"]
                done = {s["session_id"] for s in found if s["status"] == "completed"}
                return True if done >= set(ids) else None

            await eventually(settled, timeout_s=60)
            victim = ids[0]
            # Damage the live rows: the swap repairs them.
            await scalar("UPDATE sessions SET status = 'failed' WHERE stream = $1"
                         " AND session_id = $2", stream, victim)  # fmt: skip
            codes: list[int] = []
            stop = asyncio.Event()

            async def traffic() -> None:
                while not stop.is_set():
                    made = await client.post("/v1/sessions", json={"agent": "demo",
                                                                   "input": "What is 2+2?"})  # fmt: skip
                    ids.append(made.json()["session_id"])
                    codes.append((await client.get("/v1/sessions?limit=50")).status_code)
                    codes.append((await client.get(f"/v1/sessions/{victim}")).status_code)
                    await asyncio.sleep(0.05)

            running = asyncio.create_task(traffic())
            try:
                code = await asyncio.to_thread(cli, _args(kafka, "--shadow"))
            finally:
                stop.set()
                await running
            out, err = capsys.readouterr()
            assert code == 0, err
            assert "events/s" in err and "ETA" in err
            report = json.loads(out.splitlines()[-1])
            assert report["swapped"]["sessions"] >= 20 and report["events_per_s"] > 0
            assert codes and set(codes) == {200}, codes  # answering throughout

            await eventually(settled, timeout_s=60)
            await caught_up(db, kafka)
    log = (await read_topic(kafka, stream)).by_session()
    await check_against_log(db, stream, log)  # the victim repaired, the traffic projected
    _, old = schema_names(stream)
    kept = await scalar(f'SELECT status FROM "{old}".sessions WHERE session_id = $1', victim)
    assert kept == "failed"
    assert await asyncio.to_thread(cli, _args(kafka, "--drop-old")) == 0
    assert '"dropped_old_copy": true' in capsys.readouterr().out
    assert not await scalar("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", old)


async def test_a_crash_mid_backfill_leaves_the_live_models_and_a_rerun_resumes(
    kafka_bootstrap: str, catalogue: Catalogue, db: AsyncEngine
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    stream = catalogue.events.name
    logs = await synthetic_logs(1200)
    await produce_logs(kafka, logs)
    total = sum(len(events) for events in logs.values())
    await project_to_end(kafka, db)
    live = await tables(stream)
    shadow, _ = schema_names(stream)

    first = asyncio.create_task(shadow_backfill(kafka, database_url(), batch=200))
    connection = await asyncpg.connect(database_url())
    try:

        async def started() -> bool | None:
            with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                if sum(o + 1 for o in (await positions(connection, shadow, stream)).values()):
                    return True
            return None

        await eventually(started, timeout_s=60, every_s=0.02)
        first.cancel()  # the crash
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert await tables(stream) == live  # untouched
        done = await positions(connection, shadow, stream)
        assert sum(o + 1 for o in done.values()) > 0
        await connection.execute("UPDATE sessions SET status = 'failed' WHERE stream = $1", stream)
    finally:
        await connection.close()

    result = await shadow_backfill(kafka, database_url(), batch=500)
    assert 0 < result.events_applied < total  # resumed: what the crashed run applied stays
    assert await tables(stream) == live  # rebuilt from the log, the damage gone
    async with Projector(kafka, db):  # the live projector carries on from the swapped positions
        await caught_up(db, kafka)
    assert await tables(stream) == live

"""`agentstream replay`: sessions rebuilt from the real log equal what the engine
produced, the audit passes on a clean log and names a broken one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from agentstream.cli import main as cli
from processors.core import rebuild
from processors.settings import DEFAULT_DATABASE_URL
from schemas import Codec
from streams.catalogue import Catalogue
from streams.partitioner import session_partition
from tests.integration.engine_kit import (
    kafka_settings,
    new_ids,
    produce,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration


def _args(catalogue: Catalogue, bootstrap: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--prefix", catalogue.prefix,
            "--partitions", str(catalogue.partitions)]  # fmt: skip


async def _replay(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, object]]]:
    code = await asyncio.to_thread(cli, ["replay", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


async def test_replay_rebuilds_and_audits_the_log(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(20)
    async with running(kafka):
        await produce(
            kafka,
            catalogue.inbox.name,
            [start_session(s, f"What is {i}*3?") for i, s in enumerate(ids)],
        )
        await wait_for_terminal(kafka, catalogue, ids)
        await asyncio.sleep(0.6)  # snapshots flush every 0.2 s
    sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
    base = _args(catalogue, kafka_bootstrap)

    code, (one,) = await _replay(capsys, "--session", ids[3], *base)
    live = rebuild(sessions[ids[3]])
    assert code == 0 and live is not None
    assert one["status"] == live.status == "completed"
    assert one["seq"] == live.seq == len(sessions[ids[3]])
    assert one["output"] == live.output and "9" in str(one["output"])
    assert one["snapshot_agrees"] is True and one["problems"] == []

    code, lines = await _replay(capsys, *base)
    assert code == 0, lines
    summary = lines[-1]["summary"]
    assert isinstance(summary, dict)
    assert summary["sessions"] == summary["ended"] == summary["snapshots_checked"] == 20
    assert summary["events"] == sum(len(v) for v in sessions.values())
    assert summary["with_problems"] == 0 and len(lines) == 1

    # A record appended twice (what exactly-once forbids) is named, with its session.
    victim = ids[5]
    name, event = sessions[victim][-1]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            catalogue.events.name,
            Codec().encode(name, event),
            key=victim.encode(),
            partition=session_partition(victim, catalogue.partitions),
        )
    finally:
        await producer.stop()
    code, lines = await _replay(capsys, *base)
    assert code == 1
    problems = [line for line in lines if "problem" in line]
    assert {p["session_id"] for p in problems} == {victim}
    assert any("appears twice" in str(p["problem"]) for p in problems)
    assert lines[-1]["summary"]["with_problems"] == 1  # type: ignore[index]

    # A snapshot that is not the fold of its log is named too.
    other = ids[7]
    connection = await asyncpg.connect(DEFAULT_DATABASE_URL)
    try:
        await connection.execute(
            "UPDATE session_snapshots SET state = (SELECT state FROM session_snapshots"
            " WHERE stream = $1 AND session_id = $2) WHERE stream = $1 AND session_id = $3",
            catalogue.events.name, ids[8], other,
        )  # fmt: skip
    finally:
        await connection.close()
    code, (broken,) = await _replay(capsys, "--session", other, *base)
    assert code == 1 and broken["snapshot_agrees"] is False
    code, (clean,) = await _replay(capsys, "--session", other, "--no-snapshots", *base)
    assert code == 0 and clean["snapshot_agrees"] is None


async def test_an_unknown_session_or_partition_is_refused(
    kafka_bootstrap: str, catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _args(catalogue, kafka_bootstrap)
    assert await asyncio.to_thread(cli, ["replay", "--session", "nobody", *base]) == 1
    assert "has no events" in capsys.readouterr().err
    assert await asyncio.to_thread(cli, ["replay", "--partition", "99", *base]) == 2
    assert "no partition 99" in capsys.readouterr().err

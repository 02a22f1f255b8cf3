"""Records go through `agentstream produce` and come back through `agentstream tail`
unchanged, on the partition murmur2 names, in order per session; the library
producer (plain and transactional) agrees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from schemas import command_from_json, record_to_json
from streams.catalogue import Catalogue
from streams.consumer import end_offsets, read_to_end, tail
from streams.partitioner import session_partition
from streams.producer import Producer, transactional_producer
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], *, stdin: bytes | None = None, timeout: float = 120) -> Any:
    """Run ``agentstream ARGS`` as a real process; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )


def kafka_args(bootstrap: str, cat: Catalogue) -> list[str]:
    return ["--bootstrap", bootstrap, "--prefix", cat.prefix, "--partitions", str(cat.partitions)]


def settings_for(bootstrap: str, cat: Catalogue) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, topic_prefix=cat.prefix, partitions=cat.partitions)


def input_lines(sessions: int, messages: int) -> list[dict[str, Any]]:
    """StartSession for each session, then UserMessages spread over them; explicit
    event_id and time_ms so that what comes back can be compared exactly."""
    objs: list[dict[str, Any]] = []
    for i in range(sessions):
        objs.append(
            {
                "type": "StartSession",
                "event_id": str(uuid.uuid4()),
                "time_ms": 1_700_000_000_000 + i,
                "session_id": f"sess-{i}-{uuid.uuid4().hex[:6]}",
                "tenant_id": f"tenant-{i % 7}",
                "agent": "demo",
                "input": f"question {i} — 日本語 ok",
                "metadata": {"n": str(i)},
            }
        )
    for j in range(messages):
        session = objs[(j * 7919) % sessions]["session_id"]
        objs.append(
            {
                "type": "UserMessage",
                "event_id": str(uuid.uuid4()),
                "time_ms": 1_800_000_000_000 + j,
                "session_id": session,
                "tenant_id": "t",
                "text": f"follow-up {j}",
            }
        )
    return objs


def test_produce_then_tail_gives_every_record_back(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    objs = input_lines(3000, 2000)
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), "utf-8")

    produced = run_cli(
        [
            "produce",
            "--topic",
            "inbox",
            "--file",
            str(source),
            *kafka_args(kafka_bootstrap, catalogue),
        ]
    )
    assert produced.returncode == 0, produced.stderr.decode()
    assert "produced 5,000 records to" in produced.stderr.decode()

    tailed = run_cli(
        [
            "tail",
            "--topic",
            catalogue.inbox.name,
            "--from-beginning",
            "--limit",
            "5000",
            "--timeout",
            "30",
            *kafka_args(kafka_bootstrap, catalogue),
        ]
    )
    assert tailed.returncode == 0, tailed.stderr.decode()
    got = [json.loads(line) for line in tailed.stdout.decode().splitlines()]
    assert len(got) == 5000

    expected = {o["event_id"]: record_to_json(*command_from_json(o)) for o in objs}
    by_event = {g["value"]["event_id"]: g for g in got}
    assert by_event.keys() == expected.keys()
    for event_id, record in by_event.items():
        assert record["value"] == expected[event_id]
        session = record["value"]["session_id"]
        assert record["key"] == session
        assert record["partition"] == session_partition(session, 4)
        assert record["headers"] == {"type": record["value"]["type"]}
        assert record["type"] == record["value"]["type"]
        assert record["topic"] == catalogue.inbox.name

    # Per session, offsets follow the file order.
    position = {o["event_id"]: n for n, o in enumerate(objs)}
    per_session: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for record in got:
        per_session[record["key"]].append((record["offset"], position[record["value"]["event_id"]]))
    for rows in per_session.values():
        rows.sort()
        assert [p for _, p in rows] == sorted(p for _, p in rows)


async def test_tail_one_session_reads_only_its_records(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    settings = settings_for(kafka_bootstrap, catalogue)
    async with Producer(settings) as producer:
        records = []
        for i in range(200):
            name, record = command_from_json(
                {
                    "type": "UserMessage",
                    "session_id": f"s{i % 10}",
                    "tenant_id": "t",
                    "text": str(i),
                }
            )
            records.append(producer.encode(catalogue.inbox.name, name, record))
        assert await producer.send_many(records) == 200
        meta = await producer.send_and_wait(
            catalogue.inbox.name,
            *command_from_json({"type": "Cancel", "session_id": "s3", "tenant_id": "t"}),
        )
    assert meta.partition == session_partition("s3", 4)
    assert sum((await end_offsets(settings, catalogue.inbox.name)).values()) == 201

    seen = [
        r
        async for r in tail(
            settings, catalogue.inbox.name, from_beginning=True, session_id="s3", idle_timeout=2.0
        )
    ]
    assert [r.value["text"] for r in seen if r.value and r.type == "UserMessage"] == [
        str(i) for i in range(3, 200, 10)
    ]
    assert seen[-1].type == "Cancel"
    assert {r.partition for r in seen} == {session_partition("s3", 4)}


async def test_transactional_producer_commits_and_aborts(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    settings = settings_for(kafka_bootstrap, catalogue)
    topic = catalogue.events.name

    def event(session: str, seq: int) -> tuple[str, dict[str, Any]]:
        from schemas import record_from_json

        return record_from_json(
            {
                "type": "SessionStarted",
                "session_id": session,
                "tenant_id": "t",
                "seq": seq,
                "agent": "demo",
                "input": "hi",
            }
        )

    producer = transactional_producer(settings, f"test-{catalogue.prefix}-0")
    async with producer:
        async with producer.aiokafka.transaction():
            await producer.send_many(
                [producer.encode(topic, *event(f"c{i}", 1)) for i in range(50)]
            )
        await producer.aiokafka.begin_transaction()
        await producer.send_many([producer.encode(topic, *event(f"a{i}", 1)) for i in range(50)])
        await producer.aiokafka.abort_transaction()

    seen = [r async for r in tail(settings, topic, from_beginning=True, idle_timeout=2.0)]
    assert sorted(r.key or "" for r in seen) == sorted(f"c{i}" for i in range(50))
    assert all(r.error is None for r in seen)


async def test_read_to_end_stops_at_the_end_it_found_and_skips_aborted_records(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    settings = settings_for(kafka_bootstrap, catalogue)
    topic = catalogue.dlq.name
    producer = transactional_producer(settings, f"test-{catalogue.prefix}-read")
    async with producer:
        for p in range(catalogue.partitions):
            async with producer.aiokafka.transaction():
                for i in range(3):
                    await producer.aiokafka.send(topic, f"{p}-{i}".encode(), key=b"k", partition=p)
        await producer.aiokafka.begin_transaction()
        await producer.aiokafka.send(topic, b"aborted", key=b"k", partition=0)
        await producer.aiokafka.abort_transaction()

        read: list[tuple[int, bytes | None]] = []
        async for record in read_to_end(settings, topic):
            if not read:  # written after the read began: past the end it found
                async with producer.aiokafka.transaction():
                    await producer.aiokafka.send(topic, b"late", key=b"k", partition=0)
            read.append((record.partition, record.value))

    expected = [(p, f"{p}-{i}".encode()) for p in range(catalogue.partitions) for i in range(3)]
    assert read == expected  # partition by partition, in order; no aborted, no late record
    only_1 = [r.value async for r in read_to_end(settings, topic, [1])]
    assert only_1 == [b"1-0", b"1-1", b"1-2"]

"""An existing topic that differs from the catalogue is reported and refused by
`topics create`, `topics describe`, `topics list` and `produce`, never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from streams.admin import admin_client, delete_topics, ensure_topics
from streams.catalogue import Catalogue
from streams.consumer import end_offsets
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], *, stdin: bytes | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


async def test_mismatched_topics_are_reported_not_used(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    cat = Catalogue.from_settings(settings)
    async with admin_client(settings) as admin:
        await admin.create_topics(
            [
                NewTopic(cat.inbox.name, 2, 1),  # wrong partition count
                NewTopic(cat.events.name, 4, 1, topic_configs={"retention.ms": "604800000"}),
            ]
        )
    base = ["--bootstrap", kafka_bootstrap, "--prefix", topic_prefix, "--partitions", "4"]
    try:
        created = run_cli(["topics", "create", *base])
        out, err = created.stdout.decode(), created.stderr.decode()
        assert created.returncode == 1
        assert f"MISMATCH {cat.inbox.name}: partitions is 2, the catalogue says 4" in err
        assert (
            f"MISMATCH {cat.events.name}: retention.ms is 604800000, the catalogue says -1" in err
        )
        for spec in (cat.llm_calls, cat.tool_calls, cat.deltas, cat.dlq):
            assert f"created  {spec.name}" in out  # the rest are still created
        assert f"exists   {cat.inbox.name}" in out

        described = run_cli(["topics", "describe", "--json", *base])
        assert described.returncode == 1
        rows = {row["role"]: row for row in map(json.loads, described.stdout.decode().splitlines())}
        assert rows["inbox"]["partitions"] == 2
        assert rows["inbox"]["mismatches"] == [
            {"setting": "partitions", "expected": "4", "actual": "2"}
        ]
        assert rows["events"]["configs"]["retention.ms"] == "604800000"
        assert rows["llm-calls"]["mismatches"] == [] and rows["llm-calls"]["end_offsets"] == {
            "0": 0,
            "1": 0,
            "2": 0,
            "3": 0,
        }
        text = run_cli(["topics", "describe", "--topic", "inbox", *base])
        assert text.returncode == 1
        assert "MISMATCH     partitions is 2, the catalogue says 4" in text.stdout.decode()

        listed = run_cli(["topics", "list", *base])
        assert listed.returncode == 1
        assert f"{cat.inbox.name:<40} MISMATCH" in listed.stdout.decode()
        assert f"{cat.dlq.name:<40} ok" in listed.stdout.decode()

        record = {"type": "Cancel", "session_id": "s1", "tenant_id": "t"}
        produced = run_cli(
            ["produce", "--topic", "inbox", *base], stdin=json.dumps(record).encode()
        )
        assert produced.returncode == 1
        assert "partitions is 2, the catalogue says 4" in produced.stderr.decode()
        assert sum((await end_offsets(settings, cat.inbox.name)).values()) == 0

        report = await ensure_topics(settings, cat)  # the library reports, never raises
        assert not report.ok and report.created == ()
        assert {m.topic for m in report.mismatches} == {cat.inbox.name, cat.events.name}
    finally:
        await delete_topics(settings, [spec.name for spec in cat.all()])


async def test_create_is_idempotent(kafka_bootstrap: str, topic_prefix: str) -> None:
    base = ["--bootstrap", kafka_bootstrap, "--prefix", topic_prefix, "--partitions", "3"]
    settings = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3)
    try:
        first = run_cli(["topics", "create", *base])
        assert first.returncode == 0, first.stderr.decode()
        assert first.stdout.decode().count("created  ") == len(Catalogue.ROLES)
        second = run_cli(["topics", "create", *base])
        assert second.returncode == 0
        assert second.stdout.decode().count("exists   ") == len(Catalogue.ROLES)
        listed = run_cli(["topics", "list", "--json", *base])
        assert listed.returncode == 0
        assert {json.loads(r)["status"] for r in listed.stdout.decode().splitlines()} == {"ok"}
    finally:
        await delete_topics(settings, [s.name for s in Catalogue(topic_prefix, 3).all()])

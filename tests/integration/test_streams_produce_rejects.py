"""`agentstream produce` is all or nothing: a bad line anywhere means exit 1, the
line number on stderr, and not one record on the topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def line(i: int) -> str:
    return json.dumps(
        {
            "type": "StartSession",
            "session_id": f"s{i}",
            "tenant_id": "acme",
            "agent": "demo",
            "input": f"q{i}",
        }
    )


def args(bootstrap: str, cat: Catalogue) -> list[str]:
    return ["--bootstrap", bootstrap, "--prefix", cat.prefix, "--partitions", str(cat.partitions)]


async def test_one_bad_line_among_many_produces_nothing(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    settings = KafkaSettings(kafka_bootstrap, catalogue.prefix, catalogue.partitions)
    seed = run_cli(
        ["produce", "--topic", "inbox", *args(kafka_bootstrap, catalogue)],
        stdin="\n".join(line(i) for i in range(25)).encode(),
    )
    assert seed.returncode == 0, seed.stderr.decode()
    before = await end_offsets(settings, catalogue.inbox.name)
    assert sum(before.values()) == 25

    lines = [line(i) for i in range(3000)]
    lines[1776] = json.dumps(
        {"type": "StartSession", "session_id": "s", "tenant_id": "acme", "agent": "demo"}
    )
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n", "utf-8")
    result = run_cli(
        [
            "produce",
            "--topic",
            catalogue.inbox.name,
            "--file",
            str(source),
            *args(kafka_bootstrap, catalogue),
        ]
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "line 1777: input: missing required field" in stderr
    assert "1 of 3,000 lines are invalid; nothing was produced" in stderr
    assert await end_offsets(settings, catalogue.inbox.name) == before


async def test_many_bad_lines_are_listed_up_to_twenty(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    settings = KafkaSettings(kafka_bootstrap, catalogue.prefix, catalogue.partitions)
    lines = [line(i) if i % 3 else "{not json" for i in range(300)]
    result = run_cli(
        ["produce", "--topic", "inbox", *args(kafka_bootstrap, catalogue)],
        stdin="\n".join(lines).encode(),
    )
    stderr = result.stderr.decode().splitlines()
    assert result.returncode == 1
    listed = [s for s in stderr if s.startswith("line ")]
    assert len(listed) == 20
    assert listed[0].startswith("line 1: invalid JSON") and listed[1].startswith("line 4: ")
    assert "... and 80 more bad lines" in stderr
    assert sum((await end_offsets(settings, catalogue.inbox.name)).values()) == 0


def test_a_missing_topic_or_an_unknown_name_is_refused(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    base = ["--bootstrap", kafka_bootstrap, "--prefix", topic_prefix]
    missing = run_cli(["produce", "--topic", "inbox", *base], stdin=line(1).encode())
    assert missing.returncode == 1
    assert f"topic '{topic_prefix}.inbox' does not exist" in missing.stderr.decode()
    unknown = run_cli(["produce", "--topic", "outbox", *base], stdin=line(1).encode())
    assert unknown.returncode == 2
    assert "unknown topic 'outbox'" in unknown.stderr.decode()
    dlq = run_cli(["produce", "--topic", "dlq", *base], stdin=line(1).encode())
    assert dlq.returncode == 2

"""`agentstream dlq list | redrive` on a real dead letter: refused, fixed, sent back, applied."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from agentstream.cli import main as cli
from processors.agents.loader import load_agents
from streams.catalogue import Catalogue
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


def _kafka_args(catalogue: Catalogue, bootstrap: str) -> list[str]:
    return [
        "--bootstrap",
        bootstrap,
        "--prefix",
        catalogue.prefix,
        "--partitions",
        str(catalogue.partitions),
    ]


async def test_a_refused_start_is_listed_and_redriven_once_the_agent_exists(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    (sid,) = new_ids(1)
    async with running(kafka):  # built-in agents only: "helper" does not exist yet
        await produce(
            kafka, catalogue.inbox.name, [start_session(sid, "What is 1+2?", agent="helper")]
        )
        for _ in range(100):
            if (await read_topic(kafka, catalogue.dlq.name, decode=False)).records:
                break
            await asyncio.sleep(0.1)

    assert (
        await asyncio.to_thread(cli, ["dlq", "list", *_kafka_args(catalogue, kafka_bootstrap)]) == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    listed = json.loads(line)
    assert listed["reason"] == "rejected" and "helper" in listed["error"]
    assert listed["origin"]["topic"] == catalogue.inbox.name and listed["type"] == "StartSession"
    assert listed["key"] == sid and listed["source"] == "engine"

    inbox_before = len((await read_topic(kafka, catalogue.inbox.name)).records)
    dry = ["dlq", "redrive", "--dry-run", *_kafka_args(catalogue, kafka_bootstrap)]
    assert await asyncio.to_thread(cli, dry) == 0
    assert len((await read_topic(kafka, catalogue.inbox.name)).records) == inbox_before

    agents = tmp_path / "agents.yaml"
    agents.write_text(
        textwrap.dedent("""
        agents:
          helper: {model: sim, tools: [calculator]}
    """)
    )
    async with running(kafka, agents=load_agents(str(agents))):
        redrive = [
            "dlq",
            "redrive",
            "--reason",
            "rejected",
            *_kafka_args(catalogue, kafka_bootstrap),
        ]
        assert await asyncio.to_thread(cli, redrive) == 0
        sessions = await wait_for_terminal(kafka, catalogue, [sid])
    assert sessions[sid][-1][0] == "SessionCompleted"
    assert "3" in sessions[sid][-1][1]["output"]
    inbox = await read_topic(kafka, catalogue.inbox.name)
    starts = [record for _, _, (name, record), _, _ in inbox.records if name == "StartSession"]
    assert (
        len(starts) == 2 and starts[0]["event_id"] == starts[1]["event_id"]
    )  # the same bytes, sent back

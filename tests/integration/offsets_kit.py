"""Helpers for the ``agentstream offsets`` tests: run the CLI, read its plan, run Kafka's tool."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from agentstream.cli import main as cli
from agentstream.gateway.testkit import database_url
from streams.catalogue import Catalogue
from streams.offsets import group_offsets
from streams.settings import KafkaSettings


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def plan(self, group: str) -> dict[int, int]:
        """partition -> NEW-OFFSET from the printed plan table."""
        found: dict[int, int] = {}
        for line in self.out.splitlines():
            cells = line.split()
            if len(cells) >= 4 and cells[0] == group:
                found[int(cells[2])] = int(cells[3])
        return found

    def json(self) -> Any:
        return json.loads(self.out)


def base_args(catalogue: Catalogue, bootstrap: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--prefix", catalogue.prefix,
            "--partitions", str(catalogue.partitions), "--database-url", database_url()]  # fmt: skip


async def offsets(
    capsys: pytest.CaptureFixture[str], catalogue: Catalogue, bootstrap: str, *args: str
) -> Outcome:
    """``agentstream offsets ARGS`` for this test's topics."""
    capsys.readouterr()
    action, rest = args[0], list(args[1:])
    code = await asyncio.to_thread(
        cli, ["offsets", action, *rest, *base_args(catalogue, bootstrap)]
    )
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


async def committed(kafka: KafkaSettings, group: str) -> dict[int, tuple[int, str]]:
    """partition -> (offset, metadata) of the group's committed offsets."""
    found = await group_offsets(kafka, group)
    return {tp.partition: (om.offset, om.metadata) for tp, om in found.items()}


def group_tps(topic: str, partitions: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(partitions)]


def kafka_tool_classpath() -> str:
    """The broker's jars plus ``kafka-tools`` (where ConsumerGroupCommand lives): in the
    broker's libs when infra fetched it, else in the local Maven repository."""
    from infra.local import home

    libs = home() / "kafka" / "libs"
    tools = sorted(libs.glob("kafka-tools-[0-9]*.jar"))
    if not tools:
        version = next(iter(sorted(libs.glob("kafka-clients-*.jar"))), Path("kafka-clients-4.1.1"))
        number = version.stem.removeprefix("kafka-clients-")
        m2 = Path.home() / ".m2/repository/org/apache/kafka/kafka-tools" / number
        tools = sorted(m2.glob(f"kafka-tools-{number}.jar"))
    if shutil.which("java") is None or not tools or not libs.is_dir():
        raise AssertionError(
            f"Kafka's ConsumerGroupCommand needs java, the broker's jars in {libs} and the"
            " kafka-tools jar (add org.apache.kafka:kafka-tools to infra/kafka/pom.xml, or"
            " `mvn dependency:get -Dartifact=org.apache.kafka:kafka-tools:<version>`)"
        )
    return f"{libs}/*{os.pathsep}{tools[0]}"


def kafka_reset(bootstrap: str, groups: list[str], topics: list[str], *how: str) -> str:
    """``kafka-consumer-groups --reset-offsets ... --execute`` with Kafka's own class."""
    command = ["java", "-cp", kafka_tool_classpath(),
               "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
               "--bootstrap-server", bootstrap, "--reset-offsets", *how, "--execute"]  # fmt: skip
    for group in groups:
        command += ["--group", group]
    for topic in topics:
        command += ["--topic", topic]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout

"""Test kit for the session engine: run it in-process, read the log, check invariants."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from agentstream.worker_app import Components
from processors.agents.catalog import AgentCatalog
from processors.agents.loader import load_agents
from processors.settings import EngineSettings
from schemas import TERMINAL_EVENT_NAMES, Codec, command_from_json
from streams.catalogue import Catalogue
from streams.consumer import read_to_end
from streams.partitioner import session_partition
from streams.producer import type_headers
from streams.settings import KafkaSettings

Record = tuple[str, dict[str, Any]]
CODEC = Codec()
RESULT_EVENTS = {
    "LLMCallCompleted",
    "LLMCallFailed",
    "ToolCallCompleted",
    "ToolCallFailed",
}


def kafka_settings(catalogue: Catalogue, bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap, topic_prefix=catalogue.prefix, partitions=catalogue.partitions
    )


@contextlib.asynccontextmanager
async def running(
    kafka: KafkaSettings,
    roles: Sequence[str] = ("engine", "llm", "tools"),
    *,
    agents: AgentCatalog | None = None,
    engine_settings: EngineSettings | None = None,
    fail_tools: bool = False,
) -> AsyncIterator[Components]:
    """Engine and executors in this process; the engine owns every partition on entry."""
    components = Components.build(
        kafka,
        agents or load_agents(None),
        list(roles),
        engine_settings=engine_settings or EngineSettings(snapshot_interval_s=0.2),
        fail_tools=fail_tools,
    )
    await components.start()
    try:
        if components.engine is not None:
            await asyncio.wait_for(components.engine.started.wait(), 60)
        yield components
    finally:
        await components.stop()


def start_session(
    session_id: str, text: str, *, agent: str = "demo", tenant: str = "acme", **extra: Any
) -> Record:
    return command_from_json(
        {
            "type": "StartSession",
            "session_id": session_id,
            "tenant_id": tenant,
            "agent": agent,
            "input": text,
            **extra,
        }
    )


def command(name: str, session_id: str, tenant: str = "acme", **fields: Any) -> Record:
    return command_from_json(
        {"type": name, "session_id": session_id, "tenant_id": tenant, **fields}
    )


async def produce(kafka: KafkaSettings, topic: str, records: Iterable[Record]) -> None:
    """Produce records keyed by session id on the murmur2 partition."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for name, record in records:
            sid = record["session_id"]
            await producer.send(
                topic,
                CODEC.encode(name, record),
                key=sid.encode(),
                partition=session_partition(sid, kafka.partitions),
                headers=type_headers(name),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def produce_raw(kafka: KafkaSettings, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=key, partition=session_partition(key.decode(), kafka.partitions)
        )
    finally:
        await producer.stop()


@dataclass
class Log:
    """Every committed record of a topic, in partition/offset order."""

    records: list[tuple[int, int, Record, list[tuple[str, bytes]], bytes | None]] = field(
        default_factory=list
    )

    def by_session(self) -> dict[str, list[Record]]:
        sessions: dict[str, list[Record]] = defaultdict(list)
        for _, _, (name, event), _, _ in self.records:
            sessions[event["session_id"]].append((name, event))
        return sessions

    def names(self) -> Counter[str]:
        return Counter(name for _, _, (name, _), _, _ in self.records)


async def read_topic(kafka: KafkaSettings, topic: str, *, decode: bool = True) -> Log:
    """Read a whole topic (read_committed) up to its current end."""
    log = Log()
    async for record in read_to_end(kafka, topic):
        decoded: Record = (
            CODEC.decode(record.value)
            if decode
            else ("raw", {"session_id": (record.key or b"").decode()})
        )
        log.records.append(
            (record.partition, record.offset, decoded, list(record.headers), record.value)
        )
    return log


async def wait_for_terminal(
    kafka: KafkaSettings, catalogue: Catalogue, session_ids: Iterable[str], timeout_s: float = 60.0
) -> dict[str, list[Record]]:
    """Poll the event log until every session has a terminal event; its events by session."""
    wanted = set(session_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
        ended = {
            s for s in wanted if any(n in TERMINAL_EVENT_NAMES for n, _ in sessions.get(s, []))
        }
        if ended == wanted:
            return sessions
        if time.monotonic() > deadline:
            missing = sorted(wanted - ended)
            raise AssertionError(f"{len(missing)} sessions never ended, e.g. {missing[:5]}")
        await asyncio.sleep(0.3)


def check_invariants(sessions: dict[str, list[Record]]) -> None:
    """The event-log invariants (docs/architecture.md); raises AssertionError naming the breach."""
    event_ids: Counter[str] = Counter()
    for session_id, events in sessions.items():
        seqs = [event["seq"] for _, event in events]
        assert seqs == list(range(1, len(events) + 1)), f"{session_id}: seq {seqs} not 1..n"
        event_ids.update(event["event_id"] for _, event in events)
        terminals = [name for name, _ in events if name in TERMINAL_EVENT_NAMES]
        assert len(terminals) <= 1, f"{session_id}: terminal events {terminals}"
        if terminals:
            assert events[-1][0] in TERMINAL_EVENT_NAMES, f"{session_id}: events after the end"
        results = Counter(event["call_id"] for name, event in events if name in RESULT_EVENTS)
        twice = [call for call, count in results.items() if count > 1]
        assert not twice, f"{session_id}: calls with two results: {twice}"
        assert all(event["session_id"] == session_id for _, event in events)
    repeated = [event_id for event_id, count in event_ids.items() if count > 1]
    assert not repeated, f"duplicate event ids: {repeated[:5]}"


def new_ids(n: int, prefix: str = "s") -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}-{run}-{i}" for i in range(n)]

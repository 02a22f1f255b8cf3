"""One chaos scenario: load before, a fault under load, load after; figures and invariants.

Every scenario runs the same three phases against real ``agentstream worker``
processes: ``before`` (the healthy rate), ``during`` (sessions in flight while the
fault happens and is repaired) and ``after`` (the rate once it is over). It
prints one line of figures (sessions, time to recover, sessions/s per phase)
and then checks the whole event log of the run: contiguous seq, no event id
twice, one terminal event per session and nothing after it, at most one result
per call, and every session started ended (nothing lost).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from agentstream.loadgen import LoadReport, run_sessions
from agentstream.worker_processes import WorkerProcess, start_worker
from schemas import TERMINAL_EVENT_NAMES
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from tests.integration.engine_kit import check_invariants, read_topic

AGENTS = textwrap.dedent("""
    models:
      sim:
        endpoints:
          - provider: sim
            model: sim
            options: {latency: {kind: lognormal, median_s: 0.02, p99_s: 0.2}}
""")
PHASE_SESSIONS = 200
"""Sessions of the before and after phases."""
CONCURRENCY = 32


def settings_of(catalogue: Catalogue, bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap,
        topic_prefix=catalogue.prefix,
        partitions=catalogue.partitions,
        replication_factor=catalogue.replication,
    )


@dataclass
class Workers:
    """The scenario's worker processes, by port."""

    kafka: KafkaSettings
    log_dir: Path
    running: dict[int, WorkerProcess] = field(default_factory=dict)

    def start(self, *ports: int) -> list[WorkerProcess]:
        agents = self.log_dir / "agents.yaml"
        agents.parent.mkdir(parents=True, exist_ok=True)
        agents.write_text(AGENTS)
        env = dict(
            os.environ, AGENTSTREAM_AGENTS=str(agents), AGENTSTREAM_SNAPSHOT_INTERVAL_S="0.5"
        )
        started = [start_worker(self.kafka, port, self.log_dir, env=env) for port in ports]
        self.running.update({w.port: w for w in started})
        return started

    def stop_all(self) -> None:
        for worker in self.running.values():
            worker.stop()


async def _phase(kafka: KafkaSettings, sessions: int, timeout_s: float) -> LoadReport:
    return await run_sessions(kafka, sessions, concurrency=CONCURRENCY, timeout_s=timeout_s)


async def run_scenario(
    name: str,
    catalogue: Catalogue,
    bootstrap: str,
    fault: Callable[[], Awaitable[None]],
    *,
    during_sessions: int = 800,
    timeout_s: float = 300.0,
) -> None:
    """Before, during (``fault`` runs 2 s into it and returns once repaired), after."""
    kafka = settings_of(catalogue, bootstrap)
    before = await _phase(kafka, PHASE_SESSIONS, timeout_s)
    load = asyncio.create_task(_phase(kafka, during_sessions, timeout_s))
    await asyncio.sleep(2.0)
    began = time.monotonic()
    await fault()
    recovered_s = time.monotonic() - began
    during = await load
    after = await _phase(kafka, PHASE_SESSIONS, timeout_s)
    print(
        f"\nchaos {name}: {before.sessions + during.sessions + after.sessions} sessions; "
        f"recovered in {recovered_s:.1f} s; sessions/s before {_rate(before):.0f}, "
        f"during {_rate(during):.0f}, after {_rate(after):.0f}; "
        f"p99 during {during.percentile(0.99):.2f} s"
    )
    for phase, report in (("before", before), ("during", during), ("after", after)):
        assert report.timed_out == 0, f"{name} {phase}: {report}"
        assert report.outcomes == {"SessionCompleted": report.sessions}, f"{name} {phase}"
    sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
    check_invariants(sessions)
    total = before.sessions + during.sessions + after.sessions
    ended = [s for s, events in sessions.items() if events[-1][0] in TERMINAL_EVENT_NAMES]
    assert len(sessions) == total and len(ended) == total, (len(sessions), len(ended), total)


def _rate(report: LoadReport) -> float:
    return report.sessions / report.seconds if report.seconds else 0.0


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units, 32-bit signed overflow)."""
    value = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    """The node id leading ``topic``/``partition`` now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described["partitions"]:
        if entry["partition"] == partition:
            return int(entry["leader"])
    raise LookupError(f"{topic}/{partition} has no leader in {described}")


async def transaction_coordinator(bootstrap: str, transactional_id: str) -> int:
    """The node coordinating ``transactional_id``: the leader of its partition of
    ``__transaction_state`` (Kafka: abs(hashCode) mod the topic's partition count)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics(["__transaction_state"])
    finally:
        await admin.close()
    partition = (java_string_hash(transactional_id) & 0x7FFFFFFF) % len(described["partitions"])
    return await leader_of(bootstrap, "__transaction_state", partition)

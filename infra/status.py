"""``agentstream infra status``: what runs where, each part's state, and its one-screen form.

Kept apart from :mod:`infra.local` (which brings things up and down): status
only looks, at the same layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra import kafka, kafka_ready, postgres, registry
from infra.local import (
    DATABASE_ENV,
    KAFKA_ENV,
    home,
    kafka_answers,
    kafka_cluster,
    local_registry,
    pg_cluster,
)
from infra.procs import run_sync


@dataclass(frozen=True)
class KafkaNodeStatus:
    node_id: int
    address: str
    pid: int | None
    answering: bool
    log_file: Path
    metrics_url: str


@dataclass(frozen=True)
class PostgresStatus:
    address: str
    pid: int | None
    answering: bool
    data_dir: Path
    log_file: Path
    dsn: str


@dataclass(frozen=True)
class InfraStatus:
    """A snapshot of the local servers (and of the environment's, when set)."""

    kafka_size: int
    kafka_nodes: tuple[KafkaNodeStatus, ...]
    postgres: PostgresStatus
    kafka_env: str | None
    kafka_env_answering: bool
    database_env: str | None
    database_env_answering: bool
    registry: registry.RegistryStatus

    # When the environment names a server, that is what clients use, so it decides.
    @property
    def kafka_ok(self) -> bool:
        if self.kafka_env:
            return self.kafka_env_answering
        return all(node.answering for node in self.kafka_nodes)

    @property
    def postgres_ok(self) -> bool:
        if self.database_env:
            return self.database_env_answering
        return self.postgres.answering

    @property
    def ok(self) -> bool:
        return self.kafka_ok and self.postgres_ok and self.registry.ok


def status() -> InfraStatus:
    """What runs where; quick (raw probes, no Kafka client), safe to call any time."""
    cl = kafka_cluster(1)
    for size in kafka.SIZES:
        if kafka_cluster(size).running():
            cl = kafka_cluster(size)
            break
    nodes = tuple(
        KafkaNodeStatus(
            node.node_id,
            node.address,
            node.pid(),
            kafka_ready.api_versions_probe(kafka.HOST, node.client_port, 1.0),
            node.log_file,
            node.metrics_url,
        )
        for node in cl.nodes
    )
    pg = pg_cluster()
    pg_status = PostgresStatus(
        f"{postgres.HOST}:{pg.port}",
        pg.pid(),
        postgres.answers(pg),
        pg.data_dir,
        pg.log_file,
        pg.dsn,
    )
    kafka_env = os.environ.get(KAFKA_ENV, "").strip() or None
    db_env = os.environ.get(DATABASE_ENV, "").strip() or None
    return InfraStatus(
        kafka_size=cl.size,
        kafka_nodes=nodes,
        postgres=pg_status,
        kafka_env=kafka_env,
        kafka_env_answering=bool(kafka_env) and kafka_answers(kafka_env or ""),
        database_env=db_env,
        database_env_answering=bool(db_env)
        and run_sync(lambda: postgres.dsn_answers_async(db_env or "")),
        registry=registry.status(local_registry()),
    )


def _state(pid: int | None, answering: bool) -> str:
    if pid is not None:
        return f"running (pid {pid}), {'answering' if answering else 'NOT answering'}"
    return "answering (not started by agentstream)" if answering else "not running"


def format_status(st: InfraStatus) -> str:
    """Human-readable lines for ``agentstream infra status``."""
    lines = [f"kafka ({st.kafka_size}-node cluster, home {home() / 'kafka'})"]
    for node in st.kafka_nodes:
        lines.append(
            f"  node {node.node_id}  {node.address:<16} {_state(node.pid, node.answering)}"
            f"  log {node.log_file}  metrics {node.metrics_url}"
        )
    if st.kafka_env:
        answer = "answering" if st.kafka_env_answering else "NOT answering"
        lines.append(f"  {KAFKA_ENV}={st.kafka_env} ({answer})")
    pg = st.postgres
    lines.append(f"postgres (data {pg.data_dir})")
    lines.append(f"  {pg.address:<22} {_state(pg.pid, pg.answering)}  log {pg.log_file}")
    lines.append(f"  {pg.dsn}")
    if st.database_env:
        answer = "answering" if st.database_env_answering else "NOT answering"
        lines.append(f"  {DATABASE_ENV} is set ({answer})")
    lines += registry.format_status(st.registry)
    return "\n".join(lines)

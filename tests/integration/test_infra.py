"""The local infra (``agentstream infra up``) gives what the rest of the tests rely on:
a Kafka that answers metadata and accepts a transactional producer, a Postgres that
answers at the DSN, an honest ``status``, and an ``up`` that is safe to repeat.

The ``chaos`` test at the end swaps the single node for a 3-node cluster (and back),
so it is not in the default run: ``pytest -m chaos tests/integration/test_infra.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra import kafka, kafka_ready, local
from infra import status as infra_status

BOOTSTRAP = os.environ.get("AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
DASHBOARD = (
    Path(__file__).resolve().parents[2] / "infra" / "observability" / "grafana" / "agentstream.json"
)
DSN = os.environ.get(
    "AGENTSTREAM_DATABASE_URL",
    "postgresql://agentstream:agentstream@127.0.0.1:55432/agentstream",
).replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.mark.integration
async def test_kafka_metadata_answers_and_transactional_producer_inits() -> None:
    from aiokafka import AIOKafkaClient, AIOKafkaProducer

    client = AIOKafkaClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        assert client.cluster.brokers(), "metadata lists no broker"
    finally:
        await client.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        transactional_id=f"test-infra-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            pass
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_postgres_answers_at_the_dsn() -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        if "AGENTSTREAM_DATABASE_URL" not in os.environ:
            assert await conn.fetchval("SELECT current_user") == "agentstream"
            assert await conn.fetchval("SHOW server_version_num") >= "150000"
    finally:
        await conn.close()


@pytest.mark.integration
def test_status_reports_both_running() -> None:
    st = infra_status.status()
    assert st.kafka_ok, infra_status.format_status(st)
    assert st.postgres_ok, infra_status.format_status(st)
    text = infra_status.format_status(st)
    assert "answering" in text
    assert "NOT answering" not in text
    assert f"metrics {st.kafka_nodes[0].metrics_url}" in text


@pytest.mark.integration
def test_up_twice_starts_nothing_the_second_time() -> None:
    messages: list[str] = []
    first = local.ensure_up(progress=messages.append)
    second = local.ensure_up(progress=messages.append)
    assert second.started == (), messages
    assert second.bootstrap_servers == first.bootstrap_servers
    assert second.database_url == first.database_url
    assert any("already running" in m or "using" in m for m in messages), messages


@pytest.mark.integration
async def test_ensure_up_works_inside_a_running_event_loop() -> None:
    # Async fixtures may call it; its own asyncio work must not clash with this loop.
    endpoints = local.ensure_up(progress=lambda _m: None)
    assert endpoints.started == ()


@pytest.mark.integration
def test_probe_says_no_kafka_on_a_port_without_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    assert not kafka_ready.api_versions_probe("127.0.0.1", free_port, timeout=0.5)
    first = BOOTSTRAP.split(",")[0]
    host, _, port = first.rpartition(":")
    assert kafka_ready.api_versions_probe(host, int(port))


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a Prometheus text page."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as page:
        text = page.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


@pytest.mark.integration
async def test_the_broker_serves_its_request_counters_and_the_dashboards_kafka_metrics() -> None:
    from aiokafka import AIOKafkaClient

    running = [cl for cl in map(local.kafka_cluster, kafka.SIZES) if cl.running()]
    if not running:
        pytest.skip("the Kafka in use was not started by `agentstream infra up`")
    node = running[0].nodes[0]
    before = node.request_counts()
    assert before is not None, f"no metrics at {node.metrics_url}"
    client = AIOKafkaClient(bootstrap_servers=node.address, request_timeout_ms=5000)
    try:
        await client.bootstrap()  # one Metadata request at least
    finally:
        await client.close()
    after = node.request_counts()
    assert after is not None and after["Metadata"] > before.get("Metadata", 0.0)

    # Every broker metric the Grafana dashboard plots is one the exporter serves.
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    plotted = {
        name for expr in exprs for name in re.findall(r"\b(?:kafka|process)_[a-z0-9_]+", expr)
    }
    assert {"kafka_network_requests_total", "kafka_network_request_time_ms"} <= plotted
    assert plotted - set(_scrape(node.metrics_url)) == set()


@pytest.mark.integration
def test_cli_parses_infra_actions() -> None:
    from agentstream.commands import infra as infra_command

    parser = argparse.ArgumentParser()
    subparsers: Any = parser.add_subparsers(dest="command")
    infra_command.register(subparsers)
    args = parser.parse_args(["infra", "up", "--brokers", "3", "--fresh"])
    assert (args.brokers, args.fresh, callable(args.func)) == (3, True, True)
    assert parser.parse_args(["infra", "down", "--wipe"]).wipe is True
    with pytest.raises(SystemExit):
        parser.parse_args(["infra", "up", "--brokers", "2"])


@pytest.mark.chaos
async def test_three_node_cluster_keeps_writing_with_a_node_down() -> None:
    """RF 3 / min ISR 2: an acks=all producer keeps going when one of three nodes dies."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    single = local.kafka_cluster(1)
    kafka.stop_cluster(single, print)
    three = local.kafka_cluster(3)
    try:
        endpoints = local.ensure_up(brokers=3)
        assert endpoints.brokers == 3
        bootstrap = endpoints.bootstrap_servers
        topic = f"test-infra-rf3-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 6, 3)])
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        partitions = described[0]["partitions"]
        assert len(partitions) == 6
        assert all(len(p["replicas"]) == 3 for p in partitions), partitions

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait(topic, b"before", key=str(i).encode())
            victim = three.node(3)
            assert kafka.kill_node(victim, signal.SIGKILL) is not None
            began = time.monotonic()
            for i in range(50):
                await producer.send_and_wait(topic, b"after", key=str(i).encode())
            print(f"50 acks=all sends with node 3 dead took {time.monotonic() - began:.1f} s")
        finally:
            await producer.stop()

        restarted = local.ensure_up(brokers=3)  # restarts only the dead node
        assert restarted.started == ("kafka node 3",)
    finally:
        kafka.stop_cluster(three, print)
        local.ensure_up(brokers=1)

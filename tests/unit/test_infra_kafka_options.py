"""The broker's JVM command line: each node serves its metrics on its own port, and
``AGENTSTREAM_KAFKA_OPTS`` comes last so that a user's flag wins over ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import kafka


def test_each_node_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    cl = kafka.cluster(tmp_path, 3)
    agents = [
        [o for o in kafka._jvm_options(cl, node) if o.startswith("-javaagent:")]
        for node in cl.nodes
    ]
    assert [len(a) for a in agents] == [1, 1, 1]
    assert [a[0].rsplit("=", 1)[1].split(":")[1] for a in agents] == ["9404", "9405", "9406"]
    assert all(kafka.JMX_EXPORTER_JAR in a[0] for a in agents)
    assert cl.nodes[0].metrics_url == "http://127.0.0.1:9404/metrics"
    # no two nodes of the cluster share a port, whatever its role
    ports = [p for node in cl.nodes for p in node.ports]
    assert len(ports) == len(set(ports))


def test_user_flags_come_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cl = kafka.cluster(tmp_path, 1)
    monkeypatch.delenv(kafka.KAFKA_OPTS_ENV, raising=False)
    plain = kafka._jvm_options(cl, cl.nodes[0])
    monkeypatch.setenv(kafka.KAFKA_OPTS_ENV, " -Xmx2g  -XX:TieredStopAtLevel=1 ")
    flagged = kafka._jvm_options(cl, cl.nodes[0])
    assert flagged == [*plain, "-Xmx2g", "-XX:TieredStopAtLevel=1"]

"""The workers' KEDA ScaledObject agrees with KEDA's Kafka scaler and with the code.

KEDA's Kafka scaler reads its trigger metadata as strings and needs
``bootstrapServers``, ``consumerGroup``, ``topic`` and ``lagThreshold`` (the
topic is optional to KEDA, but without it the lag of every topic of the group
would count). The groups and topics must be those the worker really uses: they
are taken here from the worker's own components, not spelled again. Replicas
beyond the partition count would own nothing, so ``maxReplicaCount`` is at
most the count the deployment's settings give the topics. Scale-in safety is
checked by the chaos suite (tests/chaos/test_chaos_suite.py,
``test_scale_one_to_three_to_one``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstream.worker_app import Components
from processors.agents.catalog import builtin_catalog
from processors.settings import EngineSettings
from streams.settings import KafkaSettings

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
AUTOSCALING = K8S / "autoscaling"
SCALED_OBJECT = AUTOSCALING / "worker-scaledobject.yaml"
BASE_SETTINGS = K8S / "base" / "settings.env"
BASE_WORKER = K8S / "base" / "worker.yaml"
REQUIRED = ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")
DEPLOYED_PREFIX = "agentstream"
"""The topic prefix the manifests are written for (the product default)."""


def scaled_object() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(SCALED_OBJECT.read_text()) if d]
    assert len(documents) == 1
    found: dict[str, Any] = documents[0]
    return found


def triggers() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = scaled_object()["spec"]["triggers"]
    return found


def consumed() -> dict[str, str]:
    """Consumer group -> topic, from the worker's own components (no Kafka needed)."""
    kafka = KafkaSettings(topic_prefix=DEPLOYED_PREFIX)
    built = Components.build(
        kafka, builtin_catalog(), ["engine", "llm", "tools"], engine_settings=EngineSettings()
    )
    assert built.engine is not None
    groups = {built.engine.group_id: built.engine.catalogue.inbox.name}
    groups |= {e.group_id: e.topic.name for e in built.executors}
    return groups


def test_it_is_a_keda_scaled_object_of_the_worker_deployment() -> None:
    document = scaled_object()
    assert document["apiVersion"] == "keda.sh/v1alpha1"
    assert document["kind"] == "ScaledObject"
    target = document["spec"]["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        "apps/v1",
        "Deployment",
    )
    assert target["name"] == "agentstream-worker"
    assert document["spec"]["minReplicaCount"] >= 1  # an engine must own the partitions
    assert document["metadata"]["name"] == target["name"]


def test_every_trigger_has_what_the_kafka_scaler_needs_as_strings() -> None:
    for trigger in triggers():
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        missing = [key for key in REQUIRED if key not in metadata]
        assert not missing, (trigger.get("name"), missing)
        assert all(isinstance(v, str) for v in metadata.values()), metadata
        assert int(metadata["lagThreshold"]) > 0
        assert int(metadata.get("activationLagThreshold", "0")) >= 0
        assert metadata.get("allowIdleConsumers", "false") == "false"  # capped at partitions
        assert metadata.get("offsetResetPolicy", "latest") in ("latest", "earliest")


def test_groups_and_topics_are_those_the_worker_consumes() -> None:
    declared = {t["metadata"]["consumerGroup"]: t["metadata"]["topic"] for t in triggers()}
    assert declared == consumed()


def test_bootstrap_is_the_deployments() -> None:
    servers = {t["metadata"]["bootstrapServers"] for t in triggers()}
    assert len(servers) == 1
    if BASE_SETTINGS.exists():
        env = dict(
            line.split("=", 1)
            for line in BASE_SETTINGS.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
        assert servers == {env["AGENTSTREAM_KAFKA_BOOTSTRAP"]}
        assert env["AGENTSTREAM_TOPIC_PREFIX"] == DEPLOYED_PREFIX


@pytest.mark.skipif(not BASE_SETTINGS.exists(), reason="base manifests not in this checkout")
def test_never_more_replicas_than_partitions() -> None:
    env = dict(
        line.split("=", 1)
        for line in BASE_SETTINGS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    partitions = int(env["AGENTSTREAM_PARTITIONS"])
    spec = scaled_object()["spec"]
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    workers = [d for d in yaml.safe_load_all(BASE_WORKER.read_text()) if d]
    names = {d["metadata"]["name"] for d in workers if d["kind"] == "Deployment"}
    assert spec["scaleTargetRef"]["name"] in names


def test_scale_in_is_slow_and_one_pod_at_a_time() -> None:
    behavior = scaled_object()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    down = behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 60  # each move costs a rebuild
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])


def test_the_kustomization_lists_the_scaled_object() -> None:
    kustomization = yaml.safe_load((AUTOSCALING / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [SCALED_OBJECT.name]

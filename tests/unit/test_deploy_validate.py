"""The deployment files are what their tools accept, checked without Docker or a
cluster:

- every built-in Kubernetes object (base and built overlays) against the
  Kubernetes OpenAPI schemas shipped by ``kubernetes-validate``, strictly
  (an unknown field is an error), for the oldest and newest Kubernetes we target;
- the Strimzi resources against the rules of Strimzi's model (kafka.strimzi.io/v1:
  required fields, listener names and ports, node roles, storage), in Python, and
  read into Strimzi's own model classes (io.strimzi:api 0.49) by StrimziCheck;
- the compose file loaded by compose-go and every overlay built by the kustomize
  API, with the validator that ``scripts/validate-deploy.sh`` builds (Go modules,
  fetched once). Without that binary, or StrimziCheck's compiled classes, those
  tests skip and say how to get them; under CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from infra.local import home
from tests.unit.test_deploy_consistency import COMPOSE, K8S, base_settings, k8s_objects, of_kind

KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
"""Oldest Kubernetes we target (policy/v1 budgets, sidecar-free probes) and the newest
schema set the package has."""
STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic"}
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())


def missing(message: str) -> NoReturn:
    """Skip for want of a tool; under CI, where scripts/validate-deploy.sh runs first, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def validator() -> Path | None:
    path = home() / "bin" / "deploy-validate"
    return path if path.is_file() else None


def need_validator() -> Path:
    path = validator()
    if path is None:
        missing("no deploy-validate binary: run scripts/validate-deploy.sh (needs Go)")
    return path


def built(overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k infra/k8s/overlays/<overlay>`` would send."""
    path = validator()
    if path is not None:
        command = [str(path), "kustomize", str(K8S / "overlays" / overlay)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(K8S / "overlays" / overlay)]
    else:
        missing("neither deploy-validate (scripts/validate-deploy.sh) nor kubectl")
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# ------------------------------------------------------------------ Kubernetes schemas


def schema_errors(objects: list[dict[str, Any]]) -> list[str]:
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith("kafka.strimzi.io/"):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(
                    f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}): {error.message}"
                )
    return errors


def test_base_objects_match_the_kubernetes_schemas() -> None:
    objects = k8s_objects(K8S / "base")
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget"} <= {
        o["kind"] for o in objects
    }
    assert schema_errors(objects) == []


def test_the_schema_check_refuses_an_unknown_field_and_a_wrong_type() -> None:
    objects = k8s_objects(K8S / "base")
    (worker,) = [
        o
        for o in objects
        if o["metadata"]["name"] == "agentstream-worker" and o["kind"] == "Deployment"
    ]
    typo = copy.deepcopy(worker)
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong = copy.deepcopy(worker)
    wrong["spec"]["replicas"] = "three"
    assert len(schema_errors([typo])) == len(KUBERNETES_VERSIONS)
    assert len(schema_errors([wrong])) == len(KUBERNETES_VERSIONS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_overlays_match_the_kubernetes_schemas(overlay: str) -> None:
    objects = built(overlay)
    assert schema_errors(objects) == []
    (namespace,) = of_kind(objects, "Namespace")
    assert all(
        o["metadata"].get("namespace") == namespace["metadata"]["name"]
        for o in objects
        if o is not namespace
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_overlays_keep_settings_topics_and_secrets_together(overlay: str) -> None:
    objects = built(overlay)
    (settings,) = [
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("agentstream-settings")
    ]
    assert settings["data"] == base_settings()
    for topic in of_kind(objects, "KafkaTopic"):
        assert topic["spec"]["partitions"] == int(settings["data"]["AGENTSTREAM_PARTITIONS"])
        assert topic["spec"]["replicas"] == int(settings["data"]["AGENTSTREAM_REPLICATION_FACTOR"])
    # every reference to a ConfigMap or a Secret names one the overlay makes, or the
    # agentstream-postgres Secret that prod expects to exist (docs/deploy.md)
    made = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    text = json.dumps([o for o in objects if o["kind"] in ("Deployment", "StatefulSet")])
    for ref in re.findall(r'"secretKeyRef": \{"name": "([^"]+)", "key": "([^"]+)"\}', text):
        if ref[0] in made:
            assert ref[1] in made[ref[0]]["data"], ref
        else:
            assert overlay == "prod" and ref[0] == "agentstream-postgres", ref
    for name in re.findall(r'"configMapRef": \{"name": "([^"]+)"\}', text):
        assert name in made


# ------------------------------------------------------------------ Strimzi


def strimzi_errors(objects: list[dict[str, Any]]) -> list[str]:
    """What Strimzi's model (io.strimzi:api 0.49, kafka.strimzi.io/v1) refuses, for the
    fields we use: required fields, listener names and ports, node roles, KRaft
    metadata on a JBOD volume, topic sizes and the cluster label."""
    errors: list[str] = []
    kafkas = {o["metadata"]["name"] for o in objects if o["kind"] == "Kafka"}
    for o in objects:
        if o["kind"] not in STRIMZI_KINDS:
            continue
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["apiVersion"] != STRIMZI_API:
            errors.append(
                f"{where}: apiVersion {o['apiVersion']} (v1beta2 is deprecated in 0.49, gone in 1.0)"
            )
        spec = o.get("spec") or {}
        if o["kind"] == "Kafka":
            kafka = spec.get("kafka") or {}
            listeners = kafka.get("listeners") or []
            if not listeners:
                errors.append(f"{where}: spec.kafka.listeners is required")
            for listener in listeners:
                if not re.fullmatch(r"[a-z0-9]{1,11}", str(listener.get("name", ""))):
                    errors.append(f"{where}: listener name {listener.get('name')!r}")
                if not isinstance(listener.get("port"), int) or listener["port"] < 9092:
                    errors.append(f"{where}: listener port {listener.get('port')!r} (>= 9092)")
                if listener.get("type") not in (
                    "internal",
                    "route",
                    "loadbalancer",
                    "nodeport",
                    "ingress",
                    "cluster-ip",
                ):
                    errors.append(f"{where}: listener type {listener.get('type')!r}")
                if not isinstance(listener.get("tls"), bool):
                    errors.append(f"{where}: listener tls is required")
            for removed in ("replicas", "storage", "zookeeper"):
                if removed in kafka or removed in spec:
                    errors.append(f"{where}: {removed} is not in v1 (node pools hold it)")
        else:
            cluster = o["metadata"].get("labels", {}).get("strimzi.io/cluster")
            if cluster not in kafkas:
                errors.append(f"{where}: label strimzi.io/cluster={cluster!r} names no Kafka")
        if o["kind"] == "KafkaNodePool":
            if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
                errors.append(f"{where}: spec.replicas is required")
            roles = spec.get("roles") or []
            if not roles or not set(roles) <= {"controller", "broker"}:
                errors.append(f"{where}: spec.roles {roles!r}")
            storage = spec.get("storage") or {}
            volumes = storage.get("volumes") or []
            if storage.get("type") != "jbod" or not volumes:
                errors.append(f"{where}: spec.storage must be jbod with volumes")
            if sum(v.get("kraftMetadata") == "shared" for v in volumes) > 1:
                errors.append(f"{where}: at most one volume holds the KRaft metadata")
            for v in volumes:
                if v.get("type") == "persistent-claim" and not re.fullmatch(
                    r"\d+[KMGT]i", str(v.get("size"))
                ):
                    errors.append(f"{where}: volume size {v.get('size')!r}")
        if o["kind"] == "KafkaTopic":
            for field in ("partitions", "replicas"):
                if not isinstance(spec.get(field), int) or spec[field] < 1:
                    errors.append(f"{where}: spec.{field} must be an integer >= 1")
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", o["metadata"]["name"]):
                errors.append(f"{where}: not a Kubernetes name (set spec.topicName)")
    return errors


def test_strimzi_resources_follow_strimzis_model() -> None:
    objects = k8s_objects(K8S / "base")
    assert {o["kind"] for o in objects} >= STRIMZI_KINDS
    assert strimzi_errors(objects) == []


def test_the_strimzi_check_refuses_what_strimzi_refuses() -> None:
    objects = k8s_objects(K8S / "base")
    (kafka,) = of_kind(objects, "Kafka")
    (pool,) = of_kind(objects, "KafkaNodePool")
    topic = of_kind(objects, "KafkaTopic")[0]
    bad = [copy.deepcopy(o) for o in (kafka, pool, topic)]
    bad[0]["apiVersion"] = "kafka.strimzi.io/v1beta2"
    bad[0]["spec"]["kafka"]["listeners"][0]["port"] = 9091  # reserved for replication
    bad[1]["spec"]["roles"] = ["broker", "zookeeper"]
    bad[2]["metadata"]["labels"]["strimzi.io/cluster"] = "other"
    bad[2]["spec"]["partitions"] = 0
    errors = strimzi_errors(bad)
    assert len(errors) == 5, errors


def strimzi_check(*files: Path) -> subprocess.CompletedProcess[str]:
    folder = home() / "strimzi-check"
    if not (folder / "classpath.txt").is_file() or not shutil.which("java"):
        missing("no compiled StrimziCheck: run scripts/validate-deploy.sh (needs a JDK, Maven)")
    classpath = f"{folder / 'classes'}:{(folder / 'classpath.txt').read_text().strip()}"
    return subprocess.run(
        ["java", "-Dslf4j.internal.verbosity=ERROR", "-cp", classpath, "StrimziCheck"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_strimzis_model_reads_our_resources_and_refuses_broken_ones(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (K8S / "base" / "kafka.yaml")
        .read_text()
        .replace("type: internal", "type: internl")
        .replace("  entityOperator:", "  entityOperatr:")
        .replace("    - broker", "    - brokr")
        .replace("kraftMetadata: shared", "kraftMetadata: sharedd")
    )
    checked = strimzi_check(K8S / "base" / "kafka.yaml", K8S / "base" / "topics.yaml", broken)
    assert "checked 11 Strimzi resources" in checked.stdout, checked.stdout + checked.stderr
    problems = checked.stderr.splitlines()
    assert checked.returncode == 1
    assert all(line.startswith(str(broken)) for line in problems), problems
    for wrong in ('"internl"', "[entityOperatr]", '"brokr"', '"sharedd"'):
        assert any(wrong in line for line in problems), wrong


# ------------------------------------------------------------------ compose-go


def load_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(need_validator()), "compose", str(path)], capture_output=True, text=True, timeout=60
    )


def test_compose_go_loads_the_compose_file_as_written() -> None:
    loaded = load_compose(COMPOSE)
    assert loaded.returncode == 0, loaded.stderr
    project = json.loads(loaded.stdout)
    # the resolved project is what the YAML says once merge keys are applied
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(project["services"]) == set(raw)
    for name, service in raw.items():
        resolved = project["services"][name]
        assert resolved["image"] == service["image"]
        assert resolved.get("environment", {}) == {
            k: str(v) for k, v in (service.get("environment") or {}).items()
        }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("condition: service_completed_successfully", "condition: service_done"),
        ("interval: 5s", "interval: five seconds"),
        ('    ports: ["8080:8080"]', '    ports: ["8080:8080"]\n    helthcheck: {}'),
    ],
)
def test_compose_go_refuses_a_broken_copy(tmp_path: Path, old: str, new: str) -> None:
    text = COMPOSE.read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    loaded = load_compose(broken)
    assert loaded.returncode != 0 and loaded.stderr.strip()


# ------------------------------------------------------------------ Prometheus


def test_promtool_accepts_the_compose_prometheus_config_with_our_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian: apt-get install prometheus)")
    # laid out as the container sees it: the rules next to the config
    shutil.copy(COMPOSE.parent / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(K8S.parent / "observability" / "alerts.yml", tmp_path / "alerts.yml")
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    (tmp_path / "alerts.yml").unlink()  # the check bites: no rules, no config
    again = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0

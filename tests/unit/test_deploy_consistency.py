"""The deployment files agree with the code: the compose stack, the Kafka UI config
and the Kubernetes manifests use only variables the code reads, with values it
accepts, the ports it serves, the endpoints it answers, the image versions it was
built and tested against, and exactly the catalogue's topics. A renamed setting,
port or topic must break a test here, not a deployment."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstream.cli import build_parser
from agentstream.gateway import ops
from agentstream.gateway.settings import GatewaySettings
from infra.kafka_jars import KAFKA_VERSION
from processors.executors.pool.settings import PoolSettings
from processors.settings import EngineSettings, ExecutorSettings
from projections.settings import ProjectionSettings
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yml"
KAFKA_UI = ROOT / "infra" / "kafka-ui" / "config.yml"
K8S = ROOT / "infra" / "k8s"
PRODUCT = ("agentstream", "schemas", "streams", "processors", "projections", "infra")
VAR = re.compile(r"\bAGENTSTREAM_[A-Z0-9_]*[A-Z0-9]\b")
APICURIO_IMAGE = "apicurio/apicurio-registry:3.3.3"
CCOMPAT_PATH = "/apis/ccompat/v7"

# What other branches of issue 17 and issue 13 add to the code. While the code lacks
# one of these, the checks that need it xfail naming the missing piece; once it is
# there they apply in full. Delete an entry when its branch has landed.
AWAITED: dict[str, str] = {}


# ------------------------------------------------------------------ loading


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves << merge keys
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def agentstream_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s["image"].startswith("agentstream:")}


def k8s_objects(folder: Path) -> list[dict[str, Any]]:
    """Every object of the YAML files in ``folder`` (not the kustomization)."""
    objects = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def base_settings() -> dict[str, str]:
    """settings.env of the base, as the ConfigMap generator reads it."""
    pairs = {}
    for line in (K8S / "base" / "settings.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                yield o["metadata"]["name"], c


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


# ------------------------------------------------------------------ the code's side


class _Recorder(dict[str, str]):
    """An empty environment that remembers every name a settings class asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)


def variables_the_code_reads() -> set[str]:
    """Names the settings classes ask for, plus every AGENTSTREAM_ name the product
    code spells out (the agents file, AGENTSTREAM_HOME, process tuning...)."""
    recorder = _Recorder()
    for settings in (
        KafkaSettings,
        EngineSettings,
        ExecutorSettings,
        GatewaySettings,
        ProjectionSettings,
        PoolSettings,
    ):
        settings.from_env(recorder)
    spelled = {
        name
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        for name in VAR.findall(path.read_text())
    }
    return recorder.asked | spelled


def awaited(missing: set[str]) -> None:
    """xfail naming the other branch when everything missing is awaited; else return."""
    if missing and missing <= AWAITED.keys():
        pytest.xfail("waits for " + ", ".join(sorted(AWAITED[m] for m in missing)))


def worker_defaults() -> Any:
    return build_parser().parse_args(["worker"])


def worker_pages() -> set[str]:
    """Paths the worker's faust app serves (its @app.page routes)."""
    source = (ROOT / "agentstream" / "worker_app.py").read_text()
    return set(re.findall(r"@app\.page\(\"(/[^\"]*)\"\)", source))


def api_paths() -> set[str]:
    return {path for method, path, _, _ in ops.ROUTES if method == "GET"}


# ------------------------------------------------------------------ settings


def deploy_variables() -> dict[str, set[str]]:
    """Every AGENTSTREAM_ name set by a deployment file -> where."""
    where: dict[str, set[str]] = {}
    for name, service in services().items():
        for var in service.get("environment") or {}:
            if var.startswith("AGENTSTREAM_"):
                where.setdefault(var, set()).add(f"compose:{name}")
    for var in base_settings():
        where.setdefault(var, set()).add("k8s:settings.env")
    for workload, c in containers(k8s_objects(K8S / "base")):
        for env in c.get("env", []):
            if env["name"].startswith("AGENTSTREAM_"):
                where.setdefault(env["name"], set()).add(f"k8s:{workload}")
    return where


def test_every_variable_a_deployment_sets_is_one_the_code_reads() -> None:
    where = deploy_variables()
    assert {"AGENTSTREAM_KAFKA_BOOTSTRAP", "AGENTSTREAM_PARTITIONS"} <= where.keys()
    unknown = set(where) - variables_the_code_reads()
    awaited(unknown)
    assert not unknown, {name: sorted(where[name]) for name in unknown}


def test_the_recorder_sees_what_settings_classes_read() -> None:
    # The check above would pass vacuously if nothing were recorded.
    names = variables_the_code_reads()
    assert {"AGENTSTREAM_KAFKA_BOOTSTRAP", "AGENTSTREAM_API_PORT", "AGENTSTREAM_POOL_HTTP"} <= names
    assert "AGENTSTREAM_NO_SUCH_SETTING" not in names


def settings_of(env: Mapping[str, str]) -> tuple[KafkaSettings, GatewaySettings]:
    """Build every settings class from ``env``: a value the code refuses raises here."""
    for settings in (EngineSettings, ExecutorSettings, ProjectionSettings, PoolSettings):
        settings.from_env(env)
    return KafkaSettings.from_env(env), GatewaySettings.from_env(env)


def test_compose_agentstream_processes_share_one_valid_setting_set() -> None:
    ours = agentstream_services()
    assert {"topics", "worker-1", "worker-2", "api"} <= ours.keys()
    kafkas = {name: settings_of(s["environment"])[0] for name, s in ours.items()}
    assert len(set(kafkas.values())) == 1, kafkas  # same topics, same cluster everywhere
    kafka = next(iter(kafkas.values()))
    brokers = {n: s for n, s in services().items() if s["image"].startswith("apache/kafka:")}
    assert len(brokers) == 3
    # every bootstrap address is a broker's INTERNAL listener
    internal = {
        f"{name}:{s['environment']['KAFKA_LISTENERS'].split('INTERNAL://:')[1].split(',')[0]}"
        for name, s in brokers.items()
    }
    assert set(kafka.bootstrap.split(",")) == internal
    assert kafka.replication_factor == 3
    for broker in brokers.values():
        env = broker["environment"]
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == kafka.replication_factor
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 3
    voters = brokers["kafka-1"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == ",".join(
        f"{b['environment']['KAFKA_NODE_ID']}@{n}:9093" for n, b in sorted(brokers.items())
    )


def test_compose_database_url_names_the_compose_postgres() -> None:
    pg = services()["postgres"]["environment"]
    expected = (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )
    for name, service in agentstream_services().items():
        assert service["environment"]["AGENTSTREAM_DATABASE_URL"] == expected, name


def registry_compatibility() -> str:
    """The compatibility `agentstream infra up`'s registry enforces (BACKWARD before
    infra/registry.py existed: the schema evolution check's own rule)."""
    try:
        from infra import registry  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return "BACKWARD"
    return str(registry.COMPATIBILITY)


def test_compose_registry_url_is_the_registrys_confluent_api() -> None:
    registry = services()["schema-registry"]
    assert registry["image"] == APICURIO_IMAGE
    assert registry["environment"]["APICURIO_STORAGE_KIND"] == "kafkasql"
    compatibility = registry["environment"]["APICURIO_RULES_GLOBAL_COMPATIBILITY"]
    assert compatibility == registry_compatibility()
    (k8s,) = [
        c for w, c in containers(k8s_objects(K8S / "base")) if w == "agentstream-schema-registry"
    ]
    env = {e["name"]: e["value"] for e in k8s["env"]}
    assert env["APICURIO_RULES_GLOBAL_COMPATIBILITY"] == compatibility
    assert env["APICURIO_STORAGE_KIND"] == "kafkasql"
    urls = {
        s["environment"].get("AGENTSTREAM_SCHEMA_REGISTRY_URL")
        for s in agentstream_services().values()
    }
    assert urls == {f"http://schema-registry:8080{CCOMPAT_PATH}"}
    assert "8080" in {p.split(":")[1] for p in registry["ports"]}


# ------------------------------------------------------------------ ports and endpoints


def test_compose_worker_and_api_ports_are_the_ones_they_serve_and_prometheus_scrapes() -> None:
    ours = agentstream_services()
    default_port = worker_defaults().port
    scrape = yaml.safe_load((ROOT / "infra" / "compose" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: set(job["static_configs"][0]["targets"])
        for job in scrape["scrape_configs"]
    }
    workers = {name: s for name, s in ours.items() if s["command"][0] == "worker"}
    assert len(workers) == 2
    expected_workers = set()
    for name, service in workers.items():
        parsed = build_parser().parse_args(service["command"])
        assert parsed.port == default_port
        assert {int(p.split(":")[1]) for p in service["ports"]} == {parsed.port}
        expected_workers.add(f"{name}:{parsed.port}")
    assert targets["agentstream-worker"] == expected_workers
    api = ours["api"]
    assert api["command"] == ["api"]
    _, gateway = settings_of(api["environment"])
    assert gateway.host == "0.0.0.0"
    assert {int(p.split(":")[1]) for p in api["ports"]} == {gateway.port}
    assert targets["agentstream-gateway"] == {f"api:{gateway.port}"}


def test_compose_prometheus_loads_our_rules_and_grafana_our_dashboard() -> None:
    prometheus = services()["prometheus"]
    assert "../observability/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert yaml.safe_load((ROOT / "infra" / "compose" / "prometheus.yml").read_text())[
        "rule_files"
    ] == ["alerts.yml"]
    grafana = services()["grafana"]
    provider = yaml.safe_load(
        (ROOT / "infra/compose/grafana/provisioning/dashboards/agentstream.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"../observability/grafana:{path}:ro" in grafana["volumes"]


def test_compose_bind_mounts_and_build_context_exist() -> None:
    here = COMPOSE.parent
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (here / source).exists(), f"{name}: {source}"
        if "build" in service:
            context = here / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file()


def test_compose_start_order_waits_for_what_each_needs() -> None:
    s = services()
    for name in ("worker-1", "worker-2", "api"):
        needs = s[name]["depends_on"]
        assert needs["topics"]["condition"] == "service_completed_successfully"
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["schema-registry"]["condition"] == "service_healthy"
    assert s["topics"]["command"] == ["topics", "create"]
    assert s["topics"]["restart"] == "no"
    for name in ("topics", "schema-registry", "kafka-ui"):
        assert {f"kafka-{i}" for i in (1, 2, 3)} <= s[name]["depends_on"].keys()
    for name, service in s.items():
        for needed, how in (service.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                assert "healthcheck" in s[needed], f"{name} waits for {needed}'s health"


# ------------------------------------------------------------------ image versions


def test_image_versions_are_the_ones_the_code_is_built_and_tested_with() -> None:
    images = {name: s["image"] for name, s in services().items()}
    k8s = {c["image"] for _, c in containers(k8s_objects(K8S / "base"))}
    ours = f"agentstream:{project_version()}"
    assert {images[n] for n in agentstream_services()} == {ours}
    assert ours in k8s
    kafka = {img for img in images.values() if img.startswith("apache/kafka:")}
    assert kafka == {f"apache/kafka:{KAFKA_VERSION}"}
    strimzi = named(k8s_objects(K8S / "base"), "Kafka", "agentstream")
    assert strimzi["spec"]["kafka"]["version"] == KAFKA_VERSION
    # infra/postgres.py runs Postgres 15 locally; the containers run the same major
    from infra import postgres

    major = re.search(r"postgresql/(\d+)/", postgres._PG_BIN_DEFAULT)
    assert major is not None
    pg = {img for img in [*images.values(), *k8s] if img.startswith("postgres:")}
    assert pg and all(img.split(":")[1].split("-")[0] == major.group(1) for img in pg)
    assert APICURIO_IMAGE in images.values() and APICURIO_IMAGE in k8s
    kafka_ui = {img for img in [*images.values(), *k8s] if "kafka-ui" in img}
    assert len(kafka_ui) == 1 and ":latest" not in next(iter(kafka_ui))


# ------------------------------------------------------------------ Kafka UI


def kafka_ui_configs() -> dict[str, dict[str, Any]]:
    base = yaml.safe_load((K8S / "base" / "kafka-ui-config.yml").read_text())
    return {
        "compose": yaml.safe_load(KAFKA_UI.read_text())["kafka"]["clusters"][0],
        "k8s": base["kafka"]["clusters"][0],
    }


def serde_for(cluster: dict[str, Any], topic: str, target: str) -> str:
    """The serde Kafka UI picks for ``topic``'s keys or values (the first whose pattern
    matches the whole name, else the default), as kafbat's ClusterSerdes does."""
    field = "topicKeysPattern" if target == "key" else "topicValuesPattern"
    for serde in cluster.get("serde", []):
        if serde.get(field) and re.fullmatch(serde[field], topic):
            return str(serde["name"])
    return str(cluster["defaultKeySerde" if target == "key" else "defaultValueSerde"])


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_kafka_ui_decodes_every_topic_of_the_catalogue(where: str) -> None:
    cluster = kafka_ui_configs()[where]
    catalogue = Catalogue("agentstream")
    for spec in catalogue:
        assert serde_for(cluster, spec.name, "key") == "String", spec.name
        # Avro in Confluent wire format, except the engine's progress records (JSON)
        expected = "String" if spec.role == "engine-progress" else "SchemaRegistry"
        assert serde_for(cluster, spec.name, "value") == expected, spec.name
    # a topic that is not ours falls to the defaults, proving the patterns are anchored
    assert serde_for(cluster, "other.events", "value") == "SchemaRegistry"
    assert serde_for(cluster, "agentstream.engine-progress-x", "value") == "SchemaRegistry"


def test_kafka_ui_points_at_the_cluster_and_registry_the_processes_use() -> None:
    configs = kafka_ui_configs()
    env = agentstream_services()["worker-1"]["environment"]
    assert configs["compose"]["bootstrapServers"] == env["AGENTSTREAM_KAFKA_BOOTSTRAP"]
    assert configs["compose"]["schemaRegistry"] == env["AGENTSTREAM_SCHEMA_REGISTRY_URL"]
    settings = base_settings()
    assert configs["k8s"]["bootstrapServers"] == settings["AGENTSTREAM_KAFKA_BOOTSTRAP"]
    assert configs["k8s"]["schemaRegistry"] == settings["AGENTSTREAM_SCHEMA_REGISTRY_URL"]
    addresses = ("bootstrapServers", "schemaRegistry")
    same = [{k: v for k, v in c.items() if k not in addresses} for c in configs.values()]
    assert same[0] == same[1]
    mount = services()["kafka-ui"]
    (volume,) = mount["volumes"]
    assert volume.split(":")[1] == mount["environment"]["SPRING_CONFIG_ADDITIONAL-LOCATION"]


# ------------------------------------------------------------------ Kubernetes


def test_k8s_topics_are_the_catalogue() -> None:
    objects = k8s_objects(K8S / "base")
    kafka, _ = settings_of(base_settings())
    catalogue = Catalogue.from_settings(kafka)
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects, "KafkaTopic")}
    assert set(topics) == {spec.name for spec in catalogue}
    pool = named(objects, "KafkaNodePool", "combined")
    brokers = pool["spec"]["replicas"] if "broker" in pool["spec"]["roles"] else 0
    for spec in catalogue:
        topic = topics[spec.name]
        assert topic["metadata"]["name"] == spec.name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "agentstream"
        assert topic["spec"]["partitions"] == spec.partitions == kafka.partitions
        assert topic["spec"]["replicas"] == spec.replication <= brokers
        config = {k: str(v) for k, v in topic["spec"]["config"].items()}
        assert {k: config.get(k) for k in spec.config} == spec.config, spec.name
        assert int(config["min.insync.replicas"]) < spec.replication


def test_k8s_settings_point_at_the_strimzi_cluster_and_the_registry_service() -> None:
    objects = k8s_objects(K8S / "base")
    settings = base_settings()
    kafka = named(objects, "Kafka", "agentstream")
    (plain,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"]]
    assert settings["AGENTSTREAM_KAFKA_BOOTSTRAP"] == f"agentstream-kafka-bootstrap:{plain['port']}"
    registry = named(objects, "Service", "agentstream-schema-registry")
    port = registry["spec"]["ports"][0]["port"]
    expected = f"http://agentstream-schema-registry:{port}{CCOMPAT_PATH}"
    assert settings["AGENTSTREAM_SCHEMA_REGISTRY_URL"] == expected
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert int(settings["AGENTSTREAM_REPLICATION_FACTOR"]) == 3
    _, gateway = settings_of(settings)
    assert gateway.host == "0.0.0.0"


def probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "httpGet" in container.get(kind, {})
    }


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_k8s_api_probes_endpoints_the_api_serves_on_its_port() -> None:
    objects = k8s_objects(K8S / "base")
    (api,) = [c for w, c in containers(objects) if w == "agentstream-api"]
    assert api["args"] == ["api"]
    _, gateway = settings_of(base_settings())
    paths = probe_paths(api)
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert set(paths.values()) <= api_paths()
    for kind in paths:
        assert port_number(api, api[kind]["httpGet"]["port"]) == gateway.port
    service = named(objects, "Service", "agentstream-api")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_k8s_worker_probes_endpoints_the_worker_serves_on_its_port() -> None:
    objects = k8s_objects(K8S / "base")
    (worker,) = [c for w, c in containers(objects) if w == "agentstream-worker"]
    parsed = build_parser().parse_args(worker["args"])
    assert parsed.command == "worker"
    paths = probe_paths(worker)
    assert paths["livenessProbe"] == "/livez" and paths["readinessProbe"] == "/readyz"
    for kind in paths:
        assert port_number(worker, worker[kind]["httpGet"]["port"]) == parsed.port
    deployment = named(objects, "Deployment", "agentstream-worker")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == parsed.port
    assert annotations["prometheus.io/path"] in worker_pages()
    missing = set(paths.values()) - worker_pages()
    awaited(missing)
    assert not missing


def test_k8s_every_workload_has_a_disruption_budget_or_is_single() -> None:
    objects = k8s_objects(K8S / "base")
    budgets = {
        tuple(sorted(p["spec"]["selector"]["matchLabels"].items()))
        for p in of_kind(objects, "PodDisruptionBudget")
    }
    for deployment in of_kind(objects, "Deployment"):
        if deployment["spec"]["replicas"] > 1:
            labels = tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items()))
            assert labels in budgets, deployment["metadata"]["name"]


def test_k8s_agentstream_pods_run_as_the_images_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user, "the image must name a numeric user"
    uid, gid = (int(x) for x in user[-1])
    for o in k8s_objects(K8S / "base"):
        if o["kind"] != "Deployment":
            continue
        pod = o["spec"]["template"]["spec"]
        if any(c["image"].startswith("agentstream:") for c in pod["containers"]):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
                uid,
                gid,
            )
            mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
            home = re.search(r"AGENTSTREAM_HOME=(\S+)", dockerfile)
            assert home is not None and home.group(1) in mounts  # writable with a read-only root

"""A local Apache Kafka 4.1.1 cluster in KRaft mode: jars from Maven Central, no Docker.

Layout under ``<home>/kafka``::

    libs/                  broker jars (fetched once by mvn, shared by every cluster size)
    log4j2.properties      broker logging: INFO to stdout, chatty loggers at WARN
    jmx-exporter.yaml      which broker MBeans the Prometheus exporter serves
    1-node/cluster-id      one cluster id per cluster size, kept across restarts
    1-node/node-1/         server.properties, data/, server.log, kafka.pid
    3-node/node-{1,2,3}/

Each cluster size has its own folders because a storage formatted for a one-voter
quorum cannot join a three-voter one; keeping them apart means switching sizes
never silently deletes data. Only one size can run at a time (they share 9092).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from infra.kafka_jars import require_java
from infra.procs import (
    InfraError,
    Progress,
    live_pid,
    pid_alive,
    rotate_log,
    run,
    wait_gone,
)

HOST = "127.0.0.1"
# The broker process is recognised by this in its command line (pid reuse guard).
MAIN_CLASS = "kafka.Kafka"
SIZES = (1, 3)

# Client ports are 9092, 9094, 9096 so that 9092 is always a bootstrap server; the
# single node's controller takes 9093, the 3-node cluster's controllers sit apart.
_CLIENT_PORTS = {1: (9092,), 3: (9092, 9094, 9096)}
_CONTROLLER_PORTS = {1: (9093,), 3: (19093, 19095, 19097)}
# Each node serves its JMX metrics for Prometheus at http://127.0.0.1:<port>/metrics
# (the Prometheus JMX exporter's customary port, 9404, for node 1).
_METRICS_PORTS = {1: (9404,), 3: (9404, 9405, 9406)}
JMX_EXPORTER_JAR = "jmx_prometheus_javaagent-1.0.1.jar"

KAFKA_OPTS_ENV = "AGENTSTREAM_KAFKA_OPTS"
"""Extra JVM flags for the brokers `infra up` starts, read when a node starts."""

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class KafkaNode:
    """One combined broker+controller process."""

    node_id: int
    client_port: int
    controller_port: int
    metrics_port: int
    dir: Path

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def metrics_url(self) -> str:
        """The node's JMX metrics in Prometheus' text format."""
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.client_port, self.controller_port, self.metrics_port)

    def request_counts(self) -> dict[str, float] | None:
        """Requests this node has handled so far, by API (all versions summed), from
        its exporter's ``kafka_network_requests_total``; None if it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as page:
                text = page.read().decode()
        except OSError:
            return None
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "kafka_network_requests_total":
                    api = sample.labels["request"]
                    counts[api] = counts.get(api, 0.0) + sample.value
        return counts

    def pid(self) -> int | None:
        """The broker's pid if it runs (checked against its own server.properties)."""
        return live_pid(self.pid_file, str(self.properties))


@dataclass(frozen=True)
class KafkaCluster:
    """A cluster of ``size`` nodes on 127.0.0.1 with its folders under ``root``."""

    root: Path
    size: int
    nodes: tuple[KafkaNode, ...]

    @property
    def dir(self) -> Path:
        return self.root / f"{self.size}-node"

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def log4j_config(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def jmx_exporter_config(self) -> Path:
        return self.root / "jmx-exporter.yaml"

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def running(self) -> dict[int, int]:
        """node id -> pid of every node that runs now."""
        pids = {node.node_id: node.pid() for node in self.nodes}
        return {node_id: pid for node_id, pid in pids.items() if pid is not None}

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)


def cluster(root: Path, size: int) -> KafkaCluster:
    """The cluster layout for ``size`` nodes (1 or 3) under ``root`` (= <home>/kafka)."""
    if size not in SIZES:
        raise InfraError(f"--brokers must be one of {SIZES}, not {size}")
    cluster_dir = root / f"{size}-node"
    nodes = tuple(
        KafkaNode(i + 1, client, controller, metrics, cluster_dir / f"node-{i + 1}")
        for i, (client, controller, metrics) in enumerate(
            zip(_CLIENT_PORTS[size], _CONTROLLER_PORTS[size], _METRICS_PORTS[size], strict=True)
        )
    )
    return KafkaCluster(root, size, nodes)


# ------------------------------------------------------------------------ configs

_LOG4J2 = """\
# Written by `agentstream infra up`. The broker's stdout goes to <node>/server.log.
status = warn
name = agentstream-kafka
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# Per-request, per-partition and config-dump lines drown the interesting ones.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cluster.name = kafka.cluster
logger.cluster.level = WARN
logger.kafkalog.name = kafka.log
logger.kafkalog.level = WARN
logger.storage.name = org.apache.kafka.storage.internals
logger.storage.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.fetcher.name = kafka.server.ReplicaFetcherThread
logger.fetcher.level = WARN
logger.fetchermgr.name = kafka.server.ReplicaFetcherManager
logger.fetchermgr.level = WARN
logger.alterdirs.name = kafka.server.ReplicaAlterLogDirsManager
logger.alterdirs.level = WARN
logger.metadata.name = kafka.server.metadata
logger.metadata.level = WARN
logger.txnstate.name = kafka.coordinator.transaction.TransactionStateManager
logger.txnstate.level = WARN
logger.replication.name = org.apache.kafka.controller.ReplicationControlManager
logger.replication.level = WARN
logger.coordruntime.name = org.apache.kafka.coordinator.common.runtime
logger.coordruntime.level = WARN
# While a node is down (chaos tests) its peers warn about it 20 times a second.
logger.networkclient.name = org.apache.kafka.clients.NetworkClient
logger.networkclient.level = ERROR
"""


# The exporter reads MBeans on every scrape; naming only the ones worth graphing keeps a
# scrape cheap (all of them are thousands of series, most per partition).
_JMX_EXPORTER = """\
# Written by `agentstream infra up`: what the Prometheus JMX exporter serves from each
# broker at http://127.0.0.1:<9404+>/metrics (infra/observability/prometheus.yml).
lowercaseOutputName: true
lowercaseOutputLabelNames: true
includeObjectNames:
  - "kafka.network:type=RequestMetrics,name=RequestsPerSec,*"
  # Request latency of the requests an agent step makes (not of all 90-odd APIs).
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=Produce"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=FetchConsumer"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=AddPartitionsToTxn"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=EndTxn"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=OffsetCommit"
  - "kafka.network:type=RequestChannel,name=RequestQueueSize"
  - "kafka.network:type=SocketServer,name=NetworkProcessorAvgIdlePercent"
  - "kafka.server:type=KafkaRequestHandlerPool,name=RequestHandlerAvgIdlePercent"
  - "kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec,*"
  - "kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec,*"
  - "kafka.server:type=BrokerTopicMetrics,name=BytesOutPerSec,*"
  - "kafka.server:type=ReplicaManager,*"
  - "kafka.controller:type=KafkaController,*"
  - "kafka.server:type=transaction-coordinator-metrics,*"
  - "java.lang:type=GarbageCollector,*"
  - "java.lang:type=Memory"
rules:
  # Requests by API: rate(kafka_network_requests_total[1m]) is the broker's load by kind.
  - pattern: >-
      kafka.network<type=RequestMetrics, name=RequestsPerSec, request=(.+), version=(.+)><>Count
    name: kafka_network_requests_total
    type: COUNTER
    labels:
      request: "$1"
      version: "$2"
  - pattern: >-
      kafka.network<type=RequestMetrics, name=TotalTimeMs, request=(.+)><>(\\d+)thPercentile
    name: kafka_network_request_time_ms
    type: GAUGE
    labels:
      request: "$1"
      quantile: "0.$2"
  - pattern: ".*"
"""


def _server_properties(cl: KafkaCluster, node: KafkaNode) -> str:
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in cl.nodes)
    rf = 1 if cl.size == 1 else 3
    min_isr = 1 if cl.size == 1 else 2
    return f"""\
# Written by `agentstream infra up` for a {cl.size}-node local cluster; edits are overwritten.
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{HOST}:{node.client_port},CONTROLLER://{HOST}:{node.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{node.client_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={node.data_dir}
# Our CLI creates every topic with its partition count; a typo must not make a topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={min_isr}
# Tests start consumer groups all the time; the 3 s default delay only slows them.
group.initial.rebalance.delay.ms=0
num.recovery.threads.per.data.dir=1
"""


def write_configs(cl: KafkaCluster) -> None:
    """(Re)write server.properties and the log4j2 config, so code changes take effect."""
    cl.root.mkdir(parents=True, exist_ok=True)
    cl.log4j_config.write_text(_LOG4J2)
    cl.jmx_exporter_config.write_text(_JMX_EXPORTER)
    for node in cl.nodes:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(_server_properties(cl, node))


def _new_cluster_id() -> str:
    """A 22-character base64url id like Kafka's ``Uuid.randomUuid()`` makes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these: they look like CLI flags
            return text


def format_storage(cl: KafkaCluster, progress: Progress) -> None:
    """Format each node's log dir once, all with the cluster's id (kept in a file)."""
    id_file = cl.dir / "cluster-id"
    if not id_file.exists():
        id_file.write_text(_new_cluster_id() + "\n")
    cluster_id = id_file.read_text().strip()
    java = require_java()
    for node in cl.nodes:
        if (node.data_dir / "meta.properties").exists():
            continue
        progress(f"formatting Kafka storage for node {node.node_id} (cluster id {cluster_id})")
        run(
            [
                java,
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={cl.log4j_config}",
                "-cp",
                f"{cl.libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.properties),
                "--ignore-formatted",
            ],
            timeout=120,
        )


# ------------------------------------------------------------------ start / stop

# Popen objects of brokers started by this process, kept so that they are not
# garbage-collected while running (which would emit a ResourceWarning).
_CHILDREN: list[subprocess.Popen[bytes]] = []


def _jvm_options(cl: KafkaCluster, node: KafkaNode) -> list[str]:
    heap = ["-Xms512m", "-Xmx1g"] if cl.size == 1 else ["-Xms512m", "-Xmx512m"]
    return [
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        # C1 only: with C2 the broker spent a large share of its CPU compiling for as
        # long as benchmarks ran (every new topic brings new code paths; bench_engine
        # prints the broker's CPU by thread). C1's code is a little slower, but on a
        # small machine the CPU C2 takes from everyone costs more (interleaved A/B in
        # docs/benchmarks.md). KAFKA_OPTS_ENV can undo it.
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={cl.log4j_config}",
        f"-Dkafka.logs.dir={node.dir}",
        # Prometheus metrics at node.metrics_url (see _JMX_EXPORTER).
        f"-javaagent:{cl.libs / JMX_EXPORTER_JAR}"
        f"={HOST}:{node.metrics_port}:{cl.jmx_exporter_config}",
        # Last, so that they win: the user's own JVM flags (as KAFKA_OPTS would be).
        *os.environ.get(KAFKA_OPTS_ENV, "").split(),
    ]


def start_node(cl: KafkaCluster, node: KafkaNode) -> int:
    """Start one broker detached from our session (so Ctrl-C here does not kill it)."""
    java = require_java()
    rotate_log(node.log_file)
    argv = [java, *_jvm_options(cl, node), "-cp", f"{cl.libs}/*", MAIN_CLASS, str(node.properties)]
    with node.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.dir,
            start_new_session=True,
        )
    _CHILDREN.append(proc)
    node.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def kill_node(node: KafkaNode, sig: int = signal.SIGKILL) -> int | None:
    """Send ``sig`` to a running node (for chaos tests); returns its pid or None."""
    pid = node.pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pid


def stop_cluster(cl: KafkaCluster, progress: Progress, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM every running node at once, SIGKILL the ones left after ``timeout``.

    All at once rather than one by one: stopping a 3-node KRaft cluster serially
    makes the last nodes wait for a controller quorum that is already gone.
    Returns True when something was running.
    """
    pids = cl.running()
    if not pids:
        return False
    progress(f"stopping Kafka {cl.size}-node cluster (pids {', '.join(map(str, pids.values()))})")
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not wait_gone(list(pids.values()), timeout):
        left = [pid for pid in pids.values() if pid_alive(pid)]
        progress(f"  Kafka pids {left} still up after {timeout:.0f} s; sending SIGKILL")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(left, 10.0)
    for node in cl.nodes:
        node.pid_file.unlink(missing_ok=True)
    return True


def wipe(cl: KafkaCluster) -> bool:
    """Delete the cluster's data (not the jars). The caller must have stopped it."""
    if cl.dir.exists():
        shutil.rmtree(cl.dir)
        return True
    return False

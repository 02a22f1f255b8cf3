"""Local Kafka, Postgres and schema registry for development, tests and CI, without Docker.

This is the Python API behind ``agentstream infra up|down|status``; test fixtures
and the demo call :func:`ensure_up` directly::

    from infra.local import ensure_up
    endpoints = ensure_up()            # idempotent; starts only what is missing
    endpoints.bootstrap_servers        # '127.0.0.1:9092'
    endpoints.database_url             # 'postgresql://agentstream:agentstream@127.0.0.1:55432/agentstream'
    endpoints.schema_registry_url      # 'http://127.0.0.1:8081/apis/ccompat/v7' (infra.registry)

When ``AGENTSTREAM_KAFKA_BOOTSTRAP`` / ``AGENTSTREAM_DATABASE_URL`` /
``AGENTSTREAM_SCHEMA_REGISTRY_URL`` point at servers that answer, those are used and
nothing is started (``AGENTSTREAM_SCHEMA_REGISTRY_URL=local``: no registry at all).
State (jars, Kafka data, the registry's app, pid files) lives in ``$AGENTSTREAM_HOME``
or ``<repo>/.agentstream``; Postgres data see :mod:`infra.postgres`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from infra import kafka, kafka_jars, kafka_ready, postgres, registry
from infra.procs import InfraError, Progress, file_lock, port_in_use, run_sync

__all__ = [
    "InfraEndpoints",
    "InfraError",
    "InfraStatus",
    "KafkaNodeStatus",
    "PostgresStatus",
    "down",
    "ensure_up",
    "format_status",
    "home",
    "kafka_cluster",
    "status",
]

KAFKA_ENV = "AGENTSTREAM_KAFKA_BOOTSTRAP"
DATABASE_ENV = "AGENTSTREAM_DATABASE_URL"


def home() -> Path:
    """``$AGENTSTREAM_HOME`` or ``<repo root>/.agentstream`` (the repo root holds ``infra/``)."""
    env = os.environ.get("AGENTSTREAM_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".agentstream"


def kafka_cluster(brokers: int = 1) -> kafka.KafkaCluster:
    """The local cluster layout (nodes, ports, log files, pids), e.g. for chaos tests
    that kill a node with :func:`infra.kafka.kill_node` and restart it with
    :func:`infra.kafka.start_node`."""
    return kafka.cluster(home() / "kafka", brokers)


def pg_cluster() -> postgres.PgCluster:
    """The local Postgres layout (data folder, port, pid), e.g. for chaos tests that
    restart it with :func:`infra.postgres.stop` and :func:`infra.postgres.start`."""
    return postgres.cluster(home())


def local_registry() -> registry.Registry:
    """The schema registry ``up`` starts (where it lives, listens and records itself)."""
    return registry.layout(home())


@dataclass(frozen=True)
class InfraEndpoints:
    """Where clients connect, and what this call had to start."""

    bootstrap_servers: str
    database_url: str
    brokers: int
    started: tuple[str, ...] = ()
    kafka_external: bool = False
    postgres_external: bool = False
    schema_registry_url: str | None = None
    """What every component uses (None: ``AGENTSTREAM_SCHEMA_REGISTRY_URL=local``)."""


def _is_local_bootstrap(value: str, cl: kafka.KafkaCluster) -> bool:
    """True when ``value`` names only addresses our local cluster would serve."""
    ours = {node.client_port for node in cl.nodes}
    for entry in value.split(","):
        host, _, port = entry.strip().rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit() or int(port) not in ours:
            return False
    return True


def _is_local_dsn(value: str, pg: postgres.PgCluster) -> bool:
    plain = value.replace("postgresql+asyncpg://", "postgresql://", 1)
    return plain in (pg.dsn, pg.dsn.replace("127.0.0.1", "localhost", 1))


# ----------------------------------------------------------------------------- up


def ensure_up(
    brokers: int = 1, *, fresh: bool = False, progress: Progress = print
) -> InfraEndpoints:
    """Make Kafka (``brokers`` = 1 or 3 nodes) and Postgres answer; start only what is missing.

    Idempotent and safe to call from several processes at once (a file lock
    serialises them). ``fresh=True`` first stops everything and deletes the data.
    Raises :class:`InfraError` with the log file to read when something fails.
    """
    root = home()
    with file_lock(root / "infra.lock"):
        if fresh:
            _down_locked(wipe=True, progress=progress)
        return _ensure_up_locked(brokers, progress)


def _ensure_up_locked(brokers: int, progress: Progress) -> InfraEndpoints:
    began = time.monotonic()
    started: list[str] = []
    cl = kafka_cluster(brokers)
    pg = pg_cluster()

    # Kafka first, without waiting: the JVMs boot while Postgres starts.
    kafka_env = os.environ.get(KAFKA_ENV, "").strip()
    kafka_external = False
    local_cl: kafka.KafkaCluster | None = None
    if kafka_env and not _owned_and_running(kafka_env) and kafka_ready.bootstrap_answers(kafka_env):
        kafka_external = True
        bootstrap = kafka_env
        progress(f"Kafka: using {bootstrap} from {KAFKA_ENV}")
    elif kafka_env and not _is_local_bootstrap(kafka_env, cl):
        raise InfraError(f"{KAFKA_ENV}={kafka_env} is set but no Kafka broker answers there")
    else:
        local_cl = _start_kafka(cl, progress, started)
        bootstrap = local_cl.bootstrap_servers

    db_env = os.environ.get(DATABASE_ENV, "").strip()
    postgres_external = False
    if (
        db_env
        and not _is_local_dsn(db_env, pg)
        and run_sync(lambda: postgres.dsn_answers_async(db_env))
    ):
        postgres_external = True
        database_url = db_env
        progress(f"Postgres: using the server from {DATABASE_ENV}")
    elif db_env and not _is_local_dsn(db_env, pg):
        raise InfraError(f"{DATABASE_ENV} is set but that server does not answer")
    else:
        _start_postgres(pg, progress, started)
        database_url = pg.dsn

    # The registry keeps its schemas in Postgres, so it boots alongside Kafka.
    reg = local_registry()
    reg_plan = registry.plan(reg, progress)
    if reg_plan.start_local:
        _start_registry(reg, database_url, progress, started)

    if local_cl is not None:
        wait_began = time.monotonic()
        run_sync(lambda: kafka_ready.wait_ready(local_cl, progress))
        if any(s.startswith("kafka") for s in started):
            progress(f"Kafka ready on {bootstrap} after {time.monotonic() - wait_began:.1f} s")
    if reg_plan.start_local:
        wait_began = time.monotonic()
        registry.wait_ready(reg, progress)
        if "schema registry" in started:
            progress(
                f"schema registry ready on {reg.url} after {time.monotonic() - wait_began:.1f} s"
            )
    if started:
        progress(f"infra up in {time.monotonic() - began:.1f} s (started: {', '.join(started)})")
    return InfraEndpoints(
        bootstrap_servers=bootstrap,
        database_url=database_url,
        brokers=local_cl.size if local_cl else brokers,
        started=tuple(started),
        kafka_external=kafka_external,
        postgres_external=postgres_external,
        schema_registry_url=reg_plan.url,
    )


def _owned_and_running(bootstrap: str) -> bool:
    """True when ``bootstrap`` is served by a local cluster we started (so: not external)."""
    for size in kafka.SIZES:
        cl = kafka_cluster(size)
        if cl.running() and _is_local_bootstrap(bootstrap, cl):
            return True
    return False


def _start_kafka(
    cl: kafka.KafkaCluster, progress: Progress, started: list[str]
) -> kafka.KafkaCluster:
    """Start the nodes of ``cl`` that do not run; returns the cluster to wait for."""
    for size in kafka.SIZES:
        other = kafka_cluster(size)
        if size == cl.size or not other.running():
            continue
        if size > cl.size:
            # A bigger cluster also serves 9092: use it rather than fight for the port.
            progress(f"Kafka: a {size}-node cluster runs; using it ({other.bootstrap_servers})")
            cl = other
            break
        raise InfraError(
            f"a {size}-node Kafka cluster is running; run `agentstream infra down` "
            f"before starting a {cl.size}-node one"
        )
    running = cl.running()
    missing = [node for node in cl.nodes if node.node_id not in running]
    if not missing:
        pids = ", ".join(str(pid) for pid in running.values())
        progress(f"Kafka already running ({cl.size} node(s), pid {pids}) on {cl.bootstrap_servers}")
        return cl
    for node in missing:
        for port in node.ports:
            if port_in_use(kafka.HOST, port):
                raise InfraError(
                    f"port {port} is in use by a process agentstream did not start "
                    f"(Kafka node {node.node_id} needs it); stop it, or set {KAFKA_ENV} "
                    "to use a Kafka that is already running"
                )
    kafka_jars.ensure_jars(cl.root, progress)
    kafka.write_configs(cl)
    kafka.format_storage(cl, progress)
    for node in missing:
        pid = kafka.start_node(cl, node)
        progress(
            f"started Kafka node {node.node_id} on {node.address} (pid {pid}, log {node.log_file})"
        )
        started.append(f"kafka node {node.node_id}")
    return cl


def _start_registry(
    reg: registry.Registry, database_url: str, progress: Progress, started: list[str]
) -> None:
    pid = reg.pid()
    if pid is not None:
        progress(f"schema registry already running (pid {pid}) on {reg.url}")
        return
    run_sync(lambda: registry.ensure_database(database_url))
    registry.start(reg, database_url, progress)
    started.append("schema registry")


def _start_postgres(pg: postgres.PgCluster, progress: Progress, started: list[str]) -> None:
    pid = pg.pid()
    if pid is not None:
        progress(f"Postgres already running (pid {pid}) on {postgres.HOST}:{pg.port}")
    else:
        postgres.init(pg, progress)
        postgres.start(pg, progress)
        started.append("postgres")
    run_sync(lambda: postgres.ensure_database(pg))


# --------------------------------------------------------------------------- down


def down(*, wipe: bool = False, progress: Progress = print) -> list[str]:
    """Stop what ``up`` started in this home; ``wipe`` also deletes the data.

    Only processes recorded by pid files (Kafka) or running on this home's data folder
    (Postgres) are stopped; servers given through the environment or started by another
    checkout are left alone. Returns what was stopped.
    """
    with file_lock(home() / "infra.lock"):
        return _down_locked(wipe=wipe, progress=progress)


def _down_locked(*, wipe: bool, progress: Progress) -> list[str]:
    stopped: list[str] = []
    if registry.stop(local_registry(), progress):
        stopped.append("schema registry")
    for size in kafka.SIZES:
        cl = kafka_cluster(size)
        if kafka.stop_cluster(cl, progress):
            stopped.append(f"kafka {size}-node")
    pg = pg_cluster()
    if postgres.stop(pg, progress):
        stopped.append("postgres")
    if wipe:
        for size in kafka.SIZES:
            cl = kafka_cluster(size)
            if kafka.wipe(cl):
                progress(f"deleted Kafka data in {cl.dir}")
        if postgres.wipe(pg):
            progress(f"deleted Postgres data in {pg.data_dir}")
    if not stopped:
        progress("nothing to stop")
    return stopped


# ------------------------------------------------------------------------- status


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
        kafka_env_answering=bool(kafka_env) and kafka_ready.bootstrap_answers(kafka_env or ""),
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

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
    "down",
    "ensure_up",
    "home",
    "kafka_cluster",
]

KAFKA_ENV = "AGENTSTREAM_KAFKA_BOOTSTRAP"
DATABASE_ENV = "AGENTSTREAM_DATABASE_URL"
SECURITY_PROTOCOL_ENV = "AGENTSTREAM_KAFKA_SECURITY_PROTOCOL"


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


def kafka_answers(bootstrap: str) -> bool:
    """Does a Kafka broker answer at ``bootstrap``? Over a secured listener (TLS, SASL:
    ``AGENTSTREAM_KAFKA_SECURITY_PROTOCOL``) an open port is all this can see without
    the client's settings; the clients then say precisely what they were refused."""
    protocol = os.environ.get(SECURITY_PROTOCOL_ENV, "").strip().upper()
    if protocol in ("", "PLAINTEXT"):
        return kafka_ready.bootstrap_answers(bootstrap)
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit() and port_in_use(host.strip("[]"), int(port)):
            return True
    return False


def _is_local_dsn(value: str, pg: postgres.PgCluster) -> bool:
    """True when the URL names the address our local Postgres serves (whatever the
    spelling: ``postgres://``, ``postgresql://``, ``postgresql+asyncpg://``, ``localhost``)."""
    address = postgres.dsn_address(value)
    return (
        address is not None and address[0] in ("127.0.0.1", "localhost") and (address[1] == pg.port)
    )


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
    if kafka_env and not _owned_and_running(kafka_env) and kafka_answers(kafka_env):
        kafka_external = True
        bootstrap = kafka_env
        progress(f"Kafka: using {bootstrap} from {KAFKA_ENV}")
    elif kafka_env and not _is_local_bootstrap(kafka_env, cl):
        raise InfraError(f"{KAFKA_ENV}={kafka_env} is set but no Kafka broker answers there")
    else:
        local_cl = _start_kafka(cl, progress, started)
        bootstrap = local_cl.bootstrap_servers

    db_env = os.environ.get(DATABASE_ENV, "").strip()
    postgres_external = bool(db_env) and _database_is_external(db_env, pg)
    if postgres_external:
        database_url = db_env
        progress(f"Postgres: using the server from {DATABASE_ENV}")
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


def _database_is_external(url: str, pg: postgres.PgCluster) -> bool:
    """True when ``url`` logs in to a server we did not start: use it as it is.

    As for Kafka, that holds on our own port too (another checkout's server, or
    the user's). False when the URL names our address and ours runs or nothing
    answers there (then ours is started); an error when nothing usable answers.
    """
    local = _is_local_dsn(url, pg)
    if local and pg.pid() is not None:
        return False
    problem = run_sync(lambda: postgres.dsn_problem(url))
    if problem is None:
        return True
    if local and not port_in_use(postgres.HOST, pg.port):
        return False
    raise InfraError(f"{DATABASE_ENV} is set, but logging in there failed: {problem}")


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

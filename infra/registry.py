"""A local Apicurio Registry 3.3.3 serving the Confluent Schema Registry API, without Docker.

Apicurio Registry is a Quarkus application; Maven Central publishes it ready to run
as ``io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all``. ``infra up`` fetches it
once with ``mvn`` (about 160 MB), unpacks it under ``<home>/registry/`` and runs
``java -jar quarkus-run.jar`` with a Java >= 21::

    <home>/registry/apicurio-registry-3.3.3/   the unpacked app (a cache, like Kafka's jars)
    <home>/registry/registry.log               its log (the previous run's in .log.1)
    <home>/registry/registry.pid
    <home>/registry/registry.json              the record: URL and pid (see below)

It listens on ``127.0.0.1:8081`` (Confluent Schema Registry's customary port, where
Confluent clients and Kafka UI look first), API at ``/apis/ccompat/v7``; its
management interface (``/health/ready``, ``/metrics``) on ``127.0.0.1:9081``.

Storage: Apicurio's SQL storage in its own database (``apicurio_registry``) on the
Postgres ``infra up`` brings up (or the one ``AGENTSTREAM_DATABASE_URL`` names), so
a restart keeps every schema id. Not its ``kafkasql`` storage: that would tie the
registry's ids to one Kafka cluster's data (switching between the 1- and 3-node
clusters, or wiping Kafka, would leave a registry whose journal is gone), and it
would have to wait for Kafka, while Postgres is ready seconds earlier, so the
registry boots alongside the broker. Its own database because Apicurio's tables
have generic names (``content``, ``config``, ``groups``).

Every subject's compatibility defaults to BACKWARD (``apicurio.rules.global.compatibility``):
the registry itself refuses a schema that cannot read the previous version's data.

The record ``registry.json`` is how every component finds this registry when
``AGENTSTREAM_SCHEMA_REGISTRY_URL`` is unset (``schemas.settings`` reads it); ``down``
removes it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from infra.procs import InfraError, Progress, live_pid, port_in_use, rotate_log, tail, terminate
from infra.registry_app import JAR, URL_ENV, VERSION, ensure_app, find_java

HOST = "127.0.0.1"
HTTP_PORT = 8081
MANAGEMENT_PORT = 9081
API_PATH = "/apis/ccompat/v7"
DATABASE = "apicurio_registry"
COMPATIBILITY = "BACKWARD"
USER_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_USER"
PASSWORD_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_PASSWORD"
NO_REGISTRY = "local"
OPTS_ENV = "AGENTSTREAM_REGISTRY_OPTS"
"""Extra JVM flags for the registry ``infra up`` starts."""
# The first start creates the tables; on a busy two-core machine Quarkus takes ~20 s.
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Registry:
    """Where the local registry lives and where it listens."""

    root: Path

    @property
    def app_dir(self) -> Path:
        return self.root / f"apicurio-registry-{VERSION}"

    @property
    def jar(self) -> Path:
        return self.app_dir / JAR

    @property
    def log_file(self) -> Path:
        return self.root / "registry.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "registry.pid"

    @property
    def record(self) -> Path:
        return self.root / "registry.json"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{HTTP_PORT}{API_PATH}"

    @property
    def ready_url(self) -> str:
        return f"http://{HOST}:{MANAGEMENT_PORT}/health/ready"

    def pid(self) -> int | None:
        """The registry's pid if it runs (the jar path in its command line guards pid reuse)."""
        return live_pid(self.pid_file, str(self.jar))


def layout(home: Path) -> Registry:
    return Registry(home / "registry")


# -------------------------------------------------------------------- database


def jdbc_settings(dsn: str) -> tuple[str, str, str]:
    """(JDBC URL of the registry's database, user, password) on the server ``dsn`` names."""
    parts = urlsplit(dsn.replace("postgresql+asyncpg://", "postgresql://", 1))
    if parts.scheme not in ("postgresql", "postgres"):
        raise InfraError(f"not a postgresql:// URL: {parts.scheme}://...")
    query = parse_qs(parts.query)
    # The libpq TLS settings the JDBC driver understands under the same names.
    tls = "&".join(f"{k}={query[k][0]}" for k in ("sslmode", "sslrootcert") if k in query)
    host = parts.hostname or HOST
    url = f"jdbc:postgresql://{host}:{parts.port or 5432}/{DATABASE}" + (f"?{tls}" if tls else "")
    return url, unquote(parts.username or ""), unquote(parts.password or "")


async def ensure_database(dsn: str) -> None:
    """Create the registry's database on the server ``dsn`` names, if it is missing."""
    import asyncpg

    conn = await asyncpg.connect(
        dsn.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10
    )
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            return
        try:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
        except asyncpg.DuplicateDatabaseError:
            pass  # another `infra up` made it first
        except asyncpg.PostgresError as error:
            raise InfraError(
                f"cannot create the schema registry's database {DATABASE!r} ({error}); create "
                f"it for this user, or set {URL_ENV} to a registry that already runs"
            ) from error
    finally:
        await conn.close()


# --------------------------------------------------------------- start / stop


def _environment(dsn: str) -> dict[str, str]:
    """Apicurio's settings, as environment variables (Quarkus reads either form; the
    environment keeps the database password out of ``ps``)."""
    jdbc_url, user, password = jdbc_settings(dsn)
    return {
        **os.environ,
        "QUARKUS_HTTP_HOST": HOST,
        "QUARKUS_HTTP_PORT": str(HTTP_PORT),
        "QUARKUS_MANAGEMENT_HOST": HOST,
        "QUARKUS_MANAGEMENT_PORT": str(MANAGEMENT_PORT),
        "QUARKUS_HTTP_ACCESS_LOG_ENABLED": "false",
        # One audit line per request at INFO otherwise.
        "QUARKUS_LOG_CATEGORY__IO_APICURIO_REGISTRY_LOGGING_AUDIT__LEVEL": "WARN",
        "APICURIO_STORAGE_KIND": "sql",
        "APICURIO_STORAGE_SQL_KIND": "postgresql",
        "APICURIO_DATASOURCE_URL": jdbc_url,
        "APICURIO_DATASOURCE_USERNAME": user,
        "APICURIO_DATASOURCE_PASSWORD": password,
        # The default pool holds 20 connections open; a schema lookup per process start
        # needs a handful.
        "APICURIO_DATASOURCE_JDBC_INITIAL_SIZE": "2",
        "APICURIO_DATASOURCE_JDBC_MIN_SIZE": "2",
        "APICURIO_DATASOURCE_JDBC_MAX_SIZE": "10",
        "APICURIO_RULES_GLOBAL_COMPATIBILITY": COMPATIBILITY,
        # As Confluent's registry allows: `DELETE /subjects/{s}` (tests clean up after them).
        "APICURIO_REST_DELETION_ARTIFACT_ENABLED": "true",
    }


# Popen objects of registries started by this process, kept so that they are not
# garbage-collected while running (which would emit a ResourceWarning).
_CHILDREN: list[subprocess.Popen[bytes]] = []


def start(reg: Registry, dsn: str, progress: Progress) -> int:
    """Start the registry detached from our session; returns its pid (not yet ready)."""
    for port in (HTTP_PORT, MANAGEMENT_PORT):
        if port_in_use(HOST, port):
            raise InfraError(
                f"port {port} is in use by a process agentstream did not start (the schema "
                f"registry needs it); stop it, or set {URL_ENV} to a registry that already runs"
            )
    java = find_java()
    ensure_app(reg.app_dir, progress)
    rotate_log(reg.log_file)
    argv = [
        str(java),
        "-Xms64m",
        "-Xmx384m",
        "-XX:+UseSerialGC",
        # C1 only: the registry answers a few lookups per process start; C2's compile
        # threads would take CPU from the broker on a small machine for nothing.
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        *os.environ.get(OPTS_ENV, "").split(),
        "-jar",
        str(reg.jar),
    ]
    with reg.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=reg.app_dir,
            env=_environment(dsn),
            start_new_session=True,
        )
    _CHILDREN.append(proc)
    reg.pid_file.write_text(f"{proc.pid}\n")
    progress(f"started schema registry (Apicurio {VERSION}, pid {proc.pid}, log {reg.log_file})")
    return proc.pid


def ready(url: str, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 200 (the management interface's readiness)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(reg: Registry, progress: Progress, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait for ``/health/ready``; fail fast, with the log, when the process exits."""
    began = time.monotonic()
    while not ready(reg.ready_url):
        if reg.pid() is None:
            raise InfraError(
                f"the schema registry exited; see {reg.log_file}:\n" + tail(reg.log_file)
            )
        if time.monotonic() - began > timeout:
            raise InfraError(
                f"the schema registry was not ready after {timeout:.0f} s; see {reg.log_file}:\n"
                + tail(reg.log_file)
            )
        time.sleep(0.5)
    reg.record.write_text(
        json.dumps({"url": reg.url, "pid": reg.pid(), "ready": reg.ready_url, "version": VERSION})
        + "\n"
    )


def stop(reg: Registry, progress: Progress, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the registry if it runs and remove the record; True when it was running."""
    reg.record.unlink(missing_ok=True)
    pid = reg.pid()
    if pid is None:
        return False
    progress(f"stopping the schema registry (pid {pid})")
    terminate(pid, timeout, progress, "the schema registry")
    reg.pid_file.unlink(missing_ok=True)
    return True


# --------------------------------------------------------- a registry elsewhere


def external_answers(url: str) -> bool:
    """True when a Confluent-API registry answers ``GET <url>/subjects`` (with the basic-auth
    settings); raises InfraError when it refuses the credentials."""
    request = urllib.request.Request(f"{url.rstrip('/')}/subjects")
    user = os.environ.get(USER_ENV, "").strip()
    if user:
        token = f"{user}:{os.environ.get(PASSWORD_ENV, '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise InfraError(
                f"the schema registry at {url} refused our credentials (HTTP {error.code}); "
                f"check {USER_ENV} and {PASSWORD_ENV}"
            ) from error
        return False
    except (OSError, urllib.error.URLError):
        return False


def configured_url() -> str | None:
    """``AGENTSTREAM_SCHEMA_REGISTRY_URL`` without a trailing slash; None when unset."""
    return os.environ.get(URL_ENV, "").strip().rstrip("/") or None


@dataclass(frozen=True)
class Plan:
    """What ``infra up`` does about the schema registry, from the environment."""

    url: str | None
    """What components use; None: no registry (``local``: the local fingerprint ids)."""
    start_local: bool
    """Ours: start it if it does not run, and wait until it is ready."""


def plan(reg: Registry, progress: Progress) -> Plan:
    """Unset (or our own URL): ours. ``local``: none. Another URL: that one, which must answer."""
    configured = configured_url()
    if configured is None or configured == reg.url:
        return Plan(reg.url, True)
    if configured.lower() == NO_REGISTRY:
        progress(f"Schema registry: none ({URL_ENV}={NO_REGISTRY}: local fingerprint ids)")
        return Plan(None, False)
    if not external_answers(configured):
        raise InfraError(f"{URL_ENV}={configured} is set but no schema registry answers there")
    progress(f"Schema registry: using {configured} from {URL_ENV}")
    return Plan(configured, False)


# ---------------------------------------------------------------------- status


@dataclass(frozen=True)
class RegistryStatus:
    url: str
    """What components use: the variable's URL, else ours; ``local``: none."""
    pid: int | None
    answering: bool
    log_file: Path
    from_env: bool

    @property
    def ok(self) -> bool:
        """Components can reach the registry they will use (or use none)."""
        return self.url == NO_REGISTRY or self.answering


def status(reg: Registry) -> RegistryStatus:
    configured = configured_url()
    if configured and configured != reg.url:
        none = configured.lower() == NO_REGISTRY
        with contextlib.suppress(InfraError):
            answering = not none and external_answers(configured)
        return RegistryStatus(
            NO_REGISTRY if none else configured, None, answering, reg.log_file, True
        )
    pid = reg.pid()
    # Ours and not started: components use the local ids; that works, so it is not a failure.
    answering = ready(reg.ready_url) if pid is not None else not reg.record.exists()
    return RegistryStatus(reg.url, pid, answering, reg.log_file, False)


def format_status(st: RegistryStatus) -> list[str]:
    if st.from_env:
        state = (
            "none: local fingerprint ids"
            if st.url == NO_REGISTRY
            else ("answering" if st.answering else "NOT answering")
        )
        return ["schema registry", f"  {URL_ENV}={st.url} ({state})"]
    if st.pid is not None:
        state = f"running (pid {st.pid}), {'answering' if st.answering else 'NOT answering'}"
    else:
        state = "not running" + ("" if st.answering else " (but recorded: run `infra up`)")
    return [
        f"schema registry (Apicurio Registry {VERSION}, Confluent API)",
        f"  {st.url}  {state}  log {st.log_file}",
    ]

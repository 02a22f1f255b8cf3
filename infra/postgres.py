"""A local Postgres 15 cluster owned by the project, started without Docker.

CI and our sessions run as root, and initdb/postgres refuse to run as root, so as
root the server runs as the ``postgres`` user (``runuser -u postgres --``). The repo
may sit in a ``mktemp -d`` folder (mode 700) that user cannot enter, so the data
folder lives outside the repo: ``/var/lib/agentstream/pg-<port>-<home digest>``. As a
normal user everything runs as that user, with the data under ``<home>/postgres``.

The digest of the home folder in the name gives each checkout its own cluster, so a
CI run in a scratch clone (``up --fresh``) can never wipe another checkout's data;
two checkouts still cannot run theirs at once, as both want the same port.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from infra.procs import InfraError, Progress, is_root, live_pid, port_in_use, rotate_log, run, tail

HOST = "127.0.0.1"
DEFAULT_PORT = 55432
DB_NAME = DB_USER = DB_PASSWORD = "agentstream"
SUPERUSER = "postgres"
_PG_BIN_DEFAULT = "/usr/lib/postgresql/15/bin"

# Dev-cluster tuning. fsync stays on (a crash of the machine must not corrupt the
# cluster); synchronous_commit=off only risks the last few hundred ms of commits.
_SETTINGS = """\
# Written by `agentstream infra up`; edits are overwritten.
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 300
shared_buffers = 256MB
work_mem = 16MB
maintenance_work_mem = 128MB
synchronous_commit = off
max_wal_size = 2GB
checkpoint_timeout = 15min
timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
"""


@dataclass(frozen=True)
class PgCluster:
    """Where one project-owned Postgres cluster lives and how to run its tools."""

    port: int
    data_dir: Path
    bin_dir: Path
    run_as: str | None
    home: Path

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    @property
    def dsn(self) -> str:
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{self.port}/{DB_NAME}"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def pid(self) -> int | None:
        """The postmaster's pid if it runs (from postmaster.pid, checked against /proc)."""
        return live_pid(self.data_dir / "postmaster.pid", "postgres")


def cluster(home: Path, port: int = DEFAULT_PORT) -> PgCluster:
    """The cluster layout for ``port``; ``AGENTSTREAM_PG_DATA``/``_PG_BIN`` override paths."""
    bin_dir = Path(os.environ.get("AGENTSTREAM_PG_BIN", _PG_BIN_DEFAULT))
    override = os.environ.get("AGENTSTREAM_PG_DATA")
    if override:
        data_dir = Path(override)
    elif is_root():
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:10]
        data_dir = Path("/var/lib/agentstream") / f"pg-{port}-{digest}"
    else:
        data_dir = home / "postgres" / f"pg-{port}"
    run_as = SUPERUSER if is_root() else None
    return PgCluster(port, data_dir, bin_dir, run_as, home)


def answers(pg: PgCluster) -> bool:
    """True when the server accepts connections on 127.0.0.1:<port> (pg_isready)."""
    if not (pg.bin_dir / "pg_isready").exists():
        return False
    proc = run(
        [pg.tool("pg_isready"), "-q", "-h", HOST, "-p", str(pg.port), "-t", "2"],
        timeout=10,
        check=False,
    )
    return proc.returncode == 0


def _check_binaries(pg: PgCluster) -> None:
    if not (pg.bin_dir / "postgres").exists():
        raise InfraError(
            f"Postgres server binaries not found in {pg.bin_dir}; "
            "install postgresql-15 (apt-get install postgresql-15) or set AGENTSTREAM_PG_BIN"
        )


def _chown(path: Path, pg: PgCluster) -> None:
    if pg.run_as:
        shutil.chown(path, pg.run_as, pg.run_as)


def init(pg: PgCluster, progress: Progress) -> None:
    """initdb once, then (re)write our settings file, included from postgresql.conf."""
    _check_binaries(pg)
    if not (pg.data_dir / "PG_VERSION").exists():
        progress(f"creating Postgres cluster in {pg.data_dir}")
        pg.data_dir.parent.mkdir(parents=True, exist_ok=True)
        pg.data_dir.parent.chmod(0o755)  # the postgres user must be able to enter it
        pg.data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown(pg.data_dir, pg)
        run(
            [
                pg.tool("initdb"),
                "-D",
                str(pg.data_dir),
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            as_user=pg.run_as,
            timeout=180,
        )
        with (pg.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'agentstream.conf'\n")
        # Which checkout this cluster belongs to, for a human looking at /var/lib.
        (pg.data_dir / "agentstream.home").write_text(f"{pg.home}\n")
    settings = pg.data_dir / "agentstream.conf"
    settings.write_text(_SETTINGS.format(host=HOST, port=pg.port, socket_dir=pg.socket_dir))
    _chown(settings, pg)


def start(pg: PgCluster, progress: Progress) -> None:
    """Start the server with pg_ctl (which waits until it accepts connections)."""
    if port_in_use(HOST, pg.port):
        raise InfraError(
            f"port {pg.port} is in use by a process agentstream did not start; stop it or "
            "set AGENTSTREAM_DATABASE_URL to use that server"
        )
    progress(f"starting Postgres on {HOST}:{pg.port} (data {pg.data_dir})")
    rotate_log(pg.log_file)
    # pg_ctl forks the server into its own session, so it survives our exit.
    proc = run(
        [
            pg.tool("pg_ctl"),
            "start",
            "-D",
            str(pg.data_dir),
            "-l",
            str(pg.log_file),
            "-w",
            "-t",
            "60",
            "-s",
        ],
        as_user=pg.run_as,
        timeout=90,
        check=False,
    )
    if proc.returncode != 0:
        raise InfraError(
            f"Postgres did not start (pg_ctl exit {proc.returncode}); see {pg.log_file}:\n"
            + tail(pg.log_file)
        )


async def ensure_database(pg: PgCluster) -> None:
    """Create the ``agentstream`` role and database if missing, then log in as it.

    The superuser connects over the unix socket in the data folder (trust auth there;
    only root and the postgres user can enter that folder). The final TCP login with
    the DSN proves what clients will use works. CREATEDB lets tests make scratch DBs.
    """
    import asyncpg

    admin = await asyncpg.connect(
        host=str(pg.socket_dir), port=pg.port, user=SUPERUSER, database="postgres", timeout=10
    )
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DB_USER):
            await admin.execute(f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'")
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await admin.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    finally:
        await admin.close()
    await dsn_answers_async(pg.dsn, raise_errors=True)


def dsn_address(dsn: str) -> tuple[str, int] | None:
    """(host, port) of a Postgres URL in any spelling we accept, or None if it is not one.

    ``postgres://`` and ``postgresql://`` (libpq's two) and SQLAlchemy's
    ``postgresql+asyncpg://``; without a port, libpq's 5432.
    """
    parts = urllib.parse.urlsplit(dsn.strip())
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        return None
    try:
        port = parts.port or 5432
    except ValueError:
        return None
    return (parts.hostname or "localhost", port)


def libpq_url(dsn: str) -> str:
    """``dsn`` as asyncpg takes it: SQLAlchemy's driver suffix dropped."""
    return dsn.strip().replace("postgresql+asyncpg://", "postgresql://", 1)


async def dsn_problem(dsn: str, *, wait_s: float = 5.0) -> str | None:
    """None when we can log in with ``dsn`` and run ``SELECT 1``; else what went wrong."""
    try:
        await dsn_answers_async(dsn, raise_errors=True, wait_s=wait_s)
    except Exception as error:  # any failure is the answer, in words
        return f"{type(error).__name__}: {error}"
    return None


async def dsn_answers_async(dsn: str, *, raise_errors: bool = False, wait_s: float = 5.0) -> bool:
    """True when we can log in with ``dsn`` and run ``SELECT 1``.

    Accepts SQLAlchemy-style URLs (``postgresql+asyncpg://``) and libpq's query
    parameters asyncpg understands (``sslmode``, ``sslrootcert``...) as well.
    """
    import asyncpg

    try:
        conn = await asyncpg.connect(libpq_url(dsn), timeout=wait_s)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        if raise_errors:
            raise
        return False


def stop(pg: PgCluster, progress: Progress) -> bool:
    """Fast shutdown (aborts open transactions, no waiting for clients to leave)."""
    pid = pg.pid()
    if pid is None:
        return False
    progress(f"stopping Postgres (pid {pid}, data {pg.data_dir})")
    run(
        [pg.tool("pg_ctl"), "stop", "-D", str(pg.data_dir), "-m", "fast", "-w", "-t", "60", "-s"],
        as_user=pg.run_as,
        timeout=90,
    )
    return True


def wipe(pg: PgCluster) -> bool:
    """Delete the data folder. The caller must have stopped the server."""
    if pg.data_dir.exists():
        shutil.rmtree(pg.data_dir)
        return True
    return False

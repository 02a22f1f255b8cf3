"""Postgres over TLS as managed Postgres serves it: ``sslmode=require`` and
``verify-full`` with a CA, through the engine's asyncpg pool and the API's SQLAlchemy
engine alike.

A Postgres of its own for this module (``infra.postgres`` on a free port, a
certificate from a CA made now by ``infra.tls``), deleted afterwards; the shared
server speaks no TLS.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import postgres, tls
from infra.postgres import PgCluster
from processors.postgres import create_pool
from projections.db import create_engine, raw_connection

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgCluster, Path]]:
    """A TLS Postgres (certificate for 127.0.0.1 and localhost) and its CA file."""
    home = tmp_path_factory.mktemp("pg-tls")
    pg = postgres.cluster(home, _free_port())
    ca = tls.make_ca(home / "tls", "agentstream test Postgres CA")
    cert = tls.issue(ca, home / "tls", "localhost", server=True)
    postgres.init(pg, print)
    for source, name in ((cert.cert, "server.crt"), (cert.key, "server.key")):
        target = pg.data_dir / name
        shutil.copy(source, target)
        target.chmod(0o600)
        if pg.run_as:
            shutil.chown(target, pg.run_as, pg.run_as)
    with (pg.data_dir / "agentstream.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    try:
        postgres.start(pg, print)
        asyncio.run(postgres.ensure_database(pg))
        yield pg, ca.cert
    finally:
        postgres.stop(pg, print)
        postgres.wipe(pg)


def url(pg: PgCluster, query: str) -> str:
    return f"{pg.dsn.replace('127.0.0.1', 'localhost')}?{query}"


async def encrypted(database_url: str) -> list[bool]:
    """Whether each path's connection is encrypted, as the server says."""
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        by_pool = bool(await pool.fetchval(query))
    finally:
        await pool.close()
    engine = create_engine(database_url)
    try:
        async with raw_connection(engine) as connection:
            by_engine = bool(await connection.fetchval(query))
    finally:
        await engine.dispose()
    return [by_pool, by_engine]


async def test_sslmode_require_encrypts_and_disable_does_not(
    server: tuple[PgCluster, Path],
) -> None:
    pg, _ = server
    assert await encrypted(url(pg, "sslmode=require")) == [True, True]
    assert await encrypted(url(pg, "sslmode=disable")) == [False, False]


async def test_verify_full_checks_the_server_against_the_ca(
    server: tuple[PgCluster, Path], tmp_path: Path
) -> None:
    pg, ca = server
    assert await encrypted(url(pg, f"sslmode=verify-full&sslrootcert={ca}")) == [True, True]
    stranger = tls.make_ca(tmp_path, "some other CA")
    with pytest.raises(Exception, match="certificate verify failed"):
        await encrypted(url(pg, f"sslmode=verify-full&sslrootcert={stranger.cert}"))

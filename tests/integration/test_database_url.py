"""Database URLs as managed Postgres documents them, against the real server.

``?sslmode=...`` used to crash every SQLAlchemy path (``connect() got an unexpected
keyword argument 'sslmode'``); a ``postgresql://`` URL to a server agentstream did
not start made ``infra up`` refuse. The test server speaks no TLS, so ``disable``
works and ``require`` is refused by the server, with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agentstream.gateway.testkit import database_url
from processors.postgres import create_pool
from projections.db import create_engine, raw_connection

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTSTREAM_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_tenants_create_takes_sslmode_disable_in_both_spellings() -> None:
    for scheme in ("postgresql://", "postgres://"):
        url = with_query(database_url(), "sslmode=disable").replace("postgresql://", scheme, 1)
        name = f"t-ssl-{uuid.uuid4().hex[:8]}"
        created = cli(url, "tenants", "create", name)
        assert created.returncode == 0, created.stderr
        assert f"tenant {name} created" in created.stdout
        listed = cli(url, "tenants", "list", "--json")
        assert name in listed.stdout


def test_sslmode_require_is_refused_with_the_servers_reason_not_a_traceback() -> None:
    refused = cli(with_query(database_url(), "sslmode=require"), "tenants", "list")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: cannot use Postgres"), refused.stderr
    assert "SSL" in refused.stderr and "Traceback" not in refused.stderr
    bad = cli(with_query(database_url(), "sslmode=on"), "tenants", "list")
    assert bad.returncode == 1 and "AGENTSTREAM_DATABASE_URL: sslmode='on'" in bad.stderr


async def test_the_engines_pool_and_the_read_sides_engine_take_sslmode() -> None:
    url = with_query(database_url(), "sslmode=disable")
    pool = await create_pool(url.replace("postgresql://", "postgresql+asyncpg://"), min_size=1,
                             max_size=1)  # fmt: skip
    try:
        assert await pool.fetchval("SELECT 41 + 1") == 42
    finally:
        await pool.close()
    engine = create_engine(url)
    try:
        async with raw_connection(engine) as connection:
            # the server says the connection is not encrypted, as sslmode=disable asked
            assert await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = "
                                             "pg_backend_pid()") is False  # fmt: skip
    finally:
        await engine.dispose()


def test_infra_up_uses_a_running_postgres_named_in_either_spelling() -> None:
    for scheme in ("postgresql://", "postgres://"):
        url = database_url().replace("postgresql://", scheme, 1)
        env = {
            **os.environ,
            "AGENTSTREAM_DATABASE_URL": url,
            "AGENTSTREAM_KAFKA_BOOTSTRAP": os.environ.get(
                "AGENTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"
            ),
        }
        up = subprocess.run(
            [sys.executable, "-m", "agentstream.cli", "infra", "up"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=180, check=False,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "AGENTSTREAM_DATABASE_URL" not in up.stderr

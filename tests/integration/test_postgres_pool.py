"""The processors' asyncpg pools skip the server-side reset on release (processors/postgres.py):
what that relies on, and what it gives up, on a real Postgres."""

from __future__ import annotations

import uuid

import pytest

from processors.postgres import create_pool
from processors.settings import DEFAULT_DATABASE_URL

pytestmark = pytest.mark.integration


async def test_a_transaction_left_open_is_rolled_back_on_release() -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            await connection.execute(f"CREATE TABLE {table} (x int)")
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute(f"INSERT INTO {table} VALUES (1)")
        async with pool.acquire() as connection:  # the same (only) connection
            assert not connection.is_in_transaction()
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0
            await connection.execute(f"DROP TABLE {table}")
    finally:
        await pool.close()


async def test_session_settings_survive_release_so_processors_must_not_set_any() -> None:
    pool = await create_pool(DEFAULT_DATABASE_URL, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            await connection.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as connection:
            # No RESET ALL round trip: what a holder sets, the next one sees.
            assert await connection.fetchval("SHOW application_name") == "left-behind"
    finally:
        await pool.close()

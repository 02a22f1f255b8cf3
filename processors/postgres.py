"""Postgres connection pools of the processors (asyncpg).

asyncpg's pool resets every connection it takes back with a round trip to the
server (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``).
The engine takes a connection for each batch's snapshot lookup, so that doubled
its Postgres round trips, and the reset showed in py-spy profiles of a busy
worker, plus the server's share. Our connections never change
session state (no SET, LISTEN, session advisory locks or open cursors; every
transaction is an ``async with`` block, and asyncpg rolls back one left open
before our reset runs), so the reset is local only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg


async def _keep_session(connection: Any) -> None:
    """Nothing to reset on the server: see the module docstring."""
    return None


async def create_pool(database_url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """An asyncpg pool whose connections are not reset on the server at each release.

    asyncpg reads the URL itself, libpq's TLS parameters included (``sslmode``,
    ``sslrootcert``...); SQLAlchemy's ``postgresql+asyncpg://`` spelling is accepted.
    """
    import asyncpg  # here: the CLI and gateway import this module without needing a pool

    dsn = database_url.strip().replace("postgresql+asyncpg://", "postgresql://", 1)
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_keep_session)

"""The one SQLAlchemy async engine (asyncpg driver) the read side shares.

Queries are written with SQLAlchemy Core; the projector's batched writes and
the gateway's LISTEN use the asyncpg connection underneath
(:func:`raw_connection`) because multi-row ``unnest`` upserts with typed arrays
and LISTEN/NOTIFY are asyncpg features SQLAlchemy does not wrap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+asyncpg://...`` (an explicit driver is kept)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def plain_url(url: str) -> str:
    """The libpq form of ``url`` (what ``asyncpg.connect`` takes)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def create_engine(url: str, *, pool_size: int = 8) -> AsyncEngine:
    """An async engine on asyncpg; connections are checked before use (Postgres restarts)."""
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


async def driver(connection: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy async connection."""
    raw = await connection.get_raw_connection()
    return raw.driver_connection


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection from the engine's pool, returned to it afterwards."""
    async with engine.connect() as connection:
        yield await driver(connection)

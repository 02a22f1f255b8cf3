"""The one SQLAlchemy async engine (asyncpg driver) the read side shares.

Queries are written with SQLAlchemy Core; the projector's batched writes and
the gateway's LISTEN use the asyncpg connection underneath
(:func:`raw_connection`) because multi-row ``unnest`` upserts with typed arrays
and LISTEN/NOTIFY are asyncpg features SQLAlchemy does not wrap.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agentstream.errors import AgentstreamError

DATABASE_ENV = "AGENTSTREAM_DATABASE_URL"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# asyncpg reads libpq's connection and TLS parameters itself and sends any other one
# to the server as a setting (``application_name``, ``search_path``...). These are
# libpq client options, which the server would refuse ("unrecognized configuration
# parameter"); say so up front.
_UNSUPPORTED = frozenset(
    [
        "connect_timeout",
        "channel_binding",
        "gssencmode",
        "gssdelegation",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "requirepeer",
        "require_auth",
        "hostaddr",
        "load_balance_hosts",
        "replication",
        "fallback_application_name",
    ]
)


class DatabaseUrlError(AgentstreamError, ValueError):
    """A Postgres URL we cannot use; the message names the part to fix."""


def libpq_url(url: str) -> str:
    """``url`` checked, in the form ``asyncpg.connect`` takes (``postgresql://...``).

    Accepts ``postgres://``, ``postgresql://`` and ``postgresql+asyncpg://``, and
    libpq's TLS parameters as asyncpg reads them: ``sslmode`` (disable, allow,
    prefer, require, verify-ca, verify-full), ``sslrootcert`` (the CA file),
    ``sslcert``/``sslkey``/``sslpassword``/``sslcrl``. Nothing else is rewritten:
    the engine's pools (:mod:`processors.postgres`) and ``infra`` give the same
    URL to asyncpg, so every part reads it alike. Raises :class:`DatabaseUrlError`
    for what asyncpg would misread or refuse, naming it.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise DatabaseUrlError(
            f"{DATABASE_ENV}: {parts.scheme or 'no'} scheme; use postgresql://user:pw@host/db"
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    if len(params) != len(query):
        raise DatabaseUrlError(f"{DATABASE_ENV}: a query parameter is given twice: {query}")
    if "ssl" in params:  # SQLAlchemy's spelling; asyncpg would send it as a server setting
        raise DatabaseUrlError(f"{DATABASE_ENV}: use libpq's sslmode={params['ssl']}, not ssl=")
    unsupported = sorted(name for name in params if name in _UNSUPPORTED)
    if unsupported:
        raise DatabaseUrlError(
            f"{DATABASE_ENV}: {', '.join(unsupported)} is not supported by asyncpg, the "
            "driver agentstream uses; remove it (TLS: sslmode, sslrootcert, sslcert, sslkey)"
        )
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise DatabaseUrlError(
            f"{DATABASE_ENV}: sslmode={sslmode!r}; use one of {', '.join(SSLMODES)}"
        )
    if params.get("sslrootcert") == "system":
        system = ssl.get_default_verify_paths().cafile or "the system's CA bundle"
        raise DatabaseUrlError(
            f"{DATABASE_ENV}: asyncpg does not know sslrootcert=system; name the file ({system})"
        )
    for name in ("sslrootcert", "sslcert", "sslkey", "sslcrl"):
        path = params.get(name)
        if path is not None and not os.path.isfile(path):
            raise DatabaseUrlError(f"{DATABASE_ENV}: {name}={path!r} is not a readable file")
    if sslmode in ("verify-ca", "verify-full") and "sslrootcert" not in params:
        default = os.path.expanduser("~/.postgresql/root.crt")
        if not os.path.isfile(default):
            raise DatabaseUrlError(
                f"{DATABASE_ENV}: sslmode={sslmode} needs the server's CA: add "
                "sslrootcert=<CA file>"
            )
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql"))


def create_engine(url: str, *, pool_size: int = 8, search_path: str | None = None) -> AsyncEngine:
    """An async engine on asyncpg; connections are checked before use (Postgres restarts).

    asyncpg itself reads the URL (:func:`libpq_url`), as it does for the
    processors' pools: SQLAlchemy would pass libpq's query parameters
    (``sslmode``...) to ``asyncpg.connect`` as keyword arguments it has not got.
    ``search_path`` (e.g. ``"shadow, public"``) makes unqualified table names resolve to
    another schema first: a shadow backfill's projector writes its own copy of the tables.
    """
    dsn = libpq_url(url)
    settings = {"search_path": search_path} if search_path else None

    async def connect() -> Any:
        import asyncpg

        return await asyncpg.connect(dsn, server_settings=settings)

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
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

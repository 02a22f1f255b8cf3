"""Run the read models' Alembic migrations from code (no alembic.ini needed).

``agentstream api`` and the tests call :func:`upgrade` at start. The
migrations run inside one transaction that first takes a Postgres advisory
lock, so processes starting together migrate exactly once and the others wait
and then find the schema at head. The version table has its own name
(:data:`VERSION_TABLE`) so another component's Alembic history in the same
database cannot collide with ours.

For a developer's ``alembic`` command line, :func:`alembic_config` builds the
same configuration (script location inside this package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from projections.db import create_engine

VERSION_TABLE = "projections_alembic_version"
"""Alembic's version table for this history."""
_LOCK_ID = 5_551_001
"""pg_advisory_xact_lock key serialising migrations."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """The Alembic configuration of the read models."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade_sync(connection: Any, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (default: the latest)."""
    engine = create_engine(database_url, pool_size=2)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
            await connection.run_sync(_upgrade_sync, revision)
    finally:
        await engine.dispose()

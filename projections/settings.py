"""Settings of the read models and the projector, from ``AGENTSTREAM_*`` variables.

One small typed object, read from the environment in one place,
so tests build one directly with their own database URL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "postgresql://agentstream:agentstream@127.0.0.1:55432/agentstream"
"""The local Postgres that ``agentstream infra up`` starts (same as the engine's default)."""


@dataclass(frozen=True)
class ProjectionSettings:
    """Where the read models live and how the projector batches."""

    database_url: str = DEFAULT_DATABASE_URL
    """``postgresql://`` URL (``AGENTSTREAM_DATABASE_URL``); the asyncpg driver is implied."""
    max_batch_records: int = 5000
    """Most events applied in one Postgres transaction (``AGENTSTREAM_PROJECTOR_BATCH``)."""
    pool_size: int = 8
    """Connections in the SQLAlchemy pool shared by the projector and the query API."""

    def __post_init__(self) -> None:
        if self.max_batch_records < 1:
            raise ValueError(f"max_batch_records must be >= 1, got {self.max_batch_records}")
        if self.pool_size < 2:
            raise ValueError(f"pool_size must be >= 2, got {self.pool_size}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProjectionSettings:
        env = os.environ if environ is None else environ
        base = cls()
        batch = env.get("AGENTSTREAM_PROJECTOR_BATCH", "").strip()
        try:
            batch_n = int(batch) if batch else base.max_batch_records
        except ValueError:
            raise ValueError(f"AGENTSTREAM_PROJECTOR_BATCH={batch!r} is not an integer") from None
        return cls(
            database_url=env.get("AGENTSTREAM_DATABASE_URL") or base.database_url,
            max_batch_records=batch_n,
        )

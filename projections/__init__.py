"""projections: Postgres read models built from ``agentstream.events``, and their queries.

Depends on :mod:`schemas` and :mod:`streams` only. The pieces::

    settings   ProjectionSettings     database URL, batch size (AGENTSTREAM_* variables)
    db         create_engine ...      the SQLAlchemy async engine (asyncpg) the read side shares
    migrate    upgrade                Alembic migrations run from code (advisory-locked)
    tables     sessions, events ...   the tables as SQLAlchemy Core objects
    fold       BatchFold              pure: events -> row changes (status as the engine's evolve)
    writer     write_fold ...         multi-row upserts; tracking rows (offset per partition)
    projector  Projector              events topic -> read models, exactly once
    rewind     move_position          move the projector's position; a move back removes rows
    queries    QueryService           tenant-scoped reads for the HTTP API
    cursors    encode_cursor ...      opaque keyset cursors
"""

from projections.cursors import CursorError, decode_cursor, encode_cursor
from projections.db import create_engine
from projections.fold import BatchFold, PoisonEvent, SessionRow
from projections.migrate import upgrade
from projections.projector import Projector
from projections.queries import QueryService, Replay
from projections.settings import ProjectionSettings

__all__ = [
    "BatchFold",
    "CursorError",
    "PoisonEvent",
    "ProjectionSettings",
    "Projector",
    "QueryService",
    "Replay",
    "SessionRow",
    "create_engine",
    "decode_cursor",
    "encode_cursor",
    "upgrade",
]

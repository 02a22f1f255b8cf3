"""A shadow copy of one stream's read models, built beside the live ones, then swapped in.

The read-model tables hold every stream of the database (each row names its
``stream``), so the swap cannot rename schemas: it replaces this stream's rows. The
pieces, all keyed by the stream:

* the shadow schema (``backfill_<stream>``) holds tables made ``LIKE`` the live ones; a
  projector whose connections put it first on ``search_path`` fills them from the log,
  its position in the shadow ``projection_tracking`` (so a re-run resumes);
* :func:`swap` runs in one transaction: it locks the live tracking rows (the live
  projector waits; readers do not, MVCC shows them the old rows until the commit),
  waits until the shadow has applied at least what the live read models hold, keeps a
  copy of the live rows in ``backfill_old_<stream>``, replaces the live rows with the
  shadow's and sets the live tracking rows (updated in place, so the live projector's
  pending ``FOR UPDATE`` sees the new positions and skips what the shadow applied);
* the old copy stays until :func:`drop_old`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

READ_MODELS: tuple[str, ...] = (
    "sessions", "messages", "llm_calls", "tool_calls", "events", "usage_daily",
)  # fmt: skip
TRACKING = "projection_tracking"


def schema_names(stream: str) -> tuple[str, str]:
    """(shadow schema, old-copy schema) of ``stream``: identifiers Postgres accepts."""
    slug = re.sub(r"[^a-z0-9_]", "_", stream.lower())[:40]
    return f"backfill_{slug}", f"backfill_old_{slug}"


async def live_schema(connection: Any) -> str:
    """Where the live read models are: the connection's first schema (public by default)."""
    return str(await connection.fetchval("SELECT current_schema()"))


async def prepare(connection: Any, stream: str) -> bool:
    """Create the shadow schema and tables if missing; False if a swap already finished
    (the shadow is then dropped and a new build starts from nothing)."""
    shadow, _ = schema_names(stream)
    live = await live_schema(connection)
    async with connection.transaction():
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{shadow}"')
        for table in (*READ_MODELS, TRACKING):
            await connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{shadow}".{table} '
                f'(LIKE "{live}".{table} INCLUDING ALL)'
            )
        await connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{shadow}".backfill_state (stream text PRIMARY KEY,'
            " started_at timestamptz NOT NULL DEFAULT now(), swapped_at timestamptz)"
        )
        swapped = await connection.fetchval(
            f'SELECT swapped_at FROM "{shadow}".backfill_state WHERE stream = $1', stream
        )
        await connection.execute(
            f'INSERT INTO "{shadow}".backfill_state (stream) VALUES ($1) ON CONFLICT DO NOTHING',
            stream,
        )
    return swapped is None


async def positions(connection: Any, schema: str, stream: str) -> dict[int, int]:
    """partition -> last applied offset in ``schema``'s tracking table."""
    rows = await connection.fetch(
        f'SELECT partition, kafka_offset FROM "{schema}".{TRACKING} WHERE stream = $1', stream
    )
    return {int(r["partition"]): int(r["kafka_offset"]) for r in rows}


async def swap(
    connection: Any,
    stream: str,
    shadow_positions: Callable[[], Awaitable[dict[int, int]]],
    stop_shadow: Callable[[], Awaitable[None]],
    *,
    timeout_s: float = 120.0,
) -> dict[str, int]:
    """Swap the shadow rows in (see the module docstring); rows per table moved in.

    ``shadow_positions`` reads the shadow's positions (on another connection) while this
    transaction holds the live tracking rows; ``stop_shadow`` stops its projector once it
    has caught up, so the rows copied are a still picture.
    """
    shadow, old = schema_names(stream)
    live = await live_schema(connection)
    moved: dict[str, int] = {}
    async with connection.transaction():
        rows = await connection.fetch(
            f"SELECT partition, kafka_offset FROM {TRACKING} WHERE stream = $1 FOR UPDATE", stream
        )
        held = {int(r["partition"]): int(r["kafka_offset"]) for r in rows}
        waited = 0.0
        while True:
            got = await shadow_positions()
            if all(got.get(p, -1) >= o for p, o in held.items()):
                break
            if waited > timeout_s:
                raise TimeoutError(f"the shadow did not reach the live positions {held}")
            await asyncio.sleep(0.1)
            waited += 0.1
        await stop_shadow()
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{old}"')
        for table in (*READ_MODELS, TRACKING):
            await connection.execute(f'DROP TABLE IF EXISTS "{old}".{table}')
            await connection.execute(
                f'CREATE TABLE "{old}".{table} (LIKE "{live}".{table} INCLUDING ALL)'
            )
            await connection.execute(
                f'INSERT INTO "{old}".{table} SELECT * FROM "{live}".{table} WHERE stream = $1',
                stream,
            )
        for table in READ_MODELS:
            await connection.execute(f'DELETE FROM "{live}".{table} WHERE stream = $1', stream)
            status = await connection.execute(
                f'INSERT INTO "{live}".{table} SELECT * FROM "{shadow}".{table} WHERE stream = $1',
                stream,
            )
            moved[table] = int(str(status).rsplit(" ", 1)[-1])
        await connection.execute(
            f'INSERT INTO "{live}".{TRACKING} SELECT * FROM "{shadow}".{TRACKING}'
            " WHERE stream = $1 ON CONFLICT (stream, partition) DO UPDATE SET"
            " kafka_offset = EXCLUDED.kafka_offset, updated_at = now()",
            stream,
        )
        await connection.execute(
            f'UPDATE "{shadow}".backfill_state SET swapped_at = now() WHERE stream = $1', stream
        )
    await connection.execute(f'DROP SCHEMA "{shadow}" CASCADE')
    return moved


async def drop_old(connection: Any, stream: str) -> bool:
    """Drop the copy of the rows a swap replaced; False if there is none."""
    _, old = schema_names(stream)
    exists = await connection.fetchval(
        "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", old
    )
    if exists:
        await connection.execute(f'DROP SCHEMA "{old}" CASCADE')
    return bool(exists)

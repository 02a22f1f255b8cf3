"""``agentstream backfill --shadow``: rebuild one stream's read models beside the live ones,
then swap them in, while the live projector and the query API keep serving.

A projector of its own (group ``<prefix>.backfill``, connections with the shadow schema
first on ``search_path``) projects the events topic into the shadow tables
(projections/shadow.py) up to the log's end as of the start, printing events/s and an
ETA; then :func:`projections.shadow.swap` replaces the live rows in one transaction.
A crash before the swap leaves the live read models untouched, and a re-run resumes
from the shadow's own positions. The rows replaced are kept until ``--drop-old``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.settings import KafkaSettings


@dataclass
class BackfillResult:
    stream: str
    events_applied: int = 0
    seconds: float = 0.0
    swapped: dict[str, int] = field(default_factory=dict)
    """Rows moved into each live table."""
    old_copy: str = ""
    """The schema holding the rows the swap replaced."""

    @property
    def events_per_s(self) -> float:
        return self.events_applied / self.seconds if self.seconds else 0.0


def _progress_line(done: int, total: int, applied: int, elapsed: float, offsets_rate: float) -> str:
    share = 100.0 * done / total if total else 100.0
    eta = (total - done) / offsets_rate if offsets_rate > 0 else float("inf")
    eta_text = f"{eta:,.0f} s" if eta != float("inf") else "?"
    rate = applied / elapsed if elapsed else 0.0
    return (
        f"  {done:,} / {total:,} offsets ({share:.0f}%), {applied:,} events applied,"
        f" {rate:,.0f} events/s, ETA {eta_text}"
    )


async def shadow_backfill(
    settings: KafkaSettings,
    database_url: str,
    *,
    batch: int = 5000,
    timeout_s: float = 3600.0,
    progress: Callable[[str], None] = lambda line: None,
) -> BackfillResult:
    """Build the shadow, catch up, swap; see the module docstring."""
    import asyncpg

    from projections.db import create_engine, libpq_url
    from projections.migrate import upgrade
    from projections.projector import Projector
    from projections.shadow import live_schema, positions, prepare, schema_names, swap
    from streams.catalogue import Catalogue
    from streams.consumer import last_record_offsets
    from streams.offsets import OffsetResetError, describe_group

    stream = Catalogue.from_settings(settings).events.name
    group = f"{settings.topic_prefix}.backfill"
    members = (await describe_group(settings, group)).members
    if members:
        raise OffsetResetError(
            f"a backfill of {stream} is running already (group {group}: {members[0]})"
        )
    await upgrade(database_url)
    shadow, old = schema_names(stream)
    result = BackfillResult(stream, old_copy=old)
    connection = await asyncpg.connect(libpq_url(database_url))
    reader = await asyncpg.connect(libpq_url(database_url))
    engine = None
    projector = None
    try:
        if not await prepare(connection, stream):  # a finished swap's leftovers: start anew
            await connection.execute(f'DROP SCHEMA "{shadow}" CASCADE')
            await prepare(connection, stream)
        live = await live_schema(connection)
        engine = create_engine(database_url, pool_size=4, search_path=f"{shadow}, {live}")
        newest = await last_record_offsets(settings, stream)
        total = sum(o + 1 for o in newest.values() if o >= 0)
        first = sum(min(o, newest.get(p, -1)) + 1 for p, o in
                    (await positions(reader, shadow, stream)).items())  # fmt: skip
        projector = Projector(
            settings, engine, max_batch_records=batch, group_id=group, dead_letters=False
        )
        started = time.perf_counter()
        await projector.start()
        while True:
            await asyncio.sleep(1.0)
            done_at = await positions(reader, shadow, stream)
            done = sum(min(done_at.get(p, -1), o) + 1 for p, o in newest.items() if o >= 0)
            elapsed = time.perf_counter() - started
            progress(
                _progress_line(done, total, projector.applied, elapsed, (done - first) / elapsed)
            )
            if all(done_at.get(p, -1) >= o for p, o in newest.items()):
                break
            if elapsed > timeout_s:
                raise TimeoutError(f"the shadow of {stream} did not catch up in {timeout_s:.0f} s")
        progress("  caught up; swapping (the live projector waits, readers do not)")
        running = projector

        async def shadow_positions() -> dict[int, int]:
            return await positions(reader, shadow, stream)

        async def stop_shadow() -> None:
            await running.stop()

        result.swapped = await swap(connection, stream, shadow_positions, stop_shadow)
        result.events_applied = projector.applied
        result.seconds = time.perf_counter() - started
        return result
    finally:
        if projector is not None:
            await projector.stop()
        if engine is not None:
            await engine.dispose()
        await reader.close()
        await connection.close()


async def drop_old(database_url: str, stream: str) -> bool:
    """Drop the rows the last swap of ``stream`` replaced; False if there are none."""
    import asyncpg

    from projections.db import libpq_url
    from projections.shadow import drop_old as drop

    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        return await drop(connection, stream)
    finally:
        await connection.close()

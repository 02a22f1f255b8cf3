"""The engine's inbox positions as ``agentstream offsets`` reads and moves them.

The engine resumes each inbox partition from its newest committed progress record
(inbox_progress.py), never from the group's offsets, so this is where a reset of
the engine has to land. Only a move *forward* can be made safe, and only as an
explicit skip: the commands passed over are never applied. A move back is refused
(see :func:`rewind_refusal`): the engine applies each inbox record exactly once, and
the events of the records behind its position are already in the log.

Writing a progress record outside a transaction is sound when no engine runs (the
caller checks the group has no member): a read_committed reader sees a
non-transactional record, and an engine's open transaction left from a crash is
aborted by the next owner's ``init_transactions`` before it reads the newest record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from processors.engine.inbox_progress import HEADER_TYPE, Progress, read_progress
from streams.catalogue import Catalogue
from streams.clients import new_consumer, new_producer
from streams.settings import KafkaSettings


async def progress_positions(
    settings: KafkaSettings, catalogue: Catalogue, partitions: Iterable[int]
) -> dict[int, int | None]:
    """Inbox partition -> where the engine resumes it (None: no progress record yet)."""
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        found: dict[int, int | None] = {}
        for p in partitions:
            progress = await read_progress(consumer, catalogue.engine_progress.name, p)
            found[p] = progress.next_offset if progress is not None else None
        return found
    finally:
        await consumer.stop()


async def write_progress(
    settings: KafkaSettings, catalogue: Catalogue, positions: Mapping[int, int]
) -> None:
    """Record "inbox partition p is applied up to positions[p]" (no engine may run)."""
    producer = new_producer(settings, linger_ms=0)
    await producer.start()
    try:
        for p, offset in sorted(positions.items()):
            progress = Progress(p, offset)
            await producer.send_and_wait(
                catalogue.engine_progress.name,
                progress.value(),
                key=progress.key(),
                partition=p,
                headers=HEADER_TYPE,
            )
    finally:
        await producer.stop()


def rewind_refusal(rewinds: Mapping[int, tuple[int, int]]) -> str:
    """Why the engine cannot be moved back (inbox partition -> (current, asked))."""
    where = ", ".join(
        f"inbox partition {p}: {now} -> {asked}" for p, (now, asked) in sorted(rewinds.items())
    )
    return (
        f"refused: the engine cannot be moved back ({where}). It applies each inbox "
        "command exactly once and the events of the commands behind its position are "
        "already in the log: applying them again would append duplicate messages and "
        "call models and tools again. To look at the past use `agentstream replay`; to "
        "rebuild the read models use `agentstream backfill` or move the projector."
    )

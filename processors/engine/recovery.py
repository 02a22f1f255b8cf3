"""Rebuild a partition's sessions after the engine is assigned it.

Read the partition checkpoint X ("every session of p is in Postgres up to events
offset X"), then fold the events topic's partition p from X+1 to its end into
the sessions it touches, each starting from its snapshot (loaded lazily, once).
An event at or below a session's snapshot offset is already in the snapshot
and is skipped. Sessions the tail does not touch stay in Postgres until used.

Replay only folds events (``evolve_private``, evolve in place on states the
replay alone holds until it ends): it never decides, never calls a
model or a tool, and never writes to Kafka.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from agentstream.errors import AgentstreamError
from processors.core import SessionState, decode_state, evolve_private, private_copy
from processors.engine.session_cache import SessionCache
from processors.engine.snapshot_store import SnapshotStore
from schemas import Codec, SchemaError

log = logging.getLogger(__name__)


class RecoveryError(AgentstreamError):
    """The events log of a partition cannot be folded (a gap or a stuck read)."""


@dataclass(frozen=True, slots=True)
class RecoveryStats:
    """What one partition's recovery did."""

    partition: int
    """The partition."""
    checkpoint: int
    """Events offset of the checkpoint it started from (-1: none)."""
    end_offset: int
    """End of the events partition when replay finished."""
    events_replayed: int
    """Events folded into state."""
    events_skipped: int
    """Events already in a snapshot."""
    sessions_touched: int
    """Sessions loaded into memory by the replay."""
    seconds: float
    """Wall time."""


async def load_snapshots(store: SnapshotStore, cache: SessionCache, session_ids: list[str]) -> None:
    """Load the snapshots of ``session_ids`` not in ``cache`` into it (one query)."""
    missing = [s for s in dict.fromkeys(session_ids) if s not in cache]
    if not missing:
        return
    for snapshot in (await store.load(missing)).values():
        cache.put_clean(decode_state(snapshot.state), snapshot.events_offset)


async def recover_partition(
    *,
    consumer: AIOKafkaConsumer,
    events_topic: str,
    partition: int,
    store: SnapshotStore,
    cache: SessionCache,
    codec: Codec,
    stall_timeout_s: float = 60.0,
) -> RecoveryStats:
    """Fold the events after the checkpoint into ``cache``; see the module docstring.

    ``consumer`` is a group-less read_committed consumer; this assigns it the
    one events partition and leaves that partition paused (assigning nothing
    instead makes aiokafka's ``stop`` hang on its fetcher task).
    """
    started = time.perf_counter()
    tp = TopicPartition(events_topic, partition)
    checkpoint = await store.checkpoint(partition)
    consumer.assign([tp])
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, checkpoint + 1)
        replayed = skipped = 0
        # States folded so far and their newest event's offset, by session: kept apart
        # from the LRU during the replay (no reordering per event; nobody else sees
        # them, so they are folded in place), and put into it, dirty, at the end.
        live: dict[str, SessionState] = {}
        newest: dict[str, int] = {}
        position = checkpoint + 1
        last_progress = time.monotonic()
        while position < end:
            # Take everything buffered: aiokafka only fetches again once a partition's
            # buffer is drained, so draining it lets the next fetch overlap this fold.
            batches = await consumer.getmany(tp, timeout_ms=200)
            records = batches.get(tp, [])
            if records:
                decoded = []
                for record in records:
                    try:
                        name, event = codec.decode(record.value)
                    except SchemaError as error:
                        # Only the engine writes here, with our codec: this is corruption.
                        raise RecoveryError(
                            f"{events_topic}[{partition}]@{record.offset}: {error}"
                        ) from error
                    decoded.append((record.offset, name, event))
                # A session whose first event here is its SessionStarted (seq 1) has no
                # snapshot: a snapshot and the checkpoint covering it are written in one
                # Postgres transaction, so no snapshot holds an event past the checkpoint.
                await load_snapshots(
                    store,
                    cache,
                    [
                        e["session_id"]
                        for _, _, e in decoded
                        if e["seq"] > 1 and e["session_id"] not in live
                    ],
                )
                for offset, name, event in decoded:
                    session_id = event["session_id"]
                    state: SessionState | None = live.get(session_id)
                    owned = state is not None
                    if not owned:
                        state = cache.get(session_id)
                    if state is not None and event["seq"] <= state.seq:
                        skipped += 1
                        continue
                    expected = (state.seq if state is not None else 0) + 1
                    if event["seq"] != expected:
                        raise RecoveryError(
                            f"session {session_id}: event seq {event['seq']} at offset {offset}"
                            f" but the state is at seq {expected - 1}"
                        )
                    if state is not None and not owned:
                        state = private_copy(state)  # the cache's object must not change
                    live[session_id] = evolve_private(state, name, event)
                    newest[session_id] = offset
                    replayed += 1
            new_position = await consumer.position(tp)
            if new_position > position:
                position, last_progress = new_position, time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                raise RecoveryError(
                    f"{events_topic}[{partition}] replay stalled at {position} of {end}"
                )
        for session_id, state in live.items():
            cache.put_dirty(state, newest[session_id])
        return RecoveryStats(
            partition,
            checkpoint,
            end,
            replayed,
            skipped,
            len(live),
            time.perf_counter() - started,
        )
    finally:
        consumer.pause(tp)

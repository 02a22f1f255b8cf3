"""The session engine for one inbox partition: decide, append, commit, in one transaction.

For each batch of inbox records of partition p:

1. (``prepare``) decode each record (undecodable → DLQ) and load the sessions it
   names (memory → Postgres snapshot); ``decide(state, command)`` → events and
   work items (a rejection → DLQ), encoded, nothing sent yet;
2. (``send``, ``end``) in ONE Kafka transaction, on a producer whose transactional id
   belongs to inbox partition p: append the events to ``events`` p, the work items to
   ``llm-calls`` / ``tool-calls`` p, DLQ copies to the DLQ, and the next
   inbox offset to ``engine-progress`` p;
3. only once the transaction is committed do the new states replace the live
   ones (so an aborted transaction leaves memory as it was).

The engine prepares and sends batch n+1 while batch n commits (engine.py); n+1
decides on n's states, held in ``_pending`` until n commits, and is committed
only after n's transaction succeeded. Partition p has two transactional
producers used in turn, so n+1's transaction opens and writes while the
coordinator still completes n's (one producer would be refused with
CONCURRENT_TRANSACTIONS until n's markers are written).

Any failure of the transaction resets the partition: the caller rebuilds it
from the log, exactly as a new owner would, so a half-known commit outcome can
never apply a record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from processors import metrics
from processors.agents.catalog import AgentCatalog
from processors.core import SessionState, decide, encode_state, timers_of
from processors.engine.inbox_progress import HEADER_TYPE, Progress
from processors.engine.recovery import load_snapshots
from processors.engine.session_cache import SessionCache
from processors.engine.snapshot_store import Snapshot, SnapshotStore
from processors.engine.txn_writer import Headers, Placement, TxnWriter
from schemas import COMMAND_NAMES, Codec, SchemaError
from streams.catalogue import Catalogue
from streams.dlq import dead_letter_of
from streams.producer import type_headers

log = logging.getLogger(__name__)

SOURCE = "engine"

STOP_TIMEOUT_S = 5.0
"""Longest wait for a producer to stop: one whose broker is away must not hold the
engine (the next start of its transactional id fences it anyway)."""


async def stop_producers(producers: Sequence[AIOKafkaProducer]) -> None:
    """Stop ``producers``, each within :data:`STOP_TIMEOUT_S`, ignoring their errors."""
    for producer in producers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)


@dataclass(slots=True)
class BatchOutcome:
    """Counts of one processed batch."""

    records: int = 0
    events: int = 0
    work_items: int = 0
    dead_letters: int = 0
    duplicates: int = 0


Outgoing = tuple[str, bytes | None, bytes | None, Headers]
"""One record a transaction writes: topic, key, value, headers (partition: the engine's)."""


@dataclass(slots=True, eq=False)
class OpenTransaction:
    """A batch written in a transaction that is not committed yet."""

    batch: PreparedBatch
    producer: AIOKafkaProducer
    placements: list[Placement]
    sending: float
    produced: float


@dataclass(slots=True, eq=False)
class PreparedBatch:
    """A decided batch, encoded and not yet sent."""

    started: float
    next_offset: int
    """The inbox offset after the batch: the progress its transaction records."""
    outgoing: list[Outgoing] = field(default_factory=list)
    new_states: dict[str, tuple[SessionState, int]] = field(default_factory=dict)
    """Session → (its new state, index in ``outgoing`` of its last event, or -1)."""
    outcome: BatchOutcome = field(default_factory=BatchOutcome)
    decide_seconds: float = 0.0


class PartitionEngine:
    """Owns inbox partition ``partition``: its sessions, timers and transactions."""

    def __init__(
        self,
        *,
        partition: int,
        producers: tuple[AIOKafkaProducer, AIOKafkaProducer],
        catalogue: Catalogue,
        codec: Codec,
        agents: AgentCatalog,
        store: SnapshotStore,
        max_sessions: int,
    ) -> None:
        self.partition = partition
        self.producers = producers
        """Two transactional producers of partition p, used in turn: the next batch's
        transaction opens and writes on one while the other's commit completes."""
        self._turn = 0
        self.cache = SessionCache(max_sessions)
        metrics.engine_limits(catalogue.inbox.partitions, max_sessions)
        self._catalogue = catalogue
        self._codec = codec
        self._agents = agents
        self._store = store
        self.committed_events_offset = -1
        """Highest events offset committed by this owner (for checkpoints)."""
        self.next_inbox_offset: int | None = None
        """First inbox offset not applied, as of the last committed transaction."""
        self._timers: list[tuple[int, str]] = []
        self._armed: dict[str, int] = {}
        """Earliest deadline already in the heap per session: no duplicate entries."""
        self._pending: dict[str, SessionState] = {}
        """States decided by prepared batches whose transactions have not committed."""

    # ---------------------------------------------------------------- timers

    def arm(self, state: SessionState) -> None:
        """Remember the session's earliest timer (stale entries are re-checked later)."""
        timers = timers_of(state)
        if timers:
            self.arm_at(state.session_id, min(t.deadline_ms for t in timers))

    def arm_at(self, session_id: str, deadline_ms: int) -> None:
        """Look at ``session_id``'s timers again at ``deadline_ms``."""
        armed = self._armed.get(session_id)
        if armed is None or deadline_ms < armed:
            self._armed[session_id] = deadline_ms
            heapq.heappush(self._timers, (deadline_ms, session_id))

    def arm_stored(self, due: list[tuple[str, int]]) -> None:
        """Timers of sessions known only from their snapshots (after recovery)."""
        for session_id, deadline in due:
            self.arm_at(session_id, deadline)

    def due_sessions(self, now_ms: int) -> list[str]:
        """Pop the sessions with a timer due by ``now_ms`` (each once).

        The caller re-arms any timer of theirs that is still pending.
        """
        due: dict[str, None] = {}
        while self._timers and self._timers[0][0] <= now_ms:
            deadline, session_id = heapq.heappop(self._timers)
            if self._armed.get(session_id) == deadline:
                del self._armed[session_id]
                due[session_id] = None
        return list(due)

    async def state_of(self, session_id: str) -> SessionState | None:
        await load_snapshots(self._store, self.cache, [session_id])
        return self.cache.get(session_id)

    # ------------------------------------------------------------- the batch

    async def prepare(self, records: list[ConsumerRecord[Any, Any]]) -> PreparedBatch:
        """Decode, load and decide ``records``; encode what their transaction writes.

        Nothing is sent: the caller commits the batch (:meth:`commit`), possibly while it
        prepares the next one. A batch prepared while another is uncommitted sees that
        batch's states (``_pending``); if that transaction fails, the partition is rebuilt
        from the log and every prepared batch is dropped with this engine.
        """
        started = time.perf_counter()
        metrics.INBOX_AGE.observe(max(0.0, time.time() - records[0].timestamp / 1000))
        batch = PreparedBatch(started=started, next_offset=records[-1].offset + 1)
        batch.outcome.records = len(records)
        decoded: list[tuple[ConsumerRecord[Any, Any], str, dict[str, Any]] | None] = []
        errors: dict[int, tuple[str, str]] = {}
        for record in records:
            try:
                name, command = self._codec.decode(record.value)
                if name not in COMMAND_NAMES:
                    raise SchemaError(f"{name} is not a command")
                key = record.key.decode() if record.key is not None else None
                if key != command["session_id"]:
                    raise SchemaError(
                        f"key {key!r} does not match session_id {command['session_id']!r}"
                    )
                decoded.append((record, name, command))
            except (SchemaError, UnicodeDecodeError) as error:
                decoded.append(None)
                errors[record.offset] = ("undecodable", str(error))
        pending = self._pending
        await load_snapshots(
            self._store,
            self.cache,
            [
                item[2]["session_id"]
                for item in decoded
                if item and item[2]["session_id"] not in pending
            ],
        )

        outgoing = batch.outgoing
        new_states = batch.new_states
        catalogue = self._catalogue
        for record, item in zip(records, decoded, strict=True):
            if item is None:
                reason, problem = errors[record.offset]
                self._dead_letter(batch, record, reason, problem, "?")
                continue
            _, name, command = item
            session_id = command["session_id"]
            state = pending.get(session_id)
            if state is None:
                state = self.cache.get(session_id)
            try:
                decision = decide(state, name, command, self._agents)
            except Exception as error:  # a bug must not stall the partition
                log.exception("decide failed on %s@%s", name, record.offset)
                self._dead_letter(batch, record, "error", repr(error), name)
                metrics.command_counter(name, "error").inc()
                continue
            if decision.rejection is not None:
                self._dead_letter(batch, record, "rejected", decision.rejection, name)
                metrics.command_counter(name, "rejected").inc()
                continue
            if decision.duplicate or not decision.events:
                batch.outcome.duplicates += 1
                metrics.command_counter(name, "duplicate").inc()
                continue
            key = record.key
            for event_name, event in decision.events:
                outgoing.append(
                    (
                        catalogue.events.name,
                        key,
                        self._codec.encode(event_name, event),
                        type_headers(event_name),
                    )
                )
                metrics.event_counter(event_name).inc()
            last_event = len(outgoing) - 1
            for work in decision.work:
                topic = catalogue.llm_calls if work.kind == "llm" else catalogue.tool_calls
                work_name, work_record = work.record
                outgoing.append(
                    (
                        topic.name,
                        key,
                        self._codec.encode(work_name, work_record),
                        type_headers(work_name),
                    )
                )
            batch.outcome.events += len(decision.events)
            batch.outcome.work_items += len(decision.work)
            if decision.state is not None:
                new_states[session_id] = (decision.state, last_event)
                pending[session_id] = decision.state
            metrics.command_counter(name, "applied").inc()
        # How far the inbox is applied joins the same transaction as a record
        # (processors/engine/inbox_progress.py: two round trips fewer than group offsets).
        progress = Progress(self.partition, batch.next_offset)
        outgoing.append(
            (catalogue.engine_progress.name, progress.key(), progress.value(), HEADER_TYPE)
        )
        batch.decide_seconds = time.perf_counter() - started
        return batch

    async def send(self, batch: PreparedBatch) -> OpenTransaction:
        """Open a transaction on the next producer and write ``batch`` in it, until the
        broker acknowledged every record; :meth:`end` commits it.

        The caller ends transactions in the order it sent them, and sends a batch only
        once the transaction before the previous one has ended (a producer holds one
        transaction at a time). A failure leaves the transaction open: the caller
        rebuilds the partition, and the new producers' init_transactions abort it.
        """
        producer = self.producers[self._turn]
        self._turn ^= 1
        await producer.begin_transaction()
        sending = time.perf_counter()
        writer = TxnWriter(producer, self.partition)
        placements = [
            await writer.append(topic, key, value, headers)
            for topic, key, value, headers in batch.outgoing
        ]
        await writer.flush()
        return OpenTransaction(batch, producer, placements, sending, time.perf_counter())

    async def end(self, txn: OpenTransaction) -> BatchOutcome:
        """Commit ``txn``; once committed, its batch's states go live."""
        await txn.producer.commit_transaction()
        committed = time.perf_counter()
        batch = txn.batch
        # Committed: only now does the live state move on.
        self.next_inbox_offset = batch.next_offset
        pending = self._pending
        placements = txn.placements
        for session_id, (state, last_event) in batch.new_states.items():
            offset = placements[last_event].offset if last_event >= 0 else -1
            self.cache.put_dirty(state, offset)
            if offset > self.committed_events_offset:
                self.committed_events_offset = offset
            self.arm(state)
            metrics.session_ended(state)
            if pending.get(session_id) is state:  # not superseded by a later batch
                del pending[session_id]
        metrics.BATCH_SECONDS.observe(committed - batch.started)
        metrics.TRANSACTION_PHASE.labels("decide").observe(batch.decide_seconds)
        metrics.TRANSACTION_PHASE.labels("produce").observe(txn.produced - txn.sending)
        metrics.TRANSACTION_PHASE.labels("commit").observe(committed - txn.produced)
        metrics.BATCH_RECORDS.observe(batch.outcome.records)
        return batch.outcome

    async def process(self, records: list[ConsumerRecord[Any, Any]]) -> BatchOutcome:
        """Prepare, send and commit one batch (no pipelining)."""
        return await self.end(await self.send(await self.prepare(records)))

    async def stop(self) -> None:
        """Stop both producers (an open transaction is aborted by the next owner)."""
        await stop_producers(self.producers)

    def _dead_letter(
        self,
        batch: PreparedBatch,
        record: ConsumerRecord[Any, Any],
        reason: str,
        error: str,
        name: str,
    ) -> None:
        letter = dead_letter_of(record, reason=reason, error=error, source=SOURCE)
        # The DLQ is created with the same partition count, so partition p keeps
        # this shard's dead letters together (and in the same transaction).
        batch.outgoing.append((self._catalogue.dlq.name, letter.key, letter.value, letter.headers))
        batch.outcome.dead_letters += 1
        metrics.DLQ_RECORDS.labels(SOURCE, reason).inc()
        log.warning(
            "inbox %s@%s (%s) to the DLQ: %s: %s",
            record.partition,
            record.offset,
            name,
            reason,
            error,
        )

    # -------------------------------------------------------------- snapshots

    async def flush_snapshots(self) -> int:
        """Write every dirty session and the checkpoint that covers them; how many."""
        entries = self.cache.dirty_entries()
        checkpoint = self.committed_events_offset
        if not entries:
            return 0
        started = time.perf_counter()
        seqs = [entry.state.seq for entry in entries]
        rows = []
        for entry in entries:
            state = entry.state
            timers = timers_of(state)
            rows.append(
                Snapshot(
                    session_id=state.session_id,
                    tenant_id=state.tenant_id,
                    partition=self.partition,
                    seq=state.seq,
                    events_offset=entry.events_offset,
                    next_deadline_ms=min((t.deadline_ms for t in timers), default=None),
                    state=encode_state(state),
                )
            )
        await self._store.save(self.partition, rows, checkpoint)
        self.cache.mark_clean(entries, seqs)
        self.cache.evict()
        metrics.SNAPSHOTS.inc(len(rows))
        metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - started)
        label = str(self.partition)
        metrics.SESSIONS_IN_MEMORY.labels(label).set(len(self.cache))
        metrics.DIRTY_SESSIONS.labels(label).set(self.cache.dirty_count)
        return len(rows)

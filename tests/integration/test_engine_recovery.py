"""Recovery: a new owner rebuilds partitions from snapshots + the events tail, never calling
a model or a tool, and durable timers fire after a restart."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processors.agents.loader import load_agents
from processors.core import rebuild
from processors.engine.inbox_progress import read_progress
from processors.engine.partition import OpenTransaction, PartitionEngine, PreparedBatch
from processors.settings import DEFAULT_DATABASE_URL, EngineSettings
from streams.catalogue import Catalogue
from streams.consumer import end_offsets
from streams.partitioner import session_partition
from tests.integration.engine_kit import (
    check_invariants,
    command,
    kafka_settings,
    new_ids,
    produce,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration


async def _forget_snapshots(stream: str, *, keep_checkpoints: bool = False) -> None:
    connection = await asyncpg.connect(DEFAULT_DATABASE_URL)
    try:
        await connection.execute("DELETE FROM session_snapshots WHERE stream = $1", stream)
        if not keep_checkpoints:
            await connection.execute("DELETE FROM partition_checkpoints WHERE stream = $1", stream)
    finally:
        await connection.close()


async def test_rebuild_of_1000_sessions_never_calls_a_model_or_tool(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(1000)
    async with running(kafka):
        await produce(
            kafka,
            catalogue.inbox.name,
            [
                start_session(s, f"What is {i}+1 and the weather in Oslo?")
                for i, s in enumerate(ids)
            ],
        )
        sessions = await wait_for_terminal(kafka, catalogue, ids, timeout_s=120)
    check_invariants(sessions)
    events_before = len((await read_topic(kafka, catalogue.events.name)).records)

    # Every model and tool now fails on any call; the engine must rebuild from the log alone.
    failing = tmp_path / "agents.yaml"
    failing.write_text(
        textwrap.dedent("""
        models:
          sim:
            endpoints: [{provider: sim, model: sim, options: {fail_all: true}}]
    """)
    )
    await _forget_snapshots(catalogue.events.name)  # force a full replay
    async with running(kafka, agents=load_agents(str(failing)), fail_tools=True) as components:
        engine = components.engine
        assert engine is not None
        replayed = sum(stats.events_replayed for stats in engine.recoveries)
        assert replayed == events_before
        for sid in ids:
            part = next(p for p in engine.partitions.values() if sid in p.cache)
            assert part.cache.get(sid) == rebuild(sessions[sid])
        await asyncio.sleep(1.0)
        llm_items = components.executors[0].stats().started
    assert llm_items == 0  # no work item was produced by the rebuild
    assert len((await read_topic(kafka, catalogue.events.name)).records) == events_before


async def test_restart_resumes_from_checkpoint_and_snapshots(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    first, second = new_ids(100), new_ids(100)
    async with running(kafka):
        await produce(
            kafka, catalogue.inbox.name, [start_session(s, "What is 4*4?") for s in first]
        )
        await wait_for_terminal(kafka, catalogue, first)
        await asyncio.sleep(0.5)  # a snapshot flush happens every 0.2 s
    async with running(kafka) as components:
        engine = components.engine
        assert engine is not None
        # the checkpoint covered everything: nothing left to replay
        assert sum(stats.events_replayed for stats in engine.recoveries) == 0
        assert all(stats.checkpoint >= 0 for stats in engine.recoveries if stats.end_offset > 0)
        await produce(
            kafka, catalogue.inbox.name, [start_session(s, "What is 5*5?") for s in second]
        )
        # an old session is loaded lazily from its snapshot and still refuses a late result
        sessions = await wait_for_terminal(kafka, catalogue, second)
        await produce(kafka, catalogue.inbox.name, [command("UserMessage", first[0], text="more?")])
        await asyncio.sleep(1.0)
    check_invariants((await read_topic(kafka, catalogue.events.name)).by_session())
    assert all(sessions[s][-1][0] == "SessionCompleted" for s in second)
    dlq = await read_topic(kafka, catalogue.dlq.name, decode=False)
    assert len(dlq.records) == 1  # the message to an ended session was refused, once


async def test_durable_timers_fire_across_a_restart(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(
        textwrap.dedent("""
        models:
          slow:
            endpoints: [{provider: sim, model: sim, options: {latency: {kind: fixed, fixed_s: 30}}}]
        agents:
          impatient:
            model: slow
            llm_timeout_s: 1.5
          chatty:
            model: sim
            idle_timeout_s: 1.0
    """)
    )
    agents = load_agents(str(agents_file))
    slow, idle = new_ids(2)
    settings = EngineSettings(snapshot_interval_s=0.1, timer_interval_s=0.05)
    async with running(kafka, roles=("engine",), agents=agents, engine_settings=settings):
        await produce(kafka, catalogue.inbox.name, [
            start_session(slow, "hello", agent="impatient"),
            start_session(idle, "hello", agent="chatty", keep_open=True),
        ])  # fmt: skip
        await asyncio.sleep(0.5)  # requested, snapshotted; the engine stops before any deadline
    # After the restart the slow model takes 30 s: the engine's LLM timer must fire at 1.5 s
    # (armed from the snapshot), and the open session must end after 1 s idle.
    async with running(kafka, agents=agents, engine_settings=settings):
        sessions = await wait_for_terminal(kafka, catalogue, [slow, idle], timeout_s=20)
    names = [n for n, _ in sessions[slow]]
    assert names[-2:] == ["LLMCallFailed", "SessionFailed"], names
    assert "timeout" in sessions[slow][-2][1]["error"]
    assert sessions[idle][-1][0] == "SessionCompleted"
    assert sessions[idle][-1][1]["reason"] == "idle_timeout"
    assert "AssistantMessageAdded" in [n for n, _ in sessions[idle]]
    check_invariants(sessions)


async def _rewind_group_offsets(kafka_bootstrap: str, group_id: str, topic: str) -> None:
    """Commit offset 0 for every partition of ``topic`` in ``group_id`` (no engine runs)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        for _ in range(100):
            if consumer.assignment():
                break
            await consumer.getmany(timeout_ms=200)
        assignment = consumer.assignment()
        assert assignment, "never joined the engine group"
        await consumer.commit({tp: 0 for tp in assignment})
    finally:
        await consumer.stop()


async def test_the_engine_resumes_from_its_progress_records_not_group_offsets(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(40)
    async with running(kafka) as components:
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 2*9?") for s in ids])
        await wait_for_terminal(kafka, catalogue, ids)
        await produce(kafka, catalogue.inbox.name, [command("UserMessage", ids[0], text="late")])
        await asyncio.sleep(1.0)  # the refusal commits; an advisory group commit follows
        assert components.engine is not None
        group_id = components.engine.group_id
    inbox_ends = await end_offsets(kafka, catalogue.inbox.name)
    replay = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    await replay.start()
    try:
        for p, end in inbox_ends.items():
            progress = await read_progress(replay, catalogue.engine_progress.name, p)
            # every inbox record of p is applied, and the transactions say so
            assert (progress.next_offset if progress else 0) == end, (p, progress, end)
    finally:
        await replay.stop()
    events_before = len((await read_topic(kafka, catalogue.events.name)).records)

    # Group offsets are advisory: rewound to 0, they must not make the engine
    # apply anything again (the late message would be refused a second time).
    await _rewind_group_offsets(kafka_bootstrap, group_id, catalogue.inbox.name)
    async with running(kafka):
        await asyncio.sleep(1.5)
    assert len((await read_topic(kafka, catalogue.events.name)).records) == events_before
    dlq = await read_topic(kafka, catalogue.dlq.name, decode=False)
    assert len(dlq.records) == 1


async def test_a_fenced_engine_stands_still_instead_of_fencing_the_new_owner(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    p = 0
    (sid,) = [s for s in new_ids(50) if session_partition(s, catalogue.partitions) == p][:1]
    async with running(kafka) as components:
        engine = components.engine
        assert engine is not None and p in engine.lanes
        # A new owner of partition p (as after a rebalance this engine missed)
        # starts both of p's transactional ids.
        owners = [
            AIOKafkaProducer(
                bootstrap_servers=kafka_bootstrap,
                transactional_id=f"{catalogue.inbox.name}.engine.{p}{suffix}",
                enable_idempotence=True,
            )
            for suffix in ("", ".b")
        ]
        for owner in owners:
            await owner.start()  # fences this engine's producers of p
        owner = owners[0]
        try:
            await produce(kafka, catalogue.inbox.name, [start_session(sid, "What is 1+1?")])
            for _ in range(100):
                if engine.lanes[p].fenced:
                    break
                await asyncio.sleep(0.1)
            assert engine.lanes[p].fenced
            await asyncio.sleep(0.5)
            # Had the engine rebuilt p (init_transactions again), this would be fenced.
            async with owner.transaction():
                await owner.send_and_wait(catalogue.dlq.name, b"still the owner", partition=p)
        finally:
            for owner in owners:
                await owner.stop()
    events = (await read_topic(kafka, catalogue.events.name)).by_session()
    assert sid not in events  # the fenced engine applied nothing


async def test_a_batch_prepared_on_a_failed_transaction_is_never_committed(
    kafka_bootstrap: str, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane prepares and writes batch B (deciding on batch A's uncommitted states)
    while A's transaction commits. A fails: B's transaction must never be committed,
    and both batches are re-applied, once each."""
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    p = 0
    ids = [s for s in new_ids(200) if session_partition(s, catalogue.partitions) == p][:4]
    prepare, end = PartitionEngine.prepare, PartitionEngine.end
    a_committing = asyncio.Event()
    b_prepared = asyncio.Event()
    failed: list[OpenTransaction] = []
    prepared_on_a: list[PreparedBatch] = []

    async def prepare_and_watch(self: PartitionEngine, records: list[Any]) -> PreparedBatch:
        batch = await prepare(self, records)
        if self.partition == p and a_committing.is_set() and not failed:
            prepared_on_a.append(batch)
            b_prepared.set()
        return batch

    async def fail_a_once(self: PartitionEngine, txn: OpenTransaction) -> Any:
        if self.partition == p and not failed:
            a_committing.set()
            await asyncio.wait_for(b_prepared.wait(), 30)
            failed.append(txn)
            raise RuntimeError("injected: the commit of batch A failed")
        return await end(self, txn)

    monkeypatch.setattr(PartitionEngine, "prepare", prepare_and_watch)
    monkeypatch.setattr(PartitionEngine, "end", fail_a_once)
    # Pipeline whatever waits, however little (by default only a backlog is pipelined).
    pipelining = EngineSettings(snapshot_interval_s=0.2, pipeline_min_records=1)
    async with running(kafka, roles=("engine",), engine_settings=pipelining):
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 1+1?") for s in ids])
        await asyncio.wait_for(a_committing.wait(), 30)
        # Batch B: the cancellations, decided on A's (still uncommitted) sessions.
        await produce(kafka, catalogue.inbox.name, [command("Cancel", s) for s in ids])
        sessions = await wait_for_terminal(kafka, catalogue, ids, timeout_s=60)
    assert failed and prepared_on_a  # the pipeline really prepared B on top of A
    check_invariants(sessions)
    for sid in ids:
        names = [name for name, _ in sessions[sid]]
        assert names.count("SessionStarted") == 1, (sid, names)
        assert names[-1] == "SessionCancelled", (sid, names)
    dlq = await read_topic(kafka, catalogue.dlq.name, decode=False)
    assert not dlq.records  # nothing was decided twice, nothing refused


async def test_a_lane_without_a_backlog_waits_for_the_commit_and_takes_what_queued(
    kafka_bootstrap: str, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer records than ``pipeline_min_records`` queue behind batch A: nothing is
    prepared until A's commit has ended, then they all go in one transaction."""
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    p = 0
    ids = [s for s in new_ids(200) if session_partition(s, catalogue.partitions) == p][:4]
    prepare, end = PartitionEngine.prepare, PartitionEngine.end
    a_preparing, queued_behind_a, a_ended = asyncio.Event(), asyncio.Event(), asyncio.Event()
    batches: list[int] = []
    before_a_ended: list[int] = []

    async def prepare_and_watch(self: PartitionEngine, records: list[Any]) -> PreparedBatch:
        if self.partition == p:
            if not a_preparing.is_set():  # batch A: hold it until the cancels queue
                a_preparing.set()
                await asyncio.wait_for(queued_behind_a.wait(), 30)
            elif not a_ended.is_set():
                before_a_ended.append(len(records))
            batches.append(len(records))
        return await prepare(self, records)

    async def watch_end(self: PartitionEngine, txn: OpenTransaction) -> Any:
        outcome = await end(self, txn)
        if self.partition == p:
            a_ended.set()
        return outcome

    monkeypatch.setattr(PartitionEngine, "prepare", prepare_and_watch)
    monkeypatch.setattr(PartitionEngine, "end", watch_end)
    async with running(kafka, roles=("engine",)) as components:
        assert components.engine is not None
        assert len(ids) < components.engine.settings.pipeline_min_records
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 1+1?") for s in ids])
        await asyncio.wait_for(a_preparing.wait(), 30)
        await produce(kafka, catalogue.inbox.name, [command("Cancel", s) for s in ids])
        lane = components.engine.lanes[p]
        for _ in range(3000):  # up to 30 s
            if lane.pending >= len(ids):
                break
            await asyncio.sleep(0.01)
        queued = lane.pending
        assert queued >= len(ids)  # at least the four cancels wait behind A
        queued_behind_a.set()
        sessions = await wait_for_terminal(kafka, catalogue, ids, timeout_s=60)
    assert before_a_ended == []  # nothing was prepared while A committed
    assert batches[1] == queued  # what queued went in one transaction
    check_invariants(sessions)
    for sid in ids:
        assert sessions[sid][-1][0] == "SessionCancelled"

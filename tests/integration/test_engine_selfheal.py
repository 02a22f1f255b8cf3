"""Self-healing of the session engine against the real broker and Postgres.

* A lane's commit hangs (a fault injected at the transaction boundary) while a second
  engine joins: the revocation gives the lane up within ``rebalance_wait_s``, the group
  settles with every partition owned once, and every session ends with the log's
  invariants intact (the next producers of the held partition abort its transaction).
* One engine's revocation is slow while another waits to join: no rebalance storm.
* A transaction fails and the rebuild after it fails too (Kafka away at that moment):
  the rebuild is retried, liveness and readiness say so meanwhile, and turn green after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from agentstream.worker_app import Components
from processors.engine.partition import OpenTransaction, PartitionEngine
from processors.engine.service import SessionEngine
from processors.engine.takeover import PartitionTaker
from processors.settings import EngineSettings
from streams.catalogue import Catalogue
from streams.partitioner import session_partition
from tests.integration.engine_kit import (
    check_invariants,
    kafka_settings,
    new_ids,
    produce,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration

WAIT_S = 3.0
"""rebalance_wait_s of these engines: the longest a callback waits for a lane."""


async def _settled(a: SessionEngine, b: SessionEngine, partitions: int, timeout_s: float) -> float:
    """Seconds until the two engines own every partition once between them, each some."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        owned_a, owned_b = set(a.lanes), set(b.lanes)
        if (
            owned_a | owned_b == set(range(partitions))
            and not owned_a & owned_b
            and owned_a
            and owned_b
            and not a.owned.rebuilding
            and not b.owned.rebuilding
        ):
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"no settled group after {timeout_s:.0f} s: {sorted(a.lanes)} and {sorted(b.lanes)},"
        f" rebuilding {a.owned.rebuilding} and {b.owned.rebuilding}"
    )


async def test_a_commit_held_during_a_rebalance_is_given_up_and_every_session_ends(
    kafka_bootstrap: str, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    settings = EngineSettings(snapshot_interval_s=0.2, rebalance_wait_s=WAIT_S)
    first, second = new_ids(150), new_ids(150)
    end = PartitionEngine.end
    holding: set[PartitionEngine] = set()
    held, cancelled = asyncio.Event(), asyncio.Event()
    held_partition: list[int] = []

    async def hold_one_commit(self: PartitionEngine, txn: OpenTransaction) -> Any:
        if self in holding and not held.is_set():
            held_partition.append(self.partition)
            held.set()
            try:
                await asyncio.Event().wait()  # a commit that never returns
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return await end(self, txn)

    monkeypatch.setattr(PartitionEngine, "end", hold_one_commit)
    async with running(kafka, engine_settings=settings) as a:
        engine_a = a.engine
        assert engine_a is not None
        holding.update(engine_a.partitions.values())
        await produce(
            kafka, catalogue.inbox.name, [start_session(s, "What is 3*3?") for s in first]
        )
        await asyncio.wait_for(held.wait(), 30)
        joined = time.monotonic()
        async with running(kafka, roles=("engine",), engine_settings=settings) as b:
            engine_b = b.engine
            assert engine_b is not None
            settle_s = time.monotonic() - joined
            settle_s += await _settled(engine_a, engine_b, catalogue.partitions, 60)
            await produce(
                kafka, catalogue.inbox.name, [start_session(s, "What is 4*4?") for s in second]
            )
            sessions = await wait_for_terminal(kafka, catalogue, first + second, timeout_s=120)
            assert engine_a.liveness() == [] and engine_b.liveness() == []
            assert engine_a.readiness() == [] and engine_b.readiness() == []
    assert cancelled.is_set(), "the held commit was never given up"
    assert engine_a.owned.gave_up >= 1
    # Given up after WAIT_S, then one more rebalance round; far from the minutes of a
    # callback that never returns.
    assert settle_s < 6 * WAIT_S, settle_s
    check_invariants(sessions)
    print(  # the figure the report quotes (pytest -s)
        f"held partition {held_partition[0]}; group settled {settle_s:.1f} s after the second"
        f" engine joined; {len(sessions)} sessions ended"
    )


async def test_a_rebuild_that_fails_is_retried_and_health_says_so_meanwhile(
    kafka_bootstrap: str, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    p = 1
    ids = [s for s in new_ids(300) if session_partition(s, catalogue.partitions) == p][:6]
    settings = EngineSettings(snapshot_interval_s=0.2, stall_after_s=1.0, rebuild_backoff_max_s=1.0)
    end, take = PartitionEngine.end, PartitionTaker.take
    failed_commit = asyncio.Event()
    rebuild_failures: list[int] = []

    async def fail_one_commit(self: PartitionEngine, txn: OpenTransaction) -> Any:
        if self.partition == p and not failed_commit.is_set():
            failed_commit.set()
            raise RuntimeError("injected: the commit failed")
        return await end(self, txn)

    async def kafka_away_for_a_while(self: PartitionTaker, partition: int) -> PartitionEngine:
        if partition == p and failed_commit.is_set() and len(rebuild_failures) < 4:
            rebuild_failures.append(partition)
            raise KafkaConnectionError("injected: no broker answers")
        return await take(self, partition)

    monkeypatch.setattr(PartitionEngine, "end", fail_one_commit)
    monkeypatch.setattr(PartitionTaker, "take", kafka_away_for_a_while)
    async with running(kafka, engine_settings=settings) as components:
        engine = components.engine
        assert engine is not None
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 5*5?") for s in ids])
        red: list[str] = []
        for _ in range(200):  # up to 20 s
            red = [line for line in engine.liveness() if line.startswith(f"partition {p}:")]
            if red:
                break
            await asyncio.sleep(0.1)
        assert red and "rebuild failing: KafkaConnectionError" in red[0], engine.liveness()
        assert any(f"partition {p}: rebuilding" in line for line in engine.readiness())
        sessions = await wait_for_terminal(kafka, catalogue, ids, timeout_s=60)
        assert len(rebuild_failures) == 4
        await asyncio.sleep(0.5)
        assert engine.liveness() == [] and engine.readiness() == []
    check_invariants(sessions)
    for sid in ids:
        names = [name for name, _ in sessions[sid]]
        assert names.count("SessionStarted") == 1 and names[-1] == "SessionCompleted", names


async def test_a_slow_revocation_does_not_set_off_a_rebalance_storm(
    kafka_bootstrap: str,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One engine's revocation is slow (a 3 s commit) while a second engine waits in
    JoinGroup: the waiting engine must not commit advisory offsets meanwhile (they fail
    with ILLEGAL_GENERATION and aiokafka rejoins as a new member, again and again)."""
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    settings = EngineSettings(snapshot_interval_s=0.2)  # advisory commits every 0.2 s
    ids = new_ids(150)
    end = PartitionEngine.end
    holding: set[PartitionEngine] = set()
    held = asyncio.Event()

    async def slow_commit(self: PartitionEngine, txn: OpenTransaction) -> Any:
        if self in holding and not held.is_set():
            held.set()
            await asyncio.sleep(3.0)  # slow, not stuck: within rebalance_wait_s
        return await end(self, txn)

    monkeypatch.setattr(PartitionEngine, "end", slow_commit)
    with caplog.at_level(logging.INFO, logger="aiokafka.consumer.group_coordinator"):
        async with running(kafka, engine_settings=settings) as a:
            assert a.engine is not None
            holding.update(a.engine.partitions.values())
            await produce(
                kafka, catalogue.inbox.name, [start_session(s, "What is 6*6?") for s in ids]
            )
            await asyncio.wait_for(held.wait(), 30)
            async with running(kafka, roles=("engine",), engine_settings=settings):
                sessions = await wait_for_terminal(kafka, catalogue, ids, timeout_s=60)
                await asyncio.sleep(3.0)  # a storm would go on rebalancing meanwhile
    group = f"{catalogue.prefix}.engine"
    lines = [r.getMessage() for r in caplog.records]
    joins = [line for line in lines if line.startswith(f"Joined group '{group}'")]
    illegal = [line for line in lines if "IllegalGeneration" in line and group in line]
    assert not illegal, illegal[:3]
    assert len(joins) <= 4, joins  # A alone, then A and B (and at most one more round)
    assert engine_gave_up(a) == 0  # slow is not stuck: nothing was given up
    check_invariants(sessions)


def engine_gave_up(components: Components) -> int:
    assert components.engine is not None
    return components.engine.owned.gave_up

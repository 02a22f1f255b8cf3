"""The chaos suite: real workers on three brokers, under load, faults injected.

Each scenario (``run_scenario``) prints its figures and checks the whole log:
contiguous seq, no event id twice, one terminal event, at most one result per
call, nothing lost. Exactly-once rests on transactional ids per inbox partition
(a new owner's ``init_transactions`` fences the old producers) and on
read_committed readers, so a fenced zombie's writes must never be visible.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstream.worker_processes import wait_until_owned
from infra import kafka, local, postgres
from streams.catalogue import Catalogue
from streams.consumer import GROUP_SESSION_TIMEOUT_MS
from tests.chaos.scenario import (
    Workers,
    java_string_hash,
    leader_of,
    run_scenario,
    settings_of,
    transaction_coordinator,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_java_string_hash_matches_java() -> None:
    # What Java's String.hashCode returns for these (the last is Integer.MIN_VALUE).
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -2147483648


@pytest.fixture
def workers(catalogue: Catalogue, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(settings_of(catalogue, kafka_bootstrap), tmp_path / "logs")
    yield pool
    pool.stop_all()


async def _owned(workers: Workers, partitions: int, ports: list[int] | None = None) -> None:
    chosen = [workers.running[p] for p in ports] if ports else list(workers.running.values())
    await asyncio.to_thread(wait_until_owned, chosen, partitions, 120.0)


async def test_workers_killed_with_sigkill(
    catalogue: Catalogue, kafka_bootstrap: str, workers: Workers
) -> None:
    workers.start(6270, 6271)
    await _owned(workers, catalogue.partitions)

    async def fault() -> None:
        for port in (6270, 6271):
            workers.running[port].kill(signal.SIGKILL)
            workers.running[port].process.wait()
            workers.start(port)
            await _owned(workers, catalogue.partitions)
            await asyncio.sleep(1.0)

    await run_scenario("kill -9 of workers", catalogue, kafka_bootstrap, fault)


async def test_a_zombie_worker_is_fenced(
    catalogue: Catalogue, kafka_bootstrap: str, workers: Workers
) -> None:
    """SIGSTOP past the group session timeout: its partitions move; on SIGCONT its
    producers are fenced and nothing it still had in flight becomes visible."""
    zombie, survivor = workers.start(6272, 6273)
    await _owned(workers, catalogue.partitions)

    async def fault() -> None:
        zombie.kill(signal.SIGSTOP)
        try:
            await asyncio.to_thread(
                wait_until_owned,
                [survivor],
                catalogue.partitions,
                60.0 + GROUP_SESSION_TIMEOUT_MS / 1000,
            )
            await asyncio.sleep(2.0)
        finally:
            zombie.kill(signal.SIGCONT)
        await _owned(workers, catalogue.partitions)

    await run_scenario("zombie worker", catalogue, kafka_bootstrap, fault)


async def test_partition_leader_and_transaction_coordinator_brokers_killed(
    catalogue: Catalogue, kafka_bootstrap: str, workers: Workers
) -> None:
    workers.start(6274, 6275)
    await _owned(workers, catalogue.partitions)
    cluster = local.kafka_cluster(3)

    async def kill_and_restart(node_id: int) -> None:
        assert kafka.kill_node(cluster.node(node_id), signal.SIGKILL) is not None
        await asyncio.sleep(5.0)
        restarted = await asyncio.to_thread(local.ensure_up, brokers=3)
        assert restarted.started == (f"kafka node {node_id}",), restarted

    async def fault() -> None:
        await kill_and_restart(await leader_of(kafka_bootstrap, catalogue.inbox.name, 0))
        await asyncio.sleep(2.0)
        coordinator = await transaction_coordinator(
            kafka_bootstrap, f"{catalogue.inbox.name}.engine.0"
        )
        await kill_and_restart(coordinator)

    await run_scenario("leader and coordinator brokers", catalogue, kafka_bootstrap, fault)


async def test_postgres_restarted_mid_run(
    catalogue: Catalogue, kafka_bootstrap: str, workers: Workers
) -> None:
    workers.start(6276, 6277)
    await _owned(workers, catalogue.partitions)
    pg = local.pg_cluster()

    async def fault() -> None:
        await asyncio.to_thread(postgres.stop, pg, print)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(postgres.start, pg, print)

    await run_scenario("Postgres restarted", catalogue, kafka_bootstrap, fault)


async def test_scale_one_to_three_to_one(
    catalogue: Catalogue, kafka_bootstrap: str, workers: Workers
) -> None:
    workers.start(6278)
    await _owned(workers, catalogue.partitions)

    async def fault() -> None:
        workers.start(6279, 6280)
        await _owned(workers, catalogue.partitions)
        await asyncio.sleep(2.0)
        for port in (6279, 6280):
            assert workers.running.pop(port).stop() == 0  # graceful hand-over
        await _owned(workers, catalogue.partitions, [6278])

    await run_scenario("scale 1 -> 3 -> 1", catalogue, kafka_bootstrap, fault)

"""Workers killed with SIGKILL mid-batch, and workers leaving and returning, under load.

Real ``agentstream worker`` processes (faust chassis), real broker and Postgres.
Afterwards the log must be clean: every session has contiguous seq, no event id
twice, exactly one terminal event, and no call with two results.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import textwrap
from pathlib import Path

import pytest

from agentstream.loadgen import run_sessions
from agentstream.worker_processes import WorkerProcess, start_worker, wait_until_owned
from schemas import TERMINAL_EVENT_NAMES
from streams.catalogue import Catalogue
from tests.integration.engine_kit import check_invariants, kafka_settings, read_topic

pytestmark = pytest.mark.integration

AGENTS = textwrap.dedent("""
    models:
      sim:
        endpoints:
          - provider: sim
            model: sim
            options: {latency: {kind: lognormal, median_s: 0.02, p99_s: 0.2}}
""")


def _workers(
    catalogue: Catalogue, bootstrap: str, tmp_path: Path, ports: list[int]
) -> list[WorkerProcess]:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    env = dict(os.environ, AGENTSTREAM_AGENTS=str(agents), AGENTSTREAM_SNAPSHOT_INTERVAL_S="0.5")
    kafka = kafka_settings(catalogue, bootstrap)
    return [start_worker(kafka, port, tmp_path / "logs", env=env) for port in ports]


async def _check_log(catalogue: Catalogue, bootstrap: str, expected_sessions: int) -> None:
    kafka = kafka_settings(catalogue, bootstrap)
    sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
    check_invariants(sessions)
    ended = [s for s, events in sessions.items() if events[-1][0] in TERMINAL_EVENT_NAMES]
    assert len(sessions) == expected_sessions
    assert len(ended) == expected_sessions


async def _kill_loop(
    workers: list[WorkerProcess],
    kills: int,
    catalogue: Catalogue,
    bootstrap: str,
    tmp_path: Path,
    stop: asyncio.Event,
) -> int:
    done = 0
    rng = random.Random(7)
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(1.0, 2.5))
        if stop.is_set():
            break
        victim = rng.randrange(len(workers))
        workers[victim].kill(signal.SIGKILL)
        workers[victim].process.wait()
        done += 1
        replacement = _workers(catalogue, bootstrap, tmp_path, [workers[victim].port])[0]
        workers[victim] = replacement
        await asyncio.to_thread(wait_until_owned, workers, catalogue.partitions, 120.0)
    return done


@pytest.mark.parametrize("kills", [int(os.environ.get("AGENTSTREAM_CHAOS_KILLS", "2"))])
async def test_kill_9_mid_batch_repeatedly(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path, kills: int
) -> None:
    workers = _workers(catalogue, kafka_bootstrap, tmp_path, [6170, 6171])
    try:
        await asyncio.to_thread(wait_until_owned, workers, catalogue.partitions, 120.0)
        stop = asyncio.Event()
        kafka = kafka_settings(catalogue, kafka_bootstrap)
        load = asyncio.create_task(run_sessions(kafka, 1500, concurrency=64, timeout_s=240))
        killed = await _kill_loop(workers, kills, catalogue, kafka_bootstrap, tmp_path, stop)
        report = await load
        stop.set()
        assert killed == kills
        assert report.timed_out == 0, report
        assert report.outcomes == {"SessionCompleted": 1500}
    finally:
        for worker in workers:
            worker.stop()
    await _check_log(catalogue, kafka_bootstrap, 1500)


async def test_a_worker_leaves_and_returns_under_load(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    workers = _workers(catalogue, kafka_bootstrap, tmp_path, [6172, 6173])
    try:
        await asyncio.to_thread(wait_until_owned, workers, catalogue.partitions, 120.0)
        kafka = kafka_settings(catalogue, kafka_bootstrap)
        load = asyncio.create_task(run_sessions(kafka, 1500, concurrency=64, timeout_s=240))
        await asyncio.sleep(2.0)
        assert (
            workers[1].stop() == 0
        )  # graceful: SIGTERM, snapshots flushed, partitions handed over
        await asyncio.to_thread(wait_until_owned, workers[:1], catalogue.partitions, 60.0)
        await asyncio.sleep(2.0)
        workers[1] = _workers(catalogue, kafka_bootstrap, tmp_path, [6173])[0]
        await asyncio.to_thread(wait_until_owned, workers, catalogue.partitions, 120.0)
        assert workers[1].engine_partitions(), "the returning worker got partitions back"
        recoveries = (workers[1].health() or {})["engine"]["recoveries"]
        # rebuilt from a checkpoint (snapshots) plus the tail, not from the start of the log
        assert recoveries and all(r["checkpoint"] >= 0 for r in recoveries if r["end_offset"] > 0)
        report = await load
        assert report.timed_out == 0, report
        assert report.outcomes == {"SessionCompleted": 1500}
    finally:
        for worker in workers:
            worker.stop()
    await _check_log(catalogue, kafka_bootstrap, 1500)

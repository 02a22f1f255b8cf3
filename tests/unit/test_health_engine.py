"""The engine's health model and self-healing bookkeeping, on real lanes and a real event
loop with a fake clock, fake engines, consumer and rebuilds (no Kafka): each condition
is made to happen, turns the verdict red, and turns it green again when it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from processors.engine.health import (
    CallbackWatch,
    Healing,
    healing_problems,
    lane_problems,
    readiness_problems,
    task_problems,
)
from processors.engine.lane import Lane
from processors.engine.ownership import Ownership
from processors.engine.partition import PartitionEngine
from processors.engine.takeover import PartitionTaker
from processors.settings import EngineSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Record:
    offset: int


@dataclass
class FakeEngine:
    """What lanes and ownership touch of a PartitionEngine."""

    partition: int
    next_inbox_offset: int | None = 0
    stopped: bool = False
    flushed: int = 0

    async def flush_snapshots(self) -> int:
        self.flushed += 1
        return 0

    async def stop(self) -> None:
        self.stopped = True


class Commits:
    """A lane's process function whose commits the test holds and releases."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.cancelled = 0
        self.fail_next: Exception | None = None

    async def __call__(self, lane: Lane, records: list[Any]) -> None:
        self.started.set()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        lane.committed()


def lane_of(p: int, commits: Commits, clock: FakeClock | None = None) -> Lane:
    engine = cast(PartitionEngine, FakeEngine(p))
    return Lane(engine, commits, max_batch=100, clock=clock or FakeClock())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lane_with_work_and_no_commit_is_stalled_until_it_commits() -> None:
    clock, commits = FakeClock(), Commits()
    commits.gate.clear()
    lane = lane_of(0, commits, clock)
    try:
        clock.now += 500  # idle for long: owes nothing
        assert lane_problems({0: lane}, clock.now, 60) == []
        lane.push([Record(0), Record(1)])
        await commits.started.wait()  # the batch is under way, its commit held
        clock.now += 59
        assert lane_problems({0: lane}, clock.now, 60) == []
        clock.now += 2
        (problem,) = lane_problems({0: lane}, clock.now, 60)
        assert problem.startswith("partition 0: 0 records waiting, no commit for 61 s")
        assert "waiting in" in problem and "__call__" in problem  # where it is stuck
        lane.rebuild_error = "KafkaConnectionError: no broker"
        assert "rebuild failing: KafkaConnectionError" in lane_problems({0: lane}, clock.now, 60)[0]
        lane.rebuild_error = None
        commits.gate.set()
        await settle()
        assert lane_problems({0: lane}, clock.now, 60) == []
    finally:
        await lane.close(1.0)


async def test_a_lane_whose_task_died_is_reported() -> None:
    commits = Commits()
    commits.fail_next = RuntimeError("a bug")
    lane = lane_of(3, commits)
    lane.push([Record(0)])
    await settle()
    assert lane.ended() == "RuntimeError: a bug"
    assert lane_problems({3: lane}, 0.0, 60) == ["partition 3: lane stopped (RuntimeError: a bug)"]
    assert await lane.close(1.0) is True  # closing a dead lane does not raise its error


async def test_close_gives_a_stuck_batch_up_after_the_bound() -> None:
    commits = Commits()
    commits.gate.clear()
    lane = lane_of(1, commits)
    lane.push([Record(0)])
    await commits.started.wait()
    began = asyncio.get_running_loop().time()
    assert await lane.close(0.2) is False
    assert asyncio.get_running_loop().time() - began < 1.0
    await settle()
    assert lane.abandoned and commits.cancelled == 1
    assert lane.ended() is None  # given up on purpose: not a dead lane


def test_a_rebalance_callback_is_stuck_past_its_limit_and_fine_after() -> None:
    clock = FakeClock()
    watch = CallbackWatch(clock)
    with watch.running("revoking partitions [0, 1]"):
        clock.now += 29
        assert watch.problem(clock.now, 30) is None
        clock.now += 2
        problem = watch.problem(clock.now, 30)
        assert problem is not None
        assert problem.startswith(
            "rebalance callback (revoking partitions [0, 1]) running for 31 s"
        )
    assert watch.problem(clock.now, 30) is None


def test_partitions_rebuilding_too_long_and_readiness() -> None:
    healing = {2: Healing(since=100.0, error="OSError: Postgres away")}
    assert healing_problems(healing, 150.0, 60) == []
    assert healing_problems(healing, 161.0, 60) == [
        "partition 2: assigned 61 s ago and not rebuilt (limit 60 s); last attempt:"
        " OSError: Postgres away"
    ]
    assert readiness_problems(False, {}, {}) == ["engine: no partition assignment yet"]
    assert readiness_problems(True, {}, healing) == [
        "partition 2: assigned, not rebuilt yet (last attempt: OSError: Postgres away)"
    ]
    assert readiness_problems(True, {}, {}) == []


async def test_an_engine_loop_that_ended_is_reported() -> None:
    async def fails() -> None:
        raise ConnectionError("gone")

    async def runs() -> None:
        await asyncio.sleep(10)

    ended = asyncio.create_task(fails(), name="engine-timers")
    running = asyncio.create_task(runs(), name="engine-run")
    await settle()
    assert task_problems([ended, running]) == [
        "engine loop engine-timers ended: ConnectionError('gone')"
    ]
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


# ----------------------------------------------------------------- ownership


@dataclass
class FakeConsumer:
    calls: list[tuple[str, int, int | None]] = field(default_factory=list)

    def seek(self, tp: Any, offset: int) -> None:
        self.calls.append(("seek", tp.partition, offset))

    def pause(self, tp: Any) -> None:
        self.calls.append(("pause", tp.partition, None))

    def resume(self, tp: Any) -> None:
        self.calls.append(("resume", tp.partition, None))


class FakeTaker:
    """Rebuilds that take ``delay_s`` and fail the first ``failures`` times per partition."""

    def __init__(self, delay_s: float = 0.0, failures: int = 0) -> None:
        self.delay_s = delay_s
        self.failures = failures
        self.cancelled: list[int] = []

    async def take_until_done(
        self, p: int, failed: Callable[[str | None], None] = lambda _: None
    ) -> PartitionEngine:
        try:
            for attempt in range(self.failures):
                failed(f"OSError: attempt {attempt + 1}")
                await asyncio.sleep(0.01)
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(p)
            raise
        failed(None)
        return cast(PartitionEngine, FakeEngine(p, next_inbox_offset=10 * p))


def ownership(wait_s: float, taker: FakeTaker, commits: Commits) -> tuple[Ownership, FakeConsumer]:
    owned = Ownership(EngineSettings(rebalance_wait_s=wait_s), "inbox", commits)
    consumer = FakeConsumer()
    owned.consumer = cast(Any, consumer)
    owned.taker = cast(PartitionTaker, taker)
    return owned, consumer


async def test_a_revocation_gives_a_stuck_lane_up_within_the_bound() -> None:
    commits = Commits()
    owned, _ = ownership(0.3, FakeTaker(), commits)
    await owned.on_assigned([0, 1])
    assert sorted(owned.lanes) == [0, 1]
    stuck = owned.lanes[0]
    commits.gate.clear()
    stuck.push([Record(0)])
    await commits.started.wait()
    began = asyncio.get_running_loop().time()
    await asyncio.wait_for(owned.on_revoked([0, 1]), 5)
    assert asyncio.get_running_loop().time() - began < 2.0
    assert sorted(owned.lanes) == [1]  # the idle lane is kept until the assignment
    assert owned.gave_up == 1 and stuck.abandoned
    await settle()
    assert commits.cancelled == 1
    assert cast(FakeEngine, stuck.engine).stopped  # its producers are stopped
    assert cast(FakeEngine, owned.lanes[1].engine).flushed == 1
    # The partition stays ours: the assignment rebuilds it and seeks its progress.
    commits.gate.set()
    await owned.on_assigned([0, 1])
    assert sorted(owned.lanes) == [0, 1] and owned.lanes[0] is not stuck
    await owned.close_lanes()
    await owned.stop_engines()


async def test_slow_rebuilds_do_not_hold_the_assignment_and_join_when_done() -> None:
    commits = Commits()
    taker = FakeTaker(delay_s=0.6)
    owned, consumer = ownership(0.1, taker, commits)
    began = asyncio.get_running_loop().time()
    await owned.on_assigned([0, 1])
    assert asyncio.get_running_loop().time() - began < 0.5  # returned at the bound
    assert owned.started.is_set() and owned.lanes == {} and owned.rebuilding == [0, 1]
    assert ("pause", 0, None) in consumer.calls and ("pause", 1, None) in consumer.calls
    assert owned.readiness() == [
        "partition 0: assigned, not rebuilt yet",
        "partition 1: assigned, not rebuilt yet",
    ]
    # A rebalance takes partition 1 away meanwhile: its rebuild is cancelled.
    await owned.on_revoked([0, 1])
    await owned.on_assigned([0])
    await settle()
    assert taker.cancelled == [1] and owned.rebuilding == [0]
    await asyncio.sleep(0.8)
    assert sorted(owned.lanes) == [0] and owned.rebuilding == []
    assert consumer.calls[-2:] == [("seek", 0, 0), ("resume", 0, None)]
    assert owned.readiness() == []
    await owned.close_lanes()
    await owned.stop_engines()


async def test_a_failing_rebuild_is_retried_and_shows_until_it_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commits = Commits()
    taker = FakeTaker(delay_s=0.3, failures=2)
    owned, consumer = ownership(0.05, taker, commits)
    await owned.on_assigned([2])
    await asyncio.sleep(0.05)
    assert owned.healing[2].error is not None and "OSError" in owned.healing[2].error
    assert any("OSError" in problem for problem in owned.readiness())
    clock = owned.healing[2].since + owned.settings.stall_after_s + 1
    assert owned.liveness(clock)[0].startswith("partition 2: assigned 61 s ago and not rebuilt")
    await asyncio.sleep(0.5)
    assert sorted(owned.lanes) == [2] and owned.readiness() == [] and owned.liveness(clock) == []
    assert ("seek", 2, 20) in consumer.calls
    await owned.close_lanes()
    await owned.stop_engines()


async def test_a_dead_lane_is_replaced_by_a_rebuild() -> None:
    commits = Commits()
    owned, _ = ownership(0.5, FakeTaker(), commits)
    await owned.on_assigned([3])
    dead = owned.lanes[3]
    commits.fail_next = RuntimeError("a bug")
    dead.push([Record(30)])  # rebuilt at progress 30 (FakeTaker: 10 * p)
    await settle()
    assert owned.liveness(0.0) == ["partition 3: lane stopped (RuntimeError: a bug)"]
    await owned.revive_stopped_lanes()
    await asyncio.sleep(0.05)
    assert owned.lanes[3] is not dead and owned.liveness(0.0) == []
    await owned.close_lanes()
    await owned.stop_engines()


async def test_take_until_done_retries_with_growing_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.engine import takeover

    monkeypatch.setattr(takeover, "FIRST_BACKOFF_S", 0.01)
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the pauses, recorded, not waited
    taker = PartitionTaker(**{name: None for name in (  # type: ignore[arg-type]
        "kafka", "catalogue", "codec", "agents", "store", "replay_consumer", "group_consumer"
    )}, max_sessions=10, backoff_max_s=0.03)  # fmt: skip
    outcomes: list[Exception] = [OSError("Postgres away"), ConnectionError("no broker")] * 2
    built = cast(PartitionEngine, FakeEngine(5))

    async def take(p: int) -> PartitionEngine:
        if outcomes:
            raise outcomes.pop(0)
        return built

    monkeypatch.setattr(taker, "take", take)
    heard: list[str | None] = []
    assert await taker.take_until_done(5, heard.append) is built
    assert pauses == [0.01, 0.02, 0.03, 0.03]  # doubling, capped at backoff_max_s
    assert heard == [
        "OSError: Postgres away",
        "ConnectionError: no broker",
        "OSError: Postgres away",
        "ConnectionError: no broker",
        None,
    ]

"""Which inbox partitions a session engine owns, and the lanes it runs for them.

The engine group's rebalance callbacks land here. A callback holds the whole
group (no member gets partitions until every member's callbacks return), so
none of them waits more than ``EngineSettings.rebalance_wait_s`` for anything:

* revocation holds each lane between batches (eager rebalancing revokes
  everything, then re-assigns: state and producers are kept until the
  assignment says which partitions really move). A lane whose batch under way
  does not finish in time is given up: its task is cancelled and it is
  forgotten. Its open transaction is aborted, or its commit completed, by
  whoever starts the partition's producers next, before they read the log;
* assignment drops the lanes of partitions that moved away (the same bound),
  keeps the others, and rebuilds the new ones in the background
  (:meth:`Ownership.heal`): each is paused until rebuilt, the callback waits
  for the rebuilds at most the bound, and later ones get their lane, position
  and fetching when they finish. A rebuild retries until it works
  (takeover.py), so a partition never stays without a lane until a restart.

Health (health.py) reads the callback under way, the lanes and the rebuilds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from processors import metrics
from processors.engine import health
from processors.engine.health import CallbackWatch, Healing
from processors.engine.lane import Lane, Process
from processors.engine.takeover import PartitionTaker
from processors.engine.watchdog import nag_while, task_stack
from processors.settings import EngineSettings

log = logging.getLogger(__name__)


class Ownership:
    """The lanes of the partitions an engine owns, and those it is rebuilding."""

    def __init__(self, settings: EngineSettings, inbox_topic: str, process: Process) -> None:
        self.settings = settings
        self.inbox_topic = inbox_topic
        self.process = process
        self.lanes: dict[int, Lane] = {}
        self.healing: dict[int, Healing] = {}
        """Partitions assigned to us and being rebuilt in the background."""
        self.lock = asyncio.Lock()
        """Held while the set of lanes changes (callbacks, rebuilds) and while fetched
        records are handed to lanes."""
        self.callback = CallbackWatch()
        self.gave_up = 0
        """Lanes cancelled because their batch outlasted ``rebalance_wait_s``."""
        self.started = asyncio.Event()
        """Set once the first assignment has been taken (or handed to rebuilds)."""
        self.settled = False
        """From the end of an assignment to the start of the next revocation: the only
        time this member's group generation is sure to be current (see
        ``SessionEngine._commit_group_offsets``)."""
        self.consumer: AIOKafkaConsumer | None = None
        self.taker: PartitionTaker | None = None
        self._closing = False
        self._chores: set[asyncio.Task[None]] = set()
        """Engines of given-up lanes being stopped (no callback waits for them)."""

    @property
    def rebuilding(self) -> list[int]:
        """Partitions assigned and not rebuilt yet."""
        return sorted(self.healing)

    def tp(self, p: int) -> TopicPartition:
        return TopicPartition(self.inbox_topic, p)

    # --------------------------------------------------------------- health

    def liveness(self, now: float) -> list[str]:
        stall = self.settings.stall_after_s
        problems = health.lane_problems(self.lanes, now, stall)
        problems += health.healing_problems(self.healing, now, stall)
        stuck = self.callback.problem(now, self.settings.rebalance_stuck_after_s)
        if stuck is not None:
            problems.append(stuck)
        return problems

    def readiness(self) -> list[str]:
        return health.readiness_problems(self.started.is_set(), self.lanes, self.healing)

    # ------------------------------------------------------------ revocation

    async def on_revoked(self, partitions: list[int]) -> None:
        self.settled = False
        with self.callback.running(f"revoking partitions {sorted(partitions)}"):
            async with self.lock:
                lanes = [self.lanes[p] for p in partitions if p in self.lanes]
                await asyncio.gather(*(self._settle(lane) for lane in lanes))

    async def _settle(self, lane: Lane) -> None:
        """Hold ``lane`` between batches and flush its snapshots, within the bound;
        give the lane up if its batch does not finish in time."""
        held = False
        try:
            async with (
                asyncio.timeout(self.settings.rebalance_wait_s),
                nag_while(f"revoking partition {lane.partition}", lane.stack),
                lane.between_batches(),
            ):
                held = True
                with contextlib.suppress(Exception):
                    await lane.engine.flush_snapshots()
        except TimeoutError:
            if held:  # only the snapshots were late: the next owner replays a longer tail
                log.warning("partition %d: snapshot flush cut short", lane.partition)
            else:
                self.give_up(lane, "its batch under way")

    def give_up(self, lane: Lane, what: str) -> None:
        """Cancel a lane stuck in ``what`` (lane.py ``abandon``) and forget it; if its
        partition stays ours, the assignment rebuilds it from the log."""
        p = lane.partition
        log.error(
            "partition %d: %s did not finish within %g s; giving the lane up (rebuilt from"
            " the log if the partition stays here); it waited in %s",
            p,
            what,
            self.settings.rebalance_wait_s,
            lane.stack(),
        )
        lane.abandon()
        if self.lanes.get(p) is lane:
            del self.lanes[p]
        self.gave_up += 1
        self._chore(lane.engine.stop())

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # ------------------------------------------------------------ assignment

    async def on_assigned(self, partitions: list[int]) -> None:
        consumer = self.consumer
        assert consumer is not None
        with self.callback.running(f"taking partitions {sorted(partitions)}"):
            async with self.lock:
                for p in [p for p in self.lanes if p not in partitions]:
                    await self._drop_lane(p)
                for p in [p for p, lane in self.lanes.items() if lane.fenced]:
                    await self._drop_lane(p)  # fenced: whatever it holds is stale
                for p in [p for p in self.healing if p not in partitions]:
                    task = self.healing.pop(p).task
                    if task is not None:
                        task.cancel()  # its producers are stopped (takeover.py)
                for p in partitions:
                    lane = self.lanes.get(p)
                    if lane is not None:
                        # Consume from the engine's own progress, never from the group's
                        # (advisory) offsets: a kept lane resumes after what it queued.
                        consumer.seek(self.tp(p), lane.position or 0)
                    else:
                        consumer.pause(self.tp(p))  # the rebuild seeks and resumes it
                        if p not in self.healing:
                            self.heal(p)
                metrics.OWNED_PARTITIONS.set(len(self.lanes))
            # Without the lock: kept lanes go on while the others are rebuilt.
            rebuilding = [h.task for h in self.healing.values() if h.task is not None]
            if rebuilding:
                async with nag_while("taking partitions", lambda: task_stack(rebuilding[0])):
                    _, late = await asyncio.wait(rebuilding, timeout=self.settings.rebalance_wait_s)
                if late:
                    log.warning(
                        "partitions %s not rebuilt within %g s: they go on rebuilding,"
                        " paused, while the group moves on",
                        self.rebuilding,
                        self.settings.rebalance_wait_s,
                    )
        self.settled = True
        self.started.set()

    async def _drop_lane(self, p: int) -> None:
        lane = self.lanes[p]
        async with nag_while(f"giving up partition {p}", lane.stack):
            if await lane.close(self.settings.rebalance_wait_s):
                del self.lanes[p]
                await lane.engine.stop()
            else:
                self.give_up(lane, "its last batch")

    def heal(self, p: int) -> None:
        """Rebuild partition p in the background (retrying until it works), then give it
        a lane and resume fetching it, unless a rebalance took p away meanwhile."""
        healing = Healing(since=time.monotonic())

        def failed(reason: str | None) -> None:
            healing.error = reason

        async def rebuild() -> None:
            assert self.taker is not None and self.consumer is not None
            engine = await self.taker.take_until_done(p, failed)
            installed = False
            try:
                async with self.lock:
                    if self.healing.get(p) is not healing or self._closing:
                        return  # given away (or closing) meanwhile
                    del self.healing[p]
                    lane = Lane(engine, self.process, self.settings.max_batch_records)
                    lane.reset(engine.next_inbox_offset or 0)
                    self.lanes[p] = lane
                    installed = True
                    metrics.OWNED_PARTITIONS.set(len(self.lanes))
                    # Between a revocation and its assignment p is unassigned for a
                    # moment: the assignment then seeks the lane it finds.
                    with contextlib.suppress(IllegalStateError):
                        self.consumer.seek(self.tp(p), lane.position or 0)
                        self.consumer.resume(self.tp(p))
            finally:
                if not installed:
                    await engine.stop()

        healing.task = asyncio.create_task(rebuild(), name=f"engine-rebuild-{p}")
        self.healing[p] = healing

    async def revive_stopped_lanes(self) -> None:
        """Replace a lane whose task ended with an error by a rebuild: a bug must not
        leave its partition standing still until the process restarts."""
        async with self.lock:
            for p, lane in list(self.lanes.items()):
                ended = lane.ended()
                if ended is None:
                    continue
                log.error("partition %d: lane stopped (%s); rebuilding it", p, ended)
                del self.lanes[p]
                self._chore(lane.engine.stop())
                assert self.consumer is not None
                with contextlib.suppress(IllegalStateError):
                    self.consumer.pause(self.tp(p))
                    self.heal(p)

    # ------------------------------------------------------------------ stop

    async def close_lanes(self) -> None:
        """Stop rebuilding; finish each lane's batch (or give it up past the bound) and
        flush its snapshots. Lanes stay listed until :meth:`stop_engines`."""
        self._closing = True
        for h in self.healing.values():
            if h.task is not None:
                h.task.cancel()
        wait = self.settings.rebalance_wait_s
        async with self.lock:
            for lane in list(self.lanes.values()):
                if await lane.close(wait):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(lane.engine.flush_snapshots(), wait)

    async def stop_engines(self) -> None:
        """Stop every lane's producers (after the consumer left the group)."""
        async with self.lock:
            for lane in self.lanes.values():
                await lane.engine.stop()
            self.lanes.clear()
        rebuilds = [h.task for h in self.healing.values() if h.task is not None]
        if rebuilds or self._chores:
            await asyncio.wait([*rebuilds, *self._chores])

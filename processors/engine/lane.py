"""One owned inbox partition's pipeline: a queue of fetched records and its own task.

The engine's fetch loop only hands records to lanes, so partitions commit their
transactions independently: a slow transaction on one partition no longer holds
every other partition's next batch (as one ``gather`` per fetch round did), and
records that arrive while a transaction commits join the next, larger batch.

The lane pipelines: while one batch's transaction commits, it prepares (decodes,
decides, encodes) the next from what has queued meanwhile, so deciding no longer
adds to the time a record waits behind a transaction. ``between_batches`` holds
the lane between two batches (revocation, close): the pipeline stops at the next
commit to let it in.

Exactly-once rests on ``position``: the next inbox offset this lane expects. A
record below it was already handed to the lane (processed, or queued) and is
dropped; that is what happens when a rebalance leaves the partition with us but
aiokafka re-fetches from the committed offset, which lags the queue.

Health: a lane knows since when it has had work without committing
(:meth:`Lane.stalled_s`) and whether its task ended (:meth:`Lane.ended`); a lane
whose batch does not finish within a bound is cancelled (:meth:`Lane.close` with a
timeout, :meth:`Lane.abandon`) and the engine rebuilds the partition from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from processors.engine.partition import PartitionEngine
from processors.engine.watchdog import task_stack

Process = Callable[["Lane", list[Any]], Awaitable[None]]


class Lane:
    """Queue and task of one partition; ``busy`` is held while a batch is processed."""

    def __init__(
        self,
        engine: PartitionEngine,
        process: Process,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.busy = asyncio.Lock()
        self.position: int | None = None
        """Next inbox offset expected; None until the first record."""
        self.paused = False
        """Whether the engine paused fetching this partition (queue too long)."""
        self.fenced = False
        """Another engine took the partition (our producer was fenced): process nothing
        until a rebalance drops this lane."""
        self._waiting = 0
        """Callers of ``between_batches`` waiting for the lane."""
        self.abandoned = False
        """Cancelled because its batch outlasted a bound: the lane is gone for good."""
        self.rebuild_error: str | None = None
        """Why the latest attempt to rebuild the partition failed, while it is retried."""
        self._clock = clock
        self._progress_at = clock()
        """When the lane last committed, or when work reached it idle."""
        self._in_batch = False
        self._queue: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._process = process
        self._max_batch = max_batch
        self._task = asyncio.create_task(self._loop(), name=f"engine-lane-{engine.partition}")

    @property
    def partition(self) -> int:
        return self.engine.partition

    @property
    def pending(self) -> int:
        return len(self._queue)

    def push(self, records: list[Any]) -> None:
        """Queue fetched records, dropping any this lane has seen already."""
        if not self._queue and not self._in_batch:
            self._progress_at = self._clock()  # idle until now: nothing was owed
        position = self.position
        for record in records:
            if position is not None and record.offset < position:
                continue
            self._queue.append(record)
            position = record.offset + 1
        self.position = position
        if self._queue:
            self._ready.set()

    def reset(self, position: int) -> None:
        """Forget queued records; the consumer was sought back to ``position``."""
        self._queue.clear()
        self._ready.clear()
        self.position = position

    @property
    def wanted(self) -> bool:
        """Someone waits to hold the lane between batches: stop pipelining."""
        return self._waiting > 0

    @contextlib.asynccontextmanager
    async def between_batches(self) -> AsyncIterator[None]:
        """Hold the lane once its batch (and pipeline) under way is committed."""
        self._waiting += 1
        try:
            async with self.busy:
                yield
        finally:
            self._waiting -= 1

    def take(self) -> list[Any]:
        """The next batch of queued records (at most ``max_batch``)."""
        batch: list[Any] = []
        while self._queue and len(batch) < self._max_batch:
            batch.append(self._queue.popleft())
        if not self._queue:
            self._ready.clear()
        return batch

    def committed(self) -> None:
        """A transaction of this lane committed: it makes progress."""
        self._progress_at = self._clock()

    def stalled_s(self, now: float) -> float:
        """How long the lane has had work (queued, or a batch under way) without
        committing; 0 when it has none."""
        if not self._queue and not self._in_batch:
            return 0.0
        return max(0.0, now - self._progress_at)

    def ended(self) -> str | None:
        """Why the lane's task ended, when it ended by itself (an error); else None."""
        if self.abandoned or not self._task.done() or self._task.cancelled():
            return None
        error = self._task.exception()
        return "its task returned" if error is None else f"{type(error).__name__}: {error}"

    async def _loop(self) -> None:
        while True:
            await self._ready.wait()
            async with self.busy:
                batch = self.take()
                if batch:
                    self._in_batch = True
                    try:
                        await self._process(self, batch)
                    finally:
                        self._in_batch = False

    def stack(self) -> str:
        """Where the lane's task is suspended (for a stalled rebalance's log)."""
        return task_stack(self._task)

    async def close(self, timeout_s: float | None = None) -> bool:
        """Finish the batch under way, then stop. When that takes more than
        ``timeout_s``, cancel the batch instead (:meth:`abandon`) and return False."""

        async def finish() -> None:
            async with self.between_batches():
                self._task.cancel()
            # A lane whose task died already said why (``ended``): closing it must not
            # raise that error into a rebalance callback.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

        try:
            await asyncio.wait_for(finish(), timeout_s)
        except TimeoutError:
            self.abandon()
            return False
        return True

    def abandon(self) -> None:
        """Cancel the lane's task wherever it waits (a commit, a rebuild). Its
        transaction is left open: the partition's next producers abort it (or wait for
        its commit to complete) before anyone reads the log, so nothing it did is
        applied twice or lost. Does not wait for the task to unwind."""
        self.abandoned = True
        self._task.cancel()

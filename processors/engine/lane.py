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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from processors.engine.partition import PartitionEngine
from processors.engine.watchdog import task_stack

Process = Callable[["Lane", list[Any]], Awaitable[None]]


class Lane:
    """Queue and task of one partition; ``busy`` is held while a batch is processed."""

    def __init__(self, engine: PartitionEngine, process: Process, max_batch: int) -> None:
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

    async def _loop(self) -> None:
        while True:
            await self._ready.wait()
            async with self.busy:
                batch = self.take()
                if batch:
                    await self._process(self, batch)

    def stack(self) -> str:
        """Where the lane's task is suspended (for a stalled rebalance's log)."""
        return task_stack(self._task)

    async def close(self) -> None:
        """Finish the batch under way, then stop."""
        async with self.between_batches():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

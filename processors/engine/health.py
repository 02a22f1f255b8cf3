"""What makes a session engine unhealthy, said in words an operator can act on.

The worker's ``/livez`` fails (the process should be restarted) when the engine
cannot make progress by itself:

* a lane has records waiting, or a batch under way, and has not committed for
  ``stall_after_s`` (a transaction that never ends, a rebuild that keeps failing);
* a lane's task ended with an error (its partition would stand still);
* a partition assigned to the engine has not been rebuilt for ``stall_after_s``;
* a rebalance callback has run for ``rebalance_stuck_after_s`` (the whole group
  waits for it);
* one of the engine's own loops (fetch, snapshots, timers) ended.

``/readyz`` additionally needs every assigned partition rebuilt and not fenced.
The functions here only read state; :class:`~processors.engine.service.SessionEngine`
owns it. Every problem is one line naming the partition and what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from processors.engine.lane import Lane
from processors.engine.watchdog import task_stack


@dataclass(eq=False)
class Healing:
    """A partition assigned to the engine and being rebuilt in the background."""

    since: float
    """When the rebuild began (monotonic seconds)."""
    task: asyncio.Task[None] | None = None
    error: str | None = None
    """Why the latest attempt failed, while attempts fail."""


class CallbackWatch:
    """The rebalance callback under way, if any: what it does, since when, its task."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.what: str | None = None
        self.since = 0.0
        self._task: asyncio.Task[object] | None = None

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[None]:
        """Mark the body as a rebalance callback doing ``what``."""
        self.what, self.since = what, self._clock()
        try:
            self._task = asyncio.current_task()
        except RuntimeError:  # no running loop: a unit test of the bookkeeping
            self._task = None
        try:
            yield
        finally:
            self.what, self._task = None, None

    def problem(self, now: float, stuck_after_s: float) -> str | None:
        """A line when the callback under way has run for ``stuck_after_s`` or more."""
        if self.what is None or now - self.since < stuck_after_s:
            return None
        return (
            f"rebalance callback ({self.what}) running for {now - self.since:.0f} s"
            f" (limit {stuck_after_s:g} s); waiting in {task_stack(self._task)}"
        )


def lane_problems(lanes: Mapping[int, Lane], now: float, stall_after_s: float) -> list[str]:
    """Lanes whose task ended, and lanes with work that have not committed for
    ``stall_after_s``."""
    problems: list[str] = []
    for p, lane in sorted(lanes.items()):
        ended = lane.ended()
        if ended is not None:
            problems.append(f"partition {p}: lane stopped ({ended})")
            continue
        stalled = lane.stalled_s(now)
        if stalled >= stall_after_s:
            why = (
                f"rebuild failing: {lane.rebuild_error}"
                if lane.rebuild_error
                else f"waiting in {lane.stack()}"
            )
            problems.append(
                f"partition {p}: {lane.pending} records waiting, no commit for"
                f" {stalled:.0f} s (limit {stall_after_s:g} s); {why}"
            )
    return problems


def healing_problems(healing: Mapping[int, Healing], now: float, stall_after_s: float) -> list[str]:
    """Partitions assigned and still not rebuilt after ``stall_after_s``."""
    return [
        f"partition {p}: assigned {now - h.since:.0f} s ago and not rebuilt"
        f" (limit {stall_after_s:g} s)" + (f"; last attempt: {h.error}" if h.error else "")
        for p, h in sorted(healing.items())
        if now - h.since >= stall_after_s
    ]


def task_problems(tasks: Iterable[asyncio.Task[None]]) -> list[str]:
    """The engine's loops that are no longer running."""
    problems: list[str] = []
    for task in tasks:
        if not task.done():
            continue
        if task.cancelled():
            problems.append(f"engine loop {task.get_name()} was cancelled")
        else:
            error = task.exception()
            problems.append(f"engine loop {task.get_name()} ended: {error!r}")
    return problems


def readiness_problems(
    started: bool, lanes: Mapping[int, Lane], healing: Mapping[int, Healing]
) -> list[str]:
    """Why the engine does not own rebuilt partitions it can process, if it does not."""
    problems: list[str] = []
    if not started:
        problems.append("engine: no partition assignment yet")
    for p, h in sorted(healing.items()):
        problems.append(
            f"partition {p}: assigned, not rebuilt yet"
            + (f" (last attempt: {h.error})" if h.error else "")
        )
    for p, lane in sorted(lanes.items()):
        if lane.fenced:
            problems.append(f"partition {p}: fenced by a new owner, waiting for the rebalance")
        elif lane.rebuild_error is not None:
            problems.append(f"partition {p}: rebuilding ({lane.rebuild_error})")
    return problems

"""Which offset an executor may commit while thousands of calls are in flight.

Executors start a call per record without waiting for the ones before it, so
records finish out of order. The committed offset must still never pass a
record that is not done, or a crash would lose it: the committable offset of a
partition is the lowest offset not yet done (or one past the last record when
everything is done). Records are fetched in offset order, so a deque of
(offset, done) with the oldest at the left gives O(1) amortised bookkeeping.
"""

from __future__ import annotations

from collections import deque


class PartitionProgress:
    """In-flight records of one partition, in fetch order."""

    __slots__ = ("_done", "_next_commit", "_order")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._next_commit: int | None = None

    def started(self, offset: int) -> None:
        """A record was fetched and its work begun (offsets must increase)."""
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} started out of order after {self._order[-1]}")
        self._order.append(offset)

    def finished(self, offset: int) -> None:
        """The record's work is done (its result is produced and acknowledged)."""
        self._done.add(offset)
        order, done = self._order, self._done
        while order and order[0] in done:
            finished = order.popleft()
            done.discard(finished)
            self._next_commit = finished + 1

    @property
    def in_flight(self) -> int:
        """Records started and not finished."""
        return len(self._order) - len(self._done)

    def committable(self) -> int | None:
        """The offset to commit: the lowest not done; None before any record was seen.

        The caller skips the commit when this equals what it committed last.
        """
        if self._order:
            return self._order[0]
        return self._next_commit

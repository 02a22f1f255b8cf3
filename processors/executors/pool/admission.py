"""Admission control: requests- and tokens-per-minute buckets per endpoint and per tenant.

Each limit is a token bucket holding ``burst_s`` seconds' worth of its
per-minute rate. A call reserves what it needs in every bucket that applies
(its tenant's RPM and TPM, then its endpoint's) and sleeps until the last of
them has it; the sleep is the call's own task, so a session waiting for
capacity blocks no other session, and a tenant over its limit slows only
itself. Token needs are estimated before the call (prompt characters / 4 plus
the endpoint's output cap) and settled against the real usage after it.

By priority (an agent's ``priority``)::

    interactive, normal   reserve at once (first come, first served) and wait;
                          shed if the wait would pass max_wait (normal's is shorter)
    batch                 takes capacity only while ``batch_headroom`` of each
                          bucket stays free, so backfill uses spare capacity and
                          never queues ahead of a live session; shed past its max_wait

A shed call fails with :class:`~processors.executors.pool.errors.ShedError` and its
reservations are given back; so are those of a call cancelled while waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from processors.executors.pool.errors import ShedError

Clock = Callable[[], float]


class TokenBucket:
    """``per_minute`` tokens a minute, holding up to ``burst_s`` seconds' worth.

    The level may go below zero: a reservation is a debt the reserver waits
    out, which keeps arrivals in order without a queue.
    """

    def __init__(
        self, name: str, per_minute: float, burst_s: float, clock: Clock = time.monotonic
    ) -> None:
        self.name = name
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def wait_for(self, amount: float, floor: float = 0.0) -> float:
        """Seconds until ``amount`` could be taken leaving at least ``floor`` (no change)."""
        self._refill()
        missing = amount + floor - self.level
        return max(0.0, missing / self.rate) if missing > 0 else 0.0

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now, into debt if need be; seconds until the debt is repaid."""
        self._refill()
        self.level -= amount
        return max(0.0, -self.level / self.rate) if self.level < 0 else 0.0

    def take_if(self, amount: float, floor: float) -> bool:
        """Take ``amount`` if at least ``floor`` stays; else leave the bucket alone."""
        self._refill()
        if self.level - amount >= floor:
            self.level -= amount
            return True
        return False

    def give(self, amount: float) -> None:
        """Put tokens back (a cancelled reservation, an over-estimate); negative charges more."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


@dataclass
class Ticket:
    """What one admitted call took, so it can be settled or given back."""

    taken: list[tuple[TokenBucket, float, bool]] = field(default_factory=list)
    """(bucket, amount, counts tokens rather than requests)."""
    waited_s: float = 0.0

    def settle(self, actual_tokens: int) -> None:
        """Correct token reservations to the real usage."""
        for bucket, amount, tokens in self.taken:
            if tokens:
                bucket.give(amount - actual_tokens)

    def give_back(self) -> None:
        """Return everything (the call never reached a provider)."""
        for bucket, amount, _ in self.taken:
            bucket.give(amount)
        self.taken.clear()


Need = tuple[TokenBucket, float, bool]
"""(bucket, amount, is a token bucket)."""


class Admission:
    """Admits calls through buckets by priority (see the module docstring)."""

    def __init__(self, *, batch_headroom: float = 0.5, clock: Clock = time.monotonic) -> None:
        self.batch_headroom = batch_headroom
        self._clock = clock

    def wait_estimate(self, needs: Sequence[Need], priority: str) -> float:
        """How long ``needs`` would wait now (no change to any bucket)."""
        floor = self.batch_headroom if priority == "batch" else 0.0
        return max((b.wait_for(a, floor * b.capacity) for b, a, _ in needs), default=0.0)

    async def admit(
        self, needs: Sequence[Need], *, priority: str, max_wait_s: float, what: str
    ) -> Ticket:
        """Wait until every need is met; :class:`ShedError` if that would take too long."""
        ticket = Ticket()
        if not needs:
            return ticket
        if priority == "batch":
            return await self._admit_spare(needs, max_wait_s, what, ticket)
        waits = []
        for bucket, amount, tokens in needs:
            waits.append(bucket.reserve(amount))
            ticket.taken.append((bucket, amount, tokens))
        wait = max(waits)
        if wait > max_wait_s:
            ticket.give_back()
            raise ShedError(
                f"shed: {what} would wait {wait:.1f}s for capacity (limit {max_wait_s:g}s)"
            )
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except BaseException:
                ticket.give_back()
                raise
        ticket.waited_s = wait
        return ticket

    async def _admit_spare(
        self, needs: Sequence[Need], max_wait_s: float, what: str, ticket: Ticket
    ) -> Ticket:
        started = self._clock()
        while True:
            if all(b.wait_for(a, self.batch_headroom * b.capacity) == 0 for b, a, _ in needs):
                for bucket, amount, tokens in needs:
                    bucket.take_if(amount, float("-inf"))
                    ticket.taken.append((bucket, amount, tokens))
                ticket.waited_s = self._clock() - started
                return ticket
            wait = self.wait_estimate(needs, "batch")
            if self._clock() - started + wait > max_wait_s:
                raise ShedError(
                    f"shed: batch call for {what} would wait {wait:.1f}s for spare capacity "
                    f"(limit {max_wait_s:g}s)"
                )
            await asyncio.sleep(max(0.001, wait))

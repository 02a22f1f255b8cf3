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

Limits hold for the whole deployment, not per process: every bucket fills at
its limit times this process's :class:`Share`, which the LLM executor sets to
the share of ``llm-calls`` partitions its consumer owns (sessions, hence
calls, spread over partitions by key). The shares of all executors add up to
one without any coordination, a rebalance moves them with the partitions, and
a process that dies takes only its own share with it; the cost on the hot
path is one comparison. See :meth:`TokenBucket.rescale` for the burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from processors.executors.pool.errors import ShedError
from processors.executors.pool.settings import TenantLimits

Clock = Callable[[], float]


class Share:
    """The share of every deployment-wide limit this process may use, in (0, 1].

    1.0 (the whole limit) until an owner sets it; buckets read it lazily,
    through :attr:`version`, so a change costs nothing until a bucket is used.
    """

    def __init__(self, value: float = 1.0) -> None:
        self.value = 1.0
        self.version = 0
        self.set(value)

    def set(self, value: float) -> None:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"a share must be in (0, 1], got {value}")
        if value != self.value:
            self.value = value
            self.version += 1


WHOLE = Share()
"""The share of a pool that is alone (tests, benchmarks): every limit in full."""


class TokenBucket:
    """``per_minute`` tokens a minute times ``share``, holding ``burst_s`` seconds' worth.

    The level may go below zero: a reservation is a debt the reserver waits
    out, which keeps arrivals in order without a queue.
    """

    def __init__(
        self,
        name: str,
        per_minute: float,
        burst_s: float,
        clock: Clock = time.monotonic,
        share: Share = WHOLE,
    ) -> None:
        self.name = name
        self.per_minute = per_minute
        self.burst_s = burst_s
        self.share = share
        self._version = share.version
        self.rate = per_minute * share.value / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now
        if self._version != self.share.version:
            self.rescale()

    def rescale(self) -> None:
        """Take the share's new value: rate and capacity follow, the level never grows.

        A shrinking share cuts the level to the new capacity, so a process that
        just handed partitions over cannot spend a burst sized for them; a
        growing one only refills faster from here, because the previous owner
        of the partitions may have spent their burst just before it left. So
        the deployment's admissions over any window stay within the limit plus
        one burst (the buckets' initial fill).

        A debt is a schedule: callers already sleeping go when it said. On a
        faster rate it is restated in the new rate's tokens, so it ends when it
        would have and new reservations queue behind it, not beside it; on a
        slower rate it stays in tokens and takes longer.
        """
        old_rate = self.rate
        self._version = self.share.version
        self.rate = self.per_minute * self.share.value / 60.0
        self.capacity = max(1.0, self.rate * self.burst_s)
        if self.level < 0:
            self.level *= max(1.0, self.rate / old_rate)
        self.level = min(self.level, self.capacity)

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


class TenantBuckets:
    """Each tenant's RPM and TPM buckets, made on first use, at this process's share.

    A tenant's limits are, in order: the overrides read from configuration (the
    tenants table, :meth:`update`), those given in code, the default. Sessions
    spread over partitions by key, so a tenant with many sessions gets its whole
    limit across the executors; one with a handful of sessions sits on a few
    partitions and may get less (never more) than its limit.
    """

    def __init__(
        self,
        default: TenantLimits,
        given: Mapping[str, TenantLimits],
        *,
        burst_s: float,
        share: Share = WHOLE,
        clock: Clock = time.monotonic,
    ) -> None:
        self._default = default
        self._given = dict(given)
        self._configured: dict[str, TenantLimits] = {}
        self._burst_s = burst_s
        self._share = share
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}
        self.counts_tokens = False
        """Whether any tenant has a TPM limit (else prompts need no token estimate)."""
        self._update_counts()

    def limits(self, tenant_id: str) -> TenantLimits:
        found = self._configured.get(tenant_id) or self._given.get(tenant_id)
        return found or self._default

    def update(self, configured: Mapping[str, TenantLimits]) -> None:
        """Replace the configured overrides; tenants whose limits changed get new buckets."""
        every = set(configured) | set(self._configured)
        changed = {t for t in every if configured.get(t) != self._configured.get(t)}
        self._configured = dict(configured)
        for tenant in changed:
            self._buckets.pop(tenant, None)
        self._update_counts()

    def _update_counts(self) -> None:
        every = [self._default, *self._given.values(), *self._configured.values()]
        self.counts_tokens = any(limits.tpm is not None for limits in every)

    def needs(self, tenant_id: str, tokens: int) -> list[Need]:
        """What one call of about ``tokens`` tokens takes from the tenant's buckets."""
        if not tenant_id:
            return []
        buckets = self._buckets.get(tenant_id)
        if buckets is None:
            limits = self.limits(tenant_id)
            who = f"tenant {tenant_id}"
            buckets = self._buckets[tenant_id] = (
                self._bucket(f"{who} rpm", limits.rpm),
                self._bucket(f"{who} tpm", limits.tpm),
            )
        found: list[Need] = []
        if buckets[0] is not None:
            found.append((buckets[0], 1.0, False))
        if buckets[1] is not None:
            found.append((buckets[1], float(tokens), True))
        return found

    def _bucket(self, name: str, per_minute: int | None) -> TokenBucket | None:
        if per_minute is None:
            return None
        return TokenBucket(name, per_minute, self._burst_s, self._clock, self._share)

"""How a model's pool picks one of its endpoints: round_robin, least_inflight, weighted, latency.

A strategy only chooses among candidates the pool already found usable (breaker
closed or probing, no Retry-After pending, capacity now); health and limits are
not its business. ``latency`` ranks by an EWMA of each endpoint's call time
times (calls in flight + 1), the "peak EWMA" idea of Finagle and linkerd, so a
fast endpoint does not get buried under its own queue; an endpoint with no
estimate yet ranks first, and a small share of calls goes to a random
endpoint so a slow one that recovered gets noticed again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class Candidate(Protocol):
    """What a strategy reads of an endpoint."""

    @property
    def index(self) -> int: ...

    @property
    def weight(self) -> float: ...

    @property
    def inflight(self) -> int: ...

    @property
    def ewma_s(self) -> float | None: ...


class Strategy(Protocol):
    def pick(self, candidates: Sequence[Candidate]) -> int:
        """Position in ``candidates`` (non-empty) of the chosen one."""
        ...


class RoundRobin:
    """Each candidate in turn."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Candidate]) -> int:
        self._next += 1
        return (self._next - 1) % len(candidates)


class LeastInflight:
    """The candidate with fewest calls under way; ties in turn."""

    def __init__(self) -> None:
        self._turn = RoundRobin()

    def pick(self, candidates: Sequence[Candidate]) -> int:
        start = self._turn.pick(candidates)
        count = len(candidates)
        return min(
            ((start + i) % count for i in range(count)), key=lambda i: candidates[i].inflight
        )


class Weighted:
    """Smooth weighted round robin (nginx): shares follow weights, evenly interleaved."""

    def __init__(self) -> None:
        self._current: dict[int, float] = {}

    def pick(self, candidates: Sequence[Candidate]) -> int:
        total = 0.0
        best, best_value = 0, float("-inf")
        for position, candidate in enumerate(candidates):
            value = self._current.get(candidate.index, 0.0) + candidate.weight
            self._current[candidate.index] = value
            total += candidate.weight
            if value > best_value:
                best, best_value = position, value
        self._current[candidates[best].index] -= total
        return best


class Latency:
    """Lowest EWMA call time x (in flight + 1); explores with probability ``explore``."""

    def __init__(self, explore: float = 0.05, rng: random.Random | None = None) -> None:
        self.explore = explore
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate]) -> int:
        if len(candidates) > 1 and self._rng.random() < self.explore:
            return self._rng.randrange(len(candidates))
        best, best_cost = 0, float("inf")
        for position, candidate in enumerate(candidates):
            if candidate.ewma_s is None:
                return position
            cost = candidate.ewma_s * (candidate.inflight + 1)
            if cost < best_cost:
                best, best_cost = position, cost
        return best


def make_strategy(name: str, *, explore: float, rng: random.Random) -> Strategy:
    """The strategy an agents file names (checked at load: one of the four)."""
    if name == "least_inflight":
        return LeastInflight()
    if name == "weighted":
        return Weighted()
    if name == "latency":
        return Latency(explore, rng)
    return RoundRobin()

"""A per-endpoint circuit breaker: stop sending calls to an endpoint that keeps failing.

States::

    closed --(failure share of the last `window` outcomes >= rate, over >= min_calls)--> open
    open   --(open_s passed)--> half_open: one probe call at a time
    half_open --(`probes` successes in a row)--> closed (window forgotten)
    half_open --(a probe fails)--> open again, for twice as long (up to 8x open_s)

An open breaker makes the pool fail over at once instead of waiting on
timeouts, which is what keeps one dead endpoint from slowing every session.
Only outcomes that say something about the endpoint's health count (see
``ProviderError.counts_as_failure``): a 429 is capacity, not sickness.
The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """See the module docstring."""

    def __init__(
        self,
        *,
        window: int = 20,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        open_s: float = 5.0,
        probes: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = max(1, window)
        self.min_calls = max(1, min(min_calls, self.window))
        self.failure_rate = failure_rate
        self.open_s = open_s
        self.probes = max(1, probes)
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=self.window)
        self._failures = 0
        self._state: State = "closed"
        self._opened_at = 0.0
        self._open_for = open_s
        self._probe_out = False
        self._probe_successes = 0
        self.transitions: list[State] = []
        """Every state entered, in order (for metrics and tests)."""

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self._open_for:
            self._enter("half_open")
        return self._state

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def available(self) -> bool:
        """Whether a call may go now (closed, or half-open with no probe under way)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probe_out)

    def acquire(self) -> bool:
        """Take the right to call; in half-open, only one probe at a time gets it."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def release(self) -> None:
        """Give back a probe slot without an outcome (the call never reached the endpoint)."""
        self._probe_out = False

    def record(self, success: bool) -> None:
        """The outcome of a call that went through :meth:`acquire`."""
        if self._state == "half_open":
            self._probe_out = False
            if not success:
                self._open_for = min(self._open_for * 2, self.open_s * 8)
                self._enter("open")
                return
            self._probe_successes += 1
            if self._probe_successes >= self.probes:
                self._open_for = self.open_s
                self._enter("closed")
            return
        if self._state == "open":
            return  # a call from before the breaker opened; its outcome is old news
        if len(self._outcomes) == self._outcomes.maxlen and not self._outcomes[0]:
            self._failures -= 1
        self._outcomes.append(success)
        if not success:
            self._failures += 1
            if (
                len(self._outcomes) >= self.min_calls
                and self._failures / len(self._outcomes) >= self.failure_rate
            ):
                self._enter("open")

    def _enter(self, state: State) -> None:
        self._state = state
        self.transitions.append(state)
        if state == "open":
            self._opened_at = self._clock()
            self._probe_out = False
        elif state == "half_open":
            self._probe_successes = 0
            self._probe_out = False
        else:
            self._outcomes.clear()
            self._failures = 0

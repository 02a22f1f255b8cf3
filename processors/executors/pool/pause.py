"""When a server asks us to come back later: reading how long, and holding every call to it.

A 429 (or a 503 with ``Retry-After``) is the server speaking about itself,
not about the one call it answered: every call this process would send it in
the meantime is refused too, burns an attempt and prolongs the overload. So
the wait goes to a :class:`ServerPause` shared by every endpoint of the
agents file that reaches the same server (provider, base URL, model, key):
no call in the process is sent there until the pause ends, whichever model
name it came through; callers wait for it or fail over (see
:mod:`processors.executors.pool.pool`).

How long, in order of precedence: ``retry-after-ms`` (OpenAI-compatible
servers), ``retry-after`` in seconds or as an HTTP date, and on a 429 that
has neither, the provider's rate-limit reset headers
(``anthropic-ratelimit-*-reset`` as RFC 3339 times, OpenAI's
``x-ratelimit-reset-*`` as durations like ``6m0s``).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import re
import time
from collections.abc import Mapping

from processors.executors.pool import metrics
from processors.executors.pool.admission import Clock

log = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_RESET_FAMILIES = (
    # (prefix, suffix) of a reset header, and how to name its "remaining" twin
    ("anthropic-ratelimit-", "-reset", "anthropic-ratelimit-{}-remaining"),
    ("x-ratelimit-reset-", "", "x-ratelimit-remaining-{}"),
)


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date. Unparseable values are
    ignored (None), negative ones are 0. ``now`` is the wall clock (tests).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds_until(value: str, now: float) -> float | None:
    """A reset header's value as seconds from ``now``: a duration, seconds, or an RFC 3339 time."""
    text = value.strip()
    parts = _DURATION.findall(text)
    if parts and "".join(number + unit for number, unit in parts) == text:
        return sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def rate_limit_reset(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the exhausted rate limit resets, from the providers' rate-limit headers.

    The limits a header says have nothing ``remaining`` decide (the longest of
    their resets, since all of them must have room again). When none says so,
    the earliest reset: the first moment a retry may fit, and a retry that
    does not fit gets a fresh answer. None without any readable reset header.
    """
    clock = time.time() if now is None else now
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    exhausted: list[float] = []
    others: list[float] = []
    for name, value in lowered.items():
        for prefix, suffix, remaining_name in _RESET_FAMILIES:
            if not name.startswith(prefix) or not name.endswith(suffix):
                continue
            limit = name[len(prefix) : len(name) - len(suffix)] if suffix else name[len(prefix) :]
            if not limit:
                continue
            seconds = _seconds_until(value, clock)
            if seconds is None:
                continue
            remaining = lowered.get(remaining_name.format(limit), "")
            try:
                empty = float(remaining) <= 0
            except ValueError:
                empty = False
            (exhausted if empty else others).append(seconds)
    if exhausted:
        return max(exhausted)
    return min(others) if others else None


def server_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """What an error answer asks: Retry-After and kin; for a 429 also the reset headers."""
    wait = retry_after(headers)
    if wait is None and status == 429:
        wait = rate_limit_reset(headers)
    return wait


class ServerPause:
    """Until when one server asked not to be called (see the module docstring)."""

    def __init__(self, label: str, clock: Clock) -> None:
        self.label = label
        """provider/model@host, never a credential (a metric label and log field)."""
        self.until = 0.0
        """Monotonic time before which no call goes to this server."""
        self._clock = clock
        self._count = metrics.PAUSES.labels(label)
        self._resume = metrics.PAUSED_UNTIL.labels(label)

    def remaining(self) -> float:
        """Seconds left of the pause (0 when calls may go)."""
        return max(0.0, self.until - self._clock())

    async def wait(self) -> None:
        """Until the pause is over, however often it is extended meanwhile (no polling)."""
        left = self.remaining()
        while left > 0:
            await asyncio.sleep(left + 0.001)  # the loop's timers may fire a hair early
            left = self.remaining()

    def extend(self, seconds: float, why: str) -> None:
        """No call before ``seconds`` from now (a shorter ask never shortens the pause)."""
        now = self._clock()
        until = now + max(0.0, seconds)
        if until <= self.until:
            return
        starting = self.until <= now
        self.until = until
        self._resume.set(time.time() + seconds)
        if starting:
            # One line per pause, not per answer: the calls already on the wire when it
            # began come back with their own 429s and only extend it.
            self._count.inc()
            log.warning(
                "LLM endpoint %s paused for %.3gs (%s): calls to it wait or fail over",
                self.label,
                seconds,
                why,
            )
        else:
            log.debug("LLM endpoint %s pause extended to %.3gs (%s)", self.label, seconds, why)

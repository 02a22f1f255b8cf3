"""The worker's process settings: collector thresholds from the environment, observed
GC pauses and event-loop lag, and the event loop choice."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from prometheus_client import REGISTRY

from agentstream.process_tuning import (
    DEFAULT_GC_THRESHOLD,
    gc_threshold_from_env,
    install_event_loop_policy,
    tune_gc,
    watch_event_loop_lag,
)


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_gc_thresholds_come_from_the_environment_or_the_default() -> None:
    assert gc_threshold_from_env({}) == DEFAULT_GC_THRESHOLD
    assert gc_threshold_from_env({"AGENTSTREAM_GC_THRESHOLD": "700, 10, 10"}) == (700, 10, 10)


@pytest.mark.parametrize("value", ["700,10", "a,b,c", "0,10,10", "700,-1,10"])
def test_a_bad_gc_threshold_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="AGENTSTREAM_GC_THRESHOLD"):
        gc_threshold_from_env({"AGENTSTREAM_GC_THRESHOLD": value})


def test_collections_are_timed_by_generation() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(before)  # same thresholds; installs the pause timer (once)
        tune_gc(before)
        # No automatic collection in between: reading the registry allocates enough to
        # start one, which would be a second (correctly timed) gen-2 pause.
        gc.disable()
        counted = _sample("agentstream_gc_pause_seconds_count", {"generation": "2"})
        gc.collect()
        assert _sample("agentstream_gc_pause_seconds_count", {"generation": "2"}) == counted + 1
    finally:
        gc.enable()
        gc.set_threshold(*before)


async def test_a_blocked_loop_shows_as_lag() -> None:
    total = _sample("agentstream_event_loop_lag_seconds_sum")
    count = _sample("agentstream_event_loop_lag_seconds_count")
    watch = asyncio.create_task(watch_event_loop_lag(0.01))
    await asyncio.sleep(0.03)
    time.sleep(0.08)  # noqa: ASYNC251 - the point: block the loop as a slow handler would
    await asyncio.sleep(0.03)
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert _sample("agentstream_event_loop_lag_seconds_count") >= count + 2
    assert _sample("agentstream_event_loop_lag_seconds_sum") - total >= 0.05


def test_the_event_loop_choice() -> None:
    policy = asyncio.get_event_loop_policy()
    try:
        assert install_event_loop_policy({"AGENTSTREAM_EVENT_LOOP": "asyncio"}) == "asyncio"
        assert asyncio.get_event_loop_policy() is policy
        assert install_event_loop_policy({}) == "uvloop"
        assert type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
        with pytest.raises(ValueError, match="AGENTSTREAM_EVENT_LOOP"):
            install_event_loop_policy({"AGENTSTREAM_EVENT_LOOP": "trio"})
    finally:
        asyncio.set_event_loop_policy(policy)

"""Liveness of the event loop: a blocked loop turns /livez red, naming the block, and
green again once it runs; the watchdog thread says where the loop was stuck."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agentstream.gateway import ops
from agentstream.gateway.context import Gateway
from agentstream.process_tuning import (
    DEFAULT_LOOP_BLOCKED_S,
    LoopWatch,
    loop_blocked_after_from_env,
    watch_event_loop_lag,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_threshold_comes_from_the_environment_or_the_default() -> None:
    assert loop_blocked_after_from_env({}) == DEFAULT_LOOP_BLOCKED_S
    assert loop_blocked_after_from_env({"AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError, match="AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S"):
            loop_blocked_after_from_env({"AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S": bad})


def test_an_overdue_heartbeat_and_a_late_one_are_problems_until_a_timely_one() -> None:
    clock = FakeClock()
    watch = LoopWatch(5.0, clock=clock)
    clock.now += 60
    assert watch.problem() is None  # no heartbeat yet: the loop is starting
    watch.beat(0.001)
    clock.now += 4.9
    assert watch.problem() is None
    clock.now += 0.2  # 5.1 s without a heartbeat
    assert watch.problem() == "event loop blocked: no heartbeat for 5.1 s (limit 5 s)"
    watch.beat(5.0)  # the loop runs again: this heartbeat came 5 s late
    clock.now += 0.1
    problem = watch.problem()
    assert problem is not None and problem.startswith("event loop was blocked for 5.0 s")
    watch.beat(0.002)
    assert watch.problem() is None


def _livez_app(watch: LoopWatch) -> web.Application:
    """The API's /livez handler and loop watch, without the rest of the gateway."""
    app = web.Application()
    app[ops.LOOP_WATCH] = watch
    app.cleanup_ctx.append(ops.watch_the_loop)

    async def livez(request: web.Request) -> web.StreamResponse:
        return await ops.livez(cast(Gateway, None), request)

    app.router.add_get("/livez", livez)
    return app


async def test_a_blocked_loop_turns_livez_red_then_green() -> None:
    watch = LoopWatch(0.2)
    async with TestClient(TestServer(_livez_app(watch))) as client:
        await asyncio.sleep(0.6)  # a few heartbeats (every 0.25 s)
        first = await client.get("/livez")
        assert first.status == 200 and await first.json() == {"ok": True}

        time.sleep(0.5)  # noqa: ASYNC251 - the point: a handler that blocks the loop
        during = await client.get("/livez")
        body = await during.json()
        assert during.status == 503, body
        assert body["ok"] is False
        assert "event loop" in body["problems"][0] and "limit 0.2 s" in body["problems"][0]

        await asyncio.sleep(0.6)  # the loop runs: timely heartbeats again
        after = await client.get("/livez")
        assert after.status == 200 and await after.json() == {"ok": True}


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)


async def test_the_watchdog_thread_names_where_the_loop_is_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopWatch(0.15)
    beating = asyncio.create_task(watch_event_loop_lag(0.02, beats=watch))
    watch.start_thread(interval_s=0.02)
    try:
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="agentstream.process_tuning"):
            _hold_the_loop(0.5)
            await asyncio.sleep(0.2)
    finally:
        beating.cancel()
        watch.stop_thread()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # once per block
    assert errors[0].startswith("event loop blocked: no heartbeat for")
    assert "_hold_the_loop (test_health_loop.py:" in errors[0]
    assert any(r.getMessage() == "event loop runs again" for r in caplog.records)

"""The metrics behind the seed views that are computed, not only counted: a session's
duration, a worker's busy ratio, capacity and headroom, the steps it counts, and
the API's 5xx counted also when aiohttp answers for an escaping exception."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Application, Request, StreamResponse
from prometheus_client import REGISTRY

from agentstream.gateway.app import route
from agentstream.gateway.context import GATEWAY, Gateway
from agentstream.gateway.settings import GatewaySettings
from agentstream.process_tuning import CapacityMeter
from processors import metrics
from processors.agents.loader import load_agents
from streams.settings import KafkaSettings
from tests.unit.test_core_kit import Script, Session


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_terminal_session_is_observed_once_by_agent_and_outcome() -> None:
    session = Session()
    assert session.apply(Script().start("demo", "hi")).rejection is None
    running = session.now
    labels = {"agent": "demo", "outcome": "failed"}
    bucket = "agentstream_session_duration_seconds_bucket"
    count = _value("agentstream_session_duration_seconds_count", **labels)
    total = _value("agentstream_session_duration_seconds_sum", **labels)
    under_1s, under_2_5s = _value(bucket, **labels, le="1.0"), _value(bucket, **labels, le="2.5")

    metrics.session_ended(running)  # still running: nothing
    assert _value("agentstream_session_duration_seconds_count", **labels) == count

    ended = replace(running, status="failed", updated_ms=running.started_ms + 2_500)
    metrics.session_ended(ended)
    assert _value("agentstream_session_duration_seconds_count", **labels) == count + 1
    assert _value("agentstream_session_duration_seconds_sum", **labels) == pytest.approx(
        total + 2.5
    )
    # in the 2.5 s bucket, not the 1 s one
    assert _value(bucket, **labels, le="2.5") == under_2_5s + 1
    assert _value(bucket, **labels, le="1.0") == under_1s


def _spin(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_capacity_is_steps_per_busy_second_and_headroom_the_idle_share() -> None:
    steps = [0.0]
    cpu_before = time.thread_time()
    meter = CapacityMeter(lambda: steps[0], window_s=0.3)
    assert meter.tick() is False  # the window has not passed
    _spin(0.1)  # busy for 0.1 s of CPU, idle for the rest of the window
    steps[0] += 500
    time.sleep(0.3)
    assert meter.tick() is True
    cpu = time.thread_time() - cpu_before

    busy = _value("agentstream_worker_busy_ratio")
    capacity = _value("agentstream_worker_capacity_steps_per_second")
    assert 0.0 < busy < 1.0
    assert _value("agentstream_worker_headroom_ratio") == pytest.approx(1.0 - busy)
    # 500 steps took about `cpu` seconds of the loop thread
    assert capacity == pytest.approx(500 / cpu, rel=0.2)

    # A window with too few steps says nothing about the cost of one: capacity kept.
    steps[0] += CapacityMeter.MIN_STEPS - 1
    time.sleep(0.31)
    assert meter.tick() is True
    assert _value("agentstream_worker_capacity_steps_per_second") == capacity
    assert _value("agentstream_worker_busy_ratio") < busy


def test_a_workers_steps_are_its_engines_results_or_else_its_executors_calls() -> None:
    engine, executors = metrics.steps_done(["engine", "llm"]), metrics.steps_done(["llm", "tools"])
    before = engine(), executors()
    metrics.command_counter("LLMCallResult", "applied").inc(3)
    metrics.command_counter("ToolCallResult", "applied").inc(2)
    metrics.command_counter("StartSession", "applied").inc(7)  # not a step
    metrics.command_counter("ToolCallResult", "duplicate").inc(5)  # not a step either
    metrics.work_outcome("llm", "ok")[0].inc(4)
    metrics.work_outcome("tools", "dlq")[0].inc(1)
    assert engine() - before[0] == 5
    assert executors() - before[1] == 5


async def test_an_exception_that_escapes_a_handler_counts_as_a_500() -> None:
    gateway = Gateway(GatewaySettings(), KafkaSettings(), load_agents(None), migrate=False)
    app = Application()
    app[GATEWAY] = gateway

    async def broken(gw: Gateway, request: Request) -> StreamResponse:
        raise ZeroDivisionError("a bug")

    handler = route("observability_test_route", broken)
    labels = {"route": "observability_test_route", "status": "500"}
    # created at 0 with the route, so the first one shows in increase()
    assert REGISTRY.get_sample_value("agentstream_api_requests_total", labels) == 0.0
    with pytest.raises(ZeroDivisionError):
        await handler(make_mocked_request("GET", "/boom", app=app))
    assert _value("agentstream_api_requests_total", **labels) == 1.0
    await gateway.db.dispose()

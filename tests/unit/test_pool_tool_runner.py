"""The tool runner: allow-list, bad input, exceptions, timeouts, output limit, the sandbox.

The sandboxed tools live in this module so the child process can import them
by module and name, as it would a user's tool from the agents file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from processors.agents.catalog import AgentCatalog, AgentConfig, ToolConfig, builtin_catalog
from processors.agents.tools import RegisteredTool, ToolError
from processors.executors.tool_runner import Sandbox, ToolRunner, ToolRunnerSettings, isolated

CALLS: list[str] = []


def echo(text: str, call_id: str) -> str:
    """Echo the text with the idempotency key."""
    CALLS.append(call_id)
    return f"{text} ({call_id})"


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def refuse(reason: str) -> str:
    """Fails the way tools are meant to."""
    raise ToolError(reason)


async def slow(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "done"


def big(size: int) -> str:
    """A long output."""
    return "x" * size


def danger() -> str:
    """A tool no agent in these tests may use."""
    CALLS.append("danger")
    return "boom"


@isolated(cpu_s=1, memory_mb=256, wall_s=10)
def spin(seconds: float) -> str:
    """Burns CPU."""
    end = time.monotonic() + seconds
    total = 0
    while time.monotonic() < end:
        total += 1
    return str(total)


@isolated(cpu_s=5, memory_mb=256, wall_s=10)
def hog(megabytes: int) -> str:
    """Allocates memory."""
    block = bytearray(megabytes << 20)
    return str(len(block))


@isolated(cpu_s=5, memory_mb=256, wall_s=0.5)
def nap(seconds: float) -> str:
    """Sleeps in the sandbox."""
    time.sleep(seconds)
    return "rested"


@isolated()
def environment(call_id: str) -> dict[str, Any]:
    """What the sandboxed tool can see."""
    return {"keys": sorted(os.environ), "call_id": call_id, "pid": os.getpid()}


@isolated()
def sandboxed_failure(reason: str) -> str:
    """Raises inside the sandbox."""
    raise ValueError(reason)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "echo": echo,
    "explode": explode,
    "refuse": refuse,
    "slow": slow,
    "big": big,
    "danger": danger,
    "spin": spin,
    "hog": hog,
    "nap": nap,
    "environment": environment,
    "sandboxed_failure": sandboxed_failure,
}
ALLOWED = tuple(name for name in FUNCTIONS if name != "danger")


def _catalog() -> AgentCatalog:
    base = builtin_catalog()
    tools = dict(base.tools)
    for name, func in FUNCTIONS.items():
        tools[name] = ToolConfig(name, f"{__name__}:{name}", RegisteredTool.of(name, func))
    agent = AgentConfig(name="worker", model="sim", tools=ALLOWED)
    return AgentCatalog({**base.agents, "worker": agent}, base.models, tools)


@pytest.fixture
def runner() -> ToolRunner:
    CALLS.clear()
    return ToolRunner(_catalog(), settings=ToolRunnerSettings(max_output_bytes=1000, timeout_s=0.3))


async def _run(runner: ToolRunner, tool: str, arguments: Any, **extra: Any) -> Any:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await runner.run(
        agent=extra.pop("agent", "worker"),
        tool=tool,
        arguments_json=text,
        call_id="call-7",
        **extra,
    )


async def test_runs_an_allowed_tool_with_the_call_id(runner: ToolRunner) -> None:
    outcome = await _run(runner, "echo", {"text": "hi"})
    assert (outcome.ok, outcome.output) == (True, "hi (call-7)")
    assert CALLS == ["call-7"]


async def test_a_tool_outside_the_allow_list_runs_nothing(runner: ToolRunner) -> None:
    outcome = await _run(runner, "danger", {})
    assert not outcome.ok and "not allowed for agent worker" in outcome.error
    outcome = await _run(runner, "echo", {"text": "x"}, agent="nobody")
    assert not outcome.ok and "not allowed" in outcome.error
    assert CALLS == []


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("echo", "{not json", "invalid arguments: not JSON"),
        ("echo", {"text": 3}, "invalid arguments"),
        ("echo", {}, "invalid arguments"),
        ("explode", {"reason": "kaput"}, "RuntimeError: kaput"),
        ("refuse", {"reason": "no such order"}, "no such order"),
        ("slow", {"seconds": 5}, "timed out after 0.3 s"),
        ("big", {"size": 5000}, "output too large: 5000 bytes (limit 1000)"),
    ],
)
async def test_failures_are_results_the_model_reads(
    runner: ToolRunner, tool: str, arguments: Any, reason: str
) -> None:
    outcome = await _run(runner, tool, arguments)
    assert not outcome.ok and reason in outcome.error


async def test_the_deadline_binding_leaves_it_to_the_engine_timer(runner: ToolRunner) -> None:
    assert await _run(runner, "slow", {"seconds": 5}, timeout_s=0.1) is None


async def test_sandbox_answers_and_hides_the_environment(
    runner: ToolRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    outcome = await _run(runner, "environment", {})
    assert outcome.ok, outcome.error
    seen = json.loads(outcome.output)
    assert seen["call_id"] == "call-7" and seen["pid"] != os.getpid()
    assert "OPENAI_API_KEY" not in seen["keys"]


async def test_sandbox_limits(runner: ToolRunner) -> None:
    cpu, memory, wall, failure, bad = await asyncio.gather(
        _run(runner, "spin", {"seconds": 10}),
        _run(runner, "hog", {"megabytes": 1024}),
        _run(runner, "nap", {"seconds": 30}),
        _run(runner, "sandboxed_failure", {"reason": "nope"}),
        _run(runner, "hog", {"megabytes": "lots"}),
    )
    assert not cpu.ok and "CPU time limit (1 s)" in cpu.error
    assert not memory.ok and "MemoryError" in memory.error
    assert not wall.ok and "timed out after 0.5 s" in wall.error
    assert not failure.ok and failure.error == "ValueError: nope"
    assert not bad.ok and "invalid arguments" in bad.error


async def test_operator_can_sandbox_any_tool() -> None:
    runner = ToolRunner(_catalog(), settings=ToolRunnerSettings(sandboxes={"echo": Sandbox()}))
    CALLS.clear()
    outcome = await _run(runner, "echo", {"text": "far away"})
    assert outcome.ok and outcome.output == "far away (call-7)"
    assert CALLS == []  # it ran in the child, not here


async def test_handler_turns_work_into_results(runner: ToolRunner) -> None:
    handle = runner.handler()
    work = {
        "event_id": "e1", "session_id": "s1", "tenant_id": "t", "time_ms": 0,
        "causation_id": None, "correlation_id": "c", "call_id": "call-9", "agent": "worker",
        "tool": "danger", "arguments_json": "{}", "deadline_ms": 0,
    }  # fmt: skip
    result = await handle("ToolCallWork", work)
    assert result is not None
    name, record = result
    assert name == "ToolCallResult" and record["ok"] is False and "not allowed" in record["error"]
    assert CALLS == []
    expired = await handle("ToolCallWork", {**work, "deadline_ms": 1})
    assert expired is None

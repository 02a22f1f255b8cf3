"""Running tools safely: allow-list, argument checks, timeouts, output limit, sandbox.

The tool executor's handler. Every check before a tool runs is a result the
model can read, never an exception out of the executor::

    tool not in the calling agent's tools  -> "tool X is not allowed for agent A" (nothing runs)
    unknown tool, bad JSON, wrong arguments -> run_tool's reasons (nothing runs)
    the tool raises                         -> "<Type>: message"
    the tool takes longer than its timeout  -> "tool X timed out after N s"
    the output is larger than the limit     -> "output too large: N bytes (limit M)"

The engine already refuses a tool outside the agent's allow-list before any
work item exists; checking again here means a forged or stale work item on
the tool-calls topic runs nothing either.

In-process tools run as before (a coroutine is awaited, a plain function
runs in a worker thread; a thread cannot be killed, so a runaway sync tool
keeps its thread after its timeout). CPU-bound or untrusted tools belong in
the sandbox, marked with :func:`isolated` or listed in
``ToolRunnerSettings.sandboxes``: each call runs in a fresh child Python
(``-I``, an environment without the parent's variables, so no API key is
visible) that sets ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE`` and
``RLIMIT_CORE`` on itself before importing the tool, and is killed with
its process group at the wall-clock limit. The call id is handed to the tool
(``call_id`` keyword) as its idempotency key, in or out of the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import resource
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from processors.agents.catalog import AgentCatalog
from processors.agents.tools import (
    RegisteredTool,
    ToolError,
    ToolOutcome,
    ToolRegistry,
    parse_arguments,
    run_tool,
    tool_result_record,
)
from processors.executors.work_executor import Handler, Record

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__agentstream_sandbox__"


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Limits of a tool run in a child process."""

    cpu_s: float = 5.0
    """CPU seconds (RLIMIT_CPU); the child is killed past them."""
    memory_mb: int = 512
    """Address space (RLIMIT_AS); allocations past it fail with MemoryError."""
    wall_s: float = 30.0
    """Wall-clock seconds before the child's process group is killed."""
    file_mb: int = 1
    """Largest file the tool may write (RLIMIT_FSIZE)."""


def isolated(
    cpu_s: float = 5.0, memory_mb: int = 512, wall_s: float = 30.0, file_mb: int = 1
) -> Callable[[F], F]:
    """Mark a tool function to run in the sandbox with these limits."""

    def mark(func: F) -> F:
        setattr(func, _MARK, Sandbox(cpu_s, memory_mb, wall_s, file_mb))
        return func

    return mark


@dataclass(frozen=True)
class ToolRunnerSettings:
    """Limits every tool call gets."""

    max_output_bytes: int = 64 * 1024
    """Larger outputs fail the call (UTF-8 bytes)."""
    timeout_s: float = 60.0
    """In-process tools; the work item's deadline also bounds every call."""
    sandboxes: Mapping[str, Sandbox] = field(default_factory=dict)
    """Tools to sandbox by name, whatever their code says (the operator's choice)."""


class ToolRunner:
    """Runs tool calls for agents of ``agents`` (see the module docstring)."""

    def __init__(
        self,
        agents: AgentCatalog,
        registry: ToolRegistry | None = None,
        settings: ToolRunnerSettings | None = None,
        *,
        fail_all: bool = False,
    ) -> None:
        self.agents = agents
        self.registry = registry or agents.registry(fail_all=fail_all)
        self.settings = settings or ToolRunnerSettings()

    def sandbox_of(self, tool: RegisteredTool) -> Sandbox | None:
        found = self.settings.sandboxes.get(tool.name)
        mark = getattr(tool.func, _MARK, None)
        return found or (mark if isinstance(mark, Sandbox) else None)

    async def run(
        self,
        *,
        agent: str,
        tool: str,
        arguments_json: str,
        call_id: str,
        timeout_s: float | None = None,
    ) -> ToolOutcome | None:
        """The outcome of one call; None when ``timeout_s`` (the deadline) ran out first."""
        config = self.agents.agent(agent)
        if config is None or tool not in config.tools:
            return ToolOutcome(False, "", f"tool {tool} is not allowed for agent {agent}")
        registered = self.registry.get(tool)
        sandbox = self.sandbox_of(registered) if registered is not None else None
        limit = self.settings.timeout_s if sandbox is None else sandbox.wall_s
        deadline_binds = timeout_s is not None and timeout_s <= limit
        budget = min(limit, timeout_s) if timeout_s is not None else limit
        try:
            if sandbox is not None and registered is not None and not self.registry.fail_all:
                outcome = await _in_sandbox(registered, arguments_json, call_id, sandbox, budget)
            else:
                outcome = await asyncio.wait_for(
                    run_tool(self.registry, tool, arguments_json, call_id), budget
                )
        except TimeoutError:
            if deadline_binds:
                return None  # the engine's tool timer records it
            return ToolOutcome(False, "", f"tool {tool} timed out after {budget:g} s")
        size = len(outcome.output.encode("utf-8"))
        if size > self.settings.max_output_bytes:
            limit_bytes = self.settings.max_output_bytes
            return ToolOutcome(False, "", f"output too large: {size} bytes (limit {limit_bytes})")
        return outcome

    def handler(self) -> Handler:
        """Handler of ``ToolCallWork`` for a tool executor."""

        async def handle(name: str, item: dict[str, Any]) -> Record | None:
            if name != "ToolCallWork":
                raise ValueError(f"{name} is not a tool work item")
            deadline_ms = int(item.get("deadline_ms") or 0)
            left = (deadline_ms - time.time() * 1000) / 1000 if deadline_ms else None
            if left is not None and left <= 0:
                return None
            started = time.perf_counter()
            outcome = await self.run(
                agent=str(item.get("agent", "")),
                tool=str(item["tool"]),
                arguments_json=str(item["arguments_json"]),
                call_id=str(item["call_id"]),
                timeout_s=left,
            )
            if outcome is None:
                return None
            record = tool_result_record(
                item,
                outcome,
                event_id=str(uuid.uuid4()),
                time_ms=int(time.time() * 1000),
                latency_s=time.perf_counter() - started,
            )
            return "ToolCallResult", record

        return handle


# -- the sandbox: parent side --------------------------------------------------------------------

_BOOT = (
    "import sys, json; payload = json.loads(sys.stdin.buffer.read()); "
    "sys.path[:0] = payload['path']; "
    "from processors.executors.tool_runner import child_main; child_main(payload)"
)


async def _in_sandbox(
    tool: RegisteredTool, arguments_json: str, call_id: str, sandbox: Sandbox, wall_s: float
) -> ToolOutcome:
    arguments = parse_arguments(tool, arguments_json)
    if isinstance(arguments, ToolOutcome):
        return arguments
    module, qualname = getattr(tool.func, "__module__", ""), getattr(tool.func, "__qualname__", "")
    if not module or "<" in qualname:
        return ToolOutcome(False, "", f"tool {tool.name} cannot run in a sandbox: not importable")
    payload = {
        "path": [p for p in sys.path if p],
        "module": module,
        "qualname": qualname,
        "arguments": arguments,
        "call_id": call_id if tool.takes_call_id else None,
        "limits": [sandbox.cpu_s, sandbox.memory_mb, sandbox.file_mb],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _BOOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        start_new_session=True,
    )  # fmt: skip
    try:
        out = await asyncio.wait_for(_talk(process, json.dumps(payload).encode()), wall_s)
    except BaseException:
        _kill(process)
        await process.wait()
        raise
    code = await process.wait()
    if code < 0:
        if -code in (signal.SIGXCPU, signal.SIGKILL):
            reason = f"tool {tool.name} exceeded its CPU time limit ({sandbox.cpu_s:g} s)"
            return ToolOutcome(False, "", reason)
        return ToolOutcome(False, "", f"tool {tool.name} was killed by signal {-code}")
    try:
        result = json.loads(out)
    except ValueError:
        return ToolOutcome(False, "", f"tool {tool.name} died without an answer (exit {code})")
    if result.get("ok"):
        return ToolOutcome(True, str(result.get("output", "")), None)
    return ToolOutcome(False, "", str(result.get("error") or "tool failed"))


async def _talk(process: asyncio.subprocess.Process, payload: bytes) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(payload)
    with contextlib.suppress(ConnectionError):
        await process.stdin.drain()
    process.stdin.close()
    chunks: list[bytes] = []
    size = 0
    while chunk := await process.stdout.read(65536):
        size += len(chunk)
        if size > 64 * 1024 * 1024:
            _kill(process)
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# -- the sandbox: child side ---------------------------------------------------------------------


def child_main(payload: dict[str, Any]) -> None:
    """In the child: limit ourselves, import the tool, run it, print one JSON line, exit."""
    cpu_s, memory_mb, file_mb = payload["limits"]
    cpu = max(1, int(cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        target: Any = importlib.import_module(payload["module"])
        for part in str(payload["qualname"]).split("."):
            target = getattr(target, part)
        arguments = dict(payload["arguments"])
        if payload.get("call_id") is not None:
            arguments["call_id"] = payload["call_id"]
        value = target(**arguments)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
        answer = {"ok": True, "output": "" if value is None else text}
    except ToolError as error:
        answer = {"ok": False, "error": str(error) or "tool failed"}
    except MemoryError:
        answer = {
            "ok": False,
            "error": f"MemoryError: over the tool's memory limit ({memory_mb} MB)",
        }
    except BaseException as error:
        answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    os._exit(0)


async def _awaited(value: Any) -> Any:
    return await value

"""Tools: a registry of named callables with JSON schemas, and the one way to run them.

A tool is a plain function, async or not, with type hints (see
:mod:`processors.agents.tool_schema` for what hints mean); the model is shown the
schema built from them. :func:`run_tool` is what a tool executor calls for one
``ToolCallWork``: it parses and checks the model's arguments, calls the tool,
and turns every outcome into a :class:`ToolOutcome`. It never raises for a
tool's own failure, because a failing tool is a normal event the model must
see ("error: ..."), not a crash of the executor.

Hierarchy of what a tool's failure becomes::

    bad JSON / missing or wrong-typed argument -> ok=False, "invalid arguments: ..."
    unknown tool                                -> ok=False, "unknown tool ..."
    ToolError raised by the tool                -> ok=False, its message
    any other Exception                         -> ok=False, "<Type>: message"
    registry.fail_all                           -> ok=False, without calling the tool
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from processors.agents.builtin_tools import ToolError, calculate, calculator, forecast, weather
from processors.agents.model_types import ToolSpec, canonical_json
from processors.agents.tool_schema import INJECTED, ToolSchemaError, check_arguments, tool_schema

__all__ = [
    "RegisteredTool",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "ToolSchemaError",
    "builtin_registry",
    "calculate",
    "calculator",
    "check_arguments",
    "forecast",
    "parse_arguments",
    "run_tool",
    "tool_result_record",
    "tool_schema",
    "weather",
]


@dataclass(frozen=True, slots=True)
class RegisteredTool:
    """A tool the registry can run."""

    name: str
    """The name models call it by."""
    func: Callable[..., Any]
    """The function; a coroutine function is awaited, a plain one runs in a worker thread."""
    schema: dict[str, Any]
    """JSON schema (``type: object``) of its arguments."""
    description: str
    """What it does, shown to the model."""
    takes_call_id: bool
    """Whether ``func`` takes the ``call_id`` keyword (the idempotency key)."""

    @property
    def spec(self) -> ToolSpec:
        """How the tool is shown to a model (the description once, not again in the schema)."""
        parameters = {k: v for k, v in self.schema.items() if k != "description"}
        return ToolSpec(self.name, self.description, canonical_json(parameters))

    @staticmethod
    def of(name: str, func: Callable[..., Any], description: str | None = None) -> RegisteredTool:
        """Describe ``func`` from its type hints; raises ToolSchemaError if they cannot be."""
        schema = tool_schema(func)
        params = inspect.signature(func).parameters
        return RegisteredTool(
            name=name,
            func=func,
            schema=schema,
            description=description if description is not None else schema.get("description", ""),
            takes_call_id=any(p in params for p in INJECTED),
        )


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What running one tool call gave (maps onto ``ToolCallResult``)."""

    ok: bool
    """True when the tool returned normally."""
    output: str
    """The tool's output text ("" when it failed)."""
    error: str | None
    """Why it failed (ok=False), shown to the model."""


class ToolRegistry:
    """Tools by name. ``fail_all=True`` makes every call fail without running anything.

    The failing mode exists for the test that rebuilds sessions with tools that
    must never be called: replay reads results from events, and a call that
    slipped through would show up as a failure.
    """

    def __init__(self, tools: Iterable[RegisteredTool] = (), *, fail_all: bool = False) -> None:
        self._tools: dict[str, RegisteredTool] = {tool.name: tool for tool in tools}
        self.fail_all = fail_all

    def register(
        self, name: str, func: Callable[..., Any], description: str | None = None
    ) -> RegisteredTool:
        """Add (or replace) the tool ``name``; returns its description."""
        tool = RegisteredTool.of(name, func, description)
        self._tools[name] = tool
        return tool

    def add(self, tool: RegisteredTool) -> None:
        """Add (or replace) an already described tool."""
        self._tools[tool.name] = tool

    def get(self, name: str) -> RegisteredTool | None:
        return self._tools.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[RegisteredTool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def builtin_registry(*, fail_all: bool = False) -> ToolRegistry:
    """A registry holding the built-in tools ``calculator`` and ``weather``."""
    registry = ToolRegistry(fail_all=fail_all)
    registry.register("calculator", calculator)
    registry.register("weather", weather)
    return registry


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def parse_arguments(tool: RegisteredTool, arguments_json: str) -> dict[str, Any] | ToolOutcome:
    """The model's arguments for ``tool`` as keywords, or the failed outcome saying why not."""
    try:
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except ValueError as error:
        return ToolOutcome(False, "", f"invalid arguments: not JSON ({error})")
    problem = check_arguments(arguments, tool.schema)
    if problem:
        return ToolOutcome(False, "", f"invalid arguments: {problem}")
    return dict(arguments)


async def run_tool(
    registry: ToolRegistry, name: str, arguments_json: str, call_id: str
) -> ToolOutcome:
    """Run tool ``name`` with the model's ``arguments_json``; never raises for a tool failure.

    ``call_id`` is passed to tools that take a ``call_id`` keyword, so a tool
    with side effects can make a retried call idempotent. Cancellation
    (``asyncio.CancelledError``) is not a tool failure and propagates.
    """
    if registry.fail_all:
        return ToolOutcome(False, "", f"tool {name} is set to fail every call")
    tool = registry.get(name)
    if tool is None:
        return ToolOutcome(False, "", f"unknown tool {name!r}")
    arguments = parse_arguments(tool, arguments_json)
    if isinstance(arguments, ToolOutcome):
        return arguments
    if tool.takes_call_id:
        arguments["call_id"] = call_id
    try:
        if inspect.iscoroutinefunction(tool.func):
            result = await tool.func(**arguments)
        else:
            result = await asyncio.to_thread(tool.func, **arguments)
            if inspect.isawaitable(result):
                result = await result
    except ToolError as error:
        return ToolOutcome(False, "", str(error) or "tool failed")
    except Exception as error:
        return ToolOutcome(False, "", f"{type(error).__name__}: {error}")
    return ToolOutcome(True, _as_text(result), None)


def tool_result_record(
    work: dict[str, Any],
    outcome: ToolOutcome,
    *,
    event_id: str,
    time_ms: int,
    latency_s: float = 0.0,
) -> dict[str, Any]:
    """The ``ToolCallResult`` command answering ``ToolCallWork`` record ``work``.

    Envelope: the work item's session, tenant and correlation; causation is
    the work item's event id.
    """
    return {
        "event_id": event_id,
        "session_id": work["session_id"],
        "tenant_id": work["tenant_id"],
        "time_ms": time_ms,
        "causation_id": work["event_id"],
        "correlation_id": work.get("correlation_id"),
        "call_id": work["call_id"],
        "ok": outcome.ok,
        "output": outcome.output,
        "error": outcome.error,
        "latency_s": latency_s,
    }

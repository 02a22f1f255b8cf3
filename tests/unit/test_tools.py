"""Tools: calculator safety, weather determinism, schemas from type hints, run_tool outcomes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest

from processors.agents.tools import (
    ToolError,
    ToolOutcome,
    ToolRegistry,
    ToolSchemaError,
    builtin_registry,
    calculate,
    check_arguments,
    forecast,
    run_tool,
    tool_result_record,
    tool_schema,
)
from schemas import Codec

# -- calculator ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("6*7", "42"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("-3 + +5", "2"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("7 % 4", "3"),
        ("2 ** 10", "1024"),
        ("2 ^ 3", "8"),
        ("6 / 3", "2"),
        ("1 / 3", "0.333333333333"),
        ("2 ** -1", "0.5"),
        ("0.1 + 0.2", "0.3"),
        ("10 ** 300", "1" + "0" * 300),
        ("(" * 100 + "1" + ")" * 100, "1"),
    ],
)
def test_calculator_computes(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('echo hi')", "not allowed"),
        ("x + 1", "not allowed"),
        ("abs(-1)", "not allowed"),
        ("(1).real", "not allowed"),
        ("[1, 2][0]", "not allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("lambda: 1", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("1 < 2", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 100000", "too large"),
        ("(10 ** 300) * (10 ** 300)", "too large"),
        ("2.0 ** 5000", "too large"),
        ("1e308 * 10", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("", "empty"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 600, "too long"),
    ],
)
def test_calculator_refuses_unsafe_or_impossible_input(expression: str, reason: str) -> None:
    with pytest.raises(ToolError) as caught:
        calculate(expression)
    assert reason in str(caught.value)


def test_weather_is_deterministic_and_plausible() -> None:
    assert forecast("Paris") == forecast("Paris") == forecast("  paris ").replace("paris", "Paris")
    assert forecast("Paris").startswith("Paris: ")
    temperatures = {int(forecast(c).split(": ")[1].split("°")[0]) for c in ("A", "B", "C", "D")}
    assert all(-10 <= t <= 35 for t in temperatures)
    assert len({forecast(c) for c in ("Oslo", "Lima", "Rome", "Pune", "Kyiv")}) > 1
    with pytest.raises(ToolError):
        forecast("   ")


# -- schemas from type hints --------------------------------------------------------------------


async def lookup(
    order_id: str,
    count: int,
    ratio: float,
    urgent: bool,
    tags: list[str],
    mode: Literal["fast", "slow"],
    note: str | None = None,
    limit: int = 10,
    extra: Annotated[str, "free text for the clerk"] = "",
    *,
    call_id: str = "",
) -> str:
    """Look an order up.

    More text that the model does not need.
    """
    return f"{order_id}:{call_id}"


def test_schema_from_type_hints() -> None:
    schema = tool_schema(lookup)
    assert schema["description"] == "Look an order up."
    assert schema["required"] == ["order_id", "count", "ratio", "urgent", "tags", "mode"]
    props = schema["properties"]
    assert props["order_id"] == {"type": "string"}
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["urgent"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert props["note"] == {"type": "string", "default": None}
    assert props["limit"] == {"type": "integer", "default": 10}
    assert props["extra"]["description"] == "free text for the clerk"
    assert "call_id" not in props  # injected by the runner, not written by the model
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_unsupported_signatures_are_refused() -> None:
    def no_hint(x):  # type: ignore[no-untyped-def]
        return x

    def var_args(*args: int) -> int:
        return 0

    def odd(x: set[int]) -> int:
        return 0

    for func in (no_hint, var_args, odd):
        with pytest.raises(ToolSchemaError):
            tool_schema(func)


def test_argument_check() -> None:
    schema = tool_schema(lookup)
    good: dict[str, Any] = {
        "order_id": "A1",
        "count": 2,
        "ratio": 1,
        "urgent": False,
        "tags": ["x"],
        "mode": "fast",
    }
    assert check_arguments(good, schema) is None
    assert check_arguments([], schema) is not None
    assert "expected string" in (check_arguments({**good, "order_id": None}, schema) or "")
    assert "count: expected integer" in (check_arguments({**good, "count": True}, schema) or "")
    assert "count: expected integer" in (check_arguments({**good, "count": 1.5}, schema) or "")
    assert "tags[0]" in (check_arguments({**good, "tags": [1]}, schema) or "")
    assert "one of" in (check_arguments({**good, "mode": "warp"}, schema) or "")
    assert "unexpected" in (check_arguments({**good, "zzz": 1}, schema) or "")
    missing = dict(good)
    del missing["mode"]
    assert check_arguments(missing, schema) == "mode: missing"


# -- running tools ---------------------------------------------------------------------------------


async def test_run_builtin_tools() -> None:
    registry = builtin_registry()
    assert await run_tool(registry, "calculator", '{"expression": "6*7"}', "c1") == ToolOutcome(
        True, "42", None
    )
    outcome = await run_tool(registry, "weather", '{"city": "Paris"}', "c2")
    assert outcome.ok and outcome.output == forecast("Paris")
    outcome = await run_tool(registry, "calculator", '{"expression": "1/0"}', "c3")
    assert (outcome.ok, outcome.error) == (False, "division by zero")


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("calculator", "{not json", "invalid arguments: not JSON"),
        ("calculator", "[1]", "must be a JSON object"),
        ("calculator", "{}", "expression: missing"),
        ("calculator", '{"expression": 6}', "expected string"),
        ("calculator", '{"expression": "1", "x": 1}', "unexpected argument"),
        ("teleport", "{}", "unknown tool"),
    ],
)
async def test_bad_calls_become_failed_outcomes(name: str, arguments: str, error: str) -> None:
    outcome = await run_tool(builtin_registry(), name, arguments, "c")
    assert not outcome.ok and error in (outcome.error or "")


async def test_tool_exceptions_never_escape_and_call_id_is_passed() -> None:
    def explode(x: int) -> str:
        """Fails."""
        raise RuntimeError(f"bad {x}")

    def sync_echo(text: str, call_id: str) -> dict[str, str]:
        """Echo, in a worker thread."""
        return {"text": text, "call_id": call_id}

    registry = ToolRegistry()
    registry.register("explode", explode)
    registry.register("echo", sync_echo)
    registry.register("lookup", lookup)
    outcome = await run_tool(registry, "explode", '{"x": 1}', "c")
    assert outcome == ToolOutcome(False, "", "RuntimeError: bad 1")
    outcome = await run_tool(registry, "echo", '{"text": "hi"}', "c-9")
    assert json.loads(outcome.output) == {"text": "hi", "call_id": "c-9"}
    arguments = (
        '{"order_id": "A", "count": 1, "ratio": 0.5, "urgent": true, "tags": [], "mode": "slow"}'
    )
    assert (await run_tool(registry, "lookup", arguments, "c-1")).output == "A:c-1"
    assert "echo" in registry and len(registry) == 3 and registry.get("nope") is None


async def test_fail_all_mode_runs_nothing() -> None:
    ran: list[str] = []

    async def record(text: str) -> str:
        """Remember."""
        ran.append(text)
        return text

    registry = ToolRegistry(fail_all=True)
    registry.register("record", record)
    outcome = await run_tool(registry, "record", '{"text": "x"}', "c")
    assert not outcome.ok and ran == []
    assert not (await run_tool(builtin_registry(fail_all=True), "calculator", "{}", "c")).ok


def test_tool_result_record_fits_the_schema() -> None:
    work = {
        "event_id": "w1",
        "session_id": "s",
        "tenant_id": "t",
        "correlation_id": "k",
        "call_id": "c1",
    }
    record = tool_result_record(work, ToolOutcome(True, "42", None), event_id="r1", time_ms=5)
    Codec().encode("ToolCallResult", record)
    assert record["causation_id"] == "w1" and record["call_id"] == "c1"


def test_spec_shows_the_description_once() -> None:
    spec = builtin_registry().get("calculator")
    assert spec is not None
    assert spec.spec.description.startswith("Evaluate an arithmetic expression")
    assert "description" not in json.loads(spec.spec.parameters_json)

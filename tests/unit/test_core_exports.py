"""The public surface of the session core and its neighbours, pinned: changing it is a decision.

The runtime, the executors and users' tests import these names; removing or
renaming one is a breaking change and must show up here first.
"""

from __future__ import annotations

import inspect

import processors.core as core
from processors.agents import catalog as agents
from processors.agents import loader, tools
from processors.agents import model_types as llm_types
from processors.agents import sim_model as sim
from processors.testing import inline_runtime as sim_loop


def test_core_exports() -> None:
    assert sorted(core.__all__) == sorted(
        [
            "NAMESPACE",
            "Decision",
            "EventOrderError",
            "PendingLLM",
            "PendingTool",
            "Record",
            "SessionState",
            "SnapshotError",
            "Status",
            "Timer",
            "TimerKind",
            "WorkItem",
            "decide",
            "decode_state",
            "derive_id",
            "encode_state",
            "evolve",
            "evolve_private",
            "private_copy",
            "rebuild",
            "timer_command",
            "timers_of",
        ]
    )
    for name in core.__all__:
        assert hasattr(core, name)


def test_core_signatures() -> None:
    assert list(inspect.signature(core.decide).parameters) == ["state", "name", "command", "agents"]
    assert list(inspect.signature(core.evolve).parameters) == ["state", "name", "event"]
    assert list(inspect.signature(core.rebuild).parameters) == ["events", "state"]
    assert list(inspect.signature(core.timers_of).parameters) == ["state"]
    assert [f for f in core.Timer.__dataclass_fields__] == [
        "deadline_ms",
        "kind",
        "call_id",
        "timer_id",
    ]
    assert list(core.WorkItem.__dataclass_fields__) == ["kind", "record"]
    assert list(core.Decision.__dataclass_fields__) == [
        "events",
        "work",
        "state",
        "rejection",
        "duplicate",
    ]


def test_neighbour_modules_export_what_the_runtime_uses() -> None:
    for module, names in (
        (agents, ["AgentCatalog", "AgentConfig", "ModelConfig", "EndpointConfig", "ToolConfig",
                  "AgentsFileError", "builtin_catalog", "Prices", "Budget"]),
        (loader, ["load_agents", "parse_agents_file"]),
        (llm_types, ["LLMRequest", "LLMResponse", "ChatMessage", "ToolCall", "ToolSpec",
                     "ModelError", "prompt_hash", "llm_result_record"]),
        (sim, ["SimulatedModel", "LatencyModel", "ModelError"]),
        (sim_loop, ["InlineRuntime"]),
        (tools, ["ToolRegistry", "ToolOutcome", "run_tool", "tool_schema", "calculator",
                 "weather", "builtin_registry", "tool_result_record", "ToolError"]),
    ):  # fmt: skip
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_the_core_imports_no_io_and_no_event_loop() -> None:
    """A pure core: importing it pulls in no Kafka, Postgres or asyncio."""
    import subprocess
    import sys

    code = (
        "import sys, processors.core; "
        "print(sorted(m for m in ('asyncio', 'aiokafka', 'asyncpg', 'faust', 'sqlalchemy', "
        "'fastavro', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The agents file: built-ins, a good file, and bad files naming file, key and reason."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from processors.agents.catalog import (
    AGENTS_ENV,
    AgentsFileError,
    Prices,
    builtin_catalog,
)
from processors.agents.loader import load_agents

GOOD = """
models:
  fast:
    strategy: least_inflight
    endpoints:
      - {provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:8000/v1",
         api_key_env: OPENAI_API_KEY, weight: 1, rpm: 600, tpm: 200000}
      - {provider: sim, options: {seed: 3, latency: {kind: fixed, fixed_s: 0.1}}}
    fallbacks: [sim]
    prices: {input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}
agents:
  support:
    model: fast
    system: You are a support agent.
    tools: [lookup_order, refund]
    approval: [refund]
    max_steps: 8
    budget: {tokens: 20000, cost_usd: 0.50}
    llm_timeout_s: 30
    tool_timeout_s: 5
    approval_timeout_s: 600
    idle_timeout_s: 120
  minimal:
    model: sim
tools:
  lookup_order: agents_fixture_tools:lookup_order
  refund: {import: "agents_fixture_tools:refund", description: Give money back.}
"""

TOOLS_MODULE = '''
from typing import Literal


async def lookup_order(order_id: str) -> str:
    """Find an order by its id."""
    return order_id


def refund(order_id: str, amount: float, reason: Literal["damaged", "late"] = "late") -> str:
    """Refund an order."""
    return "ok"


def untyped(order_id):
    return order_id


NOT_CALLABLE = 3
'''


@pytest.fixture(autouse=True)
def fixture_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "agents_fixture_tools.py").write_text(TOOLS_MODULE)
    (tmp_path / "agents_fixture_broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(AGENTS_ENV, raising=False)
    for name in ("agents_fixture_tools", "agents_fixture_broken"):
        sys.modules.pop(name, None)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agents.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_builtins_without_a_file() -> None:
    catalog = load_agents(None)
    assert catalog == builtin_catalog()
    demo = catalog.agents["demo"]
    assert (demo.model, demo.tools, demo.max_steps) == ("sim", ("calculator", "weather"), 8)
    assert catalog.models["sim"].endpoints[0].provider == "sim"
    assert [s.name for s in catalog.tool_specs("demo")] == ["calculator", "weather"]
    assert set(catalog.registry().names()) == {"calculator", "weather"}


def test_good_file_loads(tmp_path: Path) -> None:
    catalog = load_agents(write(tmp_path, GOOD))
    assert catalog.source == str(tmp_path / "agents.yaml")
    support = catalog.agents["support"]
    assert support.tools == ("lookup_order", "refund")
    assert support.approval == frozenset({"refund"})
    assert (support.budget.tokens, support.budget.cost_usd) == (20000, 0.5)
    assert (support.llm_timeout_ms, support.tool_timeout_ms) == (30_000, 5_000)
    assert (support.approval_timeout_ms, support.idle_timeout_ms) == (600_000, 120_000)
    fast = catalog.models["fast"]
    assert fast.strategy == "least_inflight" and fast.fallbacks == ("sim",)
    assert fast.endpoints[0].rpm == 600 and fast.endpoints[0].api_key_env == "OPENAI_API_KEY"
    assert fast.endpoints[1].model == "sim" and fast.endpoints[1].options["seed"] == 3
    assert fast.prices == Prices(0.15, 0.60, 0.075)
    assert fast.prices.cost(1_000_000, 1_000_000, 0) == pytest.approx(0.75)
    assert fast.prices.cost(1_000_000, 0, 1_000_000) == pytest.approx(0.075)
    specs = {s.name: s for s in catalog.tool_specs("support")}
    assert specs["lookup_order"].description == "Find an order by its id."
    assert specs["refund"].description == "Give money back."
    assert '"enum":["damaged","late"]' in specs["refund"].parameters_json
    minimal = catalog.agents["minimal"]
    assert (minimal.tools, minimal.max_steps, minimal.system) == ((), 8, "")
    assert "demo" in catalog.agents and "calculator" in catalog.tools  # built-ins stay


def test_env_var_is_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENTS_ENV, write(tmp_path, GOOD))
    assert "support" in load_agents().agents
    monkeypatch.setenv(AGENTS_ENV, "")
    assert "support" not in load_agents().agents


def test_empty_file_means_builtins(tmp_path: Path) -> None:
    assert set(load_agents(write(tmp_path, "")).agents) == {"demo"}


BAD = [
    ("agents:\n  a: {model: nope}\n", "agents.a.model", "unknown model 'nope'"),
    (
        "agents:\n  a: {model: sim, tools: [calculator, ghost]}\n",
        "agents.a.tools[1]",
        "unknown tool 'ghost'",
    ),
    (
        "agents:\n  a: {model: sim, tools: [calculator, calculator]}\n",
        "agents.a.tools[1]",
        "listed twice",
    ),
    (
        "agents:\n  a: {model: sim, tools: [calculator], approval: [weather]}\n",
        "agents.a.approval[0]",
        "not in this agent's tools",
    ),
    ("agents:\n  a: {system: hi}\n", "agents.a.model", "missing key"),
    ("agents:\n  a: {model: sim, max_steps: many}\n", "agents.a.max_steps", "must be an integer"),
    ("agents:\n  a: {model: sim, max_steps: 0}\n", "agents.a.max_steps", "at least 1"),
    ("agents:\n  a: {model: sim, max_step: 3}\n", "agents.a.max_step", "unknown key"),
    ("agents:\n  a: {model: sim, budget: {tokens: -1}}\n", "agents.a.budget.tokens", "at least 1"),
    ("agents:\n  a: {model: sim, llm_timeout_s: 0}\n", "agents.a.llm_timeout_s", "above 0"),
    ("agents:\n  a: {model: sim, tools: calculator}\n", "agents.a.tools", "must be a list"),
    ("agents:\n  a: [sim]\n", "agents.a", "must be a mapping"),
    (
        "models:\n  m: {strategy: fastest, endpoints: [{provider: sim}]}\n",
        "models.m.strategy",
        "bad strategy 'fastest'",
    ),
    ("models:\n  m: {endpoints: []}\n", "models.m.endpoints", "non-empty list"),
    ("models:\n  m: {strategy: weighted}\n", "models.m.endpoints", "missing key"),
    (
        "models:\n  m: {endpoints: [{provider: openai}]}\n",
        "models.m.endpoints[0].model",
        "missing key",
    ),
    (
        "models:\n  m: {endpoints: [{provider: skynet, model: x}]}\n",
        "models.m.endpoints[0].provider",
        "unknown provider",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim, weight: 0}]}\n",
        "models.m.endpoints[0].weight",
        "above 0",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim, options: {seed: 1, speed: 2}}]}\n",
        "models.m.endpoints[0].options",
        "unknown sim option(s): speed",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim, options: {latency: {kind: uniform, low_s: 2, high_s: 1}}}]}\n",
        "models.m.endpoints[0].options",
        "low_s <= high_s",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim}], fallbacks: [zz]}\n",
        "models.m.fallbacks[0]",
        "unknown model 'zz'",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim}], fallbacks: [m]}\n",
        "models.m.fallbacks[0]",
        "itself",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim}], fallbacks: [n]}\n  n: {endpoints: [{provider: sim}], fallbacks: [m]}\n",
        "models.m.fallbacks",
        "fallback cycle",
    ),
    (
        "models:\n  m: {endpoints: [{provider: sim}], prices: {input_per_mtok: free}}\n",
        "models.m.prices.input_per_mtok",
        "must be a number",
    ),
    ("tools:\n  t: no_colon_here\n", "tools.t", "must look like"),
    (
        "tools:\n  t: agents_fixture_missing:thing\n",
        "tools.t",
        "cannot import 'agents_fixture_missing'",
    ),
    ("tools:\n  t: agents_fixture_broken:thing\n", "tools.t", "boom at import"),
    ("tools:\n  t: agents_fixture_tools:nothing\n", "tools.t", "has no attribute 'nothing'"),
    ("tools:\n  t: agents_fixture_tools:NOT_CALLABLE\n", "tools.t", "not callable"),
    ("tools:\n  t: agents_fixture_tools:untyped\n", "tools.t", "no type hint"),
    ("tools:\n  t: {description: x}\n", "tools.t.import", "missing key"),
    ("agentz: {}\n", "agentz", "unknown key"),
    ("- just\n- a list\n", "", "must be a mapping"),
    ("agents: {a: [unclosed\n", "", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD, ids=[b[1] or b[2] for b in BAD])
def test_bad_files_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(AgentsFileError) as caught:
        load_agents(path)
    error = caught.value
    assert error.file == path
    assert error.key == key
    assert reason in error.reason
    assert str(error).startswith(path)
    assert key in str(error) and reason in str(error)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(AgentsFileError) as caught:
        load_agents(path)
    assert caught.value.file == path and "cannot read" in caught.value.reason

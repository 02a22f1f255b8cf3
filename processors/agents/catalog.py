"""Agents, models and tools as users declare them, and the catalog the engine reads.

What a user writes is small and declarative (an agents file, YAML); this
module holds its typed, frozen form. The session core only reads an
:class:`AgentCatalog` (which agent uses which model, tools, approval gate,
limits and timeouts); executors read models and tools from it too. Parsing
and checking the file lives in :mod:`processors.agents.loader`.

Built in, with no file at all: the model ``sim`` (the simulated model), the
tools ``calculator`` and ``weather``, and the agent ``demo`` that uses both.
A file adds to them and may redefine them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentstream.errors import AgentstreamError
from processors.agents.model_types import ToolSpec
from processors.agents.tools import RegisteredTool, ToolRegistry, calculator, weather

AGENTS_ENV = "AGENTSTREAM_AGENTS"
"""Environment variable naming the default agents file."""

Strategy = Literal["round_robin", "least_inflight", "weighted", "latency"]
Priority = Literal["interactive", "normal", "batch"]
PRIORITIES: tuple[str, ...] = ("interactive", "normal", "batch")
"""How the LLM pool admits an agent's calls when capacity is short (processors.executors.pool)."""
STRATEGIES: tuple[str, ...] = ("round_robin", "least_inflight", "weighted", "latency")
PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "sim")
"""Provider kinds an endpoint may name (the LLM pool implements each)."""

DEFAULT_MAX_STEPS = 8
DEFAULT_LLM_TIMEOUT_S = 120.0
DEFAULT_TOOL_TIMEOUT_S = 60.0
DEFAULT_APPROVAL_TIMEOUT_S = 86_400.0
DEFAULT_IDLE_TIMEOUT_S = 300.0


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One concrete model behind a model name."""

    provider: str
    """openai | anthropic | sim."""
    model: str
    """The provider's model id, e.g. ``gpt-4o-mini``."""
    base_url: str | None = None
    """API base URL (OpenAI-compatible servers); None for the provider default."""
    api_key_env: str | None = None
    """Environment variable holding the API key (the key itself never sits in the file)."""
    weight: float = 1.0
    """Share of traffic under the ``weighted`` strategy."""
    rpm: int | None = None
    """Requests per minute this endpoint allows; None when unlimited."""
    tpm: int | None = None
    """Tokens per minute this endpoint allows; None when unlimited."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific settings (for ``sim``: seed, latency, failure_rate...)."""


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens; the LLM executor prices each call with them."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Cost of one call; cached prompt tokens are billed at the cached price."""
        uncached = max(0, input_tokens - cached_tokens)
        return (
            uncached * self.input_per_mtok
            + cached_tokens * self.cached_input_per_mtok
            + output_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A model name agents refer to: a pool of endpoints, a strategy, fallbacks, prices."""

    name: str
    """The name agents use, e.g. ``fast``."""
    strategy: Strategy
    """How the pool picks an endpoint: round_robin | least_inflight | weighted | latency."""
    endpoints: tuple[EndpointConfig, ...]
    """At least one."""
    fallbacks: tuple[str, ...] = ()
    """Other model names tried, in order, when every endpoint fails."""
    prices: Prices = Prices()
    """Price table for the cost of each call."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Per-session limits over cumulative usage; None means no limit."""

    tokens: int | None = None
    """Input + output tokens over the whole session."""
    cost_usd: float | None = None
    """US dollars over the whole session."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent: which model it asks, with which system prompt, tools and limits."""

    name: str
    model: str
    """A model name from the catalog."""
    system: str = ""
    """The system message, first in every prompt (omitted when empty)."""
    tools: tuple[str, ...] = ()
    """Tools the model may call, in the order it is shown them."""
    approval: frozenset[str] = frozenset()
    """Tools (a subset of ``tools``) that wait for a human's Approval before running."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Model calls allowed per turn (from a user message to the answer)."""
    budget: Budget = Budget()
    llm_timeout_s: float = DEFAULT_LLM_TIMEOUT_S
    """A model call not answered by then fails the session."""
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    """A tool call not answered by then fails (the model sees the error)."""
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    """An approval not given by then counts as denied."""
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    """Default idle timeout of ``keep_open`` sessions that do not set one."""
    cacheable: bool = False
    """Whether the LLM pool may answer this agent's calls from its response cache
    (same model, messages, tools and parameters -> the same reply)."""
    priority: Priority = "normal"
    """interactive | normal | batch: who waits and who is shed first when rate limits bind;
    ``batch`` (backfill) only uses spare capacity, through the pool's batch lane."""

    @property
    def llm_timeout_ms(self) -> int:
        return _ms(self.llm_timeout_s)

    @property
    def tool_timeout_ms(self) -> int:
        return _ms(self.tool_timeout_s)

    @property
    def approval_timeout_ms(self) -> int:
        return _ms(self.approval_timeout_s)

    @property
    def idle_timeout_ms(self) -> int:
        return _ms(self.idle_timeout_s)


@dataclass(frozen=True, slots=True)
class ToolConfig:
    """A tool: its name, where its function lives, and how the model sees it."""

    name: str
    import_path: str
    """``module:function``; ``builtin`` for the built-in tools."""
    tool: RegisteredTool = field(repr=False)
    """The function with its JSON schema and description."""

    @property
    def spec(self) -> ToolSpec:
        return self.tool.spec


@dataclass(frozen=True, slots=True)
class AgentCatalog:
    """Every agent, model and tool the engine and executors know, by name."""

    agents: Mapping[str, AgentConfig]
    models: Mapping[str, ModelConfig]
    tools: Mapping[str, ToolConfig]
    source: str | None = None
    """The agents file it came from; None for the built-ins alone."""
    _specs: dict[str, tuple[ToolSpec, ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def agent(self, name: str) -> AgentConfig | None:
        return self.agents.get(name)

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name)

    def tool(self, name: str) -> ToolConfig | None:
        return self.tools.get(name)

    def tool_specs(self, agent: str) -> tuple[ToolSpec, ...]:
        """The tools ``agent`` shows its model, in its order (cached: on every prompt)."""
        specs = self._specs.get(agent)
        if specs is None:
            config = self.agents[agent]
            specs = tuple(self.tools[name].spec for name in config.tools)
            self._specs[agent] = specs
        return specs

    def registry(self, *, fail_all: bool = False) -> ToolRegistry:
        """A tool registry holding every tool of the catalog (for a tool executor)."""
        return ToolRegistry((t.tool for t in self.tools.values()), fail_all=fail_all)


SIM_MODEL = ModelConfig(
    name="sim",
    strategy="round_robin",
    endpoints=(EndpointConfig(provider="sim", model="sim"),),
)
DEMO_AGENT = AgentConfig(
    name="demo",
    model="sim",
    system="You are a helpful assistant. Use the tools when they help.",
    tools=("calculator", "weather"),
    max_steps=8,
)


def builtin_tools() -> dict[str, ToolConfig]:
    found: dict[str, Callable[..., Any]] = {"calculator": calculator, "weather": weather}
    return {
        name: ToolConfig(name, "builtin", RegisteredTool.of(name, func))
        for name, func in found.items()
    }


def builtin_catalog() -> AgentCatalog:
    """The catalog with no agents file: model ``sim``, tools calculator/weather, agent demo."""
    return AgentCatalog(
        agents={"demo": DEMO_AGENT}, models={"sim": SIM_MODEL}, tools=builtin_tools()
    )


class AgentsFileError(AgentstreamError, ValueError):
    """An agents file that cannot be used; names the file, the key path and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")

"""Read and check an agents file (YAML) into an :class:`~processors.agents.catalog.AgentCatalog`.

Everything is checked at load, before any session runs, and the first problem
is reported as :class:`~processors.agents.catalog.AgentsFileError` naming the file,
the key path (``agents.support.tools[1]``) and the reason: a missing or
unknown key, a wrong type, an unknown model, tool or strategy, a fallback
cycle, or a tool import path that does not import. Unknown keys are refused
so that a typo (``max_step``) does not silently fall back to a default.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import yaml

from processors.agents.catalog import (
    AGENTS_ENV,
    DEFAULT_APPROVAL_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_LLM_TIMEOUT_S,
    DEFAULT_MAX_STEPS,
    DEFAULT_TOOL_TIMEOUT_S,
    PRIORITIES,
    PROVIDERS,
    STRATEGIES,
    AgentCatalog,
    AgentConfig,
    AgentsFileError,
    Budget,
    EndpointConfig,
    ModelConfig,
    Prices,
    ToolConfig,
    builtin_catalog,
)
from processors.agents.tools import RegisteredTool, ToolSchemaError


def _join(key: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{key}[{child}]"
    return f"{key}.{child}" if key else child


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


class _Checker:
    """Typed reads of the parsed YAML that fail with the file and key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, reason: str) -> NoReturn:
        raise AgentsFileError(self.file, key, reason)

    def mapping(
        self, value: Any, key: str, allowed: tuple[str, ...] = (), required: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a mapping, got {_kind(value)}")
        for name in value:
            if not isinstance(name, str):
                self.fail(key, f"keys must be strings, got {name!r}")
            if allowed and name not in allowed:
                self.fail(_join(key, name), f"unknown key (allowed: {', '.join(allowed)})")
        for name in required:
            if name not in value:
                self.fail(_join(key, name), "missing key")
        return value

    def string(self, value: Any, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_kind(value)}")
        if not empty and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {_kind(value)}")
        if value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {_kind(value)}")
        if value < 0 or (positive and value == 0):
            self.fail(key, f"must be {'above' if positive else 'at least'} 0, got {value}")
        return float(value)

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(key, f"must be a list, got {_kind(value)}")
        names = tuple(self.string(item, _join(key, i)) for i, item in enumerate(value))
        for index, name in enumerate(names):
            if name in names[:index]:
                self.fail(_join(key, index), f"{name!r} is listed twice")
        return names


_ENDPOINT_KEYS = ("provider", "model", "base_url", "api_key_env", "weight", "rpm", "tpm", "options")
_PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")
_AGENT_KEYS = (
    "model",
    "system",
    "tools",
    "approval",
    "max_steps",
    "budget",
    "llm_timeout_s",
    "tool_timeout_s",
    "approval_timeout_s",
    "idle_timeout_s",
    "cacheable",
    "priority",
)


def _endpoint(c: _Checker, value: Any, key: str) -> EndpointConfig:
    raw = c.mapping(value, key, _ENDPOINT_KEYS, ("provider",))
    provider = c.string(raw["provider"], _join(key, "provider"))
    if provider not in PROVIDERS:
        c.fail(_join(key, "provider"), f"unknown provider {provider!r} ({' | '.join(PROVIDERS)})")
    if "model" not in raw and provider != "sim":
        c.fail(_join(key, "model"), "missing key")
    model = c.string(raw.get("model", "sim"), _join(key, "model"))

    def optional_str(name: str) -> str | None:
        return None if raw.get(name) is None else c.string(raw[name], _join(key, name))

    def optional_int(name: str) -> int | None:
        return None if raw.get(name) is None else c.integer(raw[name], _join(key, name), 1)

    options = dict(c.mapping(raw.get("options") or {}, _join(key, "options")))
    if provider == "sim":
        from processors.agents.sim_model import SimulatedModel

        try:
            SimulatedModel.from_options(options)
        except (ValueError, TypeError) as error:
            c.fail(_join(key, "options"), f"bad simulated model options: {error}")
    return EndpointConfig(
        provider=provider,
        model=model,
        base_url=optional_str("base_url"),
        api_key_env=optional_str("api_key_env"),
        weight=c.number(raw.get("weight", 1), _join(key, "weight"), positive=True),
        rpm=optional_int("rpm"),
        tpm=optional_int("tpm"),
        options=options,
    )


def _model(c: _Checker, name: str, value: Any, key: str) -> ModelConfig:
    raw = c.mapping(value, key, ("strategy", "endpoints", "fallbacks", "prices"), ("endpoints",))
    strategy = c.string(raw.get("strategy", "round_robin"), _join(key, "strategy"))
    if strategy not in STRATEGIES:
        c.fail(_join(key, "strategy"), f"bad strategy {strategy!r} ({' | '.join(STRATEGIES)})")
    endpoints = raw["endpoints"]
    if not isinstance(endpoints, list) or not endpoints:
        c.fail(_join(key, "endpoints"), f"must be a non-empty list, got {_kind(endpoints)}")
    prices_raw = c.mapping(raw.get("prices") or {}, _join(key, "prices"), _PRICE_KEYS)
    prices = Prices(
        **{k: c.number(v, _join(_join(key, "prices"), k)) for k, v in prices_raw.items()}
    )
    return ModelConfig(
        name=name,
        strategy=strategy,  # type: ignore[arg-type]  # checked against STRATEGIES
        endpoints=tuple(
            _endpoint(c, e, _join(_join(key, "endpoints"), i)) for i, e in enumerate(endpoints)
        ),
        fallbacks=c.names(raw.get("fallbacks", []), _join(key, "fallbacks")),
        prices=prices,
    )


def _import(c: _Checker, path: str, key: str) -> Callable[..., Any]:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        c.fail(key, f"import path {path!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raises on import
        c.fail(key, f"cannot import {module_name!r}: {type(error).__name__}: {error}")
    for part in attribute.split("."):
        if not hasattr(target, part):
            c.fail(key, f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        c.fail(key, f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _tool(c: _Checker, name: str, value: Any, key: str) -> ToolConfig:
    description: str | None = None
    if isinstance(value, Mapping):
        raw = c.mapping(value, key, ("import", "description"), ("import",))
        path = c.string(raw["import"], _join(key, "import"))
        if raw.get("description") is not None:
            description = c.string(raw["description"], _join(key, "description"))
        key = _join(key, "import")
    else:
        path = c.string(value, key)
    func = _import(c, path, key)
    try:
        return ToolConfig(name, path, RegisteredTool.of(name, func, description))
    except (ToolSchemaError, ValueError, TypeError) as error:
        c.fail(key, f"cannot describe the arguments of {path!r}: {error}")


def _agent(c: _Checker, catalog: _Parts, name: str, value: Any, key: str) -> AgentConfig:
    raw = c.mapping(value, key, _AGENT_KEYS, ("model",))
    model = c.string(raw["model"], _join(key, "model"))
    if model not in catalog.models:
        c.fail(_join(key, "model"), f"unknown model {model!r} (known: {', '.join(catalog.models)})")
    tools = c.names(raw.get("tools", []), _join(key, "tools"))
    for index, tool in enumerate(tools):
        if tool not in catalog.tools:
            known = ", ".join(catalog.tools)
            c.fail(_join(_join(key, "tools"), index), f"unknown tool {tool!r} (known: {known})")
    approval = c.names(raw.get("approval", []), _join(key, "approval"))
    for index, tool in enumerate(approval):
        if tool not in tools:
            c.fail(_join(_join(key, "approval"), index), f"{tool!r} is not in this agent's tools")
    budget_raw = c.mapping(raw.get("budget") or {}, _join(key, "budget"), ("tokens", "cost_usd"))
    bkey = _join(key, "budget")
    budget = Budget(
        tokens=None
        if budget_raw.get("tokens") is None
        else c.integer(budget_raw["tokens"], _join(bkey, "tokens"), 1),
        cost_usd=None
        if budget_raw.get("cost_usd") is None
        else c.number(budget_raw["cost_usd"], _join(bkey, "cost_usd"), positive=True),
    )

    def seconds(field: str, default: float) -> float:
        return c.number(raw.get(field, default), _join(key, field), positive=True)

    cacheable = raw.get("cacheable", False)
    if not isinstance(cacheable, bool):
        c.fail(_join(key, "cacheable"), f"must be true or false, got {_kind(cacheable)}")
    priority = c.string(raw.get("priority", "normal"), _join(key, "priority"))
    if priority not in PRIORITIES:
        c.fail(_join(key, "priority"), f"bad priority {priority!r} ({' | '.join(PRIORITIES)})")

    return AgentConfig(
        name=name,
        model=model,
        system=c.string(raw.get("system", ""), _join(key, "system"), empty=True),
        tools=tools,
        approval=frozenset(approval),
        max_steps=c.integer(raw.get("max_steps", DEFAULT_MAX_STEPS), _join(key, "max_steps"), 1),
        budget=budget,
        llm_timeout_s=seconds("llm_timeout_s", DEFAULT_LLM_TIMEOUT_S),
        tool_timeout_s=seconds("tool_timeout_s", DEFAULT_TOOL_TIMEOUT_S),
        approval_timeout_s=seconds("approval_timeout_s", DEFAULT_APPROVAL_TIMEOUT_S),
        idle_timeout_s=seconds("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S),
        cacheable=cacheable,
        priority=priority,  # type: ignore[arg-type]  # checked against PRIORITIES
    )


class _Parts:
    def __init__(self, base: AgentCatalog) -> None:
        self.agents = dict(base.agents)
        self.models = dict(base.models)
        self.tools = dict(base.tools)


def _check_fallbacks(c: _Checker, models: Mapping[str, ModelConfig]) -> None:
    for name, model in models.items():
        for index, fallback in enumerate(model.fallbacks):
            key = f"models.{name}.fallbacks[{index}]"
            if fallback not in models:
                c.fail(key, f"unknown model {fallback!r}")
            if fallback == name:
                c.fail(key, "a model cannot fall back to itself")
        seen: list[str] = [name]
        frontier = list(model.fallbacks)
        while frontier:
            current = frontier.pop()
            if current == name:
                c.fail(f"models.{name}.fallbacks", f"fallback cycle through {seen[-1]!r}")
            if current not in seen:
                seen.append(current)
                frontier.extend(models[current].fallbacks)


def parse_agents_file(path: str, base: AgentCatalog) -> AgentCatalog:
    """The catalog of ``base`` (the built-ins) plus the file at ``path``; file entries win."""
    c = _Checker(path)
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        c.fail("", f"cannot read: {error.strerror or error}")
    except yaml.YAMLError as error:
        c.fail("", f"not valid YAML: {error}")
    parts = _Parts(base)
    if document is None:
        return AgentCatalog(parts.agents, parts.models, parts.tools, source=path)
    raw = c.mapping(document, "", ("models", "agents", "tools"))
    for name, value in c.mapping(raw.get("tools") or {}, "tools").items():
        parts.tools[name] = _tool(c, name, value, _join("tools", name))
    for name, value in c.mapping(raw.get("models") or {}, "models").items():
        parts.models[name] = _model(c, name, value, _join("models", name))
    _check_fallbacks(c, parts.models)
    for name, value in c.mapping(raw.get("agents") or {}, "agents").items():
        parts.agents[name] = _agent(c, parts, name, value, _join("agents", name))
    return AgentCatalog(parts.agents, parts.models, parts.tools, source=path)


def load_agents(path: str | None = None) -> AgentCatalog:
    """The catalog from agents file ``path`` (default: ``$AGENTSTREAM_AGENTS``) plus built-ins.

    With neither, the built-ins alone. Raises :class:`AgentsFileError` for a
    file that cannot be read or does not fit; the engine refuses to start then.
    """
    chosen = path if path is not None else os.environ.get(AGENTS_ENV) or None
    if chosen is None:
        return builtin_catalog()
    return parse_agents_file(chosen, builtin_catalog())

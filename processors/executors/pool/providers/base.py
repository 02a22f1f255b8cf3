"""What every provider offers the pool, and the endpoint options they share.

A provider turns one :class:`~processors.agents.model_types.LLMRequest` into one
provider request and its answer into an :class:`~processors.agents.model_types.LLMResponse`,
raising :class:`~processors.executors.pool.errors.ProviderError` for anything else. It
holds no retry loop, no breaker and no limits: those are the pool's, the same
for every provider. ``on_delta`` receives text pieces while a streamed answer
arrives; the whole text is still in the returned response.

Endpoint ``options`` in the agents file (for ``openai`` and ``anthropic``)::

    timeout_s          seconds one attempt may take in all (default: pool setting)
    connect_timeout_s  seconds to open a connection (default: pool setting)
    stream             stream answers when someone listens for deltas (default true)
    max_tokens         output cap sent to the provider; also the TPM reservation
    temperature, top_p, stop, seed     passed through
    headers            extra request headers (not secrets: those come from api_key_env)
    extra_body         more JSON fields merged into the request body
    anthropic_version  the anthropic-version header (default 2023-06-01)

Unknown keys are refused at start, so a typo never silently does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from processors.agents.model_types import ChatMessage, LLMRequest, LLMResponse, ModelError, ToolSpec
from processors.executors.pool.errors import PoolConfigError, ProviderError
from processors.executors.pool.http import Timeouts

DeltaSink = Callable[[str], Awaitable[None]]
"""Receives each piece of streamed text, in order."""

DEFAULT_MAX_TOKENS = 1024
"""Output cap when an endpoint sets none (Anthropic requires one)."""


class Provider(Protocol):
    """One concrete model behind an endpoint (see the module docstring)."""

    label: str
    """provider/model plus where it lives; never a credential. Used in errors and metrics."""
    supports_batch: bool
    """Whether :meth:`complete_batch` answers several requests in one provider call."""
    max_output_tokens: int
    """What one answer may cost in output tokens (the TPM reservation)."""

    async def complete(
        self, request: LLMRequest, timeouts: Timeouts, on_delta: DeltaSink | None = None
    ) -> LLMResponse: ...

    async def complete_batch(
        self, requests: Sequence[LLMRequest], timeouts: Timeouts
    ) -> list[LLMResponse | ModelError]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """The checked ``options`` of an HTTP endpoint (see the module docstring)."""

    timeout_s: float | None = None
    connect_timeout_s: float | None = None
    stream: bool = True
    max_tokens: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """temperature, top_p, stop, seed: sent as they are."""
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    anthropic_version: str = "2023-06-01"

    @staticmethod
    def parse(options: Mapping[str, Any], key: str) -> EndpointOptions:
        """Check ``options`` (agents-file path ``key``); PoolConfigError names a bad key."""
        allowed = {
            "timeout_s",
            "connect_timeout_s",
            "stream",
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "seed",
            "headers",
            "extra_body",
            "anthropic_version",
        }
        for name in options:
            if name not in allowed:
                raise PoolConfigError(
                    f"{key}.{name}", f"unknown option (allowed: {', '.join(sorted(allowed))})"
                )

        def seconds(name: str) -> float | None:
            value = options.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise PoolConfigError(f"{key}.{name}", f"must be a positive number, got {value!r}")
            return float(value)

        stream = options.get("stream", True)
        if not isinstance(stream, bool):
            raise PoolConfigError(f"{key}.stream", f"must be true or false, got {stream!r}")
        max_tokens = options.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise PoolConfigError(
                f"{key}.max_tokens", f"must be an integer >= 1, got {max_tokens!r}"
            )
        headers = options.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise PoolConfigError(f"{key}.headers", "must map header names to strings")
        extra = options.get("extra_body") or {}
        if not isinstance(extra, Mapping):
            raise PoolConfigError(f"{key}.extra_body", "must be a mapping")
        version = options.get("anthropic_version", "2023-06-01")
        if not isinstance(version, str):
            raise PoolConfigError(f"{key}.anthropic_version", "must be a string")
        parameters = {
            k: options[k] for k in ("temperature", "top_p", "stop", "seed") if k in options
        }
        return EndpointOptions(
            timeout_s=seconds("timeout_s"),
            connect_timeout_s=seconds("connect_timeout_s"),
            stream=stream,
            max_tokens=max_tokens,
            parameters=parameters,
            headers=dict(headers),
            extra_body=dict(extra),
            anthropic_version=version,
        )


@lru_cache(maxsize=4096)
def tool_parameters(spec: ToolSpec) -> dict[str, Any]:
    """A tool's JSON schema as an object (parsed once per distinct tool)."""
    try:
        loaded = json.loads(spec.parameters_json) if spec.parameters_json else {}
    except ValueError:
        loaded = {}
    return loaded if isinstance(loaded, dict) else {}


def arguments_object(arguments_json: str) -> dict[str, Any]:
    """A tool call's arguments as an object for protocols that want one (Anthropic).

    Arguments a model once wrote as invalid JSON cannot be replayed as an
    object; they become ``{}`` (the failed tool result that followed says why).
    """
    try:
        loaded = json.loads(arguments_json) if arguments_json.strip() else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def estimate_tokens(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> int:
    """About one token per 4 characters: for reservations and for servers that omit usage."""
    chars = 0
    for message in messages:
        chars += len(message.content or "")
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments_json)
    for tool in tools:
        chars += len(tool.name) + len(tool.description) + len(tool.parameters_json)
    return max(1, chars // 4)


def need(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``document[name]`` if it has type ``kind``; a ``malformed`` error naming it otherwise."""
    value = document.get(name)
    if not isinstance(value, kind):
        raise ProviderError("malformed", f"{what}: field {name!r} missing or of the wrong type")
    return value


def as_int(value: Any) -> int:
    """A usage count as an int (0 when absent or not a number)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

"""What a model is asked and what it answers, independent of any provider.

These frozen records are shared by the session core (which builds prompts),
the LLM executors (which turn an ``LLMCallWork`` record into an
:class:`LLMRequest` and a model's :class:`LLMResponse` into an
``LLMCallResult``), and every model implementation, the simulated one first.

They mirror the Avro records ``ChatMessage``, ``ToolSpec`` and ``ToolCallSpec``
(nested in ``LLMCallWork`` / ``LLMCallCompleted``); ``to_record`` and
``from_record`` convert without loss. :func:`prompt_hash` is the one definition
of "the same prompt": the core writes it into ``LLMCallRequested`` and the
simulated model derives its choices from it, so both agree by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from agentstream.errors import AgentstreamError

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call a model asked for (Avro ``ToolCallSpec``)."""

    call_id: str
    """Id of the call; the idempotency key handed to the tool, and how its result is matched."""
    name: str
    """The tool's name."""
    arguments_json: str
    """The arguments as a JSON object text (as the model wrote it; validated by the tool runner)."""

    def to_record(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "name": self.name, "arguments_json": self.arguments_json}

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> ToolCall:
        return ToolCall(str(record["call_id"]), str(record["name"]), str(record["arguments_json"]))


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation (Avro ``ChatMessage``)."""

    role: Role
    """system | user | assistant | tool."""
    content: str | None = None
    """The text; None for an assistant message that only asks for tools."""
    tool_call_id: str | None = None
    """For role=tool: the call this message answers."""
    name: str | None = None
    """For role=tool: the tool's name."""
    tool_calls: tuple[ToolCall, ...] = ()
    """For role=assistant: the tool calls it asked for."""

    def to_record(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "tool_calls": [call.to_record() for call in self.tool_calls],
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> ChatMessage:
        role = str(record["role"])
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"unknown message role {role!r}")
        return ChatMessage(
            role=role,  # type: ignore[arg-type]  # checked just above
            content=record.get("content"),
            tool_call_id=record.get("tool_call_id"),
            name=record.get("name"),
            tool_calls=tuple(ToolCall.from_record(c) for c in record.get("tool_calls") or ()),
        )


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool a model may call (Avro ``ToolSpec``)."""

    name: str
    """The tool's name, as the model must spell it."""
    description: str
    """What it does (the tool function's docstring, first line)."""
    parameters_json: str
    """JSON schema of its arguments, as canonical JSON text."""

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters_json": self.parameters_json,
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> ToolSpec:
        description = str(record.get("description") or "")
        return ToolSpec(str(record["name"]), description, str(record["parameters_json"]))


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call to a model: the full prompt and the tools it may use."""

    model: str
    """The model name from the agents file (a pool of endpoints), e.g. ``sim``."""
    messages: tuple[ChatMessage, ...]
    """The whole prompt, system message first."""
    tools: tuple[ToolSpec, ...] = ()
    """Tools the agent allows."""
    call_id: str = ""
    """The engine's id of the call (empty outside the engine); results carry it back."""
    prompt_hash: str = ""
    """sha256 of the canonical prompt; computed from the other fields when empty."""
    attempt: int = 1
    """1 for the first provider request of this call, 2 for the first retry..."""

    def hash(self) -> str:
        """The prompt hash: the given one, else :func:`prompt_hash` of this request."""
        return self.prompt_hash or prompt_hash(self.model, self.messages, self.tools)

    @staticmethod
    def from_work(record: Mapping[str, Any], attempt: int = 1) -> LLMRequest:
        """The request an ``LLMCallWork`` record asks for."""
        return LLMRequest(
            model=str(record["model"]),
            messages=tuple(ChatMessage.from_record(m) for m in record["messages"]),
            tools=tuple(ToolSpec.from_record(t) for t in record.get("tools") or ()),
            call_id=str(record["call_id"]),
            prompt_hash=str(record.get("prompt_hash") or ""),
            attempt=attempt,
        )


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """What a model answered to one request."""

    content: str | None
    """The assistant's text, if any."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls it asked for, in order."""
    input_tokens: int = 0
    """Prompt tokens billed (gen_ai.usage.input_tokens)."""
    output_tokens: int = 0
    """Completion tokens billed (gen_ai.usage.output_tokens)."""
    cached_tokens: int = 0
    """Prompt tokens served from the provider's cache."""
    finish_reason: FinishReason = "stop"
    """stop (an answer) | tool_calls | length (cut off)."""
    model: str = ""
    """The concrete model that answered (provider/model)."""


class ModelError(AgentstreamError):
    """A model call failed. ``retryable`` tells the executor whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 kept as is.

    orjson: the same text as ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` for our documents, many times faster; it hashes every
    prompt ``decide`` asks for, where json.dumps was a large share of decide's time.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def prompt_hash(model: str, messages: Iterable[ChatMessage], tools: Iterable[ToolSpec] = ()) -> str:
    """sha256 (hex) of the canonical JSON of ``{model, messages, tools}``.

    The event log names a prompt by this hash instead of copying it, so any
    party holding the prompt (the executor, a test, the simulated model) can
    check it is the prompt the engine meant.
    """
    return prompt_hash_of_records(
        model, [m.to_record() for m in messages], [t.to_record() for t in tools]
    )


def prompt_hash_of_records(
    model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> str:
    """:func:`prompt_hash` over messages and tools already in their Avro record form."""
    document = {"model": model, "messages": messages, "tools": tools}
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def llm_result_record(
    work: Mapping[str, Any],
    response: LLMResponse | None,
    *,
    event_id: str,
    time_ms: int,
    error: str | None = None,
    cost_usd: float = 0.0,
    latency_s: float = 0.0,
    attempts: int = 1,
) -> dict[str, Any]:
    """The ``LLMCallResult`` command answering ``LLMCallWork`` record ``work``.

    With a ``response`` the result is ok; with ``response=None`` it is a failure
    carrying ``error``. Envelope: the work item's session, tenant and
    correlation; causation is the work item's event id.
    """
    record: dict[str, Any] = {
        "event_id": event_id,
        "session_id": work["session_id"],
        "tenant_id": work["tenant_id"],
        "time_ms": time_ms,
        "causation_id": work["event_id"],
        "correlation_id": work.get("correlation_id"),
        "call_id": work["call_id"],
        "ok": response is not None,
        "model": response.model if response is not None else "",
        "content": response.content if response is not None else None,
        "tool_calls": [c.to_record() for c in response.tool_calls] if response else [],
        "input_tokens": response.input_tokens if response is not None else 0,
        "output_tokens": response.output_tokens if response is not None else 0,
        "cached_tokens": response.cached_tokens if response is not None else 0,
        "cost_usd": cost_usd,
        "latency_s": latency_s,
        "error": None if response is not None else (error or "model call failed"),
        "attempts": attempts,
    }
    return record

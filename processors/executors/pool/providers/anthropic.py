"""Anthropic Messages: ``POST {base_url}/v1/messages`` with tools and streaming.

The conversation is reshaped to the Messages rules: system messages become the
top-level ``system``; an assistant's tool calls are ``tool_use`` blocks; tool
results are ``tool_result`` blocks in a user turn; consecutive turns of one
role are merged (the API wants user and assistant to alternate). Usage counts
prompt tokens as ``input_tokens`` + cache writes + cache reads, with the reads
reported as cached tokens, so one price table fits both providers. Streamed
answers are the ``message_start`` / ``content_block_*`` / ``message_delta``
event sequence; an ``error`` event (e.g. ``overloaded_error``) mid-stream is a
retryable failure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from processors.agents.model_types import LLMRequest, LLMResponse, ToolCall
from processors.executors.pool.errors import ProviderError
from processors.executors.pool.providers.base import (
    DeltaSink,
    arguments_object,
    as_int,
    need,
    tool_parameters,
)
from processors.executors.pool.providers.http_base import HttpProvider, json_event, stream_error

DEFAULT_BASE_URL = "https://api.anthropic.com"


def messages_url(base_url: str | None) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _turns(request: LLMRequest) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "user":
            add("user", [{"type": "text", "text": message.content or ""}])
        elif message.role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.tool_call_id or "",
                        "content": message.content or "",
                    }
                ],
            )
        else:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            for call in message.tool_calls:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.call_id,
                        "name": call.name,
                        "input": arguments_object(call.arguments_json),
                    }
                )
            add("assistant", blocks or [{"type": "text", "text": ""}])
    return "\n\n".join(system), turns


def _usage(usage: Any) -> tuple[int, int, int]:
    if not isinstance(usage, Mapping):
        return 0, 0, 0
    read = as_int(usage.get("cache_read_input_tokens"))
    written = as_int(usage.get("cache_creation_input_tokens"))
    return (
        as_int(usage.get("input_tokens")) + read + written,
        as_int(usage.get("output_tokens")),
        read,
    )


def _finish(stop_reason: Any, calls: tuple[ToolCall, ...]) -> Any:
    if calls:
        return "tool_calls"
    return "length" if stop_reason == "max_tokens" else "stop"


class AnthropicProvider(HttpProvider):
    """Messages over our transport (see the module docstring)."""

    kind = "anthropic"

    def body(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        system, turns = _turns(request)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_output_tokens,
            "messages": turns,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": tool_parameters(t)}
                for t in request.tools
            ]
        if stream:
            body["stream"] = True
        return body

    def parse(self, request: LLMRequest, document: dict[str, Any]) -> LLMResponse:
        if document.get("type") == "error":
            raise stream_error(document)
        blocks = need(document, "content", list, "response")
        text: list[str] = []
        calls: list[ToolCall] = []
        for index, block in enumerate(blocks):
            if not isinstance(block, Mapping):
                raise ProviderError(
                    "malformed", f"response: content block {index} is not an object"
                )
            if block.get("type") == "text":
                text.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use":
                name = block.get("name")
                if not isinstance(name, str) or not name:
                    raise ProviderError(
                        "malformed", f"response: tool_use block {index} has no name"
                    )
                raw_input = block.get("input")
                arguments = (
                    json.dumps(raw_input, ensure_ascii=False, separators=(",", ":"))
                    if raw_input is not None
                    else "{}"
                )
                call_id = block.get("id")
                calls.append(ToolCall(call_id if isinstance(call_id, str) else "", name, arguments))
        input_tokens, output_tokens, cached = _usage(document.get("usage"))
        tool_calls = tuple(calls)
        return LLMResponse(
            content="".join(text) if text else None,
            tool_calls=tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            finish_reason=_finish(document.get("stop_reason"), tool_calls),
            model=f"anthropic/{document.get('model') or self.model}",
        )

    async def parse_stream(
        self, request: LLMRequest, events: AsyncIterator[tuple[str, str]], on_delta: DeltaSink
    ) -> LLMResponse:
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        start_usage: Any = None
        output_tokens = 0
        stop_reason: Any = None
        model = self.model
        stopped = False
        async for event, data in events:
            document = json_event(data)
            kind = document.get("type") or event
            if kind == "error":
                raise stream_error(document)
            if kind == "message_start":
                message = document.get("message") or {}
                if isinstance(message, Mapping):
                    start_usage = message.get("usage")
                    model = str(message.get("model") or model)
            elif kind == "content_block_start":
                block = document.get("content_block")
                index = document.get("index")
                if not isinstance(block, Mapping) or not isinstance(index, int):
                    raise ProviderError("malformed", "stream: bad content_block_start")
                blocks[index] = {
                    "type": str(block.get("type") or ""),
                    "id": str(block.get("id") or ""),
                    "name": str(block.get("name") or ""),
                    "json": "",
                }
            elif kind == "content_block_delta":
                await self._delta(document, blocks, text, on_delta)
            elif kind == "message_delta":
                delta = document.get("delta") or {}
                if isinstance(delta, Mapping):
                    stop_reason = delta.get("stop_reason") or stop_reason
                usage = document.get("usage")
                if isinstance(usage, Mapping):
                    output_tokens = as_int(usage.get("output_tokens"))
            elif kind == "message_stop":
                stopped = True
                break
        if not stopped:
            raise ProviderError("malformed", "stream ended before message_stop")
        calls = tuple(
            ToolCall(b["id"], b["name"], b["json"] if b["json"].strip() else "{}")
            for _, b in sorted(blocks.items())
            if b["type"] == "tool_use"
        )
        input_tokens, start_output, cached = _usage(start_usage)
        return LLMResponse(
            content="".join(text) if text or not calls else None,
            tool_calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens or start_output,
            cached_tokens=cached,
            finish_reason=_finish(stop_reason, calls),
            model=f"anthropic/{model}",
        )

    @staticmethod
    async def _delta(
        document: Mapping[str, Any],
        blocks: dict[int, dict[str, str]],
        text: list[str],
        on_delta: DeltaSink,
    ) -> None:
        index = document.get("index")
        delta = document.get("delta")
        if not isinstance(index, int) or not isinstance(delta, Mapping) or index not in blocks:
            raise ProviderError("malformed", "stream: content_block_delta for no open block")
        if delta.get("type") == "text_delta":
            piece = str(delta.get("text") or "")
            if piece:
                text.append(piece)
                await on_delta(piece)
        elif delta.get("type") == "input_json_delta":
            blocks[index]["json"] += str(delta.get("partial_json") or "")

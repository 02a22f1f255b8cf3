"""OpenAI-compatible Chat Completions: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM.

``POST {base_url}/chat/completions`` with tools as ``{"type": "function"}``
entries; streamed answers are Server-Sent Events of ``chat.completion.chunk``
objects ending in ``data: [DONE]``, with ``stream_options.include_usage`` so
the last chunk carries token usage. Tool-call arguments arrive as JSON text
and are passed on as written: invalid JSON from a model becomes a failed tool
call the model can read and correct, not a failed LLM call. Servers that
leave usage out get an estimate (one token per 4 characters) so budgets still
bind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from processors.agents.model_types import ChatMessage, LLMRequest, LLMResponse, ToolCall
from processors.executors.pool.errors import ProviderError
from processors.executors.pool.providers.base import (
    DeltaSink,
    as_int,
    estimate_tokens,
    need,
    tool_parameters,
)
from processors.executors.pool.providers.http_base import HttpProvider, json_event, stream_error

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def chat_url(base_url: str | None) -> str:
    return (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content or "",
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in message.tool_calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    return out


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        return raw if raw.strip() else "{}"
    if raw is None:
        return "{}"
    return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))


class OpenAIProvider(HttpProvider):
    """Chat Completions over our transport (see the module docstring)."""

    kind = "openai"

    def body(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": tool_parameters(t),
                    },
                }
                for t in request.tools
            ]
        if self.options.max_tokens is not None:
            body["max_tokens"] = self.options.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _usage(self, request: LLMRequest, usage: Any, output_chars: int) -> tuple[int, int, int]:
        if not isinstance(usage, Mapping):
            return estimate_tokens(request.messages, request.tools), max(1, output_chars // 4), 0
        details = usage.get("prompt_tokens_details")
        cached = as_int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
        return as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens")), cached

    def parse(self, request: LLMRequest, document: dict[str, Any]) -> LLMResponse:
        if "error" in document and "choices" not in document:
            raise stream_error(document)
        choices = need(document, "choices", list, "response")
        if not choices or not isinstance(choices[0], Mapping):
            raise ProviderError("malformed", "response: no choices")
        message = need(choices[0], "message", Mapping, "response choice")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ProviderError("malformed", "response: message content is not text")
        calls: list[ToolCall] = []
        raw_calls = message.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            raise ProviderError("malformed", "response: tool_calls is not a list")
        for index, raw in enumerate(raw_calls):
            function = raw.get("function") if isinstance(raw, Mapping) else None
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise ProviderError("malformed", f"response: tool call {index} has no name")
            call_id = raw.get("id")
            calls.append(
                ToolCall(
                    call_id if isinstance(call_id, str) else "",
                    function["name"],
                    _arguments(function.get("arguments")),
                )
            )
        output_chars = len(content or "") + sum(len(c.arguments_json) for c in calls)
        input_tokens, output_tokens, cached = self._usage(
            request, document.get("usage"), output_chars
        )
        finish = choices[0].get("finish_reason")
        return LLMResponse(
            content=content,
            tool_calls=tuple(calls),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            finish_reason="tool_calls" if calls else ("length" if finish == "length" else "stop"),
            model=f"openai/{document.get('model') or self.model}",
        )

    async def parse_stream(
        self, request: LLMRequest, events: AsyncIterator[tuple[str, str]], on_delta: DeltaSink
    ) -> LLMResponse:
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: Any = None
        finish: Any = None
        model = self.model
        done = False
        async for _, data in events:
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = json_event(data)
            if "error" in chunk and "choices" not in chunk:
                raise stream_error(chunk)
            model = str(chunk.get("model") or model)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, Mapping):
                    raise ProviderError("malformed", "stream: a choice is not an object")
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta") or {}
                if not isinstance(delta, Mapping):
                    raise ProviderError("malformed", "stream: delta is not an object")
                piece = delta.get("content")
                if isinstance(piece, str) and piece:
                    text.append(piece)
                    await on_delta(piece)
                for raw in delta.get("tool_calls") or ():
                    self._merge_call(calls, raw)
        if not done and finish is None:
            raise ProviderError("malformed", "stream ended before the answer did")
        tool_calls = tuple(
            ToolCall(c["id"], c["name"], _arguments(c["arguments"]))
            for _, c in sorted(calls.items())
        )
        for call in tool_calls:
            if not call.name:
                raise ProviderError("malformed", "stream: a tool call has no name")
        content = "".join(text) if text or not tool_calls else None
        output_chars = len(content or "") + sum(len(c.arguments_json) for c in tool_calls)
        input_tokens, output_tokens, cached = self._usage(request, usage, output_chars)
        return LLMResponse(
            content=content,
            tool_calls=tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            finish_reason="tool_calls"
            if tool_calls
            else ("length" if finish == "length" else "stop"),
            model=f"openai/{model}",
        )

    @staticmethod
    def _merge_call(calls: dict[int, dict[str, str]], raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise ProviderError("malformed", "stream: a tool call delta is not an object")
        index = raw.get("index", len(calls))
        if not isinstance(index, int):
            raise ProviderError("malformed", "stream: tool call index is not an integer")
        call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if isinstance(raw.get("id"), str):
            call["id"] = raw["id"]
        function = raw.get("function") or {}
        if isinstance(function, Mapping):
            if isinstance(function.get("name"), str):
                call["name"] += function["name"]
            if isinstance(function.get("arguments"), str):
                call["arguments"] += function["arguments"]
